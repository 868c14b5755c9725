import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Database } from '../storage/db';
import { DeliveryStore, type AttemptRecord, type ClaimedDelivery, type FinishRequest, type FinishResult } from '../storage/deliveries';
import { Repository } from '../storage/repository';
import type { Acknowledgement, DeliveryItem, DeliveryOutcome } from './adapter';
import { backoffMs } from './backoff';
import { DEFAULT_WORKER, type Destination, type WorkerSettings } from './destinations';

export interface DeliveryLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface EngineOptions {
  db: Database;
  destinations: Destination[];
  worker?: Partial<WorkerSettings>;
  logger?: DeliveryLogger;
  /** The engine's time: due times, leases and backoff are all measured with it (tests move it). */
  clock?: () => Date;
  /** For the backoff jitter (tests fix it). */
  random?: () => number;
  /** Names this engine in claims and attempt records; defaults to host:pid:random. */
  workerId?: string;
  /** Told of every attempt that handed a record to a destination's adapter (the audit trail). */
  onAttempt?: (attempt: SentAttempt) => Promise<void>;
}

/** A record that left sp-bridge for a destination (or was offered to it), whatever the answer. */
export interface SentAttempt {
  deliveryId: string;
  destination: string;
  resourceType: string;
  resourceId: string;
  version: number;
  patientRef: string | null;
  outcome: 'delivered' | 'accepted' | 'failed' | 'retry' | 'error';
  httpStatus?: number;
  at: Date;
}

interface Running {
  item: ClaimedDelivery;
  abort: AbortController;
  /** Set at shutdown: the attempt is abandoned and its row given back instead of finished. */
  abandoned: boolean;
  /** True until the adapter has answered: the attempt holds one of the `concurrency` slots only while sending. */
  sending: boolean;
  done: Promise<void>;
}

interface PendingFinish {
  request: FinishRequest;
  resolve: (moved: boolean) => void;
  reject: (err: unknown) => void;
}

const silent: DeliveryLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

/**
 * Delivery workers: claim due rows of the outbox, hand each to its destination's adapter, record the attempt
 * and move the row on (delivered, awaiting-ack, retry later with backoff, or dead). Any number of engines,
 * in one process or many, may share one database: claims use FOR UPDATE SKIP LOCKED and carry a lease.
 */
export class DeliveryEngine {
  readonly workerId: string;
  readonly store: DeliveryStore;
  /** Reads what an item needs besides its own version: the Patient, the last live version of a deletion. */
  private readonly repo: Repository;
  private readonly settings: WorkerSettings;
  private readonly destinations: Map<string, Destination>;
  private readonly logger: DeliveryLogger;
  private readonly clock: () => Date;
  private readonly random: () => number;
  private readonly running = new Map<string, Running>();
  /** Attempts of `running` still waiting for the adapter (the slots in use). */
  private sending = 0;
  /**
   * Rows claimed ahead of a free slot, in claim order: one claim serves many attempts. Each holds its lease;
   * one whose lease is too close to its end when a slot frees is given back instead of sent.
   */
  private buffer: ClaimedDelivery[] = [];
  /** Finished attempts waiting to be recorded: recorded together, in one statement per batch. */
  private finishQueue: PendingFinish[] = [];
  private flushing: Promise<void> | undefined;
  /** Acknowledgements that arrived before their row was recorded as awaiting-ack (a fast destination). */
  private readonly earlyAcks = new Map<string, Acknowledgement>();
  private active = false;
  private loopDone: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private adaptersStarted = false;

  constructor(private readonly options: EngineOptions) {
    this.settings = { ...DEFAULT_WORKER, ...options.worker };
    this.destinations = new Map(options.destinations.map((d) => [d.id, d]));
    this.logger = options.logger ?? silent;
    this.clock = options.clock ?? (() => new Date());
    this.random = options.random ?? Math.random;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.store = new DeliveryStore(options.db);
    this.repo = Repository.open(options.db);
  }

  get destinationIds(): string[] {
    return [...this.destinations.keys()];
  }

  /** Starts the adapters (asynchronous ones begin watching for acknowledgements) and the claim loop. */
  async start(): Promise<void> {
    await this.startAdapters();
    if (this.active || this.destinations.size === 0) return;
    this.active = true;
    this.loopDone = this.loop();
  }

  /** Starts the adapters only (for driving the engine with runOnce). */
  async startAdapters(): Promise<void> {
    if (this.adaptersStarted) return;
    this.adaptersStarted = true;
    for (const dest of this.destinations.values()) {
      if (dest.adapter.start) await dest.adapter.start((ack) => this.onAcknowledgement(dest.id, ack));
    }
  }

  /**
   * Graceful stop: claims nothing more, lets in-flight attempts finish for up to shutdownTimeoutMs, then
   * aborts the rest and gives their rows back to the queue, and stops the adapters.
   */
  async stop(): Promise<void> {
    this.active = false;
    this.wake?.();
    await this.loopDone;
    if (this.buffer.length > 0) {
      const unsent = this.buffer.map((item) => item.id);
      this.buffer = [];
      try {
        const n = await this.store.release(unsent, this.workerId, this.clock());
        this.logger.info({ released: n }, 'claimed deliveries not yet sent given back to the queue at shutdown');
      } catch (err) {
        this.logger.error({ err }, 'could not give back claimed deliveries; their leases will expire');
      }
    }
    if (this.running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.settings.shutdownTimeoutMs);
      });
      await Promise.race([Promise.all([...this.running.values()].map((r) => r.done)), timeout]);
      clearTimeout(timer);
    }
    // Attempts whose adapter has answered are only waiting for their record to be written: never given back.
    const recording = [...this.running.values()].filter((r) => !r.sending);
    const left = [...this.running.values()].filter((r) => r.sending);
    if (left.length > 0) {
      for (const r of left) {
        r.abandoned = true;
        r.abort.abort(new Error('sp-bridge is shutting down'));
      }
      try {
        const n = await this.store.release(left.map((r) => r.item.id), this.workerId, this.clock());
        this.logger.warn({ released: n }, 'delivery attempts abandoned at shutdown; rows given back to the queue');
      } catch (err) {
        this.logger.error({ err }, 'could not give back claimed deliveries; their leases will expire');
      }
    }
    await Promise.all(recording.map((r) => r.done));
    await this.flushing;
    if (this.adaptersStarted) {
      this.adaptersStarted = false;
      for (const dest of this.destinations.values()) {
        try {
          await dest.adapter.stop?.();
        } catch (err) {
          this.logger.error({ err, destination: dest.id }, 'adapter did not stop cleanly');
        }
      }
    }
  }

  /**
   * One round, for tests and tools: claims what is due now (up to `limit`) and runs those attempts to the end.
   * Returns how many rows it claimed (superseded rows included). Not for use while the loop runs.
   */
  async runOnce(limit = this.settings.concurrency): Promise<number> {
    const claimed = await this.claim(limit);
    await Promise.all(claimed.filter((item) => item.state !== 'superseded').map((item) => this.launch(item).done));
    return claimed.length;
  }

  /** Runs rounds until nothing is due (at the engine's current time). */
  async drain(maxRounds = 10_000): Promise<number> {
    let total = 0;
    for (let i = 0; i < maxRounds; i++) {
      const n = await this.runOnce();
      if (n === 0) return total;
      total += n;
    }
    return total;
  }

  /** Rows claimed ahead of free slots: as many as there are slots, and at least 8. */
  private get prefetch(): number {
    return Math.max(this.settings.concurrency, 8);
  }

  private async loop(): Promise<void> {
    const concurrency = this.settings.concurrency;
    const capacity = concurrency + this.prefetch;
    while (this.active) {
      await this.launchBuffered();
      if (!this.active) break;
      const want = capacity - this.sending - this.buffer.length;
      const idleSlots = this.buffer.length === 0 && this.sending < concurrency;
      // Claim when a slot would otherwise stay idle, or when at least half the room is free: one claim, many attempts.
      if (want > 0 && (idleSlots || want >= Math.ceil(capacity / 2))) {
        let claimed = 0;
        try {
          const items = await this.claim(want);
          claimed = items.length;
          for (const item of items) if (item.state !== 'superseded') this.buffer.push(item);
        } catch (err) {
          this.logger.error({ err }, 'claiming deliveries failed');
        }
        if (!this.active) break;
        if (claimed > 0) continue;
      }
      await this.launchBuffered();
      if (!this.active) break;
      await this.sleep(this.settings.pollIntervalMs);
    }
  }

  /** Starts buffered rows while slots are free; rows whose lease is nearly over are given back, not sent. */
  private async launchBuffered(): Promise<void> {
    const stale: string[] = [];
    const margin = Math.min(this.settings.attemptTimeoutMs, this.settings.leaseMs / 2);
    while (this.active && this.sending < this.settings.concurrency && this.buffer.length > 0) {
      const item = this.buffer.shift()!;
      const until = item.claimedUntil === null ? Infinity : Date.parse(item.claimedUntil);
      if (this.clock().getTime() + margin >= until) stale.push(item.id);
      else this.launch(item);
    }
    if (stale.length === 0) return;
    try {
      const n = await this.store.release(stale, this.workerId, this.clock());
      this.logger.warn({ released: n }, 'claimed deliveries waited too long for a free slot; given back to the queue');
    } catch (err) {
      this.logger.error({ err }, 'could not give back claimed deliveries; their leases will expire');
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  private async claim(limit: number): Promise<ClaimedDelivery[]> {
    const items = await this.store.claim({
      destinations: this.destinationIds,
      limit,
      now: this.clock(),
      leaseMs: this.settings.leaseMs,
      worker: this.workerId,
    });
    return items;
  }

  private launch(item: ClaimedDelivery): Running {
    const running: Running = { item, abort: new AbortController(), abandoned: false, sending: true, done: Promise.resolve() };
    this.sending++;
    running.done = this.attempt(running)
      .catch((err: unknown) => this.logger.error({ err, delivery: item.id, destination: item.destination }, 'delivery attempt failed'))
      .finally(() => {
        this.freeSlot(running);
        this.running.delete(item.id);
        this.wake?.();
      });
    this.running.set(item.id, running);
    return running;
  }

  /** The adapter has answered (or the attempt ended): its slot may take the next row. */
  private freeSlot(running: Running): void {
    if (!running.sending) return;
    running.sending = false;
    this.sending--;
    this.wake?.();
  }

  /** Queues a finish to be recorded with the others that end close to it (one statement per batch). */
  private finish(id: string, attemptNumber: number, now: Date, result: FinishResult, record: AttemptRecord): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.finishQueue.push({ request: { id, worker: this.workerId, attemptNumber, now, result, record }, resolve, reject });
      if (!this.flushing) {
        this.flushing = this.flushFinishes().finally(() => {
          this.flushing = undefined;
        });
      }
    });
  }

  private async flushFinishes(): Promise<void> {
    while (this.finishQueue.length > 0) {
      const batch = this.finishQueue.splice(0, 500);
      try {
        const moved = await this.store.finishMany(batch.map((p) => p.request));
        batch.forEach((p, i) => p.resolve(moved[i]));
      } catch (err) {
        if (batch.length === 1) {
          batch[0].reject(err);
          continue;
        }
        // One bad record must not fail the others: record them one by one.
        for (const p of batch) {
          const { id, worker, attemptNumber, now, result, record } = p.request;
          await this.store.finish(id, worker, attemptNumber, now, result, record).then(p.resolve, p.reject);
        }
      }
    }
  }

  private async attempt(running: Running): Promise<void> {
    const { item } = running;
    const dest = this.destinations.get(item.destination);
    if (!dest) return;
    const startedAt = this.clock();
    if (item.attempts > dest.retry.maxAttempts) {
      // Claims whose leases expired used up the attempts (e.g. a record that crashes the process).
      const summary = `Gave up: ${item.attempts - 1} attempts did not finish before their leases expired`;
      this.freeSlot(running);
      await this.finish(item.id, item.attemptNumber, this.clock(), { state: 'dead' }, {
        startedAt,
        outcome: 'failed',
        summary,
      });
      return;
    }
    let deliveryItem: DeliveryItem | undefined;
    let readProblem = '';
    try {
      deliveryItem = await this.toDeliveryItem(item);
    } catch (err) {
      // The store could not be read: nothing was sent; retried like any other error.
      readProblem = `Could not read the record to deliver: ${err instanceof Error ? err.message : String(err)}`;
    }
    const outcome = deliveryItem
      ? await this.callAdapter(dest, deliveryItem, running)
      : { kind: 'error' as const, summary: readProblem };
    if (running.abandoned) return;
    this.freeSlot(running);
    const now = this.clock();
    let result: FinishResult;
    let recorded = outcome.kind === 'error' ? 'error' : outcome.kind;
    let summary = outcome.summary;
    switch (outcome.kind) {
      case 'delivered':
        result = { state: 'delivered' };
        break;
      case 'accepted':
        result = { state: 'awaiting-ack', correlationId: outcome.correlationId };
        break;
      case 'failed':
        result = { state: 'dead' };
        break;
      default:
        if (item.attempts >= dest.retry.maxAttempts) {
          result = { state: 'dead' };
          summary = `${summary} (gave up after ${item.attempts} attempts)`;
        } else {
          const wait = backoffMs(dest.retry, item.attempts, this.random, outcome.kind === 'retry' ? outcome.retryAfterMs : undefined);
          result = { state: 'failed', dueAt: new Date(now.getTime() + wait) };
        }
        recorded = outcome.kind === 'error' ? 'error' : 'retry';
    }
    const moved = await this.finish(item.id, item.attemptNumber, now, result, {
      startedAt,
      outcome: recorded,
      summary,
      httpStatus: outcome.kind === 'error' ? undefined : outcome.httpStatus,
      operationOutcome: outcome.kind === 'retry' || outcome.kind === 'failed' ? outcome.outcome : undefined,
    });
    this.logger.info(
      { delivery: item.id, destination: item.destination, attempt: item.attempts, outcome: recorded, state: moved ? result.state : 'lost-claim' },
      'delivery attempt',
    );
    if (deliveryItem && this.options.onAttempt) {
      await this.options
        .onAttempt({
          deliveryId: item.id,
          destination: item.destination,
          resourceType: item.resourceType,
          resourceId: item.resourceId,
          version: item.version,
          patientRef: item.patientRef,
          outcome: recorded as SentAttempt['outcome'],
          httpStatus: outcome.kind === 'error' ? undefined : outcome.httpStatus,
          at: now,
        })
        .catch((err: unknown) => this.logger.error({ err, delivery: item.id }, 'audit record of a delivery attempt not written'));
    }
    if (moved && result.state === 'awaiting-ack') {
      const early = this.earlyAcks.get(`${dest.id}\u0000${result.correlationId}`);
      if (early) {
        this.earlyAcks.delete(`${dest.id}\u0000${result.correlationId}`);
        await this.applyAcknowledgement(dest.id, early);
      }
    }
  }

  /**
   * The item as the adapter sees it. Besides the claimed version it carries, read now from the store: for a
   * deletion, the last live version (`resource`), so the receiver's copy can be found by identifier; and the
   * current version of the Patient the record concerns (`patient`), so an adapter can address the patient's
   * GP without a look-up of its own.
   */
  private async toDeliveryItem(item: ClaimedDelivery): Promise<DeliveryItem> {
    const deleted = item.event === 'deleted' || item.content === null;
    let resource = item.content ? (JSON.parse(item.content) as fhir4.Resource) : undefined;
    if (!resource && deleted && item.version > 1) {
      const before = await this.repo.readVersion(item.resourceType, item.resourceId, String(item.version - 1));
      if (before && !before.deleted && before.json) resource = JSON.parse(before.json) as fhir4.Resource;
    }
    let patient: fhir4.Patient | undefined;
    if (item.resourceType === 'Patient' && resource?.resourceType === 'Patient' && !deleted) {
      patient = resource as fhir4.Patient;
    } else if (item.patientContent !== undefined) {
      // Read in the claim.
      if (item.patientContent !== null) patient = JSON.parse(item.patientContent) as fhir4.Patient;
    } else if (item.patientRef?.startsWith('Patient/')) {
      const current = await this.repo.readCurrent('Patient', item.patientRef.slice('Patient/'.length));
      if (current && !current.deleted && current.json) patient = JSON.parse(current.json) as fhir4.Patient;
    }
    return {
      idempotencyKey: item.idempotencyKey,
      destinationId: item.destination,
      event: item.event as DeliveryItem['event'],
      resourceType: item.resourceType,
      resourceId: item.resourceId,
      versionId: String(item.version),
      resource,
      patientRef: item.patientRef ?? undefined,
      ...(patient ? { patient } : {}),
      attempt: item.attempts,
    };
  }

  /** Calls the adapter under the attempt timeout; a throw or a timeout is an `error` (retried). */
  private async callAdapter(
    dest: Destination,
    item: DeliveryItem,
    running: Running,
  ): Promise<DeliveryOutcome | { kind: 'error'; summary: string }> {
    const signal = running.abort.signal;
    let timer: NodeJS.Timeout | undefined;
    const aborted = new Promise<{ kind: 'error'; summary: string }>((resolve) => {
      const onAbort = () =>
        resolve({ kind: 'error', summary: running.abandoned ? 'Abandoned at shutdown' : `No answer within ${this.settings.attemptTimeoutMs} ms` });
      signal.addEventListener('abort', onAbort, { once: true });
    });
    timer = setTimeout(() => running.abort.abort(new Error('delivery attempt timed out')), this.settings.attemptTimeoutMs);
    try {
      return await Promise.race([
        dest.adapter.deliver(item, signal).then(
          (o) => checkOutcome(o),
          (err: unknown) => ({ kind: 'error' as const, summary: `Adapter error: ${err instanceof Error ? err.message : String(err)}` }),
        ),
        aborted,
      ]);
    } finally {
      clearTimeout(timer);
      timer = undefined;
    }
  }

  private async onAcknowledgement(destination: string, ack: Acknowledgement): Promise<void> {
    if (await this.applyAcknowledgement(destination, ack)) return;
    const key = `${destination}\u0000${ack.correlationId}`;
    const inFlightHere = [...this.running.values()].some((r) => r.item.destination === destination);
    if (inFlightHere && this.earlyAcks.size < 10_000) this.earlyAcks.set(key, ack);
    // The attempt may have recorded awaiting-ack (and looked for early acknowledgements, or finished) between
    // the look above and now: look once more, or this acknowledgement would be lost. Should the attempt take
    // it from earlyAcks meanwhile, only one of the two updates applies (acknowledge() is conditional).
    if (await this.applyAcknowledgement(destination, ack)) {
      if (this.earlyAcks.get(key) === ack) this.earlyAcks.delete(key);
      return;
    }
    if (!inFlightHere) this.logger.warn({ destination, correlationId: ack.correlationId }, 'acknowledgement for no delivery awaiting one; ignored');
  }

  /** Completes or fails the row awaiting `ack`; false when none awaits it (yet). */
  private async applyAcknowledgement(destination: string, ack: Acknowledgement): Promise<boolean> {
    const found = await this.store.acknowledge(destination, ack.correlationId, ack.result, ack.summary, this.clock(), ack.outcome);
    if (found) this.logger.info({ destination, correlationId: ack.correlationId, result: ack.result }, 'delivery acknowledged');
    return found;
  }
}

/** An adapter that answers something outside the contract is treated as an error (retried), not trusted. */
function checkOutcome(o: DeliveryOutcome): DeliveryOutcome | { kind: 'error'; summary: string } {
  const kinds = ['delivered', 'accepted', 'retry', 'failed'];
  if (!o || typeof o !== 'object' || !kinds.includes(o.kind) || typeof o.summary !== 'string') {
    return { kind: 'error', summary: 'Adapter answered something that is not a DeliveryOutcome' };
  }
  if (o.kind === 'accepted' && (typeof o.correlationId !== 'string' || o.correlationId === '')) {
    return { kind: 'error', summary: "Adapter answered 'accepted' without a correlationId" };
  }
  return o;
}
