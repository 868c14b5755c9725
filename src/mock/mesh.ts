/**
 * mock-mesh: a loopback MESH API v2 server following NHSDigital/mesh-sandbox behaviour (in memory), plus an
 * ITK3 responder standing in for GP systems. For tests (`startMockMesh({ port: 0 })`) and local runs
 * (`sp-bridge mock-mesh [--port N]`).
 *
 * - Mailboxes X26ABC1, X26ABC2, X26ABC3 (password `password`) from the sandbox store-data; shared key
 *   `TestKey` (the sandbox Dockerfile's). Full HMAC auth; each (mailbox, nonce, nonce_count) is single-use.
 * - `mex-to: GPPROVIDER_<NHSNo>_<DDMMYYYY>_<Surname>` routes to `gpMailbox` (default X26ABC2) when the NHS
 *   number is valid; otherwise 417 EPL-151.
 * - ITK3 responder: a complete GPCONNECT_SEND_DOCUMENT (or _UPDATE_RECORD) message arriving in `gpMailbox`
 *   is answered with ITK008M responses into the sender's inbox (workflow <WORKFLOW>_ACK): an infrastructure
 *   ack (20013) and a business ack (30001) when requested. POST /_control/next-ack {code} makes the next
 *   answer fail: a 1xxxx/2xxxx code gives a failed infrastructure ack and no business ack; a 3xxxx code gives
 *   a successful infrastructure ack and that business code. {code, responder: false} suppresses answers.
 * - Control (no auth, loopback only): POST /_control/next-ack, GET /_control/messages, POST /_control/reset,
 *   POST /_control/shutdown, DELETE /admin/reset[/{mailbox}], GET /health.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { timestampWithinWindow, verifyMeshAuthorization } from '../mesh/auth';
import { mexHeaderProblem, parseGpProviderAddress } from '../mesh/headers';
import { buildItkResponse, readItkHeader } from '../mesh/itk3';
import { isValidNhsNumber } from '../terminology/nhs-number';

export interface MockMailbox {
  mailboxId: string;
  password: string;
  odsCode: string;
  name: string;
}

export const SANDBOX_MAILBOXES: MockMailbox[] = [
  { mailboxId: 'X26ABC1', password: 'password', odsCode: 'X26', name: 'TESTMB1' },
  { mailboxId: 'X26ABC2', password: 'password', odsCode: 'X26', name: 'TESTMB2' },
  { mailboxId: 'X26ABC3', password: 'password', odsCode: 'X27', name: 'TESTMB3' },
];

export interface MockMeshOptions {
  port?: number;
  host?: string;
  sharedKey?: string;
  mailboxes?: MockMailbox[];
  /** Where GPPROVIDER_ addresses are delivered, and the mailbox the ITK3 responder answers for. */
  gpMailbox?: string;
  /** Page size cap for inbox listing (MESH: 500). */
  maxPageSize?: number;
  /** Reject Authorization timestamps more than 2 h from now (live MESH does, the sandbox does not). */
  checkTimestamp?: boolean;
  /** Delay before ITK responses appear in the sender's inbox. */
  ackDelayMs?: number;
  /** Largest request body accepted (MESH: 100 MB). */
  maxRequestBytes?: number;
  /** Serve HTTPS and require a client certificate signed by `ca` (as Spine MESH does). PEM strings/buffers. */
  tls?: { cert: string | Buffer; key: string | Buffer; ca: string | Buffer };
  /** Called after POST /_control/shutdown has closed the server (the CLI exits). */
  onShutdown?: () => void;
}

interface StoredMessage {
  messageId: string;
  from: string;
  to: string;
  toAddress: string;
  workflowId: string;
  messageType: 'DATA' | 'REPORT';
  mex: Record<string, string>;
  totalChunks: number;
  chunks: Buffer[];
  contentEncoding?: string;
  status: 'uploading' | 'accepted' | 'acknowledged';
  createdAt: Date;
  seq: number;
}

interface NextAck {
  code: string;
  diagnostics?: string;
  responder?: boolean;
}

export interface MockMesh {
  url: string;
  port: number;
  server: Server;
  sharedKey: string;
  /** Messages in a mailbox's inbox (not acknowledged). */
  inbox(mailboxId: string): StoredMessage[];
  /** Every message, with status. */
  messages(): StoredMessage[];
  /** The complete (decoded) body of a stored message. */
  body(messageId: string): Buffer;
  setNextAck(ack: NextAck): void;
  /** Deposits a message directly (for tests of the receiving side). */
  inject(message: {
    from: string;
    to: string;
    workflowId: string;
    body: Buffer | string;
    mex?: Record<string, string>;
    messageType?: 'DATA' | 'REPORT';
  }): string;
  reset(): void;
  close(): Promise<void>;
}

export type MockMeshMessage = StoredMessage;

const V2 = 'application/vnd.mesh.v2+json';

export async function startMockMesh(options: MockMeshOptions = {}): Promise<MockMesh> {
  const host = options.host ?? '127.0.0.1';
  const sharedKey = options.sharedKey ?? 'TestKey';
  const mailboxes = new Map((options.mailboxes ?? SANDBOX_MAILBOXES).map((m) => [m.mailboxId.toUpperCase(), m]));
  const gpMailbox = (options.gpMailbox ?? 'X26ABC2').toUpperCase();
  const maxPage = options.maxPageSize ?? 500;
  const maxRequestBytes = options.maxRequestBytes ?? 100 * 1024 * 1024;
  let store = new Map<string, StoredMessage>();
  let usedNonces = new Set<string>();
  let nextAcks: NextAck[] = [];
  let seq = 0;
  const timers = new Set<NodeJS.Timeout>();

  const newMessageId = () => {
    const d = new Date();
    const stamp = d.toISOString().replace(/[-:TZ.]/g, '').slice(0, 17);
    return `${stamp}${String(seq % 1000).padStart(3, '0')}_${randomBytes(3).toString('hex').toUpperCase()}`;
  };

  const decodedBody = (m: StoredMessage): Buffer =>
    Buffer.concat(m.chunks.map((c) => (m.contentEncoding === 'gzip' ? gunzipSync(c) : c)));

  const deposit = (m: Omit<StoredMessage, 'seq' | 'createdAt' | 'messageId'> & { messageId?: string }): StoredMessage => {
    const stored: StoredMessage = { ...m, messageId: m.messageId ?? newMessageId(), createdAt: new Date(), seq: ++seq };
    store.set(stored.messageId, stored);
    return stored;
  };

  const onComplete = (m: StoredMessage) => {
    if (m.to !== gpMailbox || !/^GPCONNECT_(SEND_DOCUMENT|UPDATE_RECORD)$/.test(m.workflowId)) return;
    const control = nextAcks.shift();
    if (control?.responder === false) return;
    let header;
    try {
      header = readItkHeader(JSON.parse(decodedBody(m).toString('utf8')));
    } catch {
      header = undefined;
    }
    if (!header) return; // Nothing to answer to: a real GP system would raise it with its service desk.
    const gp = mailboxes.get(gpMailbox)!;
    const respond = (code: string, diagnostics?: string) => {
      const bundle = buildItkResponse({ original: header, code, diagnostics, responderMailbox: gpMailbox, responderOds: gp.odsCode });
      deposit({
        from: gpMailbox,
        to: m.from,
        toAddress: m.from,
        workflowId: `${m.workflowId}_ACK`,
        messageType: 'DATA',
        mex: { subject: `ITK Response ${code}`, localid: gp.odsCode, filename: `${header.messageHeaderId}_${code}.json` },
        totalChunks: 1,
        chunks: [Buffer.from(JSON.stringify(bundle))],
        status: 'accepted',
      });
    };
    const code = control?.code;
    const run = () => {
      if (code && /^[12]/.test(code)) {
        respond(code, control?.diagnostics); // a rejection is answered whatever was requested
        return;
      }
      if (header.infAckRequested) respond('20013');
      if (header.busAckRequested) respond(code && code.startsWith('3') ? code : '30001', control?.diagnostics);
    };
    if (options.ackDelayMs) {
      const t = setTimeout(() => {
        timers.delete(t);
        run();
      }, options.ackDelayMs);
      timers.add(t);
    } else run();
  };

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { errorDescription: `mock-mesh: ${(err as Error).message}` });
      else res.destroy();
    });
  };
  const server: Server = options.tls
    ? createHttpsServer({ ...options.tls, requestCert: true, rejectUnauthorized: true }, listener)
    : createServer(listener);

  async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxRequestBytes) return undefined;
      parts.push(chunk as Buffer);
    }
    return Buffer.concat(parts);
  }

  function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) {
    const data = body === undefined ? '' : Buffer.isBuffer(body) ? body : JSON.stringify(body);
    res.writeHead(status, {
      ...(Buffer.isBuffer(body) ? { 'content-type': 'application/octet-stream' } : body === undefined ? {} : { 'content-type': V2 }),
      'content-length': String(Buffer.byteLength(data)),
      ...headers,
    });
    res.end(data);
  }

  function meshError(res: ServerResponse, status: number, version: number, event: string, code: string, msg: string, messageId?: string) {
    if (version >= 2) send(res, status, { message_id: messageId, internal_id: messageId, detail: [{ event, code, msg }] });
    else send(res, status, { messageID: messageId, errorEvent: event, errorCode: code, errorDescription: msg });
  }

  function apiVersion(req: IncomingMessage): number | undefined {
    const accept = String(req.headers.accept ?? '');
    const vnd = accept.split(',').map((s) => s.trim().split(';')[0]).find((s) => s.includes('vnd.mesh'));
    if (!vnd) return 1;
    const m = /^application\/vnd\.mesh\.v(\d+)\+json$/.exec(vnd);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > 2) return undefined;
    return Number(m[1]);
  }

  function authenticate(req: IncomingMessage, res: ServerResponse, pathMailbox: string): boolean {
    const check = verifyMeshAuthorization(req.headers.authorization, pathMailbox, sharedKey, (id) => mailboxes.get(id)?.password);
    if (!check.ok) {
      send(res, check.status, { errorDescription: check.message });
      return false;
    }
    if (options.checkTimestamp && !timestampWithinWindow(check.token.timestamp)) {
      send(res, 403, { errorDescription: 'Invalid Authentication Token' });
      return false;
    }
    const key = `${check.token.mailboxId}:${check.token.nonce}:${check.token.nonceCount}`;
    if (usedNonces.has(key)) {
      send(res, 403, { errorDescription: 'Invalid Authentication Token' });
      return false;
    }
    usedNonces.add(key);
    return true;
  }

  function mexOut(m: StoredMessage, chunk: number): Record<string, string> {
    const h: Record<string, string> = {
      'mex-from': m.from,
      'mex-to': m.toAddress,
      'mex-workflowid': m.workflowId,
      'mex-messageid': m.messageId,
      'mex-messagetype': m.messageType,
      'mex-total-chunks': String(m.totalChunks),
    };
    for (const [k, v] of Object.entries(m.mex)) h[`mex-${k}`] = v;
    if (m.totalChunks > 1) h['mex-chunk-range'] = `${chunk}:${m.totalChunks}`;
    if (m.contentEncoding) h['content-encoding'] = m.contentEncoding;
    return h;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mock-mesh');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';

    // --- sandbox / control routes (no auth) ---
    if (['/health', '/_ping', '/_status', '/healthcheck', '/messageexchange/_ping'].includes(path)) {
      return send(res, 200, { status: 'healthy' });
    }
    if (path === '/_control/next-ack' && method === 'POST') {
      const body = await readBody(req);
      let parsed: NextAck;
      try {
        parsed = JSON.parse(body?.toString('utf8') ?? '') as NextAck;
      } catch {
        return send(res, 400, { error: 'body must be JSON {code}' });
      }
      if (typeof parsed.code !== 'string' || !/^\d{5}$/.test(parsed.code)) return send(res, 400, { error: 'code must be a 5-digit ITK response code' });
      nextAcks.push(parsed);
      return send(res, 200, { queued: nextAcks.length });
    }
    if (path === '/_control/messages' && method === 'GET') {
      return send(res, 200, {
        messages: [...store.values()].map((m) => ({
          message_id: m.messageId,
          from: m.from,
          to: m.to,
          to_address: m.toAddress,
          workflow_id: m.workflowId,
          status: m.status,
          total_chunks: m.totalChunks,
          received_chunks: m.chunks.filter(Boolean).length,
          mex: m.mex,
        })),
      });
    }
    if ((path === '/_control/reset' && method === 'POST') || (path === '/admin/reset' && method === 'DELETE')) {
      api.reset();
      return send(res, 200, {});
    }
    const adminReset = /^\/(?:messageexchange\/)?admin\/reset\/([^/]+)$/.exec(path);
    if (adminReset && method === 'DELETE') {
      const id = adminReset[1].toUpperCase();
      for (const [k, m] of store) if (m.to === id) store.delete(k);
      return send(res, 200, {});
    }
    if (path === '/_control/shutdown' && method === 'POST') {
      send(res, 200, {});
      setImmediate(() => void api.close().then(() => options.onShutdown?.()));
      return;
    }

    const lookup = /^\/messageexchange\/endpointlookup\/([^/]+)\/([^/]+)$/.exec(path);
    if (lookup && method === 'GET') {
      const ods = decodeURIComponent(lookup[1]).toUpperCase();
      const found = [...mailboxes.values()].filter((x) => x.odsCode.toUpperCase() === ods);
      if (apiVersion(req) === 2) return send(res, 200, { results: found.map((x) => ({ mailbox_id: x.mailboxId, mailbox_name: x.name })) });
      return send(res, 200, {
        query_id: newMessageId(),
        results: found.map((x) => ({ address: x.mailboxId, description: x.name, endpoint_type: 'MESH' })),
      });
    }

    const m = /^\/messageexchange\/([^/]+)(\/.*)?$/.exec(path);
    if (!m) return send(res, 404, { errorDescription: 'Not found' });
    const version = apiVersion(req);
    if (version === undefined) return send(res, 400, { errorDescription: 'Accept header api format incorrect' });
    const mailboxId = decodeURIComponent(m[1]).toUpperCase();
    const rest = m[2] ?? '';
    if (!authenticate(req, res, mailboxId)) return;

    // Handshake
    if (rest === '' && (method === 'GET' || method === 'POST')) {
      await readBody(req);
      return send(res, 200, version >= 2 ? {} : { mailboxId });
    }
    // Count (deprecated)
    if (rest === '/count' && method === 'GET') {
      const count = [...store.values()].filter((x) => x.to === mailboxId && x.status === 'accepted').length;
      return send(res, 200, version >= 2 ? { count } : { count, internalID: newMessageId(), allResultsIncluded: true });
    }
    // Send
    if (rest === '/outbox' && method === 'POST') {
      const body = await readBody(req);
      if (!body) return send(res, 413, { errorDescription: 'Request too large' });
      const mex: Record<string, string> = {};
      const bad: string[] = [];
      for (const [name, value] of Object.entries(req.headers)) {
        if (!name.startsWith('mex-') || typeof value !== 'string') continue;
        if (mexHeaderProblem(name, value)) bad.push(name);
        mex[name.slice(4)] = value;
      }
      if (bad.length) {
        if (version >= 2) return send(res, 400, { detail: [{ event: 'TRANSFER', code: '06', msg: 'MalformedControlFile', fields: bad }] });
        return send(res, 400, { errorEvent: 'TRANSFER', errorCode: '06', errorDescription: 'MalformedControlFile', fields: bad });
      }
      const toAddress = (mex.to ?? '').toUpperCase();
      const workflowId = mex.workflowid ?? '';
      if (!toAddress) return meshError(res, 417, version, 'SEND', '08', 'TO_DTS missing');
      if (!workflowId) return meshError(res, 417, version, 'SEND', '06', 'Malformed control file');
      let to: string;
      if (toAddress.startsWith('GPPROVIDER_')) {
        const gp = parseGpProviderAddress(toAddress);
        if (!gp || !isValidNhsNumber(gp.nhsNumber)) return meshError(res, 417, version, 'SEND', 'EPL-151', 'No mailbox matched');
        to = gpMailbox;
      } else if (mailboxes.has(toAddress)) {
        to = toAddress;
      } else {
        return meshError(res, 417, version, 'SEND', '12', 'Unregistered to address');
      }
      const range = /^(\d+):(\d+)$/.exec(mex['chunk-range'] ?? '1:1');
      if (!range || range[1] !== '1' || Number(range[2]) < 1) return meshError(res, 417, version, 'SEND', '06', 'Malformed control file');
      const total = Number(range[2]);
      const { to: _to, workflowid: _w, 'chunk-range': _c, ...kept } = mex;
      const stored = deposit({
        from: mailboxId,
        to,
        toAddress,
        workflowId,
        messageType: 'DATA',
        mex: kept,
        totalChunks: total,
        chunks: [body],
        contentEncoding: req.headers['content-encoding'] === 'gzip' ? 'gzip' : undefined,
        status: total === 1 ? 'accepted' : 'uploading',
      });
      if (stored.status === 'accepted') onComplete(stored);
      return send(res, 202, version >= 2 ? { message_id: stored.messageId } : { messageID: stored.messageId });
    }
    // Send chunk
    const chunkUp = /^\/outbox\/([^/]+)\/(\d+)$/.exec(rest);
    if (chunkUp && method === 'POST') {
      const body = await readBody(req);
      if (!body) return send(res, 413, { errorDescription: 'Request too large' });
      const msg = store.get(decodeURIComponent(chunkUp[1]));
      const n = Number(chunkUp[2]);
      if (!msg || msg.from !== mailboxId) return meshError(res, 404, version, 'SEND', '20', 'Message does not exist', chunkUp[1]);
      if (msg.status !== 'uploading' || n < 2 || n > msg.totalChunks) {
        return meshError(res, 417, version, 'SEND', '06', 'Malformed control file', msg.messageId);
      }
      msg.chunks[n - 1] = body;
      let complete = true;
      for (let i = 0; i < msg.totalChunks; i++) if (!msg.chunks[i]) complete = false;
      if (complete) {
        msg.status = 'accepted';
        onComplete(msg);
      }
      return send(res, 202, version >= 2 ? { message_id: msg.messageId } : { messageID: msg.messageId, blockID: n });
    }
    // Inbox list
    if (rest === '/inbox' && method === 'GET') {
      const requested = Number(url.searchParams.get('max_results') ?? maxPage);
      const limit = Math.max(1, Math.min(maxPage, Number.isFinite(requested) ? requested : maxPage));
      const filter = url.searchParams.get('workflow_filter');
      const after = url.searchParams.get('continue_from');
      let afterSeq = 0;
      if (after) {
        afterSeq = Number(Buffer.from(after, 'base64url').toString('utf8'));
        if (!Number.isInteger(afterSeq)) return send(res, 400, { errorDescription: 'continue_from invalid' });
      }
      const all = [...store.values()]
        .filter((x) => x.to === mailboxId && x.status === 'accepted' && x.seq > afterSeq && workflowMatches(filter, x.workflowId))
        .sort((a, b) => a.seq - b.seq);
      const page = all.slice(0, limit);
      const total = [...store.values()].filter((x) => x.to === mailboxId && x.status === 'accepted').length;
      if (version < 2) return send(res, 200, { messages: page.map((x) => x.messageId) });
      const links: Record<string, string> = { self: `/messageexchange/${mailboxId}/inbox?max_results=${limit}` };
      if (all.length > limit) {
        const token = Buffer.from(String(page[page.length - 1].seq)).toString('base64url');
        links.next = `/messageexchange/${mailboxId}/inbox?max_results=${limit}&continue_from=${token}${filter ? `&workflow_filter=${encodeURIComponent(filter)}` : ''}`;
      }
      return send(res, 200, { messages: page.map((x) => x.messageId), links, approx_inbox_count: total });
    }
    // Acknowledge
    const ack = /^\/inbox\/([^/]+)\/status\/acknowledged$/.exec(rest);
    if (ack && method === 'PUT') {
      const msg = store.get(decodeURIComponent(ack[1]));
      if (!msg || msg.to !== mailboxId || msg.status === 'uploading') return meshError(res, 404, version, 'RECEIVE', '20', 'Message does not exist', ack[1]);
      msg.status = 'acknowledged';
      return send(res, 200, version >= 2 ? {} : { messageId: msg.messageId });
    }
    // Download (chunk 1 or n), HEAD
    const dl = /^\/inbox\/([^/]+)(?:\/(\d+))?$/.exec(rest);
    if (dl && (method === 'GET' || method === 'HEAD')) {
      const msg = store.get(decodeURIComponent(dl[1]));
      if (!msg || msg.to !== mailboxId || msg.status === 'uploading') return meshError(res, 404, version, 'RECEIVE', '20', 'Message does not exist', dl[1]);
      if (msg.status === 'acknowledged') return meshError(res, 410, version, 'RECEIVE', '20', 'Message does not exist', dl[1]);
      const n = dl[2] ? Number(dl[2]) : 1;
      if (n < 1 || n > msg.totalChunks) return meshError(res, 404, version, 'RECEIVE', '20', 'Message does not exist', dl[1]);
      const headers = mexOut(msg, n);
      const status = msg.totalChunks > 1 && n < msg.totalChunks ? 206 : 200;
      if (method === 'HEAD') {
        res.writeHead(200, headers);
        res.end();
        return;
      }
      return send(res, status, msg.chunks[n - 1], headers);
    }
    // Tracking
    if (rest === '/outbox/tracking' && method === 'GET') {
      const msg = store.get(url.searchParams.get('messageID') ?? '');
      if (!msg || msg.from !== mailboxId) return send(res, 404, { errorDescription: 'Message does not exist' });
      return send(res, 200, {
        message_id: msg.messageId,
        recipient: msg.to,
        sender: msg.from,
        status: msg.status === 'acknowledged' ? 'Acknowledged' : msg.status === 'accepted' ? 'Accepted' : 'Uploading',
        workflow_id: msg.workflowId,
      });
    }
    return send(res, 404, { errorDescription: 'Not found' });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  const api: MockMesh = {
    url: `${options.tls ? 'https' : 'http'}://${urlHost}:${port}`,
    port,
    server,
    sharedKey,
    inbox: (id) => [...store.values()].filter((x) => x.to === id.toUpperCase() && x.status === 'accepted').sort((a, b) => a.seq - b.seq),
    messages: () => [...store.values()],
    body: (id) => {
      const msg = store.get(id);
      if (!msg) throw new Error(`no message ${id}`);
      return decodedBody(msg);
    },
    setNextAck: (ack) => void nextAcks.push(ack),
    inject: (msg) => {
      const { to: _t, workflowid: _w, ...mex } = msg.mex ?? {};
      return deposit({
        from: msg.from.toUpperCase(),
        to: msg.to.toUpperCase(),
        toAddress: msg.to.toUpperCase(),
        workflowId: msg.workflowId,
        messageType: msg.messageType ?? 'DATA',
        mex,
        totalChunks: 1,
        chunks: [Buffer.isBuffer(msg.body) ? msg.body : Buffer.from(msg.body)],
        status: 'accepted',
      }).messageId;
    },
    reset: () => {
      store = new Map();
      usedNonces = new Set();
      nextAcks = [];
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return api;
}

/** MESH workflow_filter: `=X` equals, `=!X` not, `X*` begins with, `*X*` contains (leading `=` optional). */
function workflowMatches(filter: string | null, workflowId: string): boolean {
  if (!filter) return true;
  let f = filter.startsWith('=') ? filter.slice(1) : filter;
  const negate = f.startsWith('!');
  if (negate) f = f.slice(1);
  let hit: boolean;
  if (f.startsWith('*') && f.endsWith('*') && f.length > 1) hit = workflowId.includes(f.slice(1, -1));
  else if (f.endsWith('*')) hit = workflowId.startsWith(f.slice(0, -1));
  else hit = workflowId === f;
  return negate ? !hit : hit;
}

// ---------------------------------------------------------------------------------------------------------
// CLI: `sp-bridge mock-mesh [--port N] [--host ADDR] [--shared-key-env VAR] [--gp-mailbox ID]`

export const MOCK_MESH_USAGE = `Usage: sp-bridge mock-mesh [--port N] [--host 127.0.0.1] [--gp-mailbox X26ABC2]

A loopback MESH API (v2) following mesh-sandbox, in memory, with an ITK3 responder for GPPROVIDER_ mail.
Mailboxes X26ABC1..3 (password 'password'); shared key from MOCK_MESH_SHARED_KEY (default TestKey).
Control API (no auth):
  POST /_control/next-ack  {code: '20009'}  make the next ITK3 answer fail with that ITK response code
  GET  /_control/messages                    what is stored
  POST /_control/reset                       forget everything
  POST /_control/shutdown                    stop`;

/** Starts the server and keeps running; returns the exit code for argument errors (0 once started). */
export function mockMeshCommand(args: string[], out: (line: string) => void, env: NodeJS.ProcessEnv = process.env): number {
  const options: MockMeshOptions = { port: 8700, host: '127.0.0.1', sharedKey: env.MOCK_MESH_SHARED_KEY || 'TestKey' };
  for (let i = 0; i < args.length; i++) {
    const value = args[i + 1];
    switch (args[i]) {
      case '--port': {
        const port = Number(value);
        if (value === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
          out(`--port needs a port number, not '${value ?? ''}'`);
          return 2;
        }
        options.port = port;
        i++;
        break;
      }
      case '--host':
        if (!value) {
          out('--host needs an address');
          return 2;
        }
        options.host = value;
        i++;
        break;
      case '--gp-mailbox':
        if (!value) {
          out('--gp-mailbox needs a mailbox id');
          return 2;
        }
        options.gpMailbox = value;
        i++;
        break;
      case '--help':
      case '-h':
        out(MOCK_MESH_USAGE);
        return 0;
      default:
        out(`Unknown option '${args[i]}'\n\n${MOCK_MESH_USAGE}`);
        return 2;
    }
  }
  options.onShutdown = () => process.exit(0);
  startMockMesh(options).then(
    (mesh) => {
      out(`mock-mesh listening on ${mesh.url} (GP mailbox ${(options.gpMailbox ?? 'X26ABC2').toUpperCase()})`);
      const stop = () => void mesh.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
    (err: Error) => {
      out(`mock-mesh failed to start: ${err.message}`);
      process.exitCode = 1;
    },
  );
  return 0;
}
