import { FhirError } from '../../errors';
import { ID_RE, parseReference } from '../references';
import { resourceType, searchParam } from '../registry';
import { SNAPSHOT_RE } from '../../storage/search-sql';
import { parseDateRange } from './dates';
import type { Criterion, DateFilter, DatePrefix, IncludeSpec, SearchRequest, SortSpec, TokenFilter } from './types';

export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 1000;

const PREFIXES = new Set<DatePrefix>(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);
const PAGING = new Set(['_count', '_offset', '_snapshot']);
const IGNORED = new Set(['_format', '_pretty']);

export interface ParseOptions {
  /** `Prefer: handling=lenient`: unknown parameters are ignored instead of rejected. */
  lenient?: boolean;
}

/** Parses FHIR search parameters (http://hl7.org/fhir/R4/search.html) for one resource type. */
export function parseSearch(type: string, params: [string, string][], options: ParseOptions = {}): SearchRequest {
  const req: SearchRequest = {
    type,
    criteria: [],
    count: DEFAULT_COUNT,
    offset: 0,
    sort: [],
    total: 'accurate',
    summaryCount: false,
    include: [],
    revinclude: [],
    ignored: [],
    canonicalQuery: [],
  };
  for (const [rawKey, value] of params) {
    const key = rawKey.trim();
    if (IGNORED.has(key)) continue;
    if (!PAGING.has(key)) req.canonicalQuery.push([key, value]);
    try {
      applyParam(req, key, value);
    } catch (err) {
      if (options.lenient && err instanceof FhirError && err.code === 'SPB_UNKNOWN_SEARCH_PARAM') {
        req.ignored.push(key);
        req.canonicalQuery.pop();
      } else {
        throw err;
      }
    }
  }
  return req;
}

function applyParam(req: SearchRequest, key: string, value: string): void {
  switch (key) {
    case '_count':
      req.count = Math.min(nonNegativeInt(key, value), MAX_COUNT);
      return;
    case '_offset':
      req.offset = nonNegativeInt(key, value);
      return;
    case '_snapshot':
      if (!SNAPSHOT_RE.test(value)) throw invalid(`_snapshot must be a paging token from a Bundle link`);
      req.snapshot = value;
      return;
    case '_total':
      if (value !== 'none' && value !== 'estimate' && value !== 'accurate') {
        throw invalid(`_total must be none, estimate or accurate, not '${value}'`);
      }
      req.total = value;
      return;
    case '_summary':
      if (value === 'count') req.summaryCount = true;
      else if (value !== 'false') throw invalid(`_summary=${value} is not supported; use count or false`);
      return;
    case '_elements':
      req.elements = [...(req.elements ?? []), ...splitValues(value).map((v) => v.trim()).filter(Boolean)];
      return;
    case '_sort':
      req.sort = splitValues(value).map((s) => parseSort(req.type, s.trim()));
      return;
    case '_include':
    case '_include:iterate':
      req.include.push(parseInclude(value, req.type, false));
      return;
    case '_revinclude':
    case '_revinclude:iterate':
      req.revinclude.push(parseInclude(value, req.type, true));
      return;
    case '_id':
      req.criteria.push({ kind: 'id', ids: splitValues(value).filter((id) => ID_RE.test(id)) });
      return;
    case '_lastUpdated':
      req.criteria.push({ kind: 'lastUpdated', values: splitValues(value).map((v) => parseDateFilter(key, v)) });
      return;
  }
  if (key.startsWith('_')) throw unknownParam(req.type, key);
  req.criteria.push(parseCriterion(req.type, key, value));
}

function parseCriterion(type: string, key: string, value: string): Criterion {
  const colon = key.indexOf(':');
  const name = colon < 0 ? key : key.slice(0, colon);
  const modifier = colon < 0 ? undefined : key.slice(colon + 1);
  const sp = searchParam(type, name);
  if (!sp) throw unknownParam(type, name);
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw invalid(`${key} must be true or false`);
    return { kind: 'missing', param: name, table: sp.type, missing: value === 'true' };
  }
  const escaped = splitEscaped(value, ',');
  const values = escaped.map(unescapeValue);
  if (values.length === 0 || values.some((v) => v === '')) throw invalid(`${key} needs a value`);
  switch (sp.type) {
    case 'token':
      if (modifier !== undefined && modifier !== 'not') throw badModifier(key);
      return { kind: 'token', param: name, not: modifier === 'not', values: escaped.map(parseToken) };
    case 'string':
      if (modifier !== undefined && modifier !== 'exact' && modifier !== 'contains') throw badModifier(key);
      return { kind: 'string', param: name, mode: modifier === undefined ? 'starts' : modifier, values };
    case 'date':
      if (modifier !== undefined) throw badModifier(key);
      return { kind: 'date', param: name, values: values.map((v) => parseDateFilter(key, v)) };
    case 'reference': {
      if (modifier === 'identifier') {
        return { kind: 'token', param: `${name}:identifier`, not: false, values: escaped.map(parseToken) };
      }
      if (modifier !== undefined && !resourceType(modifier) && !/^[A-Z][A-Za-z]+$/.test(modifier)) {
        throw badModifier(key);
      }
      const defaultType = modifier ?? (sp.targets?.length === 1 ? sp.targets[0] : undefined);
      return { kind: 'reference', param: name, values: values.map((v) => parseReferenceValue(key, v, defaultType)) };
    }
  }
}

/** `[system]|[code]` or `code`, still escaped: a `\|` belongs to the system or code. */
function parseToken(value: string): TokenFilter {
  const [first, ...rest] = splitEscaped(value, '|');
  if (rest.length === 0) return { code: unescapeValue(value) };
  const system = unescapeValue(first);
  const code = unescapeValue(rest.join('|'));
  return { system: system === '' ? null : system, code: code === '' ? undefined : code };
}

function parseReferenceValue(key: string, value: string, defaultType: string | undefined): { refType?: string; refId: string } {
  if (ID_RE.test(value)) return { refType: defaultType, refId: value };
  const parsed = parseReference(value);
  if (!parsed) throw invalid(`${key}=${value} is not a reference (Type/id or id)`);
  if (defaultType && parsed.type !== defaultType) throw invalid(`${key} must refer to a ${defaultType}`);
  return { refType: parsed.type, refId: parsed.id };
}

function parseDateFilter(key: string, raw: string): DateFilter {
  // An unencoded '+' in a timezone offset arrives as a space.
  const value = raw.replace(/ /g, '+');
  const maybePrefix = value.slice(0, 2) as DatePrefix;
  const prefix = PREFIXES.has(maybePrefix) ? maybePrefix : 'eq';
  const date = PREFIXES.has(maybePrefix) ? value.slice(2) : value;
  const range = parseDateRange(date);
  if (!range) throw invalid(`${key}=${raw} is not a FHIR date (e.g. ge2024-01-31 or 2024-01-31T09:00:00Z)`);
  return { prefix, ...range };
}

function parseSort(type: string, value: string): SortSpec {
  const descending = value.startsWith('-');
  const key = descending ? value.slice(1) : value;
  if (key === '_id' || key === '_lastUpdated') return { key, descending };
  const sp = searchParam(type, key);
  if (!sp) throw unknownParam(type, `_sort=${key}`);
  return { key, table: sp.type, descending };
}

function parseInclude(value: string, type: string, reverse: boolean): IncludeSpec {
  const [sourceType, param, targetType] = value.split(':');
  const name = reverse ? '_revinclude' : '_include';
  if (!sourceType || !param) throw invalid(`${name}=${value} must be Type:parameter[:targetType]`);
  if (!resourceType(sourceType)) throw unknownParam(type, `${name}=${value}`);
  const sp = searchParam(sourceType, param);
  if (!sp || sp.type !== 'reference') throw unknownParam(sourceType, `${name}=${value}`);
  if (!reverse && sourceType !== type) throw invalid(`${name}=${value} must start with ${type}`);
  if (targetType !== undefined && !resourceType(targetType)) throw unknownParam(type, `${name}=${value}`);
  return { sourceType, param, targetType };
}

/** Splits on commas not escaped with a backslash, and unescapes `\,` `\|` `\$` `\\`. */
function splitValues(value: string): string[] {
  return splitEscaped(value, ',').map(unescapeValue);
}

/** Splits on `separator` where it is not escaped with a backslash, leaving every escape in place. */
function splitEscaped(value: string, separator: string): string[] {
  const out: string[] = [];
  let current = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) {
      current += c + value[++i];
    } else if (c === separator) {
      out.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  out.push(current);
  return out;
}

function unescapeValue(value: string): string {
  return value.replace(/\\([\s\S])/g, '$1');
}

function nonNegativeInt(key: string, value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw invalid(`${key} must be a whole number, not '${value}'`);
  return Number(value);
}

function invalid(message: string): FhirError {
  return new FhirError('SPB_INVALID_SEARCH', message);
}

function badModifier(key: string): FhirError {
  return new FhirError('SPB_INVALID_SEARCH', `The modifier in '${key}' is not supported for this parameter`);
}

function unknownParam(type: string, name: string): FhirError {
  return new FhirError(
    'SPB_UNKNOWN_SEARCH_PARAM',
    `Unknown search parameter '${name}' for ${type}; see GET /metadata for the supported ones, or send Prefer: handling=lenient to ignore it`,
  );
}
