import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { AUDIT_TYPE } from '../fhir/access';
import { resourceTypes } from '../fhir/registry';
import type { Database } from '../storage/db';
import { DeliveryStore, type DestinationStats } from '../storage/deliveries';
import { errorSummary, withTimeout } from './health';

export interface MetricsOptions {
  db: Database;
  logger: FastifyBaseLogger;
  /** Configured destinations: their delivery gauges exist (at 0) before anything was enqueued for them. */
  destinations?: string[];
  clock?: () => Date;
  /** Resource types served besides the registry's (conformance types such as CodeSystem): named literally in `route`. */
  otherTypes?: readonly string[];
  /** Operation names (without `$`) named literally in `route`. */
  operations?: readonly string[];
  /** Longest wait for the delivery statistics at a scrape. */
  statsTimeoutMs?: number;
}

const UNKNOWN_ROUTE = '/{unknown}';

/**
 * The `route` label of a FHIR request path: a template with ids replaced, so that its values are bounded
 * and name no patient. Only types and operations the server knows appear literally.
 */
export function fhirRouteTemplate(path: string, types: ReadonlySet<string>, operations: ReadonlySet<string>): string {
  const s = path.split('/').filter((x) => x !== '');
  if (s.length === 0) return '/';
  const last = s[s.length - 1];
  if (last.startsWith('$')) {
    if (!operations.has(last.slice(1))) return UNKNOWN_ROUTE;
    if (s.length === 1) return `/${last}`;
    if (!types.has(s[0])) return UNKNOWN_ROUTE;
    if (s.length === 2) return `/${s[0]}/${last}`;
    return s.length === 3 ? `/${s[0]}/{id}/${last}` : UNKNOWN_ROUTE;
  }
  if (s.length === 1 && (s[0] === 'metadata' || s[0] === '_history')) return `/${s[0]}`;
  const [type, second, third] = s;
  if (!types.has(type)) return UNKNOWN_ROUTE;
  switch (s.length) {
    case 1:
      return `/${type}`;
    case 2:
      return second === '_search' || second === '_history' ? `/${type}/${second}` : `/${type}/{id}`;
    case 3:
      return third === '_history' ? `/${type}/{id}/_history` : UNKNOWN_ROUTE;
    case 4:
      return third === '_history' ? `/${type}/{id}/_history/{vid}` : UNKNOWN_ROUTE;
    default:
      return UNKNOWN_ROUTE;
  }
}

type HttpLabels = 'method' | 'route' | 'status';

/**
 * Prometheus metrics of one app instance, in its own Registry. Labels never carry ids, query values or
 * anything else from a request beyond its method, route template and status.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly types: ReadonlySet<string>;
  private readonly operations: ReadonlySet<string>;
  private readonly requests: Counter<HttpLabels>;
  private readonly duration: Histogram<HttpLabels>;
  private readonly rejections: Counter<'resource_type' | 'status'>;
  private readonly auditFailures: Counter;
  private readonly store: DeliveryStore;
  private pendingStats: Promise<DestinationStats[] | undefined> | undefined;

  constructor(private readonly options: MetricsOptions) {
    this.types = new Set([...resourceTypes.map((t) => t.type), ...(options.otherTypes ?? []), AUDIT_TYPE]);
    this.operations = new Set(options.operations ?? []);
    this.store = new DeliveryStore(options.db);
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    this.requests = new Counter({
      name: 'sp_bridge_http_requests_total',
      help: 'HTTP requests answered, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'sp_bridge_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.rejections = new Counter({
      name: 'sp_bridge_validation_rejections_total',
      help: 'Writes refused by validation (400 malformed, 422 invalid), by resource type',
      labelNames: ['resource_type', 'status'],
      registers,
    });
    this.auditFailures = new Counter({
      name: 'sp_bridge_audit_write_failures_total',
      help: 'AuditEvents that could not be written (the request was answered anyway); alert on any',
      registers,
    });
    const stats = () => this.deliveryStats();
    new Gauge({
      name: 'sp_bridge_deliveries',
      help: 'Rows of the delivery outbox, by destination and state',
      labelNames: ['destination', 'state'],
      registers,
      async collect() {
        const all = await stats();
        this.reset();
        for (const d of all ?? []) {
          for (const [state, n] of Object.entries(d.counts)) this.set({ destination: d.destination, state }, n);
        }
      },
    });
    new Gauge({
      name: 'sp_bridge_delivery_oldest_queued_age_seconds',
      help: 'Age of the oldest delivery still waiting (queued or failed) per destination; 0 when none waits',
      labelNames: ['destination'],
      registers,
      async collect() {
        const all = await stats();
        this.reset();
        for (const d of all ?? []) this.set({ destination: d.destination }, d.oldestQueuedAgeSeconds ?? 0);
      },
    });
  }

  /** For RouterOptions.onValidationRejected. */
  readonly validationRejected = (type: string, status: number): void => {
    this.rejections.inc({ resource_type: this.types.has(type) ? type : 'unknown', status: String(status) });
  };

  readonly auditFailed = (): void => {
    this.auditFailures.inc();
  };

  observe(req: FastifyRequest, reply: FastifyReply): void {
    const labels = { method: req.method, route: this.route(req), status: String(reply.statusCode) };
    this.requests.inc(labels);
    this.duration.observe(labels, reply.elapsedTime / 1000);
  }

  route(req: FastifyRequest): string {
    const url = req.routeOptions.url;
    if (req.is404 || url === undefined) return 'not_found';
    if (url === '/*') return fhirRouteTemplate(req.url.split('?', 1)[0], this.types, this.operations);
    return url;
  }

  /**
   * One statistics query per scrape, shared by both delivery gauges (the registry collects them together).
   * Undefined when the database does not answer: the gauges are then left empty and the scrape goes on.
   */
  private deliveryStats(): Promise<DestinationStats[] | undefined> {
    this.pendingStats ??= withTimeout(
      this.store.stats((this.options.clock ?? (() => new Date()))(), this.options.destinations ?? []),
      this.options.statsTimeoutMs ?? 2000,
    )
      .catch((err: unknown) => {
        this.options.logger.warn({ reason: errorSummary(err) }, 'delivery metrics unavailable: the database did not answer');
        return undefined;
      })
      .finally(() => {
        this.pendingStats = undefined;
      });
    return this.pendingStats;
  }
}

/** Records every response and serves GET /metrics (Prometheus text format). */
export function registerMetrics(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onResponse', async (req, reply) => {
    metrics.observe(req, reply);
  });
  app.get('/metrics', async (_req, reply) => {
    const text = await metrics.registry.metrics();
    return reply.code(200).header('Cache-Control', 'no-store').type(metrics.registry.contentType).send(text);
  });
}
