/**
 * The `fhir-rest` adapter: pushes each delivered version to a FHIR R4 REST endpoint over undici.
 *
 * Writes are idempotent either way `writeMode` chooses:
 * - `update` (default): `PUT [base]/[type]/[id]` with sp-bridge's own id, so a retry or a replay lands on the
 *   same record; a deletion is `DELETE [base]/[type]/[id]`.
 * - `conditional-create`: on the business identifier. A `created` event is `POST [base]/[type]` with
 *   `If-None-Exist: identifier=system|value`; later versions are conditional updates
 *   `PUT [base]/[type]?identifier=system|value`; a deletion is `DELETE [base]/[type]?identifier=...`, on the
 *   identifier of the last live version, which the engine passes as the deleted item's `resource`.
 * Every request carries `Idempotency-Key` and `X-Request-Id` set to the item's idempotency key.
 *
 * Outcomes: 2xx delivered (and 404/410 on a DELETE: already gone); 408, 429, 5xx, network errors and timeouts
 * retry, with `retryAfterMs` from Retry-After; any other status fails with the server's OperationOutcome (or one
 * describing the status). Summaries name the interaction and status, never a body or an identifier value.
 */
import { readFileSync } from 'node:fs';
import { Agent, request, type Dispatcher } from 'undici';
import type { AdapterCapabilities, AdapterFactory, DeliveryAdapter, DeliveryItem, DeliveryOutcome } from '../adapter';

const DEFAULT_TYPES = ['Patient', 'ServiceRequest', 'CarePlan', 'Observation', 'Task'];
const RESPONSE_LIMIT = 1024 * 1024;

export const fhirRestSettingsSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  type: 'object',
  additionalProperties: false,
  required: ['baseUrl'],
  properties: {
    baseUrl: { type: 'string', pattern: '^https?://[^\\s]+$', description: 'FHIR base URL, e.g. https://gp.example.nhs.uk/fhir/R4' },
    writeMode: {
      enum: ['update', 'conditional-create'],
      default: 'update',
      description: 'update: PUT [type]/[id] with our id; conditional-create: POST with If-None-Exist on the business identifier',
    },
    identifierSystems: {
      type: 'object',
      description: 'conditional-create: the identifier system to match on, per resource type (default: the first identifier with a system and value)',
      additionalProperties: { type: 'string', minLength: 1 },
    },
    resourceTypes: {
      type: 'array',
      items: { type: 'string', pattern: '^[A-Z][A-Za-z]+$' },
      minItems: 1,
      uniqueItems: true,
      default: DEFAULT_TYPES,
    },
    timeouts: {
      type: 'object',
      additionalProperties: false,
      properties: {
        connectMs: { type: 'integer', minimum: 1, default: 10000 },
        headersMs: { type: 'integer', minimum: 1, default: 30000 },
        bodyMs: { type: 'integer', minimum: 1, default: 30000 },
      },
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      properties: {
        caFile: { type: 'string', minLength: 1, description: 'PEM file of the CA(s) to trust instead of the default ones' },
        certFile: { type: 'string', minLength: 1, description: 'PEM client certificate (mutual TLS)' },
        keyFile: { type: 'string', minLength: 1, description: 'PEM private key of the client certificate' },
        keyPassphraseEnv: { type: 'string', minLength: 1, description: 'environment variable holding the key passphrase' },
        rejectUnauthorized: { type: 'boolean', default: true },
      },
    },
    auth: {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'tokenUrl', 'clientId', 'clientSecretEnv'],
      properties: {
        type: { const: 'oauth2-client-credentials' },
        tokenUrl: { type: 'string', pattern: '^https?://[^\\s]+$' },
        clientId: { type: 'string', minLength: 1 },
        clientSecretEnv: { type: 'string', minLength: 1, description: 'environment variable holding the client secret' },
        scope: { type: 'string' },
        clientAuthentication: { enum: ['basic', 'body'], default: 'basic', description: 'HTTP Basic or client_id/client_secret in the form' },
      },
    },
    headers: {
      type: 'object',
      description: 'extra request headers (not secrets: those come from the environment)',
      additionalProperties: { type: 'string' },
    },
  },
} as const;

export interface FhirRestSettings {
  baseUrl: string;
  writeMode: 'update' | 'conditional-create';
  identifierSystems: Record<string, string>;
  resourceTypes: string[];
  timeouts: { connectMs: number; headersMs: number; bodyMs: number };
  tls: { caFile?: string; certFile?: string; keyFile?: string; keyPassphraseEnv?: string; rejectUnauthorized: boolean };
  auth?: { tokenUrl: string; clientId: string; clientSecretEnv: string; scope?: string; clientAuthentication: 'basic' | 'body' };
  headers: Record<string, string>;
}

type Json = Record<string, unknown>;

function bad(setting: string, message: string): Error {
  return new Error(`fhir-rest setting '${setting}' ${message}`);
}

function obj(value: unknown, setting: string): Json {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(setting, 'must be an object');
  return value as Json;
}

function str(value: unknown, setting: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw bad(setting, 'must be a non-empty string');
  return value;
}

function posInt(value: unknown, setting: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw bad(setting, 'must be a positive integer');
  return value;
}

function httpUrl(value: unknown, setting: string): string {
  const text = str(value, setting);
  if (text === undefined) throw bad(setting, 'is required');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad(setting, 'is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(setting, 'must be an http(s) URL');
  return text.replace(/\/+$/, '');
}

/** Checks and defaults the settings (the engine checks the schema too; this names the setting on its own). */
export function parseFhirRestSettings(raw: Record<string, unknown>): FhirRestSettings {
  const writeMode = raw.writeMode ?? 'update';
  if (writeMode !== 'update' && writeMode !== 'conditional-create') throw bad('writeMode', "must be 'update' or 'conditional-create'");
  const identifierSystems: Record<string, string> = {};
  for (const [type, system] of Object.entries(obj(raw.identifierSystems, 'identifierSystems'))) {
    identifierSystems[type] = str(system, `identifierSystems.${type}`) as string;
  }
  let resourceTypes = DEFAULT_TYPES;
  if (raw.resourceTypes !== undefined) {
    if (!Array.isArray(raw.resourceTypes) || raw.resourceTypes.length === 0 || !raw.resourceTypes.every((t) => typeof t === 'string')) {
      throw bad('resourceTypes', 'must be a non-empty array of resource type names');
    }
    resourceTypes = raw.resourceTypes as string[];
  }
  const timeouts = obj(raw.timeouts, 'timeouts');
  const tls = obj(raw.tls, 'tls');
  if (tls.rejectUnauthorized !== undefined && typeof tls.rejectUnauthorized !== 'boolean') {
    throw bad('tls.rejectUnauthorized', 'must be true or false');
  }
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) throw bad('tls', 'needs both certFile and keyFile, or neither');
  let auth: FhirRestSettings['auth'];
  if (raw.auth !== undefined) {
    const a = obj(raw.auth, 'auth');
    if (a.type !== 'oauth2-client-credentials') throw bad('auth.type', "must be 'oauth2-client-credentials'");
    const clientAuthentication = a.clientAuthentication ?? 'basic';
    if (clientAuthentication !== 'basic' && clientAuthentication !== 'body') throw bad('auth.clientAuthentication', "must be 'basic' or 'body'");
    const clientId = str(a.clientId, 'auth.clientId');
    const clientSecretEnv = str(a.clientSecretEnv, 'auth.clientSecretEnv');
    if (!clientId) throw bad('auth.clientId', 'is required');
    if (!clientSecretEnv) throw bad('auth.clientSecretEnv', 'is required');
    auth = {
      tokenUrl: httpUrl(a.tokenUrl, 'auth.tokenUrl'),
      clientId,
      clientSecretEnv,
      scope: a.scope === undefined ? undefined : String(a.scope),
      clientAuthentication,
    };
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(obj(raw.headers, 'headers'))) {
    if (typeof value !== 'string') throw bad(`headers.${name}`, 'must be a string');
    headers[name.toLowerCase()] = value;
  }
  return {
    baseUrl: httpUrl(raw.baseUrl, 'baseUrl'),
    writeMode,
    identifierSystems,
    resourceTypes,
    timeouts: {
      connectMs: posInt(timeouts.connectMs, 'timeouts.connectMs', 10000),
      headersMs: posInt(timeouts.headersMs, 'timeouts.headersMs', 30000),
      bodyMs: posInt(timeouts.bodyMs, 'timeouts.bodyMs', 30000),
    },
    tls: {
      caFile: str(tls.caFile, 'tls.caFile'),
      certFile: str(tls.certFile, 'tls.certFile'),
      keyFile: str(tls.keyFile, 'tls.keyFile'),
      keyPassphraseEnv: str(tls.keyPassphraseEnv, 'tls.keyPassphraseEnv'),
      rejectUnauthorized: tls.rejectUnauthorized !== false,
    },
    auth,
    headers,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Outcomes

type IssueCode = fhir4.OperationOutcomeIssue['code'];

function outcomeOf(code: IssueCode, diagnostics: string, severity: fhir4.OperationOutcomeIssue['severity'] = 'error'): fhir4.OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] };
}

const STATUS_ISSUE: Record<number, IssueCode> = {
  400: 'invalid',
  401: 'login',
  403: 'forbidden',
  404: 'not-found',
  405: 'not-supported',
  406: 'not-supported',
  408: 'timeout',
  409: 'conflict',
  410: 'deleted',
  412: 'conflict',
  413: 'too-costly',
  415: 'not-supported',
  422: 'processing',
  429: 'throttled',
};

function issueForStatus(status: number): IssueCode {
  return STATUS_ISSUE[status] ?? (status >= 500 ? 'transient' : 'processing');
}

/** Retry-After as milliseconds from now: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function isOperationOutcome(value: unknown): value is fhir4.OperationOutcome {
  return typeof value === 'object' && value !== null && (value as Json).resourceType === 'OperationOutcome' && Array.isArray((value as Json).issue);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Errors may come from another realm (jest's vm, worker threads): no `instanceof Error`. */
function messageOf(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
}

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  const name = (err as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : 'Error';
}

/** A network-level failure (connect, TLS, timeout, reset) as a retry outcome. */
function networkRetry(what: string, err: unknown, settings: FhirRestSettings): DeliveryOutcome {
  const code = errorCode(err);
  const reasons: Record<string, string> = {
    UND_ERR_CONNECT_TIMEOUT: `no connection within ${settings.timeouts.connectMs} ms`,
    UND_ERR_HEADERS_TIMEOUT: `no response headers within ${settings.timeouts.headersMs} ms`,
    UND_ERR_BODY_TIMEOUT: `response body stalled for ${settings.timeouts.bodyMs} ms`,
    UND_ERR_SOCKET: 'the connection closed before a response',
    ECONNRESET: 'the connection was reset',
    ECONNREFUSED: 'the connection was refused',
  };
  const message = messageOf(err);
  const reason = reasons[code] ?? `${code}${message && message !== code ? `: ${message}` : ''}`;
  const timeout = code.endsWith('TIMEOUT') || code === 'ETIMEDOUT';
  const summary = `${what}: ${reason}`;
  return { kind: 'retry', summary, outcome: outcomeOf(timeout ? 'timeout' : 'transient', summary) };
}

/** `promise`, or a rejection as soon as `signal` aborts (the shared token fetch itself carries on). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

class OutcomeError extends Error {
  constructor(readonly outcome: DeliveryOutcome) {
    super(outcome.summary);
  }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function readCapped(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > RESPONSE_LIMIT) {
      body.destroy();
      break;
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** OAuth2 client-credentials tokens: fetched on first use, shared, cached until shortly before expiry. */
class TokenSource {
  private cached?: { token: string; expiresAt: number };
  private inflight?: Promise<string>;

  constructor(
    private readonly auth: NonNullable<FhirRestSettings['auth']>,
    private readonly secret: string,
    private readonly dispatcher: Dispatcher,
    private readonly settings: FhirRestSettings,
  ) {}

  async token(): Promise<string> {
    if (this.cached && this.cached.expiresAt > Date.now()) return this.cached.token;
    this.inflight ??= this.fetch().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** Forgets `token` (after a 401) so the next call fetches a new one. */
  invalidate(token: string): void {
    if (this.cached?.token === token) this.cached = undefined;
  }

  private async fetch(): Promise<string> {
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (this.auth.scope) form.set('scope', this.auth.scope);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if (this.auth.clientAuthentication === 'basic') {
      const pair = `${encodeURIComponent(this.auth.clientId)}:${encodeURIComponent(this.secret)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
    } else {
      form.set('client_id', this.auth.clientId);
      form.set('client_secret', this.secret);
    }
    const what = 'token request';
    let res: Response;
    try {
      const r = await request(this.auth.tokenUrl, {
        dispatcher: this.dispatcher,
        method: 'POST',
        headers,
        body: form.toString(),
        headersTimeout: this.settings.timeouts.headersMs,
        bodyTimeout: this.settings.timeouts.bodyMs,
      });
      res = { status: r.statusCode, headers: r.headers, text: await readCapped(r.body) };
    } catch (err) {
      throw new OutcomeError(networkRetry(what, err, this.settings));
    }
    const body = parseJson(res.text) as Json | undefined;
    if (res.status === 408 || res.status === 429 || res.status >= 500) {
      const summary = `${what} -> ${res.status}`;
      throw new OutcomeError({
        kind: 'retry',
        summary,
        retryAfterMs: parseRetryAfter(res.headers['retry-after']),
        outcome: outcomeOf(issueForStatus(res.status), summary),
        httpStatus: res.status,
      });
    }
    if (res.status < 200 || res.status >= 300 || typeof body?.access_token !== 'string') {
      const error = typeof body?.error === 'string' ? ` (${body.error})` : res.status < 300 ? ' without an access_token' : '';
      const summary = `${what} -> ${res.status}${error}`;
      throw new OutcomeError({ kind: 'failed', summary, outcome: outcomeOf('security', summary), httpStatus: res.status });
    }
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 300;
    const margin = Math.min(30_000, ttl * 100); // 30 s, or a tenth of a short lifetime
    this.cached = { token: body.access_token, expiresAt: Date.now() + ttl * 1000 - margin };
    return body.access_token;
  }
}

// ---------------------------------------------------------------------------------------------------------
// What to send

interface Plan {
  method: 'PUT' | 'POST' | 'DELETE';
  url: string;
  /** For summaries: e.g. `PUT ServiceRequest/abc` (never identifier values). */
  describe: string;
  body?: string;
  headers: Record<string, string>;
}

/** FHIR search token escaping (`\`, `|`, `,`, `$`) then URL encoding. */
function tokenPart(text: string): string {
  return encodeURIComponent(text.replace(/[\\|,$]/g, (c) => `\\${c}`));
}

function businessIdentifier(resource: fhir4.Resource, system: string | undefined): { system: string; value: string } | undefined {
  const identifiers = (resource as { identifier?: fhir4.Identifier[] }).identifier;
  if (!Array.isArray(identifiers)) return undefined;
  const found = identifiers.find((i) => i.system && i.value && (system === undefined || i.system === system));
  return found ? { system: found.system as string, value: found.value as string } : undefined;
}

/** The resource as sent: our version metadata removed, the id set (PUT by id) or removed (conditional). */
function outbound(resource: fhir4.Resource, id: string | undefined): string {
  const copy: fhir4.Resource = { ...resource };
  if (id === undefined) delete copy.id;
  else copy.id = id;
  if (copy.meta) {
    const { versionId: _v, lastUpdated: _l, ...rest } = copy.meta;
    if (Object.keys(rest).length > 0) copy.meta = rest;
    else delete copy.meta;
  }
  return JSON.stringify(copy);
}

function plan(item: DeliveryItem, settings: FhirRestSettings): Plan | DeliveryOutcome {
  const type = item.resourceType;
  const typeUrl = `${settings.baseUrl}/${encodeURIComponent(type)}`;
  const headers: Record<string, string> = { ...settings.headers, accept: 'application/fhir+json' };
  const deleting = item.event === 'deleted';

  if (settings.writeMode === 'update') {
    const instance = `${typeUrl}/${encodeURIComponent(item.resourceId)}`;
    if (deleting) return { method: 'DELETE', url: instance, describe: `DELETE ${type}/${item.resourceId}`, headers };
    if (!item.resource) return missingResource(item);
    return {
      method: 'PUT',
      url: instance,
      describe: `PUT ${type}/${item.resourceId}`,
      body: outbound(item.resource, item.resourceId),
      headers: { ...headers, 'content-type': 'application/fhir+json', prefer: 'return=minimal' },
    };
  }

  // conditional-create: everything keys on the business identifier.
  if (!item.resource) {
    if (deleting) {
      const summary = `cannot delete ${type}/${item.resourceId} in conditional-create mode without the resource (its identifier)`;
      return { kind: 'failed', summary, outcome: outcomeOf('not-supported', summary) };
    }
    return missingResource(item);
  }
  const wantedSystem = settings.identifierSystems[type];
  const identifier = businessIdentifier(item.resource, wantedSystem);
  if (!identifier) {
    const summary = `${type}/${item.resourceId} has no identifier${wantedSystem ? ` with system ${wantedSystem}` : ''} to match on (conditional-create mode)`;
    return { kind: 'failed', summary, outcome: outcomeOf('required', summary) };
  }
  const criteria = `identifier=${tokenPart(identifier.system)}|${tokenPart(identifier.value)}`;
  const bySystem = `${type}?identifier=${identifier.system}|…`;
  if (deleting) return { method: 'DELETE', url: `${typeUrl}?${criteria}`, describe: `DELETE ${bySystem}`, headers };
  const writeHeaders = { ...headers, 'content-type': 'application/fhir+json', prefer: 'return=minimal' };
  if (item.event === 'created') {
    return {
      method: 'POST',
      url: typeUrl,
      describe: `POST ${type} (If-None-Exist on ${identifier.system})`,
      body: outbound(item.resource, undefined),
      headers: { ...writeHeaders, 'if-none-exist': criteria },
    };
  }
  return { method: 'PUT', url: `${typeUrl}?${criteria}`, describe: `PUT ${bySystem}`, body: outbound(item.resource, undefined), headers: writeHeaders };
}

function missingResource(item: DeliveryItem): DeliveryOutcome {
  const summary = `${item.event} ${item.resourceType}/${item.resourceId} has no resource to send`;
  return { kind: 'failed', summary, outcome: outcomeOf('required', summary) };
}

function classify(p: Plan, res: Response): DeliveryOutcome {
  const httpStatus = res.status;
  const summary = `${p.describe} -> ${httpStatus}`;
  if (httpStatus >= 200 && httpStatus < 300) {
    const already = p.method === 'POST' && httpStatus === 200 ? ' (already present)' : '';
    return { kind: 'delivered', summary: summary + already, httpStatus };
  }
  if (p.method === 'DELETE' && (httpStatus === 404 || httpStatus === 410)) {
    return { kind: 'delivered', summary: `${summary} (already gone)`, httpStatus };
  }
  const body = parseJson(res.text);
  const outcome = isOperationOutcome(body) ? body : outcomeOf(issueForStatus(httpStatus), `The destination answered ${httpStatus}`);
  if (httpStatus === 408 || httpStatus === 429 || httpStatus >= 500) {
    return { kind: 'retry', summary, retryAfterMs: parseRetryAfter(res.headers['retry-after']), outcome, httpStatus };
  }
  return { kind: 'failed', summary, outcome, httpStatus };
}

// ---------------------------------------------------------------------------------------------------------
// The adapter

class FhirRestAdapter implements DeliveryAdapter {
  readonly capabilities: AdapterCapabilities;
  private readonly agent: Agent;
  private readonly tokens?: TokenSource;

  constructor(private readonly settings: FhirRestSettings, env: NodeJS.ProcessEnv) {
    this.capabilities = { resourceTypes: settings.resourceTypes, asyncAcknowledgement: false };
    const read = (file: string | undefined, setting: string): Buffer | undefined => {
      if (file === undefined) return undefined;
      try {
        return readFileSync(file);
      } catch (err) {
        throw bad(setting, `names a file that cannot be read (${errorCode(err)})`);
      }
    };
    const secret = settings.auth ? env[settings.auth.clientSecretEnv] : undefined;
    if (settings.auth && !secret) throw bad('auth.clientSecretEnv', `names ${settings.auth.clientSecretEnv}, which is not set`);
    let passphrase: string | undefined;
    if (settings.tls.keyPassphraseEnv) {
      passphrase = env[settings.tls.keyPassphraseEnv];
      if (!passphrase) throw bad('tls.keyPassphraseEnv', `names ${settings.tls.keyPassphraseEnv}, which is not set`);
    }
    this.agent = new Agent({
      connect: {
        timeout: settings.timeouts.connectMs,
        rejectUnauthorized: settings.tls.rejectUnauthorized,
        ca: read(settings.tls.caFile, 'tls.caFile'),
        cert: read(settings.tls.certFile, 'tls.certFile'),
        key: read(settings.tls.keyFile, 'tls.keyFile'),
        passphrase,
      },
      headersTimeout: settings.timeouts.headersMs,
      bodyTimeout: settings.timeouts.bodyMs,
    });
    if (settings.auth) this.tokens = new TokenSource(settings.auth, secret as string, this.agent, settings);
  }

  async deliver(item: DeliveryItem, signal: AbortSignal): Promise<DeliveryOutcome> {
    if (!this.settings.resourceTypes.includes(item.resourceType)) {
      const summary = `${item.resourceType} is not delivered to this destination`;
      return { kind: 'failed', summary, outcome: outcomeOf('not-supported', summary) };
    }
    const p = plan(item, this.settings);
    if ('kind' in p) return p;
    try {
      let res = await this.send(p, item, signal);
      if (res.response.status === 401 && this.tokens && res.token) {
        this.tokens.invalidate(res.token);
        res = await this.send(p, item, signal);
      }
      return classify(p, res.response);
    } catch (err) {
      if (err instanceof OutcomeError) return err.outcome;
      if (signal.aborted) {
        const summary = `${p.describe}: aborted before an answer`;
        return { kind: 'retry', summary, outcome: outcomeOf('transient', summary) };
      }
      if (errorCode(err) === 'UND_ERR_INVALID_ARG') {
        const summary = `${p.describe}: the request could not be built (${messageOf(err)})`;
        return { kind: 'failed', summary, outcome: outcomeOf('exception', summary) };
      }
      return networkRetry(p.describe, err, this.settings);
    }
  }

  private async send(p: Plan, item: DeliveryItem, signal: AbortSignal): Promise<{ response: Response; token?: string }> {
    const headers: Record<string, string> = {
      ...p.headers,
      'idempotency-key': item.idempotencyKey,
      'x-request-id': item.idempotencyKey,
    };
    const token = this.tokens ? await abortable(this.tokens.token(), signal) : undefined;
    if (token) headers.authorization = `Bearer ${token}`;
    const r = await request(p.url, {
      dispatcher: this.agent,
      method: p.method,
      headers,
      body: p.body,
      signal,
      headersTimeout: this.settings.timeouts.headersMs,
      bodyTimeout: this.settings.timeouts.bodyMs,
    });
    return { response: { status: r.statusCode, headers: r.headers, text: await readCapped(r.body) }, token };
  }

  async stop(): Promise<void> {
    await this.agent.close();
  }
}

export const fhirRestAdapter: AdapterFactory = {
  name: 'fhir-rest',
  settingsSchema: fhirRestSettingsSchema as unknown as Record<string, unknown>,
  create(settings, env) {
    return new FhirRestAdapter(parseFhirRestSettings(settings), env);
  },
};
