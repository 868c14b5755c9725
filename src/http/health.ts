import type { FastifyInstance } from 'fastify';
import type { Database } from '../storage/db';
import { pendingMigrations } from '../storage/migrations';
import { getTerminology, type Terminology } from '../terminology/codesystem';
import type { ResourceValidator } from '../validation/types';

export interface HealthOptions {
  db: Database;
  /** The validator writes are checked with; readiness counts the StructureDefinitions it exposes. */
  validator: (ResourceValidator & { readonly structureDefinitions?: { all(): readonly unknown[] } }) | undefined;
  /** Defaults to the shipped terminology the validator uses. */
  terminology?: Pick<Terminology, 'codeSystemUrls'>;
  /** Longest wait for each database query of a readiness check. */
  timeoutMs?: number;
}

export type CheckName = 'database' | 'migrations' | 'profiles' | 'terminology';

export interface CheckResult {
  status: 'ok' | 'failed';
  reason?: string;
}

export interface Readiness {
  status: 'ready' | 'unavailable';
  checks: Record<CheckName, CheckResult>;
}

export class TimeoutError extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

/** `promise`, or a TimeoutError after `ms`; the promise is left to settle on its own. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(ms)), ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A failure's class and code only (e.g. `DatabaseError 3D000`, `Error ECONNREFUSED`): messages can carry
 * host names, statement text or parameters.
 */
export function errorSummary(err: unknown): string {
  if (err instanceof TimeoutError) return err.message;
  if (!(err instanceof Error)) return 'failed';
  const code = (err as { code?: unknown }).code;
  const safeCode = typeof code === 'string' && /^[A-Za-z0-9_]{1,32}$/.test(code) ? ` ${code}` : '';
  return `${err.constructor.name}${safeCode}`;
}

const ok: CheckResult = { status: 'ok' };
const failed = (reason: string): CheckResult => ({ status: 'failed', reason });

export async function checkReadiness(options: HealthOptions): Promise<Readiness> {
  const timeoutMs = options.timeoutMs ?? 2000;
  let database: CheckResult;
  let migrations: CheckResult;
  try {
    await withTimeout(options.db.query('SELECT 1'), timeoutMs);
    database = ok;
  } catch (err) {
    database = failed(`database unreachable: ${errorSummary(err)}`);
  }
  if (database.status === 'ok') {
    try {
      const pending = await withTimeout(pendingMigrations(options.db), timeoutMs);
      migrations = pending === 0 ? ok : failed(`${pending} migration${pending === 1 ? '' : 's'} not applied`);
    } catch (err) {
      migrations = failed(`could not read schema_migrations: ${errorSummary(err)}`);
    }
  } else {
    migrations = failed('not checked: the database is unreachable');
  }

  let profiles: CheckResult;
  const definitions = options.validator?.structureDefinitions;
  if (!options.validator) profiles = failed('no validator');
  else if (!definitions) profiles = failed('the validator exposes no StructureDefinitions');
  else profiles = definitions.all().length > 0 ? ok : failed('no StructureDefinitions loaded');

  let terminology: CheckResult;
  try {
    const codeSystems = (options.terminology ?? getTerminology()).codeSystemUrls().length;
    terminology = codeSystems > 0 ? ok : failed('no CodeSystems loaded');
  } catch (err) {
    terminology = failed(`terminology not loaded: ${errorSummary(err)}`);
  }

  const checks = { database, migrations, profiles, terminology };
  const ready = Object.values(checks).every((c) => c.status === 'ok');
  return { status: ready ? 'ready' : 'unavailable', checks };
}

/**
 * GET /healthz: the process is up (liveness; no database call).
 * GET /readyz: 200 when the database answers, its schema is current and the profiles and terminology are
 * loaded; 503 otherwise, naming each check that failed.
 */
export function registerHealth(app: FastifyInstance, options: HealthOptions): void {
  let wasReady: boolean | undefined;

  app.get('/healthz', async (_req, reply) =>
    reply.code(200).header('Cache-Control', 'no-store').type('application/json; charset=utf-8').send('{"status":"ok"}'),
  );

  app.get('/readyz', async (req, reply) => {
    const readiness = await checkReadiness(options);
    const ready = readiness.status === 'ready';
    if (ready !== wasReady) {
      // Probes poll every few seconds: log the changes, not every answer.
      if (ready) req.log.info('ready');
      else req.log.warn({ checks: readiness.checks }, 'not ready');
      wasReady = ready;
    }
    return reply
      .code(ready ? 200 : 503)
      .header('Cache-Control', 'no-store')
      .type('application/json; charset=utf-8')
      .send(JSON.stringify(readiness));
  });
}
