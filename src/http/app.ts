import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Config } from '../config';
import { FhirError, operationOutcome } from '../errors';
import type { ConformanceSource } from '../fhir/conformance';
import { operations } from '../fhir/operations';
import { FhirRouter } from '../fhir/router';
import type { FhirResponse } from '../fhir/types';
import { parsePrefer, parseQuery, responseResource } from '../fhir/types';
import type { Database, Outbox } from '../storage';
import { Repository } from '../storage';
import { getTerminologyResources } from '../terminology/resources';
import type { ResourceValidator } from '../validation/types';
import { getValidator } from '../validation/validator';
import { describeExchange, type AuditLog, type AuditRecord, type ExchangeDescription } from '../audit';
import { registerAuth, type AuthSetup } from '../auth/plugin';
import { AUDIT_TYPE } from '../fhir/access';
import { resourceType } from '../fhir/registry';
import type { FhirRequest } from '../fhir/types';
import { registerAdmin } from './admin';
import { mediaTypes, responseType } from './content';
import { toErrorResponse } from './errors';
import { registerProtection, registerRateLimit, serverOptions, type ProtectionConfig } from './protection';
import { registerHealth } from './health';
import { Metrics, registerMetrics } from './metrics';
import { registerOpenApi } from './openapi';

export interface AppOptions {
  config: Pick<Config, 'baseUrl' | 'bodyLimitBytes' | 'trustProxy'> & ProtectionConfig;
  db: Database;
  logger: FastifyBaseLogger;
  /** Required: an app is never built without deciding who may call it. */
  auth: AuthSetup;
  /** Where every read and write of patient data, denial and token issue is recorded. */
  audit?: AuditLog;
  /** Defaults to the validator over the shipped profiles and terminology. */
  validator?: ResourceValidator;
  /** Defaults to the shipped terminology and StructureDefinitions. */
  conformance?: ConformanceSource[];
  /** Delivery: what each write enqueues (src/delivery/outbox.ts) and the destinations the admin API lists. */
  delivery?: { outbox?: Outbox; destinations?: string[]; clock?: () => Date };
}

const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** The HTTP face of sp-bridge: turns requests into FhirRequests for the router and its answers into responses. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config, db, logger } = options;
  const validator = options.validator ?? getValidator();
  const conformance = options.conformance ?? [getTerminologyResources(), getValidator().structureDefinitions];
  const app = Fastify({
    loggerInstance: logger,
    // Fastify's own two lines per request would log query strings; onResponse below logs one safe line.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: true },
    trustProxy: config.trustProxy ?? false,
    ...serverOptions(config),
  });
  const conformanceTypes = conformance.flatMap((c) => c.types);
  const metrics = new Metrics({
    db,
    logger: app.log,
    destinations: options.delivery?.destinations,
    clock: options.delivery?.clock,
    otherTypes: conformanceTypes,
    operations: operations.map((op) => op.name),
  });
  const router = new FhirRouter({
    repo: Repository.open(db, { outbox: options.delivery?.outbox }),
    validator,
    operations,
    conformance,
    onValidationRejected: metrics.validationRejected,
    audit: options.audit,
    smart: options.auth.mode === 'smart',
  });
  const record = async (
    req: FastifyRequest,
    what: ExchangeDescription,
    status: number,
    description?: string,
    who: Pick<AuditRecord, 'clientId' | 'via'> = { clientId: req.principal?.clientId, via: req.principal?.via },
  ) => {
    if (!options.audit) return;
    try {
      await options.audit.record({
        ...what,
        ...who,
        recorded: new Date(),
        address: req.ip,
        requestId: req.id,
        status,
        description,
      });
    } catch (err) {
      // The answer still goes out: for a write it has already committed. The operator is told loudly.
      metrics.auditFailed();
      req.log.error({ err }, 'audit record not written');
    }
  };
  const audit = async (req: FastifyRequest, fhirReq: FhirRequest, res: { status: number }, description?: string) => {
    if (auditable(fhirReq.path, conformanceTypes)) await record(req, describeExchange(fhirReq, res), res.status, description);
  };
  // The admin API shows deliveries and replays patient data to GP systems: every call is audited, refusals too.
  app.addHook('onSend', async (req, reply, payload) => {
    if (req.url.startsWith('/admin/')) {
      const get = req.method === 'GET' || req.method === 'HEAD';
      const entities = [{ name: req.url.split('?', 1)[0] }];
      await record(req, { interaction: get ? 'read' : 'operation', action: get ? 'R' : 'E', entities }, reply.statusCode);
    }
    return payload;
  });

  mediaTypes(app);
  // Plugins, in the order their hooks must run: load shedding, helmet and timeouts first (cheapest
  // refusals), then who is calling (auth), then what they may spend (rate limit), then the routes.
  await registerProtection(app, config);
  registerAuth(app, {
    auth: options.auth,
    baseUrl: (req) => baseUrl(config, req),
    onUnauthenticated: (req, reason) => audit(req, fhirRequest(req), { status: 401 }, reason),
    onTokenRequest: (req, outcome) =>
      record(req, { interaction: 'login', action: 'E', entities: [] }, outcome.status, outcome.description, {
        clientId: outcome.clientId,
        via: 'token',
      }),
  });
  await registerRateLimit(app, config);
  registerHealth(app, { db, validator });
  registerMetrics(app, metrics);
  await registerOpenApi(app, { config, operations, conformanceTypes, audit: options.audit !== undefined, smart: options.auth.mode === 'smart' });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('X-Request-Id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    // One line per request. Only the path and the names of query parameters: their values can identify
    // a patient (identifier=...|NHS number, name=...).
    const [path, query = ''] = req.url.split('?', 2);
    req.log.info(
      {
        method: req.method,
        path,
        params: [...new Set(parseQuery(query).map(([k]) => k))],
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request',
    );
  });

  app.setErrorHandler(async (err, req, reply) => {
    const res = toErrorResponse(err, req);
    return send(req, reply, res, baseUrl(config, req));
  });
  app.setNotFoundHandler(async (req, reply) => {
    const res = { status: 404, body: operationOutcome('error', 'not-supported', `There is no route ${req.method} ${req.url.split('?')[0]}`) };
    return send(req, reply, res, baseUrl(config, req));
  });

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const ctx = { baseUrl: baseUrl(config, req), grant: req.principal?.grant };
    const accept = responseType(req);
    if (!accept) {
      throw new FhirError('SPB_NOT_ACCEPTABLE', 'sp-bridge answers in JSON only: application/fhir+json or application/json');
    }
    const fhirReq = fhirRequest(req);
    let res: FhirResponse;
    try {
      res = await router.handle(fhirReq, ctx);
    } catch (err) {
      await audit(req, fhirReq, { status: 500 }, 'internal error');
      throw err;
    }
    await audit(req, fhirReq, res, res.status === 403 ? 'scope' : undefined);
    return send(req, reply, res, ctx.baseUrl);
  };
  registerAdmin(app, { db, destinations: options.delivery?.destinations, clock: options.delivery?.clock });
  app.route({ method: ['GET', 'POST', 'PUT', 'DELETE'], url: '/', handler, exposeHeadRoute: true });
  app.route({ method: ['GET', 'POST', 'PUT', 'DELETE'], url: '/*', handler, exposeHeadRoute: true });
  return app;
}

function send(req: FastifyRequest, reply: FastifyReply, res: FhirResponse, base: string): FastifyReply {
  // The request timeout may have answered already; the handler's late answer is dropped.
  if (reply.sent) return reply;
  reply.code(res.status);
  if (res.version) {
    reply.header('ETag', `W/"${res.version.versionId}"`);
    reply.header('Last-Modified', new Date(res.version.lastUpdated).toUTCString());
  }
  if (res.location) reply.header('Location', `${base}/${res.location}`);
  if ((res.body === undefined && res.raw === undefined) || res.status === 304) return reply.send();
  const pretty = new URLSearchParams(req.url.split('?', 2)[1] ?? '').get('_pretty') === 'true';
  reply.type(`${responseType(req) ?? 'application/fhir+json'}; charset=utf-8`);
  if (res.raw !== undefined && !pretty) return reply.send(res.raw);
  return reply.send(JSON.stringify(responseResource(res), null, pretty ? 2 : undefined));
}

function baseUrl(config: Pick<Config, 'baseUrl'>, req: FastifyRequest): string {
  return config.baseUrl ?? `${req.protocol}://${req.host}`;
}

/** The FHIR interaction an HTTP request asks for. */
function fhirRequest(req: FastifyRequest): FhirRequest {
  const [path, query = ''] = req.url.split('?', 2);
  return {
    method: req.method === 'HEAD' ? 'GET' : req.method,
    path: path.replace(/^\/+/, ''),
    query: parseQuery(query),
    body: req.body,
    ifMatch: header(req, 'if-match'),
    ifNoneExist: header(req, 'if-none-exist'),
    ifNoneMatch: header(req, 'if-none-match'),
    ifModifiedSince: header(req, 'if-modified-since'),
    prefer: parsePrefer(header(req, 'prefer')),
  };
}

/** Patient data, and the audit trail itself: every type sp-bridge stores, transactions, history. Not conformance. */
function auditable(path: string, conformanceTypes: readonly string[]): boolean {
  const first = path.split('/')[0];
  if (first === '' || first === '_history' || first === AUDIT_TYPE) return true;
  return resourceType(first) !== undefined && !conformanceTypes.includes(first);
}

function header(req: FastifyRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
