import type { SearchResult, StoredVersion } from '../storage/repository';
import { operationOutcome } from '../errors';
import type { SearchRequest } from './search/types';
import type { RequestContext } from './types';

/** A searchset Bundle with self/first/next/previous links that page over one snapshot. */
export function searchBundle(req: SearchRequest, result: SearchResult, ctx: RequestContext): fhir4.Bundle {
  const bundle: fhir4.Bundle = { resourceType: 'Bundle', type: 'searchset' };
  if (result.total !== undefined) bundle.total = result.total;
  const link = (offset: number) =>
    pageUrl(`${ctx.baseUrl}/${req.type}`, req.canonicalQuery, { _count: req.count, _offset: offset, _snapshot: result.snapshot });
  bundle.link = [{ relation: 'self', url: link(req.offset) }];
  if (!req.summaryCount && req.count > 0) {
    bundle.link.push({ relation: 'first', url: link(0) });
    if (req.offset > 0) bundle.link.push({ relation: 'previous', url: link(Math.max(0, req.offset - req.count)) });
    const more = result.total !== undefined ? req.offset + req.count < result.total : result.matches.length === req.count;
    if (more) bundle.link.push({ relation: 'next', url: link(req.offset + req.count) });
  }
  const entries: fhir4.BundleEntry[] = [];
  for (const m of result.matches) entries.push(entry(m, ctx, 'match', req.elements));
  const seen = new Set(result.matches.map((m) => `${m.type}/${m.id}`));
  for (const inc of result.included) {
    const key = `${inc.type}/${inc.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    entries.push(entry(inc, ctx, 'include'));
  }
  if (req.ignored.length) {
    entries.push({
      resource: operationOutcome('warning', 'not-supported', `Ignored unknown search parameters: ${req.ignored.join(', ')}`),
      search: { mode: 'outcome' },
    });
  }
  if (entries.length) bundle.entry = entries;
  return bundle;
}

export function historyBundle(
  path: string,
  paging: { count: number; offset: number },
  result: { entries: StoredVersion[]; total: number; snapshot: string },
  ctx: RequestContext,
): fhir4.Bundle {
  const link = (offset: number) =>
    pageUrl(`${ctx.baseUrl}/${path}`, [], { _count: paging.count, _offset: offset, _snapshot: result.snapshot });
  const links: fhir4.BundleLink[] = [{ relation: 'self', url: link(paging.offset) }];
  if (paging.offset > 0) links.push({ relation: 'previous', url: link(Math.max(0, paging.offset - paging.count)) });
  if (paging.offset + paging.count < result.total) links.push({ relation: 'next', url: link(paging.offset + paging.count) });
  return {
    resourceType: 'Bundle',
    type: 'history',
    total: result.total,
    link: links,
    entry: result.entries.map((v) => {
      const e: fhir4.BundleEntry = { fullUrl: `${ctx.baseUrl}/${v.type}/${v.id}` };
      if (v.json !== null) e.resource = JSON.parse(v.json) as fhir4.Resource;
      e.request = {
        method: v.deleted ? 'DELETE' : v.versionId === '1' ? 'POST' : 'PUT',
        url: v.versionId === '1' && !v.deleted ? v.type : `${v.type}/${v.id}`,
      };
      e.response = {
        status: v.deleted ? '204' : v.versionId === '1' ? '201' : '200',
        etag: `W/"${v.versionId}"`,
        lastModified: v.lastUpdated,
      };
      return e;
    }),
  };
}

function entry(v: StoredVersion, ctx: RequestContext, mode: 'match' | 'include', elements?: string[]): fhir4.BundleEntry {
  let resource = JSON.parse(v.json ?? 'null') as fhir4.Resource;
  if (elements?.length) resource = subset(resource, elements);
  return { fullUrl: `${ctx.baseUrl}/${v.type}/${v.id}`, resource, search: { mode } };
}

/** `_elements`: the listed top-level elements plus the mandatory ones, tagged SUBSETTED. */
function subset(resource: fhir4.Resource, elements: string[]): fhir4.Resource {
  const keep = new Set(['resourceType', 'id', 'meta', ...elements]);
  const out = Object.fromEntries(Object.entries(resource).filter(([k]) => keep.has(k))) as fhir4.Resource;
  out.meta = {
    ...out.meta,
    tag: [
      ...(out.meta?.tag ?? []),
      { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' },
    ],
  };
  return out;
}

function pageUrl(base: string, query: [string, string][], paging: Record<string, string | number>): string {
  const params = new URLSearchParams(query);
  for (const [k, v] of Object.entries(paging)) params.set(k, String(v));
  return `${base}?${params.toString()}`;
}
