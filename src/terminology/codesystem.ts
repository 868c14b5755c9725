/**
 * The bundled terminology: the CodeSystem(s) and ValueSets in the top-level terminology/ folder, loaded and checked
 * once at start-up (DESIGN: terminology is local and bundled; validators compiled once, never evicted).
 *
 * On load every SNOMED CT code (concepts, parents, designation uses, value-set members) must pass the SCTID check
 * (Verhoeff check digit, partition, namespace length); a bad id stops loading with an error naming the id and file.
 * Value sets are expanded at load, so lookups on the request path are map reads.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { checkSctid } from './sctid';

export const SNOMED_SYSTEM = 'http://snomed.info/sct';
/** Description type "Fully specified name", the designation use for an FSN. */
export const SNOMED_FSN_USE = '900000000000003001';
/** Description type "Synonym", the designation use for a synonym (including the preferred term). */
export const SNOMED_SYNONYM_USE = '900000000000013009';

/** A bundled file is wrong: names the file and, where there is one, the offending code. */
export class TerminologyLoadError extends Error {
  override readonly name = 'TerminologyLoadError';
  constructor(
    readonly file: string,
    message: string,
    readonly code?: string,
  ) {
    super(`${file}: ${message}`);
  }
}

/** A caller passed something unusable (not a data problem: bad codes give results, not errors). */
export class TerminologyUsageError extends Error {
  override readonly name = 'TerminologyUsageError';
}

export interface ConceptDetails {
  readonly system: string;
  /** The CodeSystem.version of the bundle that holds the concept. */
  readonly version?: string;
  readonly code: string;
  /** The preferred term. */
  readonly display: string;
  /** The fully specified name, where the bundle has one. */
  readonly fsn?: string;
  readonly designations: readonly fhir4.CodeSystemConceptDesignation[];
  /** Direct is-a parents known to the bundle (a fragment: absent facts are unknown, not false). */
  readonly parents: readonly string[];
  readonly inactive: boolean;
}

/** Why validateCode said what it did; stable strings the validator can branch on. */
export type ValidateCodeReason =
  | 'unknown-value-set'
  | 'invalid-code'
  | 'not-in-value-set'
  | 'invalid-display'
  | 'inactive';

export interface TerminologyIssue {
  readonly severity: 'error' | 'warning';
  /** An OperationOutcome issue type, ready for issue.code. */
  readonly code: fhir4.OperationOutcomeIssue['code'];
  readonly reason: ValidateCodeReason;
  readonly message: string;
}

export interface ValidateCodeResult {
  /** True iff the code is a member of the value set (display and inactive problems are warnings only). */
  readonly result: boolean;
  /** All issue messages joined, as in the $validate-code output parameter. */
  readonly message?: string;
  /** The preferred display for the code, when it is a member. */
  readonly display?: string;
  readonly issues: readonly TerminologyIssue[];
}

export interface ExpandOptions {
  /** Text filter: every word must start a word of the display or a designation (case-insensitive), or be the code. */
  readonly filter?: string;
  /** Page size; 0 returns only the total. */
  readonly count?: number;
  readonly offset?: number;
}

/** The $subsumes outcome codes (http://hl7.org/fhir/concept-subsumption-outcome). */
export type SubsumptionOutcome = 'equivalent' | 'subsumes' | 'subsumed-by' | 'not-subsumed';

export interface LoadOptions {
  /** Folder holding the bundled JSON; defaults to <package root>/terminology. */
  readonly dir?: string;
}

interface ConceptRecord extends ConceptDetails {
  /** Lower-cased display and designation values, for display checks and filtering. */
  readonly texts: readonly string[];
}

interface CodeSystemRecord {
  readonly url: string;
  readonly version?: string;
  readonly content: fhir4.CodeSystem['content'];
  readonly concepts: Map<string, ConceptRecord>;
  readonly files: string[];
  readonly resources: fhir4.CodeSystem[];
  /** code -> every ancestor (transitive parents), filled after load. */
  readonly ancestors: Map<string, ReadonlySet<string>>;
}

interface Member {
  readonly system: string;
  readonly version?: string;
  readonly code: string;
  readonly display: string;
  readonly inactive: boolean;
  readonly concept?: ConceptRecord;
}

interface ValueSetRecord {
  readonly url: string;
  readonly version?: string;
  readonly file: string;
  readonly resource: fhir4.ValueSet;
  /** Members in compose order; filled after every file is read. */
  members: Member[];
  /** system -> code -> member. */
  index: Map<string, Map<string, Member>>;
}

const norm = (s: string): string => s.trim().replace(/\s+/g, ' ').toLowerCase();
const words = (s: string): string[] => s.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
const key = (system: string, code: string): string => `${system}|${code}`;

/**
 * Finds the bundled terminology folder: walks up from `from` (this file's folder, which is src/terminology under
 * jest and dist/src/terminology after tsc) to the first folder that holds both package.json and terminology/.
 * (dist/ has its own package.json copy, emitted because src imports ../../package.json, so package.json alone is
 * not enough.)
 */
export function defaultTerminologyDir(from: string = __dirname): string {
  let dir = path.resolve(from);
  for (;;) {
    const candidate = path.join(dir, 'terminology');
    if (existsSync(path.join(dir, 'package.json')) && existsSync(candidate) && statSync(candidate).isDirectory()) {
      return candidate;
    }
    const up = path.dirname(dir);
    if (up === dir) {
      throw new TerminologyLoadError(
        from,
        'cannot find the bundled terminology: no parent folder holds both package.json and terminology/',
      );
    }
    dir = up;
  }
}

function fail(file: string, message: string, code?: string): never {
  throw new TerminologyLoadError(file, message, code);
}

function checkSnomedConcept(file: string, where: string, code: unknown): string {
  if (typeof code !== 'string') fail(file, `${where}: SNOMED CT code must be a JSON string, got ${JSON.stringify(code)}`);
  const check = checkSctid(code, 'concept');
  if (!check.valid) fail(file, `${where}: ${JSON.stringify(code)} is not a valid SNOMED CT concept id: ${check.message}`, code);
  return code;
}

function readJson(file: string, shown: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return fail(shown, `cannot read: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    return fail(shown, `not valid JSON: ${(err as Error).message}`);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export class Terminology {
  /** When the bundle was loaded: the expansion timestamp. */
  readonly loadedAt: string;
  /** The files read, relative to the terminology folder. */
  readonly files: readonly string[];
  private readonly codeSystems = new Map<string, CodeSystemRecord>();
  private readonly valueSets = new Map<string, ValueSetRecord>();

  constructor(resources: ReadonlyArray<{ readonly file: string; readonly resource: unknown }>) {
    this.loadedAt = new Date().toISOString();
    this.files = resources.map((r) => r.file);
    for (const { file, resource } of resources) {
      if (!isObject(resource)) fail(file, 'not a JSON object');
      if (resource.resourceType === 'CodeSystem') this.addCodeSystem(file, resource as unknown as fhir4.CodeSystem);
      else if (resource.resourceType === 'ValueSet') this.addValueSet(file, resource as unknown as fhir4.ValueSet);
      else fail(file, `resourceType must be CodeSystem or ValueSet, got ${JSON.stringify(resource.resourceType)}`);
    }
    for (const cs of this.codeSystems.values()) this.closeHierarchy(cs);
    const expanding = new Set<string>();
    for (const vs of this.valueSets.values()) this.expandRecord(vs, expanding);
  }

  // ---- queries -------------------------------------------------------------------------------------------------

  /** The concept for system#code, or undefined if the bundle does not hold it. */
  lookup(system: string, code: string): ConceptDetails | undefined {
    const concept = this.codeSystems.get(system)?.concepts.get(code);
    if (!concept) return undefined;
    const { texts: _texts, ...details } = concept;
    return details;
  }

  /** True if a CodeSystem with this url is bundled (for SNOMED CT: a fragment, so unknown codes may still exist). */
  hasCodeSystem(system: string): boolean {
    return this.codeSystems.has(system);
  }

  /** The `content` of the bundled CodeSystem ('fragment' for SNOMED CT), or undefined if not bundled. */
  codeSystemContent(system: string): fhir4.CodeSystem['content'] | undefined {
    return this.codeSystems.get(system)?.content;
  }

  /** True if a ValueSet with this canonical url (optionally `url|version`) is bundled. */
  hasValueSet(canonical: string): boolean {
    return this.resolveValueSet(canonical) !== undefined;
  }

  /** Canonical urls of the bundled value sets. */
  valueSetUrls(): string[] {
    return [...this.valueSets.keys()];
  }

  /** The bundled ValueSet resource (as shipped, without expansion). */
  getValueSet(canonical: string): fhir4.ValueSet | undefined {
    return this.resolveValueSet(canonical)?.resource;
  }

  /** The bundled CodeSystem resources for a url (one per file). */
  getCodeSystems(system: string): readonly fhir4.CodeSystem[] {
    return this.codeSystems.get(system)?.resources ?? [];
  }

  /**
   * Is system#code in the value set? Like $validate-code: `result` is membership; a display that matches neither the
   * preferred term nor any designation (compared case-insensitively, whitespace collapsed) is a warning, as is an
   * inactive concept. It never throws for bad input.
   */
  validateCode(valueSetUrl: string, system: string, code: string, display?: string): ValidateCodeResult {
    const issues: TerminologyIssue[] = [];
    const vs = this.resolveValueSet(valueSetUrl);
    if (!vs) {
      issues.push({
        severity: 'error',
        code: 'not-found',
        reason: 'unknown-value-set',
        message: `Value set ${valueSetUrl} is not known to this server`,
      });
      return done(false, issues);
    }
    const shown = `${system}#${code}`;
    if (system === SNOMED_SYSTEM) {
      const check = checkSctid(code, 'concept');
      if (!check.valid) {
        issues.push({ severity: 'error', code: 'code-invalid', reason: 'invalid-code', message: check.message });
        return done(false, issues);
      }
    }
    const member = vs.index.get(system)?.get(code);
    if (!member) {
      const known = this.codeSystems.get(system)?.concepts.get(code);
      const about = known ? ` ('${known.display}')` : '';
      const systems = [...vs.index.keys()];
      const hint = vs.index.has(system) ? '' : ` (it holds codes from ${systems.join(', ') || 'no code system'})`;
      issues.push({
        severity: 'error',
        code: 'code-invalid',
        reason: 'not-in-value-set',
        message: `Code ${shown}${about} is not in value set ${vs.url}${hint}`,
      });
      return done(false, issues);
    }
    if (display !== undefined) {
      const wanted = norm(display);
      const texts = member.concept?.texts ?? [norm(member.display)];
      if (!texts.includes(wanted)) {
        issues.push({
          severity: 'warning',
          code: 'invalid',
          reason: 'invalid-display',
          message: `Display '${display}' for ${shown} does not match the preferred term '${member.display}'` +
            (member.concept?.designations.length ? ' or any designation' : ''),
        });
      }
    }
    if (member.inactive) {
      issues.push({
        severity: 'warning',
        code: 'business-rule',
        reason: 'inactive',
        message: `Code ${shown} ('${member.display}') is inactive`,
      });
    }
    return done(true, issues, member.display);
  }

  /** True iff system#code is a member of the value set (no display check). */
  isInValueSet(valueSetUrl: string, system: string, code: string): boolean {
    return this.resolveValueSet(valueSetUrl)?.index.get(system)?.has(code) ?? false;
  }

  /**
   * A ValueSet with `expansion` filled, like $expand, or undefined for an unknown value set. Throws
   * TerminologyUsageError for a negative or fractional count/offset.
   */
  expand(valueSetUrl: string, options: ExpandOptions = {}): fhir4.ValueSet | undefined {
    const vs = this.resolveValueSet(valueSetUrl);
    if (!vs) return undefined;
    const offset = options.offset ?? 0;
    const count = options.count;
    if (!Number.isInteger(offset) || offset < 0) throw new TerminologyUsageError(`offset must be a whole number >= 0, got ${offset}`);
    if (count !== undefined && (!Number.isInteger(count) || count < 0)) {
      throw new TerminologyUsageError(`count must be a whole number >= 0, got ${count}`);
    }
    const filter = options.filter?.trim() ?? '';
    const matching = filter ? vs.members.filter((m) => matches(m, filter)) : vs.members;
    const page = matching.slice(offset, count === undefined ? undefined : offset + count);
    const parameter: fhir4.ValueSetExpansionParameter[] = [];
    if (filter) parameter.push({ name: 'filter', valueString: filter });
    if (options.offset !== undefined) parameter.push({ name: 'offset', valueInteger: offset });
    if (count !== undefined) parameter.push({ name: 'count', valueInteger: count });
    for (const [system, version] of this.usedCodeSystems(vs)) {
      parameter.push({ name: 'used-codesystem', valueUri: version ? `${system}|${version}` : system });
    }
    const expansion: fhir4.ValueSetExpansion = { timestamp: this.loadedAt, total: matching.length, offset };
    if (parameter.length) expansion.parameter = parameter;
    if (page.length) {
      expansion.contains = page.map((m) => {
        const entry: fhir4.ValueSetExpansionContains = { system: m.system, code: m.code, display: m.display };
        if (m.version) entry.version = m.version;
        if (m.inactive) entry.inactive = true;
        return entry;
      });
    }
    const { compose: _compose, ...rest } = vs.resource;
    return { ...rest, resourceType: 'ValueSet', expansion };
  }

  /**
   * Like $subsumes, from the is-a facts in the bundle: 'subsumes' if a subsumes b (b is-a a, transitively),
   * 'subsumed-by' if a is-a b, 'equivalent' if the same code. Undefined if either code is not in the bundled code
   * system. Because SNOMED CT is bundled as a fragment, 'not-subsumed' means "not derivable from the bundled facts".
   */
  subsumes(a: string, b: string, system: string = SNOMED_SYSTEM): SubsumptionOutcome | undefined {
    const cs = this.codeSystems.get(system);
    if (!cs || !cs.concepts.has(a) || !cs.concepts.has(b)) return undefined;
    if (a === b) return 'equivalent';
    if (cs.ancestors.get(b)?.has(a)) return 'subsumes';
    if (cs.ancestors.get(a)?.has(b)) return 'subsumed-by';
    return 'not-subsumed';
  }

  /** Every ancestor of system#code known to the bundle (empty for unknown codes). */
  ancestors(code: string, system: string = SNOMED_SYSTEM): ReadonlySet<string> {
    return this.codeSystems.get(system)?.ancestors.get(code) ?? new Set<string>();
  }

  // ---- loading ---------------------------------------------------------------------------------------------------

  private resolveValueSet(canonical: string): ValueSetRecord | undefined {
    const bar = canonical.indexOf('|');
    const url = bar < 0 ? canonical : canonical.slice(0, bar);
    const version = bar < 0 ? undefined : canonical.slice(bar + 1);
    const vs = this.valueSets.get(url);
    if (!vs || (version !== undefined && version !== vs.version)) return undefined;
    return vs;
  }

  private usedCodeSystems(vs: ValueSetRecord): Map<string, string | undefined> {
    const used = new Map<string, string | undefined>();
    for (const m of vs.members) if (!used.has(m.system)) used.set(m.system, m.version);
    return used;
  }

  private addCodeSystem(file: string, cs: fhir4.CodeSystem): void {
    if (typeof cs.url !== 'string' || !cs.url) fail(file, 'CodeSystem.url is required');
    const snomed = cs.url === SNOMED_SYSTEM;
    let record = this.codeSystems.get(cs.url);
    if (record) {
      if (record.version !== cs.version) {
        fail(file, `CodeSystem ${cs.url} version ${cs.version} differs from ${record.version} in ${record.files.join(', ')}`);
      }
    } else {
      record = {
        url: cs.url,
        version: cs.version,
        content: cs.content,
        concepts: new Map(),
        files: [],
        resources: [],
        ancestors: new Map(),
      };
      this.codeSystems.set(cs.url, record);
    }
    record.files.push(file);
    record.resources.push(cs);
    const rec = record;

    const visit = (concepts: unknown, nestingParent: string | undefined, where: string): void => {
      if (concepts === undefined) return;
      if (!Array.isArray(concepts)) fail(file, `${where} must be an array`);
      concepts.forEach((raw: unknown, i: number) => {
        const at = `${where}[${i}]`;
        if (!isObject(raw)) fail(file, `${at} must be an object`);
        const concept = raw as unknown as fhir4.CodeSystemConcept;
        const code = snomed ? checkSnomedConcept(file, `${at}.code`, concept.code) : concept.code;
        if (typeof code !== 'string' || !code) fail(file, `${at}.code is required`);
        if (rec.concepts.has(code)) fail(file, `${at}: code ${code} appears twice in ${cs.url}`, code);
        if (typeof concept.display !== 'string' || !concept.display.trim()) {
          fail(file, `${at} (${code}): display is required in bundled terminology`, code);
        }
        const parents: string[] = nestingParent ? [nestingParent] : [];
        let inactive = false;
        (concept.property ?? []).forEach((p, j) => {
          const pat = `${at}.property[${j}] (${code})`;
          if (p.code === 'parent') {
            const parent = snomed ? checkSnomedConcept(file, `${pat} parent`, p.valueCode) : p.valueCode;
            if (typeof parent !== 'string' || !parent) fail(file, `${pat}: parent needs valueCode`, code);
            if (parent === code) fail(file, `${pat}: ${code} is its own parent`, code);
            if (!parents.includes(parent)) parents.push(parent);
          } else if (p.code === 'inactive') {
            if (typeof p.valueBoolean !== 'boolean') fail(file, `${pat}: inactive needs valueBoolean`, code);
            inactive = p.valueBoolean;
          }
        });
        const designations = concept.designation ?? [];
        let fsn: string | undefined;
        designations.forEach((d, j) => {
          const dat = `${at}.designation[${j}] (${code})`;
          if (typeof d.value !== 'string' || !d.value.trim()) fail(file, `${dat}: value is required`, code);
          if (d.use?.system === SNOMED_SYSTEM) checkSnomedConcept(file, `${dat}.use.code`, d.use.code);
          if (d.use?.system === SNOMED_SYSTEM && d.use.code === SNOMED_FSN_USE) {
            if (fsn !== undefined) fail(file, `${dat}: more than one fully specified name`, code);
            fsn = d.value;
          }
        });
        const texts = [...new Set([concept.display, ...designations.map((d) => d.value)].map(norm))];
        rec.concepts.set(code, {
          system: cs.url as string,
          ...(cs.version !== undefined ? { version: cs.version } : {}),
          code,
          display: concept.display,
          ...(fsn !== undefined ? { fsn } : {}),
          designations,
          parents,
          inactive,
          texts,
        });
        visit(concept.concept, code, `${at}.concept`);
      });
    };
    visit(cs.concept, undefined, 'concept');
  }

  private closeHierarchy(cs: CodeSystemRecord): void {
    const file = cs.files.join(', ');
    const done = new Map<string, Set<string>>();
    const walk = (code: string, trail: string[]): Set<string> => {
      const cached = done.get(code);
      if (cached) return cached;
      if (trail.includes(code)) fail(file, `is-a cycle in ${cs.url}: ${[...trail, code].join(' -> ')}`, code);
      const all = new Set<string>();
      for (const parent of cs.concepts.get(code)?.parents ?? []) {
        all.add(parent);
        for (const a of walk(parent, [...trail, code])) all.add(a);
      }
      done.set(code, all);
      return all;
    };
    for (const code of cs.concepts.keys()) cs.ancestors.set(code, walk(code, []));
  }

  private addValueSet(file: string, vs: fhir4.ValueSet): void {
    if (typeof vs.url !== 'string' || !vs.url) fail(file, 'ValueSet.url is required');
    if (vs.url.includes('|')) fail(file, `ValueSet.url ${vs.url} must not contain '|'`);
    const existing = this.valueSets.get(vs.url);
    if (existing) fail(file, `ValueSet ${vs.url} is also defined in ${existing.file}`);
    if (!isObject(vs.compose) || !Array.isArray(vs.compose.include)) fail(file, `ValueSet ${vs.url} needs compose.include`);
    this.valueSets.set(vs.url, { url: vs.url, version: vs.version, file, resource: vs, members: [], index: new Map() });
  }

  private expandRecord(vs: ValueSetRecord, expanding: Set<string>): void {
    if (vs.members.length || vs.index.size) return;
    if (expanding.has(vs.url)) fail(vs.file, `ValueSet ${vs.url} includes itself through valueSet imports`);
    expanding.add(vs.url);
    const compose = vs.resource.compose as fhir4.ValueSetCompose;
    const included: Member[] = [];
    const seen = new Set<string>();
    compose.include.forEach((inc, i) => {
      for (const m of this.evaluateInclude(vs, inc, `compose.include[${i}]`, expanding)) {
        const k = key(m.system, m.code);
        if (!seen.has(k)) {
          seen.add(k);
          included.push(m);
        }
      }
    });
    const excluded = new Set<string>();
    (compose.exclude ?? []).forEach((exc, i) => {
      for (const m of this.evaluateInclude(vs, exc, `compose.exclude[${i}]`, expanding)) excluded.add(key(m.system, m.code));
    });
    vs.members = included.filter((m) => !excluded.has(key(m.system, m.code)));
    for (const m of vs.members) {
      let bySystem = vs.index.get(m.system);
      if (!bySystem) vs.index.set(m.system, (bySystem = new Map()));
      bySystem.set(m.code, m);
    }
    expanding.delete(vs.url);
  }

  private evaluateInclude(
    vs: ValueSetRecord,
    inc: fhir4.ValueSetComposeInclude,
    where: string,
    expanding: Set<string>,
  ): Member[] {
    const file = vs.file;
    let fromSystem: Member[] | undefined;
    if (inc.system !== undefined) {
      const system = inc.system;
      const cs = this.codeSystems.get(system);
      if (cs && inc.version !== undefined && inc.version !== cs.version) {
        fail(file, `${where}: version ${inc.version} of ${system} is not bundled (bundled: ${cs.version})`);
      }
      if (inc.concept && inc.filter) fail(file, `${where}: use either concept or filter, not both`);
      if (inc.concept) {
        fromSystem = inc.concept.map((c, j) => {
          const at = `${where}.concept[${j}]`;
          const code = system === SNOMED_SYSTEM ? checkSnomedConcept(file, `${at}.code`, c.code) : c.code;
          if (typeof code !== 'string' || !code) fail(file, `${at}.code is required`);
          if (!cs) {
            if (typeof c.display !== 'string' || !c.display) fail(file, `${at} (${code}): display is required`, code);
            return { system, version: inc.version, code, display: c.display, inactive: false };
          }
          const concept = cs.concepts.get(code);
          if (!concept) fail(file, `${at}: code ${code} is not in the bundled ${system} code system (${cs.files.join(', ')})`, code);
          if (c.display !== undefined && !concept.texts.includes(norm(c.display))) {
            fail(file, `${at}: display '${c.display}' for ${code} does not match the bundled code system ('${concept.display}')`, code);
          }
          return memberOf(concept);
        });
      } else {
        if (!cs) fail(file, `${where}: cannot enumerate ${system}: it is not bundled`);
        const all = [...cs.concepts.values()];
        let selected = all;
        (inc.filter ?? []).forEach((f, j) => {
          const at = `${where}.filter[${j}]`;
          if (f.property !== 'concept' || (f.op !== 'is-a' && f.op !== 'descendent-of')) {
            fail(file, `${at}: only 'concept is-a' and 'concept descendent-of' filters are supported, got '${f.property} ${f.op}'`);
          }
          if (system === SNOMED_SYSTEM) checkSnomedConcept(file, `${at}.value`, f.value);
          if (!cs.concepts.has(f.value)) fail(file, `${at}: ${f.value} is not in the bundled ${system} code system`, f.value);
          selected = selected.filter(
            (c) => (f.op === 'is-a' && c.code === f.value) || (cs.ancestors.get(c.code)?.has(f.value) ?? false),
          );
        });
        fromSystem = selected.map(memberOf);
      }
    }
    let result = fromSystem;
    (inc.valueSet ?? []).forEach((canonical, j) => {
      const imported = this.resolveValueSet(canonical);
      if (!imported) fail(file, `${where}.valueSet[${j}]: value set ${canonical} is not bundled`);
      this.expandRecord(imported, expanding);
      result = result === undefined ? imported.members : result.filter((m) => imported.index.get(m.system)?.has(m.code));
    });
    if (result === undefined) fail(file, `${where}: needs system or valueSet`);
    return result;
  }
}

function memberOf(concept: ConceptRecord): Member {
  return {
    system: concept.system,
    ...(concept.version !== undefined ? { version: concept.version } : {}),
    code: concept.code,
    display: concept.display,
    inactive: concept.inactive,
    concept,
  };
}

function matches(m: Member, filter: string): boolean {
  if (m.code === filter) return true;
  const texts = m.concept?.texts ?? [norm(m.display)];
  const wanted = norm(filter);
  if (texts.some((t) => t.includes(wanted))) return true;
  const tokens = words(filter);
  if (!tokens.length) return false;
  return texts.some((t) => {
    const have = words(t);
    return tokens.every((tok) => have.some((w) => w.startsWith(tok)));
  });
}

function done(result: boolean, issues: TerminologyIssue[], display?: string): ValidateCodeResult {
  return {
    result,
    ...(issues.length ? { message: issues.map((i) => i.message).join('; ') } : {}),
    ...(display !== undefined ? { display } : {}),
    issues,
  };
}

/**
 * Reads every *.json in the terminology folder (sorted, so load order and errors are stable) and builds the
 * Terminology. Throws TerminologyLoadError, naming the file (and code), on any bad content. Call once at start-up.
 */
export function loadTerminology(options: LoadOptions = {}): Terminology {
  const dir = options.dir ?? defaultTerminologyDir();
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
  } catch (err) {
    throw new TerminologyLoadError(dir, `cannot read the terminology folder: ${(err as Error).message}`);
  }
  if (!names.length) throw new TerminologyLoadError(dir, 'no *.json terminology files found');
  const label = (name: string): string => `${path.basename(dir)}/${name}`;
  const resources = names.map((name) => ({ file: label(name), resource: readJson(path.join(dir, name), label(name)) }));
  return new Terminology(resources);
}

let shared: Terminology | undefined;

/** The bundled terminology, loaded on first call; call it during start-up so loading never happens mid-request. */
export function getTerminology(): Terminology {
  shared ??= loadTerminology();
  return shared;
}
