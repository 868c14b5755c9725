import path from 'node:path';

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
  /** The destinations file (JSON) saying where records are delivered; absent means no delivery. */
  destinationsFile?: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads the configuration from environment variables, naming every bad one. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}, not '${raw}'`);
      return fallback;
    }
    return n;
  };
  const config: Config = {
    host: env.HOST || '127.0.0.1',
    port: int('PORT', 8080, 0, 65535),
    databaseUrl: env.DATABASE_URL || undefined,
    dataDir: path.resolve(env.DATA_DIR || './data'),
    databasePoolSize: int('DATABASE_POOL_SIZE', 10, 1, 1000),
    baseUrl: env.BASE_URL ? env.BASE_URL.replace(/\/+$/, '') : undefined,
    bodyLimitBytes: int('BODY_LIMIT_BYTES', 5 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    logLevel: env.LOG_LEVEL || 'info',
    unknownCodeSystem: (env.UNKNOWN_CODE_SYSTEM || 'warning') as Config['unknownCodeSystem'],
  };
  if (env.DESTINATIONS_FILE) config.destinationsFile = path.resolve(env.DESTINATIONS_FILE);
  if (!['warning', 'information', 'ignore'].includes(config.unknownCodeSystem)) {
    problems.push(`UNKNOWN_CODE_SYSTEM must be warning, information or ignore, not '${config.unknownCodeSystem}'`);
  }
  if (config.databaseUrl && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    problems.push(`DATABASE_URL must start with postgres:// or postgresql://`);
  }
  if (config.baseUrl && !/^https?:\/\/[^/]+/.test(config.baseUrl)) {
    problems.push(`BASE_URL must be an absolute http(s) URL, not '${config.baseUrl}'`);
  }
  if (!LOG_LEVELS.includes(config.logLevel)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  if (problems.length) throw new ConfigError(problems);
  return config;
}
