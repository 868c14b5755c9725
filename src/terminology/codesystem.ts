/**
 * The bundled terminology: the CodeSystems and ValueSets in the top-level terminology/ folder and its subfolders
 * (terminology/r4/, terminology/uk-core/), loaded and checked once at start-up (DESIGN: terminology is local and
 * bundled; validators compiled once, never evicted).
 *
 * On load every SNOMED CT code (concepts, parents, designation uses, value-set members, filter values) must pass the
 * SCTID check (Verhoeff check digit, partition, namespace length); a bad id stops loading with an error naming the id
 * and file. Value sets are expanded at load, so lookups on the request path are map reads.
 *
 * Not every value set can be expanded locally: UK Core binds SNOMED CT ECL constraints (`descendantOrSelfOf
 * 71388002`) that need the whole of SNOMED CT, and some base value sets are whole external code systems (BCP-13 MIME
 * types, ISO 4217 currencies). Such a value set still loads. Its record says which code systems are "open" (members
 * beyond those known locally may exist) and why; for a code from an open system that is not a known member,
 * validateCode answers "cannot check" instead of a false "not in value set". Known members are always certain (the
 * fragment's stated is-a facts, explicit concepts, the publisher's own shipped expansion).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { checkSctid } from './sctid';

export const SNOMED_SYSTEM = 'http://snomed.info/sct';
/** Description type "Fully specified name", the designation use for an FSN. */
export const SNOMED_FSN_USE = '900000000000003001';
/** Description type "Synonym", the designation use for a synonym (including the preferred term). */
export const SNOMED_SYNONYM_USE = '900000000000013009';
/** R4 extension on ValueSet.expansion: the expansion is incomplete; codes not listed may still be members. */
export const VALUESET_UNCLOSED = 'http://hl7.org/fhir/StructureDefinition/valueset-unclosed';

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
  /** CodeSystem.concept.definition, where the code system gives one. */
  readonly definition?: string;
  /** The fully specified name, where the bundle has one. */
  readonly fsn?: string;
  readonly designations: readonly fhir4.CodeSystemConceptDesignation[];
  /** Direct is-a parents known to the bundle (for a fragment: absent facts are unknown, not false). */
  readonly parents: readonly string[];
  readonly inactive: boolean;
}

/** Why validateCode / checkBinding said what they did; stable strings the validator can branch on. */
export type ValidateCodeReason =
  /** The value set is not bundled: nothing can be said. */
  | 'unknown-value-set'
  /** Not a code at all: a malformed SCTID, or a code a complete bundled code system does not define. */
  | 'invalid-code'
  | 'not-in-value-set'
  | 'invalid-display'
  | 'inactive'
  /** The value set cannot be expanded locally for this code's system (and the code is not a known member). */
  | 'not-expandable'
  /** A Coding without a system (checkBinding). */
  | 'no-system'
  /** No code given (validateCode), a Coding without a code, or a CodeableConcept without codings (checkBinding). */
  | 'no-code';

export interface TerminologyIssue {
  readonly severity: 'error' | 'warning' | 'information';
  /** An OperationOutcome issue type, ready for issue.code. */
  readonly code: fhir4.OperationOutcomeIssue['code'];
  readonly reason: ValidateCodeReason;
  readonly message: string;
}

export interface ValidateCodeResult {
  /** True iff the code is a member of the value set (display and inactive problems are warnings only). */
  readonly result: boolean;
  /**
   * False when membership could not be decided locally: the value set is unknown, or it cannot be expanded for
   * this code's system. `result` is then false but is NOT a verdict; issues[0].reason says which case it is.
   */
  readonly checked: boolean;
  /** All issue messages joined, as in the $validate-code output parameter. */
  readonly message?: string;
  /** The preferred display for the code, when it is a member. */
  readonly display?: string;
  /** The system of the member found (useful when validateCode was called without a system). */
  readonly system?: string;
  readonly issues: readonly TerminologyIssue[];
}

export type BindingStrength = 'required' | 'extensible' | 'preferred' | 'example';

export interface BindingCheckOptions {
  /** Severity when a required binding's value set is not bundled. Default 'warning' (DESIGN: never a silent pass). */
  readonly unknownValueSet?: 'information' | 'warning' | 'error';
  /** Severity when a required binding's value set cannot be expanded locally for the code's system. Default 'warning'. */
  readonly cannotCheck?: 'information' | 'warning' | 'error';
}

export interface BindingCheckResult {
  /** 'member': some coding is in the value set; 'not-member': none is; 'cannot-check': undecidable locally. */
  readonly status: 'member' | 'not-member' | 'cannot-check';
  /** Issues to report, with severities already set for the binding strength. Empty means nothing to say. */
  readonly issues: readonly TerminologyIssue[];
}

export interface ExpandOptions {
  /** Text filter: every word must start a word of the display or a designation (case-insensitive), or be the code. */
  readonly filter?: string;
  /** Page size; 0 returns only the total. */
  readonly count?: number;
  readonly offset?: number;
  /** Leave out inactive members. */
  readonly activeOnly?: boolean;
}

/** The $subsumes outcome codes (http://hl7.org/fhir/concept-subsumption-outcome). */
export type SubsumptionOutcome = 'equivalent' | 'subsumes' | 'subsumed-by' | 'not-subsumed';

export interface LoadOptions {
  /** Folder holding the bundled JSON (read with its subfolders); defaults to <package root>/terminology. */
  readonly dir?: string;
}

/** What the loader could make of a value set. */
export interface ValueSetInfo {
  readonly url: string;
  readonly version?: string;
  /** The file it came from, relative to the terminology folder's parent (e.g. terminology/r4/ValueSet-x.json). */
  readonly file: string;
  /** True when every member is known locally, so a code that is not a member is definitely not in the value set. */
  readonly complete: boolean;
  /** 'compose': evaluated from compose over bundled code systems; 'expansion': the publisher's shipped expansion. */
  readonly source: 'compose' | 'expansion';
  /** How many members are known locally. */
  readonly knownMembers: number;
  /** Code systems ('*' = any) for which membership beyond the known members cannot be decided, and why. */
  readonly open: readonly { readonly system: string; readonly reason: string }[];
}

export interface BundledResource {
  readonly file: string;
  readonly resource: fhir4.CodeSystem | fhir4.ValueSet;
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

/** A set of codes, known in part: `members` are certain; in `open` systems ('*' = any) there may be more. */
interface Part {
  members: Member[];
  index: Map<string, Map<string, Member>>;
  /** system (or '*') -> why its membership cannot be decided locally. */
  open: Map<string, string>;
}

interface ValueSetRecord extends Part {
  readonly url: string;
  readonly version?: string;
  readonly file: string;
  readonly resource: fhir4.ValueSet;
  source: 'compose' | 'expansion';
  expanded: boolean;
  /** The shipped expansion's timestamp, when the members come from it. */
  expansionTimestamp?: string;
}

const ANY = '*';
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

function emptyPart(): Part {
  return { members: [], index: new Map(), open: new Map() };
}

function indexMembers(part: Part): void {
  part.index = new Map();
  for (const m of part.members) {
    let bySystem = part.index.get(m.system);
    if (!bySystem) part.index.set(m.system, (bySystem = new Map()));
    bySystem.set(m.code, m);
  }
}

function partOf(members: Member[], open: Map<string, string> = new Map()): Part {
  const part: Part = { members, index: new Map(), open };
  indexMembers(part);
  return part;
}

/** Why `part` cannot decide membership for `system`, or undefined if it can. */
function openReason(part: Part, system: string | undefined): string | undefined {
  if (system !== undefined && part.open.has(system)) return part.open.get(system);
  if (part.open.has(ANY)) return part.open.get(ANY);
  if (system === undefined && part.open.size) return [...part.open.values()][0];
  return undefined;
}

export class Terminology {
  /** When the bundle was loaded: the expansion timestamp. */
  readonly loadedAt: string;
  /** The files read, relative to the terminology folder's parent (e.g. terminology/r4/CodeSystem-x.json). */
  readonly files: readonly string[];
  private readonly bundled: BundledResource[] = [];
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
      this.bundled.push({ file, resource: resource as unknown as fhir4.CodeSystem | fhir4.ValueSet });
    }
    for (const cs of this.codeSystems.values()) this.closeHierarchy(cs);
    const expanding = new Set<string>();
    for (const vs of this.valueSets.values()) this.expandRecord(vs, expanding);
  }

  // ---- queries -------------------------------------------------------------------------------------------------

  /** Every bundled CodeSystem and ValueSet resource, as shipped, with its file; in load order. */
  resources(): readonly BundledResource[] {
    return this.bundled;
  }

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

  /** The CodeSystem.version of the bundled code system, or undefined. */
  codeSystemVersion(system: string): string | undefined {
    return this.codeSystems.get(system)?.version;
  }

  /** Canonical urls of the bundled code systems. */
  codeSystemUrls(): string[] {
    return [...this.codeSystems.keys()];
  }

  /** True if a ValueSet with this canonical url (optionally `url|version`) is bundled. */
  hasValueSet(canonical: string): boolean {
    return this.resolveValueSet(canonical) !== undefined;
  }

  /** Canonical urls of the bundled value sets. */
  valueSetUrls(): string[] {
    return [...this.valueSets.keys()];
  }

  /** The bundled ValueSet resource (as shipped, without our expansion), for `url` or `url|version`. */
  getValueSet(canonical: string): fhir4.ValueSet | undefined {
    return this.resolveValueSet(canonical)?.resource;
  }

  /** The bundled CodeSystem resources for a url (one per file). */
  getCodeSystems(system: string): readonly fhir4.CodeSystem[] {
    return this.codeSystems.get(system)?.resources ?? [];
  }

  /** What the loader could make of a value set (complete or not, and why not), or undefined if not bundled. */
  valueSetInfo(canonical: string): ValueSetInfo | undefined {
    const vs = this.resolveValueSet(canonical);
    if (!vs) return undefined;
    return {
      url: vs.url,
      ...(vs.version !== undefined ? { version: vs.version } : {}),
      file: vs.file,
      complete: vs.open.size === 0,
      source: vs.source,
      knownMembers: vs.members.length,
      open: [...vs.open].map(([system, reason]) => ({ system, reason })),
    };
  }

  /**
   * Is system#code in the value set? Like $validate-code: `result` is membership; a display that matches neither the
   * preferred term nor any designation (compared case-insensitively, whitespace collapsed) is a warning, as is an
   * inactive concept. Without a system (a `code` element, whose system is implied by the binding) any system of the
   * value set may hold the code. It never throws for bad input.
   *
   * When the value set cannot be expanded locally for the code's system and the code is not a known member, the
   * answer is `checked: false` with a 'not-expandable' warning, not a false "not in value set".
   */
  validateCode(valueSetUrl: string, system: string | undefined, code: string | undefined, display?: string): ValidateCodeResult {
    const issues: TerminologyIssue[] = [];
    const vs = this.resolveValueSet(valueSetUrl);
    if (!vs) {
      issues.push({
        severity: 'error',
        code: 'not-found',
        reason: 'unknown-value-set',
        message: `Value set ${valueSetUrl} is not known to this server`,
      });
      return done(false, false, issues);
    }
    if (typeof code !== 'string' || code === '') {
      issues.push({ severity: 'error', code: 'required', reason: 'no-code', message: `No code given to check against value set ${vs.url}` });
      return done(false, true, issues);
    }
    const shown = system === undefined ? `'${code}'` : `${system}#${code}`;
    if (system === SNOMED_SYSTEM) {
      const check = checkSctid(code, 'concept');
      if (!check.valid) {
        issues.push({ severity: 'error', code: 'code-invalid', reason: 'invalid-code', message: check.message });
        return done(false, true, issues);
      }
    }
    const member = system === undefined ? this.findByCode(vs, code) : vs.index.get(system)?.get(code);
    if (!member) {
      const cs = system === undefined ? undefined : this.codeSystems.get(system);
      if (cs && cs.content === 'complete' && !cs.concepts.has(code)) {
        issues.push({
          severity: 'error',
          code: 'code-invalid',
          reason: 'invalid-code',
          message: `Unknown code ${shown}: code system ${system}${cs.version ? ` version ${cs.version}` : ''} does not define it`,
        });
        return done(false, true, issues);
      }
      const unsure = openReason(vs, system);
      if (unsure !== undefined) {
        issues.push({
          severity: 'warning',
          code: 'not-supported',
          reason: 'not-expandable',
          message: `Cannot check whether ${shown} is in value set ${vs.url}: ${unsure}`,
        });
        return done(false, false, issues);
      }
      const known = cs?.concepts.get(code);
      const about = known ? ` ('${known.display}')` : '';
      const systems = [...vs.index.keys()];
      const hint = system === undefined || vs.index.has(system) ? '' : ` (it holds codes from ${systems.join(', ') || 'no code system'})`;
      issues.push({
        severity: 'error',
        code: 'code-invalid',
        reason: 'not-in-value-set',
        message: `Code ${shown}${about} is not in value set ${vs.url}${hint}`,
      });
      return done(false, true, issues);
    }
    const found = `${member.system}#${code}`;
    if (display !== undefined) {
      const wanted = norm(display);
      const texts = member.concept?.texts ?? [norm(member.display)];
      if (!texts.includes(wanted)) {
        issues.push({
          severity: 'warning',
          code: 'invalid',
          reason: 'invalid-display',
          message: `Display '${display}' for ${found} does not match the preferred term '${member.display}'` +
            (member.concept?.designations.length ? ' or any designation' : ''),
        });
      }
    }
    if (member.inactive) {
      issues.push({
        severity: 'warning',
        code: 'business-rule',
        reason: 'inactive',
        message: `Code ${found} ('${member.display}') is inactive`,
      });
    }
    return { ...done(true, true, issues, member.display), system: member.system };
  }

  /**
   * Checks a bound element's value against its binding (http://hl7.org/fhir/R4/terminologies.html#strength) and
   * returns the issues to report, severities set:
   *
   * - `value` is a string for a `code` element (system implied), or a Coding, or a CodeableConcept (a member if any
   *   coding is; other codings may be from anywhere).
   * - required: not a member -> error; a CodeableConcept with no coding, or a Coding with no system/code -> error.
   * - extensible: not a member -> warning (text-only CodeableConcepts are allowed).
   * - preferred: not a member -> information. example: nothing.
   * - value set not bundled, or not locally expandable for the code's system: required -> options.unknownValueSet /
   *   options.cannotCheck (default warning), extensible -> information, otherwise nothing. Never an error by default
   *   and never a silent pass for a required binding.
   * - malformed SNOMED CT ids and codes a complete bundled code system does not define are errors at any strength but
   *   example; wrong displays and inactive codes are warnings.
   */
  checkBinding(
    valueSet: string,
    strength: BindingStrength,
    value: string | fhir4.Coding | fhir4.CodeableConcept,
    options: BindingCheckOptions = {},
  ): BindingCheckResult {
    const isConcept = typeof value !== 'string' && ('coding' in value || 'text' in value);
    const codings: fhir4.Coding[] =
      typeof value === 'string' ? [] : isConcept ? ((value as fhir4.CodeableConcept).coding ?? []) : [value as fhir4.Coding];
    const results: { coding?: fhir4.Coding; r: ValidateCodeResult }[] = [];
    if (typeof value === 'string') {
      results.push({ r: this.validateCode(valueSet, undefined, value) });
    } else {
      for (const coding of codings) {
        if (typeof coding.code !== 'string' || typeof coding.system !== 'string') continue;
        results.push({ coding, r: this.validateCode(valueSet, coding.system, coding.code, coding.display) });
      }
    }
    const severityFor = (kind: 'not-member' | 'unchecked' | 'unknown-vs'): TerminologyIssue['severity'] | undefined => {
      if (strength === 'example') return undefined;
      if (kind === 'not-member') return strength === 'required' ? 'error' : strength === 'extensible' ? 'warning' : 'information';
      if (strength === 'required') return kind === 'unknown-vs' ? (options.unknownValueSet ?? 'warning') : (options.cannotCheck ?? 'warning');
      return strength === 'extensible' ? 'information' : undefined;
    };
    const withSeverity = (issue: TerminologyIssue, severity: TerminologyIssue['severity'] | undefined): TerminologyIssue[] =>
      severity ? [{ ...issue, severity }] : [];
    const invalid = strength === 'example' ? [] : results.flatMap(({ r }) => r.issues.filter((i) => i.reason === 'invalid-code'));

    if (!this.resolveValueSet(valueSet)) {
      const issue: TerminologyIssue = {
        severity: 'warning',
        code: 'not-found',
        reason: 'unknown-value-set',
        message: `Cannot check the ${strength} binding: value set ${valueSet} is not known to this server`,
      };
      return { status: 'cannot-check', issues: [...invalid, ...withSeverity(issue, severityFor('unknown-vs'))] };
    }
    const hit = results.find(({ r }) => r.result);
    if (hit) {
      const extra = strength === 'example' ? [] : hit.r.issues.filter((i) => i.reason === 'invalid-display' || i.reason === 'inactive');
      return { status: 'member', issues: [...invalid.filter((i) => !hit.r.issues.includes(i)), ...extra] };
    }
    const unchecked = results.find(({ r }) => !r.checked);
    if (unchecked) {
      return { status: 'cannot-check', issues: [...invalid, ...withSeverity(unchecked.r.issues[0], severityFor('unchecked'))] };
    }
    const vsUrl = this.resolveValueSet(valueSet)?.url ?? valueSet;
    if (results.length === 0) {
      // Nothing checkable: a Coding without system or code, or a CodeableConcept without a usable coding.
      if (isConcept && strength !== 'required') return { status: 'not-member', issues: [] };
      const noSystem = codings.find((c) => typeof c.code === 'string' && typeof c.system !== 'string');
      const issue: TerminologyIssue = noSystem
        ? {
            severity: 'error',
            code: 'code-invalid',
            reason: 'no-system',
            message: `Coding '${noSystem.code}' has no system, so it cannot be checked against value set ${vsUrl}`,
          }
        : {
            severity: 'error',
            code: 'code-invalid',
            reason: 'no-code',
            message: isConcept ? `No coding from value set ${vsUrl}: the CodeableConcept has no coded value` : `The Coding has no code, so it cannot be in value set ${vsUrl}`,
          };
      return { status: 'not-member', issues: withSeverity(issue, severityFor('not-member')) };
    }
    const notMember = results.map(({ r }) => r.issues[0]).find((i) => i.reason === 'not-in-value-set') ?? results[0].r.issues[0];
    const message =
      results.length > 1
        ? `None of the codings (${results.map(({ coding }) => `${coding?.system}#${coding?.code}`).join(', ')}) is in value set ${vsUrl}`
        : notMember.message;
    // invalid-code issues are already in `invalid`; anything else (not in value set, no code) is graded by strength.
    const issues = notMember.reason === 'invalid-code' ? [] : withSeverity({ ...notMember, message }, severityFor('not-member'));
    return { status: 'not-member', issues: [...invalid, ...issues] };
  }

  /** True iff system#code is a known member of the value set (no display check). */
  isInValueSet(valueSetUrl: string, system: string, code: string): boolean {
    return this.resolveValueSet(valueSetUrl)?.index.get(system)?.has(code) ?? false;
  }

  /**
   * A ValueSet with `expansion` filled, like $expand, or undefined for an unknown value set. A value set that cannot
   * be expanded locally gives its known members with the R4 `valueset-unclosed` extension set on the expansion.
   * Throws TerminologyUsageError for a negative or fractional count/offset.
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
    let matching = filter ? vs.members.filter((m) => matches(m, filter)) : vs.members;
    if (options.activeOnly) matching = matching.filter((m) => !m.inactive);
    const page = matching.slice(offset, count === undefined ? undefined : offset + count);
    const parameter: fhir4.ValueSetExpansionParameter[] = [];
    if (filter) parameter.push({ name: 'filter', valueString: filter });
    if (options.activeOnly) parameter.push({ name: 'activeOnly', valueBoolean: true });
    if (options.offset !== undefined) parameter.push({ name: 'offset', valueInteger: offset });
    if (count !== undefined) parameter.push({ name: 'count', valueInteger: count });
    for (const [system, version] of this.usedCodeSystems(vs)) {
      parameter.push({ name: 'used-codesystem', valueUri: version ? `${system}|${version}` : system });
    }
    const expansion: fhir4.ValueSetExpansion = { timestamp: this.loadedAt, total: matching.length, offset };
    if (vs.open.size) expansion.extension = [{ url: VALUESET_UNCLOSED, valueBoolean: true }];
    if (parameter.length) expansion.parameter = parameter;
    if (page.length) {
      expansion.contains = page.map((m) => {
        const entry: fhir4.ValueSetExpansionContains = { system: m.system, code: m.code, display: m.display };
        if (m.version) entry.version = m.version;
        if (m.inactive) entry.inactive = true;
        return entry;
      });
    }
    // compose and the narrative (which describes compose) give way to the expansion.
    const { compose: _compose, expansion: _shipped, text: _text, ...rest } = vs.resource;
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
    if (!vs || (version !== undefined && version !== '' && version !== vs.version)) return undefined;
    return vs;
  }

  /** A member with this code from any system of the value set (for `code` elements, whose system is implied). */
  private findByCode(vs: ValueSetRecord, code: string): Member | undefined {
    for (const bySystem of vs.index.values()) {
      const m = bySystem.get(code);
      if (m) return m;
    }
    return undefined;
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
          } else if (p.code === 'status' && (p.valueCode === 'retired' || p.valueCode === 'inactive')) {
            inactive = true;
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
          ...(typeof concept.definition === 'string' ? { definition: concept.definition } : {}),
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
    this.valueSets.set(vs.url, {
      url: vs.url,
      version: vs.version,
      file,
      resource: vs,
      members: [],
      index: new Map(),
      open: new Map(),
      source: 'compose',
      expanded: false,
    });
  }

  private expandRecord(vs: ValueSetRecord, expanding: Set<string>): void {
    if (vs.expanded) return;
    if (expanding.has(vs.url)) fail(vs.file, `ValueSet ${vs.url} includes itself through valueSet imports`);
    expanding.add(vs.url);
    const compose = vs.resource.compose as fhir4.ValueSetCompose;
    const included: Member[] = [];
    const seen = new Set<string>();
    const open = new Map<string, string>();
    compose.include.forEach((inc, i) => {
      const part = this.evaluateInclude(vs, inc, `compose.include[${i}]`, expanding);
      for (const m of part.members) {
        const k = key(m.system, m.code);
        if (!seen.has(k)) {
          seen.add(k);
          included.push(m);
        }
      }
      for (const [system, reason] of part.open) if (!open.has(system)) open.set(system, reason);
    });
    const excluded = new Set<string>();
    const uncertain = new Map<string, string>();
    (compose.exclude ?? []).forEach((exc, i) => {
      const part = this.evaluateInclude(vs, exc, `compose.exclude[${i}]`, expanding);
      for (const m of part.members) excluded.add(key(m.system, m.code));
      for (const [system, reason] of part.open) uncertain.set(system, `compose.exclude[${i}] cannot be evaluated: ${reason}`);
    });
    // An exclusion we cannot evaluate makes the affected systems' members uncertain.
    vs.members = included.filter(
      (m) => !excluded.has(key(m.system, m.code)) && !uncertain.has(m.system) && !uncertain.has(ANY),
    );
    for (const [system, reason] of uncertain) open.set(system, reason);
    vs.open = open;
    if (open.size) this.useShippedExpansion(vs);
    indexMembers(vs);
    vs.expanded = true;
    expanding.delete(vs.url);
  }

  /**
   * A value set we cannot expand from its compose may ship the publisher's expansion (UK Core's do). Its members from
   * the systems we could not evaluate are taken as certain; if the publisher marked it complete (no `valueset-unclosed`, total = listed) the value set is closed,
   * except for SNOMED CT, whose releases move on after the expansion was made.
   */
  private useShippedExpansion(vs: ValueSetRecord): void {
    const expansion = vs.resource.expansion;
    if (!isObject(expansion) || !Array.isArray(expansion.contains)) return;
    const file = vs.file;
    const seen = new Set(vs.members.map((m) => key(m.system, m.code)));
    const added: Member[] = [];
    let listed = 0;
    const walk = (entries: fhir4.ValueSetExpansionContains[], where: string): void => {
      entries.forEach((e, i) => {
        const at = `${where}[${i}]`;
        if (Array.isArray(e.contains)) walk(e.contains, `${at}.contains`);
        if (e.abstract === true || typeof e.system !== 'string' || typeof e.code !== 'string') return;
        const code = e.system === SNOMED_SYSTEM ? checkSnomedConcept(file, `${at}.code`, e.code) : e.code;
        listed++;
        // Systems the compose evaluated exactly keep the compose's answer (the expansion may be of older versions).
        if (!vs.open.has(e.system) && !vs.open.has(ANY)) return;
        if (seen.has(key(e.system, code))) return;
        seen.add(key(e.system, code));
        const concept = this.codeSystems.get(e.system)?.concepts.get(code);
        if (concept) {
          added.push(memberOf(concept));
        } else {
          const display = typeof e.display === 'string' && e.display ? e.display : code;
          added.push({
            system: e.system,
            ...(typeof e.version === 'string' ? { version: e.version } : {}),
            code,
            display,
            inactive: e.inactive === true,
          });
        }
      });
    };
    walk(expansion.contains, 'expansion.contains');
    vs.members = [...vs.members, ...added];
    vs.source = 'expansion';
    if (typeof expansion.timestamp === 'string') vs.expansionTimestamp = expansion.timestamp;
    const unclosed = (expansion.extension ?? []).some((x) => x.url === VALUESET_UNCLOSED && x.valueBoolean === true);
    const whole = !unclosed && (expansion.offset ?? 0) === 0 && (expansion.total === undefined || expansion.total <= listed);
    if (!whole) return;
    for (const system of [...vs.open.keys()]) {
      if (system === SNOMED_SYSTEM) {
        vs.open.set(system, `${vs.open.get(system)}; the shipped expansion (${expansion.timestamp ?? 'undated'}) may be out of date for SNOMED CT`);
      } else {
        vs.open.delete(system);
      }
    }
  }

  private evaluateInclude(vs: ValueSetRecord, inc: fhir4.ValueSetComposeInclude, where: string, expanding: Set<string>): Part {
    const file = vs.file;
    const parts: Part[] = [];
    if (inc.system !== undefined) {
      const system = inc.system;
      const cs = this.codeSystems.get(system);
      if (cs && inc.version !== undefined && inc.version !== cs.version) {
        fail(file, `${where}: version ${inc.version} of ${system} is not bundled (bundled: ${cs.version})`);
      }
      if (inc.concept && inc.filter) fail(file, `${where}: use either concept or filter, not both`);
      if (inc.concept) {
        const members = inc.concept.map((c, j) => {
          const at = `${where}.concept[${j}]`;
          const code = system === SNOMED_SYSTEM ? checkSnomedConcept(file, `${at}.code`, c.code) : c.code;
          if (typeof code !== 'string' || !code) fail(file, `${at}.code is required`);
          if (!cs) {
            if (typeof c.display !== 'string' || !c.display) fail(file, `${at} (${code}): display is required`, code);
            const m: Member = { system, ...(inc.version !== undefined ? { version: inc.version } : {}), code, display: c.display, inactive: false };
            return m;
          }
          const concept = cs.concepts.get(code);
          if (!concept) fail(file, `${at}: code ${code} is not in the bundled ${system} code system (${cs.files.join(', ')})`, code);
          if (c.display !== undefined && !concept.texts.includes(norm(c.display))) {
            fail(file, `${at}: display '${c.display}' for ${code} does not match the bundled code system ('${concept.display}')`, code);
          }
          return memberOf(concept);
        });
        parts.push(partOf(members));
      } else if (!cs) {
        const what = inc.filter?.length ? `filter ${describeFilters(inc.filter)} on` : 'all of';
        parts.push(partOf([], new Map([[system, `${where} takes ${what} ${system}, which is not bundled`]])));
      } else {
        parts.push(this.evaluateFilters(file, where, cs, inc.filter ?? []));
      }
    }
    (inc.valueSet ?? []).forEach((canonical, j) => {
      const imported = this.resolveValueSet(canonical);
      if (!imported) {
        parts.push(partOf([], new Map([[ANY, `${where}.valueSet[${j}] imports ${canonical}, which is not bundled`]])));
        return;
      }
      this.expandRecord(imported, expanding);
      parts.push(imported);
    });
    if (parts.length === 0) fail(file, `${where}: needs system or valueSet`);
    return intersect(parts);
  }

  /** The concepts of a bundled code system that pass every filter; a lower bound, and open, over a fragment. */
  private evaluateFilters(file: string, where: string, cs: CodeSystemRecord, filters: fhir4.ValueSetComposeIncludeFilter[]): Part {
    const snomed = cs.url === SNOMED_SYSTEM;
    const isA = (code: string, ancestor: string): boolean => code === ancestor || (cs.ancestors.get(code)?.has(ancestor) ?? false);
    const checkValue = (at: string, value: string): string => {
      if (snomed) checkSnomedConcept(file, `${at}.value`, value);
      if (cs.content === 'complete' && !cs.concepts.has(value)) fail(file, `${at}: ${value} is not in the bundled ${cs.url} code system`, value);
      return value;
    };
    let selected = [...cs.concepts.values()];
    let unevaluable: string | undefined;
    filters.forEach((f, j) => {
      if (unevaluable) return;
      const at = `${where}.filter[${j}]`;
      if (typeof f.value !== 'string') fail(file, `${at}: value is required`);
      const test = this.filterTest(f, at, cs, isA, checkValue);
      if (typeof test === 'string') unevaluable = `${at} (${f.property} ${f.op} ${f.value}) ${test}`;
      else selected = selected.filter((c) => test(c));
    });
    if (unevaluable) return partOf([], new Map([[cs.url, unevaluable]]));
    const open = new Map<string, string>();
    if (cs.content !== 'complete') {
      const what = filters.length ? `filter ${describeFilters(filters)}` : `all of ${cs.url}`;
      open.set(cs.url, `${where} takes ${what}, but ${cs.url} is bundled as a ${cs.content ?? 'partial'} code system (${cs.concepts.size} concepts), so only members it holds are known`);
    }
    return partOf(selected.map(memberOf), open);
  }

  /** A predicate for one compose filter, or a string saying why it cannot be evaluated here. */
  private filterTest(
    f: fhir4.ValueSetComposeIncludeFilter,
    at: string,
    cs: CodeSystemRecord,
    isA: (code: string, ancestor: string) => boolean,
    checkValue: (at: string, value: string) => string,
  ): ((c: ConceptRecord) => boolean) | string {
    const complete = cs.content === 'complete';
    if (f.property === 'concept' || f.property === 'code') {
      switch (f.op) {
        case 'is-a': {
          const v = checkValue(at, f.value);
          return (c) => isA(c.code, v);
        }
        case 'descendent-of': {
          const v = checkValue(at, f.value);
          return (c) => c.code !== v && isA(c.code, v);
        }
        case 'generalizes': {
          const v = checkValue(at, f.value);
          return (c) => isA(v, c.code);
        }
        case 'is-not-a': {
          if (!complete) return 'cannot be evaluated over a fragment: the missing is-a facts could put any code under it';
          const v = checkValue(at, f.value);
          return (c) => !isA(c.code, v);
        }
        case '=': {
          const v = checkValue(at, f.value);
          return (c) => c.code === v;
        }
        case 'in':
        case 'not-in': {
          const values = new Set(f.value.split(',').map((s) => checkValue(at, s.trim())));
          return f.op === 'in' ? (c) => values.has(c.code) : (c) => !values.has(c.code);
        }
        default:
          return `is not supported (only is-a, descendent-of, generalizes, is-not-a, =, in, not-in on concept)`;
      }
    }
    if (f.property === 'constraint' && f.op === '=' && cs.url === SNOMED_SYSTEM) {
      const terms = parseSimpleEcl(f.value);
      if (!terms) return 'is an ECL expression this server does not evaluate (only ids joined by OR, with descendantOf / descendantOrSelfOf / < / <<)';
      for (const t of terms) checkValue(at, t.id);
      return (c) => terms.some((t) => (t.self && c.code === t.id) || (t.descendants && c.code !== t.id && isA(c.code, t.id)));
    }
    if (f.property === 'inactive' && f.op === '=' && (f.value === 'true' || f.value === 'false')) {
      const wanted = f.value === 'true';
      return (c) => c.inactive === wanted;
    }
    return `is not supported by the local expander`;
  }
}

/** `A OR B OR ...` where each term is `[descendantOf|descendantOrSelfOf|<|<<] SCTID [|term|]`; undefined if not that. */
function parseSimpleEcl(ecl: string): { id: string; self: boolean; descendants: boolean }[] | undefined {
  const terms = ecl.trim().replace(/^\(\s*(.*)\s*\)$/s, '$1').split(/\s+OR\s+/i);
  const out: { id: string; self: boolean; descendants: boolean }[] = [];
  for (const term of terms) {
    const m = /^(descendantOrSelfOf|descendantOf|<<|<)?\s*(\d{6,18})\s*(\|[^|]*\|)?$/.exec(term.trim());
    if (!m) return undefined;
    const op = m[1];
    out.push({ id: m[2], self: op === undefined || op === '<<' || op === 'descendantOrSelfOf', descendants: op !== undefined });
  }
  return out;
}

function describeFilters(filters: fhir4.ValueSetComposeIncludeFilter[]): string {
  return filters.map((f) => `'${f.property} ${f.op} ${f.value}'`).join(' and ');
}

/** The intersection of parts (FHIR: an include's system and each imported value set all constrain it). */
function intersect(parts: Part[]): Part {
  if (parts.length === 1) return parts[0];
  const [first, ...rest] = parts;
  const members = first.members.filter((m) => rest.every((p) => p.index.get(m.system)?.has(m.code)));
  const systems = new Set<string>();
  for (const p of parts) {
    for (const s of p.open.keys()) systems.add(s);
    for (const s of p.index.keys()) systems.add(s);
  }
  const open = new Map<string, string>();
  for (const s of systems) {
    if (s === ANY) {
      if (parts.every((p) => p.open.has(ANY))) open.set(ANY, first.open.get(ANY) as string);
      continue;
    }
    const possible = parts.every((p) => p.open.has(s) || p.open.has(ANY) || p.index.has(s));
    const reason = parts.map((p) => openReason(p, s)).find((r) => r !== undefined);
    if (possible && reason !== undefined) open.set(s, reason);
  }
  return partOf(members, open);
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

function done(result: boolean, checked: boolean, issues: TerminologyIssue[], display?: string): ValidateCodeResult {
  return {
    result,
    checked,
    ...(issues.length ? { message: issues.map((i) => i.message).join('; ') } : {}),
    ...(display !== undefined ? { display } : {}),
    issues,
  };
}

/** Every *.json below `dir`, as paths relative to it with '/' separators, sorted (so load order is stable). */
function jsonFiles(dir: string, sub = ''): string[] {
  const here = path.join(dir, sub);
  const out: string[] = [];
  for (const entry of readdirSync(here, { withFileTypes: true })) {
    const rel = sub ? `${sub}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...jsonFiles(dir, rel));
    else if (entry.isFile() && entry.name.endsWith('.json')) out.push(rel);
  }
  return out.sort();
}

/**
 * Reads every *.json in the terminology folder and its subfolders (sorted, so load order and errors are stable) and
 * builds the Terminology. Throws TerminologyLoadError, naming the file (and code), on any bad content. Call once at
 * start-up.
 */
export function loadTerminology(options: LoadOptions = {}): Terminology {
  const dir = options.dir ?? defaultTerminologyDir();
  let names: string[];
  try {
    names = jsonFiles(dir);
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
