import { FhirError, operationOutcome, type ErrorCode } from '../../errors';
import { SNOMED_SYSTEM, TerminologyUsageError, type ConceptDetails, type ValidateCodeResult } from '../../terminology/codesystem';
import { getTerminologyResources, resourceId, type TerminologyResources } from '../../terminology/resources';
import { checkSctid } from '../../terminology/sctid';
import type { FhirResponse } from '../types';
import type { OperationCall, OperationDefinition, OperationParams } from './operation';

/**
 * The terminology operations of FHIR R4 over the bundled terminology (src/terminology), each at type level and on an
 * instance (`CodeSystem/{id}/$lookup`, `ValueSet/{id}/$expand` ...), by GET (query parameters) or POST (a Parameters
 * body):
 *
 * - `CodeSystem/$lookup` (http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup)
 * - `ValueSet/$validate-code` and `CodeSystem/$validate-code` (ValueSet-validate-code, CodeSystem-validate-code)
 * - `ValueSet/$expand` (ValueSet-expand)
 * - `CodeSystem/$subsumes` (CodeSystem-subsumes)
 *
 * Status codes: 400 for missing, repeated, contradictory or malformed parameters (including a malformed SNOMED CT
 * id); 404 for an unknown value set, code system or version, and for a code that $lookup / $subsumes cannot find (as
 * HAPI FHIR and Ontoserver answer; the R4 text leaves the status open); 422 when $subsumes cannot decide from the
 * SNOMED CT fragment. $validate-code answers 200 with `result` false for a code that is not in the value set: that
 * is an answer, not an error.
 */

/** errors.ts has no code for a bad operation parameter; this one is a 400, and each error carries its own issue type. */
const BAD_INPUT: ErrorCode = 'SPB_INVALID_SEARCH';

function bad(message: string, issue: fhir4.OperationOutcomeIssue['code'] = 'invalid', parameter?: string): FhirError {
  return new FhirError(BAD_INPUT, message, { outcome: operationOutcome('error', issue, message, parameter ? [parameter] : undefined) });
}

function notFound(message: string): FhirError {
  return new FhirError('SPB_NOT_FOUND', message);
}

// ---- parameters --------------------------------------------------------------------------------------------------

class Inputs {
  constructor(
    private readonly params: OperationParams,
    private readonly viaGet: boolean,
  ) {}

  private one(name: string): fhir4.ParametersParameter | undefined {
    const all = this.params.all(name);
    if (all.length > 1) throw bad(`Give the parameter '${name}' at most once`, 'invalid', name);
    return all[0];
  }

  string(name: string): string | undefined {
    if (!this.one(name)) return undefined;
    const value = this.params.string(name);
    if (value === undefined || value.trim() === '') throw bad(`The parameter '${name}' has no value`, 'required', name);
    return value.trim();
  }

  strings(name: string): string[] {
    return this.params.all(name).flatMap((p) => {
      const v = Object.entries(p).find(([k, x]) => k.startsWith('value') && typeof x === 'string')?.[1] as string | undefined;
      return v === undefined ? [] : v.split(',').map((s) => s.trim()).filter(Boolean);
    });
  }

  integer(name: string): number | undefined {
    const p = this.one(name);
    if (!p) return undefined;
    const raw = p.valueInteger ?? p.valueString ?? p.valueDecimal;
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n) || n < 0) throw bad(`The parameter '${name}' must be a whole number >= 0, not ${JSON.stringify(raw)}`, 'value', name);
    return n;
  }

  boolean(name: string): boolean | undefined {
    const p = this.one(name);
    if (!p) return undefined;
    const raw = p.valueBoolean ?? p.valueString;
    if (raw === true || raw === 'true') return true;
    if (raw === false || raw === 'false') return false;
    throw bad(`The parameter '${name}' must be true or false, not ${JSON.stringify(raw)}`, 'value', name);
  }

  /** A Coding: valueCoding in a Parameters body, or `system|code` in a query string. */
  coding(name: string): fhir4.Coding | undefined {
    const p = this.one(name);
    if (!p) return undefined;
    if (p.valueCoding !== undefined) {
      const c = p.valueCoding as unknown;
      if (typeof c !== 'object' || c === null || Array.isArray(c)) throw bad(`The parameter '${name}' must be a Coding`, 'structure', name);
      const coding = c as fhir4.Coding;
      if (typeof coding.code !== 'string' || !coding.code) throw bad(`The Coding in '${name}' has no code`, 'required', name);
      return coding;
    }
    const text = p.valueString ?? p.valueUri ?? p.valueCode;
    if (typeof text === 'string') {
      const bar = text.indexOf('|');
      if (bar <= 0 || bar === text.length - 1) {
        throw bad(`The parameter '${name}' must be a Coding, or system|code in a query string; got '${text}'`, 'value', name);
      }
      return { system: text.slice(0, bar), code: text.slice(bar + 1) };
    }
    throw bad(`The parameter '${name}' must be a Coding (valueCoding)`, 'structure', name);
  }

  codeableConcept(name: string): fhir4.CodeableConcept | undefined {
    const p = this.one(name);
    if (!p) return undefined;
    if (this.viaGet) throw bad(`'${name}' is a CodeableConcept: send it with POST in a Parameters body`, 'not-supported', name);
    const cc = p.valueCodeableConcept as unknown;
    if (typeof cc !== 'object' || cc === null || Array.isArray(cc)) throw bad(`The parameter '${name}' must be a CodeableConcept`, 'structure', name);
    const concept = cc as fhir4.CodeableConcept;
    if (concept.coding !== undefined && !Array.isArray(concept.coding)) throw bad(`${name}.coding must be an array`, 'structure', name);
    return concept;
  }

  refuse(name: string, why: string): void {
    if (this.params.has(name)) throw bad(`The parameter '${name}' is not supported here: ${why}`, 'not-supported', name);
  }
}

function inputsOf(call: OperationCall): Inputs {
  const method = call.req.method.toUpperCase();
  const viaGet = method === 'GET' || method === 'HEAD';
  if (!viaGet) {
    const body = call.req.body as fhir4.Resource | undefined;
    if (body !== undefined && body !== null && (body as unknown) !== '' && body.resourceType !== 'Parameters') {
      throw bad(`POST $${call.req.path.split('$').pop()} takes a Parameters resource as its body`, 'structure');
    }
  }
  return new Inputs(call.params, viaGet);
}

function parameters(parameter: fhir4.ParametersParameter[]): FhirResponse {
  const body: fhir4.Parameters = { resourceType: 'Parameters', parameter };
  return { status: 200, body };
}

// ---- shared look-ups ---------------------------------------------------------------------------------------------

interface Resolved {
  readonly res: TerminologyResources;
  readonly system: string;
}

/** The code system an instance-level call names, checked against a `system`/`url` parameter if one is also given. */
function instanceCodeSystem(res: TerminologyResources, call: OperationCall, given: string | undefined, param: string): string | undefined {
  if (call.level !== 'instance') return given;
  const cs = res.codeSystem(call.id as string);
  if (!cs || !cs.url) throw notFound(`CodeSystem/${call.id} is not known`);
  if (given !== undefined && given !== cs.url) throw bad(`${param} '${given}' is not the url of CodeSystem/${call.id} (${cs.url})`, 'invalid', param);
  return cs.url;
}

function requireCodeSystem(res: TerminologyResources, system: string, version: string | undefined): Resolved {
  const tx = res.terminology;
  if (!tx.hasCodeSystem(system)) {
    throw notFound(`CodeSystem ${system} is not known to this server (the bundled code systems are listed by GET /CodeSystem)`);
  }
  const bundled = tx.codeSystemVersion(system);
  if (version !== undefined && version !== bundled) {
    throw notFound(`Version ${version} of CodeSystem ${system} is not known to this server (bundled: ${bundled ?? 'unversioned'})`);
  }
  return { res, system };
}

function checkSnomedId(system: string, code: string, param: string): void {
  if (system !== SNOMED_SYSTEM) return;
  const check = checkSctid(code, 'concept');
  if (!check.valid) throw bad(`'${code}' is not a valid SNOMED CT concept id: ${check.message}`, 'code-invalid', param);
}

function conceptOrNotFound(res: TerminologyResources, system: string, code: string): ConceptDetails {
  const tx = res.terminology;
  const concept = tx.lookup(system, code);
  if (concept) return concept;
  const content = tx.codeSystemContent(system);
  if (content !== 'complete') {
    throw notFound(
      `Code ${code} is not in the bundled ${system === SNOMED_SYSTEM ? 'SNOMED CT subset' : `part of ${system}`} (content: ${content}); ` +
        'that does not mean it is not a valid code, only that this server does not hold it',
    );
  }
  throw notFound(`Code ${code} is not defined by CodeSystem ${system}`);
}

/** The value set an instance- or type-level call names, as a canonical `url|version` the Terminology resolves. */
function valueSetCanonical(res: TerminologyResources, call: OperationCall, inputs: Inputs): string {
  const url = inputs.string('url');
  const version = inputs.string('valueSetVersion');
  inputs.refuse('valueSet', 'this server works from the value sets it bundles; give their url (GET /ValueSet lists them)');
  inputs.refuse('context', 'give the value set url');
  let base = '';
  let pinned: string | undefined;
  if (url !== undefined) {
    const bar = url.indexOf('|');
    base = bar < 0 ? url : url.slice(0, bar);
    pinned = bar < 0 ? undefined : url.slice(bar + 1);
  }
  if (pinned !== undefined && version !== undefined && pinned !== version) {
    throw bad(`url says version ${pinned} but valueSetVersion says ${version}`, 'invalid', 'valueSetVersion');
  }
  pinned ??= version;
  if (call.level === 'instance') {
    const vs = res.valueSet(call.id as string);
    if (!vs || !vs.url) throw notFound(`ValueSet/${call.id} is not known`);
    if (url !== undefined && base !== vs.url) throw bad(`url '${url}' is not the url of ValueSet/${call.id} (${vs.url})`, 'invalid', 'url');
    base = vs.url;
  } else if (url === undefined) {
    throw bad(`Say which value set: give its url (or call ValueSet/{id}/$${call.req.path.split('$').pop()})`, 'required', 'url');
  }
  const canonical = pinned !== undefined ? `${base}|${pinned}` : base;
  if (!res.terminology.hasValueSet(canonical)) {
    const known = res.terminology.getValueSet(base);
    throw notFound(
      known
        ? `Version ${pinned} of ValueSet ${base} is not known to this server (bundled: ${known.version ?? 'unversioned'})`
        : `ValueSet ${base} is not known to this server (the bundled value sets are listed by GET /ValueSet)`,
    );
  }
  return canonical;
}

/** What is being validated: one of code (+system), coding, codeableConcept. */
function codingsToValidate(inputs: Inputs, defaultSystem?: string): { codings: fhir4.Coding[]; display?: string; concept: boolean } {
  const code = inputs.string('code');
  const system = inputs.string('system');
  const display = inputs.string('display');
  const coding = inputs.coding('coding');
  const cc = inputs.codeableConcept('codeableConcept');
  const given = [code !== undefined, coding !== undefined, cc !== undefined].filter(Boolean).length;
  if (given === 0) throw bad('Give the code to check: code (with system), coding or codeableConcept', 'required', 'code');
  if (given > 1) throw bad('Give only one of code, coding and codeableConcept', 'invalid');
  if (code !== undefined) return { codings: [{ system: system ?? defaultSystem, code }], display, concept: false };
  if (system !== undefined) throw bad('system goes with code; a Coding carries its own system', 'invalid', 'system');
  if (coding) return { codings: [coding], display: display ?? coding.display, concept: false };
  if (display !== undefined) throw bad('display goes with code or coding; a CodeableConcept carries its own', 'invalid', 'display');
  return { codings: (cc?.coding ?? []).filter((c) => typeof c === 'object' && c !== null), concept: true };
}

function validationOutput(r: { result: boolean; message?: string; display?: string; issues: readonly { severity: string; code: string; message: string }[] }): FhirResponse {
  const out: fhir4.ParametersParameter[] = [{ name: 'result', valueBoolean: r.result }];
  if (r.message) out.push({ name: 'message', valueString: r.message });
  if (r.display) out.push({ name: 'display', valueString: r.display });
  if (r.issues.length) {
    out.push({
      name: 'issues',
      resource: {
        resourceType: 'OperationOutcome',
        issue: r.issues.map((i) => ({
          severity: i.severity as fhir4.OperationOutcomeIssue['severity'],
          code: i.code as fhir4.OperationOutcomeIssue['code'],
          diagnostics: i.message,
        })),
      } as fhir4.OperationOutcome,
    });
  }
  return parameters(out);
}

// ---- $lookup -----------------------------------------------------------------------------------------------------

const LOOKUP_PROPERTIES = ['parent', 'inactive', 'definition', 'designation'] as const;

export function lookupOperation(source: () => TerminologyResources = getTerminologyResources): OperationDefinition {
  return {
    name: 'lookup',
    levels: ['type', 'instance'],
    types: (type) => type === 'CodeSystem',
    idempotent: true,
    async run(call) {
      const res = source();
      const inputs = inputsOf(call);
      let system = inputs.string('system');
      let code = inputs.string('code');
      let version = inputs.string('version');
      const coding = inputs.coding('coding');
      if (coding) {
        if (code !== undefined) throw bad('Give code (with system) or coding, not both', 'invalid', 'coding');
        if (system !== undefined && coding.system !== undefined && coding.system !== system) {
          throw bad(`system '${system}' and coding.system '${coding.system}' differ`, 'invalid', 'coding');
        }
        system = coding.system ?? system;
        code = coding.code;
        version = coding.version ?? version;
      }
      system = instanceCodeSystem(res, call, system, 'system');
      if (code === undefined) throw bad('$lookup needs code (with system) or coding', 'required', 'code');
      if (system === undefined) throw bad('$lookup needs the system of the code', 'required', 'system');
      requireCodeSystem(res, system, version);
      checkSnomedId(system, code, coding ? 'coding' : 'code');
      const concept = conceptOrNotFound(res, system, code);
      const cs = res.terminology.getCodeSystems(system)[0];
      const asked = new Set(inputs.strings('property'));
      const want = (p: (typeof LOOKUP_PROPERTIES)[number]): boolean => asked.size === 0 || asked.has(p);

      const out: fhir4.ParametersParameter[] = [{ name: 'name', valueString: cs?.title ?? cs?.name ?? system }];
      if (concept.version !== undefined) out.push({ name: 'version', valueString: concept.version });
      out.push({ name: 'display', valueString: concept.display });
      if (want('designation')) {
        for (const d of concept.designations) {
          const part: fhir4.ParametersParameter[] = [];
          if (d.language) part.push({ name: 'language', valueCode: d.language });
          if (d.use) part.push({ name: 'use', valueCoding: d.use });
          part.push({ name: 'value', valueString: d.value });
          out.push({ name: 'designation', part });
        }
      }
      const property = (code: string, value: fhir4.ParametersParameter): fhir4.ParametersParameter => ({
        name: 'property',
        part: [{ name: 'code', valueCode: code }, { ...value, name: 'value' }],
      });
      if (want('parent')) for (const p of concept.parents) out.push(property('parent', { name: 'value', valueCode: p }));
      if (want('inactive')) out.push(property('inactive', { name: 'value', valueBoolean: concept.inactive }));
      if (want('definition') && concept.definition) out.push(property('definition', { name: 'value', valueString: concept.definition }));
      return parameters(out);
    },
  };
}

// ---- $validate-code ----------------------------------------------------------------------------------------------

export function validateCodeOperation(source: () => TerminologyResources = getTerminologyResources): OperationDefinition {
  return {
    name: 'validate-code',
    levels: ['type', 'instance'],
    types: (type) => type === 'ValueSet' || type === 'CodeSystem',
    idempotent: true,
    async run(call) {
      const res = source();
      const inputs = inputsOf(call);
      return call.type === 'CodeSystem' ? validateInCodeSystem(res, call, inputs) : validateInValueSet(res, call, inputs);
    },
  };
}

function validateInValueSet(res: TerminologyResources, call: OperationCall, inputs: Inputs): FhirResponse {
  const canonical = valueSetCanonical(res, call, inputs);
  const { codings, display, concept } = codingsToValidate(inputs);
  const tx = res.terminology;
  const results: ValidateCodeResult[] = [];
  for (const c of codings) {
    if (typeof c.code !== 'string' || !c.code) continue;
    const r = tx.validateCode(canonical, typeof c.system === 'string' ? c.system : undefined, c.code, concept ? c.display : display);
    if (r.result) return validationOutput(r);
    results.push(r);
  }
  if (results.length === 0) {
    const message = `No coded value to check against ${canonical}: the CodeableConcept has no coding with a code`;
    return validationOutput({ result: false, message, issues: [{ severity: 'error', code: 'code-invalid', message }] });
  }
  const issues = results.flatMap((r) => r.issues);
  return validationOutput({ result: false, message: issues.map((i) => i.message).join('; '), issues });
}

function validateInCodeSystem(res: TerminologyResources, call: OperationCall, inputs: Inputs): FhirResponse {
  const url = instanceCodeSystem(res, call, inputs.string('url'), 'url');
  if (url === undefined) throw bad('Say which code system: give its url (or call CodeSystem/{id}/$validate-code)', 'required', 'url');
  requireCodeSystem(res, url, inputs.string('version'));
  const { codings, display, concept } = codingsToValidate(inputs, url);
  const tx = res.terminology;
  const issues: { severity: string; code: string; message: string }[] = [];
  for (const c of codings) {
    if (typeof c.code !== 'string' || !c.code) continue;
    const system: string = c.system ?? url;
    if (system !== url) {
      if (!concept) throw bad(`The code's system ${system} is not ${url}`, 'invalid', 'coding');
      continue;
    }
    const shown = `${system}#${c.code}`;
    const check = system === SNOMED_SYSTEM ? checkSctid(c.code, 'concept') : undefined;
    if (check && !check.valid) {
      issues.push({ severity: 'error', code: 'code-invalid', message: `${shown} is not a valid SNOMED CT concept id: ${check.message}` });
      continue;
    }
    const found = tx.lookup(system, c.code);
    if (!found) {
      if (tx.codeSystemContent(system) === 'complete') {
        issues.push({ severity: 'error', code: 'code-invalid', message: `Unknown code ${shown}: CodeSystem ${system} does not define it` });
      } else {
        issues.push({
          severity: 'warning',
          code: 'not-supported',
          message: `Cannot check ${shown}: CodeSystem ${system} is bundled only in part (content: ${tx.codeSystemContent(system)}) and does not hold it`,
        });
      }
      continue;
    }
    const shownDisplay = concept ? c.display : display;
    const own: typeof issues = [];
    if (shownDisplay !== undefined && !displayMatches(found, shownDisplay)) {
      own.push({ severity: 'warning', code: 'invalid', message: `Display '${shownDisplay}' for ${shown} does not match the preferred term '${found.display}'` });
    }
    if (found.inactive) own.push({ severity: 'warning', code: 'business-rule', message: `Code ${shown} ('${found.display}') is inactive` });
    return validationOutput({ result: true, message: own.map((i) => i.message).join('; ') || undefined, display: found.display, issues: own });
  }
  if (issues.length === 0) {
    const message = concept ? `No coding from ${url} to check in the CodeableConcept` : 'No code to check';
    issues.push({ severity: 'error', code: 'code-invalid', message });
  }
  return validationOutput({ result: false, message: issues.map((i) => i.message).join('; '), issues });
}

const norm = (s: string): string => s.trim().replace(/\s+/g, ' ').toLowerCase();

function displayMatches(concept: ConceptDetails, display: string): boolean {
  const wanted = norm(display);
  return norm(concept.display) === wanted || concept.designations.some((d) => typeof d.value === 'string' && norm(d.value) === wanted);
}

// ---- $expand -----------------------------------------------------------------------------------------------------

export function expandOperation(source: () => TerminologyResources = getTerminologyResources): OperationDefinition {
  return {
    name: 'expand',
    levels: ['type', 'instance'],
    types: (type) => type === 'ValueSet',
    idempotent: true,
    async run(call) {
      const res = source();
      const inputs = inputsOf(call);
      const canonical = valueSetCanonical(res, call, inputs);
      const options = {
        filter: inputs.string('filter'),
        count: inputs.integer('count'),
        offset: inputs.integer('offset'),
        activeOnly: inputs.boolean('activeOnly'),
      };
      let expanded: fhir4.ValueSet | undefined;
      try {
        expanded = res.terminology.expand(canonical, options);
      } catch (err) {
        if (err instanceof TerminologyUsageError) throw bad(err.message, 'value');
        throw err;
      }
      if (!expanded) throw notFound(`ValueSet ${canonical} is not known to this server`);
      const id = resourceId(expanded);
      if (id) expanded.id = id;
      return { status: 200, body: expanded };
    },
  };
}

// ---- $subsumes ---------------------------------------------------------------------------------------------------

export function subsumesOperation(source: () => TerminologyResources = getTerminologyResources): OperationDefinition {
  return {
    name: 'subsumes',
    levels: ['type', 'instance'],
    types: (type) => type === 'CodeSystem',
    idempotent: true,
    async run(call) {
      const res = source();
      const inputs = inputsOf(call);
      let system = inputs.string('system');
      let version = inputs.string('version');
      const pick = (side: 'A' | 'B'): string | undefined => {
        const code = inputs.string(`code${side}`);
        const coding = inputs.coding(`coding${side}`);
        if (code !== undefined && coding) throw bad(`Give code${side} or coding${side}, not both`, 'invalid', `coding${side}`);
        if (!coding) return code;
        if (coding.system !== undefined) {
          if (system !== undefined && coding.system !== system) {
            throw bad(`coding${side} is from ${coding.system}, not ${system}: $subsumes compares codes of one code system`, 'invalid', `coding${side}`);
          }
          system = coding.system;
        }
        if (coding.version !== undefined) {
          if (version !== undefined && coding.version !== version) throw bad(`coding${side}.version differs from version ${version}`, 'invalid', `coding${side}`);
          version = coding.version;
        }
        return coding.code;
      };
      const a = pick('A');
      const b = pick('B');
      system = instanceCodeSystem(res, call, system, 'system');
      if (a === undefined) throw bad('$subsumes needs codeA or codingA', 'required', 'codeA');
      if (b === undefined) throw bad('$subsumes needs codeB or codingB', 'required', 'codeB');
      if (system === undefined) throw bad('$subsumes needs the system of the codes', 'required', 'system');
      requireCodeSystem(res, system, version);
      checkSnomedId(system, a, 'codeA');
      checkSnomedId(system, b, 'codeB');
      conceptOrNotFound(res, system, a);
      conceptOrNotFound(res, system, b);
      const outcome = res.terminology.subsumes(a, b, system);
      const content = res.terminology.codeSystemContent(system);
      if (outcome === 'not-subsumed' && content !== 'complete') {
        const message =
          `Cannot tell whether ${a} and ${b} are related: ${system} is bundled only in part (content: ${content}) ` +
          'and its stated is-a facts do not relate them';
        throw new FhirError('SPB_UNPROCESSABLE', message, { outcome: operationOutcome('error', 'not-supported', message) });
      }
      return parameters([{ name: 'outcome', valueCode: outcome }]);
    },
  };
}

/** The four terminology operations, sharing one source of terminology. */
export function terminologyOperations(source: () => TerminologyResources = getTerminologyResources): OperationDefinition[] {
  return [lookupOperation(source), validateCodeOperation(source), expandOperation(source), subsumesOperation(source)];
}
