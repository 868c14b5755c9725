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
  try {
    // Before the database opens: a bad destinations file stops start-up with every problem named.
    deliveryConfig = loadDeliveryConfig(config.destinationsFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const db = await openDatabase(config);
  const delivery = setUpDelivery(deliveryConfig, db, logger.child({ component: 'delivery' }));
  logger.info({ store: db.kind, dataDir: db.kind === 'pglite' ? config.dataDir : undefined }, 'store ready');
  const validator = Validator.load({ unknownCodeSystem: config.unknownCodeSystem });
  const app = await buildApp({
    config,
    db,
    logger,
    validator,
    conformance: [getTerminologyResources(), validator.structureDefinitions],
    delivery: { outbox: delivery.outbox, destinations: delivery.destinationIds },
  });
  await app.listen({ host: config.host, port: config.port });
  await delivery.engine.start();
  logger.info({ destinations: delivery.destinationIds }, 'delivery started');

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    await app.close();
    // Stop claiming, let in-flight attempts finish (bounded), give back the rest; then close the store.
    await delivery.engine.stop();
    await db.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));
}

main().catch((err: unknown) => {
  process.stderr.write(`sp-bridge failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
