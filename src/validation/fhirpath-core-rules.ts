/**
 * What the invariant layer knows about particular FHIR R4 core constraints, each matched by key AND exact
 * published expression (a profile that redefines a key with another expression gets no special treatment):
 *
 *  - SKIPPED: evaluated by another layer or not at all, with the reason;
 *  - NATIVE: implemented in TypeScript instead of FHIRPath, with the same result;
 *  - CORRECTED: published R4 expressions that do not say what their `human` text says under the validator's
 *    "empty means fail" rule, or that fhirpath.js cannot run as written. Most are the corrections the HL7
 *    validator itself applies (org.hl7.fhir.validation FHIRPathExpressionFixer); per-1 and vs-1 take the later
 *    HL7 corrections, which the reference validator does not apply to R4 (so it reports periods like
 *    2020 .. 2020-05 that this layer accepts);
 *  - FAST PATHS: for the constraints checked on almost every resource, a test of the instance that proves the
 *    constraint holds without running FHIRPath (e.g. dom-2..dom-5 when there is no `contained`). A fast path
 *    returns true only when the full expression certainly evaluates to true (and `fails`, where given, only
 *    when it certainly does not); otherwise the FHIRPath expression decides. Most of those expressions are
 *    compiled to closures (./fhirpath-compile.ts, 0.1-0.5 us), but some are left to fhirpath.js (2-50 us), and
 *    a fast path is cheaper still.
 */

import { compilePredicate, type FhirPathEnv } from './fhirpath';

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** FHIRPath exists() of a JSON property: present, not null, not an empty array. */
function present(v: unknown): boolean {
  return v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0);
}

/** Whether the object has a value of choice element `base[x]` (`valueQuantity`, `valueString`, ... or `_valueString`). */
function hasChoice(o: Obj, base: string): boolean {
  for (const k in o) {
    if (!Object.prototype.hasOwnProperty.call(o, k)) continue;
    const name = k.charCodeAt(0) === 95 /* _ */ ? k.slice(1) : k;
    if (name.length > base.length && name.startsWith(base)) {
      const c = name.charCodeAt(base.length);
      if (c >= 65 && c <= 90 && present(o[k])) return true;
    }
  }
  return false;
}

const DATE = /^\d{4}(-\d{2}(-\d{2})?)?$/;
const DATE_TIME_TZ = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:\d{2})$/;

/** Certainly `start.lowBoundary() <= end.highBoundary()` (false means: let FHIRPath decide). */
function periodInOrder(start: unknown, end: unknown): boolean {
  if (typeof start !== 'string' || typeof end !== 'string') return false;
  if (DATE.test(start) && DATE.test(end)) {
    // Compare at the coarser precision: equal there means the ranges overlap, which is in order.
    const k = Math.min(start.length, end.length);
    return start.slice(0, k) <= end.slice(0, k);
  }
  if (DATE_TIME_TZ.test(start) && DATE_TIME_TZ.test(end)) {
    const a = Date.parse(start);
    const b = Date.parse(end);
    return Number.isFinite(a) && Number.isFinite(b) && a < b;
  }
  // A date and a dateTime (or dateTimes without time zone): time zones move an instant by at most 14 hours, so
  // calendar days two or more apart are in order whatever the zones.
  if (DAY_PREFIX.test(start) && DAY_PREFIX.test(end)) {
    const a = Date.parse(start.slice(0, 10));
    const b = Date.parse(end.slice(0, 10));
    return Number.isFinite(a) && Number.isFinite(b) && b - a >= 2 * 86_400_000;
  }
  return false;
}

const DAY_PREFIX = /^\d{4}-\d{2}-\d{2}(T|$)/;

/** Certainly `a >= b` in FHIRPath: two dateTimes with time zone and the same precision. */
function notBefore(a: unknown, b: unknown): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const ma = DATE_TIME_TZ.exec(a);
  const mb = DATE_TIME_TZ.exec(b);
  if (!ma || !mb || (ma[1] ?? '').length !== (mb[1] ?? '').length) return false;
  return Date.parse(a) >= Date.parse(b);
}

/** No contained resources, or all of them are objects satisfying `test`. */
function everyContained(resource: Obj, test: (c: Obj) => boolean): boolean {
  const contained = resource.contained;
  if (contained === undefined) return true;
  if (!Array.isArray(contained)) return false;
  for (const c of contained) if (!isObject(c) || !test(c)) return false;
  return true;
}

/** Every contained resource's `#id` is the `reference` of some element of the resource (dom-3's first test). */
function containedAllReferenced(resource: Obj): boolean {
  const contained = resource.contained;
  if (!Array.isArray(contained)) return false;
  const refs = new Set<string>();
  collectReferences(resource, refs, 0);
  for (const c of contained) {
    if (!isObject(c) || typeof c.id !== 'string' || !refs.has(`#${c.id}`)) return false;
  }
  return true;
}

function collectReferences(v: unknown, into: Set<string>, depth: number): void {
  if (depth > 64 || typeof v !== 'object' || v === null) return;
  if (Array.isArray(v)) {
    for (const x of v) collectReferences(x, into, depth + 1);
    return;
  }
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    const x = (v as Obj)[k];
    if (k === 'reference' && typeof x === 'string') into.add(x);
    else collectReferences(x, into, depth + 1);
  }
}

/** Constraints not evaluated by this layer. */
export const SKIPPED: Record<string, { expression: string; reason: string }> = {
  'ele-1': {
    expression: 'hasValue() or (children().count() > id.count())',
    reason:
      'applies to every element of every instance; evaluating it through FHIRPath everywhere would dominate the ' +
      'cost of validation, and the structure layer already reports empty elements (JSON null, {}, [])',
  },
};

/** Native implementations: same meaning as the expression, evaluated on the JSON focus. */
export const NATIVE: Record<string, { expression: string; test: (focus: unknown, env: FhirPathEnv) => boolean }> = {
  // "Must have either extensions or value[x], not both": checked on every extension (it is on Extension and on
  // every element's `extension`/`modifierExtension`), so done natively.
  'ext-1': {
    expression: 'extension.exists() != value.exists()',
    test: (focus) => isObject(focus) && present(focus.extension) !== hasChoice(focus, 'value'),
  },
  // Narrative.div. R4 publishes `htmlChecks()` for both; the HL7 validator splits them (FHIRPathExpressionFixer:
  // txt-2 -> htmlChecks2()): txt-1 is about well-formed XHTML with only the allowed elements and attributes,
  // txt-2 about having some non-whitespace content. fhirpath.js's htmlChecks() tests both at once, so:
  // txt-1 holds if the div passes once it is given content; txt-2 fails only if the div passes except for content.
  'txt-1': {
    expression: 'htmlChecks()',
    test: (focus, env) => htmlChecks(focus, env) || htmlChecks(withContent(focus), env),
  },
  'txt-2': {
    expression: 'htmlChecks()',
    test: (focus, env) => htmlChecks(focus, env) || !htmlChecks(withContent(focus), env),
  },
};

let htmlChecksPredicate: ((focus: unknown, env: FhirPathEnv) => boolean) | undefined;

/**
 * fhirpath.js htmlChecks() on an xhtml value. `xml:lang`, which the HL7 validator allows, is dropped first:
 * fhirpath.js accepts no namespace-prefixed attribute.
 */
function htmlChecks(focus: unknown, env: FhirPathEnv): boolean {
  // txt-1 and txt-2 are evaluated one after the other on the same div: remember the last answer.
  if (typeof focus === 'string' && focus === lastHtml) return lastHtmlOk;
  htmlChecksPredicate ??= compilePredicate('xhtml', 'htmlChecks()');
  const div = typeof focus === 'string' && focus.includes('xml:lang') ? focus.replace(/\sxml:lang\s*=\s*("[^"]*"|'[^']*')/g, '') : focus;
  const ok = htmlChecksPredicate(div, env);
  if (typeof focus === 'string') {
    lastHtml = focus;
    lastHtmlOk = ok;
  }
  return ok;
}

let lastHtml: string | undefined;
let lastHtmlOk = false;

/** The div with a character of text added before its end tag (unchanged if it does not end with one). */
function withContent(focus: unknown): unknown {
  if (typeof focus !== 'string') return focus;
  const end = focus.lastIndexOf('</');
  return end < 0 ? focus : `${focus.slice(0, end)}x${focus.slice(end)}`;
}

/** Corrections of R4 core expressions, keyed by constraint key; applied only when the expression matches `from`. */
export const CORRECTED: Record<string, { from: string; to: string; reason: string }> = {
  'ref-1': {
    from: "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))",
    to:
      "reference.exists() implies (reference = '#' or (reference.startsWith('#').not() or " +
      "(reference.substring(1) in %rootResource.contained.id)))",
    reason:
      'as published it evaluates to empty (= fail) for every Reference without `reference` (display-only or ' +
      'identifier references) and for `#` (a contained resource pointing at its container); the HL7 validator ' +
      'makes this same correction (FHIRPathExpressionFixer), minus the trace() calls',
  },
  'dom-3': {
    from:
      "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | " +
      "%resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#')" +
      ".exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')" +
      ".exists()).not()).trace('unmatched', id).empty()",
    to:
      "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().ofType(canonical) | " +
      "%resource.descendants().ofType(uri) | %resource.descendants().ofType(url))) or descendants().where(reference = '#')" +
      ".exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')" +
      ".exists()).not()).empty()",
    reason:
      'FHIRPath as() requires a single item and fhirpath.js throws on a collection; the HL7 validator reads ' +
      'as() on a collection as a filter, which is ofType() (the R5 expression)',
  },
  'dom-6': {
    from: 'text.`div`.exists()',
    to: '(%rootResource != $this) or text.`div`.exists()',
    reason: 'contained resources need no narrative; the HL7 validator makes this same correction',
  },
  'que-12': {
    from: 'enableWhen.count() > 2 implies enableBehavior.exists()',
    to: 'enableWhen.count() >= 2 implies enableBehavior.exists()',
    reason: '"If there are more than one enableWhen, enableBehavior must be specified"; HL7 validator correction',
  },
  'per-1': {
    from: 'start.hasValue().not() or end.hasValue().not() or (start <= end)',
    to: 'start.hasValue().not() or end.hasValue().not() or (start.lowBoundary() <= end.highBoundary())',
    reason:
      'FHIRPath comparison of dates that agree to the coarser precision is empty (= fail), so the published ' +
      'expression rejects valid periods such as 2020 .. 2020-05 or 2024-03-01T10:00Z .. 2024-03-01; the ' +
      'correction is R5 per-1. (The HL7 validator does not correct it and reports those periods.)',
  },
  'bdl-8': {
    from: "fullUrl.contains('/_history/').not()",
    to: "fullUrl.exists() implies fullUrl.contains('/_history/').not()",
    reason: 'empty (= fail) for every entry without fullUrl, which R4 allows; HL7 validator correction',
  },
  'que-0': {
    from: "name.matches('[A-Z]([A-Za-z0-9_]){0,254}')",
    to: "name.exists() implies name.matches('^[A-Z]([A-Za-z0-9_]){0,254}$')",
    reason: 'empty (= fail) for every Questionnaire without a name, which R4 allows; HL7 validator correction',
  },
  'que-7': {
    from: "operator = 'exists' implies (answer is Boolean)",
    to: "operator = 'exists' implies (answer is FHIR.boolean)",
    reason:
      'the answer is a FHIR boolean, which fhirpath.js does not take to be a System.Boolean (the HL7 validator ' +
      'does: the published Questionnaire-bb example passes it)',
  },
  'vs-1': {
    from: "($this as dateTime).toString().length() >= 8",
    to: "($this is dateTime) implies $this.toString().length() >= 8",
    reason:
      'empty (= fail) when effective[x] is a Period; "if Observation.effective[x] is dateTime and has a value ' +
      'then that value shall be precise to the day" (the later vital-signs and US Core correction; the HL7 ' +
      'validator does not correct it)',
  },
};

/**
 * Fast paths keyed by constraint key, for the exact expression given (after correction). `holds(focus)` true
 * means the expression certainly evaluates to true on this focus; `fails(focus)` true that it certainly does
 * not. Otherwise fhirpath.js evaluates it.
 */
export const FAST_PATHS: Record<
  string,
  { expression: string; holds: (focus: Obj, env: FhirPathEnv) => boolean; fails?: (focus: Obj, env: FhirPathEnv) => boolean }
> = {
  'dom-2': {
    expression: 'contained.contained.empty()',
    holds: (f) => everyContained(f, (c) => c.contained === undefined),
  },
  'dom-3': {
    expression: CORRECTED['dom-3'].to,
    holds: (f) => f.contained === undefined || containedAllReferenced(f),
  },
  'dom-4': {
    expression: 'contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()',
    holds: (f) =>
      everyContained(f, (c) => c.meta === undefined || (isObject(c.meta) && c.meta.versionId === undefined && c.meta.lastUpdated === undefined)),
  },
  'dom-5': {
    expression: 'contained.meta.security.empty()',
    holds: (f) => everyContained(f, (c) => c.meta === undefined || (isObject(c.meta) && c.meta.security === undefined)),
  },
  'dom-6': {
    expression: CORRECTED['dom-6'].to,
    holds: (f, env) => env.rootResource !== f || (isObject(f.text) && typeof f.text.div === 'string'),
    fails: (f, env) => env.rootResource === f && (f.text === undefined || (isObject(f.text) && f.text.div === undefined)),
  },
  'ref-1': {
    expression: CORRECTED['ref-1'].to,
    holds: (f, env) => {
      const ref = f.reference;
      if (ref === undefined) return true;
      if (typeof ref !== 'string') return false;
      if (!ref.startsWith('#') || ref === '#') return true;
      const root = env.rootResource;
      const id = ref.slice(1);
      return isObject(root) && Array.isArray(root.contained) && root.contained.some((c) => isObject(c) && c.id === id);
    },
  },
  'per-1': {
    expression: CORRECTED['per-1'].to,
    holds: (f) => f.start === undefined || f.end === undefined || periodInOrder(f.start, f.end),
  },
  'prr-1': {
    expression: 'orderDetail.empty() or code.exists()',
    holds: (f) => f.orderDetail === undefined || isObject(f.code),
  },
  'obs-6': {
    expression: 'dataAbsentReason.empty() or value.empty()',
    holds: (f) => f.dataAbsentReason === undefined || !hasChoice(f, 'value'),
  },
  'obs-7': {
    expression: 'value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()',
    holds: (f) => f.component === undefined || !hasChoice(f, 'value'),
  },
  'obs-3': {
    expression: 'low.exists() or high.exists() or text.exists()',
    holds: (f) => isObject(f.low) || isObject(f.high) || typeof f.text === 'string',
  },
  'pat-1': {
    expression: 'name.exists() or telecom.exists() or address.exists() or organization.exists()',
    holds: (f) => isObject(f.name) || present(f.telecom) || isObject(f.address) || isObject(f.organization),
  },
  'cpl-3': { expression: 'detail.empty() or reference.empty()', holds: (f) => f.detail === undefined || f.reference === undefined },
  'inv-1': {
    expression: 'lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn',
    holds: (f) => f.lastModified === undefined || f.authoredOn === undefined || notBefore(f.lastModified, f.authoredOn),
  },
  'rng-2': { expression: 'low.empty() or high.empty() or (low <= high)', holds: (f) => f.low === undefined || f.high === undefined },
  'tim-1': {
    expression: 'duration.empty() or durationUnit.exists()',
    holds: (f) => f.duration === undefined || typeof f.durationUnit === 'string',
  },
  'tim-2': {
    expression: 'period.empty() or periodUnit.exists()',
    holds: (f) => f.period === undefined || typeof f.periodUnit === 'string',
  },
  'tim-4': {
    expression: 'duration.exists() implies duration >= 0',
    holds: (f) => f.duration === undefined || (typeof f.duration === 'number' && f.duration >= 0),
  },
  'tim-5': {
    expression: 'period.exists() implies period >= 0',
    holds: (f) => f.period === undefined || (typeof f.period === 'number' && f.period >= 0),
  },
  'tim-6': {
    expression: 'periodMax.empty() or period.exists()',
    holds: (f) => f.periodMax === undefined || typeof f.period === 'number',
  },
  'tim-7': {
    expression: 'durationMax.empty() or duration.exists()',
    holds: (f) => f.durationMax === undefined || typeof f.duration === 'number',
  },
  'tim-8': { expression: 'countMax.empty() or count.exists()', holds: (f) => f.countMax === undefined || typeof f.count === 'number' },
  'tim-9': {
    expression: "offset.empty() or (when.exists() and ((when in ('C' | 'CM' | 'CD' | 'CV')).not()))",
    holds: (f) => f.offset === undefined,
  },
  'tim-10': { expression: 'timeOfDay.empty() or when.empty()', holds: (f) => f.timeOfDay === undefined || f.when === undefined },
  'qty-3': {
    expression: 'code.empty() or system.exists()',
    holds: (f) => f.code === undefined || typeof f.system === 'string',
  },
  'sqty-1': { expression: 'comparator.empty()', holds: (f) => f.comparator === undefined },
  'att-1': {
    expression: 'data.empty() or contentType.exists()',
    holds: (f) => f.data === undefined || typeof f.contentType === 'string',
  },
  'cpt-2': {
    expression: 'value.empty() or system.exists()',
    holds: (f) => f.value === undefined || typeof f.system === 'string',
  },
};
