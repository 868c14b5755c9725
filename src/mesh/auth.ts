/**
 * The MESH `NHSMESH` Authorization header (mesh-api.yaml "MESH authorization header"; mesh-sandbox
 * `generate_cipher_text` / `try_parse_authorisation_token`):
 *
 *   NHSMESH <MAILBOX_ID>:<nonce>:<nonce_count>:<timestamp>:<hex(HMAC_SHA256(shared_key,
 *           "<MAILBOX_ID>:<nonce>:<nonce_count>:<mailbox_password>:<timestamp>"))>
 *
 * `timestamp` is UTC `yyyyMMddHHmm`. Every header must be unique: we use a fresh UUID nonce per request.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';

export const MESH_AUTH_SCHEME = 'NHSMESH';

export interface MeshCredentials {
  mailboxId: string;
  mailboxPassword: string;
  sharedKey: string;
}

export interface MeshAuthToken {
  mailboxId: string;
  nonce: string;
  nonceCount: string;
  timestamp: string;
  hash: string;
}

/** UTC `yyyyMMddHHmm`. */
export function meshTimestamp(date: Date = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getUTCFullYear()}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}` +
    `${p(date.getUTCHours())}${p(date.getUTCMinutes())}`
  );
}

/** Lower-case hex HMAC-SHA256 over `mailbox:nonce:count:password:timestamp` keyed by the environment shared key. */
export function meshHmac(
  sharedKey: string,
  mailboxId: string,
  nonce: string,
  nonceCount: string,
  mailboxPassword: string,
  timestamp: string,
): string {
  return createHmac('sha256', Buffer.from(sharedKey, 'utf8'))
    .update(`${mailboxId}:${nonce}:${nonceCount}:${mailboxPassword}:${timestamp}`, 'utf8')
    .digest('hex');
}

export interface AuthHeaderOptions {
  nonce?: string;
  nonceCount?: string | number;
  timestamp?: string;
  now?: Date;
}

/** Builds the Authorization header value; without options a fresh nonce, count 0 and the current time. */
export function meshAuthorizationHeader(credentials: MeshCredentials, options: AuthHeaderOptions = {}): string {
  const mailboxId = credentials.mailboxId.toUpperCase();
  if (!/^[A-Z0-9_-]+$/.test(mailboxId)) throw new Error('MESH mailbox id must be letters, digits, _ or -');
  const nonce = options.nonce ?? randomUUID();
  const nonceCount = String(options.nonceCount ?? 0);
  if (!/^\d+$/.test(nonceCount)) throw new Error('MESH nonce count must be digits');
  const timestamp = options.timestamp ?? meshTimestamp(options.now);
  const hash = meshHmac(credentials.sharedKey, mailboxId, nonce, nonceCount, credentials.mailboxPassword, timestamp);
  return `${MESH_AUTH_SCHEME} ${mailboxId}:${nonce}:${nonceCount}:${timestamp}:${hash}`;
}

/** Parses a header as the sandbox does; `undefined` when it cannot be read. */
export function parseMeshAuthorization(header: string | undefined): MeshAuthToken | undefined {
  if (!header) return undefined;
  let value = header.trim();
  if (value.toUpperCase().startsWith(`${MESH_AUTH_SCHEME} `)) value = value.slice(MESH_AUTH_SCHEME.length + 1).trim();
  const parts = value.split(':');
  if (parts.length !== 5) return undefined;
  const [mailboxId, nonce, nonceCount, timestamp, hash] = parts;
  if (!mailboxId || /\s/.test(mailboxId) || !nonce || !/^\d+$/.test(nonceCount) || !timestamp || !hash) return undefined;
  return { mailboxId, nonce, nonceCount, timestamp, hash };
}

export type MeshAuthCheck =
  | { ok: true; token: MeshAuthToken }
  | { ok: false; status: 403; message: string };

/**
 * Server-side check (used by mock-mesh), with the sandbox's messages. `passwordFor` returns the mailbox
 * password or undefined for an unknown mailbox. Nonce reuse and the 2 h timestamp window are the caller's
 * business (see `checkFreshness`).
 */
export function verifyMeshAuthorization(
  header: string | undefined,
  pathMailboxId: string,
  sharedKey: string,
  passwordFor: (mailboxId: string) => string | undefined,
): MeshAuthCheck {
  const token = parseMeshAuthorization(header);
  if (!token) return { ok: false, status: 403, message: 'Error reading from Authorization header' };
  if (token.mailboxId !== pathMailboxId.toUpperCase()) {
    return { ok: false, status: 403, message: 'Mailbox id does not match token' };
  }
  const password = passwordFor(token.mailboxId);
  if (password === undefined) return { ok: false, status: 403, message: 'No mailbox matched' };
  const expected = meshHmac(sharedKey, token.mailboxId, token.nonce, token.nonceCount, password, token.timestamp);
  const given = Buffer.from(token.hash.toLowerCase(), 'utf8');
  const want = Buffer.from(expected, 'utf8');
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    return { ok: false, status: 403, message: 'Invalid Authentication Token' };
  }
  return { ok: true, token };
}

/** Live MESH rejects timestamps more than 2 hours from server time. */
export function timestampWithinWindow(timestamp: string, now: Date = new Date(), windowMs = 2 * 60 * 60 * 1000): boolean {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(timestamp);
  if (!m) return false;
  const t = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  return Math.abs(now.getTime() - t) <= windowMs;
}
