import { randomUUID } from 'node:crypto';
import { FhirError, informational } from '../errors';
import type { Repository, StoredVersion } from '../storage/repository';
import { SNAPSHOT_RE } from '../storage/search-sql';
import { ID_RE } from './references';
import { resourceType } from './registry';
import { extractIndex } from './search/extract';
import { parseSearch } from './search/parse';
import type { SearchRequest } from './search/types';
import { historyBundle, searchBundle } from './bundles';
import type { FhirRequest, FhirResponse, RequestContext } from './types';
import { parseQuery } from './types';

/**
 * The FHIR RESTful interactions (http://hl7.org/fhir/R4/http.html) over a Repository. Each takes the
 * repository to use, so a transaction Bundle runs the very same code inside one database transaction.
 */

export async function create(repo: Repository, type: string, req: FhirRequest): Promise<FhirResponse> {
  const resource = resourceBody(req.body, type);
  if (req.ifNoneExist !== undefined) return conditionalCreate(repo, type, resource, req);
  return createWithId(repo, type, resource, req, randomUUID(), true);
}

export async function read(repo: Repository, type: string, id: string, req: FhirRequest): Promise<FhirResponse> {
  const current = live(await repo.readCurrent(type, checkId(id)), type, id);
  if (notModified(current, req)) return { status: 304, version: current };
  return found(200, current);
}

export async function vread(repo: Repository, type: string, id: string, versionId: string): Promise<FhirResponse> {
  const version = await repo.readVersion(type, checkId(id), versionId);
  if (!version) {
    const current = await repo.readCurrent(type, id);
    throw new FhirError(
      current ? 'SPB_VERSION_NOT_FOUND' : 'SPB_NOT_FOUND',
      current ? `${type}/${id} has no version ${versionId}` : `${type}/${id} is not known`,
    );
  }
  if (version.deleted) throw gone(version);
  return found(200, version);
}

export async function update(repo: Repository, type: string, id: string, req: FhirRequest): Promise<FhirResponse> {
  checkId(id);
  const resource = resourceBody(req.body, type);
  if (resource.id === undefined) {
    throw new FhirError('SPB_ID_MISMATCH', `The ${type} in the body has no id; an update needs id "${id}"`, {
      expression: [`${type}.id`],
    });
  }
  if (resource.id !== id) {
    throw new FhirError('SPB_ID_MISMATCH', `The body's id "${resource.id}" does not match the URL's id "${id}"`, {
      expression: [`${type}.id`],
    });
  }
  const { saved, previous } = await repo.save({
    type,
    id,
    resource,
    index: extractIndex(resource),
    ifMatch: req.ifMatch === undefined ? undefined : parseETag(req.ifMatch),
  });
  return written(previous && !previous.deleted ? 200 : 201, saved, req);
}

/** `PUT [type]?criteria`: update the one match, or create when there is none. */
export async function conditionalUpdate(repo: Repository, type: string, req: FhirRequest): Promise<FhirResponse> {
  const resource = resourceBody(req.body, type);
  return repo.transaction(async (tx) => {
    await tx.lock(conditionalLock(type));
    const matches = await matchCriteria(tx, type, req.query, req);
    if (matches.length > 1) throw multipleMatches(type, matches.length);
    if (matches.length === 1) {
      const id = matches[0].id;
      if (resource.id !== undefined && resource.id !== id) {
        throw new FhirError('SPB_ID_MISMATCH', `The body's id "${resource.id}" is not the id of the matching ${type}`);
      }
      return update(tx, type, id, { ...req, body: { ...resource, id } });
    }
    if (resource.id !== undefined) return update(tx, type, resource.id, req);
    return createWithId(tx, type, resource, req, randomUUID(), true);
  });
}

export async function remove(repo: Repository, type: string, id: string, req: FhirRequest): Promise<FhirResponse> {
  const { saved, unchanged } = await repo.save({
    type,
    id: checkId(id),
    resource: null,
    ifMatch: req.ifMatch === undefined ? undefined : parseETag(req.ifMatch),
  });
  return {
    status: 200,
    body: informational(unchanged ? `${type}/${id} was already deleted or never existed` : `Deleted ${type}/${id}`),
    version: unchanged ? undefined : saved,
  };
}

/** `DELETE [type]?criteria`: deletes the one match; several matches are refused. */
export async function conditionalDelete(repo: Repository, type: string, req: FhirRequest): Promise<FhirResponse> {
  return repo.transaction(async (tx) => {
    await tx.lock(conditionalLock(type));
    const matches = await matchCriteria(tx, type, req.query, req);
    if (matches.length > 1) throw multipleMatches(type, matches.length);
    if (matches.length === 0) return { status: 200, body: informational(`No ${type} matched; nothing was deleted`) };
    return remove(tx, type, matches[0].id, { ...req, ifMatch: undefined });
  });
}

export async function search(
  repo: Repository,
  type: string,
  params: [string, string][],
  req: FhirRequest,
  ctx: RequestContext,
): Promise<FhirResponse> {
  const parsed = parseSearch(type, params, { lenient: req.prefer.handling === 'lenient' });
  const result = await repo.search(parsed);
  return { status: 200, body: searchBundle(parsed, result, ctx) };
}

export async function history(
  repo: Repository,
  req: FhirRequest,
  ctx: RequestContext,
  type?: string,
  id?: string,
): Promise<FhirResponse> {
  if (type !== undefined && id !== undefined && !(await repo.readCurrent(type, checkId(id)))) {
    throw new FhirError('SPB_NOT_FOUND', `${type}/${id} is not known`);
  }
  const paging = parseHistoryParams(req.query);
  const result = await repo.history({ type, id, ...paging });
  const path = [type, id, '_history'].filter((s) => s !== undefined).join('/');
  return { status: 200, body: historyBundle(path, paging, result, ctx) };
}

async function conditionalCreate(
  repo: Repository,
  type: string,
  resource: fhir4.Resource,
  req: FhirRequest,
): Promise<FhirResponse> {
  const criteria = parseQuery(req.ifNoneExist ?? '');
  if (criteria.length === 0) {
    throw new FhirError('SPB_INVALID_HEADER', 'If-None-Exist must hold search criteria, e.g. identifier=system|value');
  }
  return repo.transaction(async (tx) => {
    // One lock per type for every conditional write: criteria that differ in spelling but match the same
    // resource must still be serialised, or two racing creates would both find nothing.
    await tx.lock(conditionalLock(type));
    const matches = await matchCriteria(tx, type, criteria, req);
    if (matches.length > 1) throw multipleMatches(type, matches.length);
    if (matches.length === 1) return written(200, matches[0], req);
    return createWithId(tx, type, resource, req, randomUUID(), true);
  });
}

export async function createWithId(
  repo: Repository,
  type: string,
  resource: fhir4.Resource,
  req: FhirRequest,
  id: string,
  fresh: boolean,
): Promise<FhirResponse> {
  const { saved } = await repo.save({ type, id, resource, index: extractIndex(resource), fresh });
  return written(201, saved, req);
}

async function matchCriteria(
  repo: Repository,
  type: string,
  criteria: [string, string][],
  req: FhirRequest,
): Promise<StoredVersion[]> {
  const parsed: SearchRequest = {
    ...parseSearch(type, criteria, { lenient: req.prefer.handling === 'lenient' }),
    count: 2,
    offset: 0,
    total: 'none',
    include: [],
    revinclude: [],
    summaryCount: false,
  };
  if (parsed.criteria.length === 0) {
    throw new FhirError('SPB_INVALID_SEARCH', `Conditional ${type} writes need at least one search criterion`);
  }
  return (await repo.search(parsed)).matches;
}

export function conditionalLock(type: string): string {
  return `conditional/${type}`;
}

/** Checks that a request body is a resource of the expected type. */
export function resourceBody(body: unknown, type: string): fhir4.Resource {
  if (body === undefined || body === null) {
    throw new FhirError('SPB_INVALID_RESOURCE', `A ${type} resource is required in the request body`);
  }
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw new FhirError('SPB_INVALID_RESOURCE', `The request body must be a JSON object (a ${type} resource)`);
  }
  const rt = (body as { resourceType?: unknown }).resourceType;
  if (rt !== type) {
    throw new FhirError(
      'SPB_WRONG_RESOURCE_TYPE',
      typeof rt === 'string' ? `Expected a ${type} but the body is a ${rt}` : `The body has no resourceType; expected "${type}"`,
      { expression: ['resourceType'] },
    );
  }
  const id = (body as { id?: unknown }).id;
  if (id !== undefined && (typeof id !== 'string' || !ID_RE.test(id))) {
    throw new FhirError('SPB_INVALID_ID', `id must be 1-64 letters, digits, '-' or '.'`, { expression: [`${type}.id`] });
  }
  return body as fhir4.Resource;
}

export function checkType(type: string): string {
  if (!resourceType(type)) {
    throw new FhirError('SPB_UNKNOWN_TYPE', `Resource type '${type}' is not supported; see GET /metadata`);
  }
  return type;
}

function checkId(id: string): string {
  if (!ID_RE.test(id)) throw new FhirError('SPB_INVALID_ID', `'${id}' is not a valid id (1-64 of A-Z a-z 0-9 - .)`);
  return id;
}

function live(version: StoredVersion | undefined, type: string, id: string): StoredVersion {
  if (!version) throw new FhirError('SPB_NOT_FOUND', `${type}/${id} is not known`);
  if (version.deleted) throw gone(version);
  return version;
}

function gone(version: StoredVersion): FhirError {
  return new FhirError('SPB_GONE', `${version.type}/${version.id} was deleted (version ${version.versionId})`);
}

function multipleMatches(type: string, n: number): FhirError {
  return new FhirError(
    'SPB_MULTIPLE_MATCHES',
    `The criteria match ${n > 1 ? 'more than one' : n} ${type}; make them selective enough to match one`,
  );
}

function found(status: number, version: StoredVersion): FhirResponse {
  return { status, raw: version.json ?? undefined, version };
}

/** A write's response, shaped by `Prefer: return=` (http://hl7.org/fhir/R4/http.html#ops). */
export function written(status: number, version: StoredVersion, req: FhirRequest): FhirResponse {
  const location = `${version.type}/${version.id}/_history/${version.versionId}`;
  const base = { status, version, location };
  switch (req.prefer.return) {
    case 'minimal':
      return base;
    case 'OperationOutcome':
      return {
        ...base,
        body: informational(
          status === 201 ? `Created ${version.type}/${version.id}` : `${version.type}/${version.id} is at version ${version.versionId}`,
        ),
      };
    default:
      return { ...base, raw: version.json ?? undefined };
  }
}

function notModified(version: StoredVersion, req: FhirRequest): boolean {
  if (req.ifNoneMatch !== undefined) {
    return req.ifNoneMatch.split(',').some((tag) => tag.trim() === '*' || parseETag(tag) === version.versionId);
  }
  if (req.ifModifiedSince !== undefined) {
    const since = Date.parse(req.ifModifiedSince);
    // HTTP dates have whole seconds.
    return !Number.isNaN(since) && Math.floor(Date.parse(version.lastUpdated) / 1000) * 1000 <= since;
  }
  return false;
}

/** `W/"3"`, `"3"` or `3` → `3`. */
export function parseETag(value: string): string {
  const m = /^\s*(?:W\/)?"?([^"]*)"?\s*$/.exec(value);
  const version = m ? m[1] : '';
  if (!/^\d{1,9}$/.test(version)) {
    throw new FhirError('SPB_INVALID_HEADER', `'${value}' is not a version ETag such as W/"3"`);
  }
  return version;
}

function parseHistoryParams(query: [string, string][]): { count: number; offset: number; snapshot?: string; since?: number } {
  const out: { count: number; offset: number; snapshot?: string; since?: number } = { count: 20, offset: 0 };
  for (const [k, v] of query) {
    if (k === '_count' && /^\d{1,4}$/.test(v)) out.count = Math.min(Number(v), 1000);
    else if (k === '_offset' && /^\d{1,9}$/.test(v)) out.offset = Number(v);
    else if (k === '_snapshot' && SNAPSHOT_RE.test(v)) out.snapshot = v;
    else if (k === '_since') {
      const t = Date.parse(v.replace(/ /g, '+'));
      if (Number.isNaN(t)) throw new FhirError('SPB_INVALID_SEARCH', `_since must be an instant, not '${v}'`);
      out.since = t;
    } else if (k !== '_format' && k !== '_pretty') {
      throw new FhirError('SPB_UNKNOWN_SEARCH_PARAM', `History takes _count, _since and paging parameters, not '${k}'`);
    }
  }
  return out;
}
