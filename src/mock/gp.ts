/**
 * mock-gp: a loopback FHIR R4 receiver standing in for a GP system, for testing delivery adapters and for
 * integration testers (`sp-bridge mock-gp`). It keeps what it receives in memory (per type and id, every
 * version), de-duplicates writes on `Idempotency-Key`, counts deliveries and duplicates, can be told to fail
 * (status, Retry-After, delay, dropped connection) through a control API, and issues OAuth2
 * client-credentials tokens. Not for production: no persistence, no validation beyond resourceType and id.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { operationOutcome } from '../errors';
import { GpStore, parseIdentifierCriteria, type StoredVersion } from './gp-store';

export interface MockGpAuth {
  clientId: string;
  clientSecret: string;
  /** Lifetime of issued tokens (default 3600). */
  tokenTtlSeconds?: number;
}

export interface MockGpOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. Anything but a loopback address needs `allowNonLoopback`. */
  host?: string;
  allowNonLoopback?: boolean;
  /** When set, FHIR requests need a bearer token from `POST /oauth/token`. */
  auth?: MockGpAuth;
  /** One line per request (method, path without query, status); never bodies. */
  log?: (line: string) => void;
  /** Serve HTTPS with this key and certificate (PEM); with `requireClientCert`, only clients with a certificate `ca` trusts. */
  tls?: { key: string | Buffer; cert: string | Buffer; ca?: string | Buffer; requireClientCert?: boolean };
}

/** What the next matching request(s) should suffer. */
export interface FailRule {
  /** Answer with this status (and `outcome`, or an OperationOutcome describing it). */
  status?: number;
  /** How many requests this rule applies to (default 1). */
  count?: number;
  /** Retry-After header value: seconds, or an HTTP date. */
  retryAfter?: number | string;
  /** Wait this long first; without `status` or `drop` the request is then handled normally. */
  delayMs?: number;
  /** Close the socket without answering. */
  drop?: boolean;
  outcome?: fhir4.OperationOutcome;
  /** Which requests it applies to: FHIR interactions (default) or the token endpoint. */
  target?: 'fhir' | 'token';
}

export interface ReceivedRequest {
  seq: number;
  at: string;
  method: string;
  /** Path without the query string. */
  path: string;
  resourceType?: string;
  id?: string;
  idempotencyKey?: string;
  requestId?: string;
  ifNoneExist?: string;
  /** The conditional criteria of a conditional update or delete (`identifier=...`). */
  criteria?: string;
  status: number;
  /** Answered from the idempotency-key record: nothing was written. */
  duplicate: boolean;
  /** Answered (or dropped) by a fail rule. */
  injected: boolean;
  dropped: boolean;
}

export interface ReceivedSummary {
  requests: ReceivedRequest[];
  /** Writes that changed the store (first arrival of an idempotency key, or writes without one). */
  deliveries: number;
  /** Writes answered from the idempotency-key record. */
  duplicates: number;
  tokensIssued: number;
  /** Live resources per type. */
  stored: Record<string, number>;
}

export interface MockGp {
  /** Base URL, e.g. http://127.0.0.1:40123 (no trailing slash). */
  url: string;
  port: number;
  host: string;
  store: GpStore;
  received(): ReceivedSummary;
  fail(rule: FailRule): void;
  reset(): void;
  /** Invalidates every issued token: the next FHIR request with one gets 401. */
  revokeTokens(): void;
  close(): Promise<void>;
  /** Settles once the server has closed (by `close()` or `POST /_control/shutdown`). */
  closed: Promise<void>;
}

interface Reply {
  status: number;
  headers: Record<string, string>;
  body?: unknown;
}

const FHIR_JSON = 'application/fhir+json';
const TYPE_RE = /^[A-Z][A-Za-z]{1,63}$/;
const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;
const BODY_LIMIT = 10 * 1024 * 1024;
/** `received().requests` keeps the latest this many (the counts are never trimmed). */
const MAX_RECORDED = 10_000;

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function outcomeReply(status: number, code: fhir4.OperationOutcomeIssue['code'], diagnostics: string): Reply {
  return { status, headers: { 'content-type': FHIR_JSON }, body: operationOutcome('error', code, diagnostics) };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > BODY_LIMIT) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

export async function startMockGp(options: MockGpOptions = {}): Promise<MockGp> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host) && !options.allowNonLoopback) {
    throw new Error(`mock-gp binds to loopback only; refusing host '${host}' (give --host explicitly to override)`);
  }
  const store = new GpStore();
  const log = options.log;
  let requests: ReceivedRequest[] = [];
  let deliveries = 0;
  let duplicates = 0;
  let tokensIssued = 0;
  let seq = 0;
  /** Bumped by reset(): a request delayed across a reset is abandoned, not applied to the fresh state. */
  let generation = 0;
  let rules: FailRule[] = [];
  let idempotent = new Map<string, Reply>();
  let tokens = new Map<string, number>(); // token -> expiry (ms since epoch)
  const timers = new Set<NodeJS.Timeout>();
  let base = '';

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  function takeRule(target: 'fhir' | 'token'): FailRule | undefined {
    const index = rules.findIndex((r) => (r.target ?? 'fhir') === target);
    if (index < 0) return undefined;
    const rule = rules[index];
    const left = (rule.count ?? 1) - 1;
    if (left <= 0) rules.splice(index, 1);
    else rules[index] = { ...rule, count: left };
    return rule;
  }

  function metadata(): Reply {
    const capability = {
      resourceType: 'CapabilityStatement',
      status: 'active',
      date: new Date().toISOString(),
      kind: 'instance',
      software: { name: 'sp-bridge mock-gp' },
      fhirVersion: '4.0.1',
      format: ['json'],
      rest: [{ mode: 'server', interaction: [{ code: 'transaction' }] }],
    };
    return { status: 200, headers: { 'content-type': FHIR_JSON }, body: capability };
  }

  function versionReply(type: string, stored: StoredVersion, status: number, minimal: boolean): Reply {
    const id = stored.resource?.id ?? '';
    const headers: Record<string, string> = {
      'content-type': FHIR_JSON,
      etag: `W/"${stored.versionId}"`,
      'last-modified': new Date(stored.lastUpdated).toUTCString(),
      location: `${base}/${type}/${id}/_history/${stored.versionId}`,
    };
    return minimal ? { status, headers } : { status, headers, body: stored.resource };
  }

  function parseResource(type: string, text: string): { resource: fhir4.Resource } | { reply: Reply } {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { reply: outcomeReply(400, 'structure', 'The body is not valid JSON') };
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return { reply: outcomeReply(400, 'structure', 'The body is not a FHIR resource') };
    }
    const resource = parsed as fhir4.Resource;
    if (resource.resourceType !== type) {
      return {
        reply: outcomeReply(400, 'invalid', `resourceType '${String(resource.resourceType)}' does not match the URL's '${type}'`),
      };
    }
    return { resource };
  }

  /** A FHIR interaction on /Type, /Type/id or /Type/id/_history/vid. */
  async function fhir(req: IncomingMessage, text: string, segments: string[], query: string, record: ReceivedRequest): Promise<Reply> {
    const method = req.method ?? 'GET';
    const [type, id, historyWord, vid] = segments;
    if (!TYPE_RE.test(type) || segments.length > 4 || (id !== undefined && !ID_RE.test(id))) {
      return outcomeReply(404, 'not-supported', 'Unknown route');
    }
    if (historyWord !== undefined && (historyWord !== '_history' || vid === undefined || method !== 'GET')) {
      return outcomeReply(404, 'not-supported', 'Unknown route');
    }
    const minimal = /return=minimal/.test(header(req, 'prefer') ?? '');
    const criteria = parseIdentifierCriteria(query);

    if (method === 'GET') {
      if (id === undefined) {
        const matches = criteria ? store.search(type, criteria) : store.search(type);
        const bundle = {
          resourceType: 'Bundle',
          type: 'searchset',
          total: matches.length,
          entry: matches.map((r) => ({ fullUrl: `${base}/${type}/${r.id}`, resource: r, search: { mode: 'match' } })),
        };
        return { status: 200, headers: { 'content-type': FHIR_JSON }, body: bundle };
      }
      const stored = vid !== undefined ? store.version(type, id, vid) : store.current(type, id);
      if (!stored) return outcomeReply(404, 'not-found', `${type}/${id}${vid ? `/_history/${vid}` : ''} is not known`);
      if (!stored.resource) return outcomeReply(410, 'deleted', `${type}/${id} was deleted`);
      return versionReply(type, stored, 200, false);
    }

    if (method === 'DELETE') {
      if (id !== undefined) {
        if (!store.current(type, id)) return outcomeReply(404, 'not-found', `${type}/${id} is not known`);
        if (store.delete(type, id)) deliveries++;
        return { status: 204, headers: {} };
      }
      if (!criteria) return outcomeReply(400, 'invalid', 'A conditional delete needs identifier=system|value');
      record.criteria = query;
      const matches = store.search(type, criteria);
      if (matches.length > 1) return outcomeReply(412, 'multiple-matches', `${matches.length} ${type} resources match`);
      if (matches.length === 1 && store.delete(type, matches[0].id as string)) deliveries++;
      return { status: 204, headers: {} };
    }

    if (method !== 'POST' && method !== 'PUT') return outcomeReply(405, 'not-supported', `${method} is not supported`);
    const parsed = parseResource(type, text);
    if ('reply' in parsed) return parsed.reply;
    const resource = parsed.resource;

    if (method === 'POST') {
      if (id !== undefined) return outcomeReply(405, 'not-supported', 'POST to an instance is not supported');
      const ifNoneExist = header(req, 'if-none-exist');
      if (ifNoneExist !== undefined) {
        record.ifNoneExist = ifNoneExist;
        const wanted = parseIdentifierCriteria(ifNoneExist);
        if (!wanted) return outcomeReply(400, 'invalid', 'If-None-Exist must be identifier=system|value');
        const matches = store.search(type, wanted);
        if (matches.length > 1) return outcomeReply(412, 'multiple-matches', `${matches.length} ${type} resources match If-None-Exist`);
        if (matches.length === 1) {
          return versionReply(type, store.current(type, matches[0].id as string) as StoredVersion, 200, minimal);
        }
      }
      const { id: _ignored, ...withoutId } = resource;
      const { version } = store.put(type, withoutId as fhir4.Resource);
      deliveries++;
      return versionReply(type, version, 201, minimal);
    }

    // PUT
    if (id !== undefined) {
      if (resource.id !== id) return outcomeReply(400, 'invalid', `The body's id '${String(resource.id)}' does not match the URL's '${id}'`);
      const { version, created } = store.put(type, resource, id);
      deliveries++;
      return versionReply(type, version, created ? 201 : 200, minimal);
    }
    if (!criteria) return outcomeReply(400, 'invalid', 'A conditional update needs identifier=system|value');
    record.criteria = query;
    const matches = store.search(type, criteria);
    if (matches.length > 1) return outcomeReply(412, 'multiple-matches', `${matches.length} ${type} resources match`);
    if (resource.id !== undefined && matches.length === 1 && resource.id !== matches[0].id) {
      return outcomeReply(400, 'invalid', `The body's id '${resource.id}' is not the matched resource's`);
    }
    const { version, created } = store.put(type, resource, matches[0]?.id);
    deliveries++;
    return versionReply(type, version, created ? 201 : 200, minimal);
  }

  function token(req: IncomingMessage, text: string): Reply {
    const json = { 'content-type': 'application/json', 'cache-control': 'no-store' };
    const form = new URLSearchParams(text);
    if (form.get('grant_type') !== 'client_credentials') {
      return { status: 400, headers: json, body: { error: 'unsupported_grant_type' } };
    }
    let clientId = form.get('client_id') ?? undefined;
    let clientSecret = form.get('client_secret') ?? undefined;
    const basic = /^Basic\s+(.+)$/i.exec(header(req, 'authorization') ?? '');
    if (basic) {
      const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      clientId = decodeURIComponent(decoded.slice(0, colon));
      clientSecret = decodeURIComponent(decoded.slice(colon + 1));
    }
    const auth = options.auth;
    if (auth && (clientId !== auth.clientId || clientSecret === undefined || !safeEqual(clientSecret, auth.clientSecret))) {
      return { status: 401, headers: json, body: { error: 'invalid_client' } };
    }
    const ttl = auth?.tokenTtlSeconds ?? 3600;
    const accessToken = randomBytes(24).toString('base64url');
    tokens.set(accessToken, Date.now() + ttl * 1000);
    tokensIssued++;
    return { status: 200, headers: json, body: { access_token: accessToken, token_type: 'Bearer', expires_in: ttl } };
  }

  function authorized(req: IncomingMessage): boolean {
    if (!options.auth) return true;
    const bearer = /^Bearer\s+(\S+)$/i.exec(header(req, 'authorization') ?? '');
    const expiry = bearer ? tokens.get(bearer[1]) : undefined;
    return expiry !== undefined && expiry > Date.now();
  }

  function received(): ReceivedSummary {
    return { requests: requests.map((r) => ({ ...r })), deliveries, duplicates, tokensIssued, stored: store.counts() };
  }

  function reset(): void {
    store.clear();
    requests = [];
    deliveries = duplicates = tokensIssued = 0;
    rules = [];
    idempotent = new Map();
    tokens = new Map();
    generation++;
  }

  function control(req: IncomingMessage, text: string, action: string): Reply {
    const json = { 'content-type': 'application/json' };
    const method = req.method ?? 'GET';
    if (action === 'received' && method === 'GET') return { status: 200, headers: json, body: received() };
    if (method !== 'POST') return { status: 405, headers: json, body: { error: 'use POST' } };
    switch (action) {
      case 'fail': {
        let body: unknown;
        try {
          body = JSON.parse(text || '{}');
        } catch {
          return { status: 400, headers: json, body: { error: 'body is not JSON' } };
        }
        const list = (Array.isArray(body) ? body : [body]) as FailRule[];
        rules.push(...list);
        return { status: 200, headers: json, body: { queued: rules.length } };
      }
      case 'reset':
        reset();
        return { status: 200, headers: json, body: { reset: true } };
      case 'revoke-tokens':
        tokens = new Map();
        return { status: 200, headers: json, body: { revoked: true } };
      case 'shutdown':
        setImmediate(() => void close());
        return { status: 200, headers: json, body: { closing: true } };
      default:
        return { status: 404, headers: json, body: { error: `unknown control action '${action}'` } };
    }
  }

  function send(res: ServerResponse, reply: Reply): void {
    if (res.destroyed || res.writableEnded) return;
    const body = reply.body === undefined ? undefined : JSON.stringify(reply.body);
    res.writeHead(reply.status, reply.headers);
    res.end(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://mock-gp.invalid');
    const segments = url.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
    const query = url.search;
    // The whole request is read before anything else, as a real server would: a client that gives up while
    // the answer is delayed has still delivered.
    const text = method === 'GET' || method === 'HEAD' ? '' : await readBody(req);

    if (segments[0] === '_control') {
      send(res, control(req, text, segments.slice(1).join('/')));
      return;
    }
    if (segments.length === 1 && segments[0] === 'metadata' && method === 'GET') {
      send(res, metadata());
      return;
    }

    const isToken = segments.length === 2 && segments[0] === 'oauth' && segments[1] === 'token' && method === 'POST';
    const record: ReceivedRequest = {
      seq: ++seq,
      at: new Date().toISOString(),
      method,
      path: url.pathname,
      resourceType: isToken ? undefined : segments[0],
      id: isToken ? undefined : segments[1],
      idempotencyKey: header(req, 'idempotency-key'),
      requestId: header(req, 'x-request-id'),
      status: 0,
      duplicate: false,
      injected: false,
      dropped: false,
    };
    if (!isToken) {
      requests.push(record);
      if (requests.length > MAX_RECORDED) requests.splice(0, requests.length - MAX_RECORDED);
    }

    const rule = takeRule(isToken ? 'token' : 'fhir');
    if (rule?.delayMs) {
      const before = generation;
      await sleep(rule.delayMs);
      if (generation !== before) {
        req.socket.destroy();
        return;
      }
    }
    if (rule?.drop) {
      record.injected = record.dropped = true;
      req.socket.destroy();
      log?.(`${method} ${url.pathname} dropped`);
      return;
    }
    let reply: Reply;
    if (rule?.status !== undefined) {
      record.injected = true;
      reply = rule.outcome
        ? { status: rule.status, headers: { 'content-type': FHIR_JSON }, body: rule.outcome }
        : outcomeReply(rule.status, rule.status >= 500 ? 'transient' : 'processing', `mock-gp was told to answer ${rule.status}`);
      if (rule.retryAfter !== undefined) reply.headers['retry-after'] = String(rule.retryAfter);
    } else if (isToken) {
      reply = token(req, text);
    } else if (!authorized(req)) {
      reply = outcomeReply(401, 'login', 'A valid bearer token is required');
      reply.headers['www-authenticate'] = 'Bearer error="invalid_token"';
    } else {
      const key = record.idempotencyKey;
      const isWrite = method === 'POST' || method === 'PUT' || method === 'DELETE';
      const seen = key !== undefined && isWrite ? idempotent.get(key) : undefined;
      if (seen) {
        record.duplicate = true;
        duplicates++;
        reply = { ...seen, headers: { ...seen.headers, 'x-idempotent-replay': 'true' } };
      } else {
        reply = await fhir(req, text, segments, query, record);
        if (key !== undefined && isWrite && reply.status >= 200 && reply.status < 300) idempotent.set(key, reply);
      }
    }
    record.status = reply.status;
    send(res, reply);
    log?.(`${method} ${url.pathname} ${reply.status}${record.duplicate ? ' (duplicate)' : ''}${record.injected ? ' (injected)' : ''}`);
  }

  const listener: RequestListener = (req, res) => {
    handle(req, res).catch((err: unknown) => {
      send(res, outcomeReply(500, 'exception', `mock-gp: ${err instanceof Error ? err.message : String(err)}`));
    });
  };
  const tls = options.tls;
  const server: Server = tls
    ? createHttpsServer(
        { key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: tls.requireClientCert ?? false, rejectUnauthorized: tls.requireClientCert ?? false },
        listener,
      )
    : createServer(listener);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' || address.address.includes(':') ? `[${address.address}]` : address.address;
  base = `${tls ? 'https' : 'http'}://${urlHost}:${address.port}`;

  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= new Promise<void>((resolve) => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      server.close(() => {
        markClosed();
        resolve();
      });
      server.closeAllConnections();
    });
    return closing;
  }

  return {
    url: base,
    port: address.port,
    host,
    store,
    received,
    fail: (rule) => void rules.push(rule),
    reset,
    revokeTokens: () => void (tokens = new Map()),
    close,
    closed,
  };
}
