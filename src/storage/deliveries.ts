import type { Database, Queryable } from './db';

/**
 * The delivery outbox (migration 2): the rows sp_save_version enqueues with each write, and every state change
 * after that. Only SQL lives here; src/delivery/engine.ts decides what to do.
 *
 *   queued ──claim──► in-flight ──delivered──► delivered
 *     ▲                 │  │  └──accepted──► awaiting-ack ──ack──► delivered | dead
 *     │                 │  └──retry──► failed (due again after a backoff) ──claim──► in-flight ...
 *     │                 └──failed / attempts used up──► dead ──replay──► queued
 *     └── a newer version queued for the same destination: superseded (never sent)
 *
 * An in-flight row whose lease (claimed_until) has passed is due again: a killed process loses nothing.
 * Rows of one destination and order key (the patient) go in id order: a row is claimable only when no earlier
 * row of the same destination and order key is still queued, failed or in flight (dead rows do not block).
 * Every time given to these methods comes from the engine's clock, so tests can move time.
 */

export type DeliveryState = 'queued' | 'in-flight' | 'awaiting-ack' | 'delivered' | 'failed' | 'dead' | 'superseded';

export const DELIVERY_STATES: DeliveryState[] = ['queued', 'in-flight', 'awaiting-ack', 'delivered', 'failed', 'dead', 'superseded'];

export interface DeliveryRow {
  id: string;
  destination: string;
  idempotencyKey: string;
  event: string;
  resourceType: string;
  resourceId: string;
  version: number;
  patientRef: string | null;
  state: DeliveryState;
  /** Attempts made since the row was queued (or replayed). */
  attempts: number;
  dueAt: string;
  claimedUntil: string | null;
  correlationId: string | null;
  lastSummary: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface AttemptRow {
  attempt: number;
  startedAt: string;
  finishedAt: string;
  /** delivered, accepted, retry, failed, error, lease-expired, superseded, acknowledged, rejected, replay, released */
  outcome: string;
  summary: string;
  httpStatus: number | null;
  worker: string | null;
  operationOutcome: fhir4.OperationOutcome | null;
}

/** A row a worker has just claimed, with what it needs to call the adapter. */
export interface ClaimedDelivery extends DeliveryRow {
  /** Total attempt number, the fencing token for finish(); also the adapter's `attempt` (after replays: counted from the replay). */
  attemptNumber: number;
  /** The version's content (null for a deletion). */
  content: string | null;
  /**
   * The current, live content of the Patient named by patientRef, read in the claim (undefined when the row
   * has no Patient reference, null when that Patient is not stored or deleted).
   */
  patientContent?: string | null;
}

/** One finished attempt, for finishMany. */
export interface FinishRequest {
  id: string;
  worker: string;
  attemptNumber: number;
  now: Date;
  result: FinishResult;
  record: AttemptRecord;
}

export interface AttemptRecord {
  startedAt: Date;
  outcome: string;
  summary: string;
  httpStatus?: number;
  operationOutcome?: fhir4.OperationOutcome;
}

export type FinishResult =
  | { state: 'delivered' | 'dead' }
  | { state: 'awaiting-ack'; correlationId: string }
  | { state: 'failed'; dueAt: Date };

export interface DestinationStats {
  destination: string;
  counts: Record<DeliveryState, number>;
  /** Seconds since the oldest row still waiting (queued or failed) was enqueued; null when none waits. */
  oldestQueuedAgeSeconds: number | null;
}

interface RawRow {
  id: string;
  destination: string;
  idempotency_key: string;
  event: string;
  resource_type: string;
  resource_id: string;
  version: number;
  patient_ref: string | null;
  state: DeliveryState;
  attempts: number;
  attempt_floor: number;
  due_at: Date | string;
  claimed_until: Date | string | null;
  correlation_id: string | null;
  last_summary: string | null;
  created_at: Date | string;
  updated_at: Date | string;
  finished_at: Date | string | null;
}

const ROW = `d.id::text AS id, d.destination, d.idempotency_key, d.event, d.resource_type, d.resource_id, d.version,
  d.patient_ref, d.state, d.attempts, d.attempt_floor, d.due_at, d.claimed_until, d.correlation_id, d.last_summary,
  d.created_at, d.updated_at, d.finished_at`;

const WAITING = `('queued', 'failed', 'in-flight')`;

export class DeliveryStore {
  constructor(private readonly db: Database) {}

  /**
   * Claims up to `limit` due rows of `destinations` for `worker` until `now + leaseMs`. Safe on many instances at
   * once (FOR UPDATE SKIP LOCKED; a row changed meanwhile is re-checked by PostgreSQL before it is locked).
   * Rows superseded by a newer queued version of the same resource are marked so (and returned with state
   * 'superseded': not to be sent).
   */
  async claim(opts: { destinations: string[]; limit: number; now: Date; leaseMs: number; worker: string }): Promise<ClaimedDelivery[]> {
    if (opts.destinations.length === 0 || opts.limit <= 0) return [];
    const now = opts.now.toISOString();
    return this.db.transaction(async (tx) => {
      // Read the ready index in order and stop at the limit, whatever the (possibly stale) statistics say.
      await tx.query('SET LOCAL enable_sort = off');
      const { rows } = await tx.query<RawRow & { prev_state: string; superseded: boolean; content: string | null; patient_content: string | null }>(
        `WITH c AS (
           SELECT d.id, d.state AS prev_state,
             EXISTS (SELECT 1 FROM deliveries n WHERE n.destination = d.destination AND n.resource_type = d.resource_type
                       AND n.resource_id = d.resource_id AND n.version > d.version AND n.state IN ('queued', 'failed')) AS superseded
           FROM deliveries d
           WHERE d.destination = ANY($1::text[])
             AND d.state IN ${WAITING} AND d.ready_at <= $2::timestamptz
             AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.destination = d.destination AND e.order_key = d.order_key
                               AND e.id < d.id AND e.state IN ${WAITING})
             AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.destination = d.destination AND e.order_key = d.order_key
                               AND e.id <> d.id AND e.state = 'in-flight' AND e.claimed_until > $2::timestamptz)
           ORDER BY d.ready_at, d.id
           LIMIT $3
           FOR UPDATE OF d SKIP LOCKED
         )
         UPDATE deliveries d SET
           state = CASE WHEN c.superseded THEN 'superseded' ELSE 'in-flight' END,
           attempts = CASE WHEN c.superseded THEN d.attempts ELSE d.attempts + 1 END,
           claimed_until = CASE WHEN c.superseded THEN NULL ELSE $2::timestamptz + make_interval(secs => $4::double precision / 1000) END,
           claimed_by = CASE WHEN c.superseded THEN NULL ELSE $5 END,
           finished_at = CASE WHEN c.superseded THEN $2::timestamptz ELSE NULL END,
           last_summary = CASE WHEN c.superseded THEN 'superseded by a newer version' ELSE d.last_summary END,
           updated_at = $2::timestamptz
         FROM c WHERE d.id = c.id
         RETURNING ${ROW}, c.prev_state, c.superseded,
           (SELECT v.content FROM resource_versions v WHERE v.vid = d.vid) AS content,
           (SELECT CASE WHEN p.deleted THEN NULL ELSE p.content END FROM resource_versions p
              WHERE d.patient_ref LIKE 'Patient/%' AND p.type = 'Patient' AND p.id = substr(d.patient_ref, 9)
                AND p.superseded_by IS NULL) AS patient_content`,
        [opts.destinations, now, opts.limit, opts.leaseMs, opts.worker],
      );
      const claimed: ClaimedDelivery[] = [];
      for (const row of rows) {
        if (row.superseded) {
          await insertAttempt(tx, row.id, row.attempts, opts.now, opts.now, {
            outcome: 'superseded',
            summary: 'Not sent: a newer version of this resource is queued for this destination',
          }, opts.worker);
          claimed.push({ ...toRow(row), attemptNumber: row.attempts, content: null });
          continue;
        }
        if (row.prev_state === 'in-flight') {
          await insertAttempt(tx, row.id, row.attempts - 1, opts.now, opts.now, {
            outcome: 'lease-expired',
            summary: 'The worker that claimed this attempt did not finish it before its lease expired',
          }, opts.worker);
        }
        claimed.push({
          ...toRow(row),
          attemptNumber: row.attempts,
          content: row.content,
          ...(row.patient_ref?.startsWith('Patient/') ? { patientContent: row.patient_content } : {}),
        });
      }
      return claimed;
    });
  }

  /**
   * Records an attempt and moves the row on, if `worker` still holds attempt `attemptNumber` of it (a worker
   * whose lease expired and whose row was claimed again changes nothing). Returns whether the row moved.
   */
  async finish(
    id: string,
    worker: string,
    attemptNumber: number,
    now: Date,
    result: FinishResult,
    record: AttemptRecord,
  ): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ id: string }>(
        `UPDATE deliveries SET state = $4, claimed_until = NULL, claimed_by = NULL, updated_at = $5::timestamptz,
           last_summary = $6,
           due_at = COALESCE($7::timestamptz, due_at),
           correlation_id = COALESCE($8, correlation_id),
           finished_at = CASE WHEN $4 IN ('delivered', 'dead') THEN $5::timestamptz ELSE NULL END
         WHERE id = $1::bigint AND state = 'in-flight' AND claimed_by = $2 AND attempts = $3
         RETURNING id::text AS id`,
        [
          id,
          worker,
          attemptNumber,
          result.state,
          now.toISOString(),
          record.summary,
          result.state === 'failed' ? result.dueAt.toISOString() : null,
          result.state === 'awaiting-ack' ? result.correlationId : null,
        ],
      );
      const moved = rows.length > 0;
      await insertAttempt(
        tx,
        id,
        attemptNumber,
        record.startedAt,
        now,
        moved ? record : { ...record, summary: `${record.summary} (not applied: this worker no longer held the claim)` },
        worker,
      );
      return moved;
    });
  }

  /**
   * finish() for many attempts in one statement (one UPDATE ... FROM unnest with the same per-row fencing on
   * state, claimed_by and attempts, and one multi-row INSERT of the attempt records): atomic as a whole.
   * Returns, per request in order, whether its row moved.
   */
  async finishMany(requests: FinishRequest[]): Promise<boolean[]> {
    if (requests.length === 0) return [];
    const { rows } = await this.db.query<{ id: string }>(
      `WITH f AS (
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::text[],
           $7::timestamptz[], $8::text[], $9::timestamptz[], $10::text[], $11::int[], $12::text[])
           AS f(id, worker, attempt, state, now, summary, due_at, correlation_id, started_at, outcome, http_status, operation_outcome)
       ), u AS (
         UPDATE deliveries d SET state = f.state, claimed_until = NULL, claimed_by = NULL, updated_at = f.now,
           last_summary = f.summary,
           due_at = COALESCE(f.due_at, d.due_at),
           correlation_id = COALESCE(f.correlation_id, d.correlation_id),
           finished_at = CASE WHEN f.state IN ('delivered', 'dead') THEN f.now ELSE NULL END
         FROM f
         WHERE d.id = f.id AND d.state = 'in-flight' AND d.claimed_by = f.worker AND d.attempts = f.attempt
         RETURNING d.id
       ), a AS (
         INSERT INTO delivery_attempts (delivery_id, attempt, started_at, finished_at, outcome, summary, http_status, worker, operation_outcome)
         SELECT f.id, f.attempt, f.started_at, f.now, f.outcome,
           left(CASE WHEN u.id IS NULL THEN f.summary || ' (not applied: this worker no longer held the claim)' ELSE f.summary END, 2000),
           f.http_status, f.worker, f.operation_outcome
         FROM f LEFT JOIN u ON u.id = f.id
       )
       SELECT id::text AS id FROM u`,
      [
        requests.map((r) => r.id),
        requests.map((r) => r.worker),
        requests.map((r) => r.attemptNumber),
        requests.map((r) => r.result.state),
        requests.map((r) => r.now.toISOString()),
        requests.map((r) => r.record.summary),
        requests.map((r) => (r.result.state === 'failed' ? r.result.dueAt.toISOString() : null)),
        requests.map((r) => (r.result.state === 'awaiting-ack' ? r.result.correlationId : null)),
        requests.map((r) => r.record.startedAt.toISOString()),
        requests.map((r) => r.record.outcome),
        requests.map((r) => r.record.httpStatus ?? null),
        requests.map((r) => (r.record.operationOutcome ? JSON.stringify(r.record.operationOutcome) : null)),
      ],
    );
    const moved = new Set(rows.map((r) => r.id));
    return requests.map((r) => moved.has(String(r.id)));
  }

  /** Gives back rows this worker claimed but did not finish (shutdown): due at once, the attempt not counted. */
  async release(ids: string[], worker: string, now: Date): Promise<number> {
    if (ids.length === 0) return 0;
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ id: string; attempts: number }>(
        `UPDATE deliveries SET state = CASE WHEN attempts - 1 > attempt_floor THEN 'failed' ELSE 'queued' END,
           attempts = attempts - 1, claimed_until = NULL, claimed_by = NULL, due_at = $3::timestamptz, updated_at = $3::timestamptz
         WHERE id = ANY($1::bigint[]) AND state = 'in-flight' AND claimed_by = $2
         RETURNING id::text AS id, attempts`,
        [ids, worker, now.toISOString()],
      );
      for (const row of rows) {
        await insertAttempt(tx, row.id, row.attempts + 1, now, now, {
          outcome: 'released',
          summary: 'The attempt was abandoned at shutdown and the row given back to the queue',
        }, worker);
      }
      return rows.length;
    });
  }

  /** Completes or fails the row awaiting `correlationId` at `destination`. Returns false if none awaits it. */
  async acknowledge(
    destination: string,
    correlationId: string,
    result: 'delivered' | 'failed',
    summary: string,
    now: Date,
    outcome?: fhir4.OperationOutcome,
  ): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ id: string; attempts: number }>(
        `UPDATE deliveries SET state = $3, finished_at = $5::timestamptz, updated_at = $5::timestamptz, last_summary = $4
         WHERE destination = $1 AND correlation_id = $2 AND state = 'awaiting-ack'
         RETURNING id::text AS id, attempts`,
        [destination, correlationId, result === 'delivered' ? 'delivered' : 'dead', summary, now.toISOString()],
      );
      if (!rows[0]) return false;
      await insertAttempt(tx, rows[0].id, rows[0].attempts, now, now, {
        outcome: result === 'delivered' ? 'acknowledged' : 'rejected',
        summary,
        operationOutcome: outcome,
      });
      return true;
    });
  }

  /**
   * Queues a dead row again with a fresh budget of attempts. Refused (returns the reason) when the row is not
   * dead, or when a newer version of the same resource has already been delivered to the destination:
   * sending the older one now would overwrite it.
   */
  async replay(id: string, now: Date): Promise<{ ok: true; row: DeliveryRow } | { ok: false; reason: 'not-found' | 'not-dead' | 'newer-delivered'; row?: DeliveryRow }> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<RawRow>(`SELECT ${ROW} FROM deliveries d WHERE d.id = $1::bigint FOR UPDATE`, [id]);
      if (!rows[0]) return { ok: false, reason: 'not-found' };
      const row = toRow(rows[0]);
      if (row.state !== 'dead') return { ok: false, reason: 'not-dead', row };
      const newer = await tx.query(
        `SELECT 1 FROM deliveries n WHERE n.destination = $1 AND n.resource_type = $2 AND n.resource_id = $3
           AND n.version > $4 AND n.state IN ('delivered', 'awaiting-ack') LIMIT 1`,
        [row.destination, row.resourceType, row.resourceId, row.version],
      );
      if (newer.rows.length) return { ok: false, reason: 'newer-delivered', row };
      const updated = await tx.query<RawRow>(
        `UPDATE deliveries d SET state = 'queued', attempt_floor = attempts, due_at = $2::timestamptz, updated_at = $2::timestamptz,
           correlation_id = NULL, finished_at = NULL, claimed_until = NULL, claimed_by = NULL
         WHERE d.id = $1::bigint RETURNING ${ROW}`,
        [id, now.toISOString()],
      );
      await insertAttempt(tx, id, row.attempts, now, now, { outcome: 'replay', summary: 'Queued again by an operator' });
      return { ok: true, row: toRow(updated.rows[0]) };
    });
  }

  async stats(now: Date, destinations: string[] = []): Promise<DestinationStats[]> {
    const { rows } = await this.db.query<{ destination: string; state: DeliveryState; n: string; oldest: Date | string | null }>(
      `SELECT destination, state, count(*)::text AS n,
         min(created_at) FILTER (WHERE state IN ('queued', 'failed')) AS oldest
       FROM deliveries GROUP BY destination, state`,
    );
    const byDestination = new Map<string, DestinationStats>();
    const entry = (destination: string): DestinationStats => {
      let s = byDestination.get(destination);
      if (!s) {
        s = {
          destination,
          counts: Object.fromEntries(DELIVERY_STATES.map((st) => [st, 0])) as Record<DeliveryState, number>,
          oldestQueuedAgeSeconds: null,
        };
        byDestination.set(destination, s);
      }
      return s;
    };
    for (const d of destinations) entry(d);
    for (const row of rows) {
      const s = entry(row.destination);
      s.counts[row.state] = Number(row.n);
      if (row.oldest !== null) {
        const age = Math.max(0, (now.getTime() - new Date(row.oldest).getTime()) / 1000);
        s.oldestQueuedAgeSeconds = Math.max(s.oldestQueuedAgeSeconds ?? 0, Math.round(age * 1000) / 1000);
      }
    }
    return [...byDestination.values()].sort((a, b) => a.destination.localeCompare(b.destination));
  }

  /** Newest first; `before` is the id the previous page ended at. */
  async list(filter: { state?: DeliveryState; destination?: string; before?: string; limit: number }): Promise<DeliveryRow[]> {
    const { rows } = await this.db.query<RawRow>(
      `SELECT ${ROW} FROM deliveries d
       WHERE ($1::text IS NULL OR d.state = $1::text) AND ($2::text IS NULL OR d.destination = $2::text)
         AND ($3::bigint IS NULL OR d.id < $3::bigint)
       ORDER BY d.id DESC LIMIT $4`,
      [filter.state ?? null, filter.destination ?? null, filter.before ?? null, filter.limit],
    );
    return rows.map(toRow);
  }

  async get(id: string): Promise<{ delivery: DeliveryRow; attempts: AttemptRow[] } | undefined> {
    const { rows } = await this.db.query<RawRow>(`SELECT ${ROW} FROM deliveries d WHERE d.id = $1::bigint`, [id]);
    if (!rows[0]) return undefined;
    const attempts = await this.db.query<{
      attempt: number;
      started_at: Date | string;
      finished_at: Date | string;
      outcome: string;
      summary: string;
      http_status: number | null;
      worker: string | null;
      operation_outcome: string | null;
    }>(
      `SELECT attempt, started_at, finished_at, outcome, summary, http_status, worker, operation_outcome
       FROM delivery_attempts WHERE delivery_id = $1::bigint ORDER BY id`,
      [id],
    );
    return {
      delivery: toRow(rows[0]),
      attempts: attempts.rows.map((a) => ({
        attempt: Number(a.attempt),
        startedAt: iso(a.started_at),
        finishedAt: iso(a.finished_at),
        outcome: a.outcome,
        summary: a.summary,
        httpStatus: a.http_status === null ? null : Number(a.http_status),
        worker: a.worker,
        operationOutcome: a.operation_outcome ? (JSON.parse(a.operation_outcome) as fhir4.OperationOutcome) : null,
      })),
    };
  }
}

async function insertAttempt(
  tx: Queryable,
  deliveryId: string,
  attempt: number,
  startedAt: Date,
  finishedAt: Date,
  record: Omit<AttemptRecord, 'startedAt'>,
  worker?: string,
): Promise<void> {
  await tx.query(
    `INSERT INTO delivery_attempts (delivery_id, attempt, started_at, finished_at, outcome, summary, http_status, worker, operation_outcome)
     VALUES ($1::bigint, $2, $3::timestamptz, $4::timestamptz, $5, $6, $7, $8, $9)`,
    [
      deliveryId,
      attempt,
      startedAt.toISOString(),
      finishedAt.toISOString(),
      record.outcome,
      record.summary.slice(0, 2000),
      record.httpStatus ?? null,
      worker ?? null,
      record.operationOutcome ? JSON.stringify(record.operationOutcome) : null,
    ],
  );
}

function iso(value: Date | string): string {
  return new Date(value).toISOString();
}

function toRow(row: RawRow): DeliveryRow {
  return {
    id: String(row.id),
    destination: row.destination,
    idempotencyKey: row.idempotency_key,
    event: row.event,
    resourceType: row.resource_type,
    resourceId: row.resource_id,
    version: Number(row.version),
    patientRef: row.patient_ref,
    state: row.state,
    attempts: Number(row.attempts) - Number(row.attempt_floor),
    dueAt: iso(row.due_at),
    claimedUntil: row.claimed_until === null ? null : iso(row.claimed_until),
    correlationId: row.correlation_id,
    lastSummary: row.last_summary,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
    finishedAt: row.finished_at === null ? null : iso(row.finished_at),
  };
}
