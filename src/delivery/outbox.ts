import type { Outbox, OutboxChange, OutboxRow } from '../storage/repository';
import type { DeliveryEvent } from './adapter';
import type { Destination } from './destinations';
import { patientRefOf } from './patient';

/**
 * What a write is, as destinations subscribe to it: `created` (first version, or again after a deletion),
 * `updated` (any later version) and also `status-changed` when `status` differs from the version it
 * replaces, or `deleted`.
 */
export function eventsOf(change: OutboxChange): DeliveryEvent[] {
  if (change.resource === null) return ['deleted'];
  if (!change.previous) return ['created'];
  const before = (change.previous as { status?: unknown }).status;
  const after = (change.resource as { status?: unknown }).status;
  return before !== after ? ['status-changed', 'updated'] : ['updated'];
}

/** The stable key a receiver de-duplicates on: one per destination and resource version. */
export function idempotencyKey(destination: string, type: string, id: string, version: number): string {
  return `${destination}:${type}/${id}/_history/${version}`;
}

/**
 * The Outbox the repository calls inside every write: one row per destination that receives it, carrying the
 * most specific event the destination subscribed to (status-changed before updated).
 */
export function createOutbox(destinations: Destination[]): Outbox {
  return (change) => {
    const events = eventsOf(change);
    const current = change.resource ?? change.previous ?? null;
    const status = (current as { status?: unknown } | null)?.status;
    const rows: OutboxRow[] = [];
    let patientRef: string | null | undefined;
    for (const dest of destinations) {
      let event: DeliveryEvent | undefined;
      for (const rule of dest.receives) {
        if (rule.resourceType !== change.type) continue;
        if (rule.status && !(typeof status === 'string' && rule.status.includes(status))) continue;
        event = events.find((e) => rule.events.includes(e));
        if (event) break;
      }
      if (!event) continue;
      if (patientRef === undefined) patientRef = patientRefOf(current) ?? (change.type === 'Patient' ? `Patient/${change.id}` : null);
      rows.push({
        destination: dest.id,
        event,
        idempotencyKey: idempotencyKey(dest.id, change.type, change.id, change.version),
        orderKey: patientRef ?? `${change.type}/${change.id}`,
        patientRef,
      });
    }
    return rows;
  };
}
