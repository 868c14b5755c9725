/**
 * The contract between the delivery engine and an adapter that carries records into a GP system (or any
 * other destination). Adapters are plugins: built-in ones live in ./adapters, third-party ones load from a
 * module path named in the destinations file and export `adapter` (an AdapterFactory).
 */

/** What happened to a resource, as destinations subscribe to it. */
export type DeliveryEvent = 'created' | 'updated' | 'status-changed' | 'deleted';

/** One record to deliver: a version of a resource, with what the engine knows about it. */
export interface DeliveryItem {
  /** Stable across retries and replays: a receiver de-duplicates on it. */
  idempotencyKey: string;
  destinationId: string;
  event: DeliveryEvent;
  resourceType: string;
  resourceId: string;
  versionId: string;
  /**
   * The version to deliver. For a deletion (`event: 'deleted'`) it is the last live version before the
   * deletion, so an adapter can still find what to delete at the receiver (e.g. by business identifier); it is
   * absent only when there was none to read.
   */
  resource?: fhir4.Resource;
  /** `Patient/id` the record concerns, when known: deliveries per patient and destination go in order. */
  patientRef?: string;
  /**
   * The Patient the record concerns, when `patientRef` names one sp-bridge holds: its current version, read
   * when the item is claimed (so adapters that address the GP practice by NHS number, birth date and surname
   * need not look it up). For a Patient item it is the version being delivered. Absent when the Patient is not
   * stored here or is deleted.
   */
  patient?: fhir4.Patient;
  /** 1 for the first try. */
  attempt: number;
}

/**
 * What an attempt came to. Every kind may carry `httpStatus`, the destination's HTTP (or HTTP-like) status when
 * it gave one: the engine records it with the attempt for the operator.
 */
export type DeliveryOutcome = { httpStatus?: number } & (
  /** The destination has it. */
  | { kind: 'delivered'; summary: string }
  /** Handed over; the destination will acknowledge later (e.g. an ITK3 business ack over MESH). */
  | { kind: 'accepted'; summary: string; correlationId: string }
  /** Try again later (network, 5xx, 408, 429); `retryAfterMs` when the destination said when. */
  | { kind: 'retry'; summary: string; retryAfterMs?: number; outcome?: fhir4.OperationOutcome }
  /** Will never succeed as it is (4xx, a record the destination rejects): dead-letter. */
  | { kind: 'failed'; summary: string; outcome: fhir4.OperationOutcome }
);

/** An acknowledgement that arrived later for an `accepted` delivery. */
export interface Acknowledgement {
  correlationId: string;
  result: 'delivered' | 'failed';
  summary: string;
  outcome?: fhir4.OperationOutcome;
}

export interface AdapterCapabilities {
  /** Resource types the adapter can carry. */
  resourceTypes: string[];
  /** Whether it answers `accepted` and reports acknowledgements later through `onAcknowledgement`. */
  asyncAcknowledgement: boolean;
}

export interface DeliveryAdapter {
  readonly capabilities: AdapterCapabilities;
  deliver(item: DeliveryItem, signal: AbortSignal): Promise<DeliveryOutcome>;
  /** For asynchronous adapters: start watching for acknowledgements and report each one. */
  start?(onAcknowledgement: (ack: Acknowledgement) => Promise<void>): Promise<void>;
  stop?(): Promise<void>;
}

export interface AdapterFactory {
  /** Adapter name used in the destinations file, e.g. `fhir-rest`. */
  name: string;
  /** JSON Schema of the adapter's `settings`, checked with ajv when the destinations file loads. */
  settingsSchema: Record<string, unknown>;
  /** `env` is where secrets come from: settings name environment variables, never hold secrets. */
  create(settings: Record<string, unknown>, env: NodeJS.ProcessEnv): DeliveryAdapter;
}
