/**
 * MESH API v2 client (NHSDigital/mesh-api-specification `mesh-api.yaml`). Node's built-in fetch: each request
 * gets a fresh `NHSMESH` Authorization header (new UUID nonce), `Accept: application/vnd.mesh.v2+json` and the
 * mex-client headers. Large messages are split into chunks (`mex-chunk-range: 1:n` on the first POST, then
 * POST /outbox/{id}/{k}); chunked downloads are reassembled.
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { meshAuthorizationHeader, type MeshCredentials } from './auth';
import { assertMexHeader } from './headers';

export const MESH_V2_ACCEPT = 'application/vnd.mesh.v2+json';
/** MESH refuses requests over 100 MB; chunks default to 20 MB. */
export const MESH_MAX_CHUNK_BYTES = 100 * 1024 * 1024;
export const DEFAULT_CHUNK_BYTES = 20 * 1024 * 1024;

export interface MeshClientOptions extends MeshCredentials {
  /** e.g. `https://msg.intspineservices.nhs.uk` or `http://127.0.0.1:8700` (no trailing `/messageexchange`). */
  baseUrl: string;
  chunkSizeBytes?: number;
  timeoutMs?: number;
  clientVersion?: string;
  /** Injected for tests; defaults to global fetch. */
  fetch?: typeof fetch;
}

export interface SendOptions {
  to: string;
  workflowId: string;
  subject?: string;
  localId?: string;
  partnerId?: string;
  fileName?: string;
  contentType?: string;
  /** gzip each chunk independently (Content-Encoding: gzip, mex-content-compressed: Y). */
  compress?: boolean;
  signal?: AbortSignal;
}

export interface MeshMessage {
  messageId: string;
  /** mex-* response headers, lower-case names without the `mex-` prefix (from, to, workflowid, messagetype, ...). */
  mex: Record<string, string>;
  body: Buffer;
}

export interface InboxPage {
  messages: string[];
  next?: string;
  approxInboxCount?: number;
}

/** A MESH call that failed. `retryable` for network errors, 408, 429 and 5xx. */
export class MeshError extends Error {
  readonly code = 'MESH_REQUEST_FAILED';
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly meshErrorCode?: string,
    readonly retryable: boolean = status === undefined || status === 408 || status === 429 || status >= 500,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'MeshError';
  }
}

export class MeshClient {
  readonly mailboxId: string;
  private readonly base: string;
  private readonly chunkSize: number;
  private readonly timeoutMs: number;
  private readonly doFetch: typeof fetch;
  private readonly clientVersion: string;

  constructor(private readonly options: MeshClientOptions) {
    this.mailboxId = options.mailboxId.toUpperCase();
    this.base = options.baseUrl.replace(/\/+$/, '');
    const chunk = options.chunkSizeBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > MESH_MAX_CHUNK_BYTES) {
      throw new Error(`MESH chunk size must be 1..${MESH_MAX_CHUNK_BYTES} bytes`);
    }
    this.chunkSize = chunk;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.doFetch = options.fetch ?? fetch;
    this.clientVersion = options.clientVersion ?? 'sp-bridge-0.1.0';
  }

  /** Handshake (validate mailbox): call once at start-up, and daily in production. */
  async handshake(signal?: AbortSignal): Promise<void> {
    await this.call('POST', `/messageexchange/${this.mailboxId}`, { signal });
  }

  /** Sends `body`, chunked when it is larger than the chunk size. Returns the MESH message id. */
  async send(body: Buffer | Uint8Array | string, options: SendOptions): Promise<string> {
    const data = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const mex: Record<string, string> = {
      'mex-to': options.to.toUpperCase(),
      'mex-workflowid': options.workflowId,
      'mex-content-checksum': `sha256:${createHash('sha256').update(data).digest('hex')}`,
    };
    if (options.subject !== undefined) mex['mex-subject'] = options.subject;
    if (options.localId !== undefined) mex['mex-localid'] = options.localId;
    if (options.partnerId !== undefined) mex['mex-partnerid'] = options.partnerId;
    if (options.fileName !== undefined) mex['mex-filename'] = options.fileName;
    if (options.contentType !== undefined) mex['mex-content-type'] = options.contentType;
    if (options.compress) mex['mex-content-compressed'] = 'Y';
    const chunks: Buffer[] = [];
    for (let at = 0; at < data.length || chunks.length === 0; at += this.chunkSize) {
      chunks.push(data.subarray(at, at + this.chunkSize));
    }
    const total = chunks.length;
    if (total > 1) mex['mex-chunk-range'] = `1:${total}`;
    for (const [name, value] of Object.entries(mex)) assertMexHeader(name, value);

    const encode = (chunk: Buffer) => (options.compress ? gzipSync(chunk) : chunk);
    const bodyHeaders = (): Record<string, string> => ({
      'content-type': 'application/octet-stream',
      ...(options.compress ? { 'content-encoding': 'gzip' } : {}),
    });
    const first = await this.call('POST', `/messageexchange/${this.mailboxId}/outbox`, {
      headers: { ...mex, ...bodyHeaders() },
      body: encode(chunks[0]),
      signal: options.signal,
    });
    const json = (await first.json()) as { message_id?: string; messageID?: string };
    const messageId = json.message_id ?? json.messageID;
    if (!messageId) throw new MeshError('MESH send returned no message_id', first.status, undefined, false);
    for (let n = 2; n <= total; n++) {
      const res = await this.call('POST', `/messageexchange/${this.mailboxId}/outbox/${encodeURIComponent(messageId)}/${n}`, {
        headers: { 'mex-chunk-range': `${n}:${total}`, ...bodyHeaders() },
        body: encode(chunks[n - 1]),
        signal: options.signal,
      });
      await res.arrayBuffer();
    }
    return messageId;
  }

  /** One page of the inbox; pass `next` from the previous page to continue. */
  async inboxPage(options: { maxResults?: number; workflowFilter?: string; next?: string; signal?: AbortSignal } = {}): Promise<InboxPage> {
    let path: string;
    if (options.next) {
      const url = new URL(options.next, `${this.base}/`);
      // Only follow links within this mailbox's inbox on the configured server.
      if (!url.pathname.toUpperCase().endsWith(`/MESSAGEEXCHANGE/${this.mailboxId}/INBOX`)) {
        throw new MeshError(`unexpected links.next ${url.pathname}`, undefined, undefined, false);
      }
      path = `/messageexchange/${this.mailboxId}/inbox${url.search}`;
    } else {
      const q = new URLSearchParams();
      if (options.maxResults !== undefined) q.set('max_results', String(options.maxResults));
      if (options.workflowFilter) q.set('workflow_filter', options.workflowFilter);
      const qs = q.toString();
      path = `/messageexchange/${this.mailboxId}/inbox${qs ? `?${qs}` : ''}`;
    }
    const res = await this.call('GET', path, { signal: options.signal });
    const json = (await res.json()) as { messages?: string[]; links?: { next?: string }; approx_inbox_count?: number };
    return { messages: json.messages ?? [], next: json.links?.next || undefined, approxInboxCount: json.approx_inbox_count };
  }

  /** Every message id in the inbox, following links.next. */
  async listInbox(options: { maxResults?: number; workflowFilter?: string; signal?: AbortSignal } = {}): Promise<string[]> {
    const ids: string[] = [];
    let page = await this.inboxPage(options);
    ids.push(...page.messages);
    for (let guard = 0; page.next && guard < 10_000; guard++) {
      page = await this.inboxPage({ next: page.next, signal: options.signal });
      ids.push(...page.messages);
    }
    return ids;
  }

  /** Downloads a message, fetching every chunk when the first answer is 206 with `mex-chunk-range: 1:n`. */
  async download(messageId: string, signal?: AbortSignal): Promise<MeshMessage> {
    const path = `/messageexchange/${this.mailboxId}/inbox/${encodeURIComponent(messageId)}`;
    const first = await this.call('GET', path, { signal });
    const mex = mexHeaders(first.headers);
    const parts = [Buffer.from(await first.arrayBuffer())];
    const range = /^(\d+):(\d+)$/.exec(mex['chunk-range'] ?? '');
    const total = range ? Number(range[2]) : 1;
    for (let n = 2; n <= total; n++) {
      const res = await this.call('GET', `${path}/${n}`, { signal });
      parts.push(Buffer.from(await res.arrayBuffer()));
    }
    return { messageId: mex.messageid ?? messageId, mex, body: Buffer.concat(parts) };
  }

  /** Acknowledges (removes from the inbox) a downloaded message. */
  async acknowledge(messageId: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call('PUT', `/messageexchange/${this.mailboxId}/inbox/${encodeURIComponent(messageId)}/status/acknowledged`, { signal });
    await res.arrayBuffer();
  }

  /** Tracking of a message we sent (do not poll frequently, and never use it as a business ack). */
  async track(messageId: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const res = await this.call('GET', `/messageexchange/${this.mailboxId}/outbox/tracking?messageID=${encodeURIComponent(messageId)}`, { signal });
    return (await res.json()) as Record<string, unknown>;
  }

  /** Mailboxes registered for an ODS code and workflow (when GPPROVIDER_ routing does not apply). */
  async endpointLookup(odsCode: string, workflowId: string, signal?: AbortSignal): Promise<Array<{ mailboxId: string; mailboxName?: string }>> {
    const res = await this.call('GET', `/messageexchange/endpointlookup/${encodeURIComponent(odsCode)}/${encodeURIComponent(workflowId)}`, { signal });
    const json = (await res.json()) as { results?: Array<{ mailbox_id?: string; mailbox_name?: string; address?: string; description?: string }> };
    return (json.results ?? [])
      .map((r) => ({ mailboxId: r.mailbox_id ?? r.address ?? '', mailboxName: r.mailbox_name ?? r.description }))
      .filter((r) => r.mailboxId);
  }

  private async call(
    method: string,
    path: string,
    init: { headers?: Record<string, string>; body?: Buffer; signal?: AbortSignal },
  ): Promise<Response> {
    const headers: Record<string, string> = {
      accept: MESH_V2_ACCEPT,
      authorization: meshAuthorizationHeader(this.options),
      'mex-clientversion': this.clientVersion,
      'mex-osname': process.platform,
      'mex-osversion': process.release.name === 'node' ? process.version : 'unknown',
      'mex-osarchitecture': process.arch,
      'user-agent': this.clientVersion,
      ...init.headers,
    };
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await this.doFetch(`${this.base}${path}`, { method, headers, body: init.body as unknown as BodyInit | undefined, signal });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new MeshError(`MESH ${method} ${redactPath(path)} failed: ${(err as Error).message}`, undefined);
    }
    if (res.ok) return res;
    const text = await res.text().catch(() => '');
    let meshCode: string | undefined;
    let description = text.slice(0, 300);
    try {
      const json = JSON.parse(text) as {
        errorCode?: string;
        errorDescription?: string;
        detail?: Array<{ code?: string; msg?: string }>;
      };
      meshCode = json.errorCode ?? json.detail?.[0]?.code;
      description = json.errorDescription ?? json.detail?.[0]?.msg ?? description;
    } catch {
      /* not JSON */
    }
    const retryAfter = Number(res.headers.get('retry-after'));
    throw new MeshError(
      `MESH ${method} ${redactPath(path)} answered ${res.status}${meshCode ? ` (${meshCode})` : ''}: ${description}`,
      res.status,
      meshCode,
      undefined,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined,
    );
  }
}

function mexHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => {
    const lower = name.toLowerCase();
    if (lower.startsWith('mex-')) out[lower.slice(4)] = value;
  });
  return out;
}

function redactPath(path: string): string {
  return path.split('?')[0];
}
