import pino, { type Bindings, type ChildLoggerOptions, type DestinationStream, type LogFn, type Logger } from 'pino';

/**
 * What keeps patient data and credentials out of the logs, in four layers applied to every line of every
 * logger made here and of its children (Fastify's request loggers, the delivery engine's, the audit log's):
 *
 * 1. `logMethod`: an Error logged on its own, or an object with `err` and no message, gets a fixed message;
 *    pino would otherwise use the error's message, which may be built from input values.
 * 2. `formatters.log` / `formatters.bindings`: every logged object is walked, at any depth: the value of any
 *    key that names patient data, resource content, a query or a credential (SENSITIVE_KEYS) is replaced;
 *    errors are reduced to what serializeError keeps; every other string is scrubbed by scrubText.
 * 3. pino's own redaction of REDACT_PATHS, for the request and response headers.
 * 4. The message itself, and any interpolation arguments, are scrubbed by scrubText.
 *
 * Request bodies and query values are never logged on purpose (app.ts logs the path and the names of the
 * query parameters); this is what stops them, and identifiers in free text, when something logs by mistake.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.nhsNumber',
  '*.birthDate',
  '*.address',
  '*.telecom',
  '*.identifier',
  '*.name',
  '*.given',
  '*.family',
  '*.access_token',
  '*.client_assertion',
  'resource',
  'body',
];

const CENSOR = '[redacted]';

/**
 * Keys whose values are never logged, at any depth. Compared lower-cased with everything but letters and
 * digits removed, so `birthDate`, `birth_date` and `BIRTHDATE` are one key.
 */
const SENSITIVE_KEYS = new Set([
  // Patient demographics (FHIR Patient, HumanName, Address, ContactPoint, Identifier) and their usual names.
  'name', 'names', 'given', 'family', 'prefix', 'suffix', 'text', 'div', 'narrative', 'display',
  'birthdate', 'dob', 'dateofbirth', 'deceaseddatetime',
  'address', 'addresses', 'line', 'city', 'district', 'postalcode', 'postcode', 'zip',
  'telecom', 'contact', 'phone', 'mobile', 'email', 'value',
  'identifier', 'identifiers', 'nhsnumber', 'nhs', 'patient', 'subject', 'person',
  // Resource content, request content, searches (query values identify patients), audit content.
  'resource', 'resources', 'body', 'payload', 'content', 'entry', 'entries', 'bundle',
  'query', 'querystring', 'search', 'criteria', 'ifnoneexist', 'form',
  'entity', 'entities', 'description', 'note', 'notes', 'comment',
  'diagnostics', 'operationoutcome', 'issue', 'issues',
  // Database error fields that hold statement parameters and row contents.
  'detail', 'hint', 'where', 'internalquery', 'parameters', 'values', 'bind',
  // Credentials and key material.
  'authorization', 'proxyauthorization', 'cookie', 'setcookie', 'xapikey', 'apikey',
  'token', 'accesstoken', 'refreshtoken', 'idtoken', 'bearer', 'jwt', 'assertion', 'clientassertion',
  'secret', 'clientsecret', 'password', 'passphrase', 'credentials',
  'key', 'privatekey', 'signingkey', 'pem', 'jwk', 'd', 'p', 'q', 'dp', 'dq', 'qi', 'k',
]);

/** Suffixes that mark a key as a credential or a FHIR choice value (`valueString`, `clientSecret`...). */
const SENSITIVE_KEY_RE = /^(value[a-z]+|.*(token|secret|password|passphrase|privatekey|assertion))$/;

function normaliseKey(key: string): string {
  return key.toLowerCase().replace(/[^a-z0-9]/g, '');
}

export function isSensitiveKey(key: string): boolean {
  const k = normaliseKey(key);
  return SENSITIVE_KEYS.has(k) || SENSITIVE_KEY_RE.test(k);
}

/**
 * Patterns that are never logged whatever key they are under, nor in a message: NHS numbers (any ten-digit
 * number standing alone, spaced 3-3-4 or not: the Modulus 11 check is not needed to hide one), JWTs (access
 * tokens, client assertions), bearer and basic credentials, PEM blocks, email addresses, UK telephone numbers
 * and postcodes, and URL query strings.
 */
const SCRUBS: [RegExp, string][] = [
  [/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|$)/g, '[pem]'],
  [/eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.?[A-Za-z0-9_-]*/g, '[jwt]'],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, '$1 [redacted]'],
  [/\?[^\s"'<>]*=[^\s"'<>]*/g, '?[query]'],
  [/[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/g, '[email]'],
  [/(?<![A-Za-z0-9])\d{3}([ \u00a0-]?)\d{3}\1\d{4}(?![A-Za-z0-9])/g, '[nhs-number]'],
  [/(?<![A-Za-z0-9+])(?:\+44[ \u00a0-]?(?:\(0\)[ \u00a0-]?)?|0)\d(?:[ \u00a0-]?\d){8,9}(?![A-Za-z0-9])/g, '[phone]'],
  [/(?<![A-Za-z0-9])(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?[ \u00a0]?\d[ABD-HJLNP-UW-Z]{2})(?![A-Za-z0-9])/gi, '[postcode]'],
];

export function scrubText(text: string): string {
  let out = text;
  for (const [re, replacement] of SCRUBS) out = out.replace(re, replacement);
  return out;
}

/** SQLSTATEs whose messages name only database objects or conditions, never statement values. */
const SAFE_SQLSTATE = /^(08|53|57|58)|^(40001|40P01|55P03|25P02|25006|42P01|42703|42883|42P07|3D000|3F000)$/;

/** Fields of a PostgreSQL error that hold names of database objects, not data. */
const PG_NAME_FIELDS = ['severity', 'schema', 'table', 'column', 'dataType', 'constraint', 'routine'] as const;

const IDENT_RE = /^[A-Za-z0-9_.$ -]{1,128}$/;

/** An error logged as an error: what it is, where it came from, and nothing said about the input. */
export interface SerializedError {
  type: string;
  code?: string;
  /** Only for errors whose messages never hold input: network failures and some database conditions. */
  message?: string;
  /** The stack's frames; its first line, the message, is replaced by the type and code. */
  stack?: string;
  /** PostgreSQL: names of the objects involved. */
  [pgField: string]: unknown;
  cause?: SerializedError;
}

/**
 * Errors are logged with their class, code and the frames of their stack only: messages of database errors
 * carry statement values (`invalid input syntax for type date: "..."`, a trigger's RAISE), their `detail`
 * the failing row; validation and FhirError messages quote the values they refuse; Fastify's name the URL.
 */
export function serializeError(err: unknown, depth = 0): SerializedError {
  if (!(err instanceof Error)) return { type: 'non-error thrown' };
  const e = err as Error & Record<string, unknown>;
  const type = safeIdent(err.constructor?.name) ?? safeIdent(err.name) ?? 'Error';
  const code = typeof e.code === 'string' && IDENT_RE.test(e.code) ? e.code : undefined;
  const out: SerializedError = { type };
  if (code) out.code = code;
  const safeMessage =
    (code !== undefined && SAFE_SQLSTATE.test(code) && typeof e.routine === 'string') ||
    (code !== undefined && /^E[A-Z0-9]+$/.test(code) && typeof e.syscall === 'string');
  if (safeMessage && typeof err.message === 'string') out.message = scrubText(err.message).slice(0, 500);
  if (typeof e.routine === 'string') {
    for (const field of PG_NAME_FIELDS) {
      const v = safeIdent(e[field]);
      if (v) out[field] = v;
    }
  }
  if (typeof err.stack === 'string') {
    const frames = err.stack.split('\n').filter((l) => /^\s+at \S/.test(l));
    out.stack = [`${type}${code ? ` [${code}]` : ''}`, ...frames.map((f) => scrubText(f))].join('\n');
  }
  if (depth < 3 && e.cause !== undefined) out.cause = serializeError(e.cause, depth + 1);
  if (depth < 3 && Array.isArray(e.errors)) out.errors = e.errors.slice(0, 5).map((x: unknown) => serializeError(x, depth + 1));
  return out;
}

function safeIdent(v: unknown): string | undefined {
  return typeof v === 'string' && IDENT_RE.test(v) ? v : undefined;
}

const MAX_DEPTH = 8;
const MAX_NODES = 2000;

/** The request and reply Fastify may log: method and path only, status only. */
function requestSummary(v: object): Record<string, unknown> {
  const r = v as { method?: unknown; url?: unknown; id?: unknown };
  const url = typeof r.url === 'string' ? r.url.split('?', 1)[0] : undefined;
  return { method: typeof r.method === 'string' ? r.method : undefined, path: url === undefined ? undefined : scrubText(url), id: r.id };
}

function replySummary(v: object): Record<string, unknown> {
  const statusCode = (v as { statusCode?: unknown }).statusCode;
  return { statusCode: typeof statusCode === 'number' ? statusCode : undefined };
}

/**
 * A copy of a logged value with sensitive keys censored, errors serialized and strings scrubbed; `key` is the
 * key it is logged under (`req` and `res` are summarised).
 */
export function sanitize(value: unknown, key?: string): unknown {
  const budget = { nodes: 0 };
  const seen = new WeakSet<object>();
  const walk = (v: unknown, depth: number, key?: string): unknown => {
    if (++budget.nodes > MAX_NODES) return '[truncated]';
    if (typeof v === 'string') return scrubText(v);
    if (typeof v !== 'object' || v === null) return v;
    if (v instanceof Error) return serializeError(v);
    if (v instanceof Date) return v;
    if (Buffer.isBuffer(v) || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return '[binary]';
    if (seen.has(v)) return '[circular]';
    if (depth >= MAX_DEPTH) return '[too deep]';
    if (key === 'req' || key === 'request') return requestSummary(v);
    if (key === 'res' || key === 'reply') return replySummary(v);
    seen.add(v);
    try {
      if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
      if (v instanceof Map) return walk(Object.fromEntries(v), depth, key);
      if (v instanceof Set) return walk([...v], depth, key);
      const toJSON = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') return walk(toJSON.call(v), depth + 1, key);
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v)) {
        let child: unknown;
        try {
          child = (v as Record<string, unknown>)[k];
        } catch {
          child = '[unreadable]';
        }
        out[k] = isSensitiveKey(k) && child !== undefined ? CENSOR : walk(child, depth + 1, k);
      }
      return out;
    } finally {
      seen.delete(v);
    }
  };
  return walk(value, 0, key);
}

/** A logged object (or a logger's bindings) as it is written: each top-level value through sanitize. */
function sanitizeObject(obj: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v instanceof Error) out[k] = serializeError(v);
    else out[k] = isSensitiveKey(k) && v !== undefined ? CENSOR : sanitize(v, k);
  }
  return out;
}

/** The message of a line that logs an error without one: its type, never its message. */
function errorMessage(err: unknown): string {
  return err instanceof Error ? `${serializeError(err).type} thrown` : 'error';
}

const logMethod = function (this: Logger, args: Parameters<LogFn>, method: LogFn): void {
  const list = [...(args as unknown[])];
  if (list[0] instanceof Error) {
    const err = list[0];
    list[0] = { err };
    if (typeof list[1] !== 'string') list.splice(1, 0, errorMessage(err));
  } else if (list[0] !== null && typeof list[0] === 'object') {
    const first = list[0] as { err?: unknown; msg?: unknown };
    if (typeof list[1] !== 'string' && first.msg === undefined && first.err !== undefined) list.splice(1, 0, errorMessage(first.err));
  }
  for (let i = 0; i < list.length; i++) {
    const v = list[i];
    if (typeof v === 'string') list[i] = scrubText(v);
    else if (i > 0 && typeof v === 'object' && v !== null) list[i] = sanitize(v);
  }
  (method as (...a: unknown[]) => void).apply(this, list);
};

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const logger = pino(
    {
      level,
      redact: { paths: REDACT_PATHS, censor: CENSOR },
      serializers: { err: (v: unknown) => (v instanceof Error ? serializeError(v) : v) },
      formatters: {
        log: (obj) => sanitizeObject(obj),
        bindings: (bindings) => sanitizeObject(bindings),
      },
      hooks: { logMethod },
    },
    destination,
  );
  // pino passes a child's bindings through formatters.bindings only for the root logger: children (Fastify's
  // per-request loggers, `component` loggers) are made through this, which every child inherits.
  type ChildFn = (this: Logger, bindings: Bindings, options?: ChildLoggerOptions<string>) => Logger;
  const child = logger.child as unknown as ChildFn;
  const sanitizedChild: ChildFn = function (bindings, options) {
    return child.call(this, sanitizeObject(bindings), options);
  };
  logger.child = sanitizedChild as unknown as Logger['child'];
  const setBindings = logger.setBindings;
  logger.setBindings = function (this: Logger, bindings: Bindings) {
    setBindings.call(this, sanitizeObject(bindings));
  };
  return logger;
}
