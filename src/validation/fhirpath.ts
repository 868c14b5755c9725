/**
 * The FHIRPath engine the invariant layer uses: HL7's fhirpath.js with its R4 model, wrapped so that
 *  - every expression is parsed once (compiled functions are cached by base type + expression text),
 *  - evaluation never mutates the instance (`resolveInternalTypes: false`: the library would otherwise attach
 *    a `__path__` property to every object it returns),
 *  - `trace()` in constraint expressions writes nothing (R4 core ref-1 and dom-3 use it),
 *  - `resolve()` is synchronous and local, as in the HL7 validator without a resource fetcher: `#id` finds a
 *    contained resource of %rootResource (`#` the container itself), other references find an entry of the
 *    enclosing Bundle by fullUrl or `Type/id`; anything else resolves to nothing (fhirpath.js's own resolve()
 *    fetches over HTTP and is asynchronous),
 *  - the result is turned into pass/fail the way the HL7 reference validator does it
 *    (FHIRPathEngine.convertToBoolean): a single boolean is its value, an empty result FAILS, any other
 *    non-empty result passes,
 *  - expressions within the subset of ./fhirpath-compile.ts are COMPILED to JS closures at start-up, which give
 *    the same results as fhirpath.js 10-100x faster; fhirpath.js evaluates the others, and any single call for
 *    which the compiled form signals FALLBACK (instance data outside what it implements).
 */
import * as fhirpath from 'fhirpath';
import r4 = require('fhirpath/fhir-context/r4');
import { compileFhirPath, FALLBACK } from './fhirpath-compile';

const model = r4 as unknown as fhirpath.Model;

/** Environment of one evaluation: `%resource` and `%rootResource` (FHIR R4 §2.1.0.3 / fhirpath.html#vars). */
export interface FhirPathEnv {
  /** The resource that contains the focus element (a contained resource for elements inside one). */
  resource: unknown;
  /** The resource at the root of the instance: the container for contained resources, else `resource`. */
  rootResource: unknown;
  /** The nearest Bundle the resource is an entry of, for resolve(). Not a FHIRPath variable name. */
  '#bundle'?: unknown;
}

/** A compiled constraint expression: true when the constraint holds. Throws when evaluation fails. */
export type CompiledPredicate = (focus: unknown, env: FhirPathEnv) => boolean;

// fhirpath.js has no declaration file for its internals; ResourceNode is what its own resolve() returns.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ResourceNode } = require('fhirpath/src/types.js') as {
  ResourceNode: { makeResNode(ctx: unknown, data: unknown, parent: null, path: null, _data: null, type: null): unknown };
};

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function findLocal(ref: string, env: FhirPathEnv): Obj | undefined {
  const root = env.rootResource;
  if (ref.startsWith('#')) {
    if (!isObject(root)) return undefined;
    if (ref === '#') return root;
    const id = ref.slice(1);
    return Array.isArray(root.contained) ? root.contained.find((c): c is Obj => isObject(c) && c.id === id) : undefined;
  }
  const bundle = env['#bundle'];
  if (!isObject(bundle) || !Array.isArray(bundle.entry)) return undefined;
  for (const e of bundle.entry) {
    if (!isObject(e) || !isObject(e.resource)) continue;
    const r = e.resource;
    if (e.fullUrl === ref) return r;
    if (typeof r.resourceType === 'string' && typeof r.id === 'string') {
      const typeId = `${r.resourceType}/${r.id}`;
      if (ref === typeId || ref.endsWith(`/${typeId}`)) return r;
    }
  }
  return undefined;
}

/** Synchronous, local resolve() (see the top of this file). `this` is fhirpath.js's evaluation context. */
function resolveFn(this: { vars: FhirPathEnv }, coll: unknown[]): unknown[] {
  const out: unknown[] = [];
  for (const item of coll ?? []) {
    const v: unknown = fhirpath.util.valData(item);
    const ref = typeof v === 'string' ? v : isObject(v) && typeof v.reference === 'string' ? v.reference : undefined;
    if (ref === undefined) continue;
    const found = findLocal(ref, this.vars);
    if (found) out.push(ResourceNode.makeResNode(this, found, null, null, null, null));
  }
  return out;
}

// No `arity`: fhirpath.js then calls the function with the input collection only, and `this` = its context.
const options: fhirpath.Options = {
  resolveInternalTypes: false,
  traceFn: () => undefined,
  userInvocationTable: { resolve: { fn: resolveFn, internalStructures: true } } as unknown as fhirpath.UserInvocationTable,
};

/** base + NUL + expression -> compiled predicate. Expressions are pure text, so sharing is always safe. */
const cache = new Map<string, CompiledPredicate>();
const interpretedCache = new Map<string, (focus: unknown, env: FhirPathEnv) => unknown[]>();

/** How the predicates made so far are evaluated (for tests and reports). */
export const fhirpathStats = {
  /** Predicates compiled to closures / left to fhirpath.js. */
  compiled: 0,
  interpreted: 0,
  /** Calls of compiled predicates that fhirpath.js answered instead (FALLBACK). */
  fallbacks: 0,
  /** Of those, the ones caused by an error other than FALLBACK: a defect of the compiler. Should stay 0. */
  unexpectedErrors: 0,
};

/**
 * fhirpath.js's own evaluation of `expression` (with this module's options), returning its raw result
 * collection. Throws if the expression does not parse.
 */
export function interpretedExpression(base: string | undefined, expression: string): (focus: unknown, env: FhirPathEnv) => unknown[] {
  const cacheKey = `${base ?? ''}\u0000${expression}`;
  let fn = interpretedCache.get(cacheKey);
  if (!fn) {
    const compiled = fhirpath.compile(base ? { base, expression } : expression, model, options);
    fn = (focus, env) => compiled(focus, env as unknown as Record<string, unknown>) as unknown[];
    interpretedCache.set(cacheKey, fn);
  }
  return fn;
}

/**
 * Parses `expression` once. `base` is the FHIR type or element path of the focus (`Reference`,
 * `Observation.referenceRange`, `dateTime`), used for choice types, `is`/`as`/`ofType` and type-dependent
 * functions; undefined for a resource root, whose type the engine reads from `resourceType`.
 * Throws if the expression does not parse.
 */
export function compilePredicate(base: string | undefined, expression: string): CompiledPredicate {
  const cacheKey = `${base ?? ''}\u0000${expression}`;
  const cached = cache.get(cacheKey);
  if (cached) return cached;
  const interpreted = interpretedExpression(base, expression);
  const slow: CompiledPredicate = (focus, env) => toBoolean(interpreted(focus, env));
  const result = compileFhirPath(base, expression);
  let predicate = slow;
  if (result.ok) {
    fhirpathStats.compiled++;
    const compiled = result.compiled;
    predicate = (focus, env) => {
      let items: readonly unknown[];
      try {
        items = compiled.evaluate(focus, env);
      } catch (err) {
        fhirpathStats.fallbacks++;
        if (err !== FALLBACK) fhirpathStats.unexpectedErrors++;
        return slow(focus, env);
      }
      return compiledToBoolean(items);
    };
  } else {
    fhirpathStats.interpreted++;
  }
  cache.set(cacheKey, predicate);
  return predicate;
}

/** FHIRPathEngine.convertToBoolean of the HL7 validator. */
export function toBoolean(result: unknown): boolean {
  if (!Array.isArray(result) || result.length === 0) return false;
  if (result.length > 1) return true;
  const item: unknown = fhirpath.util.valData(result[0]);
  if (typeof item === 'boolean') return item;
  return item !== null && item !== undefined;
}

/** The same on a compiled result, whose items are plain values (null: an element without a value). */
function compiledToBoolean(result: readonly unknown[]): boolean {
  if (result.length === 0) return false;
  if (result.length > 1) return true;
  const item = result[0];
  if (typeof item === 'boolean') return item;
  return item !== null && item !== undefined;
}

/** The fhirpath.js version in use (for reports and OperationOutcome diagnostics). */
export const fhirpathVersion: string = fhirpath.version;
