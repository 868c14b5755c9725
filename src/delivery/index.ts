import type { Database } from '../storage/db';
import type { Outbox } from '../storage/repository';
import { DEFAULT_WORKER, loadDestinationsFile, type DeliveryConfig, type LoadOptions } from './destinations';
import { DeliveryEngine, type DeliveryLogger, type EngineOptions } from './engine';
import { createOutbox } from './outbox';

export type { AdapterFactory, DeliveryAdapter, DeliveryItem, DeliveryOutcome, Acknowledgement } from './adapter';
export { DeliveryEngine } from './engine';
export { loadDestinationsFile, parseDestinations, DestinationsError } from './destinations';
export type { DeliveryConfig, Destination } from './destinations';
export { createOutbox } from './outbox';

/** No DESTINATIONS_FILE: nothing is enqueued and no worker runs. */
export const NO_DESTINATIONS: DeliveryConfig = { worker: DEFAULT_WORKER, destinations: [] };

/** The pieces server.ts wires together: the outbox for the repository and the engine for the workers. */
export function setUpDelivery(
  config: DeliveryConfig,
  db: Database,
  logger?: DeliveryLogger,
  extra: Partial<EngineOptions> = {},
): { outbox: Outbox; engine: DeliveryEngine; destinationIds: string[] } {
  return {
    outbox: createOutbox(config.destinations),
    engine: new DeliveryEngine({ db, destinations: config.destinations, worker: config.worker, logger, ...extra }),
    destinationIds: config.destinations.map((d) => d.id),
  };
}

export function loadDeliveryConfig(file: string | undefined, options?: LoadOptions): DeliveryConfig {
  return file ? loadDestinationsFile(file, options) : NO_DESTINATIONS;
}
