import type { SearchParamDef } from '../registry';
import { resourceType } from '../registry';
import { parseReference } from '../references';
import { parseDateRange, periodRange } from './dates';

/** The search index entries of one resource version, as the store keeps them. */
export interface IndexEntries {
  tokens: { param: string; system: string | null; code: string }[];
  references: { param: string; refType: string; refId: string }[];
  dates: { param: string; low: number; high: number }[];
  strings: { param: string; value: string; raw: string }[];
}

type Json = Record<string, unknown>;

export function extractIndex(resource: fhir4.Resource): IndexEntries {
  const entries: IndexEntries = { tokens: [], references: [], dates: [], strings: [] };
  const def = resourceType(resource.resourceType);
  if (!def) return entries;
  for (const sp of def.searchParams) {
    for (const path of sp.paths) {
      for (const value of valuesAt(resource as unknown as Json, path)) addValue(entries, sp, value);
    }
  }
  return entries;
}

/**
 * Values at a dotted path, flattening arrays; `name[x]` collects every `nameType` choice, and
 * `extension(url)` the extensions with that url.
 */
export function valuesAt(root: Json, path: string): unknown[] {
  let current: unknown[] = [root];
  for (const step of path.match(/[^.(]+(\([^)]*\))?/g) ?? []) {
    if (step.startsWith('extension(')) {
      const url = step.slice('extension('.length, -1);
      current = current.flatMap((node) => {
        const ext = typeof node === 'object' && node !== null ? (node as Json).extension : undefined;
        return Array.isArray(ext) ? ext.filter((e) => typeof e === 'object' && e !== null && (e as Json).url === url) : [];
      });
      continue;
    }
    const next: unknown[] = [];
    for (const node of current) {
      if (node === null || typeof node !== 'object' || Array.isArray(node)) continue;
      const obj = node as Json;
      const found = step.endsWith('[x]') ? choiceValues(obj, step.slice(0, -3)) : [obj[step]];
      for (const v of found) {
        if (Array.isArray(v)) next.push(...v);
        else if (v !== undefined && v !== null) next.push(v);
      }
    }
    current = next;
  }
  return current;
}

function choiceValues(obj: Json, prefix: string): unknown[] {
  const out: unknown[] = [];
  for (const key of Object.keys(obj)) {
    if (key.length > prefix.length && key.startsWith(prefix) && /[A-Z]/.test(key[prefix.length])) {
      out.push({ [`__choice`]: key.slice(prefix.length), value: obj[key] });
    }
  }
  return out;
}

function addValue(entries: IndexEntries, sp: SearchParamDef, raw: unknown): void {
  const value = isChoice(raw) ? raw.value : raw;
  switch (sp.type) {
    case 'token':
      for (const t of tokensOf(value)) entries.tokens.push({ param: sp.name, ...t });
      return;
    case 'reference':
      addReference(entries, sp, value);
      return;
    case 'date': {
      const range = dateRangeOf(value);
      if (range) entries.dates.push({ param: sp.name, ...range });
      return;
    }
    case 'string':
      for (const s of stringsOf(value)) entries.strings.push({ param: sp.name, value: normalizeString(s), raw: s });
      return;
  }
}

function isChoice(v: unknown): v is { __choice: string; value: unknown } {
  return typeof v === 'object' && v !== null && '__choice' in v;
}

function tokensOf(value: unknown): { system: string | null; code: string }[] {
  if (typeof value === 'string') return [{ system: null, code: value }];
  if (typeof value === 'boolean') return [{ system: null, code: String(value) }];
  if (typeof value !== 'object' || value === null) return [];
  const v = value as Json;
  if (Array.isArray(v.coding)) return v.coding.flatMap((c) => tokensOf(c));
  const system = typeof v.system === 'string' ? v.system : null;
  if (typeof v.code === 'string') return [{ system, code: v.code }];
  if (typeof v.value === 'string') return [{ system, code: v.value }];
  return [];
}

function addReference(entries: IndexEntries, sp: SearchParamDef, value: unknown): void {
  if (typeof value !== 'object' || value === null) return;
  const ref = value as Json;
  if (typeof ref.reference === 'string') {
    const parsed = parseReference(ref.reference);
    if (parsed && (!sp.targets || sp.targets.includes(parsed.type))) {
      entries.references.push({ param: sp.name, refType: parsed.type, refId: parsed.id });
    }
  }
  // A logical reference by business identifier, searchable with the :identifier modifier.
  const typeOk = !sp.targets || typeof ref.type !== 'string' || sp.targets.includes(ref.type);
  if (typeOk && typeof ref.identifier === 'object' && ref.identifier !== null) {
    for (const t of tokensOf(ref.identifier)) entries.tokens.push({ param: `${sp.name}:identifier`, ...t });
  }
}

function dateRangeOf(value: unknown): { low: number; high: number } | undefined {
  if (typeof value === 'string') return parseDateRange(value);
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Json;
  const start = typeof v.start === 'string' ? v.start : undefined;
  const end = typeof v.end === 'string' ? v.end : undefined;
  return periodRange(start, end);
}

const NAME_PARTS = ['text', 'family', 'given', 'prefix', 'suffix'];
const ADDRESS_PARTS = ['text', 'line', 'city', 'district', 'state', 'postalCode', 'country'];

function stringsOf(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (typeof value !== 'object' || value === null) return [];
  const v = value as Json;
  const parts = 'family' in v || 'given' in v ? NAME_PARTS : ADDRESS_PARTS;
  return parts.flatMap((k) => {
    const part = v[k];
    if (typeof part === 'string') return [part];
    return Array.isArray(part) ? part.filter((x): x is string => typeof x === 'string') : [];
  });
}

/** Case- and accent-insensitive form used for string search (http://hl7.org/fhir/R4/search.html#string). */
export function normalizeString(s: string): string {
  return s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
}
