import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { FhirError } from '../errors';
import type { Repository, StoredVersion } from '../storage/repository';
import * as interactions from './interactions';
import { rewriteReferences } from './references';
import type { FhirRouter } from './router';
import { checkAccess, checkPermission } from './access';
import { parseSearch } from './search/parse';
import type { FhirRequest, FhirResponse, RequestContext } from './types';
import { parseQuery, responseResource } from './types';

/**
 * `POST [base]` with a Bundle of type transaction (all entries or none) or batch (each entry on its own),
 * per http://hl7.org/fhir/R4/http.html#transaction.
 */
export async function processBundle(
  router: FhirRouter,
  repo: Repository,
  req: FhirRequest,
  ctx: RequestContext,
): Promise<FhirResponse> {
  const bundle = interactions.resourceBody(req.body, 'Bundle') as fhir4.Bundle;
  if (bundle.type !== 'transaction' && bundle.type !== 'batch') {
    throw new FhirError('SPB_INVALID_BUNDLE', `POST / takes a Bundle of type transaction or batch, not '${bundle.type}'`, {
      expression: ['Bundle.type'],
    });
  }
  if (bundle.entry !== undefined && !Array.isArray(bundle.entry)) {
    throw new FhirError('SPB_INVALID_BUNDLE', 'Bundle.entry must be an array', { expression: ['Bundle.entry'] });
  }
  if (bundle.type === 'batch') return batch(router, repo, bundle.entry ?? [], req, ctx);
  const entries = (bundle.entry ?? []).map((e, i) => parseEntry(e, i, req));
  return transaction(router, repo, entries, ctx);
}

interface Entry {
  index: number;
  fullUrl?: string;
  request: FhirRequest;
  /** Path part of request.url, without the query. */
  path: string;
  type?: string;
  resource?: fhir4.Resource;
}

function parseEntry(raw: unknown, index: number, outer: FhirRequest): Entry {
  const where = `Bundle.entry[${index}]`;
  if (typeof raw !== 'object' || raw === null) throw bad(index, 'is not an object', where);
  const e = raw as fhir4.BundleEntry;
  const method = e.request?.method;
  const url = e.request?.url;
  if (typeof method !== 'string' || !['GET', 'HEAD', 'POST', 'PUT', 'DELETE'].includes(method)) {
    throw bad(index, 'needs request.method GET, POST, PUT or DELETE', `${where}.request.method`);
  }
  if (typeof url !== 'string' || url === '') throw bad(index, 'needs request.url', `${where}.request.url`);
  const [rawPath, query = ''] = url.split('?', 2);
  const path = rawPath.replace(/^\/+|\/+$/g, '');
  if (/^[a-z]+:/i.test(path)) throw bad(index, 'request.url must be relative to the base, e.g. ServiceRequest/123', `${where}.request.url`);
  // An entry addressed to the base itself would be a Bundle inside the Bundle: its entries would escape this
  // one's checks (overlap, the audit record of what each entry touched).
  if (path === '') throw bad(index, 'request.url must name a resource type, e.g. ServiceRequest; a Bundle cannot hold a transaction or batch', `${where}.request.url`);
  if ((method === 'POST' || method === 'PUT') && (typeof e.resource !== 'object' || e.resource === null)) {
    throw bad(index, `is a ${method} without a resource`, `${where}.resource`);
  }
  const request: FhirRequest = {
    method,
    path,
    query: parseQuery(query),
    body: e.resource,
    ifMatch: e.request?.ifMatch,
    ifNoneExist: e.request?.ifNoneExist,
    ifNoneMatch: e.request?.ifNoneMatch,
    ifModifiedSince: e.request?.ifModifiedSince,
    prefer: outer.prefer,
    resourcePath: `Bundle.entry[${index}].resource`,
  };
  return { index, fullUrl: e.fullUrl, request, path, type: path.split('/')[0], resource: e.resource };
}

/** Each entry on its own: even a malformed one only fails its own response entry. */
async function batch(
  router: FhirRouter,
  repo: Repository,
  raw: unknown[],
  outer: FhirRequest,
  ctx: RequestContext,
): Promise<FhirResponse> {
  const responses: fhir4.BundleEntry[] = [];
  for (const [index, e] of raw.entries()) {
    try {
      const entry = parseEntry(e, index, outer);
      responses.push(responseEntry(await router.dispatch(repo, entry.request, ctx)));
    } catch (err) {
      if (!(err instanceof FhirError)) throw err;
      responses.push(responseEntry({ status: err.status, body: err.outcome }));
    }
  }
  const body: fhir4.Bundle = { resourceType: 'Bundle', type: 'batch-response', entry: responses };
  return { status: 200, body };
}

const ORDER: Record<string, number> = { DELETE: 0, POST: 1, PUT: 2, GET: 3, HEAD: 3 };
const CONDITIONAL_REFERENCE_RE = /^[A-Z][A-Za-z]+\?/;

/** Validates every resource in a transaction before anything is written, and reports all their issues together. */
function validateEntries(router: FhirRouter, entries: Entry[]): void {
  const failures: FhirError[] = [];
  for (const e of entries) {
    if ((e.request.method !== 'POST' && e.request.method !== 'PUT') || !e.type || !/^[A-Z][A-Za-z]+$/.test(e.type)) continue;
    try {
      router.checkWrite(e.type, e.request.body, `Bundle.entry[${e.index}].resource`);
    } catch (err) {
      if (!(err instanceof FhirError)) throw err;
      failures.push(err.code === 'SPB_WRONG_RESOURCE_TYPE' || err.code === 'SPB_INVALID_ID' ? inEntry(err, e.index) : err);
    }
  }
  if (failures.length === 0) return;
  const malformed = failures.some((f) => f.status === 400);
  const outcome: fhir4.OperationOutcome = {
    resourceType: 'OperationOutcome',
    issue: failures.flatMap((f) => f.outcome.issue).filter((i) => i.severity === 'error' || i.severity === 'fatal' || failures.length === 1),
  };
  throw new FhirError(malformed ? 'SPB_INVALID_RESOURCE' : 'SPB_UNPROCESSABLE', failures[0].message, { outcome });
}

async function transaction(router: FhirRouter, repo: Repository, original: Entry[], ctx: RequestContext): Promise<FhirResponse> {
  // Some entries are written without going through dispatch, so every entry's access is checked here.
  for (const e of original) {
    try {
      checkAccess(ctx.grant, e.request);
      // A conditional reference (`Patient?identifier=...`) is resolved by a search, and the match's id is
      // written into the stored resource and returned: it needs s on the type searched.
      for (const ref of conditionalReferences(e.request.body)) checkPermission(ctx.grant, ref.split('?', 1)[0], 's');
    } catch (err) {
      if (err instanceof FhirError) throw inEntry(err, e.index);
      throw err;
    }
  }
  validateEntries(router, original);
  const fullUrls = new Set<string>();
  for (const e of original) {
    if (e.fullUrl === undefined) continue;
    if (fullUrls.has(e.fullUrl)) throw bad(e.index, `repeats fullUrl ${e.fullUrl}`, `Bundle.entry[${e.index}].fullUrl`);
    fullUrls.add(e.fullUrl);
  }
  return repo.transaction(async (tx) => {
    // The database may run this more than once (deadlock retry): work on a fresh copy each time.
    const entries = original.map((e) => ({ ...e, request: { ...e.request, body: structuredClone(e.request.body) } }));
    const plans = await resolveIdentities(tx, entries);
    checkOverlap(plans);
    const ids = new Map<string, string>();
    for (const plan of plans) if (plan.entry.fullUrl && plan.target) ids.set(plan.entry.fullUrl, plan.target);
    for (const plan of plans) {
      if (plan.entry.request.body) await rewriteEntryReferences(tx, plan.entry, ids);
    }
    const responses: fhir4.BundleEntry[] = new Array(entries.length);
    const order = [...plans].sort((a, b) => ORDER[a.entry.request.method] - ORDER[b.entry.request.method]);
    for (const plan of order) {
      try {
        responses[plan.entry.index] = responseEntry(await execute(router, tx, plan, ctx));
      } catch (err) {
        if (err instanceof FhirError) throw inEntry(err, plan.entry.index);
        throw err;
      }
    }
    const body: fhir4.Bundle = { resourceType: 'Bundle', type: 'transaction-response', entry: responses };
    return { status: 200, body };
  });
}

interface Plan {
  entry: Entry;
  /** `Type/id` this entry creates or updates. */
  target?: string;
  /** A conditional create that matched: no write, answer with this version. */
  existing?: StoredVersion;
  /** A POST whose id the server chose. */
  fresh?: boolean;
}

/** Decides the id of every POST and conditional PUT before anything is written, so references can point at them. */
async function resolveIdentities(tx: Repository, entries: Entry[]): Promise<Plan[]> {
  const plans: Plan[] = [];
  const locked = new Set<string>();
  const lockType = async (type: string) => {
    if (locked.has(type)) return;
    await tx.lock(interactions.conditionalLock(type));
    locked.add(type);
  };
  for (const entry of entries) {
    const { request, type } = entry;
    try {
      if (request.method === 'POST' && type && entry.path === type) {
        interactions.checkType(type);
        if (request.ifNoneExist !== undefined) {
          await lockType(type);
          const match = await singleMatch(tx, type, parseQuery(request.ifNoneExist), request);
          if (match) {
            plans.push({ entry, target: `${type}/${match.id}`, existing: match });
            continue;
          }
        }
        plans.push({ entry, target: `${type}/${randomUUID()}`, fresh: true });
      } else if (request.method === 'PUT' && type && entry.path === type) {
        interactions.checkType(type);
        await lockType(type);
        const match = await singleMatch(tx, type, request.query, request);
        const bodyId = (request.body as fhir4.Resource).id;
        if (match && bodyId !== undefined && bodyId !== match.id) {
          throw new FhirError('SPB_ID_MISMATCH', `The body's id "${bodyId}" is not the id of the matching ${type}`);
        }
        plans.push({ entry, target: `${type}/${match?.id ?? bodyId ?? randomUUID()}` });
      } else if (request.method === 'PUT' && type) {
        plans.push({ entry, target: entry.path.split('/').slice(0, 2).join('/') });
      } else {
        plans.push({ entry });
      }
    } catch (err) {
      if (err instanceof FhirError) throw inEntry(err, entry.index);
      throw err;
    }
  }
  return plans;
}

/** No two entries may write the same resource (http://hl7.org/fhir/R4/http.html#trules). */
function checkOverlap(plans: Plan[]): void {
  const writers = new Map<string, number>();
  for (const { entry, target, existing } of plans) {
    const deletes = entry.request.method === 'DELETE' && entry.path.split('/').length === 2;
    const identity = deletes ? entry.path : existing ? undefined : target;
    if (identity === undefined) continue;
    const other = writers.get(identity);
    if (other !== undefined) {
      throw bad(entry.index, `writes ${identity}, as does Bundle.entry[${other}]`, `Bundle.entry[${entry.index}].request.url`);
    }
    writers.set(identity, entry.index);
  }
}

async function singleMatch(tx: Repository, type: string, criteria: [string, string][], req: FhirRequest): Promise<StoredVersion | undefined> {
  if (criteria.length === 0) throw new FhirError('SPB_INVALID_SEARCH', `Conditional ${type} entries need search criteria`);
  const parsed = { ...parseSearch(type, criteria, { lenient: req.prefer.handling === 'lenient' }), count: 2, total: 'none' as const };
  const { matches } = await tx.search(parsed);
  if (matches.length > 1) throw new FhirError('SPB_MULTIPLE_MATCHES', `The criteria match more than one ${type}`);
  return matches[0];
}

/** Replaces `urn:uuid:` fullUrls and conditional references (`Patient?identifier=...`) with `Type/id`. */
async function rewriteEntryReferences(tx: Repository, entry: Entry, ids: Map<string, string>): Promise<void> {
  const conditional: string[] = [];
  rewriteReferences(entry.request.body, (ref) => {
    const id = ids.get(ref);
    if (id) return id;
    if (ref.startsWith('urn:uuid:') || ref.startsWith('urn:oid:')) {
      throw inEntry(new FhirError('SPB_INVALID_BUNDLE', `Reference ${ref} matches no fullUrl in the Bundle`), entry.index);
    }
    if (CONDITIONAL_REFERENCE_RE.test(ref)) conditional.push(ref);
    return ref;
  });
  if (conditional.length === 0) return;
  const resolved = new Map<string, string>();
  for (const ref of conditional) {
    const [type, query] = ref.split('?', 2);
    try {
      interactions.checkType(type);
      const match = await singleMatch(tx, type, parseQuery(query), entry.request);
      if (!match) throw new FhirError('SPB_PRECONDITION_FAILED', `Conditional reference ${ref} matches no resource`);
      resolved.set(ref, `${type}/${match.id}`);
    } catch (err) {
      if (err instanceof FhirError) throw inEntry(err, entry.index);
      throw err;
    }
  }
  rewriteReferences(entry.request.body, (ref) => resolved.get(ref) ?? ref);
}

/** The conditional references (`Type?criteria`) anywhere in a resource. */
function conditionalReferences(resource: unknown): string[] {
  const out: string[] = [];
  rewriteReferences(resource, (ref) => {
    if (CONDITIONAL_REFERENCE_RE.test(ref)) out.push(ref);
    return ref;
  });
  return out;
}

async function execute(router: FhirRouter, tx: Repository, plan: Plan, ctx: RequestContext): Promise<FhirResponse> {
  const { request, type } = plan.entry;
  if (plan.existing) return interactions.written(200, plan.existing, request);
  if (request.method === 'POST' && plan.fresh && type && plan.target) {
    const resource = interactions.resourceBody(request.body, type);
    return interactions.createWithId(tx, type, resource, request, plan.target.split('/')[1], true);
  }
  if (request.method === 'PUT' && plan.target && plan.entry.path === type) {
    const id = plan.target.split('/')[1];
    const body = { ...interactions.resourceBody(request.body, type), id };
    return interactions.update(tx, type, id, { ...request, body, query: [] });
  }
  return router.dispatch(tx, request, ctx);
}

function responseEntry(res: FhirResponse): fhir4.BundleEntry {
  const response: fhir4.BundleEntryResponse = { status: `${res.status} ${STATUS_CODES[res.status] ?? ''}`.trim() };
  if (res.location) response.location = res.location;
  if (res.version) {
    response.etag = `W/"${res.version.versionId}"`;
    response.lastModified = res.version.lastUpdated;
  }
  const entry: fhir4.BundleEntry = { response };
  const body = responseResource(res);
  if (body?.resourceType === 'OperationOutcome' && res.status >= 300) response.outcome = body;
  else if (body) entry.resource = body;
  return entry;
}

function inEntry(err: FhirError, index: number): FhirError {
  const outcome: fhir4.OperationOutcome = {
    ...err.outcome,
    issue: err.outcome.issue.map((issue) => ({
      ...issue,
      diagnostics: `Bundle.entry[${index}]: ${issue.diagnostics ?? ''}`.replace(/^(Bundle\.entry\[\d+\]: )+/, `Bundle.entry[${index}]: `),
      expression: issue.expression?.map((e) => (e.startsWith('Bundle.') ? e : `Bundle.entry[${index}].resource.${e.replace(/^[A-Z][A-Za-z]+\.?/, '')}`.replace(/\.$/, ''))) ?? [`Bundle.entry[${index}]`],
    })),
  };
  return new FhirError(err.code, outcome.issue[0].diagnostics ?? err.message, { outcome });
}

function bad(index: number, what: string, expression: string): FhirError {
  return new FhirError('SPB_INVALID_BUNDLE', `Bundle.entry[${index}] ${what}`, { expression: [expression] });
}
