import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AuditLog, describeDelivery } from './audit';
import { loadClients, type RegisteredClient } from './auth/clients';
import type { AuthSetup } from './auth/plugin';
import { TokenService } from './auth/tokens';
import { ConfigError, loadConfig } from './config';
import { loadDeliveryConfig, setUpDelivery } from './delivery';
import { buildApp } from './http/app';
import { createLogger } from './http/logging';
import { openDatabase } from './storage';
import { getTerminologyResources } from './terminology/resources';
import { Validator } from './validation/validator';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  let deliveryConfig;
  let clients = new Map<string, RegisteredClient>();
  try {
    // Before the database opens: a bad destinations or clients file stops start-up with every problem named.
    deliveryConfig = loadDeliveryConfig(config.destinationsFile);
    if (config.auth.clientsFile) clients = loadClients(config.auth.clientsFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const db = await openDatabase(config);
  const audit = new AuditLog(db, { logger: logger.child({ component: 'audit' }) });
  const delivery = setUpDelivery(deliveryConfig, db, logger.child({ component: 'delivery' }), {
    onAttempt: (attempt) => audit.record(describeDelivery(attempt)),
  });
  logger.info({ store: db.kind, dataDir: db.kind === 'pglite' ? config.dataDir : undefined }, 'store ready');
  const validator = Validator.load({ unknownCodeSystem: config.unknownCodeSystem });
  let auth: AuthSetup;
  if (config.auth.mode === 'none') {
    logger.warn({ host: config.host }, 'AUTH_MODE=none: every caller may do everything, admin included; for local development only');
    auth = { mode: 'none' };
  } else {
    if (!config.auth.tokenSigningKey) {
      logger.warn('AUTH_TOKEN_SIGNING_KEY is not set: tokens are signed with a key made at start, so they do not survive a restart or work on other instances');
    }
    auth = { mode: 'smart', tokens: await TokenService.create({ db, config: config.auth, clients }) };
    logger.info({ clients: clients.size, externalIssuer: config.auth.external?.issuer }, 'auth ready');
  }
  const app = await buildApp({
    config,
    db,
    logger,
    auth,
    audit,
    validator,
    conformance: [getTerminologyResources(), validator.structureDefinitions],
    delivery: { outbox: delivery.outbox, destinations: delivery.destinationIds },
  });
  await app.listen({ host: config.host, port: config.port });
  await delivery.engine.start();
  logger.info({ destinations: delivery.destinationIds }, 'delivery started');

  installShutdown({
    app,
    logger,
    graceMs: config.shutdownGraceMs,
    // Stops claiming, lets attempts in flight finish (bounded by its own shutdownTimeoutMs), gives back the rest.
    alongside: [{ name: 'delivery', close: () => delivery.engine.stop() }],
    // In this order once requests and deliveries are done; anything that writes to the store (an audit log
    // writer's flush) goes before the database.
    closers: [
      { name: 'audit', close: () => audit.close() },
      { name: 'database', close: () => db.close() },
    ],
  });
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));
}

interface Closer {
  name: string;
  close: () => Promise<void>;
}

interface ShutdownOptions {
  app: FastifyInstance;
  logger: Logger;
  /** How long requests in flight may take to finish before their connections are destroyed. */
  graceMs: number;
  /** Stopped while the HTTP server drains. */
  alongside: Closer[];
  /** Closed one after the other once the HTTP server and `alongside` are done. */
  closers: Closer[];
}

/**
 * On SIGTERM or SIGINT: stop accepting connections and let the requests in flight finish, for up to graceMs,
 * then destroy the connections still open; stop `alongside` meanwhile; then the closers in order; exit 0, or 1
 * when something did not close cleanly. A second signal during shutdown exits at once with 1.
 */
function installShutdown(options: ShutdownOptions): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      options.logger.warn({ signal }, 'second signal during shutdown: exiting now');
      process.exit(1);
    }
    stopping = true;
    options.logger.info({ signal, graceMs: options.graceMs }, 'shutting down');
    void shutdown(options).then((clean) => process.exit(clean ? 0 : 1));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function shutdown({ app, logger, graceMs, alongside, closers }: ShutdownOptions): Promise<boolean> {
  let clean = true;
  const close = async (closer: Closer) => {
    try {
      await closer.close();
    } catch (err) {
      clean = false;
      logger.error({ err, closing: closer.name }, 'did not close cleanly');
    }
  };
  await Promise.all([close({ name: 'http', close: () => drainHttp(app, graceMs, logger) }), ...alongside.map(close)]);
  for (const closer of closers) await close(closer);
  logger.info({ clean }, 'shut down');
  return clean;
}

/** Fastify's close() refuses new connections, closes idle ones and waits for the requests in flight. */
async function drainHttp(app: FastifyInstance, graceMs: number, logger: Logger): Promise<void> {
  const closed = app.close();
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<'grace over'>((resolve) => {
    timer = setTimeout(() => resolve('grace over'), graceMs);
  });
  const first = await Promise.race([closed, graceOver]);
  clearTimeout(timer);
  if (first === 'grace over') {
    logger.warn({ graceMs }, 'requests still in flight when the grace period ended: closing their connections');
    app.server.closeAllConnections();
    await closed;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`sp-bridge failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
