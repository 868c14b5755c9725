/**
 * Client registration tooling for SMART Backend Services:
 *
 * - `sp-bridge register-client <client-id>` makes a key pair, keeps the private key in a 0600 PKCS#8 PEM file
 *   and prints the clients-file entry (public JWKS only) for the operator to add to AUTH_CLIENTS_FILE.
 * - `sp-bridge get-token` signs a client assertion with that private key and exchanges it for an access token
 *   at the token endpoint (`client_credentials` grant, `private_key_jwt`), as a backend client would.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { ADMIN_SCOPE, Grant } from '../auth/scopes';

export type ClientKeyAlg = 'ES384' | 'RS384';

/** A public key as it appears in a clients file: never any private member. */
export interface PublicJwk {
  kty: 'EC' | 'RSA';
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  kid: string;
  alg: ClientKeyAlg;
  use: 'sig';
}

/** One entry of the clients file (AUTH_CLIENTS_FILE). The server also accepts `jwksUrl` instead of `jwks`. */
export interface ClientEntry {
  clientId: string;
  /** The most this client may be granted. */
  scopes: string[];
  jwks: { keys: PublicJwk[] };
}

export interface RegisteredClient {
  entry: ClientEntry;
  /** Where the private key was written. */
  keyFile: string;
  /** The clients-file document (YAML) holding just this client. */
  yaml: string;
}

export const DEFAULT_CLIENT_SCOPES: readonly string[] = [
  'system/ServiceRequest.cruds',
  'system/CarePlan.cruds',
  'system/Observation.cruds',
  'system/Patient.cruds',
  'system/Task.cruds',
  // Read-only: the bundled terminology and profiles, for $validate-code, $lookup, $expand and profile reads.
  'system/CodeSystem.rs',
  'system/ValueSet.rs',
  'system/StructureDefinition.rs',
];

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Lifetime of a client assertion; SMART Backend Services allows at most five minutes. */
export const ASSERTION_LIFETIME_SECONDS = 300;

/** Also a safe file name; a subset of what the clients file accepts. */
const CLIENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const REGISTER_CLIENT_USAGE = `Usage: sp-bridge register-client <client-id> [--scopes "system/Patient.rs ..."] [--alg ES384|RS384] [--out DIR]

Registers a SMART Backend Services client: makes a key pair (ES384: EC P-384, the default; RS384: RSA 3072),
writes the private key as PKCS#8 PEM to DIR/<client-id>.key.pem (mode 0600; an existing file is never
overwritten; DIR defaults to the current directory) and prints the clients-file entry (YAML, public key
only) on stdout. Put that entry in the file AUTH_CLIENTS_FILE names; give the key file to the client.
  --scopes   space-separated system scopes, the most this client may be granted; ${ADMIN_SCOPE} adds the
             admin API and audit log (default: ${DEFAULT_CLIENT_SCOPES.join(' ')})`;

export const GET_TOKEN_USAGE = `Usage: sp-bridge get-token --client-id ID --key FILE --token-url URL [--scope "..."] [--token-only]

Gets an access token the way a SMART Backend Services client does: signs a client assertion (JWT, ES384 or
RS384 from the key, kid = the key's JWK thumbprint, aud = the token URL, 5 minutes) with the private key that
register-client wrote, and POSTs the client_credentials grant to the token URL. Prints the JSON response
(or, with --token-only, just the access token). --key - reads the key from stdin.
  --scope    space-separated scopes to request (default: ${DEFAULT_CLIENT_SCOPES.join(' ')})`;

// ---------------------------------------------------------------------------------------------------------
// keys

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of a public EC or RSA key. */
export function jwkThumbprint(jwk: Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y' | 'n' | 'e'>): string {
  const members =
    jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/** The signing algorithm a private key is for, or a message saying why it cannot sign client assertions. */
export function algForKey(key: KeyObject): ClientKeyAlg | string {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return curve === 'secp384r1' ? 'ES384' : `an EC key must be on curve P-384 (secp384r1) for ES384, not ${curve ?? 'unknown'}`;
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    return bits >= 2048 ? 'RS384' : `an RSA key must have at least 2048 bits, not ${bits}`;
  }
  return `the key must be EC P-384 (ES384) or RSA (RS384), not ${key.asymmetricKeyType ?? 'unknown'}`;
}

/** The public JWK (with kid, alg, use) of a private or public key; private members are never copied. */
export function publicJwk(key: KeyObject, alg: ClientKeyAlg): PublicJwk {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const raw = pub.export({ format: 'jwk' });
  const base =
    raw.kty === 'EC'
      ? { kty: 'EC' as const, crv: String(raw.crv), x: String(raw.x), y: String(raw.y) }
      : { kty: 'RSA' as const, n: String(raw.n), e: String(raw.e) };
  return { ...base, kid: jwkThumbprint(base), alg, use: 'sig' };
}

function parseScopes(text: string | undefined, fallback: readonly string[]): string[] | string {
  if (text === undefined) return [...fallback];
  const scopes = [...new Set(text.split(/[\s,]+/).filter((s) => s !== ''))];
  if (scopes.length === 0) return 'no scopes given';
  // Exactly the scopes the server grants something for (src/auth/scopes.ts), so an entry never holds dead ones.
  const granted = new Set(Grant.parse(scopes).scopes);
  const bad = scopes.filter((s) => !granted.has(s));
  if (bad.length) {
    return `not a scope sp-bridge grants: ${bad.join(', ')} (expected e.g. system/Patient.rs, system/ServiceRequest.cruds, system/*.read, ${ADMIN_SCOPE})`;
  }
  return scopes;
}

// ---------------------------------------------------------------------------------------------------------
// register-client

export interface RegisterClientOptions {
  clientId: string;
  scopes?: readonly string[];
  alg?: ClientKeyAlg;
  /** Folder for the private key; created (0700) if missing. */
  outDir?: string;
}

/** Makes the key pair, writes the private key (refusing to overwrite) and returns the clients-file entry. */
export function registerClient(options: RegisterClientOptions): RegisteredClient {
  if (!CLIENT_ID.test(options.clientId)) {
    throw new Error(`client id '${options.clientId}' must be 1 to 128 of A-Z a-z 0-9 . _ - and start with a letter or digit`);
  }
  const alg = options.alg ?? 'ES384';
  const { privateKey } =
    alg === 'ES384'
      ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
      : generateKeyPairSync('rsa', { modulusLength: 3072, publicExponent: 0x10001 });
  const outDir = path.resolve(options.outDir ?? '.');
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(outDir, `${options.clientId}.key.pem`);
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  try {
    // 'wx': fails if the file exists, so a key a client already uses is never replaced.
    writeFileSync(keyFile, pem, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new Error(`${keyFile} already exists: not overwriting it (remove it first, or choose another --out or client id)`);
    }
    throw err;
  }
  const entry: ClientEntry = {
    clientId: options.clientId,
    scopes: [...(options.scopes ?? DEFAULT_CLIENT_SCOPES)],
    jwks: { keys: [publicJwk(privateKey, alg)] },
  };
  const yaml =
    `# sp-bridge client ${entry.clientId}, registered ${new Date().toISOString()}: public key only.\n` +
    `# Its private key is ${keyFile}; give that to the client and keep it out of this file.\n` +
    toYaml({ clients: [entry] }, { lineWidth: 0 });
  return { entry, keyFile, yaml };
}

/** `sp-bridge register-client`: prints the entry on stdout (`out`), messages on stderr (`err`); returns the exit code. */
export function registerClientCommand(
  argv: string[],
  out: (line: string) => void,
  err: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): number {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        scopes: { type: 'string' },
        alg: { type: 'string', default: 'ES384' },
        out: { type: 'string', default: '.' },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (e) {
    err(`${(e as Error).message}\n\n${REGISTER_CLIENT_USAGE}`);
    return 2;
  }
  if (args.values.help) {
    out(REGISTER_CLIENT_USAGE);
    return 0;
  }
  if (args.positionals.length !== 1) {
    err(`register-client needs exactly one client id\n\n${REGISTER_CLIENT_USAGE}`);
    return 2;
  }
  const alg = args.values.alg?.toUpperCase();
  if (alg !== 'ES384' && alg !== 'RS384') {
    err(`--alg must be ES384 or RS384, not '${args.values.alg}'`);
    return 2;
  }
  const scopes = parseScopes(args.values.scopes, DEFAULT_CLIENT_SCOPES);
  if (typeof scopes === 'string') {
    err(`--scopes: ${scopes}`);
    return 2;
  }
  let registered;
  try {
    registered = registerClient({ clientId: args.positionals[0], scopes, alg, outDir: args.values.out });
  } catch (e) {
    err(`register-client: ${(e as Error).message}`);
    return 1;
  }
  out(registered.yaml.replace(/\n$/, ''));
  err(`Private key written to ${registered.keyFile} (mode 0600). Add the entry above to the clients file (AUTH_CLIENTS_FILE).`);
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// get-token

export interface GetTokenOptions {
  clientId: string;
  /** PEM (PKCS#8, or any form node:crypto reads) of the client's private key. */
  privateKeyPem: string;
  tokenUrl: string;
  scopes?: readonly string[];
  /** Aborts the request after this long (default 30 s). */
  timeoutMs?: number;
}

/** What the token endpoint answered. */
export interface TokenResponse {
  ok: boolean;
  status: number;
  /** The parsed JSON body, or the text when it was not JSON. */
  body: unknown;
}

/** The signed client assertion (JWT) for the client_credentials grant. */
export async function buildClientAssertion(clientId: string, key: KeyObject, tokenUrl: string, now: Date = new Date()): Promise<string> {
  const alg = algForKey(key);
  if (alg !== 'ES384' && alg !== 'RS384') throw new Error(alg);
  const jose = await import('jose');
  const iat = Math.floor(now.getTime() / 1000);
  return new jose.SignJWT({})
    .setProtectedHeader({ alg, kid: publicJwk(key, alg).kid, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(tokenUrl)
    .setJti(randomUUID())
    .setIssuedAt(iat)
    .setExpirationTime(iat + ASSERTION_LIFETIME_SECONDS)
    .sign(key);
}

/** Signs the assertion and POSTs the client_credentials grant; network failures throw. */
export async function requestToken(options: GetTokenOptions): Promise<TokenResponse> {
  let key: KeyObject;
  try {
    key = createPrivateKey(options.privateKeyPem);
  } catch (e) {
    throw new Error(`the key is not a readable private key: ${(e as Error).message}`);
  }
  const assertion = await buildClientAssertion(options.clientId, key, options.tokenUrl);
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    scope: (options.scopes ?? DEFAULT_CLIENT_SCOPES).join(' '),
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: assertion,
  });
  const { fetch } = await import('undici');
  const res = await fetch(options.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form.toString(),
    signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: reported as text
  }
  return { ok: res.ok, status: res.status, body };
}

/** A one-line account of a refused token request: OAuth error, OperationOutcome diagnostics, or the text. */
export function describeTokenError(status: number, body: unknown): string {
  if (body && typeof body === 'object') {
    const b = body as { error?: unknown; error_description?: unknown; resourceType?: unknown; issue?: unknown };
    if (typeof b.error === 'string') {
      return `HTTP ${status} ${b.error}${typeof b.error_description === 'string' ? `: ${b.error_description}` : ''}`;
    }
    if (b.resourceType === 'OperationOutcome' && Array.isArray(b.issue)) {
      const issues = (b.issue as { severity?: string; code?: string; diagnostics?: string }[]).map(
        (i) => `${i.severity ?? 'error'} ${i.code ?? ''}${i.diagnostics ? `: ${i.diagnostics}` : ''}`.trim(),
      );
      return `HTTP ${status} OperationOutcome: ${issues.join('; ')}`;
    }
    return `HTTP ${status} ${JSON.stringify(body)}`;
  }
  const text = String(body ?? '').trim();
  return `HTTP ${status}${text ? ` ${text.length > 500 ? `${text.slice(0, 500)}...` : text}` : ''}`;
}

function isLoopbackUrl(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `sp-bridge get-token`, awaited: returns the exit code (0 token printed, 1 refused or unreachable, 2 usage). */
export async function runGetToken(
  argv: string[],
  out: (line: string) => void,
  err: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  readStdin: () => string = () => readFileSync(0, 'utf8'),
): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        'client-id': { type: 'string' },
        key: { type: 'string' },
        'token-url': { type: 'string' },
        scope: { type: 'string' },
        'token-only': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (e) {
    err(`${(e as Error).message}\n\n${GET_TOKEN_USAGE}`);
    return 2;
  }
  const v = args.values;
  if (v.help) {
    out(GET_TOKEN_USAGE);
    return 0;
  }
  const missing = (['client-id', 'key', 'token-url'] as const).filter((name) => !v[name]);
  if (missing.length) {
    err(`get-token needs ${missing.map((m) => `--${m}`).join(', ')}\n\n${GET_TOKEN_USAGE}`);
    return 2;
  }
  let url: URL;
  try {
    url = new URL(v['token-url'] as string);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('not http(s)');
  } catch {
    err(`--token-url must be an absolute http(s) URL, not '${v['token-url']}'`);
    return 2;
  }
  if (url.protocol === 'http:' && !isLoopbackUrl(url)) {
    err(`WARNING: ${url.origin} is plain HTTP: the access token will cross the network unencrypted (use https outside a test network)`);
  }
  const scopes = parseScopes(v.scope, DEFAULT_CLIENT_SCOPES);
  if (typeof scopes === 'string') {
    err(`--scope: ${scopes}`);
    return 2;
  }
  let pem: string;
  try {
    pem = v.key === '-' ? readStdin() : readFileSync(v.key as string, 'utf8');
  } catch (e) {
    err(`get-token: cannot read the key ${v.key}: ${(e as Error).message}`);
    return 1;
  }
  let res: TokenResponse;
  try {
    res = await requestToken({ clientId: v['client-id'] as string, privateKeyPem: pem, tokenUrl: url.href, scopes });
  } catch (e) {
    const cause = (e as { cause?: { message?: string } }).cause?.message;
    err(`get-token: ${url.href}: ${(e as Error).message}${cause ? ` (${cause})` : ''}`);
    return 1;
  }
  const token = res.body && typeof res.body === 'object' ? (res.body as { access_token?: unknown }).access_token : undefined;
  if (!res.ok || typeof token !== 'string') {
    err(`get-token: the token endpoint refused: ${describeTokenError(res.status, res.body)}`);
    return 1;
  }
  out(v['token-only'] ? token : JSON.stringify(res.body, null, 2));
  return 0;
}

/**
 * `sp-bridge get-token` for main(): the answer arrives asynchronously, so this returns at once (2 for bad usage
 * found up front, else 0) and sets process.exitCode when the request has finished.
 */
export function getTokenCommand(argv: string[], out: (line: string) => void): number {
  runGetToken(argv, out).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`get-token: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
  return 0;
}
