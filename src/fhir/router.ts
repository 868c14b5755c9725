import { FhirError } from '../errors';
import type { Repository } from '../storage/repository';
import { capabilityStatement } from './capability';
import * as interactions from './interactions';
import { processBundle } from './transaction';
import type { FhirRequest, FhirResponse, RequestContext } from './types';

/**
 * Routes a FHIR request to its interaction. Knows nothing of HTTP: routes and Bundle entries both come
 * here. Errors the client caused come back as OperationOutcome responses; anything else is thrown.
 */
export class FhirRouter {
  constructor(private readonly repo: Repository) {}

  async handle(req: FhirRequest, ctx: RequestContext): Promise<FhirResponse> {
    try {
      return await this.dispatch(this.repo, req, ctx);
    } catch (err) {
      if (err instanceof FhirError) return { status: err.status, body: err.outcome };
      throw err;
    }
  }

  dispatch(repo: Repository, req: FhirRequest, ctx: RequestContext): Promise<FhirResponse> {
    const segments = req.path.split('/').filter((s) => s !== '');
    const method = req.method.toUpperCase() === 'HEAD' ? 'GET' : req.method.toUpperCase();
    const [first, second, third, fourth] = segments;
    if (segments.length === 0) {
      return only(method, ['POST'], () => processBundle(this, repo, req, ctx));
    }
    if (first === 'metadata' && segments.length === 1) {
      return only(method, ['GET'], async () => ({ status: 200, body: capabilityStatement(ctx) }));
    }
    if (first === '_history' && segments.length === 1) {
      return only(method, ['GET'], () => interactions.history(repo, req, ctx));
    }
    if (!/^[A-Z][A-Za-z]+$/.test(first) || segments.length > 4) throw routeNotFound(req);
    const type = interactions.checkType(first);
    if (segments.length === 1) {
      switch (method) {
        case 'GET':
          return interactions.search(repo, type, req.query, req, ctx);
        case 'POST':
          return interactions.create(repo, type, req);
        case 'PUT':
          return conditional(req, () => interactions.conditionalUpdate(repo, type, req));
        case 'DELETE':
          return conditional(req, () => interactions.conditionalDelete(repo, type, req));
        default:
          throw methodNotAllowed(method, req.path);
      }
    }
    if (second === '_search' && segments.length === 2) {
      return only(method, ['POST'], () => interactions.search(repo, type, [...req.query, ...formParams(req.body)], req, ctx));
    }
    if (second === '_history' && segments.length === 2) {
      return only(method, ['GET'], () => interactions.history(repo, req, ctx, type));
    }
    if (segments.length === 2) {
      switch (method) {
        case 'GET':
          return interactions.read(repo, type, second, req);
        case 'PUT':
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
function formParams(body: unknown): [string, string][] {
  if (body === undefined || body === null || body === '') return [];
  if (body instanceof URLSearchParams) return [...body];
  throw new FhirError('SPB_INVALID_SEARCH', 'POST _search takes its parameters as application/x-www-form-urlencoded');
}

function methodNotAllowed(method: string, path: string): FhirError {
  return new FhirError('SPB_METHOD_NOT_ALLOWED', `${method} is not supported${path ? ` on /${path}` : ' here'}`);
}

function routeNotFound(req: FhirRequest): FhirError {
  return new FhirError('SPB_ROUTE_NOT_FOUND', `There is no FHIR interaction at /${req.path}`);
}
