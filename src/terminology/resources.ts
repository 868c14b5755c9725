/**
 * The bundled CodeSystems and ValueSets as read-only FHIR resources: `GET /CodeSystem/{id}`, `GET /ValueSet/{id}`
 * and search on both, served from what the Terminology loaded (src/fhir/conformance.ts).
 *
 * Ids are stable: the resource's own `id` as shipped (every bundled file has one), else one derived from the last
 * segment of its url. Two resources of a type with the same id stop start-up.
 */
import { FhirError } from '../errors';
import type { ConformanceSource } from '../fhir/conformance';
import { getTerminology, TerminologyLoadError, type Terminology } from './codesystem';

type TerminologyType = 'CodeSystem' | 'ValueSet';
type Resource = fhir4.CodeSystem | fhir4.ValueSet;

interface SearchParam {
  readonly kind: 'string' | 'uri' | 'token';
  /** The values this resource has for the parameter. */
  readonly values: (r: Resource) => readonly string[];
}

const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;

const COMMON: Record<string, SearchParam> = {
  _id: { kind: 'token', values: (r) => (r.id ? [r.id] : []) },
  url: { kind: 'uri', values: (r) => (r.url ? [r.url] : []) },
  name: { kind: 'string', values: (r) => (r.name ? [r.name] : []) },
  title: { kind: 'string', values: (r) => (r.title ? [r.title] : []) },
  status: { kind: 'token', values: (r) => (r.status ? [r.status] : []) },
  version: { kind: 'token', values: (r) => (r.version ? [r.version] : []) },
};

const PARAMS: Record<TerminologyType, Record<string, SearchParam>> = {
  CodeSystem: {
    ...COMMON,
    /** R4 CodeSystem `system`: the system its codes belong to (= url). */
    system: { kind: 'uri', values: (r) => (r.url ? [r.url] : []) },
    /** R4 CodeSystem `code`: a code the code system (as shipped) defines. */
    code: { kind: 'token', values: (r) => conceptCodes((r as fhir4.CodeSystem).concept) },
    'content-mode': { kind: 'token', values: (r) => ((r as fhir4.CodeSystem).content ? [(r as fhir4.CodeSystem).content] : []) },
  },
  ValueSet: {
    ...COMMON,
    /** R4 ValueSet `reference`: a code system the value set includes. */
    reference: {
      kind: 'uri',
      values: (r) => {
        const compose = (r as fhir4.ValueSet).compose;
        return [...(compose?.include ?? []), ...(compose?.exclude ?? [])].flatMap((i) => (i.system ? [i.system] : []));
      },
    },
  },
};

function conceptCodes(concepts: fhir4.CodeSystemConcept[] | undefined): string[] {
  const out: string[] = [];
  const walk = (list: fhir4.CodeSystemConcept[] | undefined): void => {
    for (const c of list ?? []) {
      out.push(c.code);
      walk(c.concept);
    }
  };
  walk(concepts);
  return out;
}

/** Lower case without diacritics, for FHIR string search (case- and accent-insensitive). */
const fold = (s: string): string => s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();

/** The id a bundled resource is served under. */
export function resourceId(resource: Resource): string | undefined {
  if (typeof resource.id === 'string' && ID_RE.test(resource.id)) return resource.id;
  const last = (resource.url ?? '').split(/[/#:]/).filter(Boolean).pop();
  const derived = last?.replace(/[^A-Za-z0-9\-.]/g, '-').slice(0, 64);
  return derived || undefined;
}

export class TerminologyResources implements ConformanceSource {
  readonly types = ['CodeSystem', 'ValueSet'] as const;
  private readonly byId: Record<TerminologyType, Map<string, Resource>> = { CodeSystem: new Map(), ValueSet: new Map() };

  constructor(readonly terminology: Terminology) {
    for (const { file, resource } of terminology.resources()) {
      const type = resource.resourceType;
      const id = resourceId(resource);
      if (!id) throw new TerminologyLoadError(file, `cannot give this ${type} an id: it has no usable id or url`);
      const clash = this.byId[type].get(id);
      if (clash) throw new TerminologyLoadError(file, `${type}/${id} is also the id of ${clash.url}`);
      this.byId[type].set(id, resource.id === id ? resource : ({ ...resource, id } as Resource));
    }
  }

  read(type: string, id: string): fhir4.Resource | undefined {
    return isTerminologyType(type) ? this.byId[type].get(id) : undefined;
  }

  /** The CodeSystem served as CodeSystem/{id}. */
  codeSystem(id: string): fhir4.CodeSystem | undefined {
    return this.byId.CodeSystem.get(id) as fhir4.CodeSystem | undefined;
  }

  /** The ValueSet served as ValueSet/{id}. */
  valueSet(id: string): fhir4.ValueSet | undefined {
    return this.byId.ValueSet.get(id) as fhir4.ValueSet | undefined;
  }

  /**
   * Search: `_id`, `url`, `name`, `title`, `status`, `version` on both; `system`, `code`, `content-mode` on
   * CodeSystem; `reference` on ValueSet. String parameters match a prefix, case- and accent-insensitively
   * (`:exact`, `:contains` supported); uri and token parameters match exactly (`url` also takes `url|version`).
   * Commas OR values; repeated parameters AND. Anything else is SPB_UNKNOWN_SEARCH_PARAM.
   */
  search(type: string, params: [string, string][]): fhir4.Resource[] {
    if (!isTerminologyType(type)) return [];
    const supported = PARAMS[type];
    const tests: ((r: Resource) => boolean)[] = [];
    for (const [rawName, rawValue] of params) {
      const [name, modifier] = rawName.split(':', 2) as [string, string | undefined];
      const param = Object.prototype.hasOwnProperty.call(supported, name) ? supported[name] : undefined;
      if (!param) {
        throw new FhirError(
          'SPB_UNKNOWN_SEARCH_PARAM',
          `${type} search does not support the parameter '${rawName}'; supported: ${Object.keys(supported).join(', ')}`,
        );
      }
      if (modifier !== undefined && !(param.kind === 'string' && (modifier === 'exact' || modifier === 'contains'))) {
        throw new FhirError('SPB_INVALID_SEARCH', `The modifier ':${modifier}' is not supported on ${type} search parameter '${name}'`);
      }
      const wanted = rawValue.split(',').map((v) => v.trim()).filter((v) => v !== '');
      if (wanted.length === 0) continue;
      tests.push((r) => {
        const have = param.values(r);
        return wanted.some((w) => have.some((h) => matchValue(param.kind, modifier, name, h, w, r)));
      });
    }
    const all = [...this.byId[type].values()];
    return all.filter((r) => tests.every((t) => t(r))).sort((a, b) => ((a.id ?? '') < (b.id ?? '') ? -1 : 1));
  }
}

function matchValue(kind: SearchParam['kind'], modifier: string | undefined, name: string, have: string, want: string, r: Resource): boolean {
  switch (kind) {
    case 'string': {
      if (modifier === 'exact') return have === want;
      const h = fold(have);
      const w = fold(want);
      return modifier === 'contains' ? h.includes(w) : h.startsWith(w);
    }
    case 'uri': {
      const bar = want.indexOf('|');
      if (name === 'url' && bar >= 0) return have === want.slice(0, bar) && r.version === want.slice(bar + 1);
      return have === want;
    }
    case 'token': {
      const bar = want.lastIndexOf('|');
      return have === (bar >= 0 ? want.slice(bar + 1) : want);
    }
  }
}

function isTerminologyType(type: string): type is TerminologyType {
  return type === 'CodeSystem' || type === 'ValueSet';
}

let shared: TerminologyResources | undefined;

/** The bundled terminology as a ConformanceSource, over getTerminology(); loads it (call at start-up). */
export function getTerminologyResources(): TerminologyResources {
  shared ??= new TerminologyResources(getTerminology());
  return shared;
}
