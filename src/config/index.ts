import { readFileSync } from 'node:fs';
import path from 'node:path';

export type AuthMode = 'smart' | 'none';

export interface Config {
  host: string;
  port: number;
  /** PostgreSQL connection string; absent means embedded PGlite in dataDir. */
  databaseUrl?: string;
  dataDir: string;
  databasePoolSize: number;
  /** Public base URL (behind a proxy); absent means derived from each request's Host. */
  baseUrl?: string;
  bodyLimitBytes: number;
  logLevel: string;
  /** How a code from a code system sp-bridge does not bundle is reported, outside required bindings. */
  unknownCodeSystem: 'warning' | 'information' | 'ignore';
  /** The destinations file (JSON or YAML) saying where records are delivered; absent means no delivery. */
  destinationsFile?: string;
  auth: AuthConfig;
  /** Requests per minute one client may make before 429. */
  rateLimitPerMinute: number;
  /** A request that has not been received and answered in this time is ended (408/503). */
  requestTimeoutMs: number;
  /** Event-loop delay above which new requests are shed with 503. */
  loadShedEventLoopDelayMs: number;
  /** How long SIGTERM waits for in-flight requests and deliveries before closing anyway. */
  shutdownGraceMs: number;
  /** Proxies whose X-Forwarded-For/-Proto/-Host are believed: addresses or CIDRs, comma-separated. */
  trustProxy?: string;
}

export interface AuthConfig {
  mode: AuthMode;
  /** JSON or YAML file registering the backend-services clients and their keys. */
  clientsFile?: string;
  /** PEM (PKCS#8) private key that signs the access tokens sp-bridge issues; absent means a key made at start. */
  tokenSigningKey?: string;
  tokenLifetimeSeconds: number;
  /** Tokens from another authorization server, checked against its JWKS. */
  external?: { issuer: string; jwksUrl: string; audience: string };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface VariableDoc {
  name: string;
  default: string;
  description: string;
  /** Also read from the file named by `${name}_FILE` (Docker and Kubernetes secrets). */
  secret?: boolean;
}

/**
 * Every environment variable sp-bridge reads. README's table, docker-compose.yml and the tests are checked
 * against this list.
 */
export const VARIABLES: readonly VariableDoc[] = [
  { name: 'HOST', default: '127.0.0.1', description: 'Address to listen on' },
  { name: 'PORT', default: '8080', description: 'Port to listen on' },
  { name: 'DATABASE_URL', default: '(none: PGlite)', description: 'PostgreSQL connection string; unset uses embedded PGlite', secret: true },
  { name: 'DATA_DIR', default: './data', description: 'PGlite data directory' },
  { name: 'DATABASE_POOL_SIZE', default: '10', description: 'PostgreSQL connections per instance' },
  { name: 'BASE_URL', default: '(from Host)', description: 'Public base URL, e.g. https://sp.example.nhs.uk/fhir; required with AUTH_MODE=smart and registered clients (their assertions name BASE_URL/auth/token)' },
  { name: 'BODY_LIMIT_BYTES', default: '5242880', description: 'Largest request body accepted (413 above)' },
  { name: 'LOG_LEVEL', default: 'info', description: 'fatal, error, warn, info, debug, trace or silent' },
  { name: 'UNKNOWN_CODE_SYSTEM', default: 'warning', description: 'How a code from an unbundled code system is reported: warning, information or ignore' },
  { name: 'DESTINATIONS_FILE', default: '(none)', description: 'Delivery destinations (JSON or YAML); unset means no delivery' },
  { name: 'AUTH_MODE', default: 'smart', description: "smart (SMART Backend Services tokens) or none (local development on a loopback address only)" },
  { name: 'AUTH_CLIENTS_FILE', default: '(none)', description: 'Registered clients with their public keys and allowed scopes (JSON or YAML)' },
  { name: 'AUTH_TOKEN_SIGNING_KEY', default: '(made at start)', description: 'PEM PKCS#8 EC P-384 or RSA private key signing access tokens; set it when several instances serve one database', secret: true },
  { name: 'AUTH_TOKEN_LIFETIME_SECONDS', default: '300', description: 'Lifetime of issued access tokens' },
  { name: 'AUTH_EXTERNAL_ISSUER', default: '(none)', description: 'Also accept access tokens from this issuer (iss)' },
  { name: 'AUTH_EXTERNAL_JWKS_URL', default: '(none)', description: "The external issuer's JWKS URL" },
  { name: 'AUTH_EXTERNAL_AUDIENCE', default: '(none)', description: 'The audience (aud) external tokens must carry' },
  { name: 'RATE_LIMIT_PER_MINUTE', default: '1200', description: 'Requests per minute per client (429 with Retry-After above)' },
  { name: 'REQUEST_TIMEOUT_MS', default: '30000', description: 'Longest time to receive and answer one request' },
  { name: 'LOAD_SHED_EVENT_LOOP_DELAY_MS', default: '1000', description: 'Event-loop delay above which requests get 503 with Retry-After' },
  { name: 'TRUST_PROXY', default: '(none)', description: 'The TLS proxy in front: its addresses or CIDRs, comma-separated; then X-Forwarded-For gives the client address for rate limits and the audit trail' },
  { name: 'SHUTDOWN_GRACE_MS', default: '10000', description: 'On SIGTERM, how long in-flight requests may take to finish (delivery attempts: worker.shutdownTimeoutMs)' },
];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Reads the configuration from environment variables, naming every bad one. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const text = (name: string): string | undefined => {
    const doc = VARIABLES.find((v) => v.name === name);
    const file = doc?.secret ? env[`${name}_FILE`] : undefined;
    if (file) {
      if (env[name]) problems.push(`Set ${name} or ${name}_FILE, not both`);
      try {
        return readFileSync(file, 'utf8').trim();
      } catch {
        problems.push(`${name}_FILE names a file that cannot be read: ${file}`);
        return undefined;
      }
    }
    const raw = env[name];
    return raw === undefined || raw === '' ? undefined : raw;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}, not '${raw}'`);
      return fallback;
    }
    return n;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    if (!allowed.includes(raw as T)) problems.push(`${name} must be one of ${allowed.join(', ')}, not '${raw}'`);
    return raw as T;
  };
  const file = (name: string): string | undefined => {
    const raw = text(name);
    return raw === undefined ? undefined : path.resolve(raw);
  };

  const config: Config = {
    host: text('HOST') ?? '127.0.0.1',
    port: int('PORT', 8080, 0, 65535),
    databaseUrl: text('DATABASE_URL'),
    dataDir: path.resolve(text('DATA_DIR') ?? './data'),
    databasePoolSize: int('DATABASE_POOL_SIZE', 10, 1, 1000),
    baseUrl: text('BASE_URL')?.replace(/\/+$/, ''),
    bodyLimitBytes: int('BODY_LIMIT_BYTES', 5 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    logLevel: oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    unknownCodeSystem: oneOf('UNKNOWN_CODE_SYSTEM', ['warning', 'information', 'ignore'] as const, 'warning'),
    destinationsFile: file('DESTINATIONS_FILE'),
    auth: {
      mode: oneOf('AUTH_MODE', ['smart', 'none'] as const, 'smart'),
      clientsFile: file('AUTH_CLIENTS_FILE'),
      tokenSigningKey: text('AUTH_TOKEN_SIGNING_KEY'),
      tokenLifetimeSeconds: int('AUTH_TOKEN_LIFETIME_SECONDS', 300, 30, 3600),
    },
    rateLimitPerMinute: int('RATE_LIMIT_PER_MINUTE', 1200, 1, 1_000_000),
    requestTimeoutMs: int('REQUEST_TIMEOUT_MS', 30_000, 100, 600_000),
    loadShedEventLoopDelayMs: int('LOAD_SHED_EVENT_LOOP_DELAY_MS', 1000, 10, 60_000),
    shutdownGraceMs: int('SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
  };
  const trustProxy = text('TRUST_PROXY');
  if (trustProxy !== undefined) {
    if (trustProxy.split(',').every((p) => /^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(p.trim()))) config.trustProxy = trustProxy;
    else problems.push(`TRUST_PROXY must be addresses or CIDRs separated by commas, not '${trustProxy}'`);
  }

  if (config.databaseUrl && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    problems.push('DATABASE_URL must start with postgres:// or postgresql://');
  }
  if (config.baseUrl && !/^https?:\/\/[^/]+/.test(config.baseUrl)) {
    problems.push(`BASE_URL must be an absolute http(s) URL, not '${config.baseUrl}'`);
  }
  if (config.auth.tokenSigningKey && !config.auth.tokenSigningKey.includes('-----BEGIN PRIVATE KEY-----')) {
    problems.push('AUTH_TOKEN_SIGNING_KEY must be a PEM PKCS#8 private key (-----BEGIN PRIVATE KEY-----)');
  }
  const issuer = text('AUTH_EXTERNAL_ISSUER');
  const jwksUrl = text('AUTH_EXTERNAL_JWKS_URL');
  const audience = text('AUTH_EXTERNAL_AUDIENCE');
  if (issuer || jwksUrl || audience) {
    if (!issuer || !jwksUrl || !audience) {
      problems.push('AUTH_EXTERNAL_ISSUER, AUTH_EXTERNAL_JWKS_URL and AUTH_EXTERNAL_AUDIENCE go together: set all three or none');
    } else if (!/^https?:\/\//.test(jwksUrl)) {
      problems.push(`AUTH_EXTERNAL_JWKS_URL must be an http(s) URL, not '${jwksUrl}'`);
    } else {
      config.auth.external = { issuer, jwksUrl, audience };
    }
  }
  if (config.auth.mode === 'none' && !isLoopback(config.host)) {
    problems.push(`AUTH_MODE=none is for local development only: HOST must be a loopback address, not '${config.host}'`);
  }
  if (config.auth.mode === 'smart' && config.auth.clientsFile && !config.baseUrl) {
    // Taken from each request's Host instead, a client's assertion made for another server could be redeemed here.
    problems.push('BASE_URL is required with AUTH_MODE=smart and registered clients: its /auth/token is the audience their assertions must name');
  }
  if (config.auth.mode === 'smart' && !config.auth.clientsFile && !config.auth.external) {
    problems.push('AUTH_MODE=smart needs AUTH_CLIENTS_FILE or AUTH_EXTERNAL_ISSUER (or AUTH_MODE=none for local development)');
  }
  if (problems.length) throw new ConfigError(problems);
  return config;
}
