/**
 * Differential tests of the FHIRPath compiler (src/validation/fhirpath-compile.ts) against fhirpath.js.
 *
 * For every constraint of the shipped profiles (profiles/*.json, profiles/base/r4, profiles/base/uk-core) that
 * the compiler accepts, the compiled closure and fhirpath.js are run on every element instance the invariant
 * layer evaluates it on, over: the profiles/examples resources (and the entries of the Bundle there on their
 * own), the HL7 R4 examples of ServiceRequest, CarePlan, Observation, Patient and Task, and a few hundred
 * seeded random mutants of those (elements deleted, JSON types changed, codes and values set to the literals
 * and thresholds of the constraints, choice types swapped, `_x` extensions added, datatypes injected in
 * extensions, stray resourceTypes, contained resources, Bundle types and entries changed). Results must be
 * identical: the same collection (values, elements by identity), or the compiled side signals FALLBACK (the
 * caller then asks fhirpath.js). The compiled side must never answer where fhirpath.js throws.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Definitions } from '../../src/validation/definitions';
import { compileFhirPath, FALLBACK, type CompiledFhirPath } from '../../src/validation/fhirpath-compile';
import { compilePredicate, fhirpathStats, interpretedExpression, toBoolean, type FhirPathEnv } from '../../src/validation/fhirpath';
import { CORRECTED } from '../../src/validation/fhirpath-core-rules';
import { compileInvariants, forEachInvariantEvaluation, type InvariantChecker } from '../../src/validation/invariants';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ResourceNode, FP_Decimal } = require('fhirpath/src/types.js') as { ResourceNode: new (...a: never[]) => { data: unknown }; FP_Decimal: new (...a: never[]) => { toNumber(): number } };

type Json = Record<string, unknown>;

const ROOT = path.resolve(__dirname, '../..');
const HL7_EXAMPLES = path.resolve(__dirname, '../../../shared/fhir/hl7-r4/examples');
const EXAMPLE_TYPES = ['ServiceRequest', 'CarePlan', 'Observation', 'Patient', 'Task'];
const PROFILE_DIRS = [path.join(ROOT, 'profiles/base/r4'), path.join(ROOT, 'profiles/base/uk-core'), path.join(ROOT, 'profiles')];

const readJson = (file: string): Json => JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

// ---------------------------------------------------------------------------------------------------------------
// Comparison

type Outcome = { kind: 'fallback' } | { kind: 'value'; items: unknown[] } | { kind: 'error'; message: string };

function normalise(item: unknown): unknown {
  let v = item instanceof ResourceNode ? item.data : item;
  if (v instanceof FP_Decimal) v = v.toNumber();
  return v === undefined ? null : v;
}

function runCompiled(c: CompiledFhirPath, focus: unknown, env: FhirPathEnv): Outcome {
  try {
    // An item without value is null in fhirpath.js's normalised result; the compiled side may have undefined there.
    return { kind: 'value', items: c.evaluate(focus, env).map((x) => (x === undefined ? null : x)) };
  } catch (err) {
    if (err === FALLBACK) return { kind: 'fallback' };
    return { kind: 'error', message: `compiled code threw ${String(err)}` };
  }
}

function runInterpreted(base: string | undefined, expression: string, focus: unknown, env: FhirPathEnv): Outcome {
  try {
    return { kind: 'value', items: interpretedExpression(base, expression)(focus, env).map(normalise) };
  } catch (err) {
    return { kind: 'error', message: err instanceof Error ? err.message : String(err) };
  }
}

function sameItems(a: unknown[], b: unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => Object.is(x, b[i]) || (typeof x === 'number' && x === b[i]));
}

/** Empty string when both agree (FALLBACK agrees with anything); otherwise what differs. */
function disagreement(mine: Outcome, theirs: Outcome): string {
  if (mine.kind === 'fallback') return '';
  if (mine.kind === 'error') return mine.message;
  if (theirs.kind === 'error') return `compiled gave ${JSON.stringify(mine.items)} where fhirpath.js throws: ${theirs.message}`;
  if (theirs.kind !== 'value') return 'unexpected';
  return sameItems(mine.items, theirs.items) ? '' : `compiled ${short(mine.items)} vs fhirpath.js ${short(theirs.items)}`;
}

function short(v: unknown): string {
  const s = JSON.stringify(v);
  return s.length > 300 ? `${s.slice(0, 300)}...` : s;
}

const compiledCache = new Map<string, ReturnType<typeof compileFhirPath>>();
function compiled(base: string | undefined, expression: string): ReturnType<typeof compileFhirPath> {
  const key = `${base ?? ''}\u0000${expression}`;
  let c = compiledCache.get(key);
  if (!c) compiledCache.set(key, (c = compileFhirPath(base, expression)));
  return c;
}

/** Evaluates one expression both ways; returns the compiled outcome, or throws with a description of the difference. */
function compare(base: string | undefined, expression: string, focus: unknown, env: FhirPathEnv): Outcome | undefined {
  const c = compiled(base, expression);
  if (!c.ok) return undefined;
  const mine = runCompiled(c.compiled, focus, env);
  const theirs = runInterpreted(base, expression, focus, env);
  const diff = disagreement(mine, theirs);
  if (diff) throw new Error(`${base} :: ${expression}\n  on ${short(focus)}\n  ${diff}`);
  // The predicate the invariant layer uses gives fhirpath.js's pass/fail (or, falling back, its own).
  if (theirs.kind === 'value') {
    expect(compilePredicate(base, expression)(focus, env)).toBe(toBoolean(interpretedExpression(base, expression)(focus, env)));
  }
  return mine;
}

// ---------------------------------------------------------------------------------------------------------------
// Shipped constraints and checkers

const definitions = Definitions.load(PROFILE_DIRS);
const checkers: { type: string; url: string; checker: InvariantChecker }[] = definitions
  .all()
  .filter((sd) => sd.kind === 'resource' && sd.snapshot?.element?.length)
  .map((sd) => ({ type: sd.type, url: sd.url, checker: compileInvariants(sd, (code) => definitions.base(code)) }));

/**
 * Every distinct constraint expression of the shipped definitions, after the invariant layer's corrections, with
 * its key and the bases it is evaluated on (the SD's type at its root, else the element path).
 */
const shippedExpressions = new Map<string, string>(); // expression -> key (the last one, if several share it)
const shippedKeys = new Map<string, Set<string>>(); // key -> expressions
const shippedBases = new Map<string, Set<string>>(); // expression -> bases
for (const sd of definitions.all()) {
  const elements = sd.snapshot?.element ?? [];
  for (const e of elements) {
    for (const c of e.constraint ?? []) {
      if (typeof c.expression !== 'string') continue;
      const corrected = CORRECTED[c.key];
      const expression = corrected && corrected.from === c.expression ? corrected.to : c.expression;
      shippedExpressions.set(expression, c.key);
      if (!shippedKeys.has(c.key)) shippedKeys.set(c.key, new Set());
      shippedKeys.get(c.key)!.add(expression);
      let bases = shippedBases.get(expression);
      if (!bases) shippedBases.set(expression, (bases = new Set()));
      bases.add(e === elements[0] ? sd.type : e.path.replace(/\[x\]$/, ''));
    }
  }
}
const acceptedPairs = (): [string, string][] =>
  [...shippedBases].flatMap(([expression, bases]) => [...bases].filter((b) => compiled(b, expression).ok).map((b): [string, string] => [b, expression]));
const expressionAccepted = (expression: string): boolean => acceptedPairs().some(([, e]) => e === expression);

function stringLiterals(): string[] {
  const out = new Set<string>();
  for (const e of shippedExpressions.keys()) for (const m of e.matchAll(/'((?:[^'\\]|\\.)*)'/g)) out.add(m[1]);
  return [...out];
}

function numberLiterals(): number[] {
  const out = new Set<number>([0]);
  for (const e of shippedExpressions.keys()) {
    for (const m of e.matchAll(/(?:>=|<=|>|<|=)\s*(-?\d+(?:\.\d+)?)/g)) {
      const n = Number(m[1]);
      for (const d of [0, 1, -1, 0.5, -0.5, 1e-9, -1e-9, 1e-7, -1e-7]) out.add(n + d);
    }
  }
  return [...out];
}

// ---------------------------------------------------------------------------------------------------------------
// Corpus

function spExamples(): Json[] {
  const dir = path.join(ROOT, 'profiles/examples');
  const out: Json[] = [];
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const r = readJson(path.join(dir, f));
    out.push(r);
    if (r.resourceType === 'Bundle' && Array.isArray(r.entry)) {
      for (const e of r.entry as Json[]) if (e && typeof e.resource === 'object') out.push(e.resource as Json);
    }
  }
  return out;
}

function hl7Examples(): Json[] {
  const out: Json[] = [];
  for (const t of EXAMPLE_TYPES) {
    const dir = path.join(HL7_EXAMPLES, t);
    for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) out.push(readJson(path.join(dir, f)));
  }
  return out;
}

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Loc {
  parent: Json | unknown[];
  key: string | number;
  value: unknown;
}

function locations(root: unknown): Loc[] {
  const out: Loc[] = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 30 || typeof v !== 'object' || v === null) return;
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        out.push({ parent: v, key: i, value: x });
        walk(x, depth + 1);
      });
      return;
    }
    for (const [k, x] of Object.entries(v)) {
      if (depth === 0 && k === 'resourceType') continue;
      out.push({ parent: v as Json, key: k, value: x });
      walk(x, depth + 1);
    }
  };
  walk(root, 0);
  return out;
}

function objects(root: unknown): Json[] {
  const out: Json[] = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 30 || typeof v !== 'object' || v === null) return;
    if (Array.isArray(v)) v.forEach((x) => walk(x, depth + 1));
    else {
      out.push(v as Json);
      for (const x of Object.values(v)) walk(x, depth + 1);
    }
  };
  walk(root, 0);
  return out;
}

function setAt(loc: Loc, value: unknown): void {
  if (Array.isArray(loc.parent)) loc.parent[loc.key as number] = value;
  else (loc.parent as Json)[loc.key as string] = value;
}

function deleteAt(loc: Loc): void {
  if (Array.isArray(loc.parent)) loc.parent.splice(loc.key as number, 1);
  else delete (loc.parent as Json)[loc.key as string];
}

const UCUM = 'http://unitsofmeasure.org';
const NHS = 'https://fhir.nhs.uk/Id/nhs-number';

class Mutator {
  private readonly strings = stringLiterals();
  private readonly numbers = numberLiterals();
  private readonly systems = this.strings.filter((s) => /^https?:/.test(s));
  private readonly codes = this.strings.filter((s) => !/^https?:/.test(s) && !s.includes('^'));
  /** The code systems, codes and thresholds of each outcome-measure constraint. */
  private readonly measures = [...shippedExpressions]
    .filter(([, key]) => key.startsWith('sp-om-'))
    .map(([e]) => ({
      system: /system = '([^']*)'/.exec(e)?.[1] ?? '',
      codes: [...e.matchAll(/code = '([^']*)'/g)].map((m) => m[1]),
      values: [...e.matchAll(/(?:>=|<=|=)\s*(\d+(?:\.\d+)?)/g)].flatMap((m) => [0, 1, -1, 1e-9, -1e-9, 0.5].map((d) => Number(m[1]) + d)),
    }));
  constructor(private readonly rnd: () => number) {}

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)];
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  maybe<T>(p: number, v: () => T): T | undefined {
    return this.chance(p) ? v() : undefined;
  }

  weird(): unknown {
    return this.pick<unknown>([
      null, '', 'abc', 0, -1, 1.5, true, false, {}, [], [null], ['a', 'b'], '2024-01-01', '2024-01-01T10:00:00Z', '#', '#p1',
      ...this.strings.slice(0, 10), this.pick(this.numbers), this.pick(this.strings), { resourceType: 'Patient' },
    ]);
  }

  quantity(): Json {
    const q: Json = {};
    if (this.chance(0.9)) q.value = this.chance(0.85) ? this.pick(this.numbers) : this.pick<unknown>(['15', null, [3], true]);
    if (this.chance(0.7)) q.system = this.chance(0.8) ? UCUM : 'http://example.org/units';
    if (this.chance(0.7)) q.code = this.pick(['a', 'mo', '{score}', 'mg']);
    if (this.chance(0.5)) q.unit = 'score';
    if (this.chance(0.15)) q.comparator = this.pick(['<', '>=']);
    if (this.chance(0.05)) q.resourceType = 'Quantity';
    return q;
  }

  reference(): Json {
    const r: Json = {};
    if (this.chance(0.6)) r.reference = this.pick(['Patient/1', '#p1', '#', '#missing', 'urn:uuid:1', '']);
    if (this.chance(0.5)) {
      const id: Json = {};
      if (this.chance(0.8)) id.system = this.chance(0.7) ? NHS : 'https://example.org/id';
      if (this.chance(0.7)) id.value = this.pick<unknown>(['9000000009', '123', 9000000009, null]);
      if (this.chance(0.1)) id._value = { extension: [{ url: 'http://example.org/x', valueString: 'masked' }] };
      r.identifier = this.chance(0.1) ? [id] : id;
    }
    if (this.chance(0.5)) r.display = 'someone';
    if (this.chance(0.1)) r._reference = { extension: [{ url: 'http://example.org/x', valueBoolean: true }] };
    return r;
  }

  period(): Json {
    const dates = ['2020', '2020-05', '2024-03-01', '2024-03-01T10:00:00Z', '2024-03-02T09:00:00+01:00', 'x'];
    const p: Json = {};
    if (this.chance(0.7)) p.start = this.pick(dates);
    if (this.chance(0.7)) p.end = this.pick(dates);
    return p;
  }

  /** A value of some datatype with constraints, with random presence of its elements. */
  datatype(): [string, unknown] {
    switch (Math.floor(this.rnd() * 14)) {
      case 0:
        return ['Age', this.quantity()];
      case 1:
        return ['Duration', this.quantity()];
      case 2:
        return ['Count', this.quantity()];
      case 3:
        return ['Distance', this.quantity()];
      case 4:
        return ['Quantity', this.quantity()];
      case 5: {
        const repeat: Json = {};
        for (const k of ['duration', 'durationMax', 'period', 'periodMax', 'count', 'countMax', 'offset']) {
          if (this.chance(0.4)) repeat[k] = this.pick([-1, 0, 1, 2.5]);
        }
        for (const k of ['durationUnit', 'periodUnit']) if (this.chance(0.4)) repeat[k] = this.pick(['h', 'd']);
        if (this.chance(0.4)) repeat.when = this.chance(0.5) ? [this.pick(['C', 'CM', 'MORN', 'AC'])] : ['C', 'MORN'];
        if (this.chance(0.3)) repeat.timeOfDay = ['10:00:00'];
        return ['Timing', { repeat }];
      }
      case 6: {
        const r: Json = {};
        if (this.chance(0.6)) r.numerator = this.quantity();
        if (this.chance(0.6)) r.denominator = this.quantity();
        if (this.chance(0.3)) r.extension = [{ url: 'http://example.org/x', valueString: 'x' }];
        return ['Ratio', r];
      }
      case 7: {
        const r: Json = {};
        if (this.chance(0.6)) r.low = this.quantity();
        if (this.chance(0.6)) r.high = this.quantity();
        return ['Range', r];
      }
      case 8:
        return ['Period', this.period()];
      case 9: {
        const a: Json = {};
        if (this.chance(0.5)) a.data = 'aGVsbG8=';
        if (this.chance(0.5)) a.contentType = 'text/plain';
        return ['Attachment', a];
      }
      case 10: {
        const c: Json = {};
        if (this.chance(0.6)) c.value = '0123';
        if (this.chance(0.6)) c.system = 'phone';
        return ['ContactPoint', c];
      }
      case 11: {
        const e: Json = { language: 'text/fhirpath' };
        if (this.chance(0.5)) e.expression = 'true';
        if (this.chance(0.5)) e.reference = 'http://example.org/e';
        return ['Expression', e];
      }
      case 12:
        return ['Reference', this.reference()];
      default: {
        const id: Json = { system: this.chance(0.5) ? NHS : 'https://example.org', value: '1' };
        if (this.chance(0.5)) id.period = this.period();
        if (this.chance(0.5)) id.assigner = this.reference();
        return ['Identifier', id];
      }
    }
  }

  coding(): Json {
    const c: Json = {};
    if (this.chance(0.9)) c.system = this.chance(0.8) ? this.pick(this.systems) : 'http://loinc.org';
    if (this.chance(0.9)) c.code = this.pick(this.codes);
    if (this.chance(0.05)) c._code = { extension: [{ url: 'http://example.org/x', valueString: 'x' }] };
    return c;
  }

  mutate(r: Json): void {
    const n = 1 + Math.floor(this.rnd() * 4);
    for (let i = 0; i < n; i++) this.mutateOnce(r);
  }

  private mutateOnce(r: Json): void {
    const locs = locations(r);
    const objs = objects(r);
    switch (Math.floor(this.rnd() * 16)) {
      case 0:
        if (locs.length) deleteAt(this.pick(locs));
        return;
      case 1: {
        const prims = locs.filter((l) => typeof l.value !== 'object' || l.value === null);
        if (prims.length) setAt(this.pick(prims), this.weird());
        return;
      }
      case 2: {
        const strs = locs.filter((l) => typeof l.value === 'string');
        if (strs.length) setAt(this.pick(strs), this.pick(this.strings));
        return;
      }
      case 3: {
        const nums = locs.filter((l) => typeof l.value === 'number');
        if (nums.length) setAt(this.pick(nums), this.chance(0.8) ? this.pick(this.numbers) : String(this.pick(this.numbers)));
        return;
      }
      case 4: {
        // Codes: set a coding to a system/code of some constraint, or add codings.
        const codings = objs.filter((o) => 'system' in o && 'code' in o && !('value' in o));
        if (codings.length && this.chance(0.7)) Object.assign(this.pick(codings), this.coding());
        else if (isObject(r.code)) (r.code as Json).coding = Array.from({ length: 1 + Math.floor(this.rnd() * 3) }, () => this.coding());
        return;
      }
      case 5:
      case 6:
        this.observationValue(r);
        return;
      case 7: {
        const arrays = locs.filter((l) => Array.isArray(l.value) && (l.value as unknown[]).length > 0);
        if (!arrays.length) return;
        const loc = this.pick(arrays);
        const arr = loc.value as unknown[];
        switch (Math.floor(this.rnd() * 4)) {
          case 0:
            arr.push(clone(arr[0]));
            return;
          case 1:
            arr.splice(Math.floor(this.rnd() * arr.length), 0, null);
            return;
          case 2:
            setAt(loc, arr[0]);
            return;
          default:
            setAt(loc, []);
            return;
        }
      }
      case 8: {
        // `_x` siblings of primitives.
        const prims = locs.filter((l) => !Array.isArray(l.parent) && (typeof l.value === 'string' || typeof l.value === 'number' || typeof l.value === 'boolean'));
        if (!prims.length) return;
        const loc = this.pick(prims);
        const parent = loc.parent as Json;
        parent[`_${String(loc.key)}`] = this.chance(0.8) ? { extension: [{ url: 'http://example.org/x', valueString: 'x' }] } : [null, { id: 'a' }];
        if (this.chance(0.5)) delete parent[loc.key as string];
        return;
      }
      case 9: {
        const nested = objs.filter((o) => o !== r);
        if (nested.length) this.pick(nested).resourceType = this.pick(['Patient', 'Coding', 'code', 'Quantity', 'Reference']);
        return;
      }
      case 10:
      case 11: {
        // A datatype with constraints, in an extension.
        const [type, value] = this.datatype();
        const target = this.chance(0.5) ? r : this.pick(objs);
        const ext = { url: 'http://example.org/ext', [`value${type}`]: value };
        target.extension = Array.isArray(target.extension) ? [...(target.extension as unknown[]), ext] : [ext];
        return;
      }
      case 12: {
        const refs = objs.filter((o) => 'reference' in o || 'display' in o);
        if (refs.length && this.chance(0.7)) {
          const ref = this.pick(refs);
          for (const k of Object.keys(ref)) delete ref[k];
          Object.assign(ref, this.reference());
        } else {
          r.subject = this.reference();
        }
        return;
      }
      case 13:
        this.contained(r);
        return;
      case 14:
        this.identifiers(r);
        return;
      default:
        this.bundle(r);
        return;
    }
  }

  private observationValue(r: Json): void {
    for (const k of Object.keys(r)) if (/^_?value[A-Z]/.test(k)) delete r[k];
    if (this.chance(0.5)) {
      // One outcome measure, with a score at or around one of its bounds.
      const m = this.pick(this.measures);
      r.code = { coding: [{ system: m.system, code: this.pick(m.codes) }] };
      r.valueQuantity = { value: this.pick(m.values), system: UCUM, code: '{score}' };
      return;
    }
    if (this.chance(0.5)) {
      // The code of one of the outcome-measure constraints, so that they apply.
      const c = this.coding();
      r.code = { coding: this.chance(0.8) ? [c] : [c, this.coding()] };
    }
    switch (Math.floor(this.rnd() * 9)) {
      case 0:
      case 1:
      case 2:
        r.valueQuantity = this.quantity();
        return;
      case 3:
        r.valueString = 'twenty';
        return;
      case 4:
        r.valueCodeableConcept = { coding: [this.coding()] };
        return;
      case 5:
        r.valueQuantity = this.quantity();
        r.valueString = 'both';
        return;
      case 6:
        r._valueString = { extension: [{ url: 'http://example.org/x', valueString: 'x' }] };
        return;
      case 7:
        r.valueQuantity = [this.quantity(), this.quantity()];
        return;
      default:
        r.valueInteger = this.pick(this.numbers);
        return;
    }
  }

  private contained(r: Json): void {
    const p: Json = { resourceType: this.pick(['Patient', 'Practitioner', 'Observation']), id: 'p1' };
    if (this.chance(0.3)) p.meta = { versionId: '1', ...(this.chance(0.5) ? { security: [{ code: 'x' }] } : {}) };
    if (this.chance(0.2)) p.contained = [{ resourceType: 'Patient', id: 'inner' }];
    if (this.chance(0.3)) p.text = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' };
    if (p.resourceType === 'Observation') {
      p.code = { coding: [this.coding()] };
      p.valueQuantity = this.quantity();
    }
    r.contained = this.chance(0.8) ? [p] : [p, { ...p, id: 'p2' }];
    if (this.chance(0.6)) r.subject = { reference: this.pick(['#p1', '#p2', '#nope']) };
  }

  private identifiers(r: Json): void {
    const ids: Json[] = [];
    for (let i = 0; i < 1 + Math.floor(this.rnd() * 2); i++) {
      const id: Json = { system: this.chance(0.8) ? NHS : 'https://example.org' };
      const v = this.pick<unknown>(['9000000009', '900000000', '90000000091', 'abcdefghij', 9000000009, null, undefined]);
      if (v !== undefined) id.value = v;
      if (this.chance(0.2)) id._value = { extension: [{ url: 'http://example.org/x', valueString: 'x' }] };
      ids.push(id);
    }
    r.identifier = ids;
  }

  private bundle(r: Json): void {
    if (r.resourceType !== 'Bundle') {
      if (isObject(r.meta) && this.chance(0.5)) (r.meta as Json).versionId = this.pick(['1', '2']);
      return;
    }
    switch (Math.floor(this.rnd() * 6)) {
      case 0:
        r.type = this.pick(['document', 'message', 'transaction', 'transaction-response', 'batch', 'batch-response', 'history', 'searchset', 'collection']);
        return;
      case 1:
        r.total = this.pick([0, 3]);
        return;
      case 2: {
        const entries = Array.isArray(r.entry) ? (r.entry as Json[]) : [];
        const e = entries[Math.floor(this.rnd() * entries.length)];
        if (!e || typeof e !== 'object') return;
        const k = this.pick(['request', 'response', 'search', 'fullUrl', 'resource']);
        if (k === 'fullUrl') e.fullUrl = this.pick(['urn:uuid:1', 'http://example.org/Patient/1/_history/2']);
        else if (k === 'search') e.search = { mode: 'match' };
        else if (k === 'response') e.response = { status: '200' };
        else delete e[k];
        return;
      }
      case 3: {
        const entries = Array.isArray(r.entry) ? (r.entry as unknown[]) : [];
        if (entries.length) entries.push(clone(entries[0]));
        return;
      }
      case 4:
        r.entry = [{ fullUrl: 'urn:uuid:c', resource: { resourceType: this.pick(['Composition', 'MessageHeader', 'Patient']), id: 'c' } }, ...((r.entry as unknown[]) ?? [])];
        return;
      default:
        if (this.chance(0.5)) r.identifier = { system: 'urn:ietf:rfc:3986', ...(this.chance(0.5) ? { value: 'urn:uuid:x' } : {}) };
        if (this.chance(0.5)) r.timestamp = '2024-01-01T00:00:00Z';
        return;
    }
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const examples = spExamples();
const upstream = hl7Examples();
const base = [...examples, ...upstream];

function mutants(count: number, seed: number): Json[] {
  const rnd = rng(seed);
  const m = new Mutator(rnd);
  const out: Json[] = [];
  // Weighted to the social-prescribing examples, whose profile constraints are the ones added here.
  for (let i = 0; i < count; i++) {
    const from = rnd() < 0.6 ? examples[Math.floor(rnd() * examples.length)] : upstream[Math.floor(rnd() * upstream.length)];
    const r = clone(from);
    m.mutate(r);
    out.push(r);
  }
  return out;
}

/** Each outcome measure's codes with scores at and around its bounds, on the SWEMWBS example. */
function measureGrid(): Json[] {
  const template = examples.find((r) => r.id === 'sp-swemwbs-example') ?? examples.find((r) => r.resourceType === 'Observation')!;
  const out: Json[] = [];
  for (const [e, key] of shippedExpressions) {
    if (!key.startsWith('sp-om-')) continue;
    const system = /system = '([^']*)'/.exec(e)?.[1] ?? '';
    const values = [...e.matchAll(/(?:>=|<=|=)\s*(\d+(?:\.\d+)?)/g)].flatMap((m) => [-1, -1e-9, 0, 1e-9, 1].map((d) => Number(m[1]) + d));
    for (const m of e.matchAll(/code = '([^']*)'/g)) {
      for (const value of values) {
        const r = clone(template);
        r.code = { coding: [{ system, code: m[1] }] };
        r.valueQuantity = { value, system: UCUM, code: '{score}' };
        out.push(r);
      }
    }
  }
  return out;
}

const corpus = [...base, ...measureGrid(), ...mutants(600, 20240611)];

// ---------------------------------------------------------------------------------------------------------------
// Tests

describe('fhirpath-compile: semantics against fhirpath.js', () => {
  const env = (resource: unknown): FhirPathEnv => ({ resource, rootResource: resource });
  /** Compares on each input; the expression must be accepted. Returns the compiled outcomes. */
  const same = (b: string, expression: string, inputs: unknown[]): Outcome[] => {
    const c = compiled(b, expression);
    if (!c.ok) throw new Error(`${expression} refused: ${c.reason}`);
    return inputs.map((input) => compare(b, expression, input, env(input)) as Outcome);
  };

  it('three-valued logic: and, or, xor, implies, not() over true, false and {}', () => {
    const values = ['true', 'false', '{}'];
    for (const op of ['and', 'or', 'xor', 'implies']) {
      for (const a of values) for (const b of values) same('Patient', `(${a}) ${op} (${b})`, [{ resourceType: 'Patient' }]);
    }
    for (const a of values) same('Patient', `(${a}).not()`, [{ resourceType: 'Patient' }]);
    // Singleton evaluation of collections: a non-boolean single item is true, an element without value is empty.
    same('Patient', "gender and active.not()", [
      { resourceType: 'Patient', gender: 'male', active: false },
      { resourceType: 'Patient', _gender: { extension: [] }, active: true },
      { resourceType: 'Patient' },
    ]);
  });

  it('= and != on collections, numbers at fhirpath.js precision, type mismatches', () => {
    const obs = (value: unknown) => ({ resourceType: 'Observation', valueQuantity: { value }, code: { coding: [{ code: 'a' }, { code: 'b' }] } });
    const inputs = [obs(14), obs(14.000000001), obs(14.00000001), obs('14'), obs(null), obs(true), { resourceType: 'Observation' }];
    for (const e of ['value.ofType(Quantity).value = 14', 'value.ofType(Quantity).value != 14', "value.ofType(Quantity).value = '14'", 'code.coding.code = \'a\'', "code.coding.code.count() = 2", "code.coding.code = ('a' | 'b')"]) {
      same('Observation', e, inputs);
    }
  });

  it('comparisons round to 1e-8 like FP_Decimal; mixed types throw in fhirpath.js and fall back here', () => {
    const q = (value: unknown) => ({ resourceType: 'Observation', valueQuantity: { value } });
    const outcomes = same('Observation', 'value.ofType(Quantity).value.all($this >= 14 and $this <= 70)', [
      q(14), q(13.999999999), q(13.99999999), q(70.000000004), q(70.00000001), q('20'), q(true), q(null), q([]), q({}),
    ]);
    expect(outcomes.filter((o) => o.kind === 'fallback').length).toBeGreaterThan(0);
    same('Patient', 'name.count() > 1', [{ resourceType: 'Patient' }, { resourceType: 'Patient', name: [{}, {}] }]);
  });

  it('choice elements: the first alternative present in model order, ofType(), _x without value', () => {
    const inputs = [
      { resourceType: 'Observation', valueQuantity: { value: 1 } },
      { resourceType: 'Observation', valueString: 'x', valueQuantity: { value: 1 } },
      { resourceType: 'Observation', valueQuantity: { value: 1 }, valueString: 'x' },
      { resourceType: 'Observation', _valueString: { extension: [{ url: 'u', valueString: 'v' }] } },
      { resourceType: 'Observation', valueString: null },
      { resourceType: 'Observation', valueQuantity: [{ value: 1 }, { value: 2 }] },
      { resourceType: 'Observation', value: 5 },
    ];
    for (const e of ['value.exists()', 'value.empty()', 'value.count()', 'value.ofType(Quantity).exists()', 'value.ofType(string).exists()', 'value.ofType(Quantity).value', 'value.ofType(Range).exists()']) {
      same('Observation', e, inputs);
    }
  });

  it('primitives with extensions (_x), nulls in arrays, hasValue()', () => {
    const inputs = [
      { resourceType: 'Patient', birthDate: '2000-01-01' },
      { resourceType: 'Patient', _birthDate: { extension: [{ url: 'u', valueCode: 'masked' }] } },
      { resourceType: 'Patient', name: [{ given: ['a', null, 'c'], _given: [null, { id: 'x' }, null, { id: 'y' }] }] },
      { resourceType: 'Patient', name: [{ _given: [{ id: 'x' }] }] },
      { resourceType: 'Patient', name: [null, { family: 'f' }] },
      { resourceType: 'Patient', active: true },
    ];
    for (const e of ['birthDate.exists()', 'birthDate.hasValue()', 'name.given.count()', 'name.given', 'name.count()', 'name.family.hasValue()', 'active.hasValue()', 'name.hasValue()', 'name.given.first().hasValue()']) {
      same('Patient', e, inputs);
    }
  });

  it('where() and all() with element criteria, select(), first(), isDistinct(), &', () => {
    const inputs = [
      { resourceType: 'Patient', name: [{ given: ['a'] }, { family: 'f' }, { given: ['b'], family: 'g' }] },
      { resourceType: 'Patient', name: [{ given: ['a'], family: 'x' }, { given: ['a'], family: 'x' }] },
      { resourceType: 'Patient' },
    ];
    for (const e of ['name.where(given).count()', 'name.where(given.exists() and family.exists()).family', 'name.all(given.exists())', 'name.select(given.first() & family).isDistinct()', 'name.select(family & \'-\')', 'name.first().given']) {
      same('Patient', e, inputs);
    }
  });

  it('string functions, on strings and (falling back) on other JSON types', () => {
    const inputs = [
      { resourceType: 'Reference', reference: '#p1' },
      { resourceType: 'Reference', reference: 'Patient/1' },
      { resourceType: 'Reference', reference: '' },
      { resourceType: 'Reference', reference: '#' },
      { resourceType: 'Reference', reference: 'ab' },
      { resourceType: 'Reference', reference: 5 },
    ].map(({ resourceType: _, ...r }) => r);
    for (const e of ["reference.startsWith('#')", "reference.substring(1)", "reference.substring(1, 3)", "reference.contains('/')", "reference.matches('^[A-Z][a-z]+/')", "reference.startsWith('#').not()"]) {
      same('Reference', e, inputs);
    }
  });

  it('%resource and %rootResource, compiled per resource type; is() / ofType() on resources', () => {
    const bundle = { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Composition' } }, { resource: { resourceType: 'Patient' } }, { resource: {} }, { request: {} }] };
    for (const e of ["entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction'))", 'entry.first().resource.is(Composition)', 'entry.resource.ofType(Patient).count()', 'entry.resource.ofType(Resource).count()', 'entry.resource.ofType(DomainResource).count()']) {
      same('Bundle', e, [bundle, { ...bundle, type: 'batch' }, { resourceType: 'Bundle' }]);
    }
    const sr = { resourceType: 'ServiceRequest', contained: [{ resourceType: 'Patient', id: 'p1' }], subject: { reference: '#p1' } };
    same('Reference', "reference.exists() implies (reference = '#' or (reference.startsWith('#').not() or (reference.substring(1) in %rootResource.contained.id)))", [sr.subject, { reference: '#p2' }]);
  });

  it('htmlChecks(): fhirpath.js\'s own function, on xhtml and on other types', () => {
    const divs = [
      '<div xmlns="http://www.w3.org/1999/xhtml"><p>ok</p></div>',
      '<div xmlns="http://www.w3.org/1999/xhtml"></div>',
      '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>',
      '<div>no namespace</div>',
      'plain',
      5,
      null,
    ];
    same('xhtml', 'htmlChecks()', divs);
    same('Narrative.div', 'htmlChecks()', divs);
    same('string', 'htmlChecks()', divs);
    same('Narrative', '`div`.htmlChecks()', divs.map((div) => ({ div })));
  });

  it('outside the subset: refused at compile time', () => {
    for (const e of ['descendants().count()', 'start <= end', 'children().count() > 1', "Observation.code.exists()", 'value.as(Quantity) > 1 \'mg\'', 'iif(a, b, c)', '1 + 1 = 2', '%sct.exists()']) {
      expect(compileFhirPath(e.startsWith('start') ? 'Period' : 'Observation', e).ok).toBe(false);
    }
  });
});

describe('fhirpath-compile: shipped constraints', () => {
  const accepted = () => [...shippedExpressions].filter(([e]) => expressionAccepted(e));

  /** Per expression: evaluations answered by the compiled code (true / not true), and fallbacks. */
  const coverage = new Map<string, { key: string; yes: number; no: number; fallback: number }>();

  it('every shipped constraint, compiled or not, on every element instance of the corpus, agrees with fhirpath.js', () => {
    let evaluations = 0;
    const failures: string[] = [];
    for (const resource of corpus) {
      for (const { type, checker } of checkers) {
        if (type !== resource.resourceType) continue;
        forEachInvariantEvaluation(checker, resource, (ev) => {
          if (ev.expression === undefined) return;
          let outcome: Outcome | undefined;
          try {
            outcome = compare(ev.base, ev.expression, ev.focus, ev.env);
          } catch (err) {
            if (failures.length < 20) failures.push(`${ev.key} at ${ev.path}: ${(err as Error).message}`);
            return;
          }
          if (!outcome) return;
          evaluations++;
          let c = coverage.get(ev.expression);
          if (!c) coverage.set(ev.expression, (c = { key: ev.key, yes: 0, no: 0, fallback: 0 }));
          if (outcome.kind === 'fallback') c.fallback++;
          else if (outcome.kind === 'value' && outcome.items.length === 1 && outcome.items[0] === true) c.yes++;
          else c.no++;
        });
      }
    }
    // Accepted constraints the layer never evaluates with FHIRPath here (ext-1, txt-1 and txt-2 are native;
    // sqty-1 applies only where a type names the SimpleQuantity profile, which the validator resolves to plain
    // Quantity): on every object and string of the corpus.
    for (const [b, expression] of acceptedPairs()) {
      if (coverage.has(expression)) continue;
      for (const resource of corpus.slice(0, 400)) {
        const env: FhirPathEnv = { resource, rootResource: resource };
        const focuses = /^[a-z]/.test(b) || b === 'Narrative.div' ? locations(resource).map((l) => l.value).filter((v) => typeof v !== 'object') : objects(resource);
        for (const o of focuses) {
          const outcome = compare(b, expression, o, env)!;
          evaluations++;
          let c = coverage.get(expression);
          if (!c) coverage.set(expression, (c = { key: shippedExpressions.get(expression)!, yes: 0, no: 0, fallback: 0 }));
          if (outcome.kind === 'fallback') c.fallback++;
          else if (outcome.kind === 'value' && outcome.items.length === 1 && outcome.items[0] === true) c.yes++;
          else c.no++;
        }
      }
    }
    expect(failures).toEqual([]);
    expect(corpus.length).toBeGreaterThan(700);
    expect(evaluations).toBeGreaterThan(10_000);
    const table = [...coverage.values()].sort((a, b) => a.key.localeCompare(b.key));
    console.log(
      `${evaluations} compiled-vs-fhirpath.js evaluations over ${corpus.length} resources\n` +
        table.map((c) => `${c.key.padEnd(18)} true ${String(c.yes).padStart(6)}  not true ${String(c.no).padStart(6)}  fallback ${String(c.fallback).padStart(5)}`).join('\n'),
    );
  });

  it('the compiler accepts the constraints evaluated on every resource (the social prescribing ones, ref-1, bdl-*, tim-*, ...)', () => {
    const keys = new Set(accepted().map(([, key]) => key));
    for (const key of ['sp-subject-1', 'sp-patient-1', 'sp-om-wemwbs', 'sp-om-swemwbs', 'sp-om-pam-level', 'sp-om-eq5d-vas', 'sp-om-eq5d-index', 'sp-om-ons4', 'sp-om-gad7', 'sp-om-phq9', 'sp-om-reqol10', 'sp-om-reqol20', 'ref-1', 'bdl-7', 'bdl-8', 'bdl-3', 'age-1', 'rat-1', 'tim-9']) {
      expect(keys).toContain(key);
    }
    const refused = [...shippedKeys].filter(([, exprs]) => [...exprs].some((e) => !expressionAccepted(e))).map(([key]) => key).sort();
    // Left to fhirpath.js: children()/descendants() (ele-1 is skipped, dom-3), intersect() (obs-7), date/time
    // and Quantity comparisons (inv-1, rng-2), lowBoundary() (per-1).
    expect(refused).toEqual(['dom-3', 'ele-1', 'inv-1', 'obs-7', 'per-1', 'rng-2']);
  });

  it('the corpus exercises every accepted constraint on the compiled path, on both sides of the profile constraints', () => {
    const missing = accepted().filter(([e]) => (coverage.get(e)?.yes ?? 0) + (coverage.get(e)?.no ?? 0) === 0).map(([, k]) => k);
    expect(missing).toEqual([]);
    const oneSided = accepted()
      .filter(([e, k]) => k.startsWith('sp-') && !((coverage.get(e)?.yes ?? 0) > 0 && (coverage.get(e)?.no ?? 0) > 0))
      .map(([, k]) => k);
    expect(oneSided).toEqual([]);
  });

  it('compiled predicates almost never fall back, and never because of an internal error', () => {
    for (const c of coverage.values()) expect(c.fallback).toBeLessThanOrEqual((c.yes + c.no) / 2 + 5);
    expect(fhirpathStats.unexpectedErrors).toBe(0);
  });

  it('out of context: each accepted constraint on every element of the examples and some mutants', () => {
    // Expressions on elements they were not written for (a Reference rule on a Coding, ...): odd shapes, same answers.
    const pairs = acceptedPairs();
    const rnd = rng(7);
    let n = 0;
    for (const resource of [...examples, ...corpus.slice(-150)]) {
      const env: FhirPathEnv = { resource, rootResource: resource };
      for (const o of objects(resource)) {
        for (let i = 0; i < 4; i++) {
          const [b, e] = pairs[Math.floor(rnd() * pairs.length)];
          compare(b, e, o, env);
          n++;
        }
      }
    }
    expect(n).toBeGreaterThan(5_000);
  });
});

describe('fhirpath-compile: all R4 core constraints (beyond the shipped ones)', () => {
  it('on every HL7 example (all resource types there) and mutants, with the R4 core definitions, agrees with fhirpath.js', () => {
    const dir = path.resolve(__dirname, '../../../shared/fhir/hl7-r4/core-structuredefinitions');
    const byType = new Map<string, fhir4.StructureDefinition>();
    const byUrl = new Map<string, fhir4.StructureDefinition>();
    for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.json'))) {
      const sd = readJson(path.join(dir, f)) as unknown as fhir4.StructureDefinition;
      byUrl.set(sd.url, sd);
      if (sd.derivation !== 'constraint') byType.set(sd.type, sd);
    }
    const resolve = (code: string) => byUrl.get(code) ?? byType.get(code);
    const core = new Map<string, InvariantChecker>();
    const refusedReasons = new Map<string, number>();
    let evaluations = 0;
    const failures: string[] = [];
    const all: Json[] = [];
    for (const t of fs.readdirSync(HL7_EXAMPLES).filter((d) => !d.startsWith('_'))) {
      const sub = path.join(HL7_EXAMPLES, t);
      if (!fs.statSync(sub).isDirectory()) continue;
      for (const f of fs.readdirSync(sub).filter((f) => f.endsWith('.json')).sort()) all.push(readJson(path.join(sub, f)));
    }
    const rnd = rng(99);
    const m = new Mutator(rnd);
    const mutated = Array.from({ length: 150 }, () => {
      const r = clone(all[Math.floor(rnd() * all.length)]);
      m.mutate(r);
      return r;
    });
    for (const resource of [...all, ...mutated]) {
      const type = String(resource.resourceType);
      if (!core.has(type) && byType.has(type)) core.set(type, compileInvariants(byType.get(type)!, resolve));
      const checker = core.get(type);
      if (!checker) continue;
      forEachInvariantEvaluation(checker, resource, (ev) => {
        if (ev.expression === undefined) return;
        const c = compiled(ev.base, ev.expression);
        if (!c.ok) {
          const reason = c.reason.replace(/ .*/, '');
          refusedReasons.set(reason, (refusedReasons.get(reason) ?? 0) + 1);
          expect(c.reason).not.toMatch(/^compiler error/);
          return;
        }
        try {
          compare(ev.base, ev.expression, ev.focus, ev.env);
          evaluations++;
        } catch (err) {
          if (failures.length < 20) failures.push(`${ev.key} at ${ev.path}: ${(err as Error).message}`);
        }
      });
    }
    expect(failures).toEqual([]);
    expect(evaluations).toBeGreaterThan(10_000);
    const distinct = new Set([...compiledCache.entries()].filter(([, c]) => c.ok).map(([k]) => k.split('\u0000')[1]));
    console.log(`R4 core: ${evaluations} evaluations, ${distinct.size} distinct compiled expressions; refused: ${JSON.stringify(Object.fromEntries(refusedReasons))}`);
  });
});
