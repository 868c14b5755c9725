import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requireAdmin } from '../auth/plugin';
import { FhirError } from '../errors';
import type { Database } from '../storage/db';
import { DELIVERY_STATES, DeliveryStore, type DeliveryState } from '../storage/deliveries';

export interface AdminOptions {
  db: Database;
  /** The configured destinations: listed in the counts even before anything was enqueued for them. */
  destinations?: string[];
  clock?: () => Date;
}

const ID_RE = /^[1-9][0-9]{0,17}$/;
const MAX_PAGE = 500;

/**
 * The operator's view of delivery, as JSON under /admin/ (errors are OperationOutcomes, like the FHIR API):
 *
 *   GET  /admin/deliveries/stats            counts per destination and state, age of the oldest waiting row
 *   GET  /admin/deliveries?state=&destination=&_count=&before=   newest first, paged
 *   GET  /admin/deliveries/:id              one delivery with every attempt
 *   POST /admin/deliveries/:id/replay       queue a dead delivery again
 *
 * It reads and writes the database only, so any instance answers for all of them. Every route needs the
 * admin scope.
 */
export function registerAdmin(app: FastifyInstance, options: AdminOptions): void {
  const store = new DeliveryStore(options.db);
  const admin = { preHandler: async (req: FastifyRequest) => requireAdmin(req) };
  const clock = options.clock ?? (() => new Date());
  const json = (reply: FastifyReply, status: number, body: unknown) =>
    reply.code(status).type('application/json; charset=utf-8').send(JSON.stringify(body));

  app.get('/admin/deliveries/stats', admin, async (_req, reply) => {
    const now = clock();
    const destinations = await store.stats(now, options.destinations ?? []);
    return json(reply, 200, { generatedAt: now.toISOString(), states: DELIVERY_STATES, destinations });
  });

  app.get('/admin/deliveries', admin, async (req, reply) => {
    const query = req.query as Record<string, string | string[] | undefined>;
    const one = (name: string): string | undefined => {
      const v = query[name];
      if (Array.isArray(v)) throw new FhirError('SPB_INVALID_SEARCH', `Give ${name} at most once`);
      return v === '' ? undefined : v;
    };
    const state = one('state');
    if (state !== undefined && !DELIVERY_STATES.includes(state as DeliveryState)) {
      throw new FhirError('SPB_INVALID_SEARCH', `state must be one of ${DELIVERY_STATES.join(', ')}, not '${state}'`);
    }
    const countText = one('_count');
    const count = countText === undefined ? 50 : Number(countText);
    if (!Number.isInteger(count) || count < 1 || count > MAX_PAGE) {
      throw new FhirError('SPB_INVALID_SEARCH', `_count must be a whole number from 1 to ${MAX_PAGE}`);
    }
    const before = one('before');
    if (before !== undefined && !ID_RE.test(before)) throw new FhirError('SPB_INVALID_SEARCH', 'before must be a delivery id');
    const destination = one('destination');
    const items = await store.list({ state: state as DeliveryState | undefined, destination, before, limit: count + 1 });
    const page = items.slice(0, count);
    let next: string | undefined;
    if (items.length > count) {
      const params = new URLSearchParams();
      if (state) params.set('state', state);
      if (destination) params.set('destination', destination);
      params.set('_count', String(count));
      params.set('before', page[page.length - 1].id);
      next = `/admin/deliveries?${params.toString()}`;
    }
    return json(reply, 200, { items: page, next });
  });

  app.get('/admin/deliveries/:id', admin, async (req, reply) => {
    const id = deliveryId(req);
    const found = await store.get(id);
    if (!found) throw new FhirError('SPB_NOT_FOUND', `There is no delivery ${id}`);
    return json(reply, 200, found);
  });

  app.post('/admin/deliveries/:id/replay', admin, async (req, reply) => {
    const id = deliveryId(req);
    const result = await store.replay(id, clock());
    if (result.ok) return json(reply, 200, { delivery: result.row });
    switch (result.reason) {
      case 'not-found':
        throw new FhirError('SPB_NOT_FOUND', `There is no delivery ${id}`);
      case 'not-dead':
        throw new FhirError('SPB_CONFLICT', `Delivery ${id} is ${result.row?.state}: only a dead delivery can be replayed`);
      default:
        throw new FhirError(
          'SPB_CONFLICT',
          `Delivery ${id} is not replayed: a newer version of ${result.row?.resourceType}/${result.row?.resourceId} has already been delivered to ${result.row?.destination}`,
        );
    }
  });
}

function deliveryId(req: FastifyRequest): string {
  const id = (req.params as { id: string }).id;
  if (!ID_RE.test(id)) throw new FhirError('SPB_NOT_FOUND', `There is no delivery '${id}'`);
  return id;
}
