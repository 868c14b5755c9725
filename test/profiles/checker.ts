/**
 * A small, snapshot-driven instance checker used only by these tests, to show that the shipped examples conform to
 * the profiles they claim. It is not sp-bridge's validator (that lives in src/validation/): it checks cardinality,
 * unknown elements, choice types, primitive JSON types, fixed and pattern values, slices with value/pattern
 * discriminators, required bindings to the bundled terminology/ value sets, and every error-severity FHIRPath
 * constraint (with the fhirpath R4 engine).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import {
  matchesPattern,
  type ElementDefinition,
  type ProfileSet,
  type StructureDefinition,
} from '../../scripts/build-profiles';

export interface Finding {
  location: string;
  message: string;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const ROOT = path.resolve(__dirname, '../..');
/** dom-3 calls trace(); keep it off the test output. */
const QUIET = { traceFn: (): void => undefined };

/** `system|code` members of every ValueSet in terminology/ (explicit concepts only), by url. */
export function loadTerminologyValueSets(): Map<string, Set<string>> {
  const dir = path.join(ROOT, 'terminology');
  const out = new Map<string, Set<string>>();
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.json'))) {
    const r = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as {
      resourceType: string;
      url: string;
      compose?: { include?: { system?: string; concept?: { code: string }[] }[] };
    };
    if (r.resourceType !== 'ValueSet') continue;
    const members = new Set<string>();
    for (const inc of r.compose?.include ?? []) for (const c of inc.concept ?? []) members.add(`${inc.system}|${c.code}`);
    out.set(r.url, members);
  }
  return out;
}

function isObject(v: Json | undefined): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b) || (matchesPattern(a, b) && matchesPattern(b, a));
}

function lastSegment(id: string): string {
  const parts = id.split('.');
  return parts[parts.length - 1];
}

function capitalise(code: string): string {
  return code.charAt(0).toUpperCase() + code.slice(1);
}

const JS_TYPE: Record<string, 'string' | 'number' | 'boolean'> = {
  boolean: 'boolean',
  integer: 'number',
  positiveInt: 'number',
  unsignedInt: 'number',
  decimal: 'number',
  'http://hl7.org/fhirpath/System.String': 'string',
  'http://hl7.org/fhirpath/System.Boolean': 'boolean',
  'http://hl7.org/fhirpath/System.Integer': 'number',
  'http://hl7.org/fhirpath/System.Decimal': 'number',
};

/**
 * The path fhirpath's R4 model should read a value's type from: the element's own complex type where it has one
 * (the model knows types, but not deep paths such as Patient.identifier.extension), else the element path.
 */
function fhirpathBase(el: ElementDefinition): string {
  const types = el.type ?? [];
  if (types.length === 1 && /^[A-Z]/.test(types[0].code) && types[0].code !== 'BackboneElement') return types[0].code;
  return el.path.replace(/\[x\]$/, '');
}

export class InstanceChecker {
  constructor(
    private readonly set: ProfileSet,
    private readonly valueSets: Map<string, Set<string>>,
  ) {}

  /** Every finding for `resource` against the profile (or base definition) `url`. */
  check(resource: JsonObject, url: string): Finding[] {
    const elements = this.set.snapshot(url);
    const findings: Finding[] = [];
    const type = (this.set.get(url)?.sd as StructureDefinition).type;
    if (resource.resourceType !== type) {
      return [{ location: type, message: `resourceType ${String(resource.resourceType)} is not ${type}` }];
    }
    this.walk(elements, elements[0], [resource], type, resource, findings);
    return findings;
  }

  private walk(
    elements: ElementDefinition[],
    el: ElementDefinition,
    values: Json[],
    location: string,
    root: JsonObject,
    findings: Finding[],
  ): void {
    const at = (i: number): string => (values.length > 1 ? `${location}[${i}]` : location);
    values.forEach((v, i) => {
      this.checkValue(el, v, at(i), root, findings);
      if (isObject(v)) this.walkChildren(elements, el, v, at(i), root, findings);
    });
  }

  private checkValue(el: ElementDefinition, v: Json, location: string, root: JsonObject, findings: Finding[]): void {
    for (const [key, expected] of Object.entries(el)) {
      if (key.startsWith('fixed') && /^[A-Z]/.test(key.slice(5)) && !deepEqual(v, expected)) {
        findings.push({ location, message: `must be exactly ${JSON.stringify(expected)} (${el.id} ${key})` });
      }
      if (key.startsWith('pattern') && /^[A-Z]/.test(key.slice(7)) && !matchesPattern(v, expected)) {
        findings.push({ location, message: `must match ${JSON.stringify(expected)} (${el.id} ${key})` });
      }
    }
    const types = el.type ?? [];
    if (types.length === 1 && JS_TYPE[types[0].code] && typeof v !== JS_TYPE[types[0].code]) {
      findings.push({ location, message: `expected a JSON ${JS_TYPE[types[0].code]}` });
    }
    if (types.length === 1 && !JS_TYPE[types[0].code] && /^[a-z]/.test(types[0].code) && typeof v !== 'string') {
      findings.push({ location, message: `expected a JSON string (${types[0].code})` });
    }
    const binding = el.binding;
    if (binding?.strength === 'required' && binding.valueSet && this.valueSets.has(binding.valueSet)) {
      const members = this.valueSets.get(binding.valueSet) as Set<string>;
      const codings = isObject(v) && Array.isArray(v.coding) ? v.coding : isObject(v) && 'code' in v ? [v] : [];
      const ok = codings.some((c) => isObject(c) && members.has(`${String(c.system)}|${String(c.code)}`));
      if (!ok) findings.push({ location, message: `no code from the required value set ${binding.valueSet}` });
    }
    if (isObject(v)) {
      for (const c of el.constraint ?? []) {
        if (c.severity !== 'error' || !c.expression) continue;
        let result: unknown[];
        try {
          result =
            location === root.resourceType
              ? (fhirpath.evaluate(root, c.expression, { resource: root }, r4, QUIET) as unknown[])
              : (fhirpath.evaluate(v, { base: fhirpathBase(el), expression: c.expression }, { resource: root }, r4, QUIET) as unknown[]);
        } catch (e) {
          findings.push({ location, message: `constraint ${c.key} could not be evaluated: ${(e as Error).message}` });
          continue;
        }
        if (result.length === 1 && result[0] === false) {
          findings.push({ location, message: `constraint ${c.key} failed: ${c.human}` });
        }
      }
    }
  }

  /** The snapshot elements under `el`, from the snapshot itself or, when not expanded there, from its type. */
  private childElements(
    elements: ElementDefinition[],
    el: ElementDefinition,
    concreteType: string | undefined,
  ): { list: ElementDefinition[]; kids: ElementDefinition[] } {
    const id = el.id as string;
    const isKid = (e: ElementDefinition): boolean => {
      const eid = e.id as string;
      return eid.startsWith(`${id}.`) && !eid.slice(id.length + 1).includes('.') && !eid.slice(id.length + 1).includes(':');
    };
    const kids = elements.filter(isKid);
    if (kids.length > 0) return { list: elements, kids };
    const t = (el.type ?? []).find((x) => x.code === concreteType) ?? (el.type?.length === 1 ? el.type[0] : undefined);
    if (!t) return { list: elements, kids: [] };
    const profile = t.profile?.length === 1 && this.set.get(t.profile[0]) ? t.profile[0] : undefined;
    const source = profile ? this.set.snapshot(this.set.get(profile)!.sd.url) : this.set.typeSnapshot(t.code);
    if (!source) return { list: elements, kids: [] };
    const rootId = source[0].id as string;
    const list = source.map((e) => ({ ...e, id: id + (e.id as string).slice(rootId.length) }));
    return { list, kids: list.filter(isKid) };
  }

  private walkChildren(
    elements: ElementDefinition[],
    el: ElementDefinition,
    obj: JsonObject,
    location: string,
    root: JsonObject,
    findings: Finding[],
  ): void {
    if ((el.type ?? []).some((t) => t.code === 'Resource')) return; // contained / Bundle.entry.resource: checked on their own
    if (el.contentReference) return;
    const concrete = (el as { _concreteType?: string })._concreteType;
    const { list, kids } = this.childElements(elements, el, concrete);
    if (kids.length === 0) return;
    const claimed = new Set<string>(['resourceType']);
    for (const kid of kids) {
      const name = lastSegment(kid.id as string);
      const gathered: { key: string; value: Json; type?: string }[] = [];
      if (name.endsWith('[x]')) {
        const stem = name.slice(0, -3);
        for (const key of Object.keys(obj)) {
          if (!key.startsWith(stem) || !/^[A-Z]/.test(key.slice(stem.length))) continue;
          claimed.add(key);
          const suffix = key.slice(stem.length);
          const type = (kid.type ?? []).find((t) => capitalise(t.code) === suffix);
          if (!type) {
            findings.push({ location: `${location}.${key}`, message: `type ${suffix} is not allowed for ${kid.id}` });
            continue;
          }
          gathered.push({ key, value: obj[key], type: type.code });
        }
      } else if (name in obj) {
        claimed.add(name);
        const raw = obj[name];
        for (const value of Array.isArray(raw) ? raw : [raw]) gathered.push({ key: name, value });
      }
      const max = kid.max === '*' ? Infinity : Number(kid.max);
      if (gathered.length < (kid.min ?? 0)) {
        findings.push({ location: `${location}.${name}`, message: `minimum ${kid.min} (${kid.id}), found ${gathered.length}` });
      }
      if (gathered.length > max) {
        findings.push({ location: `${location}.${name}`, message: `maximum ${kid.max} (${kid.id}), found ${gathered.length}` });
      }
      const baseMax = kid.base?.max ?? kid.max;
      if (name in obj && !Array.isArray(obj[name]) && baseMax !== '1' && baseMax !== '0') {
        findings.push({ location: `${location}.${name}`, message: 'a repeating element must be a JSON array' });
      }
      if (name in obj && Array.isArray(obj[name]) && baseMax === '1') {
        findings.push({ location: `${location}.${name}`, message: 'a single element must not be a JSON array' });
      }
      for (const [i, g] of gathered.entries()) {
        const loc = gathered.length > 1 ? `${location}.${g.key}[${i}]` : `${location}.${g.key}`;
        const kidForType = g.type ? ({ ...kid, type: (kid.type ?? []).filter((t) => t.code === g.type), _concreteType: g.type } as ElementDefinition) : kid;
        this.walk(list, kidForType, [g.value], loc, root, findings);
      }
      if (kid.slicing) this.checkSlices(list, kid, gathered.map((g) => g.value), `${location}.${name}`, root, findings);
    }
    for (const key of Object.keys(obj)) {
      if (key.startsWith('_') || claimed.has(key)) continue;
      findings.push({ location: `${location}.${key}`, message: `unknown element ${key} in ${el.id}` });
    }
  }

  private checkSlices(
    list: ElementDefinition[],
    sliced: ElementDefinition,
    values: Json[],
    location: string,
    root: JsonObject,
    findings: Finding[],
  ): void {
    const id = sliced.id as string;
    const slices = list.filter((e) => {
      const eid = e.id as string;
      return eid.startsWith(`${id}:`) && !eid.slice(id.length + 1).includes('.');
    });
    const unmatched = new Set(values);
    for (const slice of slices) {
      const matched = values.filter((v) => this.inSlice(list, sliced, slice, v));
      for (const m of matched) unmatched.delete(m);
      const max = slice.max === '*' ? Infinity : Number(slice.max);
      if (matched.length < (slice.min ?? 0)) {
        findings.push({ location, message: `slice ${slice.sliceName}: minimum ${slice.min}, found ${matched.length}` });
      }
      if (matched.length > max) {
        findings.push({ location, message: `slice ${slice.sliceName}: maximum ${slice.max}, found ${matched.length}` });
      }
      this.walk(list, slice, matched, `${location}:${slice.sliceName}`, root, findings);
    }
    if (sliced.slicing?.rules === 'closed' && unmatched.size > 0) {
      findings.push({ location, message: `${unmatched.size} item(s) match no slice of closed slicing ${id}` });
    }
  }

  private inSlice(list: ElementDefinition[], sliced: ElementDefinition, slice: ElementDefinition, v: Json): boolean {
    for (const d of sliced.slicing?.discriminator ?? []) {
      if (d.type !== 'value' && d.type !== 'pattern') return false;
      let expected: unknown;
      let fixed = false;
      const target = d.path === '$this' ? slice : list.find((e) => e.id === `${slice.id}.${d.path}`);
      if (target) {
        for (const [k, x] of Object.entries(target)) {
          if (/^fixed[A-Z]/.test(k)) {
            expected = x;
            fixed = true;
          } else if (/^pattern[A-Z]/.test(k)) expected = x;
        }
      }
      if (expected === undefined && d.path === 'url') expected = slice.type?.[0]?.profile?.[0];
      if (expected === undefined) return false;
      let actual: Json[] = [v];
      if (d.path !== '$this') {
        for (const step of d.path.split('.')) {
          actual = actual.flatMap((a) => (isObject(a) && a[step] !== undefined ? (Array.isArray(a[step]) ? (a[step] as Json[]) : [a[step]]) : []));
        }
      }
      if (!actual.some((a) => (fixed ? deepEqual(a, expected) : matchesPattern(a, expected)))) return false;
    }
    return true;
  }
}
