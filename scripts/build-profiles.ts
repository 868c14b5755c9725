/**
 * Snapshot generator for the StructureDefinitions sp-bridge ships in `profiles/`.
 *
 *   npm run build:profiles                    regenerate every snapshot in place
 *   npm run build:profiles -- --check         regenerate in memory; exit 1 if a file on disk differs
 *   npm run build:profiles -- --import DIR    first copy the base R4 and UK Core definitions the profiles need from
 *                                             DIR (a copy of the shared FHIR reference corpus with its MANIFEST.json)
 *
 * Inputs (all under `profiles/`):
 * - `base/r4/*.json`: base FHIR R4 4.0.1 StructureDefinitions. They come with snapshots and are used as they are.
 * - `base/uk-core/*.json`: UK Core profiles and extensions. Upstream ships only differentials; this script
 *   (re)generates their snapshots and writes them back, keeping everything else in the file as received.
 * - `src/*.json`: sp-bridge's own profiles and extensions, differentials authored by hand.
 *
 * Outputs: `profiles/<id>.json` for every `src/` file (differential and snapshot), and the snapshots of
 * `base/uk-core/`. The output depends only on the inputs (no dates, no hashes of the environment), so a rebuild
 * yields byte-identical files.
 *
 * The snapshot rules implemented are those of http://hl7.org/fhir/R4/profiling.html#snapshot as far as these
 * profiles need them; `README.md` in `profiles/` lists what is not implemented. Anything the generator cannot do,
 * or a differential that loosens its base (wider cardinality, a type or target not in the base, a weaker
 * required/extensible binding, a fixed value that contradicts the base, closed slicing reopened), is an error:
 * the build stops and names every such element.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

// ---------------------------------------------------------------------------------------------------------------
// Types: the parts of StructureDefinition / ElementDefinition the generator reads. Everything else is carried as is.

export interface TypeRef {
  code: string;
  profile?: string[];
  targetProfile?: string[];
  aggregation?: string[];
  versioning?: string;
  extension?: unknown[];
  [key: string]: unknown;
}

export interface Discriminator {
  type: string;
  path: string;
}

export interface Slicing {
  discriminator?: Discriminator[];
  description?: string;
  ordered?: boolean;
  rules: string;
}

export interface Binding {
  strength: string;
  description?: string;
  valueSet?: string;
  extension?: unknown[];
}

export interface Constraint {
  key: string;
  severity: string;
  human: string;
  expression?: string;
  xpath?: string;
  source?: string;
  requirements?: string;
  extension?: unknown[];
}

export interface ElementDefinition {
  id?: string;
  path: string;
  sliceName?: string;
  min?: number;
  max?: string;
  base?: { path: string; min: number; max: string };
  type?: TypeRef[];
  slicing?: Slicing;
  binding?: Binding;
  constraint?: Constraint[];
  condition?: string[];
  contentReference?: string;
  isModifier?: boolean;
  isSummary?: boolean;
  mustSupport?: boolean;
  short?: string;
  definition?: string;
  comment?: string;
  mapping?: { identity: string; map: string; [key: string]: unknown }[];
  [key: string]: unknown;
}

export interface StructureDefinition {
  resourceType: 'StructureDefinition';
  id: string;
  url: string;
  name?: string;
  type: string;
  kind: string;
  abstract?: boolean;
  baseDefinition?: string;
  derivation?: string;
  snapshot?: { element: ElementDefinition[] };
  differential?: { element: ElementDefinition[] };
  [key: string]: unknown;
}

/** Where a definition came from, which decides whether its snapshot is generated and where it is written. */
export type Origin = 'r4' | 'uk-core' | 'sp';

export interface LoadedDefinition {
  sd: StructureDefinition;
  origin: Origin;
  /** Path relative to the profiles directory of the file it was read from. */
  file: string;
}

/** Thrown when a differential cannot be applied; `problems` names every offending element. */
export class SnapshotError extends Error {
  constructor(
    readonly profile: string,
    readonly problems: string[],
  ) {
    super(`${profile}: ${problems.length} problem(s) generating the snapshot:\n  - ${problems.join('\n  - ')}`);
    this.name = 'SnapshotError';
  }
}

const FHIR_SD = 'http://hl7.org/fhir/StructureDefinition/';
const FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type';

/** The slicing every extension element has implicitly (R4 Extension.extension and datatype `extension` elements). */
const EXTENSION_SLICING: Slicing = {
  discriminator: [{ type: 'value', path: 'url' }],
  description: 'Extensions are always sliced by (at least) url',
  rules: 'open',
};

/** FHIRPath system type of the `value` of each primitive datatype (R4 primitive StructureDefinitions). */
const PRIMITIVE_SYSTEM_TYPE: Record<string, string> = {
  boolean: 'Boolean',
  integer: 'Integer',
  positiveInt: 'Integer',
  unsignedInt: 'Integer',
  decimal: 'Decimal',
  date: 'Date',
  dateTime: 'DateTime',
  instant: 'DateTime',
  time: 'Time',
  string: 'String',
  code: 'String',
  id: 'String',
  markdown: 'String',
  uri: 'String',
  url: 'String',
  canonical: 'String',
  oid: 'String',
  uuid: 'String',
  base64Binary: 'String',
  xhtml: 'String',
};

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value as object).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

/** True if every property of `pattern` is in `value` (arrays: every pattern item matches some value item). */
export function matchesPattern(value: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) {
    if (!Array.isArray(value)) return false;
    return pattern.every((p) => value.some((v) => matchesPattern(v, p)));
  }
  if (pattern !== null && typeof pattern === 'object') {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
    return Object.entries(pattern as Record<string, unknown>).every(([k, p]) =>
      matchesPattern((value as Record<string, unknown>)[k], p),
    );
  }
  return value === pattern;
}

function maxNumber(max: string | undefined): number {
  return max === undefined || max === '*' ? Number.POSITIVE_INFINITY : Number(max);
}

/** Splits an element id into its segments: `Patient.identifier:nhsNumber.system` -> 3 segments. */
export function idSegments(id: string): string[] {
  // Slice names never contain '.', but a segment such as `extension:foo` may; split only on '.' outside slice names
  // would need a grammar. FHIR ids use '.' only between segments, so a plain split is right.
  return id.split('.');
}

/** The path for an element id: slice names removed. */
export function pathOfId(id: string): string {
  return idSegments(id)
    .map((s) => s.split(':')[0])
    .join('.');
}

/** Keys of an ElementDefinition in the order of the R4 ElementDefinition resource (JSON is written in this order). */
const ELEMENT_KEY_ORDER = [
  'id',
  'extension',
  'modifierExtension',
  'path',
  'representation',
  'sliceName',
  'sliceIsConstraining',
  'label',
  'code',
  'slicing',
  'short',
  'definition',
  'comment',
  'requirements',
  'alias',
  'min',
  'max',
  'base',
  'contentReference',
  'type',
  'defaultValue',
  'meaningWhenMissing',
  'orderMeaning',
  'fixed',
  'pattern',
  'example',
  'minValue',
  'maxValue',
  'maxLength',
  'condition',
  'constraint',
  'mustSupport',
  'isModifier',
  'isModifierReason',
  'isSummary',
  'binding',
  'mapping',
];

function elementKeyRank(key: string): number {
  const exact = ELEMENT_KEY_ORDER.indexOf(key);
  if (exact >= 0) return exact;
  for (const prefix of ['defaultValue', 'fixed', 'pattern', 'minValue', 'maxValue']) {
    if (key.startsWith(prefix) && /^[A-Z]/.test(key.slice(prefix.length))) return ELEMENT_KEY_ORDER.indexOf(prefix);
  }
  return ELEMENT_KEY_ORDER.length;
}

function orderElementKeys(e: ElementDefinition): ElementDefinition {
  const keys = Object.keys(e);
  const ranked = keys.map((k, i) => ({ k, i, r: elementKeyRank(k) })).sort((a, b) => a.r - b.r || a.i - b.i);
  const out: Record<string, unknown> = {};
  for (const { k } of ranked) out[k] = e[k];
  return out as ElementDefinition;
}

const SD_KEY_ORDER = [
  'resourceType',
  'id',
  'meta',
  'implicitRules',
  'language',
  'text',
  'contained',
  'extension',
  'modifierExtension',
  'url',
  'identifier',
  'version',
  'name',
  'title',
  'status',
  'experimental',
  'date',
  'publisher',
  'contact',
  'description',
  'useContext',
  'jurisdiction',
  'purpose',
  'copyright',
  'keyword',
  'fhirVersion',
  'mapping',
  'kind',
  'abstract',
  'context',
  'contextInvariant',
  'type',
  'baseDefinition',
  'derivation',
  'snapshot',
  'differential',
];

function orderSdKeys(sd: StructureDefinition): StructureDefinition {
  const keys = Object.keys(sd);
  const rank = (k: string): number => {
    const i = SD_KEY_ORDER.indexOf(k);
    return i >= 0 ? i : SD_KEY_ORDER.length;
  };
  const ranked = keys.map((k, i) => ({ k, i, r: rank(k) })).sort((a, b) => a.r - b.r || a.i - b.i);
  const out: Record<string, unknown> = {};
  for (const { k } of ranked) out[k] = sd[k];
  return out as StructureDefinition;
}

/** The file text the build writes: 2-space JSON and a final newline. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// The registry of definitions and the snapshot generator

export class ProfileSet {
  private readonly byUrl = new Map<string, LoadedDefinition>();
  private readonly snapshots = new Map<string, ElementDefinition[]>();
  private readonly inProgress = new Set<string>();
  /** Things the build did but a reader should know: fallbacks taken for definitions that are not shipped. */
  readonly notes: string[] = [];

  add(sd: StructureDefinition, origin: Origin, file: string): void {
    if (sd.resourceType !== 'StructureDefinition') throw new Error(`${file}: not a StructureDefinition`);
    if (this.byUrl.has(sd.url)) throw new Error(`${file}: duplicate url ${sd.url} (also in ${this.byUrl.get(sd.url)?.file})`);
    this.byUrl.set(sd.url, { sd, origin, file });
  }

  get(url: string): LoadedDefinition | undefined {
    return this.byUrl.get(stripVersion(url));
  }

  all(): LoadedDefinition[] {
    return [...this.byUrl.values()];
  }

  /**
   * The snapshot of `url`: as shipped for base R4, generated (once) for UK Core and sp-bridge definitions. UK Core
   * files that already carry a snapshot (from an earlier build) are regenerated from their differential.
   */
  snapshot(url: string): ElementDefinition[] {
    const done = this.snapshots.get(url);
    if (done) return done;
    const entry = this.get(url);
    if (!entry) throw new Error(`no StructureDefinition ${url} is shipped`);
    const { sd, origin } = entry;
    if (origin === 'r4') {
      if (!sd.snapshot) throw new Error(`${entry.file}: base R4 definition without a snapshot`);
      this.snapshots.set(url, sd.snapshot.element);
      return sd.snapshot.element;
    }
    if (this.inProgress.has(url)) throw new Error(`circular baseDefinition or profile chain at ${url}`);
    this.inProgress.add(url);
    try {
      if (!sd.baseDefinition) throw new Error(`${entry.file}: no baseDefinition`);
      if (sd.derivation !== 'constraint') throw new Error(`${entry.file}: only derivation=constraint is supported`);
      const base = this.snapshot(sd.baseDefinition);
      const generated = new SnapshotBuilder(this, sd, base).build();
      this.snapshots.set(url, generated);
      return generated;
    } finally {
      this.inProgress.delete(url);
    }
  }

  /** The snapshot of the base definition of datatype `code`, or of a profile on it. */
  typeSnapshot(code: string): ElementDefinition[] | undefined {
    const entry = this.get(FHIR_SD + code);
    return entry ? this.snapshot(entry.sd.url) : undefined;
  }

  /** True if `url` is `ancestor` or derives from it through baseDefinition (as far as shipped definitions go). */
  derivesFrom(url: string, ancestor: string): boolean {
    let current: string | undefined = stripVersion(url);
    const target = stripVersion(ancestor);
    const seen = new Set<string>();
    while (current && !seen.has(current)) {
      if (current === target) return true;
      seen.add(current);
      current = this.get(current)?.sd.baseDefinition;
    }
    return false;
  }

  /** The resource or datatype a (possibly unshipped) profile url constrains, when it can be told. */
  typeOfProfile(url: string): string | undefined {
    const entry = this.get(url);
    if (entry) return entry.sd.type;
    const u = stripVersion(url);
    return u.startsWith(FHIR_SD) && /^[A-Z][A-Za-z]+$/.test(u.slice(FHIR_SD.length)) ? u.slice(FHIR_SD.length) : undefined;
  }
}

function stripVersion(url: string): string {
  const bar = url.indexOf('|');
  return bar >= 0 ? url.slice(0, bar) : url;
}

/** Applies one differential to one base snapshot. */
class SnapshotBuilder {
  private readonly snap: ElementDefinition[];
  private readonly problems: string[] = [];
  /** Ids of slices this differential introduced (their min starts at 0 and is not compared with the sliced element). */
  private readonly newSlices = new Set<string>();

  constructor(
    private readonly set: ProfileSet,
    private readonly sd: StructureDefinition,
    base: ElementDefinition[],
  ) {
    this.snap = clone(base);
  }

  build(): ElementDefinition[] {
    const diff = this.sd.differential?.element;
    if (!diff || diff.length === 0) throw new SnapshotError(this.sd.url, ['no differential']);
    const root = this.snap[0];
    if (!root || root.path !== this.sd.type) {
      throw new SnapshotError(this.sd.url, [`base snapshot root is ${root?.path}, expected ${this.sd.type}`]);
    }
    for (const d of diff) {
      const id = d.id ?? (d.sliceName ? `${d.path}:${d.sliceName}` : d.path);
      if (pathOfId(id) !== d.path) {
        this.problems.push(`${id}: path ${d.path} does not match the id (expected ${pathOfId(id)})`);
        continue;
      }
      if (!id.startsWith(this.sd.type) || (id !== this.sd.type && !/^[.:]/.test(id.slice(this.sd.type.length)))) {
        this.problems.push(`${id}: does not start with the type ${this.sd.type}`);
        continue;
      }
      let index: number;
      try {
        index = this.ensure(id);
      } catch (e) {
        this.problems.push(e instanceof Error ? e.message : String(e));
        continue;
      }
      this.merge(this.snap[index], d, id);
    }
    this.checkWhole();
    if (this.problems.length > 0) throw new SnapshotError(this.sd.url, this.problems);
    return this.snap.map(orderElementKeys);
  }

  private indexOf(id: string): number {
    return this.snap.findIndex((e) => e.id === id);
  }

  /** The index of the element with `id`, creating it (a slice, or children pulled in from a type) if needed. */
  private ensure(id: string): number {
    const found = this.indexOf(id);
    if (found >= 0) return found;
    const segments = idSegments(id);
    if (segments.length === 1) throw new Error(`${id}: no such root element`);
    const last = segments[segments.length - 1];
    const parentId = segments.slice(0, -1).join('.');
    const colon = last.indexOf(':');
    if (colon >= 0) return this.addSlice(parentId, last.slice(0, colon), last.slice(colon + 1), id);
    const parentIndex = this.ensure(parentId);
    if (!this.snap.some((e) => this.isChildOf(e.id as string, parentId))) this.expandChildren(parentIndex);
    const index = this.indexOf(id);
    if (index < 0) {
      const choices = this.snap
        .filter((e) => this.isChildOf(e.id as string, parentId) && (e.id as string).endsWith('[x]'))
        .map((e) => (e.id as string).slice(parentId.length + 1, -3));
      const renamed = choices.find((c) => last.startsWith(c) && /^[A-Z]/.test(last.slice(c.length)));
      const hint = renamed
        ? ` (type-specific names such as ${last} are not supported: constrain ${parentId}.${renamed}[x] to one type instead)`
        : '';
      throw new Error(`${id}: ${parentId} has no child element ${last}${hint}`);
    }
    return index;
  }

  private isChildOf(id: string, parentId: string): boolean {
    if (!id.startsWith(`${parentId}.`)) return false;
    return !id.slice(parentId.length + 1).includes('.');
  }

  /** The index just after the sliced element, its children, and its existing slices with their children. */
  private endOfGroup(slicedId: string): number {
    let end = this.indexOf(slicedId);
    for (let i = end + 1; i < this.snap.length; i++) {
      const id = this.snap[i].id as string;
      if (id.startsWith(`${slicedId}.`) || id.startsWith(`${slicedId}:`)) end = i;
    }
    return end + 1;
  }

  private addSlice(parentId: string, name: string, sliceName: string, id: string): number {
    if (sliceName.includes('/')) throw new Error(`${id}: re-slicing is not supported`);
    const slicedId = parentId ? `${parentId}.${name}` : name;
    const slicedIndex = this.ensure(slicedId);
    // Expanding the sliced element's parent may have brought the slice in (slices defined by a type profile).
    const existing = this.indexOf(id);
    if (existing >= 0) return existing;
    const sliced = this.snap[slicedIndex];
    if (!sliced.slicing) {
      if (name === 'extension' || name === 'modifierExtension') sliced.slicing = clone(EXTENSION_SLICING);
      else throw new Error(`${id}: ${slicedId} is not sliced (the differential must give slicing before slices)`);
    }
    const slice = clone(sliced);
    delete slice.slicing;
    slice.id = id;
    slice.sliceName = sliceName;
    slice.min = 0;
    const children = this.snap
      .filter((e) => (e.id as string).startsWith(`${slicedId}.`))
      .map((e) => {
        const c = clone(e);
        c.id = id + (e.id as string).slice(slicedId.length);
        return c;
      });
    const at = this.endOfGroup(slicedId);
    this.snap.splice(at, 0, slice, ...children);
    this.newSlices.add(id);
    return at;
  }

  /** Pulls in the children of a complex element from its type's (or type profile's) snapshot. */
  private expandChildren(parentIndex: number): void {
    const parent = this.snap[parentIndex];
    const parentId = parent.id as string;
    let source: ElementDefinition[] | undefined;
    let fixUrl: string | undefined;
    if (parent.contentReference) {
      const ref = parent.contentReference.replace(/^#/, '');
      const base = this.set.typeSnapshot(pathOfId(ref).split('.')[0]) ?? [];
      const start = base.findIndex((e) => e.id === ref);
      if (start < 0) throw new Error(`${parentId}: contentReference ${parent.contentReference} not found`);
      source = [base[start], ...base.filter((e) => (e.id as string).startsWith(`${ref}.`))];
    } else {
      const types = parent.type ?? [];
      if (types.length !== 1) {
        throw new Error(
          `${parentId}: cannot constrain below an element with ${types.length} types; constrain its type to one first`,
        );
      }
      const t = types[0];
      const profile = t.profile?.length === 1 ? t.profile[0] : undefined;
      if (t.profile && t.profile.length > 1) throw new Error(`${parentId}: cannot expand a type with several profiles`);
      if (profile && this.set.get(profile)) {
        source = this.set.snapshot(stripVersion(profile));
      } else {
        if (profile) {
          this.set.notes.push(
            `${this.sd.id}: ${parentId}: profile ${profile} is not shipped; children taken from base ${t.code}` +
              (t.code === 'Extension' ? ' with url fixed to the profile url' : ''),
          );
          if (t.code === 'Extension') fixUrl = profile;
        }
        if (t.code.startsWith('http://hl7.org/fhirpath/System.')) {
          throw new Error(`${parentId}: a FHIRPath system type (${t.code}) has no children`);
        }
        source = this.set.typeSnapshot(t.code) ?? this.primitiveSnapshot(t.code);
        if (!source) throw new Error(`${parentId}: the StructureDefinition of type ${t.code} is not shipped`);
      }
    }
    const rootId = source[0].id as string;
    const rootPath = source[0].path;
    const children = source.slice(1).map((e) => {
      const c = clone(e);
      c.id = parentId + (e.id as string).slice(rootId.length);
      c.path = parent.path + e.path.slice(rootPath.length);
      return c;
    });
    if (fixUrl) {
      const url = children.find((c) => c.id === `${parentId}.url`);
      if (url) url.fixedUri = fixUrl;
    }
    this.snap.splice(parentIndex + 1, 0, ...children);
  }

  /**
   * Primitive datatypes' StructureDefinitions are not shipped (the reference corpus has none). Their children are
   * the same for every primitive: Element.id, Element.extension, and `value` of the matching FHIRPath system type.
   */
  private primitiveSnapshot(code: string): ElementDefinition[] | undefined {
    const system = PRIMITIVE_SYSTEM_TYPE[code];
    if (!system) return undefined;
    const element = this.set.typeSnapshot('Element');
    if (!element) return undefined;
    this.set.notes.push(`${this.sd.id}: children of primitive type ${code} synthesised from Element (no ${code} definition shipped)`);
    const rootAndKids = element.filter((e) => e.id === 'Element' || e.id === 'Element.id' || e.id === 'Element.extension');
    const renamed = rootAndKids.map((e) => {
      const c = clone(e);
      c.id = code + (e.id as string).slice('Element'.length);
      c.path = code + e.path.slice('Element'.length);
      return c;
    });
    renamed.push({
      id: `${code}.value`,
      path: `${code}.value`,
      representation: ['xmlAttr'],
      short: `Primitive value for ${code}`,
      definition: `Primitive value for ${code}`,
      min: 0,
      max: '1',
      base: { path: `${code}.value`, min: 0, max: '1' },
      type: [
        {
          extension: [{ url: FHIR_TYPE_EXT, valueUrl: code }],
          code: `http://hl7.org/fhirpath/System.${system}`,
        },
      ],
      isModifier: false,
      isSummary: false,
    });
    return renamed;
  }

  /** Applies the differential element `d` to the snapshot element `s`, refusing anything that loosens `s`. */
  private merge(s: ElementDefinition, d: ElementDefinition, id: string): void {
    const problem = (message: string): void => {
      this.problems.push(`${id}: ${message}`);
    };
    const isNewSlice = this.newSlices.has(id);
    for (const key of Object.keys(d)) {
      const value = d[key];
      switch (key) {
        case 'id':
        case 'path':
          break;
        case 'base':
          problem('a differential must not set base');
          break;
        case 'sliceName':
          if (s.sliceName !== value) problem(`sliceName ${String(value)} does not match the element id`);
          break;
        case 'min': {
          const min = value as number;
          if (!isNewSlice && s.min !== undefined && min < s.min) problem(`min ${min} is wider than the base min ${s.min}`);
          s.min = min;
          break;
        }
        case 'max': {
          const max = value as string;
          if (maxNumber(max) > maxNumber(s.max)) problem(`max ${max} is wider than the base max ${s.max}`);
          s.max = max;
          break;
        }
        case 'type':
          this.mergeType(s, value as TypeRef[], problem);
          break;
        case 'binding':
          this.mergeBinding(s, value as Binding, problem);
          break;
        case 'constraint':
          for (const c of value as Constraint[]) {
            const existing = s.constraint?.find((x) => x.key === c.key);
            if (existing) {
              if (!deepEqual({ ...existing, source: undefined }, { ...c, source: undefined })) {
                problem(`constraint ${c.key} already exists in the base with a different definition`);
              }
              continue;
            }
            (s.constraint ??= []).push({ ...clone(c), source: c.source ?? this.sd.url });
          }
          break;
        case 'condition':
          for (const c of value as string[]) if (!(s.condition ?? []).includes(c)) (s.condition ??= []).push(c);
          break;
        case 'slicing':
          this.mergeSlicing(s, value as Slicing, problem);
          break;
        case 'mapping':
          for (const m of value as NonNullable<ElementDefinition['mapping']>) {
            if (!(s.mapping ?? []).some((x) => deepEqual(x, m))) (s.mapping ??= []).push(clone(m));
          }
          break;
        case 'isModifier':
        case 'isSummary':
          if (s[key] !== undefined && s[key] !== value) problem(`${key} cannot be changed from ${String(s[key])}`);
          s[key] = value as boolean;
          break;
        default:
          if (/^(fixed|pattern)[A-Z]/.test(key)) this.mergeFixedOrPattern(s, key, value, problem);
          else s[key] = clone(value);
      }
    }
    if (d.type) this.applyExtensionRoot(s, d, problem);
    if (d.min !== undefined || d.max !== undefined) {
      if ((s.min ?? 0) > maxNumber(s.max)) problem(`min ${s.min} is greater than max ${s.max}`);
    }
  }

  /**
   * An element whose one type is Extension with one (shipped) profile takes that extension's root definition:
   * short, definition and comment unless the differential gives its own, and the extension's max if narrower.
   */
  private applyExtensionRoot(s: ElementDefinition, d: ElementDefinition, problem: (m: string) => void): void {
    const t = s.type ?? [];
    if (t.length !== 1 || t[0].code !== 'Extension' || t[0].profile?.length !== 1) return;
    const ext = this.set.get(t[0].profile[0]);
    if (!ext) return;
    const root = this.set.snapshot(ext.sd.url)[0];
    for (const key of ['short', 'definition', 'comment'] as const) {
      if (d[key] === undefined && root[key] !== undefined) s[key] = root[key];
    }
    if (maxNumber(root.max) < maxNumber(s.max)) {
      if (d.max !== undefined) problem(`max ${d.max} is wider than the max ${root.max} of extension ${ext.sd.url}`);
      s.max = root.max;
    }
  }

  private mergeType(s: ElementDefinition, types: TypeRef[], problem: (m: string) => void): void {
    const baseTypes = s.type ?? [];
    const merged: TypeRef[] = [];
    for (const dt of types) {
      const bt = baseTypes.find((t) => t.code === dt.code);
      if (!bt) {
        problem(`type ${dt.code} is not one of the base types (${baseTypes.map((t) => t.code).join(', ')})`);
        continue;
      }
      for (const p of dt.profile ?? []) {
        if (!bt.profile) {
          const constrains = this.set.typeOfProfile(p);
          if (constrains && constrains !== dt.code) problem(`profile ${p} constrains ${constrains}, not ${dt.code}`);
        } else if (!bt.profile.some((b) => this.set.derivesFrom(p, b))) {
          problem(`profile ${p} does not derive from the base profile(s) ${bt.profile.join(', ')}`);
        }
      }
      for (const target of dt.targetProfile ?? []) {
        const allowed = bt.targetProfile;
        if (!allowed || allowed.length === 0) continue;
        if (allowed.some((a) => stripVersion(a) === FHIR_SD + 'Resource')) continue;
        if (allowed.some((a) => this.set.derivesFrom(target, a))) continue;
        const targetType = this.set.typeOfProfile(target);
        if (targetType && allowed.some((a) => this.set.typeOfProfile(a) === targetType && this.set.get(a) === undefined)) continue;
        problem(`target ${target} is not allowed by the base (${allowed.join(', ')})`);
      }
      const t: TypeRef = { ...clone(bt), ...clone(dt) };
      // A differential type without targetProfile/profile keeps the base's.
      if (!dt.targetProfile && bt.targetProfile) t.targetProfile = clone(bt.targetProfile);
      if (!dt.profile && bt.profile) t.profile = clone(bt.profile);
      if (!dt.extension && bt.extension) t.extension = clone(bt.extension);
      merged.push(orderTypeKeys(t));
    }
    s.type = merged;
  }

  private mergeBinding(s: ElementDefinition, binding: Binding, problem: (m: string) => void): void {
    const rank: Record<string, number> = { required: 4, extensible: 3, preferred: 2, example: 1 };
    const before = s.binding?.strength;
    if (before && (before === 'required' || before === 'extensible') && rank[binding.strength] < rank[before]) {
      problem(`binding strength ${binding.strength} is weaker than the base ${before}`);
    }
    const merged: Binding = { ...clone(s.binding ?? { strength: binding.strength }), ...clone(binding) };
    if (binding.valueSet === undefined && s.binding?.valueSet) merged.valueSet = s.binding.valueSet;
    // A new value set makes the base's description wrong; keep the base's only when the value set is unchanged.
    if (binding.valueSet !== undefined && binding.description === undefined && s.binding?.valueSet !== binding.valueSet) {
      delete merged.description;
    }
    const out: Binding = { ...(merged.extension ? { extension: merged.extension } : {}), strength: merged.strength };
    if (merged.description !== undefined) out.description = merged.description;
    if (merged.valueSet !== undefined) out.valueSet = merged.valueSet;
    s.binding = out;
  }

  private mergeSlicing(s: ElementDefinition, slicing: Slicing, problem: (m: string) => void): void {
    if (!s.slicing) {
      if (!slicing.discriminator || slicing.discriminator.length === 0) problem('slicing needs a discriminator');
      s.slicing = clone(slicing);
      return;
    }
    if (slicing.discriminator && !deepEqual(slicing.discriminator, s.slicing.discriminator)) {
      problem('slicing discriminator differs from the base slicing (re-slicing is not supported)');
    }
    if (s.slicing.rules === 'closed' && slicing.rules !== 'closed') problem('closed slicing cannot be reopened');
    if (s.slicing.ordered === true && slicing.ordered === false) problem('ordered slicing cannot become unordered');
    s.slicing = { ...s.slicing, ...clone(slicing) };
  }

  private mergeFixedOrPattern(s: ElementDefinition, key: string, value: unknown, problem: (m: string) => void): void {
    const typeSuffix = key.replace(/^(fixed|pattern)/, '');
    for (const k of Object.keys(s).filter((x) => /^(fixed|pattern)[A-Z]/.test(x))) {
      const old = s[k];
      if (k.replace(/^(fixed|pattern)/, '') !== typeSuffix) {
        problem(`${key} contradicts the base ${k} (different type)`);
        return;
      }
      if (k.startsWith('fixed')) {
        // A fixed value in the base: the differential may only repeat it, or give a pattern it satisfies.
        const ok = key.startsWith('fixed') ? deepEqual(old, value) : matchesPattern(old, value);
        if (!ok) problem(`${key} contradicts the base ${k}`);
        return;
      }
      // A pattern in the base: the new pattern or fixed value must satisfy it, and replaces it.
      if (!matchesPattern(value, old)) {
        problem(`${key} does not satisfy the base ${k}`);
        return;
      }
      delete s[k];
    }
    s[key] = clone(value);
  }

  /** Whole-snapshot checks: unique ids, paths matching ids, slices within their sliced element's cardinality. */
  private checkWhole(): void {
    const seen = new Set<string>();
    for (const e of this.snap) {
      const id = e.id as string;
      if (seen.has(id)) this.problems.push(`${id}: duplicate element id`);
      seen.add(id);
      if (pathOfId(id) !== e.path) this.problems.push(`${id}: path ${e.path} does not match the id`);
      if ((e.min ?? 0) > maxNumber(e.max)) this.problems.push(`${id}: min ${e.min} > max ${e.max}`);
      if (e.slicing) {
        const slices = this.snap.filter((x) => {
          const xid = x.id as string;
          return xid.startsWith(`${id}:`) && !xid.slice(id.length + 1).includes('.');
        });
        const sumMin = slices.reduce((n, x) => n + (x.min ?? 0), 0);
        if (sumMin > maxNumber(e.max)) this.problems.push(`${id}: slices require ${sumMin} items but max is ${e.max}`);
        for (const x of slices) {
          if (maxNumber(x.max) > maxNumber(e.max)) this.problems.push(`${x.id}: slice max ${x.max} exceeds ${e.max}`);
        }
      }
    }
  }
}

function orderTypeKeys(t: TypeRef): TypeRef {
  const order = ['extension', 'code', 'profile', 'targetProfile', 'aggregation', 'versioning'];
  const out: Record<string, unknown> = {};
  for (const k of order) if (t[k] !== undefined) out[k] = t[k];
  for (const k of Object.keys(t)) if (!order.includes(k)) out[k] = t[k];
  return out as TypeRef;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading and writing profiles/

function readJson(file: string): unknown {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function jsonFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
}

/** Loads base/r4, base/uk-core and src from a profiles directory. */
export function loadProfileSet(profilesDir: string): ProfileSet {
  const set = new ProfileSet();
  for (const [sub, origin] of [
    ['base/r4', 'r4'],
    ['base/uk-core', 'uk-core'],
    ['src', 'sp'],
  ] as const) {
    for (const f of jsonFiles(path.join(profilesDir, sub))) {
      const sd = readJson(path.join(profilesDir, sub, f)) as StructureDefinition;
      if (sd.resourceType !== 'StructureDefinition') continue;
      set.add(sd, origin, `${sub}/${f}`);
    }
  }
  return set;
}

/** Output file (relative to profiles/) of an sp-bridge source definition. */
export function outputFileOf(entry: LoadedDefinition): string {
  if (entry.origin === 'uk-core') return entry.file;
  if (entry.origin === 'sp') return `${entry.sd.id}.json`;
  throw new Error(`base R4 definitions are not rewritten (${entry.file})`);
}

/** Everything the build writes, relative to profiles/, with its exact text. Throws SnapshotError on a bad differential. */
export function buildProfiles(profilesDir: string): { files: Map<string, string>; notes: string[] } {
  const set = loadProfileSet(profilesDir);
  const files = new Map<string, string>();
  const entries = set
    .all()
    .filter((e) => e.origin !== 'r4')
    .sort((a, b) => a.file.localeCompare(b.file));
  for (const entry of entries) {
    const element = set.snapshot(entry.sd.url);
    let out: StructureDefinition;
    if (entry.origin === 'uk-core') {
      // Keep the file as received; put the snapshot before the differential, as FHIR JSON orders them.
      out = {} as StructureDefinition;
      for (const [k, v] of Object.entries(entry.sd)) {
        if (k === 'snapshot') continue;
        if (k === 'differential') out.snapshot = { element };
        (out as Record<string, unknown>)[k] = v;
      }
    } else {
      const differential = { element: (entry.sd.differential?.element ?? []).map((e) => orderElementKeys(clone(e))) };
      out = orderSdKeys({ ...clone(entry.sd), snapshot: { element }, differential });
    }
    files.set(outputFileOf(entry), formatJson(out));
  }
  return { files, notes: [...new Set(set.notes)].sort() };
}

// ---------------------------------------------------------------------------------------------------------------
// --import: copying the base definitions from the shared reference corpus

interface ManifestEntry {
  file: string;
  sha256?: string;
  source?: { repo?: string; path?: string; commit?: string; package?: string };
  licence?: string;
  converted_from_xml?: boolean;
  resourceType?: string;
  url?: string;
  sdType?: string;
}

/** The resources sp-bridge serves or returns; their base definitions and every datatype they use are shipped. */
export const SERVED_RESOURCES = ['Patient', 'ServiceRequest', 'CarePlan', 'Observation', 'Task', 'Bundle', 'OperationOutcome', 'Parameters'];
/** The UK Core profiles sp-bridge's profiles derive from. */
export const UK_CORE_PROFILES = ['UKCore-Patient', 'UKCore-ServiceRequest', 'UKCore-CarePlan', 'UKCore-Observation', 'UKCore-Task'];

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/**
 * Copies into profiles/base the base R4 definitions (the served resources, the abstract bases, and the transitive
 * closure of the datatypes and type profiles they and the UK Core definitions use) and the UK Core profiles with the
 * extensions their differentials name, and writes base/SOURCES.json with each file's origin and licence.
 */
export function importBase(corpusDir: string, profilesDir: string): string[] {
  const manifest = (readJson(path.join(corpusDir, 'MANIFEST.json')) as { entries: ManifestEntry[] }).entries;
  const sds = manifest.filter((m) => m.resourceType === 'StructureDefinition' && m.url);
  const r4ByType = new Map<string, ManifestEntry>();
  const byUrl = new Map<string, ManifestEntry>();
  for (const m of sds) {
    if (m.file.startsWith('hl7-r4/core-structuredefinitions/')) {
      const sd = readJson(path.join(corpusDir, m.file)) as StructureDefinition;
      if (sd.derivation !== 'constraint' || sd.type === 'Quantity') r4ByType.set(sd.id, m);
    }
    byUrl.set(m.url as string, m);
  }
  const copied: ManifestEntry[] = [];
  const missing: string[] = [];

  // UK Core: the profiles, then every extension their differentials (and those extensions') name, if shipped upstream.
  const ukQueue = UK_CORE_PROFILES.map((id) => {
    const m = sds.find((x) => x.file === `uk-core/structuredefinitions/${id}.json`);
    if (!m) throw new Error(`${id} is not in the corpus`);
    return m;
  });
  const ukDone = new Set<string>();
  const typesUsed = new Set<string>();
  while (ukQueue.length > 0) {
    const m = ukQueue.shift() as ManifestEntry;
    if (ukDone.has(m.file)) continue;
    ukDone.add(m.file);
    copied.push(m);
    const sd = readJson(path.join(corpusDir, m.file)) as StructureDefinition;
    typesUsed.add(sd.type);
    for (const e of sd.differential?.element ?? []) {
      for (const t of e.type ?? []) {
        typesUsed.add(t.code);
        for (const p of [...(t.profile ?? [])]) {
          const ext = byUrl.get(stripVersion(p));
          if (ext && ext.file.startsWith('uk-core/')) ukQueue.push(ext);
          else if (!ext) missing.push(`${p} (named by ${sd.id}) is not in the corpus`);
        }
      }
    }
  }

  // Base R4: closure over type codes and type profiles, starting from the served resources and abstract bases.
  const r4Queue = [...SERVED_RESOURCES, 'Resource', 'DomainResource', 'Element', 'BackboneElement', 'Extension', ...typesUsed];
  const r4Done = new Set<string>();
  while (r4Queue.length > 0) {
    const name = r4Queue.shift() as string;
    if (r4Done.has(name)) continue;
    r4Done.add(name);
    const m = r4ByType.get(name);
    if (!m) {
      if (/^[A-Z]/.test(name)) missing.push(`base R4 ${name} is not in the corpus`);
      continue;
    }
    copied.push(m);
    const sd = readJson(path.join(corpusDir, m.file)) as StructureDefinition;
    if (sd.baseDefinition) r4Queue.push(stripVersion(sd.baseDefinition).replace(FHIR_SD, ''));
    for (const e of sd.snapshot?.element ?? []) {
      for (const t of e.type ?? []) {
        if (!t.code.startsWith('http://')) r4Queue.push(t.code);
        for (const p of t.profile ?? []) if (stripVersion(p).startsWith(FHIR_SD)) r4Queue.push(stripVersion(p).slice(FHIR_SD.length));
      }
    }
  }

  const sources: Record<string, unknown>[] = [];
  for (const m of copied.sort((a, b) => a.file.localeCompare(b.file))) {
    const isUk = m.file.startsWith('uk-core/');
    const target = isUk ? `uk-core/${path.basename(m.file)}` : `r4/${path.basename(m.file)}`;
    fs.mkdirSync(path.join(profilesDir, 'base', path.dirname(target)), { recursive: true });
    const from = path.join(corpusDir, m.file);
    if (m.sha256 && sha256(from) !== m.sha256) throw new Error(`${m.file}: sha256 does not match MANIFEST.json`);
    fs.copyFileSync(from, path.join(profilesDir, 'base', target));
    sources.push({
      file: target,
      url: m.url,
      repository: m.source?.repo,
      path: m.source?.path,
      commit: m.source?.commit,
      ...(m.source?.package ? { package: m.source.package } : {}),
      licence: m.licence,
      sha256AsReceived: m.sha256,
      convertedFromXml: m.converted_from_xml === true,
      snapshotGeneratedHere: isUk,
    });
  }
  fs.writeFileSync(
    path.join(profilesDir, 'base', 'SOURCES.json'),
    formatJson({
      description:
        'Where every file in profiles/base comes from (copied from the shared FHIR reference corpus, whose MANIFEST.json ' +
        'records the upstream repository, path and commit). sha256AsReceived is the hash of the file as received; ' +
        'UK Core files differ from it only by the snapshot scripts/build-profiles.ts adds.',
      files: sources,
    }),
  );
  return [...new Set(missing)].sort();
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

function main(argv: string[]): number {
  const root = process.cwd();
  const profilesDir = path.join(root, 'profiles');
  if (!fs.existsSync(path.join(profilesDir, 'src'))) {
    process.stderr.write(`build-profiles: run from the repository root (no profiles/src in ${root})\n`);
    return 2;
  }
  const check = argv.includes('--check');
  const importAt = argv.indexOf('--import');
  if (importAt >= 0) {
    const corpus = argv[importAt + 1];
    if (!corpus) {
      process.stderr.write('build-profiles: --import needs the corpus directory\n');
      return 2;
    }
    for (const m of importBase(path.resolve(corpus), profilesDir)) process.stdout.write(`not shipped: ${m}\n`);
  }
  let result: ReturnType<typeof buildProfiles>;
  try {
    result = buildProfiles(profilesDir);
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  for (const n of result.notes) process.stdout.write(`note: ${n}\n`);
  let stale = 0;
  for (const [file, text] of result.files) {
    const target = path.join(profilesDir, file);
    const current = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : undefined;
    if (current === text) continue;
    stale++;
    if (check) process.stdout.write(`out of date: profiles/${file}\n`);
    else {
      fs.writeFileSync(target, text);
      process.stdout.write(`wrote profiles/${file}\n`);
    }
  }
  process.stdout.write(`${result.files.size} definitions, ${stale} ${check ? 'out of date' : 'written'}\n`);
  return check && stale > 0 ? 1 : 0;
}

if (require.main === module) {
  process.exitCode = main(process.argv.slice(2));
}
