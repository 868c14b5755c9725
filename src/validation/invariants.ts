/**
 * The INVARIANTS layer: FHIRPath constraints (ElementDefinition.constraint[].expression) of a
 * StructureDefinition's snapshot, evaluated on an instance the way the HL7 reference validator does.
 *
 * compileInvariants() turns a profile (any SD with a snapshot: a base resource, a datatype or a profile that
 * adds constraints) into a tree of nodes, one per element definition and concrete type, each holding the
 * compiled constraints that apply to an instance of that element:
 *  - the element's own constraints (from the snapshot, which also carries the base resource's ones);
 *  - the constraints on the root of the element's type (ref-1 on Reference, per-1 on Period, qty-3 on
 *    Quantity, sqty-1 when the type is profiled as SimpleQuantity, ...), deduplicated by key;
 *  - for choice elements, one node per type (`value[x]` -> `valueQuantity`, `valueString`, ...), including a
 *    profile's type slice (`value[x]:valueQuantity`) where it has one.
 * Children come from the snapshot where it goes below the element (BackboneElements, profiles constraining
 * inside a datatype) and otherwise from the type's own StructureDefinition, so nested datatypes are covered
 * (Reference inside Annotation.author[x], Period inside Identifier.period, the datatypes inside
 * extensions, ...). contentReference elements (Questionnaire.item.item) reuse the referenced definition.
 * Every expression is parsed at compile time, and those within the subset of ./fhirpath-compile.ts (all the
 * constraints checked on every resource) are compiled to JS closures with fhirpath.js's exact semantics; check()
 * only walks the instance and evaluates. forEachInvariantEvaluation() reports what check() would evaluate, for
 * tests that compare the compiled closures with fhirpath.js.
 *
 * check() visits only the elements present in the instance, so a constraint is evaluated only where its context
 * element exists. Resources inside the instance (contained, Bundle.entry.resource, Parameters.parameter.resource)
 * are checked against the base definition of their own resourceType, got from `resolveType(resourceType)` the
 * first time one is seen; inside a contained resource `%resource` is that resource and `%rootResource` its
 * container.
 *
 * Outcome of a constraint, as in the HL7 validator: it holds only if the expression yields true; false or an
 * empty result is a violation, reported with the constraint's severity, code `invariant`, rule = key,
 * diagnostics = human text, expression = FHIRPath of the element instance. An expression that throws on the
 * given input is not a finding about the client's data: it is reported as a warning saying the rule could not
 * be evaluated.
 *
 * Constraints handled other than by fhirpath.js (see ./fhirpath-core-rules.ts for the exact list and reasons):
 *  - ele-1 (every element has a value or children) is SKIPPED: it applies to every element, evaluating it via
 *    FHIRPath everywhere is slow, and the structure layer already reports empty elements;
 *  - ext-1 (an extension has value[x] or nested extensions, not both, not neither) is NATIVE;
 *  - txt-1/txt-2 (narrative XHTML) are split out of fhirpath.js's htmlChecks() as the HL7 validator splits them;
 *  - ref-1, dom-3, dom-6, per-1, bdl-8, que-0, que-12 and vs-1 are CORRECTED R4 core expressions (mostly the
 *    corrections the HL7 validator itself applies);
 *  - constraints on slices (element ids with `:name`, other than choice type slices) are not evaluated: which
 *    instance elements belong to a slice is decided by the profile layer.
 */
import type { ValidationIssue } from './types';
import { compilePredicate, type FhirPathEnv } from './fhirpath';
import { CORRECTED, FAST_PATHS, NATIVE, SKIPPED } from './fhirpath-core-rules';

export interface InvariantChecker {
  /**
   * Appends one issue per violated constraint. Never throws. `path` is the FHIRPath of `resource` itself when
   * it is nested in something else (e.g. `Bundle.entry[2].resource`); by default its resourceType.
   */
  check(resource: unknown, issues: ValidationIssue[], path?: string): void;
}

/**
 * `resolveType` is asked for datatype and resource StructureDefinitions by type code (`Reference`,
 * `Observation`) and, for element types that name a profile (`Quantity` profiled as SimpleQuantity), by that
 * profile's canonical URL first; undefined for a URL means "use the base type".
 */
export function compileInvariants(
  profile: fhir4.StructureDefinition,
  resolveType: (typeCode: string) => fhir4.StructureDefinition | undefined,
): InvariantChecker {
  return new Compiler(resolveType).checker(profile);
}

/**
 * Compiles several profiles with one compiler, so the datatypes and nested resource types they share are
 * compiled once; `nestedTypes` (resource types that may be contained or bundled) are compiled now, not on
 * first use.
 */
export function compileAllInvariants(
  profiles: readonly fhir4.StructureDefinition[],
  resolveType: (typeCode: string) => fhir4.StructureDefinition | undefined,
  nestedTypes: readonly string[],
): Map<string, InvariantChecker> {
  const compiler = new Compiler(resolveType);
  const checkers = new Map(profiles.map((sd) => [sd.url, compiler.checker(sd) as InvariantChecker]));
  for (const type of nestedTypes) compiler.resourceRoot(type);
  return checkers;
}

// ---------------------------------------------------------------------------------------------------------------
// Compiled form

type Obj = Record<string, unknown>;

interface Rule {
  key: string;
  severity: 'error' | 'warning';
  human: string;
  /** Native test or fast path + compiled FHIRPath. Throws if evaluation fails. */
  test: (focus: unknown, env: FhirPathEnv) => boolean;
  /** The FHIRPath evaluated (after correction), unless the rule is native. */
  fhirpath?: { base: string | undefined; expression: string };
}

/** One constraint evaluation of a check(), as reported by forEachInvariantEvaluation(). */
export interface InvariantEvaluation {
  key: string;
  /** Base type/path and expression as given to the FHIRPath engine; undefined for native rules. */
  base: string | undefined;
  expression: string | undefined;
  focus: unknown;
  env: FhirPathEnv;
  /** FHIRPath of the focus in the instance. */
  path: string;
}

/** What the walk does with the rules that apply to an element instance. */
type Sink = (rules: Rule[], focus: unknown, path: string, env: FhirPathEnv) => void;

/**
 * Walks `resource` as check() does and reports, instead of evaluating, every constraint check() would evaluate
 * there (for tests that compare evaluation engines). `checker` must come from compileInvariants().
 */
export function forEachInvariantEvaluation(checker: InvariantChecker, resource: unknown, visit: (e: InvariantEvaluation) => void): void {
  const walk = (checker as { walk?: (resource: unknown, path: string | undefined, sink: Sink) => void }).walk;
  if (!walk) throw new Error('not a checker made by compileInvariants()');
  walk(resource, undefined, (rules, focus, path, env) => {
    for (const r of rules) {
      visit({ key: r.key, base: r.fhirpath?.base, expression: r.fhirpath?.expression, focus, env, path });
    }
  });
}

const enum Kind {
  Complex,
  Primitive,
  /** A resource of any type (contained, Bundle.entry.resource): dispatched on resourceType at check time. */
  Resource,
}

interface Node {
  kind: Kind;
  rules: Rule[];
  /** JSON property name -> child. Shared between nodes of the same type. */
  children: Map<string, Child>;
  /**
   * False when neither this node nor anything below it has a rule (and no nested resource can appear below
   * it): the walk skips it. Set at compile time by markLive; absent means visit.
   */
  live?: boolean;
}

/** Sets `live` on every node reachable from `root` (a least fixpoint, as types are recursive). */
function markLive(root: Node): void {
  const all: Node[] = [];
  const seen = new Set<Node>();
  const stack = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    all.push(n);
    for (const c of n.children.values()) stack.push(c.node);
  }
  const live = new Set<Node>();
  for (const n of all) if (n.kind === Kind.Resource || n.rules.length > 0) live.add(n);
  let changed = true;
  while (changed) {
    changed = false;
    for (const n of all) {
      if (live.has(n)) continue;
      for (const c of n.children.values()) {
        if (live.has(c.node)) {
          live.add(n);
          changed = true;
          break;
        }
      }
    }
  }
  for (const n of all) n.live = live.has(n);
}

interface Child {
  /** Name in the FHIRPath expression: the JSON name without the choice type suffix and without `_`. */
  name: string;
  node: Node;
  /** `contained` of a resource: `%rootResource` stays the container. */
  contained: boolean;
}

const EMPTY_CHILDREN: Map<string, Child> = new Map();

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function upperFirst(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Element definitions of one snapshot, indexed. */
interface SdIndex {
  sd: fhir4.StructureDefinition;
  root: fhir4.ElementDefinition;
  byId: Map<string, fhir4.ElementDefinition>;
  /** parent id -> child definitions that are not slices. */
  childrenOf: Map<string, fhir4.ElementDefinition[]>;
}

const indexCache = new WeakMap<fhir4.StructureDefinition, SdIndex | null>();

function elementId(e: fhir4.ElementDefinition): string {
  return e.id ?? e.path;
}

function indexSd(sd: fhir4.StructureDefinition): SdIndex | null {
  let idx = indexCache.get(sd);
  if (idx !== undefined) return idx;
  const elements = sd.snapshot?.element;
  if (!Array.isArray(elements) || elements.length === 0) {
    indexCache.set(sd, null);
    return null;
  }
  const byId = new Map<string, fhir4.ElementDefinition>();
  const childrenOf = new Map<string, fhir4.ElementDefinition[]>();
  for (const e of elements) {
    const id = elementId(e);
    byId.set(id, e);
    const dot = id.lastIndexOf('.');
    if (dot < 0) continue;
    const last = id.slice(dot + 1);
    if (last.includes(':')) continue; // a slice: decided by the profile layer
    const parent = id.slice(0, dot);
    let list = childrenOf.get(parent);
    if (!list) childrenOf.set(parent, (list = []));
    list.push(e);
  }
  idx = { sd, root: elements[0], byId, childrenOf };
  indexCache.set(sd, idx);
  return idx;
}

function isPrimitiveCode(code: string, sd: fhir4.StructureDefinition | undefined): boolean {
  if (sd) return sd.kind === 'primitive-type';
  // FHIRPath system types (Element.id, Extension.url) and FHIR primitives are lower case or URLs.
  return code.startsWith('http://') || (code.charCodeAt(0) >= 97 && code.charCodeAt(0) <= 122);
}

function isResourceCode(code: string, sd: fhir4.StructureDefinition | undefined): boolean {
  if (sd) return sd.kind === 'resource';
  return code === 'Resource' || code === 'DomainResource';
}

class Compiler {
  private readonly memo = new Map<string, Node>();
  private readonly sdIds = new WeakMap<fhir4.StructureDefinition, number>();
  private nextSdId = 0;
  private readonly resourceRoots = new Map<string, Node | null>();
  private primitiveElement: Node | undefined;

  constructor(private readonly resolve: (typeCode: string) => fhir4.StructureDefinition | undefined) {}

  checker(profile: fhir4.StructureDefinition): InvariantChecker & { walk(resource: unknown, path: string | undefined, sink: Sink): void } {
    const idx = indexSd(profile);
    const root = idx ? this.typeRoot(idx) : undefined;
    if (root) markLive(root);
    const rootType = profile.type;
    const walk = (resource: unknown, path: string | undefined, sink: Sink): void => {
      const here = path ?? (isObject(resource) && typeof resource.resourceType === 'string' ? resource.resourceType : rootType);
      if (!root) return;
      // Another resource type than the profile's: the structure layer reports that; its invariants don't apply.
      if (profile.kind === 'resource' && isObject(resource) && resource.resourceType !== rootType) return;
      const env: FhirPathEnv = { resource, rootResource: resource };
      this.visitComplex(root, resource, here, env, sink);
    };
    return {
      walk,
      check: (resource, issues, path) => {
        try {
          walk(resource, path, (rules, focus, p, env) => evaluate(rules, focus, p, env, issues));
        } catch (err) {
          const here = path ?? (isObject(resource) && typeof resource.resourceType === 'string' ? resource.resourceType : rootType);
          issues.push({
            severity: 'warning',
            code: 'invariant',
            expression: here,
            diagnostics: `Invariants could not be evaluated on this resource: ${message(err)}`,
          });
        }
      },
    };
  }

  private sdId(sd: fhir4.StructureDefinition): number {
    let id = this.sdIds.get(sd);
    if (id === undefined) this.sdIds.set(sd, (id = this.nextSdId++));
    return id;
  }

  private safeResolve(code: string): fhir4.StructureDefinition | undefined {
    try {
      const sd = this.resolve(code);
      return sd && typeof sd === 'object' ? sd : undefined;
    } catch {
      return undefined;
    }
  }

  /** Node for the root of an SD (a resource, a datatype, a profile). */
  private typeRoot(idx: SdIndex): Node {
    const key = `${this.sdId(idx.sd)}|root`;
    let node = this.memo.get(key);
    if (node) return node;
    node = { kind: Kind.Complex, rules: [], children: new Map() };
    this.memo.set(key, node);
    const base = idx.sd.type ?? idx.root.path;
    node.rules = this.rules(base, [idx.root]);
    this.fillChildren(node.children, idx, elementId(idx.root));
    return node;
  }

  /** Node for element `el` of `idx.sd`, instantiated with type `type`. */
  private elementNode(idx: SdIndex, el: fhir4.ElementDefinition, type: fhir4.ElementDefinitionType, typeSlice?: fhir4.ElementDefinition): Node {
    const code = type.code ?? '';
    const profileUrl = type.profile?.length === 1 ? type.profile[0] : undefined;
    const key = `${this.sdId(idx.sd)}|${elementId(el)}|${code}|${profileUrl ?? ''}`;
    let node = this.memo.get(key);
    if (node) return node;

    const typeSd = (profileUrl && this.safeResolve(profileUrl)) || (code ? this.safeResolve(code) : undefined);
    const own = typeSlice ? [el, typeSlice] : [el];

    if (isResourceCode(code, typeSd)) {
      node = { kind: Kind.Resource, rules: [], children: EMPTY_CHILDREN };
      this.memo.set(key, node);
      return node;
    }
    if (isPrimitiveCode(code, typeSd)) {
      node = { kind: Kind.Primitive, rules: [], children: EMPTY_CHILDREN };
      this.memo.set(key, node);
      const typeIdx = typeSd ? indexSd(typeSd) : null;
      node.rules = this.rules(code.startsWith('http://') ? undefined : code, typeIdx ? [...own, typeIdx.root] : own);
      return node;
    }

    node = { kind: Kind.Complex, rules: [], children: EMPTY_CHILDREN };
    this.memo.set(key, node);
    const typeIdx = typeSd ? indexSd(typeSd) : null;
    const abstractElement = code === 'BackboneElement' || code === 'Element';
    // FHIRPath base: the datatype, or for backbone elements the element's path in the base definition.
    const base = abstractElement ? (el.base?.path ?? el.path).replace(/\[x\]$/, '') : (typeSd?.type ?? code);
    node.rules = this.rules(base, typeIdx && !abstractElement ? [...own, typeIdx.root] : own);

    const sliceKids = typeSlice ? idx.childrenOf.get(elementId(typeSlice)) : undefined;
    const ownKids = idx.childrenOf.get(elementId(el));
    const choiceTypes = (el.type ?? []).length;
    if (sliceKids && sliceKids.length > 0) {
      node.children = new Map();
      this.fillChildren(node.children, idx, elementId(typeSlice!));
    } else if (ownKids && ownKids.length > 0 && choiceTypes <= 1) {
      node.children = new Map();
      this.fillChildren(node.children, idx, elementId(el));
    } else if (typeIdx) {
      node.children = this.typeRoot(typeIdx).children;
    }
    return node;
  }

  /** The node for `_name` of a primitive: id and extensions. */
  private primitiveElementNode(): Node {
    if (this.primitiveElement) return this.primitiveElement;
    const node: Node = { kind: Kind.Complex, rules: [], children: new Map() };
    this.primitiveElement = node;
    const elementSd = this.safeResolve('Element');
    const idx = elementSd ? indexSd(elementSd) : null;
    if (idx) this.fillChildren(node.children, idx, elementId(idx.root));
    return node;
  }

  private fillChildren(into: Map<string, Child>, idx: SdIndex, parentId: string): void {
    const kids = idx.childrenOf.get(parentId);
    if (!kids) return;
    const isResourceRoot = idx.sd.kind === 'resource' && parentId === elementId(idx.root);
    for (const el of kids) {
      if (el.max === '0') continue;
      const path = el.path ?? '';
      const name = path.slice(path.lastIndexOf('.') + 1);
      if (el.contentReference) {
        const target = this.contentTarget(idx, el.contentReference);
        if (!target) continue;
        // The referenced definition's node, with this element's own constraints added.
        for (const t of target.type ?? [{ code: 'BackboneElement' }]) {
          const ref = this.elementNode(idx, target, t);
          const own = this.rules((target.base?.path ?? target.path), [el]);
          const node: Node = own.length === 0 ? ref : { kind: ref.kind, rules: mergeRules(own, ref.rules), children: ref.children };
          into.set(name, { name, node, contained: false });
        }
        continue;
      }
      const types = el.type ?? [];
      if (name.endsWith('[x]')) {
        const baseName = name.slice(0, -3);
        for (const t of types) {
          if (!t.code) continue;
          const jsonName = baseName + upperFirst(t.code.startsWith('http://') ? 'String' : t.code);
          const typeSlice = idx.byId.get(`${elementId(el)}:${jsonName}`);
          const node = this.elementNode(idx, el, t, typeSlice);
          into.set(jsonName, { name: baseName, node, contained: false });
          if (node.kind === Kind.Primitive) into.set(`_${jsonName}`, { name: baseName, node: this.primitiveElementNode(), contained: false });
        }
      } else if (types.length > 0) {
        const node = this.elementNode(idx, el, types[0]);
        into.set(name, { name, node, contained: isResourceRoot && name === 'contained' });
        if (node.kind === Kind.Primitive) into.set(`_${name}`, { name, node: this.primitiveElementNode(), contained: false });
      }
    }
  }

  private contentTarget(idx: SdIndex, ref: string): fhir4.ElementDefinition | undefined {
    const hash = ref.indexOf('#');
    const id = hash >= 0 ? ref.slice(hash + 1) : ref;
    const byId = idx.byId.get(id);
    if (byId) return byId;
    for (const e of idx.byId.values()) if (e.path === id) return e;
    return undefined;
  }

  /** Compiled rules of the given definitions, deduplicated by key (first wins). */
  private rules(base: string | undefined, defs: fhir4.ElementDefinition[]): Rule[] {
    const out: Rule[] = [];
    const seen = new Set<string>();
    for (const def of defs) {
      for (const c of def.constraint ?? []) {
        if (!c || typeof c.key !== 'string' || seen.has(c.key)) continue;
        seen.add(c.key);
        const rule = this.rule(base, c);
        if (rule) out.push(rule);
      }
    }
    return out;
  }

  private rule(base: string | undefined, c: fhir4.ElementDefinitionConstraint): Rule | undefined {
    let expression = c.expression;
    if (typeof expression !== 'string' || expression.trim() === '') return undefined;
    if (SKIPPED[c.key]?.expression === expression) return undefined;
    const severity = c.severity === 'warning' ? 'warning' : 'error';
    const human = c.human ?? c.key;
    const native = NATIVE[c.key];
    if (native && native.expression === expression) {
      const nativeTest = native.test;
      return { key: c.key, severity, human, test: nativeTest };
    }
    const source = { base, expression: '' };
    const corrected = CORRECTED[c.key];
    if (corrected && corrected.from === expression) expression = corrected.to;
    let predicate: ReturnType<typeof compilePredicate>;
    try {
      predicate = compilePredicate(base, expression);
    } catch (err) {
      // A constraint that does not parse is a defect of the profile, not of instances: fail loudly at start-up.
      throw new Error(`Invariant ${c.key} (${base ?? 'resource'}) does not parse: ${message(err)}: ${expression}`);
    }
    source.expression = expression;
    const fast = FAST_PATHS[c.key];
    if (fast && fast.expression === expression) {
      const { holds, fails } = fast;
      return {
        key: c.key,
        severity,
        human,
        fhirpath: source,
        test: (focus, env) => {
          if (isObject(focus)) {
            if (holds(focus, env)) return true;
            if (fails && fails(focus, env)) return false;
          }
          return predicate(focus, env);
        },
      };
    }
    return { key: c.key, severity, human, test: predicate, fhirpath: source };
  }

  /** Root node for a nested resource of the given type, compiled the first time that type is seen. */
  resourceRoot(resourceType: string): Node | null {
    let node = this.resourceRoots.get(resourceType);
    if (node !== undefined) return node;
    const sd = /^[A-Z][A-Za-z]{1,63}$/.test(resourceType) ? this.safeResolve(resourceType) : undefined;
    const idx = sd && sd.kind === 'resource' ? indexSd(sd) : null;
    node = null;
    if (idx) {
      try {
        node = this.typeRoot(idx);
        markLive(node);
      } catch {
        node = null;
      }
    }
    this.resourceRoots.set(resourceType, node);
    return node;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Check

  private visitComplex(node: Node, data: unknown, path: string, env: FhirPathEnv, sink: Sink): void {
    if (!isObject(data)) return;
    if (node.rules.length > 0) sink(node.rules, data, path, env);
    const children = node.children;
    if (children.size === 0) return;
    for (const key of Object.keys(data)) {
      const child = children.get(key);
      if (child === undefined || child.node.live === false) continue;
      const value = data[key];
      const p = `${path}.${child.name}`;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) this.visit(child, value[i], `${p}[${i}]`, env, sink);
      } else {
        this.visit(child, value, p, env, sink);
      }
    }
  }

  private visit(child: Child, value: unknown, path: string, env: FhirPathEnv, sink: Sink): void {
    const node = child.node;
    switch (node.kind) {
      case Kind.Complex:
        this.visitComplex(node, value, path, env, sink);
        return;
      case Kind.Primitive:
        if (node.rules.length > 0 && value !== null && value !== undefined && typeof value !== 'object') {
          sink(node.rules, value, path, env);
        }
        return;
      case Kind.Resource: {
        if (!isObject(value) || typeof value.resourceType !== 'string') return;
        const root = this.resourceRoot(value.resourceType);
        if (!root) return;
        const parent = env.resource;
        const nested: FhirPathEnv = {
          resource: value,
          rootResource: child.contained ? env.rootResource : value,
          '#bundle': !child.contained && isObject(parent) && parent.resourceType === 'Bundle' ? parent : env['#bundle'],
        };
        if (node.rules.length > 0) sink(node.rules, value, path, env);
        this.visitComplex(root, value, path, nested, sink);
        return;
      }
    }
  }
}

function mergeRules(first: Rule[], second: Rule[]): Rule[] {
  const keys = new Set(first.map((r) => r.key));
  return [...first, ...second.filter((r) => !keys.has(r.key))];
}

function evaluate(rules: Rule[], focus: unknown, path: string, env: FhirPathEnv, issues: ValidationIssue[]): void {
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    let ok: boolean;
    try {
      ok = r.test(focus, env);
    } catch (err) {
      issues.push({
        severity: 'warning',
        code: 'invariant',
        rule: r.key,
        expression: path,
        diagnostics: `Could not evaluate constraint ${r.key} on this element (${message(err)}); the rule is: ${r.human}`,
      });
      continue;
    }
    if (!ok) issues.push({ severity: r.severity, code: 'invariant', rule: r.key, diagnostics: r.human, expression: path });
  }
}

function message(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.length > 200 ? `${m.slice(0, 200)}...` : m;
}
