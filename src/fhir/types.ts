import type { Grant } from '../auth/scopes';

/** A FHIR interaction, independent of HTTP: what a route or a Bundle entry asks for. */
export interface FhirRequest {
  method: string;
  /** Path below the service base without leading slash or query, e.g. `ServiceRequest/123/_history/2`. */
  path: string;
  query: [string, string][];
  body?: unknown;
  ifMatch?: string;
  ifNoneExist?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  prefer: Prefer;
  /** Where the body sits when it came in a Bundle entry (`Bundle.entry[3].resource`), for issue paths. */
  resourcePath?: string;
}

export interface Prefer {
  return?: 'minimal' | 'representation' | 'OperationOutcome';
  handling?: 'strict' | 'lenient';
}

export interface FhirResponse {
  status: number;
  body?: fhir4.Resource;
  /** The body as stored JSON text, sent as it is instead of parsing and serialising it again. */
  raw?: string;
  /** The version the response concerns, for ETag and Last-Modified. */
  version?: { versionId: string; lastUpdated: string };
  /** `Type/id/_history/vid` of a created or updated resource, relative to the base. */
  location?: string;
}

/** The response body as a resource, whichever form it is held in. */
export function responseResource(res: FhirResponse): fhir4.Resource | undefined {
  return res.body ?? (res.raw !== undefined ? (JSON.parse(res.raw) as fhir4.Resource) : undefined);
}

export interface RequestContext {
  /** Absolute base URL of the service as the client addressed it, without trailing slash. */
  baseUrl: string;
  /** What the caller's token allows (src/fhir/access.ts); absent for internal callers. */
  grant?: Grant;
}

export function parsePrefer(header: string | undefined): Prefer {
  const prefer: Prefer = {};
  if (!header) return prefer;
  for (const part of header.split(/[,;]/)) {
    const [k, v] = part.split('=').map((s) => s.trim().replace(/^"|"$/g, ''));
    if (k === 'return' && (v === 'minimal' || v === 'representation' || v === 'OperationOutcome')) prefer.return = v;
    if (k === 'handling' && (v === 'strict' || v === 'lenient')) prefer.handling = v;
  }
  return prefer;
}

export function parseQuery(query: string): [string, string][] {
  return [...new URLSearchParams(query.startsWith('?') ? query.slice(1) : query)];
}

/** The parameters of a form body (`POST [type]/_search`); none for any other body. */
export function formParams(body: unknown): [string, string][] {
  return body instanceof URLSearchParams ? [...body] : [];
}
