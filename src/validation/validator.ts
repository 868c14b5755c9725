import path from 'node:path';
import { shippedDir } from '../config/shipped';
import { getTerminology, SNOMED_SYSTEM, type ConceptDetails, type Terminology } from '../terminology/codesystem';
import { checkNhsNumber, NHS_NUMBER_SYSTEM } from '../terminology/nhs-number';
import { checkSctid } from '../terminology/sctid';
import { Definitions } from './definitions';
import { compileAllInvariants, type InvariantChecker } from './invariants';
import { compileSnapshot, linkDatatypes, ProfileChecker, type ElementRule, type PathRef, type ProfileContext } from './profile';
import { createStructureValidator, type StructureValidator } from './structure';
import type { ResourceValidator, ValidateOptions, ValidationIssue } from './types';

export interface ValidatorOptions {
  /** Severity for a code from a code system sp-bridge does not bundle, outside a required binding. */
  unknownCodeSystem?: 'warning' | 'information' | 'ignore';
  /** Where the shipped profiles are; defaults to the package's profiles/ folder. */
  profilesDir?: string;
}

/** The social prescribing profile each served type is validated against unless it claims another. */
export const DEFAULT_PROFILES: Record<string, string> = {
  Patient: 'https://fhir.sp-bridge.example/StructureDefinition/SPPatient',
  ServiceRequest: 'https://fhir.sp-bridge.example/StructureDefinition/SPReferral',
  CarePlan: 'https://fhir.sp-bridge.example/StructureDefinition/SPCarePlan',
  Observation: 'https://fhir.sp-bridge.example/StructureDefinition/SPOutcomeMeasure',
  Task: 'https://fhir.sp-bridge.example/StructureDefinition/SPTask',
};

const BASE = 'http://hl7.org/fhir/StructureDefinition/';

interface CompiledProfile {
  url: string;
  type: string;
  rules: ElementRule;
  checker: ProfileChecker;
  invariants: InvariantChecker;
}

/**
 * All four layers, compiled once at start-up: structure (R4 JSON schema), profile (snapshot rules),
 * invariants (FHIRPath constraints) and terminology (bundled SNOMED CT subset and code systems, NHS
 * numbers). `validate` never throws for bad input and reports every issue it finds.
 */
export class Validator implements ResourceValidator {
  private readonly profiles = new Map<string, CompiledProfile>();
  private readonly rulesByUrl = new Map<string, ElementRule>();
  /** Known members of every bound value set, so a valid code is confirmed with one set lookup. */
  private readonly members = new Map<string, { codes: Set<string>; pairs: Set<string> }>();
  /** Bound value sets the terminology does not have: a preferred or example binding to one never reports anything for codings. */
  private readonly unknownValueSets = new Set<string>();

  private constructor(
    private readonly structure: StructureValidator,
    private readonly definitions: Definitions,
    private readonly terminology: Terminology,
    private readonly options: ValidatorOptions,
  ) {
    for (const sd of definitions.all()) {
      if (sd.snapshot?.element?.length) this.rulesByUrl.set(sd.url, compileSnapshot(sd));
    }
    const context = this.context();
    linkDatatypes(this.rulesByUrl.values(), context);
    for (const sd of definitions.all()) {
      for (const el of sd.snapshot?.element ?? []) {
        const url = el.binding?.valueSet;
        if (url && !this.members.has(url)) this.indexMembers(url);
      }
    }
    // Every shipped resource type may turn up contained or in a Bundle: compile its constraints now, not on first use.
    const resourceProfiles = definitions.all().filter((sd) => sd.kind === 'resource' && this.rulesByUrl.has(sd.url));
    const invariants = compileAllInvariants(
      resourceProfiles,
      (code) => definitions.base(code) ?? definitions.get(code),
      resourceProfiles.filter((sd) => sd.derivation === 'specialization').map((sd) => sd.type),
    );
    for (const sd of definitions.all()) {
      const rules = this.rulesByUrl.get(sd.url);
      if (!rules || sd.kind !== 'resource') continue;
      this.profiles.set(sd.url, {
        url: sd.url,
        type: sd.type,
        rules,
        checker: new ProfileChecker(rules, context),
        // A type may be a profile of a datatype (SimpleQuantity): its constraints apply too.
        invariants: invariants.get(sd.url)!,
      });
    }
  }

  private indexMembers(url: string): void {
    if (!this.terminology.hasValueSet(url)) this.unknownValueSets.add(url);
    const expansion = this.terminology.valueSetInfo(url) ? this.terminology.expand(url) : undefined;
    if (!expansion) return;
    const codes = new Set<string>();
    const pairs = new Set<string>();
    const add = (items: fhir4.ValueSetExpansionContains[] | undefined) => {
      for (const c of items ?? []) {
        if (c.code !== undefined && !c.inactive) {
          codes.add(c.code);
          pairs.add(`${c.system}|${c.code}`);
        }
        add(c.contains);
      }
    };
    add(expansion.expansion?.contains);
    this.members.set(url, { codes, pairs });
  }

  static load(options: ValidatorOptions = {}): Validator {
    const dir = options.profilesDir ?? shippedDir('profiles');
    const definitions = Definitions.load([path.join(dir, 'base', 'r4'), path.join(dir, 'base', 'uk-core'), dir]);
    return new Validator(createStructureValidator(), definitions, getTerminology(), options);
  }

  /** The shipped StructureDefinitions, served read-only at /StructureDefinition. */
  get structureDefinitions(): Definitions {
    return this.definitions;
  }

  hasProfile(url: string): boolean {
    return this.profiles.has(url.split('|')[0]);
  }

  validate(resource: unknown, options: ValidateOptions = {}): ValidationIssue[] {
    const issues: ValidationIssue[] = [];
    try {
      this.structure.validate(resource, issues, options.path);
      if (!isObject(resource) || typeof resource.resourceType !== 'string' || !this.structure.isResourceType(resource.resourceType)) {
        return issues;
      }
      const root = options.path ?? resource.resourceType;
      this.validateAgainstProfiles(resource, root, options.profile, issues);
      this.validateNested(resource, root, issues);
    } catch (err) {
      issues.push({
        severity: 'error',
        code: 'exception',
        diagnostics: `The validator could not finish: ${(err as Error).message}`,
        expression: options.path ?? 'Resource',
      });
    }
    return dedupe(issues);
  }

  private validateAgainstProfiles(resource: Record<string, unknown>, root: string, requested: string | undefined, issues: ValidationIssue[]): void {
    const type = resource.resourceType as string;
    const claimed = claimedProfiles(resource);
    const urls = requested ? [requested] : claimed.length ? claimed : [DEFAULT_PROFILES[type] ?? `${BASE}${type}`];
    for (const url of urls) {
      const profile = this.profiles.get(url.split('|')[0]);
      if (!profile) {
        if (url === `${BASE}${type}` && !requested && !claimed.length) continue; // base type without a shipped definition
        issues.push({
          severity: 'error',
          code: 'not-supported',
          diagnostics: `Unknown profile ${url}: sp-bridge has no StructureDefinition with that url (see GET /StructureDefinition)`,
          expression: claimed.length && !requested ? `${root}.meta.profile[${claimed.indexOf(url)}]` : root,
        });
        continue;
      }
      if (profile.type !== type) {
        issues.push({
          severity: 'error',
          code: 'invalid',
          diagnostics: `Profile ${url} is for ${profile.type}, not ${type}`,
          expression: root,
        });
        continue;
      }
      profile.checker.check(resource, issues, root);
      profile.invariants.check(resource, issues, root);
    }
  }

  /**
   * Contained resources against their base type; Bundle entries against their own profiles. (The
   * invariants layer already walks nested resources for the base constraints.)
   */
  private validateNested(resource: Record<string, unknown>, root: string, issues: ValidationIssue[]): void {
    const contained = resource.contained;
    if (Array.isArray(contained)) {
      contained.forEach((c, i) => {
        if (!isObject(c) || typeof c.resourceType !== 'string') return;
        const base = this.profiles.get(`${BASE}${c.resourceType}`);
        if (!base) return;
        base.checker.check(c, issues, `${root}.contained[${i}]`);
      });
    }
    if (resource.resourceType === 'Bundle' && Array.isArray(resource.entry)) {
      resource.entry.forEach((e, i) => {
        if (!isObject(e) || !isObject(e.resource) || typeof e.resource.resourceType !== 'string') return;
        const path = `${root}.entry[${i}].resource`;
        this.validateAgainstProfiles(e.resource, path, undefined, issues);
        this.validateNested(e.resource, path, issues);
      });
    }
  }

  private context(): ProfileContext {
    return {
      typeRules: (code) => this.rulesByUrl.get(`${BASE}${code}`),
      profileRules: (url) => this.rulesByUrl.get(url.split('|')[0]),
      profileType: (url) => this.definitions.get(url)?.type,
      checkBinding: (binding, codings, kind, path, issues) => this.checkBinding(binding, codings, kind, path, issues),
      checkCoding: (coding, path, issues) => {
        const system = typeof coding.system === 'string' ? coding.system : undefined;
        const code = typeof coding.code === 'string' ? coding.code : undefined;
        if (!system || !code) return;
        // A concept of the bundled SNOMED CT subset passed checkSctid when the terminology was loaded.
        const bundled = system === SNOMED_SYSTEM ? this.terminology.lookup(system, code) : undefined;
        if (bundled) {
          this.checkConcept(system, code, typeof coding.display === 'string' ? coding.display : undefined, path, issues, bundled);
          return;
        }
        if (system === SNOMED_SYSTEM) {
          // A post-coordinated expression (`71341001:272741003=7771000`) is checked id by id.
          const ids = /^\d+$/.test(code) ? [code] : (code.match(/\d{6,}/g) ?? [code]);
          const bad = ids.map((id) => checkSctid(id, 'concept')).find((check) => !check.valid);
          if (bad && !bad.valid) {
            issues.push({ severity: 'error', code: 'code-invalid', diagnostics: bad.message, expression: `${path.path()}.code` });
            return;
          }
          if (ids.length > 1 || ids[0] !== code) return;
        }
        this.checkConcept(system, code, typeof coding.display === 'string' ? coding.display : undefined, path, issues);
      },
      checkIdentifier: (identifier, path, issues) => {
        if (identifier.system !== NHS_NUMBER_SYSTEM || identifier.value === undefined) return;
        const check = checkNhsNumber(identifier.value);
        if (!check.valid) {
          issues.push({ severity: 'error', code: 'value', diagnostics: check.message, expression: `${path.path()}.value` });
        }
      },
    };
  }

  /** The code exists in its (bundled) code system, is active, and the display is one of its terms. */
  private checkConcept(
    system: string,
    code: string,
    display: string | undefined,
    path: PathRef,
    issues: ValidationIssue[],
    found?: ConceptDetails,
  ): void {
    const unknownSystem = this.options.unknownCodeSystem ?? 'warning';
    const unverifiable = (diagnostics: string) => {
      if (unknownSystem !== 'ignore') issues.push({ severity: unknownSystem, code: 'not-supported', diagnostics, expression: `${path.path()}.code` });
    };
    if (!found && !this.terminology.hasCodeSystem(system)) {
      unverifiable(`Code system ${system} is not bundled with sp-bridge, so code '${code}' was not checked`);
      return;
    }
    const concept = found ?? this.terminology.lookup(system, code);
    if (!concept) {
      if (this.terminology.codeSystemContent(system) === 'complete') {
        issues.push({ severity: 'error', code: 'code-invalid', diagnostics: `'${code}' is not a code in ${system}`, expression: `${path.path()}.code` });
      } else {
        unverifiable(`${system}|${code} is not in the bundled subset of that code system, so it could not be confirmed`);
      }
      return;
    }
    if (concept.inactive) {
      issues.push({ severity: 'warning', code: 'business-rule', diagnostics: `${system}|${code} is inactive`, expression: `${path.path()}.code` });
    }
    if (display !== undefined && !displayMatches(display, concept)) {
      issues.push({
        severity: 'warning',
        code: 'invalid',
        diagnostics: `Display '${display}' does not match any term of ${system}|${code} (preferred: '${concept.display}')`,
        expression: `${path.path()}.display`,
      });
    }
  }

  private checkBinding(
    binding: NonNullable<ElementRule['binding']>,
    codings: { system?: string; code?: string; display?: string }[],
    kind: 'code' | 'coding' | 'concept',
    path: PathRef,
    issues: ValidationIssue[],
  ): void {
    if (!binding.valueSet) return;
    const known = this.members.get(binding.valueSet);
    if (known && (kind === 'code' ? known.codes.has(codings[0]?.code ?? '') : codings.some((c) => known.pairs.has(`${c.system}|${c.code}`)))) {
      return;
    }
    // terminology.checkBinding would say cannot-check with only invalid-code issues (which are not reported for
    // codings, see below) and no issue of its own for these strengths.
    if (kind !== 'code' && (binding.strength === 'preferred' || binding.strength === 'example') && this.unknownValueSets.has(binding.valueSet)) {
      return;
    }
    const value = kind === 'code' ? (codings[0]?.code ?? '') : kind === 'coding' ? (codings[0] as fhir4.Coding) : { coding: codings as fhir4.Coding[] };
    const result = this.terminology.checkBinding(binding.valueSet, binding.strength, value);
    if (result.status === 'member') return;
    const where = kind === 'code' ? path.path() : kind === 'coding' ? `${path.path()}.code` : `${path.path()}.coding`;
    for (const issue of result.issues) {
      // Codings are checked for valid codes on their own (checkCoding), wherever they appear.
      if (issue.reason === 'invalid-code' && kind !== 'code') continue;
      issues.push({
        // The validation brief: extensible and preferred bindings both warn.
        severity: binding.strength === 'preferred' && issue.reason === 'not-in-value-set' ? 'warning' : issue.severity,
        code: issue.code,
        diagnostics: issue.message,
        expression: where,
      });
    }
  }
}

let shared: Validator | undefined;

/** The validator over the shipped profiles and terminology, compiled on first use and kept. */
export function getValidator(): Validator {
  shared ??= Validator.load();
  return shared;
}

function displayMatches(display: string, concept: ConceptDetails): boolean {
  // Nearly every display is the preferred term as published: settle that without normalising anything.
  if (display === concept.display) return true;
  const norm = (s: string) => s.trim().replace(/\s+/g, ' ').toLowerCase();
  const wanted = norm(display);
  return (
    norm(concept.display) === wanted ||
    (concept.fsn !== undefined && norm(concept.fsn) === wanted) ||
    concept.designations.some((d) => typeof d.value === 'string' && norm(d.value) === wanted)
  );
}

function claimedProfiles(resource: Record<string, unknown>): string[] {
  const meta = resource.meta;
  if (!isObject(meta) || !Array.isArray(meta.profile)) return [];
  return meta.profile.filter((p): p is string => typeof p === 'string');
}

function dedupe(issues: ValidationIssue[]): ValidationIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.severity}|${i.expression}|${i.diagnostics}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
