/**
 * A FHIRPath-to-closure compiler for the subset of FHIRPath that the shipped constraints use, with the exact
 * semantics of fhirpath.js (the engine ./fhirpath.ts wraps), so that the two are interchangeable.
 *
 * fhirpath.js interprets the AST on every call: it wraps every value in a ResourceNode, clones its context for
 * every function argument and looks every operator up in a table, which costs 2-50 us per constraint. Here the
 * expression is parsed once (by fhirpath.js's own parser, `fhirpath.parse`) and turned into nested JS closures
 * over the plain JSON values. Type information (the model paths fhirpath.js attaches to each ResourceNode) is
 * worked out at compile time from the same R4 model (`fhirpath/fhir-context/r4`), since it only depends on the
 * expression's base type and the member names.
 *
 * Two ways out, so that the compiled form never gives an answer fhirpath.js would not:
 *  - COMPILE TIME: an expression that uses anything outside the subset below is refused (`compileFhirPath`
 *    returns `{ ok: false, reason }`) and the caller keeps evaluating it with fhirpath.js;
 *  - RUN TIME: when the instance data leaves the cases the closures implement (a JSON type other than the model
 *    says, a collection where fhirpath.js wants a single item and throws, a `_x` sibling on a complex element, a
 *    stray `resourceType`, ...), the closure throws the FALLBACK signal and the caller evaluates that one call
 *    with fhirpath.js, which then gives its own answer or error.
 *
 * Subset (semantics as in fhirpath.js 5.2, which follows https://hl7.org/fhirpath/ N1 and the FHIR R4 FHIRPath
 * page):
 *  - member navigation, through arrays, with the model's choice types (`value` on Observation finds the first
 *    present of valueQuantity, valueCodeableConcept, ... in the model's order), `_x` siblings of primitives (a
 *    primitive with only an extension is an item without a value), `pathsDefinedElsewhere`
 *    (Questionnaire.item.item) and resources nested in resources (contained, Bundle.entry.resource);
 *  - `$this`, `%resource`, `%rootResource` (compiled per resourceType the first time one is seen), `%ucum`;
 *  - string, number (decimal), boolean literals and `{}`;
 *  - `and`, `or`, `xor`, `implies` with FHIRPath's three-valued logic and singleton evaluation of collections;
 *  - `=`, `!=` where at least one side is a computed value (literal, function result), or both sides are
 *    complex elements / resources (identical objects are equal; anything else falls back);
 *  - `<`, `<=`, `>`, `>=` on numbers (compared at fhirpath.js's 1e-8 precision), strings and booleans;
 *  - `in`, `contains` (membership, same equality), `|` on strings, `&`;
 *  - `exists()`, `exists(criteria)`, `empty()`, `count()`, `not()`, `hasValue()`, `where()`, `all()`,
 *    `select()`, `first()`, `isDistinct()` (of strings), `ofType()`, `is()`/`is`, `as()`/`as` (type tests
 *    with the model's type hierarchy and FHIR-to-System conversions), `startsWith()`, `contains()`,
 *    `matches()`, `substring()` with literal arguments, `trace(name)` (returns its input, as ./fhirpath.ts's
 *    trace function writes nothing), `htmlChecks()` (fhirpath.js's own function, called directly).
 * Not compiled (fhirpath.js evaluates them): date/time and Quantity comparisons and equality (fhirpath.js
 * converts those values to its own types, with precision rules), arithmetic, `descendants()`, `children()`,
 * `resolve()`, `lowBoundary()`, `intersect()`, `iif()`, indexers, ...
 *
 * Decimal numbers are JS numbers, as in fhirpath.js without `preciseMath` (./fhirpath.ts does not set it):
 * its FP_Decimal_Native compares and equates numbers after rounding both to a multiple of 1e-8, which is
 * reproduced here exactly (`roundToMaxPrecision`).
 *
 * Values: a collection is a JS array of the JSON values themselves; `null` stands for an item without a value
 * (a primitive known only by its `_x` extension, a `null` in a JSON array), which fhirpath.js keeps as a
 * ResourceNode whose data is null. Computed values (booleans, strings, numbers) are JS primitives.
 */
import * as fhirpath from 'fhirpath';
import r4 = require('fhirpath/fhir-context/r4');

// ---------------------------------------------------------------------------------------------------------------
// The model and fhirpath.js's TypeInfo (used at compile time, and at run time only for resource types)

interface Model {
  choiceTypePaths: Record<string, string[]>;
  pathsDefinedElsewhere: Record<string, string>;
  type2Parent: Record<string, string>;
  path2Type: Record<string, string>;
  path2TypeWithoutElements: Record<string, string>;
  availableTypes: Set<string>;
}

interface TypeInfoInstance {
  name: string;
  namespace?: string;
  is(other: TypeInfoInstance, model: unknown): boolean;
  isConvertibleTo(other: TypeInfoInstance, model: unknown): boolean;
  isValid(model: unknown): boolean;
}

interface TypeInfoClass {
  new (args: { name: string; namespace?: string }): TypeInfoInstance;
  isPrimitive(typeInfo: TypeInfoInstance): boolean;
  isType(type: string, superType: string, model: unknown): boolean;
}

const model = r4 as unknown as Model;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { TypeInfo, ResourceNode } = require('fhirpath/src/types.js') as {
  TypeInfo: TypeInfoClass;
  ResourceNode: new (ctx: unknown, data: unknown, parent: null, path: string, _data: null, type: string) => unknown;
};
// htmlChecks() is fhirpath.js's own function, called directly (the XHTML checks are not re-implemented here).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { htmlChecksFn } = require('fhirpath/src/html-checks.js') as { htmlChecksFn: (this: unknown, coll: unknown[]) => unknown };
/** What ResourceNode and htmlChecksFn read of fhirpath.js's evaluation context. */
const htmlContext = { model };

const own = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
const modelGet = (table: Record<string, string>, key: string): string | undefined => (own(table, key) ? table[key] : undefined);
const choiceTypes = (path: string): string[] | undefined => (own(model.choiceTypePaths, path) ? model.choiceTypePaths[path] : undefined);

/** TypeInfo of a ResourceNode with this fhirNodeDataType (ResourceNode.getTypeInfo). */
function nodeTypeInfo(type: string): TypeInfoInstance {
  const m = /^System\.(.*)$/.exec(type);
  return m ? new TypeInfo({ namespace: 'System', name: m[1] }) : new TypeInfo({ namespace: 'FHIR', name: type });
}

const primitiveTypeCache = new Map<string, boolean>();
/** Whether a node of this fhirNodeDataType is a primitive for hasValue() (TypeInfo.isPrimitiveValue). */
function isPrimitiveType(type: string): boolean {
  let p = primitiveTypeCache.get(type);
  if (p === undefined) primitiveTypeCache.set(type, (p = TypeInfo.isPrimitive(nodeTypeInfo(type))));
  return p;
}

/** ResourceNode.convertData() turns values at these paths into FP_Date/FP_DateTime/FP_Time/FP_Quantity. */
function pathConverts(path: string): boolean {
  return path === 'date' || path === 'dateTime' || path === 'instant' || path === 'time' || TypeInfo.isType(path, 'Quantity', model);
}

const isResourceType = (type: string | null): boolean => type !== null && TypeInfo.isType(type, 'Resource', model);

// ---------------------------------------------------------------------------------------------------------------
// Run-time support

/** Thrown by a compiled expression when fhirpath.js must decide (see the top of this file). */
export const FALLBACK: { readonly fallback: true } = Object.freeze({ fallback: true as const });

function fallback(): never {
  throw FALLBACK;
}

type Coll = readonly unknown[];
/** Variables of one evaluation (the FhirPathEnv of ./fhirpath.ts). */
export interface CompiledEnv {
  resource: unknown;
  rootResource: unknown;
}
type Fn = (self: Coll, env: CompiledEnv) => Coll;

const EMPTY: Coll = Object.freeze([]);
const TRUE: Coll = Object.freeze([true]);
const FALSE: Coll = Object.freeze([false]);
const bool = (b: boolean): Coll => (b ? TRUE : FALSE);

/** numbers.roundToMaxPrecision of fhirpath.js: what FP_Decimal_Native compares and equates. */
function round8(x: number): number {
  return Math.round(x / 1e-8) * 1e-8;
}

/** An element whose JSON object has a `resourceType` gets that as its path and type in fhirpath.js. */
function checkNodeItem(v: unknown, path: string, type: string | null): void {
  if (typeof v === 'object' && v !== null) {
    const rt = (v as Record<string, unknown>).resourceType;
    if (rt && (rt !== path || rt !== type)) fallback();
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** misc.singleton(coll, 'Boolean'): undefined for empty. */
function boolOperand(c: Coll): boolean | undefined {
  if (c.length === 0) return undefined;
  if (c.length > 1) fallback();
  const v = c[0];
  if (v === null || v === undefined) return undefined;
  return v === false ? false : true;
}

/** misc.singleton(coll, 'String'): undefined for empty; anything but a string throws in fhirpath.js. */
function stringOperand(c: Coll): string | undefined {
  if (c.length === 0) return undefined;
  if (c.length > 1) fallback();
  const v = c[0];
  if (v === null || v === undefined) return undefined;
  if (typeof v !== 'string') fallback();
  return v;
}

/**
 * deepEqual of two items, one of them a computed value (never null), the other a value or an element whose
 * path fhirpath.js does not convert. true/false; FALLBACK for objects.
 */
function valueEquals(x: unknown, y: unknown): boolean {
  if (x === null || y === null || x === undefined || y === undefined) return false;
  const tx = typeof x;
  const ty = typeof y;
  if (tx === 'object' || ty === 'object') fallback();
  if (tx === 'number' && ty === 'number') return round8(x as number) === round8(y as number);
  return x === y;
}

/** deepEqual of two complex elements/resources: only identity (and two items without value) is decided here. */
function nodeEquals(x: unknown, y: unknown): boolean {
  if (x === y || (x == null && y == null)) return true;
  if (x == null || y == null) return false;
  return fallback();
}

/** deepEqual(collA, collB) of fhirpath.js (objEquiv over the arrays), for non-empty collections. */
function collEquals(a: Coll, b: Coll, eq: (x: unknown, y: unknown) => boolean): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!eq(a[i], b[i])) return false;
  return true;
}

/** The comparison operators on two items (typecheckScalars + lt/gt/...): -1/0/1, or undefined for empty. */
function compareItems(x: unknown, y: unknown, rawX: boolean, rawY: boolean): number | undefined {
  if (x === null || y === null || x === undefined || y === undefined) return undefined;
  const tx = typeof x;
  const ty = typeof y;
  if (tx === 'number' && ty === 'number') {
    // count() is a JS number in fhirpath.js, everything else an FP_Decimal compared at 1e-8 precision.
    const a = rawX && rawY ? (x as number) : round8(x as number);
    const b = rawX && rawY ? (y as number) : round8(y as number);
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if ((tx === 'string' && ty === 'string') || (tx === 'boolean' && ty === 'boolean')) {
    return (x as string) < (y as string) ? -1 : (x as string) > (y as string) ? 1 : 0;
  }
  return fallback();
}

/** Items of `o[key]` / `o['_' + key]` (utilities.makeChildResNodes), appended to `out`. */
function pushChildren(out: unknown[], v: unknown, u: unknown): void {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) out.push(v[i] === undefined ? null : v[i]);
    if (Array.isArray(u)) for (let i = v.length; i < u.length; i++) out.push(null);
  } else if ((v === null || v === undefined) && Array.isArray(u)) {
    for (let i = 0; i < u.length; i++) out.push(null);
  } else {
    out.push(v === undefined ? null : v);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Compile-time types

/** What the items of a compiled sub-expression are, as far as fhirpath.js's behaviour depends on it. */
type Kind =
  /** Elements: ResourceNodes with this model path and fhirNodeDataType (null: not in the model). */
  | { k: 'node'; path: string; type: string | null }
  /** Resources (contained, Bundle.entry.resource): the path is each item's resourceType, else `path`. */
  | { k: 'res'; path: string; type: string | null }
  /** A choice element navigated without a type: each parent's items come from one of `alts`. */
  | { k: 'choice'; key: string; alts: Alt[]; parent: Compiled }
  /** Computed values. RawInt: a JS number that fhirpath.js does not make an FP_Decimal (count()). */
  | { k: 'val'; t: 'Boolean' | 'String' | 'Number' | 'RawInt' }
  /** `{}`. */
  | { k: 'empty' };

interface Alt {
  /** JSON property names. */
  field: string;
  ufield: string;
  path: string;
  type: string | null;
}

interface Compiled {
  fn: Fn;
  kind: Kind;
}

/** Navigation of `key` from an element at model path `path` (makeChildResNodes, at compile time). */
type ChildDesc =
  | { choice: false; path: string; type: string | null; primitive: boolean; resource: boolean }
  | { choice: true; alts: Alt[] };

const childDescCache = new Map<string, ChildDesc>();

function childDesc(parentPath: string, key: string): ChildDesc {
  const cacheKey = `${parentPath}\u0000${key}`;
  let d = childDescCache.get(cacheKey);
  if (d) return d;
  let childPath = `${parentPath}.${key}`;
  childPath = modelGet(model.pathsDefinedElsewhere, childPath) ?? childPath;
  const types = choiceTypes(childPath);
  if (types) {
    d = {
      choice: true,
      alts: types.map((t) => {
        const full = childPath + t;
        return {
          field: key + t,
          ufield: `_${key}${t}`,
          type: modelGet(model.path2Type, full) ?? null,
          path: modelGet(model.path2TypeWithoutElements, full) ?? full,
        };
      }),
    };
  } else {
    if (key === 'extension') childPath = 'Extension';
    const type = modelGet(model.path2Type, childPath) ?? null;
    d = {
      choice: false,
      type,
      path: modelGet(model.path2TypeWithoutElements, childPath) ?? childPath,
      primitive: type !== null && isPrimitiveType(type),
      resource: isResourceType(type),
    };
  }
  childDescCache.set(cacheKey, d);
  return d;
}

const sameDesc = (a: ChildDesc, b: ChildDesc): boolean =>
  !a.choice && !b.choice && a.path === b.path && a.type === b.type;

class Unsupported extends Error {}

function unsupported(what: string): never {
  throw new Unsupported(what);
}

// ---------------------------------------------------------------------------------------------------------------
// AST (fhirpath.js parser output)

interface Ast {
  type: string;
  text?: string;
  delimitedText?: string;
  atRoot?: number;
  children?: Ast[];
}

function kids(node: Ast): Ast[] {
  return node.children ?? [];
}

/** engine's handleStringEscapes. */
function unescape(str: string): string {
  return str.replace(/\\(u[0-9a-fA-F]{4}|.)/g, (match: string, sub: string) => {
    switch (match) {
      case '\\r':
        return '\r';
      case '\\n':
        return '\n';
      case '\\t':
        return '\t';
      case '\\f':
        return '\f';
      default:
        return sub.length > 1 ? String.fromCharCode(parseInt(sub.slice(1), 16)) : sub;
    }
  });
}

/** getIdentifierVal: a `delimited` identifier loses its back-quotes. */
function identifier(text: string | undefined): string {
  const s = text ?? '';
  return s.length >= 2 && s[0] === '`' && s[s.length - 1] === '`' ? unescape(s.slice(1, -1)) : s;
}

/** Member names the closures can read with `o[key]` as fhirpath.js does (no prototype properties). */
function checkMemberName(key: string): void {
  if (!/^[a-z][A-Za-z0-9_]*$/.test(key) || key in Object.prototype || key === 'length') {
    unsupported(`member name ${JSON.stringify(key)}`);
  }
}

/** A literal argument of a function: its value. */
function literalArg(node: Ast): { t: 'String' | 'Number' | 'Boolean'; v: string | number | boolean; text: string } {
  let n = node;
  while ((n.type === 'TermExpression' || n.type === 'ParenthesizedTerm') && kids(n).length === 1) n = kids(n)[0];
  if (n.type !== 'LiteralTerm' || kids(n).length !== 1) unsupported('non-literal function argument');
  const lit = kids(n)[0];
  const text = lit.text ?? '';
  switch (lit.type) {
    case 'StringLiteral':
      return { t: 'String', v: stringLiteral(text), text };
    case 'NumberLiteral':
      return { t: 'Number', v: numberLiteral(text), text };
    case 'BooleanLiteral':
      return { t: 'Boolean', v: text === 'true', text };
    default:
      return unsupported(`${lit.type} argument`);
  }
}

function stringLiteral(text: string): string {
  return text.length >= 2 && text[0] === "'" && text[text.length - 1] === "'" ? unescape(text.slice(1, -1)) : text;
}

function numberLiteral(text: string): number {
  if (!/^\s*[+-]?([0-9]+)(\.[0-9]+)?([eE][+-]?[0-9]+)?\s*$/.test(text)) unsupported(`number ${text}`);
  const v = parseFloat(text);
  if (!Number.isFinite(v)) unsupported(`number ${text}`);
  return v;
}

/** engine.TypeSpecifier: the TypeInfo named by a type argument; unsupported if fhirpath.js would throw. */
function typeSpecifier(text: string | undefined): TypeInfoInstance {
  const ids = (text ?? '').split('.').map(identifier);
  const ti = ids.length === 2 ? new TypeInfo({ namespace: ids[0], name: ids[1] }) : ids.length === 1 ? new TypeInfo({ name: ids[0] }) : undefined;
  if (!ti || !ti.isValid(model)) unsupported(`type ${text}`);
  return ti;
}

// ---------------------------------------------------------------------------------------------------------------
// The compiler

interface Scope {
  /** Kind of `$this`. */
  self: Kind;
  /** resourceType of %resource / %rootResource in this specialisation ('' = the variable is empty). */
  resource: string | undefined;
  rootResource: string | undefined;
}

const SUPPORTED_FUNCTIONS = new Set([
  'exists', 'empty', 'count', 'not', 'hasValue', 'where', 'all', 'select', 'first', 'isDistinct', 'ofType', 'is', 'as',
  'startsWith', 'contains', 'matches', 'substring', 'trace', 'htmlChecks',
]);

function compileExpr(node: Ast, scope: Scope): Compiled {
  switch (node.type) {
    case 'EntireExpression':
    case 'TermExpression':
    case 'InvocationTerm':
    case 'ParenthesizedTerm':
      if (kids(node).length !== 1) unsupported(`${node.type} with ${kids(node).length} children`);
      return compileExpr(kids(node)[0], scope);
    case 'InvocationExpression': {
      const [first, step] = kids(node);
      if (!first || !step || kids(node).length !== 2) unsupported('InvocationExpression shape');
      return compileStep(step, compileExpr(first, scope), scope);
    }
    case 'MemberInvocation':
    case 'FunctionInvocation':
      // At the start of a path: applies to the focus, which is $this wherever a term is evaluated.
      return compileStep(node, { fn: (self) => self, kind: scope.self }, scope);
    case 'ThisInvocation': {
      return { fn: (self) => self, kind: scope.self };
    }
    case 'LiteralTerm':
      return compileLiteral(node);
    case 'ExternalConstantTerm':
      return compileVariable(node, scope);
    case 'AndExpression':
    case 'OrExpression':
    case 'XorExpression':
    case 'ImpliesExpression':
      return compileLogic(node, scope);
    case 'EqualityExpression':
      return compileEquality(node, scope);
    case 'InequalityExpression':
      return compileInequality(node, scope);
    case 'MembershipExpression':
      return compileMembership(node, scope);
    case 'UnionExpression':
      return compileUnion(node, scope);
    case 'AdditiveExpression':
      if (node.text !== '&') unsupported(`operator ${node.text}`);
      return compileConcat(node, scope);
    case 'TypeExpression':
      return compileTypeOperator(node, scope);
    default:
      return unsupported(node.type);
  }
}

function compileLiteral(node: Ast): Compiled {
  const lit = kids(node)[0];
  if (!lit || kids(node).length !== 1) unsupported('literal without child');
  switch (lit.type) {
    case 'StringLiteral': {
      const c: Coll = Object.freeze([stringLiteral(lit.text ?? '')]);
      return { fn: () => c, kind: { k: 'val', t: 'String' } };
    }
    case 'NumberLiteral': {
      const c: Coll = Object.freeze([numberLiteral(lit.text ?? '')]);
      return { fn: () => c, kind: { k: 'val', t: 'Number' } };
    }
    case 'BooleanLiteral': {
      const c = lit.text === 'true' ? TRUE : FALSE;
      return { fn: () => c, kind: { k: 'val', t: 'Boolean' } };
    }
    case 'NullLiteral':
      return { fn: () => EMPTY, kind: { k: 'empty' } };
    default:
      return unsupported(lit.type);
  }
}

function compileVariable(node: Ast, scope: Scope): Compiled {
  if (node.delimitedText !== undefined) unsupported('delimited variable');
  const name = node.text;
  if (name === 'ucum') {
    const c: Coll = Object.freeze(['http://unitsofmeasure.org']);
    return { fn: () => c, kind: { k: 'val', t: 'String' } };
  }
  if (name === 'resource' || name === 'rootResource') {
    const rt = name === 'resource' ? scope.resource : scope.rootResource;
    if (rt === undefined) unsupported('unspecialised %resource');
    if (rt === '') return { fn: () => EMPTY, kind: { k: 'empty' } };
    // A resource in the environment becomes a ResourceNode whose path and type are its resourceType.
    const fn: Fn =
      name === 'resource' ? (_self, env) => [env.resource] : (_self, env) => [env.rootResource];
    return { fn, kind: { k: 'node', path: rt, type: rt } };
  }
  return unsupported(`%${name ?? ''}`);
}

/** One step of a path: `input.member` or `input.fn(...)`. */
function compileStep(step: Ast, input: Compiled, scope: Scope): Compiled {
  if (step.type === 'MemberInvocation') return compileMember(step, input, scope);
  if (step.type === 'FunctionInvocation') return compileFunction(step, input, scope);
  if (step.type === 'ThisInvocation') {
    // `x.$this` is $this; x is still evaluated first, as in fhirpath.js.
    const inFn = input.fn;
    return {
      fn: (self, env) => {
        inFn(self, env);
        return self;
      },
      kind: scope.self,
    };
  }
  return unsupported(`${step.type} in a path`);
}

function compileMember(node: Ast, input: Compiled, scope: Scope): Compiled {
  const key = identifier(kids(node)[0]?.text);
  checkMemberName(key);
  if (node.atRoot) {
    // fhirpath.js returns the focus itself when the name is the focus's type (`Observation.code`): only names
    // that cannot be a type of the focus are compiled.
    const self = scope.self;
    if (self.k === 'node') {
      if (self.type === null || nodeTypeInfo(self.type).is(new TypeInfo({ name: key }), model)) unsupported(`${key} may name the focus type`);
    } else if (self.k !== 'res' && self.k !== 'val') {
      unsupported(`${key} at the root of ${self.k}`);
    }
  }
  const kind = input.kind;
  if (kind.k === 'node') {
    if (kind.type !== null && isPrimitiveType(kind.type)) unsupported(`navigation into primitive ${kind.type}`);
    return navigateNode(input, kind.path, kind.type, key);
  }
  if (kind.k === 'res') return navigateResource(input, kind.path, key);
  return unsupported(`navigation from ${kind.k}`);
}

function kindOfChild(d: ChildDesc & { choice: false }): Kind {
  return d.resource ? { k: 'res', path: d.path, type: d.type } : { k: 'node', path: d.path, type: d.type };
}

function navigateNode(input: Compiled, parentPath: string, parentType: string | null, key: string): Compiled {
  const d = childDesc(parentPath, key);
  const inputFn = input.fn;
  /** The ResourceNode of a parent object takes its path and type from a `resourceType`, if it has one. */
  const checkParent = (o: unknown): o is Record<string, unknown> => {
    if (o === null || o === undefined) return false;
    if (typeof o !== 'object' || Array.isArray(o)) fallback();
    const rt = (o as Record<string, unknown>).resourceType;
    if (rt && (rt !== parentPath || rt !== parentType || rt === key)) fallback();
    return true;
  };
  if (d.choice) {
    const alts = d.alts;
    const fn: Fn = (self, env) => {
      const parents = inputFn(self, env);
      let out: unknown[] | undefined;
      for (let i = 0; i < parents.length; i++) {
        const o = parents[i];
        if (!checkParent(o)) continue;
        for (const alt of alts) {
          const v = o[alt.field];
          const u = o[alt.ufield];
          if (v === undefined && u === undefined) continue;
          if (u !== undefined && (alt.type === null || !isPrimitiveType(alt.type))) fallback();
          if ((v === null || v === undefined) && (u === null || u === undefined)) break;
          pushChildren((out ??= []), v, u);
          break;
        }
      }
      return out ?? EMPTY;
    };
    return { fn, kind: { k: 'choice', key, alts, parent: input } };
  }
  const ukey = `_${key}`;
  const primitive = d.primitive;
  const fn: Fn = (self, env) => {
    const parents = inputFn(self, env);
    if (parents.length === 1) {
      // The usual case: one parent; its array is the result as it is (collections are never modified).
      const o = parents[0];
      if (!checkParent(o)) return EMPTY;
      const v = o[key];
      if (o[ukey] === undefined) return v === undefined || v === null ? EMPTY : Array.isArray(v) ? v : [v];
    }
    let out: unknown[] | undefined;
    for (let i = 0; i < parents.length; i++) {
      const o = parents[i];
      if (!checkParent(o)) continue;
      const v = o[key];
      const u = o[ukey];
      if (v === undefined && u === undefined) continue;
      if (u !== undefined && !primitive) fallback();
      if ((v === null || v === undefined) && (u === null || u === undefined)) continue;
      pushChildren((out ??= []), v, u);
    }
    return out ?? EMPTY;
  };
  return { fn, kind: kindOfChild(d) };
}

/** Navigation from resources of any type: allowed where every resource type gives the same element type. */
function navigateResource(input: Compiled, staticPath: string, key: string): Compiled {
  const domain = childDesc('DomainResource', key);
  const expected = !domain.choice && domain.type !== null ? domain : childDesc('Resource', key);
  if (expected.choice) unsupported(`choice ${key} on a resource`);
  const primitive = expected.primitive;
  const ukey = `_${key}`;
  const inputFn = input.fn;
  const agrees = new Map<string, boolean>();
  const fn: Fn = (self, env) => {
    const parents = inputFn(self, env);
    let out: unknown[] | undefined;
    for (let i = 0; i < parents.length; i++) {
      const o = parents[i];
      if (o === null || o === undefined) continue;
      if (typeof o !== 'object' || Array.isArray(o)) fallback();
      const rt = (o as Record<string, unknown>).resourceType;
      let path = staticPath;
      if (rt) {
        if (typeof rt !== 'string' || rt === key) fallback();
        path = rt;
      }
      const v = (o as Record<string, unknown>)[key];
      const u = (o as Record<string, unknown>)[ukey];
      if (v === undefined && u === undefined) continue;
      let ok = agrees.get(path);
      if (ok === undefined) agrees.set(path, (ok = sameDesc(childDesc(path, key), expected)));
      if (!ok) fallback();
      if (u !== undefined && !primitive) fallback();
      if ((v === null || v === undefined) && (u === null || u === undefined)) continue;
      pushChildren((out ??= []), v, u);
    }
    return out ?? EMPTY;
  };
  return { fn, kind: kindOfChild(expected) };
}

function params(node: Ast): { name: string; args: Ast[] } {
  const functn = kids(node)[0];
  if (!functn || functn.type !== 'Functn') unsupported('function shape');
  const [id, list] = kids(functn);
  const name = identifier(id?.text);
  if (kids(functn).length > 2) unsupported('function shape');
  return { name, args: list ? kids(list) : [] };
}

function compileFunction(node: Ast, input: Compiled, scope: Scope): Compiled {
  const { name, args } = params(node);
  if (!SUPPORTED_FUNCTIONS.has(name)) unsupported(`${name}()`);
  const arity = (...allowed: number[]) => {
    if (!allowed.includes(args.length)) unsupported(`${name}() with ${args.length} arguments`);
  };
  const inFn = input.fn;
  const kind = input.kind;
  switch (name) {
    case 'exists': {
      arity(0, 1);
      if (args.length === 0) return { fn: (self, env) => bool(inFn(self, env).length > 0), kind: { k: 'val', t: 'Boolean' } };
      const where = compileWhere(args[0], input, scope);
      return { fn: (self, env) => bool(where.fn(self, env).length > 0), kind: { k: 'val', t: 'Boolean' } };
    }
    case 'empty':
      arity(0);
      return { fn: (self, env) => bool(inFn(self, env).length === 0), kind: { k: 'val', t: 'Boolean' } };
    case 'count':
      arity(0);
      return { fn: (self, env) => [inFn(self, env).length], kind: { k: 'val', t: 'RawInt' } };
    case 'not':
      arity(0);
      return {
        fn: (self, env) => {
          const b = boolOperand(inFn(self, env));
          return b === undefined ? EMPTY : bool(!b);
        },
        kind: { k: 'val', t: 'Boolean' },
      };
    case 'hasValue':
      arity(0);
      return compileHasValue(input);
    case 'where':
      arity(1);
      return compileWhere(args[0], input, scope);
    case 'all': {
      arity(1);
      notChoice(kind, name);
      const crit = compileExpr(args[0], { ...scope, self: kind });
      const critFn = crit.fn;
      const item: unknown[] = [undefined];
      return {
        fn: (self, env) => {
          const items = inFn(self, env);
          for (let i = 0; i < items.length; i++) {
            item[0] = items[i];
            const r = critFn(item, env);
            // util.isTrue: a single true (the data of a boolean element counts).
            if (!(r.length === 1 && r[0] === true)) return FALSE;
          }
          return TRUE;
        },
        kind: { k: 'val', t: 'Boolean' },
      };
    }
    case 'select': {
      arity(1);
      notChoice(kind, name);
      const expr = compileExpr(args[0], { ...scope, self: kind });
      if (expr.kind.k === 'choice') unsupported('select() of a choice element');
      const exprFn = expr.fn;
      const item: unknown[] = [undefined];
      return {
        fn: (self, env) => {
          const items = inFn(self, env);
          const out: unknown[] = [];
          for (let i = 0; i < items.length; i++) {
            item[0] = items[i];
            // Copied at once: `item` itself may come back ($this).
            const r = exprFn(item, env);
            for (let j = 0; j < r.length; j++) out.push(r[j]);
          }
          return out;
        },
        kind: expr.kind,
      };
    }
    case 'first':
      arity(0);
      notChoice(kind, name);
      return {
        fn: (self, env) => {
          const c = inFn(self, env);
          return c.length === 0 ? EMPTY : c.length === 1 ? c : [c[0]];
        },
        kind,
      };
    case 'isDistinct':
      arity(0);
      if (!(kind.k === 'val' && kind.t === 'String') && kind.k !== 'empty') unsupported(`isDistinct() of ${kind.k}`);
      return {
        fn: (self, env) => {
          const c = inFn(self, env);
          return bool(c.length < 2 || new Set(c).size === c.length);
        },
        kind: { k: 'val', t: 'Boolean' },
      };
    case 'ofType':
    case 'is':
    case 'as':
      arity(1);
      return compileTypeTest(name, input, typeSpecifier(args[0].text));
    case 'startsWith':
    case 'contains':
    case 'matches': {
      arity(1);
      const arg = literalArg(args[0]);
      if (arg.t !== 'String') unsupported(`${name}() argument`);
      const p = arg.v as string;
      let test: (s: string) => boolean;
      if (name === 'startsWith') test = (s) => s.startsWith(p);
      else if (name === 'contains') test = (s) => s.includes(p);
      else {
        let re: RegExp;
        try {
          re = new RegExp(p, 'us'); // resolveRegexFlags(undefined): unicode, dotAll
        } catch {
          return unsupported(`regex ${p}`);
        }
        test = (s) => re.test(s);
      }
      return {
        fn: (self, env) => {
          const s = stringOperand(inFn(self, env));
          return s === undefined ? EMPTY : bool(test(s));
        },
        kind: { k: 'val', t: 'Boolean' },
      };
    }
    case 'substring': {
      arity(1, 2);
      const bounds = args.map((a) => {
        const l = literalArg(a);
        if (l.t !== 'Number' || !/^\d+$/.test(l.text)) unsupported('substring() argument');
        return l.v as number;
      });
      const start = bounds[0];
      const length = bounds[1];
      return {
        fn: (self, env) => {
          const s = stringOperand(inFn(self, env));
          if (s === undefined || start >= s.length) return EMPTY;
          return [length === undefined ? s.substring(start) : s.substring(start, start + length)];
        },
        kind: { k: 'val', t: 'String' },
      };
    }
    case 'htmlChecks': {
      arity(0);
      if (kind.k !== 'node' || kind.type === null) unsupported(`htmlChecks() of ${kind.k}`);
      const { path, type } = kind;
      return {
        fn: (self, env) => {
          const c = inFn(self, env);
          if (c.length !== 1 || typeof c[0] !== 'string') return EMPTY;
          const r = htmlChecksFn.call(htmlContext, [new ResourceNode(htmlContext, c[0], null, path, null, type)]);
          return r === true ? TRUE : r === false ? FALSE : Array.isArray(r) && r.length === 0 ? EMPTY : fallback();
        },
        kind: { k: 'val', t: 'Boolean' },
      };
    }
    case 'trace': {
      arity(1);
      if (literalArg(args[0]).t !== 'String') unsupported('trace() argument');
      return input;
    }
    default:
      return unsupported(`${name}()`);
  }
}

function notChoice(kind: Kind, what: string): void {
  if (kind.k === 'choice') unsupported(`${what} on a choice element`);
}

function compileWhere(arg: Ast, input: Compiled, scope: Scope): Compiled {
  const kind = input.kind;
  notChoice(kind, 'where()');
  const crit = compileExpr(arg, { ...scope, self: kind });
  const critFn = crit.fn;
  const inFn = input.fn;
  // whereMacro keeps an item when the criterion's first result is truthy: a boolean, or an element (a
  // ResourceNode is always truthy).
  let keep: (r: Coll) => boolean;
  if (crit.kind.k === 'val' && crit.kind.t === 'Boolean') keep = (r) => r[0] === true;
  else if (crit.kind.k === 'node' || crit.kind.k === 'res' || crit.kind.k === 'choice') keep = (r) => r.length > 0;
  else if (crit.kind.k === 'empty') keep = () => false;
  else return unsupported(`where() criterion of kind ${crit.kind.t}`);
  // $this of the criterion: one array, reused for every item. Safe because no closure keeps a collection it is
  // given or returns beyond the call that uses it (select() copies, where()/all() only read the first item).
  const scratch: unknown[] = [undefined];
  return {
    fn: (self, env) => {
      const items = inFn(self, env);
      let out: unknown[] | undefined;
      for (let i = 0; i < items.length; i++) {
        const item = items[i];
        scratch[0] = item;
        if (keep(critFn(scratch, env))) (out ??= []).push(item);
      }
      return out === undefined ? EMPTY : out.length === items.length ? items : out;
    },
    kind,
  };
}

function compileHasValue(input: Compiled): Compiled {
  const kind = input.kind;
  const inFn = input.fn;
  let primitive: (v: unknown) => boolean;
  if (kind.k === 'node') {
    const { path, type } = kind;
    if (type !== null) {
      const p = isPrimitiveType(type);
      primitive = (v) => {
        checkNodeItem(v, path, type);
        return p;
      };
    } else {
      // Type from the value: System.String / Integer / Decimal are primitives, System.Boolean is not.
      primitive = (v) => typeof v === 'string' || typeof v === 'number';
    }
  } else if (kind.k === 'val') {
    primitive = () => true;
  } else if (kind.k === 'empty') {
    primitive = () => false;
  } else {
    return unsupported(`hasValue() of ${kind.k}`);
  }
  return {
    fn: (self, env) => {
      const c = inFn(self, env);
      return bool(c.length === 1 && c[0] !== null && c[0] !== undefined && primitive(c[0]));
    },
    kind: { k: 'val', t: 'Boolean' },
  };
}

/** ofType() / is() / as() (and the `is` / `as` operators). */
function compileTypeTest(name: string, input: Compiled, spec: TypeInfoInstance): Compiled {
  const kind = input.kind;
  const inFn = input.fn;
  const matches = (type: string): boolean =>
    name === 'ofType' ? nodeTypeInfo(type).isConvertibleTo(spec, model) : nodeTypeInfo(type).is(spec, model);

  if (kind.k === 'choice') {
    if (name !== 'ofType') unsupported(`${name}() of a choice element`);
    // Fused with the navigation: each parent's first present alternative, kept if it is of the type.
    if (kind.alts.some((a) => a.type === null)) unsupported('choice alternative without a model type');
    const hits = kind.alts.filter((a) => matches(a.type as string));
    if (hits.length > 1) unsupported('ofType() matching several choice alternatives');
    const parentFn = kind.parent.fn;
    const parentKind = kind.parent.kind;
    if (parentKind.k !== 'node') unsupported('choice element of a non-element');
    const hit = hits[0];
    const alts = kind.alts;
    const parentPath = parentKind.path;
    const parentType = parentKind.type;
    const key = kind.key;
    const fn: Fn = (self, env) => {
      const parents = parentFn(self, env);
      let out: unknown[] | undefined;
      for (let i = 0; i < parents.length; i++) {
        const o = parents[i];
        if (o === null || o === undefined) continue;
        if (typeof o !== 'object' || Array.isArray(o)) fallback();
        const rec = o as Record<string, unknown>;
        const rt = rec.resourceType;
        if (rt && (rt !== parentPath || rt !== parentType || rt === key)) fallback();
        for (const alt of alts) {
          const v = rec[alt.field];
          const u = rec[alt.ufield];
          if (v === undefined && u === undefined) continue;
          if (alt !== hit) break;
          if (u !== undefined && !isPrimitiveType(alt.type as string)) fallback();
          if ((v === null || v === undefined) && (u === null || u === undefined)) break;
          pushChildren((out ??= []), v, u);
          break;
        }
      }
      return out ?? EMPTY;
    };
    if (!hit) return { fn, kind: { k: 'empty' } };
    const type = hit.type as string;
    return { fn, kind: isResourceType(type) ? { k: 'res', path: hit.path, type } : { k: 'node', path: hit.path, type } };
  }

  // Whether each item is of the type.
  let test: (item: unknown) => boolean;
  if (kind.k === 'node') {
    if (kind.type === null) unsupported(`${name}() of an element without a model type`);
    const b = matches(kind.type);
    const { path, type } = kind;
    test = (item) => {
      checkNodeItem(item, path, type);
      return b;
    };
  } else if (kind.k === 'res') {
    if (kind.type === null) unsupported(`${name}() of a resource without a model type`);
    const staticType = kind.type;
    const memo = new Map<string, boolean>();
    const byType = (t: string): boolean => {
      let b = memo.get(t);
      if (b === undefined) memo.set(t, (b = matches(t)));
      return b;
    };
    test = (item) => {
      const rt = typeof item === 'object' && item !== null ? (item as Record<string, unknown>).resourceType : undefined;
      if (!rt) return byType(staticType);
      if (typeof rt !== 'string') fallback();
      return byType(rt);
    };
  } else if (kind.k === 'empty') {
    test = () => false;
  } else {
    return unsupported(`${name}() of a computed value`);
  }

  if (name === 'ofType') {
    return {
      fn: (self, env) => {
        const c = inFn(self, env);
        let out: unknown[] | undefined;
        for (let i = 0; i < c.length; i++) if (test(c[i])) (out ??= []).push(c[i]);
        return out === undefined ? EMPTY : out.length === c.length ? c : out;
      },
      kind,
    };
  }
  const isAs = name === 'as';
  return {
    fn: (self, env) => {
      const c = inFn(self, env);
      if (c.length === 0) return EMPTY;
      if (c.length > 1) fallback();
      const b = test(c[0]);
      return isAs ? (b ? c : EMPTY) : bool(b);
    },
    kind: isAs ? kind : { k: 'val', t: 'Boolean' },
  };
}

function compileTypeOperator(node: Ast, scope: Scope): Compiled {
  const [left, spec] = kids(node);
  if (!left || !spec || kids(node).length !== 2 || spec.type !== 'TypeSpecifier') unsupported('type operator shape');
  const name = node.text === 'is' ? 'is' : node.text === 'as' ? 'as' : unsupported(`operator ${node.text}`);
  return compileTypeTest(name, compileExpr(left, scope), typeSpecifier(spec.text));
}

function operands(node: Ast, scope: Scope): [Compiled, Compiled] {
  const [a, b] = kids(node);
  if (!a || !b || kids(node).length !== 2) unsupported(`${node.type} shape`);
  return [compileExpr(a, scope), compileExpr(b, scope)];
}

function compileLogic(node: Ast, scope: Scope): Compiled {
  const [a, b] = operands(node, scope);
  const af = a.fn;
  const bf = b.fn;
  const kind: Kind = { k: 'val', t: 'Boolean' };
  // Both operands are always evaluated, as fhirpath.js does (an error on either side is an error).
  switch (node.text) {
    case 'and':
      return {
        fn: (self, env) => {
          const x = boolOperand(af(self, env));
          const y = boolOperand(bf(self, env));
          if (y === undefined) return x === false ? FALSE : EMPTY;
          if (x === undefined) return y === true ? EMPTY : FALSE;
          return bool(x && y);
        },
        kind,
      };
    case 'or':
      return {
        fn: (self, env) => {
          const x = boolOperand(af(self, env));
          const y = boolOperand(bf(self, env));
          if (y === undefined) return x === true ? TRUE : EMPTY;
          if (x === undefined) return y === true ? TRUE : EMPTY;
          return bool(x || y);
        },
        kind,
      };
    case 'xor':
      return {
        fn: (self, env) => {
          const x = boolOperand(af(self, env));
          const y = boolOperand(bf(self, env));
          if (x === undefined || y === undefined) return EMPTY;
          return bool(x !== y);
        },
        kind,
      };
    case 'implies':
      return {
        fn: (self, env) => {
          const x = boolOperand(af(self, env));
          const y = boolOperand(bf(self, env));
          if (y === undefined) return x === false ? TRUE : EMPTY;
          if (x === undefined) return y === true ? TRUE : EMPTY;
          return bool(!x || y);
        },
        kind,
      };
    default:
      return unsupported(`operator ${node.text}`);
  }
}

/** Item equality for `=`, `!=`, `in`, `contains` between operands of these kinds. */
function equalityFor(a: Kind, b: Kind): (x: unknown, y: unknown) => boolean {
  const complex = (k: Kind) => (k.k === 'node' && k.type !== null && !isPrimitiveType(k.type) && !pathConverts(k.path)) || k.k === 'res';
  const comparable = (k: Kind) => k.k === 'val' || k.k === 'empty' || (k.k === 'node' && !pathConverts(k.path));
  if ((a.k === 'val' || a.k === 'empty') && comparable(b)) return valueEquals;
  if ((b.k === 'val' || b.k === 'empty') && comparable(a)) return valueEquals;
  if (complex(a) && complex(b)) return nodeEquals;
  return unsupported(`equality of ${a.k} and ${b.k}`);
}

function compileEquality(node: Ast, scope: Scope): Compiled {
  const [a, b] = operands(node, scope);
  const eq = equalityFor(a.kind, b.kind);
  const af = a.fn;
  const bf = b.fn;
  const negate = node.text === '!=' ? true : node.text === '=' ? false : unsupported(`operator ${node.text}`);
  const general: Fn = (self, env) => {
    const x = af(self, env);
    const y = bf(self, env);
    if (x.length === 0 || y.length === 0) return EMPTY;
    return bool(collEquals(x, y, eq) !== negate);
  };
  return { fn: fuseMemberLiteral(node, scope, negate) ?? general, kind: { k: 'val', t: 'Boolean' } };

  /** `name = 'literal'` (either way round), name a primitive member of $this: no intermediate collections. */
  function fuseMemberLiteral(n: Ast, sc: Scope, neg: boolean): Fn | undefined {
    const [l, r] = kids(n).map(unwrapTerm);
    const member = l.type === 'MemberInvocation' ? l : r.type === 'MemberInvocation' ? r : undefined;
    const literal = member === l ? r : l;
    if (!member || literal.type !== 'LiteralTerm') return undefined;
    const lit = kids(literal)[0];
    if (!lit || (lit.type !== 'StringLiteral' && lit.type !== 'BooleanLiteral')) return undefined;
    const value: string | boolean = lit.type === 'StringLiteral' ? stringLiteral(lit.text ?? '') : lit.text === 'true';
    const memberKind = (member === l ? a : b).kind;
    if (sc.self.k !== 'node' || memberKind.k !== 'node' || memberKind.type === null || !isPrimitiveType(memberKind.type)) return undefined;
    const key = identifier(kids(member)[0]?.text);
    const ukey = `_${key}`;
    const valueType = typeof value;
    return (self, env) => {
      if (self.length === 1) {
        const o = self[0];
        if (typeof o === 'object' && o !== null && !Array.isArray(o)) {
          const rec = o as Record<string, unknown>;
          if (rec.resourceType === undefined && rec[ukey] === undefined) {
            const v = rec[key];
            if (v === undefined || v === null) return EMPTY;
            if (typeof v === valueType) return (v === value) !== neg ? TRUE : FALSE;
          }
        }
      }
      return general(self, env);
    };
  }
}

/** The term inside TermExpression / InvocationTerm / ParenthesizedTerm wrappers. */
function unwrapTerm(node: Ast | undefined): Ast {
  let n = node ?? { type: 'none' };
  while ((n.type === 'TermExpression' || n.type === 'InvocationTerm' || n.type === 'ParenthesizedTerm') && kids(n).length === 1) n = kids(n)[0];
  return n;
}

function compileInequality(node: Ast, scope: Scope): Compiled {
  const [a, b] = operands(node, scope);
  const ordered = (k: Kind) => k.k === 'val' || k.k === 'empty' || (k.k === 'node' && !pathConverts(k.path));
  if (!ordered(a.kind) || !ordered(b.kind)) unsupported(`comparison of ${a.kind.k} and ${b.kind.k}`);
  const rawA = a.kind.k === 'val' && a.kind.t === 'RawInt';
  const rawB = b.kind.k === 'val' && b.kind.t === 'RawInt';
  const af = a.fn;
  const bf = b.fn;
  let accept: (c: number) => boolean;
  switch (node.text) {
    case '<':
      accept = (c) => c < 0;
      break;
    case '<=':
      accept = (c) => c <= 0;
      break;
    case '>':
      accept = (c) => c > 0;
      break;
    case '>=':
      accept = (c) => c >= 0;
      break;
    default:
      return unsupported(`operator ${node.text}`);
  }
  return {
    fn: (self, env) => {
      const x = af(self, env);
      const y = bf(self, env);
      if (x.length === 0 || y.length === 0) return EMPTY;
      if (x.length !== 1 || y.length !== 1) fallback();
      const c = compareItems(x[0], y[0], rawA, rawB);
      return c === undefined ? EMPTY : bool(accept(c));
    },
    kind: { k: 'val', t: 'Boolean' },
  };
}

function compileMembership(node: Ast, scope: Scope): Compiled {
  const [a, b] = operands(node, scope);
  const op = node.text;
  if (op !== 'in' && op !== 'contains') unsupported(`operator ${op}`);
  // `x in coll` / `coll contains x`.
  const isIn = op === 'in';
  const eq = isIn ? equalityFor(a.kind, b.kind) : equalityFor(b.kind, a.kind);
  const af = a.fn;
  const bf = b.fn;
  const fn: Fn = (self, env) => {
    const ac = af(self, env);
    const bc = bf(self, env);
    const x = isIn ? ac : bc;
    const c = isIn ? bc : ac;
    if (x.length === 0) return EMPTY;
    if (c.length === 0) return FALSE;
    if (x.length > 1) fallback();
    for (let i = 0; i < c.length; i++) if (eq(c[i], x[0])) return TRUE;
    return FALSE;
  };
  return { fn, kind: { k: 'val', t: 'Boolean' } };
}

function compileUnion(node: Ast, scope: Scope): Compiled {
  const [a, b] = operands(node, scope);
  const stringish = (k: Kind) => (k.k === 'val' && k.t === 'String') || k.k === 'empty';
  if (!stringish(a.kind) || !stringish(b.kind)) unsupported(`union of ${a.kind.k} and ${b.kind.k}`);
  const af = a.fn;
  const bf = b.fn;
  return {
    fn: (self, env) => {
      const x = af(self, env);
      const y = bf(self, env);
      const seen = new Set<unknown>();
      const out: unknown[] = [];
      for (const v of x) if (!seen.has(v)) (seen.add(v), out.push(v));
      for (const v of y) if (!seen.has(v)) (seen.add(v), out.push(v));
      return out;
    },
    kind: a.kind.k === 'empty' && b.kind.k === 'empty' ? { k: 'empty' } : { k: 'val', t: 'String' },
  };
}

function compileConcat(node: Ast, scope: Scope): Compiled {
  const [a, b] = operands(node, scope);
  for (const k of [a.kind, b.kind]) {
    if (k.k === 'choice' || k.k === 'res' || (k.k === 'node' && pathConverts(k.path))) unsupported(`& of ${k.k}`);
  }
  const af = a.fn;
  const bf = b.fn;
  return {
    fn: (self, env) => [(stringOperand(af(self, env)) ?? '') + (stringOperand(bf(self, env)) ?? '')],
    kind: { k: 'val', t: 'String' },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Entry point

/** A compiled expression. evaluate() returns the result collection, or throws FALLBACK. */
export interface CompiledFhirPath {
  evaluate(focus: unknown, env: CompiledEnv): readonly unknown[];
}

export type CompileResult = { ok: true; compiled: CompiledFhirPath } | { ok: false; reason: string };

/** fhirpath.js _compile(): the ResourceNode path and type of the focus for a given base. */
function baseNode(base: string): { path: string; type: string | null } {
  let basePath = base.replace(/\[\d*]/g, '');
  const elsewhere = Object.keys(model.pathsDefinedElsewhere);
  let changed: string | undefined;
  let guard = 0;
  do {
    changed = elsewhere.find((p) => {
      const found = basePath.startsWith(p);
      if (found) basePath = model.pathsDefinedElsewhere[p] + basePath.substring(p.length);
      return found;
    });
    if (++guard > 100) unsupported(`base ${base}`);
  } while (changed);
  basePath = modelGet(model.pathsDefinedElsewhere, basePath) ?? basePath;
  const type = model.availableTypes.has(basePath) ? basePath : (modelGet(model.path2Type, basePath) ?? null);
  const path = type === 'BackboneElement' || type === 'Element' ? basePath : (type ?? basePath);
  return { path, type };
}

function usesVariable(node: Ast, name: string): boolean {
  if (node.type === 'ExternalConstantTerm' && node.text === name) return true;
  return kids(node).some((c) => usesVariable(c, name));
}

/** resourceType of an environment variable for specialisation: '' for an empty variable; FALLBACK otherwise. */
function variableType(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (!isPlainObject(v)) return fallback();
  const rt = v.resourceType;
  if (typeof rt !== 'string' || rt === '') return fallback();
  return rt;
}

const MAX_SPECIALISATIONS = 64;

/**
 * Compiles `expression` evaluated on a focus of FHIR type or element path `base` (as given to fhirpath.js's
 * compile). Returns `{ ok: false, reason }` when the expression is outside the compiled subset.
 */
export function compileFhirPath(base: string | undefined, expression: string): CompileResult {
  let ast: Ast;
  try {
    ast = fhirpath.parse(expression) as unknown as Ast;
  } catch (err) {
    return { ok: false, reason: `does not parse: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (!base) return { ok: false, reason: 'no base type' };
  try {
    const root = baseNode(base);
    const self: Kind = { k: 'node', path: root.path, type: root.type };
    const usesResource = usesVariable(ast, 'resource');
    const usesRoot = usesVariable(ast, 'rootResource');
    const compile = (resource: string | undefined, rootResource: string | undefined): Fn =>
      compileExpr(ast, { self, resource, rootResource }).fn;
    const checkFocus = (focus: unknown): Coll => {
      if (focus === null || focus === undefined) return EMPTY;
      // fhirpath.js makes the focus a ResourceNode before its context can convert numbers, and throws.
      if (typeof focus === 'number') fallback();
      if (typeof focus === 'object') {
        if (Array.isArray(focus)) fallback();
        const rt = (focus as Record<string, unknown>).resourceType;
        if (rt && (rt !== root.path || rt !== root.type)) fallback();
      }
      return [focus];
    };

    if (!usesResource && !usesRoot) {
      const fn = compile(undefined, undefined);
      return { ok: true, compiled: { evaluate: (focus, env) => fn(checkFocus(focus), env) } };
    }
    // Compile once to find out whether the expression is in the subset at all (with %resource a DomainResource).
    compile(usesResource ? 'DomainResource' : undefined, usesRoot ? 'DomainResource' : undefined);
    const variants = new Map<string, Fn | null>();
    const evaluate = (focus: unknown, env: CompiledEnv): Coll => {
      const rt = usesResource ? variableType(env.resource) : undefined;
      const rrt = usesRoot ? variableType(env.rootResource) : undefined;
      const key = `${rt ?? ''}|${rrt ?? ''}`;
      let fn = variants.get(key);
      if (fn === undefined) {
        if (variants.size >= MAX_SPECIALISATIONS) fallback();
        try {
          fn = compile(rt, rrt);
        } catch {
          fn = null; // outside the subset for this resource type (or a compiler defect): fhirpath.js decides
        }
        variants.set(key, fn);
      }
      if (fn === null) fallback();
      return fn(checkFocus(focus), env);
    };
    return { ok: true, compiled: { evaluate } };
  } catch (err) {
    if (err instanceof Unsupported) return { ok: false, reason: err.message };
    // A defect of this compiler must not stop the service: the expression is left to fhirpath.js.
    return { ok: false, reason: `compiler error: ${err instanceof Error ? err.message : String(err)}` };
  }
}
