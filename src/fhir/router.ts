import { FhirError } from '../errors';
import { AUDIT_TYPE, checkAccess } from './access';
import type { Repository } from '../storage/repository';
import { toOperationOutcome, type ResourceValidator } from '../validation/types';
import { capabilityStatement } from './capability';
import type { ConformanceSource } from './conformance';
import * as interactions from './interactions';
import { OperationParams, type OperationDefinition } from './operations/operation';
import { processBundle } from './transaction';
import { formParams, type FhirRequest, type FhirResponse, type RequestContext } from './types';

export interface RouterOptions {
  repo: Repository;
  validator: ResourceValidator;
  operations: OperationDefinition[];
  conformance: ConformanceSource[];
  /** The audit trail, served read-only as AuditEvent. */
  audit?: AuditReader;
  /** Whether tokens are required: the CapabilityStatement then declares SMART security. */
  smart?: boolean;
  /** Told of every write refused by validation (for metrics). */
  onValidationRejected?: (type: string, status: number) => void;
}

export interface AuditReader {
  read(id: string): Promise<fhir4.AuditEvent | undefined>;
  search(params: [string, string][], ctx: RequestContext): Promise<fhir4.Bundle>;
}

/**
 * Routes a FHIR request to its interaction. Knows nothing of HTTP: routes and Bundle entries both come
 * here. Errors the client caused come back as OperationOutcome responses; anything else is thrown.
 */
export class FhirRouter {
  private readonly operations: Map<string, OperationDefinition>;

  constructor(private readonly options: RouterOptions) {
    this.operations = new Map(options.operations.map((op) => [op.name, op]));
  }

  get validator(): ResourceValidator {
    return this.options.validator;
  }

  async handle(req: FhirRequest, ctx: RequestContext): Promise<FhirResponse> {
    try {
      return await this.dispatch(this.options.repo, req, ctx);
    } catch (err) {
      if (err instanceof FhirError) return { status: err.status, body: err.outcome };
      throw err;
    }
  }

  dispatch(repo: Repository, req: FhirRequest, ctx: RequestContext): Promise<FhirResponse> {
    const segments = req.path.split('/').filter((s) => s !== '');
    const method = req.method.toUpperCase() === 'HEAD' ? 'GET' : req.method.toUpperCase();
    const [first, second, third, fourth] = segments;
    // With tokens required, only the CapabilityStatement is served to a caller the auth hook let through
    // without one; no grant must never read as "an internal caller that may do everything".
    if (this.options.smart && !ctx.grant && !(first === 'metadata' && segments.length === 1)) {
      throw new FhirError('SPB_UNAUTHORIZED', 'An access token is required');
    }
    checkAccess(ctx.grant, req);
    if (segments.length === 0) {
      return only(method, ['POST'], () => processBundle(this, repo, req, ctx));
    }
    if (first === 'metadata' && segments.length === 1) {
      return only(method, ['GET'], async () => ({
        status: 200,
        body: capabilityStatement(ctx, {
          operations: this.options.operations,
          conformanceTypes: this.options.conformance.flatMap((c) => c.types),
          audit: this.options.audit !== undefined,
          smart: this.options.smart,
        }),
      }));
    }
    if (first === '_history' && segments.length === 1) {
      return only(method, ['GET'], () => interactions.history(repo, req, ctx));
    }
    const last = segments[segments.length - 1];
    if (last.startsWith('$')) return this.operation(repo, req, ctx, segments);
    if (first === AUDIT_TYPE) return this.auditEvents(method, segments, req, ctx);
    if (!/^[A-Z][A-Za-z]+$/.test(first) || segments.length > 4) throw routeNotFound(req);
    const conformance = this.options.conformance.find((c) => c.types.includes(first));
    if (conformance && second === '_search' && segments.length === 2) {
      return only(method, ['POST'], async () =>
        conformanceRead(conformance, first, undefined, { ...req, query: [...req.query, ...searchForm(req.body)] }, ctx),
      );
    }
    if (conformance && segments.length <= 2) {
      return only(method, ['GET'], async () => conformanceRead(conformance, first, second, req, ctx));
    }
    if (conformance) throw routeNotFound(req);
    const type = interactions.checkType(first);
    if (segments.length === 1) {
      switch (method) {
        case 'GET':
          return interactions.search(repo, type, req.query, req, ctx);
        case 'POST':
          this.checkWrite(type, req.body, req.resourcePath);
          return interactions.create(repo, type, req);
        case 'PUT':
          this.checkWrite(type, req.body, req.resourcePath);
          return conditional(req, () => interactions.conditionalUpdate(repo, type, req));
        case 'DELETE':
          return conditional(req, () => interactions.conditionalDelete(repo, type, req));
        default:
          throw methodNotAllowed(method, req.path);
      }
    }
    if (second === '_search' && segments.length === 2) {
      return only(method, ['POST'], () => interactions.search(repo, type, [...req.query, ...searchForm(req.body)], req, ctx));
    }
    if (second === '_history' && segments.length === 2) {
      return only(method, ['GET'], () => interactions.history(repo, req, ctx, type));
    }
    if (segments.length === 2) {
      switch (method) {
        case 'GET':
          return interactions.read(repo, type, second, req);
        case 'PUT':
          this.checkWrite(type, req.body, req.resourcePath);
          return interactions.update(repo, type, second, req);
        case 'DELETE':
          return interactions.remove(repo, type, second, req);
        default:
          throw methodNotAllowed(method, req.path);
      }
    }
    if (third === '_history' && segments.length === 3) {
      return only(method, ['GET'], () => interactions.history(repo, req, ctx, type, second));
    }
    if (third === '_history' && fourth !== undefined) {
      return only(method, ['GET'], () => interactions.vread(repo, type, second, fourth));
    }
    throw routeNotFound(req);
  }

  /**
   * Refuses a resource that is not valid, with every issue found: 400 when it is not even well-formed
   * FHIR, 422 when it is well-formed but breaks its profile, an invariant or a terminology rule.
   */
  checkWrite(type: string, body: unknown, path?: string): void {
    const resource = interactions.resourceBody(body, type);
    const issues = this.options.validator.validate(resource, { path });
    const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    if (errors.length === 0) return;
    const malformed = errors.some((i) => i.code === 'structure');
    this.options.onValidationRejected?.(type, malformed ? 400 : 422);
    throw new FhirError(malformed ? 'SPB_INVALID_RESOURCE' : 'SPB_UNPROCESSABLE', errors[0].diagnostics, {
      outcome: toOperationOutcome(issues),
    });
  }

  /** The audit trail is written by the server alone: read and search only. */
  private async auditEvents(method: string, segments: string[], req: FhirRequest, ctx: RequestContext): Promise<FhirResponse> {
    const audit = this.options.audit;
    if (!audit) throw routeNotFound(req);
    if (method !== 'GET' && !(method === 'POST' && segments[1] === '_search')) {
      throw new FhirError('SPB_METHOD_NOT_ALLOWED', 'AuditEvents are recorded by sp-bridge and cannot be created, changed or deleted');
    }
    if (segments.length === 1 || (segments.length === 2 && segments[1] === '_search')) {
      const params = segments.length === 1 ? req.query : [...req.query, ...searchForm(req.body)];
      return { status: 200, body: await audit.search(params, ctx) };
    }
    if (segments.length === 2) {
      const event = await audit.read(segments[1]);
      if (!event) throw new FhirError('SPB_NOT_FOUND', `AuditEvent/${segments[1]} is not known`);
      return { status: 200, body: event };
    }
    throw routeNotFound(req);
  }

  private operation(repo: Repository, req: FhirRequest, ctx: RequestContext, segments: string[]): Promise<FhirResponse> {
    const name = segments[segments.length - 1].slice(1);
    const op = this.operations.get(name);
    const level = segments.length === 1 ? 'system' : segments.length === 2 ? 'type' : segments.length === 3 ? 'instance' : undefined;
    if (!op || !level || !op.levels.includes(level) || (level !== 'system' && !op.types(segments[0]))) {
      throw new FhirError('SPB_ROUTE_NOT_FOUND', `There is no operation $${name} at /${req.path}; see GET /metadata`);
    }
    const method = req.method.toUpperCase() === 'HEAD' ? 'GET' : req.method.toUpperCase();
    if (method !== 'POST' && !(method === 'GET' && op.idempotent)) throw methodNotAllowed(method, req.path);
    const params = method === 'GET' ? OperationParams.fromQuery(req.query) : OperationParams.fromBody(req.body);
    return op.run({
      req,
      ctx,
      repo,
      validator: this.options.validator,
      level,
      type: level === 'system' ? undefined : segments[0],
      id: level === 'instance' ? segments[1] : undefined,
      params,
    });
  }
}

function conformanceRead(
  source: ConformanceSource,
  type: string,
  id: string | undefined,
  req: FhirRequest,
  ctx: RequestContext,
): FhirResponse {
  if (id !== undefined) {
    const resource = source.read(type, id);
    if (!resource) throw new FhirError('SPB_NOT_FOUND', `${type}/${id} is not known`);
    return { status: 200, body: resource };
  }
  const matches = source.search(type, req.query.filter(([k]) => k !== '_format' && k !== '_pretty'));
  const bundle: fhir4.Bundle = {
    resourceType: 'Bundle',
    type: 'searchset',
    total: matches.length,
    link: [{ relation: 'self', url: `${ctx.baseUrl}/${req.path}${req.query.length ? `?${new URLSearchParams(req.query)}` : ''}` }],
    entry: matches.map((resource) => ({ fullUrl: `${ctx.baseUrl}/${type}/${resource.id}`, resource, search: { mode: 'match' } })),
  };
  return { status: 200, body: bundle };
}

function only(method: string, allowed: string[], run: () => Promise<FhirResponse>): Promise<FhirResponse> {
  if (!allowed.includes(method)) throw methodNotAllowed(method, '');
  return run();
}

function conditional(req: FhirRequest, run: () => Promise<FhirResponse>): Promise<FhirResponse> {
  if (req.query.length === 0) {
    throw new FhirError('SPB_METHOD_NOT_ALLOWED', `${req.method} on a resource type needs search criteria (a conditional ${req.method})`);
  }
  return run();
}

/** Parameters of `POST [type]/_search` sent as application/x-www-form-urlencoded. */
function searchForm(body: unknown): [string, string][] {
  if (body !== undefined && body !== null && body !== '' && !(body instanceof URLSearchParams)) {
    throw new FhirError('SPB_INVALID_SEARCH', 'POST _search takes its parameters as application/x-www-form-urlencoded');
  }
  return formParams(body);
}

function methodNotAllowed(method: string, path: string): FhirError {
  return new FhirError('SPB_METHOD_NOT_ALLOWED', `${method} is not supported${path ? ` on /${path}` : ' here'}`);
}

function routeNotFound(req: FhirRequest): FhirError {
  return new FhirError('SPB_ROUTE_NOT_FOUND', `There is no FHIR interaction at /${req.path}`);
}
