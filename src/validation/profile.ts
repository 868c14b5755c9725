import { parseReference } from '../fhir/references';
import type { ValidationIssue } from './types';

/**
 * The PROFILE layer: a StructureDefinition snapshot compiled once into a tree of element rules, then
 * checked against instances. It covers what the JSON schema cannot: cardinality (of the base type and as a
 * profile narrows it), allowed choice types, fixed and pattern values, slicing, reference target types and
 * bindings. Complex datatypes the snapshot does not expand are checked against their own definitions, so
 * every element of a resource is visited. It never throws on input.
 */

export interface ElementRule {
  id: string;
  /** Last path segment as written in the snapshot, e.g. `subject` or `value[x]`. */
  name: string;
  min: number;
  max: number;
  types: { code: string; profiles: string[]; targetProfiles: string[] }[];
  fixed?: unknown;
  pattern?: unknown;
  binding?: { strength: 'required' | 'extensible' | 'preferred' | 'example'; valueSet?: string };
  children: ElementRule[];
  slicing?: { discriminators: { type: string; path: string }[]; rules: string };
  slices: ElementRule[];
  sliceName?: string;
  /** `#Questionnaire.item`: this element's children are those of another element. */
  contentReference?: string;
  /** For `name[x]`: the JSON key of each allowed type. */
  choice?: { base: string; keys: [key: string, type: string][] };
  /** `_name`, where a primitive's id and extensions go. */
  extensionKey: string;
  /** Set by linkDatatypes: the rules of the element's one complex datatype (or its profile). */
  datatype?: ElementRule;
  /** Set by linkDatatypes: for a choice element, the rules of each complex type it allows. */
  choiceTypes?: Map<string, ElementRule>;
  /** Set by linkDatatypes on rules with children: which child each JSON key belongs to. */
  keys?: ChildKeys;
  /** Set by linkDatatypes on Reference rules with target profiles: the resource types they allow. */
  targetTypes?: string[];
}

interface ChildKeys {
  byKey: Map<string, { rule: ElementRule; position: number; type?: string; extension: boolean }>;
  choices: ElementRule[];
  /** Positions of the children with a minimum cardinality. */
  required: number[];
}

function indexChildren(children: ElementRule[]): ChildKeys {
  const byKey: ChildKeys['byKey'] = new Map();
  const choices: ElementRule[] = [];
  children.forEach((rule, position) => {
    if (rule.choice) {
      choices.push(rule);
      for (const [key, type] of rule.choice.keys) {
        byKey.set(key, { rule, position, type, extension: false });
        byKey.set(`_${key}`, { rule, position, type, extension: true });
      }
    } else {
      byKey.set(rule.name, { rule, position, extension: false });
      byKey.set(rule.extensionKey, { rule, position, extension: true });
    }
  });
  const required = children.flatMap((rule, position) => (rule.min > 0 ? [position] : []));
  return { byKey, choices, required };
}

/** What the profile layer needs from the rest of the validator. */
export interface ProfileContext {
  /** The compiled base definition of a datatype or resource type (`Identifier`, `Patient`). */
  typeRules(code: string): ElementRule | undefined;
  /** The compiled profile with this canonical URL (extensions, UK Core profiles), if shipped. */
  profileRules(url: string): ElementRule | undefined;
  /** The resource type a profile constrains (`https://.../UKCore-Patient` -> `Patient`). */
  profileType(url: string): string | undefined;
  /** Binding check for the codings found in a bound element. */
  checkBinding(
    binding: NonNullable<ElementRule['binding']>,
    codings: { system?: string; code?: string; display?: string }[],
    kind: 'code' | 'coding' | 'concept',
    path: PathRef,
    issues: ValidationIssue[],
  ): void;
  /** Checks every Coding and Identifier wherever it appears (SNOMED ids, NHS numbers, code systems). */
  checkCoding(coding: Record<string, unknown>, path: PathRef, issues: ValidationIssue[]): void;
  checkIdentifier(identifier: Record<string, unknown>, path: PathRef, issues: ValidationIssue[]): void;
}

const PRIMITIVE_RE = /^[a-z]/;
const SYSTEM_STRING = 'http://hl7.org/fhirpath/System.String';

const isComplex = (code: string) => !PRIMITIVE_RE.test(code) && code !== 'Resource' && code !== 'BackboneElement' && code !== 'Element';

/**
 * Links every rule to the rules of its complex datatype, once, after all definitions are compiled, so the
 * check path never looks a type up by name.
 */
export function linkDatatypes(roots: Iterable<ElementRule>, ctx: Pick<ProfileContext, 'typeRules' | 'profileRules' | 'profileType'>): void {
  const seen = new Set<ElementRule>();
  const visit = (rule: ElementRule) => {
    if (seen.has(rule)) return;
    seen.add(rule);
    if (rule.children.length === 0 && rule.types.length === 1 && isComplex(rule.types[0].code)) {
      const profile = rule.types[0].profiles[0];
      rule.datatype = (profile && ctx.profileRules(profile)) || ctx.typeRules(rule.types[0].code);
    }
    if (rule.choice) {
      rule.choiceTypes = new Map();
      for (const t of rule.types) {
        const typed = isComplex(t.code) ? ctx.typeRules(t.code) : undefined;
        if (typed) rule.choiceTypes.set(t.code, typed);
      }
    }
    if (rule.children.length) rule.keys = indexChildren(rule.children);
    const targets = rule.types.find((t) => t.code === 'Reference')?.targetProfiles ?? [];
    if (targets.length) rule.targetTypes = targets.map((url) => ctx.profileType(url) ?? url.slice(url.lastIndexOf('/') + 1));
    rule.children.forEach(visit);
    rule.slices.forEach(visit);
  };
  for (const root of roots) visit(root);
}

/** Compiles a snapshot into its rule tree; the root rule stands for the resource (or datatype) itself. */
export function compileSnapshot(sd: fhir4.StructureDefinition): ElementRule {
  const elements = sd.snapshot?.element ?? [];
  if (elements.length === 0) throw new Error(`StructureDefinition ${sd.url} has no snapshot`);
  const byId = new Map<string, ElementRule>();
  let root: ElementRule | undefined;
  for (const el of elements) {
    const id = el.id ?? el.path;
    const rule = toRule(el, id);
    byId.set(id, rule);
    if (!root) {
      root = rule;
      continue;
    }
    const lastDot = lastSegmentStart(id);
    const parentId = id.slice(0, lastDot);
    const segment = id.slice(lastDot + 1);
    const colon = segment.indexOf(':');
    if (colon >= 0) {
      const sliced = byId.get(`${parentId}.${segment.slice(0, colon)}`);
      if (sliced) {
        rule.sliceName = segment.slice(colon + 1);
        sliced.slices.push(rule);
        continue;
      }
    }
    byId.get(parentId)?.children.push(rule);
  }
  if (!root) throw new Error(`StructureDefinition ${sd.url} has no root element`);
  for (const rule of byId.values()) {
    if (rule.contentReference) {
      const target = byId.get(rule.contentReference.replace(/^.*#/, ''));
      if (target) rule.children = target.children;
    }
  }
  return root;
}

/** Index of the dot before the last segment, ignoring dots inside slice names (`ext:a.b`). */
function lastSegmentStart(id: string): number {
  let depth = 0;
  for (let i = id.length - 1; i >= 0; i--) {
    const c = id[i];
    if (c === '.' && depth === 0) return i;
    if (c === ':') depth = 0;
  }
  return -1;
}

function toRule(el: fhir4.ElementDefinition, id: string): ElementRule {
  const rec = el as unknown as Record<string, unknown>;
  let fixed: unknown;
  let pattern: unknown;
  for (const key of Object.keys(rec)) {
    if (key.startsWith('fixed')) fixed = rec[key];
    else if (key.startsWith('pattern')) pattern = rec[key];
  }
  const name = el.path.slice(el.path.lastIndexOf('.') + 1);
  const types = (el.type ?? []).map((t) => ({
    code: t.code === SYSTEM_STRING ? 'string' : t.code,
    profiles: t.profile ?? [],
    targetProfiles: t.targetProfile ?? [],
  }));
  let choice: ElementRule['choice'];
  if (name.endsWith('[x]')) {
    const base = name.slice(0, -3);
    choice = { base, keys: types.map((t) => [base + capitalize(t.code), t.code]) };
  }
  return {
    id,
    name,
    min: el.min ?? 0,
    max: el.max === undefined || el.max === '*' ? Infinity : Number(el.max),
    types,
    choice,
    extensionKey: `_${name}`,
    fixed,
    pattern,
    binding: el.binding?.strength ? { strength: el.binding.strength, valueSet: el.binding.valueSet } : undefined,
    children: [],
    slicing: el.slicing
      ? {
          discriminators: (el.slicing.discriminator ?? []).map((d) => ({ type: d.type, path: d.path })),
          rules: el.slicing.rules,
        }
      : undefined,
    slices: [],
    sliceName: undefined,
    contentReference: el.contentReference,
    // Set later (compileSnapshot, linkDatatypes): present from the start so every rule has one hidden class.
    datatype: undefined,
    choiceTypes: undefined,
    keys: undefined,
    targetTypes: undefined,
  };
}

const NONE: Occurrence[] = [];

/** A path built only when an issue needs it: most elements are valid and never print theirs. */
export interface PathRef {
  path(): string;
}

type LazyPath = PathRef;

class RootPath implements PathRef {
  constructor(private readonly text: string) {}
  path(): string {
    return this.text;
  }
}

/** An element found in an instance; it is also the (lazy) path of its own children. */
class Occurrence implements PathRef {
  constructor(
    readonly value: unknown,
    /** The JSON key it was found under (`valueQuantity` for `value[x]`). */
    readonly key: string,
    /** The type the key names, for choice elements. */
    readonly type: string | undefined,
    readonly index: number | undefined,
    private readonly parent: PathRef,
  ) {}

  path(): string {
    return this.index === undefined ? `${this.parent.path()}.${this.key}` : `${this.parent.path()}.${this.key}[${this.index}]`;
  }
}

export class ProfileChecker {
  private readonly extensionRules: ElementRule | undefined;
  private readonly scratch: { found: (Occurrence[] | undefined)[]; present: number[] }[] = [];

  constructor(
    private readonly root: ElementRule,
    private readonly ctx: ProfileContext,
  ) {
    this.extensionRules = ctx.typeRules('Extension');
  }

  check(resource: unknown, issues: ValidationIssue[], rootPath: string): void {
    if (!isObject(resource)) return;
    this.checkChildren(this.root, resource, new RootPath(rootPath), issues, 0);
  }

  private checkChildren(rule: ElementRule, value: Record<string, unknown>, path: LazyPath, issues: ValidationIssue[], depth: number): void {
    if (depth > 64) return;
    const owner = rule.children.length ? rule : rule.datatype;
    if (!owner?.keys) return;
    // Scratch lists, one pair per depth (a call only recurses deeper), emptied again before returning.
    const scratch = this.scratch[depth] ?? (this.scratch[depth] = { found: new Array<undefined>(64).fill(undefined), present: [] });
    const { found, present } = scratch;
    // Kept packed (never written past its end), so it stays a fast array.
    while (found.length < owner.children.length) found.push(undefined);
    const count = this.collect(owner.keys, value, path, issues, found, present);
    try {
      this.checkFound(owner, found, present, count, path, issues, depth);
    } finally {
      for (let i = 0; i < count; i++) found[present[i]] = undefined;
    }
  }

  private checkFound(
    owner: ElementRule,
    found: (Occurrence[] | undefined)[],
    present: number[],
    count: number,
    path: LazyPath,
    issues: ValidationIssue[],
    depth: number,
  ): void {
    const keys = owner.keys!;
    // Most elements are absent: only the required ones and those present need looking at.
    for (const c of keys.required) {
      const child = owner.children[c];
      const count = found[c]?.length ?? 0;
      if (count < child.min) {
        issues.push({
          severity: 'error',
          code: 'required',
          diagnostics: `${child.name} is required${child.min > 1 ? ` at least ${child.min} times` : ''}, but ${count === 0 ? 'is missing' : `appears ${count} time(s)`}`,
          expression: `${path.path()}.${child.name}`,
        });
      }
    }
    for (let p = 0; p < count; p++) {
      const c = present[p];
      const occurrences = found[c]!;
      const child = owner.children[c];
      if (occurrences.length > child.max) {
        issues.push({
          severity: 'error',
          code: 'invalid',
          diagnostics: `${child.name} may appear at most ${child.max} time(s), but appears ${occurrences.length} times`,
          expression: `${path.path()}.${child.name}`,
        });
      }
      const sliceOf = child.slicing && child.slices.length ? this.assignSlices(child, occurrences, path, issues) : undefined;
      for (let i = 0; i < occurrences.length; i++) {
        const occ = occurrences[i];
        const slice = sliceOf?.[i];
        const target = slice && slice.children.length ? slice : child;
        this.checkValue(target, occ, issues, depth);
        if (slice && target !== slice) this.checkRuleValue(slice, occ, issues);
      }
    }
  }

  /** The value's elements by the position of the child rule they belong to; a choice type not allowed here is an error. */
  private collect(
    keys: ChildKeys,
    value: Record<string, unknown>,
    path: LazyPath,
    issues: ValidationIssue[],
    found: (Occurrence[] | undefined)[],
    present: number[],
  ): number {
    let count = 0;
    for (const key in value) {
      const hit = keys.byKey.get(key);
      if (!hit) {
        this.checkChoiceKey(keys, key, path, issues);
        continue;
      }
      // `_x` alone (an id or extensions without a value) still makes the element present.
      const name = hit.extension ? key.slice(1) : key;
      if (hit.extension && value[name] !== undefined) continue;
      const list = found[hit.position];
      if (list) {
        push(list, value[key], name, path, hit.type);
      } else {
        found[hit.position] = occurrences(value[key], name, path, hit.type);
        present[count++] = hit.position;
      }
    }
    return count;
  }

  private checkChoiceKey(keys: ChildKeys, key: string, path: LazyPath, issues: ValidationIssue[]): void {
    for (const rule of keys.choices) {
      const { base, keys: allowed } = rule.choice!;
      const c = key.charCodeAt(base.length);
      if (key.length > base.length && key.startsWith(base) && c >= 65 && c <= 90) {
        issues.push({
          severity: 'error',
          code: 'invalid',
          diagnostics: `${key} is not allowed here; ${base}[x] may be ${allowed.map(([k]) => k).join(', ')}`,
          expression: `${path.path()}.${key}`,
        });
      }
    }
  }

  /** Gives each occurrence the slice it belongs to (undefined: none) and checks each slice's cardinality. */
  private assignSlices(rule: ElementRule, occurrences: Occurrence[], path: LazyPath, issues: ValidationIssue[]): (ElementRule | undefined)[] {
    const slicing = rule.slicing!;
    const assigned = occurrences.map((occ) => rule.slices.find((slice) => this.matchesSlice(slice, slicing, occ.value)));
    for (const slice of rule.slices) {
      const n = assigned.filter((s) => s === slice).length;
      if (n < slice.min) {
        issues.push({
          severity: 'error',
          code: 'required',
          diagnostics: `${rule.name} needs ${slice.min > 1 ? `at least ${slice.min} entries` : 'an entry'} matching slice '${slice.sliceName}'${describeSlice(slice, slicing)}, but has ${n}`,
          expression: `${path.path()}.${rule.name}`,
        });
      }
      if (n > slice.max) {
        issues.push({
          severity: 'error',
          code: 'invalid',
          diagnostics: `${rule.name} may have at most ${slice.max} entr${slice.max === 1 ? 'y' : 'ies'} matching slice '${slice.sliceName}', but has ${n}`,
          expression: `${path.path()}.${rule.name}`,
        });
      }
    }
    if (slicing.rules === 'closed') {
      assigned.forEach((slice, i) => {
        if (!slice) {
          issues.push({
            severity: 'error',
            code: 'invalid',
            diagnostics: `This ${rule.name} matches none of the slices allowed here (the slicing is closed)`,
            expression: occurrences[i].path(),
          });
        }
      });
    }
    return assigned;
  }

  private matchesSlice(slice: ElementRule, slicing: NonNullable<ElementRule['slicing']>, value: unknown): boolean {
    if (slicing.discriminators.length === 0) return false;
    return slicing.discriminators.every((d) => {
      if (d.type === 'value' || d.type === 'pattern') {
        const expected = discriminatorValue(slice, d.path);
        if (!expected) return false;
        const actual = d.path === '$this' ? [value] : valuesAtPath(value, d.path);
        return actual.some((v) => (expected.exact ? deepEqual(v, expected.value) : containsPattern(v, expected.value)));
      }
      if (d.type === 'type') {
        return isObject(value) && slice.types.some((t) => (value as { resourceType?: unknown }).resourceType === t.code);
      }
      if (d.type === 'exists') {
        const present = valuesAtPath(value, d.path).length > 0;
        const expects = slice.min > 0 || slice.children.some((c) => c.name === d.path && c.min > 0);
        return present === expects;
      }
      return false;
    });
  }

  private checkValue(rule: ElementRule, occ: Occurrence, issues: ValidationIssue[], depth: number): void {
    this.checkRuleValue(rule, occ, issues);
    const type = occ.type ?? (rule.types.length === 1 ? rule.types[0].code : undefined);
    const value = occ.value;
    if (!isObject(value)) return;
    if (type === 'Coding') this.ctx.checkCoding(value, occ, issues);
    if (type === 'Identifier') this.ctx.checkIdentifier(value, occ, issues);
    if (type === 'Reference') this.checkReferenceTarget(rule, value, occ, issues);
    if (type === 'Extension') {
      this.checkExtension(rule, value, occ, issues, depth);
      return;
    }
    if (type === 'Resource' || (rule.types.length === 0 && rule.children.length === 0)) return;
    if (occ.type && rule.children.length === 0) {
      const typed = rule.choiceTypes?.get(occ.type);
      if (typed) this.checkChildren(typed, value, occ, issues, depth + 1);
      return;
    }
    this.checkChildren(rule, value, occ, issues, depth + 1);
  }

  /** Fixed and pattern values and bindings: rules that hold for the value whatever its children. */
  private checkRuleValue(rule: ElementRule, occ: Occurrence, issues: ValidationIssue[]): void {
    const value = occ.value;
    if (rule.fixed !== undefined && !deepEqual(value, rule.fixed)) {
      issues.push({
        severity: 'error',
        code: 'value',
        diagnostics: `must be exactly ${JSON.stringify(rule.fixed)}`,
        expression: occ.path(),
      });
    } else if (rule.pattern !== undefined && !containsPattern(value, rule.pattern)) {
      issues.push({
        severity: 'error',
        code: 'value',
        diagnostics: `must match ${JSON.stringify(rule.pattern)}`,
        expression: occ.path(),
      });
    }
    if (rule.binding?.valueSet) {
      const type = occ.type ?? rule.types[0]?.code;
      if (type === 'code' && typeof value === 'string') {
        this.ctx.checkBinding(rule.binding, [{ code: value }], 'code', occ, issues);
      } else if (type === 'Coding' && isObject(value)) {
        this.ctx.checkBinding(rule.binding, [value as { system?: string; code?: string }], 'coding', occ, issues);
      } else if (type === 'CodeableConcept' && isObject(value)) {
        const codings = Array.isArray(value.coding) ? value.coding.filter(isObject) : [];
        if (codings.length) this.ctx.checkBinding(rule.binding, codings as { system?: string; code?: string }[], 'concept', occ, issues);
      } else if (type === 'Quantity' && isObject(value) && typeof value.code === 'string') {
        this.ctx.checkBinding(rule.binding, [value as { system?: string; code?: string }], 'coding', occ, issues);
      }
    }
  }

  private checkReferenceTarget(rule: ElementRule, ref: Record<string, unknown>, path: LazyPath, issues: ValidationIssue[]): void {
    const allowed = rule.targetTypes;
    if (!allowed || allowed.includes('Resource')) return;
    const named = typeof ref.reference === 'string' ? parseReference(ref.reference)?.type : undefined;
    const actual = named ?? (typeof ref.type === 'string' ? ref.type : undefined);
    if (actual !== undefined && !allowed.includes(actual)) {
      issues.push({
        severity: 'error',
        code: 'invalid',
        diagnostics: `refers to a ${actual}, but must refer to ${allowed.join(' or ')}`,
        expression: `${path.path()}.reference`,
      });
    }
  }

  /** An extension is checked against its own definition when that is shipped; unknown ones are allowed. */
  private checkExtension(rule: ElementRule, ext: Record<string, unknown>, occ: Occurrence, issues: ValidationIssue[], depth: number): void {
    const url = typeof ext.url === 'string' ? ext.url : undefined;
    const profile = rule.types[0]?.profiles[0] ?? url;
    const defined = profile ? this.ctx.profileRules(profile) : undefined;
    if (defined) {
      this.checkChildren(defined, ext, occ, issues, depth + 1);
      return;
    }
    if (this.extensionRules) this.checkChildren(this.extensionRules, ext, occ, issues, depth + 1);
  }
}

/** push() into a new list, allocated at its final size in the usual cases (one value; an array without nulls). */
function occurrences(raw: unknown, key: string, parent: LazyPath, type: string | undefined): Occurrence[] {
  if (!Array.isArray(raw)) return raw === null ? [] : [new Occurrence(raw, key, type, undefined, parent)];
  if (raw.length === 1) {
    const value: unknown = raw[0];
    return value === null || value === undefined ? [] : [new Occurrence(value, key, type, 0, parent)];
  }
  const out: Occurrence[] = [];
  push(out, raw, key, parent, type);
  return out;
}

function push(out: Occurrence[], raw: unknown, key: string, parent: LazyPath, type?: string): void {
  if (Array.isArray(raw)) {
    raw.forEach((value, index) => {
      if (value !== null && value !== undefined) out.push(new Occurrence(value, key, type, index, parent));
    });
  } else if (raw !== null) {
    out.push(new Occurrence(raw, key, type, undefined, parent));
  }
}

/** The fixed (exact) or pattern value a slice gives the element at `path` below it. */
function discriminatorValue(slice: ElementRule, path: string): { value: unknown; exact: boolean } | undefined {
  let rule: ElementRule | undefined = slice;
  if (path !== '$this') {
    for (const step of path.split('.')) {
      rule = rule?.children.find((c) => c.name === step || c.name === `${step}[x]`);
    }
  }
  if (rule?.fixed !== undefined) return { value: rule.fixed, exact: true };
  if (rule?.pattern !== undefined) return { value: rule.pattern, exact: false };
  // Extensions sliced by url: the url is the slice's extension profile.
  if (path === 'url' && slice.types[0]?.profiles[0]) return { value: slice.types[0].profiles[0], exact: true };
  return undefined;
}

function describeSlice(slice: ElementRule, slicing: NonNullable<ElementRule['slicing']>): string {
  const parts = slicing.discriminators
    .map((d) => {
      const v = discriminatorValue(slice, d.path)?.value;
      return v === undefined ? undefined : `${d.path} = ${typeof v === 'string' ? v : JSON.stringify(v)}`;
    })
    .filter(Boolean);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

function valuesAtPath(value: unknown, path: string): unknown[] {
  let current: unknown[] = [value];
  for (const step of path.split('.')) {
    const next: unknown[] = [];
    for (const node of current) {
      if (!isObject(node)) continue;
      const v = node[step];
      if (Array.isArray(v)) next.push(...v);
      else if (v !== undefined && v !== null) next.push(v);
    }
    current = next;
  }
  return current;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** FHIR pattern semantics: everything in the pattern is in the value; each pattern array item matches some value item. */
export function containsPattern(value: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) {
    return Array.isArray(value) && pattern.every((p) => value.some((v) => containsPattern(v, p)));
  }
  if (isObject(pattern)) {
    return isObject(value) && Object.entries(pattern).every(([k, p]) => containsPattern(value[k], p));
  }
  return value === pattern;
}
