import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyRequest, FastifyServerOptions } from 'fastify';
import type { Config } from '../config';
import { FhirError } from '../errors';

/**
 * What protects the service from its callers: security headers, timeouts, load shedding, per-client rate
 * limits and refusing new requests while shutting down.
 *
 * Each limit left out of the config is off (tests build apps without them); server.ts always passes all.
 */
export type ProtectionConfig = Partial<Pick<Config, 'rateLimitPerMinute' | 'requestTimeoutMs' | 'loadShedEventLoopDelayMs'>>;

/** Probes and scrapes come from load balancers and monitoring, often, and must not use up a client's quota. */
export const RATE_LIMIT_EXEMPT: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Liveness must not fail from load (the orchestrator would restart a busy but healthy process), and metrics are
 * most wanted when overloaded. Readiness is shed: a 503 there takes an overloaded instance out of rotation.
 */
export const LOAD_SHED_EXEMPT: ReadonlySet<string> = new Set(['/healthz', '/metrics']);

/** Seconds a client is asked to wait when shed for load or refused while shutting down. */
export const RETRY_AFTER_SECONDS = 5;

/** Event-loop utilisation (over the last sample second) above which requests are shed. */
export const MAX_EVENT_LOOP_UTILIZATION = 0.98;

/**
 * Fastify constructor options for timeouts and closing.
 *
 * - requestTimeout: the whole request must arrive within REQUEST_TIMEOUT_MS (slow senders, slowloris); Node.js
 *   answers 408 itself and checks only every 30 s (its connectionsCheckingInterval), so the bound is loose.
 * - handlerTimeout: a request not answered within REQUEST_TIMEOUT_MS of being routed gets 503 (SPB_TIMEOUT,
 *   issue `timeout`) and `request.signal` aborts. The handler itself is not stopped: the router takes no signal,
 *   so a write whose transaction has begun goes on and may still commit after the 503. When the handler
 *   finishes, Fastify finds the reply already sent and drops its answer (logging FST_ERR_REP_ALREADY_SENT).
 *   The 503's diagnostics tell the client to read before retrying a write.
 * - return503OnClosing is off because registerProtection answers those requests itself, as an OperationOutcome.
 */
export function serverOptions(
  config: ProtectionConfig,
): Pick<FastifyServerOptions, 'requestTimeout' | 'handlerTimeout' | 'connectionTimeout' | 'keepAliveTimeout' | 'forceCloseConnections' | 'return503OnClosing'> {
  const base = {
    // Above the idle timeout of common load balancers (60 s), so they never reuse a socket we are closing.
    keepAliveTimeout: 72_000,
    forceCloseConnections: 'idle' as const,
    return503OnClosing: false,
  };
  const timeout = config.requestTimeoutMs;
  if (timeout === undefined) return base;
  return {
    ...base,
    requestTimeout: timeout,
    handlerTimeout: timeout,
    // A socket silent for longer than any request may take: a client that stopped reading its response.
    connectionTimeout: 2 * timeout,
  };
}

/**
 * Registered first (before auth): helmet's headers on every response, 503 while shutting down, and load
 * shedding. Awaited so that the hooks run in this order, before any registered after them.
 */
export async function registerProtection(app: FastifyInstance, config: ProtectionConfig): Promise<void> {
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: true,
      directives: {
        // Allows swagger-ui at /docs (its scripts and stylesheets are files from this origin; it sets inline
        // styles and uses data: images); a JSON response runs nothing either way.
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        frameAncestors: ["'none'"],
        // The quickstart serves plain HTTP on loopback: upgrading /docs' requests to https would break it.
        upgradeInsecureRequests: null,
      },
    },
  });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_req, reply) => {
    if (!closing) return;
    reply.header('Retry-After', String(RETRY_AFTER_SECONDS));
    throw new FhirError('SPB_UNAVAILABLE', 'sp-bridge is shutting down; retry (another instance may answer)');
  });
  app.addHook('onSend', async (_req, reply) => {
    // Requests in flight when close began: their keep-alive socket closes after the answer, not 72 s later.
    if (closing) reply.header('Connection', 'close');
  });

  if (config.loadShedEventLoopDelayMs !== undefined) {
    await app.register(underPressure, {
      maxEventLoopDelay: config.loadShedEventLoopDelayMs,
      maxEventLoopUtilization: MAX_EVENT_LOOP_UTILIZATION,
      eventLoopUtilizationMode: 'interval',
      pressureHandler: (req, reply) => {
        if (LOAD_SHED_EXEMPT.has(routeUrl(req))) return;
        reply.header('Retry-After', String(RETRY_AFTER_SECONDS));
        return Promise.reject(new FhirError('SPB_UNAVAILABLE', 'sp-bridge is overloaded; retry after the time in Retry-After'));
      },
    });
  }
}

/**
 * Per-client request rate: RATE_LIMIT_PER_MINUTE in a one-minute window per client (the authenticated client id,
 * or the address of an unauthenticated caller), 429 with Retry-After above it. Its hook is added to each
 * route, so it runs after every application-wide onRequest hook, auth's included.
 */
export async function registerRateLimit(app: FastifyInstance, config: ProtectionConfig): Promise<void> {
  if (config.rateLimitPerMinute === undefined) return;
  await app.register(rateLimit, {
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    hook: 'onRequest',
    keyGenerator: (req) => (req.principal ? `client:${req.principal.clientId}` : `ip:${req.ip}`),
    allowList: (req) => RATE_LIMIT_EXEMPT.has(routeUrl(req)),
    errorResponseBuilder: (_req, context) =>
      new FhirError('SPB_RATE_LIMITED', `Too many requests: at most ${context.max} a minute per client; retry in ${context.after}`),
  });
}

function routeUrl(req: FastifyRequest): string {
  return req.routeOptions.url ?? '';
}
