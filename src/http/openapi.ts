import swagger, { type StaticDocumentSpec } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../config';
import { capabilityStatement } from '../fhir/capability';
import { ADMIN_SCOPE } from '../auth/scopes';
import { AUDIT_TYPE } from '../fhir/access';
import type { OperationDefinition } from '../fhir/operations/operation';

/**
 * The OpenAPI 3.0 description of the HTTP API, for GP system vendors, served at `/docs/openapi.json` (the document)
 * and `/docs` (Swagger UI).
 *
 * It is generated, never written by hand: the FHIR part comes from the CapabilityStatement that `GET /metadata`
 * answers (the same `capabilityStatement()` call, with the same operations and conformance types), so a path exists
 * for exactly the interactions and operations the CapabilityStatement declares, and the search parameters are its
 * `searchParam`s. The non-FHIR endpoints (token, SMART configuration, health, metrics, admin) are described below.
 *
 * The document is built once at start with a relative server (`/`); each request for it gets the request's base URL
 * (BASE_URL, or the request's protocol and Host, as `app.ts` works it out) as its server and token URL.
 */

// ---- a minimal OpenAPI 3.0 object model --------------------------------------------------------------------------

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A JSON Schema (the OpenAPI 3.0 dialect), or a `$ref`. */
export type Schema = JsonObject;

export interface Reference {
  $ref: string;
}

export interface Parameter {
  name: string;
  in: 'query' | 'header' | 'path';
  description?: string;
  required?: boolean;
  schema: Schema;
  style?: 'form' | 'simple';
  explode?: boolean;
  example?: JsonValue;
  /** The FHIR search parameter type, for search parameters. */
  'x-fhir-search-type'?: string;
}

export interface MediaType {
  schema: Schema;
  example?: JsonValue;
}

export interface RequestBody {
  description?: string;
  required?: boolean;
  content: Record<string, MediaType>;
}

export interface Header {
  description: string;
  schema: Schema;
}

export interface Response {
  description: string;
  headers?: Record<string, Header | Reference>;
  content?: Record<string, MediaType>;
}

export type SecurityRequirement = Record<string, string[]>;

export type HttpMethod = 'get' | 'post' | 'put' | 'delete';

export interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  parameters?: (Parameter | Reference)[];
  requestBody?: RequestBody;
  responses: Record<string, Response | Reference>;
  /** Absent: the document's default (none); `[]`: public. */
  security?: SecurityRequirement[];
  /** The CapabilityStatement interaction (`read`, `search-type` ...) or `operation` this path serves. */
  'x-fhir-interaction'?: string;
  /** The resource type, for type- and instance-level FHIR paths. */
  'x-fhir-resource'?: string;
  /** The operation name without `$`, for operations. */
  'x-fhir-operation'?: string;
  /** The SMART scopes that allow the call (any one of them). */
  'x-smart-scopes'?: string[];
}

export type PathItem = Partial<Record<HttpMethod, Operation>>;

export interface SecurityScheme {
  type: 'oauth2' | 'http';
  description: string;
  scheme?: 'bearer';
  bearerFormat?: string;
  flows?: { clientCredentials: { tokenUrl: string; scopes: Record<string, string> } };
}

export interface OpenApiDocument {
  openapi: '3.0.3';
  info: { title: string; version: string; description: string; license?: { name: string } };
  servers: { url: string; description?: string }[];
  tags: { name: string; description?: string }[];
  paths: Record<string, PathItem>;
  components: {
    schemas: Record<string, Schema>;
    parameters: Record<string, Parameter>;
    headers: Record<string, Header>;
    responses: Record<string, Response>;
    securitySchemes: Record<string, SecurityScheme>;
  };
  externalDocs?: { description: string; url: string };
}

/** What the server serves: the same arguments `capabilityStatement()` takes. */
export type Served = Parameters<typeof capabilityStatement>[1];

// ---- constants ---------------------------------------------------------------------------------------------------

const FHIR_JSON = 'application/fhir+json';
const JSON_TYPES = [FHIR_JSON, 'application/json'];
const R4 = 'http://hl7.org/fhir/R4';
const SMART_SCHEME = 'smartBackendServices';
const BEARER_SCHEME = 'bearerToken';
const OAUTH_URIS = 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris';

const ref = (kind: 'schemas' | 'parameters' | 'headers' | 'responses', name: string): Reference => ({ $ref: `#/components/${kind}/${name}` });
const schemaRef = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });

/** SMART v2 permission letters (in cruds order) an interaction needs, e.g. `r`, or `cus` for a conditional update. */
type Access = 'c' | 'r' | 'u' | 'd' | 's' | 'cus' | 'ds';

/**
 * The scopes allowing `access` to `type` (`*` for every type): the SMART v2 one, then the v1 one. The mapping is the
 * one src/fhir/access.ts enforces (test/openapi.test.ts checks every path against it).
 */
export function smartScopes(type: string, access: Access): [string, string] {
  const v1 = [...access].every((p) => p === 'r' || p === 's') ? 'read' : [...access].every((p) => p === 'c' || p === 'u' || p === 'd') ? 'write' : '*';
  return [`system/${type}.${access}`, `system/${type}.${v1}`];
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad request: malformed JSON, wrong resourceType, a bad id, header or parameter, or a resource that is not well-formed FHIR R4',
  401: 'No access token, or one that is expired, not signed by a trusted key or meant for another audience',
  403: 'The access token does not carry the scope this call needs',
  404: 'Unknown resource type, id, version, route or operation',
  405: 'This method is not supported on this path',
  406: 'The client accepts no JSON (Accept or _format)',
  409: 'Conflict with the current state',
  410: 'The resource was deleted (history keeps every version)',
  412: 'Precondition failed: a stale If-Match version, or several resources match the conditional criteria',
  413: 'The request body is larger than BODY_LIMIT_BYTES',
  415: 'Unsupported media type: send application/fhir+json or application/json',
  422: 'The resource is well-formed but breaks its profile, an invariant or a terminology rule; every issue is listed',
  429: 'Too many requests from this client: wait for Retry-After seconds',
  500: 'Internal error: the OperationOutcome names only the request id (X-Request-Id) to quote to the operator',
  503: 'Overloaded or not ready: retry after Retry-After seconds',
};

/** Errors any authenticated FHIR call can meet besides its own. */
const AUTH_ERRORS = [401, 403];
const LOAD_ERRORS = [429, 503];

/** What each served operation answers, and whether it takes the resource itself as its body. */
const OPERATION_NOTES: Record<string, { summary: string; result: string; resourceBody?: boolean }> = {
  validate: {
    summary: 'Validate a resource without storing it; always 200 with the OperationOutcome, errors included',
    result: 'OperationOutcome',
    resourceBody: true,
  },
  lookup: { summary: 'Look up a code: its display, designations and properties', result: 'Parameters' },
  'validate-code': { summary: 'Check that a code is in a value set (or code system)', result: 'Parameters' },
  expand: { summary: 'Expand a value set (filter, count, offset)', result: 'ValueSet' },
  subsumes: { summary: 'Test the subsumption relationship between two codes', result: 'Parameters' },
};

// ---- the generator -----------------------------------------------------------------------------------------------

/**
 * The OpenAPI document for the server described by `cs` (a CapabilityStatement from `capabilityStatement()`):
 * FHIR paths for exactly what `cs` declares, plus the non-FHIR endpoints.
 */
export function openApiFromCapabilityStatement(
  cs: fhir4.CapabilityStatement,
  served: Pick<Served, 'operations'>,
  options: { serverUrl?: string } = {},
): OpenApiDocument {
  const serverUrl = options.serverUrl ?? '/';
  const base = serverUrl.replace(/\/+$/, '');
  const rest = cs.rest?.find((r) => r.mode === 'server') ?? { mode: 'server' as const };
  const doc: OpenApiDocument = {
    openapi: '3.0.3',
    info: {
      title: 'sp-bridge FHIR R4 API',
      version: cs.software?.version ?? '0.0.0',
      description: infoDescription(cs),
      license: { name: 'MIT' },
    },
    servers: [{ url: serverUrl, description: 'This sp-bridge instance' }],
    tags: [],
    paths: {},
    components: {
      schemas: baseSchemas(),
      parameters: commonParameters(),
      headers: commonHeaders(),
      responses: errorResponses(),
      securitySchemes: {},
    },
    externalDocs: { description: 'FHIR R4 RESTful API', url: `${R4}/http.html` },
  };
  const scopes = new Map<string, string>();
  const secured = (...alternatives: string[][]): SecurityRequirement[] => {
    for (const list of alternatives) for (const s of list) if (!scopes.has(s)) scopes.set(s, scopeDescription(s));
    return [...alternatives.map((list) => ({ [SMART_SCHEME]: list })), { [BEARER_SCHEME]: [] }];
  };
  const add = (path: string, method: HttpMethod, op: Operation) => {
    const item = (doc.paths[path] ??= {});
    if (item[method]) throw new Error(`OpenAPI: ${method.toUpperCase()} ${path} generated twice (${item[method]?.operationId}, ${op.operationId})`);
    item[method] = op;
  };
  /** A FHIR operation on `type` needing `access`: security, scopes listed in the description. */
  const fhirOp = (type: string, access: Access, op: Omit<Operation, 'security' | 'x-smart-scopes'>): Operation => {
    if (type === AUDIT_TYPE) {
      return {
        ...op,
        description: `${op.description ?? ''}\n\n**Scope:** \`${ADMIN_SCOPE}\` (the audit trail is for operators).`.trim(),
        security: secured([ADMIN_SCOPE]),
        'x-smart-scopes': [ADMIN_SCOPE],
      };
    }
    const [v2, v1] = smartScopes(type, access);
    return {
      ...op,
      description: `${op.description ?? ''}\n\n**Scope:** \`${v2}\` (SMART v1: \`${v1}\`).`.trim(),
      security: secured([v2], [v1]),
      'x-smart-scopes': [v2, v1],
    };
  };

  // -- system level
  doc.tags.push({ name: 'System', description: 'Server-wide FHIR interactions and the CapabilityStatement' });
  add('/metadata', 'get', {
    operationId: 'capabilities',
    summary: 'The CapabilityStatement: what this server supports',
    description: 'Public: no access token needed. Every FHIR path in this document is generated from it.',
    tags: ['System'],
    parameters: [ref('parameters', '_format'), ref('parameters', '_pretty')],
    responses: {
      200: fhirResponse('The CapabilityStatement', schemaRef('CapabilityStatement')),
      ...errors([406, ...LOAD_ERRORS]),
    },
    security: [],
    'x-fhir-interaction': 'capabilities',
  });
  const systemCodes = new Set((rest.interaction ?? []).map((i) => i.code));
  const bundleKinds = ['transaction', 'batch'].filter((c) => systemCodes.has(c as 'transaction' | 'batch'));
  if (bundleKinds.length) {
    add('/', 'post', {
      operationId: 'transaction',
      summary: `Process a ${bundleKinds.join(' or ')} Bundle`,
      description:
        `POST a Bundle of type ${bundleKinds.map((k) => `\`${k}\``).join(' or ')}. ` +
        (bundleKinds.includes('transaction') ? 'A transaction is all or nothing: one failing entry fails it all and nothing is stored. ' : '') +
        (bundleKinds.includes('batch') ? 'A batch processes each entry on its own and reports each outcome in the response Bundle. ' : '') +
        'Every entry is validated before anything is stored.\n\n' +
        '**Scope:** each entry needs the scope of its own interaction (e.g. `system/ServiceRequest.c` to create a ServiceRequest).',
      tags: ['System'],
      parameters: [ref('parameters', 'Prefer'), ref('parameters', '_format'), ref('parameters', '_pretty')],
      requestBody: fhirBody('The transaction or batch Bundle', schemaRef('Bundle')),
      responses: {
        200: fhirResponse(`The ${bundleKinds.map((k) => `${k}-response`).join(' or ')} Bundle`, schemaRef('Bundle')),
        ...errors([400, ...AUTH_ERRORS, 404, 409, 412, 413, 415, 422, ...LOAD_ERRORS]),
      },
      security: secured([]),
      'x-fhir-interaction': bundleKinds.join(','),
    });
  }
  if (systemCodes.has('history-system')) {
    const [v2, v1] = smartScopes('*', 's');
    add('/_history', 'get', {
      operationId: 'history-system',
      summary: 'History of every resource on the server, newest first',
      description: `A history Bundle of every version of every resource.\n\n**Scope:** \`${v2}\` (SMART v1: \`${v1}\`).`,
      tags: ['System'],
      parameters: historyParameters(),
      responses: { 200: fhirResponse('A history Bundle', schemaRef('Bundle')), ...errors([400, ...AUTH_ERRORS, ...LOAD_ERRORS]) },
      security: secured([v2], [v1]),
      'x-fhir-interaction': 'history-system',
      'x-smart-scopes': [v2, v1],
    });
  }
  for (const op of rest.operation ?? []) {
    const def = served.operations.find((o) => o.name === op.name);
    addOperation(doc, add, secured, op, def, undefined, 'system');
  }

  // -- each resource type
  for (const resource of rest.resource ?? []) {
    const type = resource.type;
    const codes = new Set((resource.interaction ?? []).map((i) => i.code));
    const profiles = [resource.profile, ...(resource.supportedProfile ?? [])].filter((p): p is string => typeof p === 'string');
    doc.tags.push({ name: type, description: tagDescription(resource, profiles) });
    ensureResourceSchema(doc, type, profiles);
    const body = schemaRef(type);
    const idParam = ref('parameters', 'id');
    const format = [ref('parameters', '_format'), ref('parameters', '_pretty')];
    const readHeaders =
      resource.conditionalRead && resource.conditionalRead !== 'not-supported'
        ? [ref('parameters', 'If-None-Match'), ref('parameters', 'If-Modified-Since')]
        : [];
    const versioned = resource.versioning !== undefined && resource.versioning !== 'no-version';
    const writeHeaders = { ETag: ref('headers', 'ETag'), 'Last-Modified': ref('headers', 'Last-Modified') };
    const searchParams = searchParameters(resource);
    // The criteria go to components.parameters once per type and are referenced from search and conditional writes.
    const criteria = searchParams.criteria.map((p) => {
      doc.components.parameters[`${type}.${p.name}`] = p;
      return ref('parameters', `${type}.${p.name}`);
    });
    const common = { tags: [type], 'x-fhir-resource': type };

    if (codes.has('read')) {
      add(`/${type}/{id}`, 'get', fhirOp(type, 'r', {
        ...common,
        operationId: `${type}-read`,
        summary: `Read the current version of a ${type}`,
        description: readHeaders.length ? 'With If-None-Match or If-Modified-Since, an unchanged resource answers 304.' : undefined,
        parameters: [idParam, ...readHeaders, ...format],
        responses: {
          200: fhirResponse(`The ${type}`, body, versioned ? writeHeaders : undefined),
          ...(readHeaders.length ? { 304: { description: 'Not modified since the version or date the client holds' } } : {}),
          ...errors([400, ...AUTH_ERRORS, 404, 406, 410, ...LOAD_ERRORS]),
        },
        'x-fhir-interaction': 'read',
      }));
    }
    if (codes.has('vread')) {
      add(`/${type}/{id}/_history/{vid}`, 'get', fhirOp(type, 'r', {
        ...common,
        operationId: `${type}-vread`,
        summary: `Read one version of a ${type}`,
        parameters: [idParam, ref('parameters', 'vid'), ...format],
        responses: {
          200: fhirResponse(`That version of the ${type}`, body, writeHeaders),
          ...errors([400, ...AUTH_ERRORS, 404, 406, 410, ...LOAD_ERRORS]),
        },
        'x-fhir-interaction': 'vread',
      }));
    }
    if (codes.has('search-type')) {
      const include = resource.searchInclude?.length ? ' `_include`: ' + resource.searchInclude.map((s) => `\`${s}\``).join(', ') + '.' : '';
      const revinclude = resource.searchRevInclude?.length ? ' `_revinclude`: ' + resource.searchRevInclude.map((s) => `\`${s}\``).join(', ') + '.' : '';
      const searchText =
        `Search parameters: ${(resource.searchParam ?? []).map((sp) => `\`${sp.name}\` (${sp.type})`).join(', ') || 'none declared'}.` +
        ' Repeat a parameter for AND, separate values with commas for OR. An unknown parameter is a 400 unless the request says `Prefer: handling=lenient`.' +
        ' `_include` and `_revinclude` also need read permission on the types they bring in.' +
        include +
        revinclude;
      add(`/${type}`, 'get', fhirOp(type, 's', {
        ...common,
        operationId: `${type}-search-type`,
        summary: `Search ${type} resources`,
        description: searchText,
        parameters: [...criteria, ...searchParams.result, ...format],
        responses: { 200: fhirResponse('A searchset Bundle', schemaRef('Bundle')), ...errors([400, ...AUTH_ERRORS, 406, ...LOAD_ERRORS]) },
        'x-fhir-interaction': 'search-type',
      }));
      add(`/${type}/_search`, 'post', fhirOp(type, 's', {
        ...common,
        operationId: `${type}-search-type-post`,
        summary: `Search ${type} resources, parameters in a form body`,
        description: `The same search as \`GET /${type}\`, with the parameters sent as application/x-www-form-urlencoded (they stay out of URLs and logs). ${searchText}`,
        parameters: format,
        requestBody: {
          required: false,
          content: {
            'application/x-www-form-urlencoded': {
              schema: {
                type: 'object',
                properties: Object.fromEntries(
                  [...searchParams.criteria, ...searchParams.result].map((p): [string, JsonValue] => [p.name, { ...p.schema, description: p.description ?? '' }]),
                ),
              },
            },
          },
        },
        responses: { 200: fhirResponse('A searchset Bundle', schemaRef('Bundle')), ...errors([400, ...AUTH_ERRORS, 406, 413, 415, ...LOAD_ERRORS]) },
        'x-fhir-interaction': 'search-type',
      }));
    }
    if (codes.has('create')) {
      add(`/${type}`, 'post', fhirOp(type, 'c', {
        ...common,
        operationId: `${type}-create`,
        summary: `Create a ${type}`,
        description:
          'The server assigns the id (an id in the body is ignored). The resource is validated first; a rejected create stores nothing.' +
          (resource.conditionalCreate ? ' With `If-None-Exist: identifier=system|value` it is a conditional create: an existing match is answered with 200 and nothing is created; several matches are a 412.' : ''),
        parameters: [...(resource.conditionalCreate ? [ref('parameters', 'If-None-Exist')] : []), ref('parameters', 'Prefer'), ...format],
        requestBody: fhirBody(`The ${type} to create`, body),
        responses: {
          201: fhirResponse(`Created: the ${type} as stored`, body, { Location: ref('headers', 'Location'), ...writeHeaders }),
          ...(resource.conditionalCreate ? { 200: fhirResponse(`A ${type} already matched If-None-Exist: nothing was created`, body, writeHeaders) } : {}),
          ...errors([400, ...AUTH_ERRORS, 406, 412, 413, 415, 422, ...LOAD_ERRORS]),
        },
        'x-fhir-interaction': 'create',
      }));
    }
    if (codes.has('update')) {
      add(`/${type}/{id}`, 'put', fhirOp(type, 'u', {
        ...common,
        operationId: `${type}-update`,
        summary: `Update a ${type}` + (resource.updateCreate ? ' (or create it with this id)' : ''),
        description:
          "The body's id must be the URL's id. With `If-Match: W/\"3\"` the update is refused with 412 unless version 3 is current." +
          (resource.updateCreate ? ' An id that is not known yet creates the resource (201).' : ''),
        parameters: [idParam, ref('parameters', 'If-Match'), ref('parameters', 'Prefer'), ...format],
        requestBody: fhirBody(`The new version of the ${type}`, body),
        responses: {
          200: fhirResponse(`Updated: the ${type} as stored`, body, writeHeaders),
          ...(resource.updateCreate ? { 201: fhirResponse(`Created with the given id`, body, { Location: ref('headers', 'Location'), ...writeHeaders }) } : {}),
          ...errors([400, ...AUTH_ERRORS, 406, 409, 412, 413, 415, 422, ...LOAD_ERRORS]),
        },
        'x-fhir-interaction': 'update',
      }));
      if (resource.conditionalUpdate) {
        add(`/${type}`, 'put', fhirOp(type, 'cus', {
          ...common,
          operationId: `${type}-conditional-update`,
          summary: `Conditionally update a ${type} found by search criteria`,
          description:
            'The query string holds search criteria (at least one). No match: the resource is created (201); one match: it is updated; several: 412. It may create, so it needs both create and update permission.',
          parameters: [...criteria, ref('parameters', 'Prefer'), ...format],
          requestBody: fhirBody(`The new version of the ${type}`, body),
          responses: {
            200: fhirResponse(`Updated: the ${type} as stored`, body, writeHeaders),
            201: fhirResponse('No match: created', body, { Location: ref('headers', 'Location'), ...writeHeaders }),
            ...errors([400, ...AUTH_ERRORS, 405, 406, 412, 413, 415, 422, ...LOAD_ERRORS]),
          },
          'x-fhir-interaction': 'conditional-update',
        }));
      }
    }
    if (codes.has('delete')) {
      add(`/${type}/{id}`, 'delete', fhirOp(type, 'd', {
        ...common,
        operationId: `${type}-delete`,
        summary: `Delete a ${type}`,
        description: 'Afterwards a read answers 410 Gone; history keeps every version. Deleting what is already deleted or unknown is a 200. `If-Match` is honoured.',
        parameters: [idParam, ref('parameters', 'If-Match'), ...format],
        responses: {
          200: fhirResponse('Deleted (an informational OperationOutcome)', schemaRef('OperationOutcome')),
          ...errors([400, ...AUTH_ERRORS, 406, 412, ...LOAD_ERRORS]),
        },
        'x-fhir-interaction': 'delete',
      }));
      if (resource.conditionalDelete === 'single' || resource.conditionalDelete === 'multiple') {
        add(`/${type}`, 'delete', fhirOp(type, 'ds', {
          ...common,
          operationId: `${type}-conditional-delete`,
          summary: `Conditionally delete the ${type} found by search criteria`,
          description:
            resource.conditionalDelete === 'single'
              ? 'The query string holds search criteria (at least one). One match is deleted; no match is a 200; several matches are a 412.'
              : 'The query string holds search criteria (at least one). Every match is deleted.',
          parameters: [...criteria, ...format],
          responses: {
            200: fhirResponse('Deleted, or nothing matched (an informational OperationOutcome)', schemaRef('OperationOutcome')),
            ...errors([400, ...AUTH_ERRORS, 405, 406, 412, ...LOAD_ERRORS]),
          },
          'x-fhir-interaction': 'conditional-delete',
        }));
      }
    }
    if (codes.has('history-instance')) {
      add(`/${type}/{id}/_history`, 'get', fhirOp(type, 'r', {
        ...common,
        operationId: `${type}-history-instance`,
        summary: `Every version of one ${type}, newest first`,
        parameters: [idParam, ...historyParameters()],
        responses: { 200: fhirResponse('A history Bundle', schemaRef('Bundle')), ...errors([400, ...AUTH_ERRORS, 404, 406, ...LOAD_ERRORS]) },
        'x-fhir-interaction': 'history-instance',
      }));
    }
    if (codes.has('history-type')) {
      add(`/${type}/_history`, 'get', fhirOp(type, 's', {
        ...common,
        operationId: `${type}-history-type`,
        summary: `Every version of every ${type}, newest first`,
        parameters: historyParameters(),
        responses: { 200: fhirResponse('A history Bundle', schemaRef('Bundle')), ...errors([400, ...AUTH_ERRORS, 406, ...LOAD_ERRORS]) },
        'x-fhir-interaction': 'history-type',
      }));
    }
    for (const op of resource.operation ?? []) {
      const def = served.operations.find((o) => o.name === op.name);
      for (const level of ['type', 'instance'] as const) {
        if (def && !def.levels.includes(level)) continue;
        if (!def && level === 'instance') continue;
        addOperation(doc, add, secured, op, def, type, level, fhirOp);
      }
    }
  }

  nonFhirPaths(doc, add, secured);

  doc.components.securitySchemes = {
    [SMART_SCHEME]: {
      type: 'oauth2',
      description:
        'SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html): the client signs a JWT with its ' +
        'registered private key (RS384 or ES384) and exchanges it at the token endpoint (grant_type=client_credentials, ' +
        'client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer) for a bearer access token. ' +
        'Swagger UI cannot sign the assertion: get a token with your client and use the bearer scheme to try calls here.',
      flows: { clientCredentials: { tokenUrl: tokenUrl(cs, base), scopes: Object.fromEntries([...scopes].sort(([a], [b]) => a.localeCompare(b))) } },
    },
    [BEARER_SCHEME]: {
      type: 'http',
      scheme: 'bearer',
      bearerFormat: 'JWT',
      description: 'An access token from POST /auth/token (or the configured external issuer), sent as `Authorization: Bearer <token>`. It must carry the scope each call lists.',
    },
  };
  doc.tags.push(
    { name: 'Authorization', description: 'SMART Backend Services: discovery and the token endpoint' },
    { name: 'Health', description: 'Liveness, readiness and Prometheus metrics (public, for the platform)' },
    { name: 'Admin', description: `The operator's view of delivery into GP systems. Scope \`${ADMIN_SCOPE}\`.` },
  );
  return doc;
}

/** The OpenAPI document of the server `capabilityStatement(ctx, served)` describes, with a relative server. */
export function buildOpenApiDocument(served: Served, options: { serverUrl?: string } = {}): OpenApiDocument {
  const serverUrl = options.serverUrl ?? '/';
  const cs = capabilityStatement({ baseUrl: serverUrl.replace(/\/+$/, '') }, served);
  return openApiFromCapabilityStatement(cs, served, { serverUrl });
}

/** The document as served to one request: the request's base URL as server and token URL. */
export function forBaseUrl(doc: OpenApiDocument, baseUrl: string): OpenApiDocument {
  const smart = doc.components.securitySchemes[SMART_SCHEME];
  const flow = smart?.flows?.clientCredentials;
  const relativeToken = flow && !/^https?:\/\//.test(flow.tokenUrl);
  return {
    ...doc,
    servers: [{ url: baseUrl, description: 'This sp-bridge instance' }],
    components: {
      ...doc.components,
      securitySchemes:
        smart && flow && relativeToken
          ? {
              ...doc.components.securitySchemes,
              [SMART_SCHEME]: { ...smart, flows: { clientCredentials: { ...flow, tokenUrl: `${baseUrl}${flow.tokenUrl}` } } },
            }
          : doc.components.securitySchemes,
    },
  };
}

// ---- wiring ------------------------------------------------------------------------------------------------------

export interface OpenApiOptions extends Served {
  config: Pick<Config, 'baseUrl'>;
}

/**
 * Serves the document at `/docs/openapi.json` (and Swagger UI's own `/docs/json`, `/docs/yaml`) and Swagger UI at
 * `/docs`. These are static routes, so they win over the FHIR wildcard; they take no request body, so the FHIR
 * content-type parsers do not matter to them.
 */
export async function registerOpenApi(app: FastifyInstance, options: OpenApiOptions): Promise<void> {
  const doc = buildOpenApiDocument(options);
  const baseUrl = (req: FastifyRequest) => options.config.baseUrl ?? `${req.protocol}://${req.host}`;
  await app.register(swagger, {
    mode: 'static',
    specification: { document: doc as unknown as StaticDocumentSpec['document'] },
  });
  // Behind a proxy with a path (BASE_URL=https://host/fhir), the UI's asset links must carry the path too.
  const basePath = options.config.baseUrl ? new URL(options.config.baseUrl).pathname.replace(/\/+$/, '') : '';
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    ...(basePath ? { indexPrefix: basePath } : {}),
    theme: { title: 'sp-bridge API' },
    uiConfig: { deepLinking: true, docExpansion: 'none', defaultModelsExpandDepth: 0, tryItOutEnabled: false, validatorUrl: null },
    transformSpecificationClone: false,
    transformSpecification: (_spec, req) => forBaseUrl(doc, baseUrl(req)) as unknown as Record<string, unknown>,
  });
  app.get('/docs/openapi.json', async (req, reply) =>
    reply
      .header('Cache-Control', 'no-cache')
      .type('application/json; charset=utf-8')
      .send(JSON.stringify(forBaseUrl(doc, baseUrl(req)))),
  );
}

// ---- pieces ------------------------------------------------------------------------------------------------------

type Add = (path: string, method: HttpMethod, op: Operation) => void;
type Secured = (...alternatives: string[][]) => SecurityRequirement[];
type FhirOp = (type: string, access: Access, op: Omit<Operation, 'security' | 'x-smart-scopes'>) => Operation;

function addOperation(
  doc: OpenApiDocument,
  add: Add,
  secured: Secured,
  declared: fhir4.CapabilityStatementRestResourceOperation,
  def: OperationDefinition | undefined,
  type: string | undefined,
  level: 'system' | 'type' | 'instance',
  fhirOp?: FhirOp,
): void {
  const name = declared.name;
  const notes = OPERATION_NOTES[name];
  const path = level === 'system' ? `/$${name}` : level === 'type' ? `/${type}/$${name}` : `/${type}/{id}/$${name}`;
  const result = notes?.result ?? 'Resource';
  if (result !== 'Resource' && !doc.components.schemas[result]) ensureResourceSchema(doc, result, []);
  const resultSchema = schemaRef(result);
  const where = level === 'instance' ? ` on one ${type}` : level === 'type' ? ` on ${type}` : '';
  const description =
    `${notes?.summary ?? `The $${name} operation`}. Definition: ${declared.definition}` +
    (level === 'instance' ? ` (applied to ${type}/{id})` : '') +
    '.' +
    (def?.idempotent ? ' Call it with GET and query parameters, or POST a Parameters resource.' : ' Call it with POST.');
  const bodySchema: Schema =
    notes?.resourceBody && type ? { oneOf: [schemaRef('Parameters'), schemaRef(type)] } : schemaRef('Parameters');
  const parameters: (Parameter | Reference)[] = [...(level === 'instance' ? [ref('parameters', 'id')] : []), ref('parameters', '_format'), ref('parameters', '_pretty')];
  const errorCodes = [400, ...AUTH_ERRORS, 404, 406, 422, ...LOAD_ERRORS];
  const base = {
    tags: [type ?? 'System'],
    'x-fhir-interaction': 'operation',
    'x-fhir-operation': name,
    ...(type ? { 'x-fhir-resource': type } : {}),
  };
  const make = (op: Omit<Operation, 'security' | 'x-smart-scopes' | 'tags'>): Operation => {
    const full = { ...base, ...op };
    if (type && fhirOp) return fhirOp(type, 'r', full);
    const [v2, v1] = smartScopes('*', 'r');
    return { ...full, description: `${full.description ?? ''}\n\n**Scope:** \`${v2}\` (SMART v1: \`${v1}\`).`, security: secured([v2], [v1]), 'x-smart-scopes': [v2, v1] };
  };
  const opId = `${type ?? 'system'}-${name}-${level}`;
  add(path, 'post', make({
    operationId: opId,
    summary: `$${name}${where}`,
    description,
    parameters,
    requestBody: fhirBody(notes?.resourceBody ? `A Parameters resource, or the ${type} itself` : 'A Parameters resource with the input parameters', bodySchema, level !== 'instance'),
    responses: { 200: fhirResponse(`The result (${result})`, resultSchema), ...errors([...errorCodes, 413, 415]) },
  }));
  if (def?.idempotent) {
    add(path, 'get', make({
      operationId: `${opId}-get`,
      summary: `$${name}${where}`,
      description,
      parameters: [
        ...parameters,
        {
          name: 'parameters',
          in: 'query',
          description: `The operation's input parameters as name=value pairs (see ${declared.definition}); a Coding as system|code.`,
          schema: { type: 'object', additionalProperties: { type: 'string' } },
          style: 'form',
          explode: true,
        },
      ],
      responses: { 200: fhirResponse(`The result (${result})`, resultSchema), ...errors(errorCodes) },
    }));
  }
}

/** The declared search parameters (the criteria), and the result parameters a search of a stored type also takes. */
function searchParameters(resource: fhir4.CapabilityStatementRestResource): { criteria: Parameter[]; result: Parameter[] } {
  const criteria: Parameter[] = (resource.searchParam ?? []).map((sp) => ({
    name: sp.name,
    in: 'query',
    required: false,
    description: `${sp.documentation ?? sp.name} (FHIR ${sp.type}). ${SEARCH_TYPE_TEXT[sp.type] ?? ''}`.trim(),
    schema: { type: 'array', items: { type: 'string' } },
    style: 'form',
    explode: true,
    'x-fhir-search-type': sp.type,
  }));
  // Conformance types (served from files) declare no search parameters and take no result parameters either.
  if (criteria.length === 0) return { criteria, result: [] };
  const param = (name: string, description: string, schema: Schema): Parameter => ({ name, in: 'query', required: false, description, schema });
  const result = [
    param('_count', 'Results per page (default 20, at most 1000)', { type: 'integer', minimum: 0, maximum: 1000 }),
    param('_sort', 'Sort order: comma-separated parameter names, `-` for descending (e.g. `-_lastUpdated`)', { type: 'string' }),
    param('_total', 'Whether to count the matches', { type: 'string', enum: ['none', 'estimate', 'accurate'] }),
    param('_summary', '`count` answers only the total', { type: 'string', enum: ['count'] }),
    param('_elements', 'Comma-separated top-level elements to return', { type: 'string' }),
  ];
  if (resource.searchInclude?.length) {
    result.push({ ...param('_include', 'Also return the resources these references point to', { type: 'array', items: { type: 'string', enum: resource.searchInclude } }), style: 'form', explode: true });
  }
  if (resource.searchRevInclude?.length) {
    result.push({ ...param('_revinclude', 'Also return the resources that point to the matches', { type: 'array', items: { type: 'string', enum: resource.searchRevInclude } }), style: 'form', explode: true });
  }
  return { criteria, result };
}

const SEARCH_TYPE_TEXT: Record<string, string> = {
  token: '`system|code`, `|code`, `system|` or `code`; modifiers `:not`, `:missing`.',
  reference: '`Type/id` or a bare id; modifiers `:identifier` (system|value), `:Type`, `:missing`.',
  date: 'A date, partial date or instant with an optional prefix eq, ne, gt, lt, ge, le, sa, eb or ap (e.g. `ge2026-01`); `:missing`.',
  string: 'Case- and accent-insensitive prefix match; modifiers `:exact`, `:contains`, `:missing`.',
  number: 'A number with an optional prefix eq, ne, gt, lt, ge, le.',
  quantity: '[prefix]number|system|code.',
  uri: 'A URI; `:below`, `:above`.',
};

function historyParameters(): (Parameter | Reference)[] {
  return [ref('parameters', '_count'), ref('parameters', '_since'), ref('parameters', '_format'), ref('parameters', '_pretty')];
}

function errors(codes: number[]): Record<string, Reference> {
  return Object.fromEntries([...new Set(codes)].sort().map((c) => [String(c), ref('responses', `Error${c}`)]));
}

function fhirContent(schema: Schema): Record<string, MediaType> {
  return Object.fromEntries(JSON_TYPES.map((t) => [t, { schema }]));
}

function fhirResponse(description: string, schema: Schema, headers?: Record<string, Reference>): Response {
  return { description, ...(headers ? { headers } : {}), content: fhirContent(schema) };
}

function fhirBody(description: string, schema: Schema, required = true): RequestBody {
  return { description, required, content: fhirContent(schema) };
}

function specUrl(type: string): string {
  return `${R4}/${type.toLowerCase()}.html`;
}

function ensureResourceSchema(doc: OpenApiDocument, type: string, profiles: string[]): void {
  doc.components.schemas[type] = {
    type: 'object',
    description:
      `A FHIR R4 ${type} (${specUrl(type)}), JSON as the specification defines it; only resourceType is spelled out here.` +
      (profiles.length ? ` Profile${profiles.length > 1 ? 's' : ''}: ${profiles.join(', ')}.` : ''),
    required: ['resourceType'],
    properties: {
      resourceType: { type: 'string', enum: [type] },
      id: { type: 'string', pattern: '^[A-Za-z0-9\\-\\.]{1,64}$' },
      meta: { type: 'object', properties: { versionId: { type: 'string' }, lastUpdated: { type: 'string', format: 'date-time' }, profile: { type: 'array', items: { type: 'string' } } } },
    },
    additionalProperties: true,
  };
}

function tagDescription(resource: fhir4.CapabilityStatementRestResource, profiles: string[]): string {
  const lines = [resource.documentation ?? resource.type, `FHIR R4: ${specUrl(resource.type)}.`];
  if (profiles.length) {
    lines.push(
      `Validated against ${profiles.map((p) => `[${p.split('/').pop()}](${p})`).join(', ')} (GET /StructureDefinition lists the shipped profiles).`,
    );
  }
  return lines.join(' ');
}

function baseSchemas(): Record<string, Schema> {
  const loose = (type: string, description: string, extra: JsonObject = {}): Schema => ({
    type: 'object',
    description: `${description} (${specUrl(type)})`,
    required: ['resourceType'],
    properties: { resourceType: { type: 'string', enum: [type] }, ...extra },
    additionalProperties: true,
  });
  return {
    Resource: {
      type: 'object',
      description: 'Any FHIR R4 resource',
      required: ['resourceType'],
      properties: { resourceType: { type: 'string' } },
      additionalProperties: true,
    },
    OperationOutcome: loose('OperationOutcome', 'Every error, and the result of $validate: each issue with its severity, code, diagnostics and FHIRPath expression', {
      issue: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            severity: { type: 'string', enum: ['fatal', 'error', 'warning', 'information'] },
            code: { type: 'string' },
            diagnostics: { type: 'string' },
            expression: { type: 'array', items: { type: 'string' } },
          },
        },
      },
    }),
    Bundle: loose('Bundle', 'A Bundle: searchset, history, transaction, batch or their responses', {
      type: { type: 'string', enum: ['searchset', 'history', 'transaction', 'batch', 'transaction-response', 'batch-response'] },
      total: { type: 'integer' },
      link: { type: 'array', items: { type: 'object', properties: { relation: { type: 'string' }, url: { type: 'string' } } } },
      entry: { type: 'array', items: { type: 'object' } },
    }),
    Parameters: loose('Parameters', 'Operation input or output parameters', {
      parameter: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' } } } },
    }),
    CapabilityStatement: loose('CapabilityStatement', 'What this server supports'),
  };
}

function commonParameters(): Record<string, Parameter> {
  const header = (name: string, description: string, example?: string): Parameter => ({
    name,
    in: 'header',
    required: false,
    description,
    schema: { type: 'string' },
    ...(example ? { example } : {}),
  });
  return {
    id: { name: 'id', in: 'path', required: true, description: 'Logical id (1-64 of A-Z a-z 0-9 - .)', schema: { type: 'string', pattern: '^[A-Za-z0-9\\-\\.]{1,64}$' } },
    vid: { name: 'vid', in: 'path', required: true, description: 'Version id (meta.versionId)', schema: { type: 'string' } },
    _format: {
      name: '_format',
      in: 'query',
      required: false,
      description: 'Overrides Accept: json, application/fhir+json or application/json',
      schema: { type: 'string', enum: ['json', 'application/fhir+json', 'application/json'] },
    },
    _pretty: { name: '_pretty', in: 'query', required: false, description: 'Indent the JSON', schema: { type: 'boolean' } },
    _count: { name: '_count', in: 'query', required: false, description: 'Entries per page', schema: { type: 'integer', minimum: 0, maximum: 1000 } },
    _since: { name: '_since', in: 'query', required: false, description: 'Only versions changed after this instant', schema: { type: 'string', format: 'date-time' } },
    'If-Match': header('If-Match', 'Only if this version is current (otherwise 412)', 'W/"3"'),
    'If-None-Exist': header('If-None-Exist', 'Conditional create: search criteria; an existing match is returned instead of creating', 'identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009'),
    'If-None-Match': header('If-None-Match', '304 if this version is still current', 'W/"3"'),
    'If-Modified-Since': header('If-Modified-Since', '304 if not modified since this HTTP date'),
    Prefer: header('Prefer', 'return=minimal | return=representation | return=OperationOutcome; handling=lenient for searches', 'return=representation'),
  };
}

function commonHeaders(): Record<string, Header> {
  return {
    ETag: { description: 'The version: W/"{versionId}"', schema: { type: 'string' } },
    'Last-Modified': { description: 'When this version was stored', schema: { type: 'string' } },
    Location: { description: 'The new version: {base}/{type}/{id}/_history/{vid}', schema: { type: 'string', format: 'uri' } },
    'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } },
  };
}

function errorResponses(): Record<string, Response> {
  return Object.fromEntries(
    Object.entries(STATUS_TEXT).map(([code, description]) => [
      `Error${code}`,
      {
        description,
        ...(code === '429' || code === '503' ? { headers: { 'Retry-After': ref('headers', 'Retry-After') } } : {}),
        content: fhirContent(schemaRef('OperationOutcome')),
      },
    ]),
  );
}

function scopeDescription(scope: string): string {
  if (scope === ADMIN_SCOPE) return 'The delivery admin API';
  const m = /^system\/([^.]+)\.(.+)$/.exec(scope);
  if (!m) return scope;
  const [, type, access] = m;
  const what = type === '*' ? 'every resource type' : type;
  const verbs: Record<string, string> = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search', cu: 'create and update', read: 'read and search (SMART v1)', write: 'create, update and delete (SMART v1)' };
  return `${verbs[access] ?? access}: ${what}`;
}

function tokenUrl(cs: fhir4.CapabilityStatement, base: string): string {
  for (const rest of cs.rest ?? []) {
    const uris = rest.security?.extension?.find((e) => e.url === OAUTH_URIS);
    const token = uris?.extension?.find((e) => e.url === 'token')?.valueUri;
    if (token) return token;
  }
  return `${base}/auth/token`;
}

function infoDescription(cs: fhir4.CapabilityStatement): string {
  return [
    `${cs.implementation?.description ?? 'sp-bridge'}. FHIR ${cs.fhirVersion ?? '4.0.1'} JSON over HTTP (${R4}/http.html).`,
    '',
    'This document is generated from the CapabilityStatement at `GET /metadata`: every FHIR path below is an interaction or operation it declares.',
    '',
    '**Media types.** Requests and responses are `application/fhir+json` (`application/json` is accepted too). ' +
      'Resource bodies are sketched loosely here (resourceType only): the FHIR R4 specification and the profiles named per type are the contract.',
    '',
    '**Authorization.** SMART Backend Services: sign a client assertion JWT with your registered key, POST it to `/auth/token` ' +
      '(grant_type=client_credentials) and send the access token as `Authorization: Bearer`. Each call lists the scope it needs, ' +
      'in SMART v2 form (`system/ServiceRequest.c`) and v1 form (`system/ServiceRequest.write`); v2 letters combine (`system/Patient.rs`) ' +
      'and `system/*.…` covers every type. `sp-bridge/admin` is needed for the admin API and no wildcard implies it. Public: `/metadata`, `/.well-known/*`, ' +
      '`/auth/token`, `/healthz`, `/readyz`, `/metrics`, `/docs`.',
    '',
    '**Errors.** Every error is an OperationOutcome with the matching status; `X-Request-Id` identifies the request in the logs.',
  ].join('\n');
}

function nonFhirPaths(doc: OpenApiDocument, add: Add, secured: Secured): void {
  const json = (schema: Schema): Record<string, MediaType> => ({ 'application/json': { schema } });
  const oauthError: Schema = {
    type: 'object',
    required: ['error'],
    properties: {
      error: { type: 'string', enum: ['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope'] },
      error_description: { type: 'string' },
    },
  };
  add('/auth/token', 'post', {
    operationId: 'token',
    summary: 'Exchange a signed client assertion for an access token',
    description:
      'Served when AUTH_MODE=smart. SMART Backend Services token request (https://hl7.org/fhir/smart-app-launch/backend-services.html#obtain-access-token). ' +
      'The client assertion is a JWT signed with the client\'s registered private key (RS384 or ES384) with iss = sub = client id, ' +
      'aud = this token URL, a unique jti and exp at most 5 minutes ahead.',
    tags: ['Authorization'],
    requestBody: {
      required: true,
      content: {
        'application/x-www-form-urlencoded': {
          schema: {
            type: 'object',
            required: ['grant_type', 'scope', 'client_assertion_type', 'client_assertion'],
            properties: {
              grant_type: { type: 'string', enum: ['client_credentials'] },
              scope: { type: 'string', description: 'Space-separated scopes, e.g. `system/ServiceRequest.c system/Patient.rs`', example: 'system/ServiceRequest.c' },
              client_assertion_type: { type: 'string', enum: ['urn:ietf:params:oauth:client-assertion-type:jwt-bearer'] },
              client_assertion: { type: 'string', description: 'The signed JWT' },
            },
          },
        },
      },
    },
    responses: {
      200: {
        description: 'An access token',
        content: json({
          type: 'object',
          required: ['access_token', 'token_type', 'expires_in', 'scope'],
          properties: {
            access_token: { type: 'string' },
            token_type: { type: 'string', enum: ['bearer'] },
            expires_in: { type: 'integer', description: 'Seconds' },
            scope: { type: 'string', description: 'The scopes granted (those asked for that the client is allowed)' },
          },
        }),
      },
      400: { description: 'Malformed request, unknown grant type or scope the client may not have', content: json(oauthError) },
      401: { description: 'The client assertion is not valid for a registered client', content: json(oauthError) },
      ...errors([415, 429, 503]),
    },
    security: [],
  });
  add('/.well-known/smart-configuration', 'get', {
    operationId: 'smart-configuration',
    summary: 'SMART configuration: where and how to get tokens',
    description: 'Served when AUTH_MODE=smart.',
    tags: ['Authorization'],
    responses: {
      200: {
        description: 'SMART discovery document (https://hl7.org/fhir/smart-app-launch/conformance.html)',
        content: json({
          type: 'object',
          properties: {
            token_endpoint: { type: 'string', format: 'uri' },
            grant_types_supported: { type: 'array', items: { type: 'string' } },
            token_endpoint_auth_methods_supported: { type: 'array', items: { type: 'string' } },
            token_endpoint_auth_signing_alg_values_supported: { type: 'array', items: { type: 'string' } },
            scopes_supported: { type: 'array', items: { type: 'string' } },
            capabilities: { type: 'array', items: { type: 'string' } },
          },
          additionalProperties: true,
        }),
      },
    },
    security: [],
  });
  const check: Schema = { type: 'object', properties: { status: { type: 'string', enum: ['ok', 'failed'] }, reason: { type: 'string' } } };
  const readiness: Schema = {
    type: 'object',
    properties: {
      status: { type: 'string', enum: ['ready', 'unavailable'] },
      checks: { type: 'object', additionalProperties: check },
    },
  };
  add('/healthz', 'get', {
    operationId: 'healthz',
    summary: 'Liveness: the process is up (no database call)',
    tags: ['Health'],
    responses: { 200: { description: 'Up', content: json({ type: 'object', properties: { status: { type: 'string', enum: ['ok'] } } }) } },
    security: [],
  });
  add('/readyz', 'get', {
    operationId: 'readyz',
    summary: 'Readiness: database reachable, schema current, profiles and terminology loaded',
    tags: ['Health'],
    responses: {
      200: { description: 'Ready', content: json(readiness) },
      503: { description: 'Not ready: each failed check names its reason', content: json(readiness) },
    },
    security: [],
  });
  add('/metrics', 'get', {
    operationId: 'metrics',
    summary: 'Prometheus metrics',
    tags: ['Health'],
    responses: { 200: { description: 'Prometheus text exposition format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } } },
    security: [],
  });

  // -- admin (src/http/admin.ts)
  doc.components.schemas.Delivery = {
    type: 'object',
    description: 'One delivery of one resource version to one destination',
    properties: {
      id: { type: 'string' },
      destination: { type: 'string' },
      idempotencyKey: { type: 'string' },
      event: { type: 'string' },
      resourceType: { type: 'string' },
      resourceId: { type: 'string' },
      version: { type: 'integer' },
      patientRef: { type: 'string', nullable: true },
      state: schemaRef('DeliveryState'),
      attempts: { type: 'integer' },
      dueAt: { type: 'string', format: 'date-time' },
      claimedUntil: { type: 'string', format: 'date-time', nullable: true },
      correlationId: { type: 'string', nullable: true },
      lastSummary: { type: 'string', nullable: true },
      createdAt: { type: 'string', format: 'date-time' },
      updatedAt: { type: 'string', format: 'date-time' },
      finishedAt: { type: 'string', format: 'date-time', nullable: true },
    },
  };
  doc.components.schemas.DeliveryState = {
    type: 'string',
    enum: ['queued', 'in-flight', 'awaiting-ack', 'delivered', 'failed', 'dead', 'superseded'],
  };
  const adminSecurity = secured([ADMIN_SCOPE]);
  const adminDescription = `**Scope:** \`${ADMIN_SCOPE}\`.`;
  const adminErrors = errors([...AUTH_ERRORS, 429, 503]);
  const deliveryId: Parameter = { name: 'id', in: 'path', required: true, description: 'Delivery id', schema: { type: 'string', pattern: '^[1-9][0-9]{0,17}$' } };
  add('/admin/deliveries/stats', 'get', {
    operationId: 'admin-delivery-stats',
    summary: 'Counts per destination and state, and the age of the oldest waiting delivery',
    description: adminDescription,
    tags: ['Admin'],
    responses: {
      200: {
        description: 'Delivery statistics',
        content: json({
          type: 'object',
          properties: {
            generatedAt: { type: 'string', format: 'date-time' },
            states: { type: 'array', items: schemaRef('DeliveryState') },
            destinations: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  destination: { type: 'string' },
                  counts: { type: 'object', additionalProperties: { type: 'integer' } },
                  oldestQueuedAgeSeconds: { type: 'number', nullable: true },
                },
              },
            },
          },
        }),
      },
      ...adminErrors,
    },
    security: adminSecurity,
    'x-smart-scopes': [ADMIN_SCOPE],
  });
  add('/admin/deliveries', 'get', {
    operationId: 'admin-delivery-list',
    summary: 'Deliveries, newest first, paged',
    description: adminDescription,
    tags: ['Admin'],
    parameters: [
      { name: 'state', in: 'query', required: false, description: 'Only deliveries in this state', schema: schemaRef('DeliveryState') },
      { name: 'destination', in: 'query', required: false, description: 'Only deliveries to this destination', schema: { type: 'string' } },
      { name: '_count', in: 'query', required: false, description: 'Page size (default 50)', schema: { type: 'integer', minimum: 1, maximum: 500 } },
      { name: 'before', in: 'query', required: false, description: 'Only deliveries older than this delivery id (paging)', schema: { type: 'string' } },
    ],
    responses: {
      200: {
        description: 'A page of deliveries; `next` is the relative URL of the next page, absent on the last',
        content: json({ type: 'object', properties: { items: { type: 'array', items: schemaRef('Delivery') }, next: { type: 'string' } } }),
      },
      ...errors([400]),
      ...adminErrors,
    },
    security: adminSecurity,
    'x-smart-scopes': [ADMIN_SCOPE],
  });
  add('/admin/deliveries/{id}', 'get', {
    operationId: 'admin-delivery-read',
    summary: 'One delivery with every attempt',
    description: adminDescription,
    tags: ['Admin'],
    parameters: [deliveryId],
    responses: {
      200: {
        description: 'The delivery and its attempts',
        content: json({
          type: 'object',
          properties: {
            delivery: schemaRef('Delivery'),
            attempts: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  attempt: { type: 'integer' },
                  startedAt: { type: 'string', format: 'date-time' },
                  finishedAt: { type: 'string', format: 'date-time' },
                  outcome: { type: 'string' },
                  summary: { type: 'string' },
                  httpStatus: { type: 'integer', nullable: true },
                  worker: { type: 'string', nullable: true },
                  operationOutcome: { ...schemaRef('OperationOutcome') },
                },
              },
            },
          },
        }),
      },
      ...errors([404]),
      ...adminErrors,
    },
    security: adminSecurity,
    'x-smart-scopes': [ADMIN_SCOPE],
  });
  add('/admin/deliveries/{id}/replay', 'post', {
    operationId: 'admin-delivery-replay',
    summary: 'Queue a dead delivery again',
    description: `${adminDescription} Only a dead delivery can be replayed, and not once a newer version of the resource was delivered to the same destination (409).`,
    tags: ['Admin'],
    parameters: [deliveryId],
    responses: {
      200: { description: 'Queued again', content: json({ type: 'object', properties: { delivery: schemaRef('Delivery') } }) },
      ...errors([404, 409]),
      ...adminErrors,
    },
    security: adminSecurity,
    'x-smart-scopes': [ADMIN_SCOPE],
  });
}
