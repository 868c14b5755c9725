/**
 * The STRUCTURE layer of validation: is this FHIR R4 JSON, shaped as its resource type says?
 *
 * Two passes over each resource, merged into one issue per problem:
 * - the HL7 R4 JSON schema, as ajv code generated at build time (src/validation/generated/, one function
 *   per resource type): unknown elements, JSON types, primitive formats, enumerated codes, the few
 *   `required` elements the schema lists;
 * - a walk with the element model for what the schema cannot say: null, empty strings, arrays and objects,
 *   primitive arrays and their `_name` extension arrays, calendar dates, nested resources (contained[],
 *   Bundle.entry.resource, Parameters.parameter.resource, ...), each checked with its own type's validator.
 *
 * Cardinality (other than those `required`s), bindings other than the schema's enums, fixed values,
 * slicing, invariants and references are for the profile, FHIRPath and terminology layers.
 */
import * as generated from './generated/structure-validators';
import { type ElementDef, type ElementModel, parseElementModel, primitiveJsonType } from './structure-model';
import type { ValidationIssue } from './types';

export interface StructureValidator {
  /**
   * Checks `resource` (any R4 resource type, nested resources included) and appends an issue per problem.
   * Never throws. `path` is the FHIRPath of the resource when it sits inside another, e.g.
   * `Bundle.entry[2].resource`; expressions start with it instead of the resource type.
   */
  validate(resource: unknown, issues: ValidationIssue[], path?: string): void;
  /** Whether `type` is an R4 resource type. */
  isResourceType(type: string): boolean;
}

/** Object nesting (all resources together) beyond which a resource is rejected unchecked. */
export const MAX_DEPTH = 64;
/** Issues reported per validate() call, then one saying the rest were left out. */
export const MAX_ISSUES = 100;

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
}
type ValidateFunction = ((data: unknown) => boolean) & { errors?: AjvError[] | null };

type Seg = string | number;
type Code = ValidationIssue['code'];

interface Loaded {
  model: ElementModel;
  validators: Map<string, ValidateFunction>;
}

let loaded: Loaded | undefined;

function load(): Loaded {
  if (loaded) return loaded;
  const model = parseElementModel(generated.modelJson);
  // Generated at build time from the committed schema copy (see generate.js for why it is kept as a string);
  // no request data ever reaches this.
  const compiled: Record<string, unknown> = {};
  new Function('exports', 'require', generated.validatorsCode)(compiled, require);
  const validators = new Map<string, ValidateFunction>();
  for (const type of model.resourceTypes) {
    const fn = compiled[type];
    if (typeof fn !== 'function') {
      throw new Error(`structure validators are incomplete (no ${type}): run node src/validation/generated/generate.js`);
    }
    validators.set(type, fn as ValidateFunction);
  }
  warmUp(model, validators);
  loaded = { model, validators };
  return loaded;
}

/**
 * Runs every type's validator once over a sample with all its elements, so V8 compiles the functions for
 * resources, their backbone elements, datatypes and primitive patterns at start-up (about 100 ms) rather
 * than on the first requests.
 */
function warmUp(model: ElementModel, validators: Map<string, ValidateFunction>): void {
  for (const [type, validate] of validators) {
    const sample: Record<string, unknown> = { resourceType: type };
    for (const [name, el] of model.types.get(type) ?? []) {
      if (el.resource) continue;
      const value = el.primitive ? '0' : {};
      sample[name] = el.many ? [value] : value;
    }
    validate(sample);
  }
}

export function createStructureValidator(): StructureValidator {
  const { model, validators } = load();
  return {
    isResourceType: (type) => validators.has(type),
    validate(resource, issues, path) {
      const found: ValidationIssue[] = [];
      try {
        new Check(model, validators, found).resource(resource, path, 0);
      } catch (err) {
        found.push(issue('exception', `Structure check failed: ${errorMessage(err)}`, path ?? 'Resource'));
      }
      const seen = new Set<string>();
      let count = 0;
      for (const i of found) {
        const key = `${i.expression}\u0000${i.diagnostics}`;
        if (seen.has(key)) continue;
        seen.add(key);
        if (count === MAX_ISSUES) {
          issues.push(
            issue('too-costly', `More than ${MAX_ISSUES} structure issues: the rest are not reported`, path ?? 'Resource'),
          );
          break;
        }
        issues.push(i);
        count++;
      }
    },
  };
}

interface WalkIssue {
  segs: Seg[];
  code: Code;
  diagnostics: string;
  rule?: string;
  /** Strong issues (null, empty) replace ajv's errors at the same place; weak ones give way to them. */
  strong: boolean;
}

/** One validate() call. */
class Check {
  constructor(
    private readonly model: ElementModel,
    private readonly validators: Map<string, ValidateFunction>,
    private readonly out: ValidationIssue[],
  ) {}

  resource(value: unknown, path: string | undefined, depth: number): void {
    const here = path ?? 'Resource';
    if (!isObject(value)) {
      this.out.push(issue('structure', `Expected a FHIR resource (a JSON object), found ${describe(value)}`, here));
      return;
    }
    const type = hasOwn(value, 'resourceType') ? value.resourceType : undefined;
    if (type === undefined) {
      this.out.push(
        issue('required', "Missing resourceType: a FHIR resource names its type in 'resourceType'", here),
      );
      return;
    }
    if (typeof type !== 'string') {
      this.out.push(
        issue('structure', `resourceType must be a string naming an R4 resource type, found ${describe(type)}`, here),
      );
      return;
    }
    const validate = this.validators.get(type);
    if (!validate) {
      const near = [...this.validators.keys()].find((t) => t.toLowerCase() === type.toLowerCase());
      const hint = near ? ` (did you mean '${near}'?)` : '';
      this.out.push(issue('structure', `Unknown resourceType ${quote(type)}: not an R4 resource type${hint}`, here));
      return;
    }
    new ResourceCheck(this, this.model, type, path ?? type, value, validate, depth).run();
  }

  push(i: ValidationIssue): void {
    this.out.push(i);
  }
}

/** One resource: the walk, then ajv, then the merge. Nested resources get their own. */
class ResourceCheck {
  private readonly walkIssues: WalkIssue[] = [];
  private readonly strongKeys = new Set<string>();
  private tooDeep = false;

  constructor(
    private readonly check: Check,
    private readonly model: ElementModel,
    private readonly type: string,
    private readonly expr: string,
    private readonly root: Record<string, unknown>,
    private readonly validate: ValidateFunction,
    private readonly depth: number,
  ) {}

  run(): void {
    this.walkObject(this.root, this.type, [], this.depth + 1);
    if (this.tooDeep) {
      this.report();
      return;
    }
    let errors: AjvError[] = [];
    try {
      if (!this.validate(this.root)) errors = this.validate.errors ?? [];
    } catch (err) {
      this.check.push(issue('exception', `Structure check failed: ${errorMessage(err)}`, this.expr));
    }
    const ajvKeys = new Set<string>();
    for (const e of errors) {
      const converted = this.fromAjv(e);
      if (!converted) continue;
      ajvKeys.add(converted.key);
      this.check.push(converted.issue);
    }
    this.report(ajvKeys);
  }

  private report(ajvKeys?: Set<string>): void {
    for (const w of this.walkIssues) {
      if (!w.strong && ajvKeys?.has(pointer(w.segs))) continue;
      this.check.push({ ...issue(w.code, w.diagnostics, this.render(w.segs)), ...(w.rule ? { rule: w.rule } : {}) });
    }
  }

  // ---- the walk ----

  private add(segs: Seg[], code: Code, diagnostics: string, strong: boolean, rule?: string): void {
    const copy = segs.slice();
    this.walkIssues.push({ segs: copy, code, diagnostics, strong, rule });
    if (strong) this.strongKeys.add(pointer(copy));
  }

  private walkObject(obj: Record<string, unknown>, type: string, segs: Seg[], depth: number): void {
    if (this.tooDeep) return;
    if (depth > MAX_DEPTH) {
      this.tooDeep = true;
      this.add(segs, 'too-costly', `Nested more than ${MAX_DEPTH} levels deep: not checked further`, true);
      return;
    }
    const elements = this.model.types.get(type);
    if (!elements) return;
    let chosen: Map<string, string> | undefined; // choice element base -> the type's element name
    for (const key of Object.keys(obj)) {
      const el = elements.get(key);
      if (!el) continue; // ajv reports unknown elements
      const choice = el.choice ?? (key.startsWith('_') ? elements.get(key.slice(1))?.choice : undefined);
      if (choice) {
        const name = key.startsWith('_') ? key.slice(1) : key;
        chosen ??= new Map();
        const first = chosen.get(choice);
        if (first === undefined) {
          chosen.set(choice, name);
        } else if (first !== name) {
          segs.push(choice);
          this.add(segs, 'structure', `${this.render(segs)}[x] has both ${first} and ${name}: a choice element takes one type`, true);
          segs.pop();
        }
      }
      const value = obj[key];
      segs.push(key);
      if (value === null) {
        this.add(segs, 'structure', `Null value for ${this.render(segs)}: FHIR JSON does not allow null; leave the element out`, true);
      } else if (!el.many) {
        this.item(value, el, segs, depth);
      } else if (Array.isArray(value)) {
        this.array(obj, key, value, el, elements, segs, depth);
      }
      segs.pop();
    }
  }

  private array(
    obj: Record<string, unknown>,
    key: string,
    value: unknown[],
    el: ElementDef,
    elements: ReadonlyMap<string, ElementDef>,
    segs: Seg[],
    depth: number,
  ): void {
    if (value.length === 0) {
      this.add(segs, 'structure', `Empty array for ${this.render(segs)}: FHIR JSON does not allow empty arrays; leave the element out`, true);
      return;
    }
    // A repeating primitive and its `_name` array line up index by index; null fills the gaps in either.
    const underscore = key.startsWith('_');
    const partnerKey = underscore ? key.slice(1) : `_${key}`;
    const paired = underscore ? elements.get(partnerKey)?.primitive === true : el.primitive && elements.has(partnerKey);
    const partner = paired && hasOwn(obj, partnerKey) && Array.isArray(obj[partnerKey]) ? (obj[partnerKey] as unknown[]) : undefined;
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      segs.push(i);
      if (item === null) {
        const other = partner?.[i];
        if (partner && other === null && underscore) {
          // reported once, from the value side
        } else if (partner && other === null) {
          this.add(segs, 'structure', `${this.render(segs)} and its extensions are both null: drop the entry from both arrays`, true);
        } else if (!partner || other === undefined) {
          const why = paired
            ? ` (null is only allowed where the matching '${underscore ? partnerKey : `_${key}`}' entry is present)`
            : '';
          this.add(segs, 'structure', `Null value in ${this.render(segs)}: FHIR JSON does not allow null${why}`, true);
        }
      } else {
        this.item(item, el, segs, depth);
      }
      segs.pop();
    }
    if (partner && !underscore && partner.length !== value.length) {
      this.add(
        segs,
        'structure',
        `'${key}' has ${value.length} entries but '_${key}' has ${partner.length}: they must line up one to one`,
        true,
      );
    }
  }

  private item(value: unknown, el: ElementDef, segs: Seg[], depth: number): void {
    if (el.primitive) {
      if (typeof value !== 'string') return; // wrong JSON types: ajv
      if (value === '') {
        if (primitiveJsonType(el.type) === 'string') {
          this.add(segs, 'structure', `Empty string for ${this.render(segs)}: FHIR JSON does not allow empty strings; leave the element out`, true, 'ele-1');
        }
        return;
      }
      if (el.type === 'date' || el.type === 'dateTime' || el.type === 'instant') this.calendar(value, el.type, segs);
      return;
    }
    if (!isObject(value)) return; // ajv
    if (isEmpty(value)) {
      this.add(segs, 'structure', `Empty object for ${this.render(segs)}: every element needs a value or children`, true, 'ele-1');
      return;
    }
    if (el.resource) {
      this.check.resource(value, this.render(segs), depth);
      return;
    }
    this.walkObject(value, el.type, segs, depth + 1);
  }

  /** The schema's date patterns allow 31 days in every month. */
  private calendar(value: string, type: string, segs: Seg[]): void {
    const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(value);
    if (!m) return;
    const year = Number(m[1]);
    const month = Number(m[2]);
    const day = Number(m[3]);
    if (month < 1 || month > 12 || day < 1 || day > 31) return; // the pattern catches these
    const days = daysInMonth(year, month);
    if (day <= days) return;
    this.add(
      segs,
      'value',
      `Invalid ${type} ${quote(value)} for ${this.render(segs)}: ${MONTHS[month - 1]} ${year} has ${days} days`,
      false,
    );
  }

  // ---- ajv errors ----

  private fromAjv(e: AjvError): { key: string; issue: ValidationIssue } | undefined {
    const { segs, value } = this.locate(e.instancePath);
    const key = pointer(segs);
    if (value === null || this.strongKeys.has(key)) return undefined; // the walk said it better
    const at = this.render(segs);
    const found = (code: Code, diagnostics: string, where = at) => ({ key, issue: issue(code, diagnostics, where) });
    const { el, atItem } = this.element(segs);

    switch (e.keyword) {
      case 'additionalProperties': {
        const name = String(e.params.additionalProperty);
        const elementSegs = [...segs, name];
        return found('structure', this.unknownElement(name, segs), this.render(elementSegs));
      }
      case 'required': {
        const name = String(e.params.missingProperty);
        if (isObject(value) && hasOwn(value, `_${name}`)) return undefined; // a primitive with extensions only
        return found('required', `Missing required element '${name}' in ${this.owner(segs)}`, this.render([...segs, name]));
      }
      case 'type':
        if (el?.primitive && (!el.many || atItem) && primitiveJsonType(el.type) === 'number' && typeof value === 'number') {
          return found('value', `Invalid ${el.type} ${String(value)} for ${at}: expected a whole number`);
        }
        return found('structure', `Wrong type for ${at}: expected ${expected(el, atItem, e)}, found ${describe(value)}`);
      case 'enum':
        if (typeof value !== 'string') {
          return found('structure', `Wrong type for ${at}: expected code (a JSON string), found ${describe(value)}`);
        }
        return found('code-invalid', `Invalid code ${quote(value)} for ${at}: expected one of ${list(e.params.allowedValues)}`);
      case 'pattern': {
        const type = el?.primitive ? el.type : 'value';
        const format = FORMATS[type];
        const shown = type === 'string' || type === 'markdown' || type === 'xhtml' ? '' : ` ${quote(value)}`;
        return found('value', `Invalid ${type}${shown} for ${at}${format ? `: expected ${format}` : ''}`);
      }
      case 'minimum':
      case 'maximum': {
        const type = el?.primitive ? el.type : 'number';
        const word = e.keyword === 'minimum' ? 'at least' : 'at most';
        return found('value', `Invalid ${type} ${String(value)} for ${at}: must be ${word} ${String(e.params.limit)}`);
      }
      default:
        return found('invalid', `${at} fails the R4 JSON schema (${e.keyword} ${safeJson(e.params)})`);
    }
  }

  /** ajv's instancePath as segments (numbers for array indexes) and the value found there. */
  private locate(instancePath: string): { segs: Seg[]; value: unknown } {
    const segs: Seg[] = [];
    let cur: unknown = this.root;
    if (instancePath === '') return { segs, value: cur };
    for (const raw of instancePath.slice(1).split('/')) {
      const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (Array.isArray(cur)) {
        const i = Number(part);
        segs.push(i);
        cur = cur[i];
      } else {
        segs.push(part);
        cur = isObject(cur) && hasOwn(cur, part) ? cur[part] : undefined;
      }
    }
    return { segs, value: cur };
  }

  /** The element at `segs` in this resource's type, and whether `segs` ends at one item of it. */
  private element(segs: Seg[]): { el?: ElementDef; atItem: boolean; type?: string } {
    let type: string | undefined = this.type;
    let el: ElementDef | undefined;
    let atItem = false;
    for (const seg of segs) {
      if (typeof seg === 'number') {
        atItem = true;
        continue;
      }
      atItem = false;
      el = type ? this.model.types.get(type)?.get(seg) : undefined;
      type = el && !el.primitive && !el.resource ? el.type : undefined;
    }
    return { el, atItem, type: segs.length === 0 ? this.type : type };
  }

  private owner(segs: Seg[]): string {
    if (segs.length === 0) return this.expr;
    const { type } = this.element(segs);
    return type && !type.includes('_') ? `${this.render(segs)} (${type})` : this.render(segs);
  }

  private unknownElement(name: string, segs: Seg[]): string {
    const base = `Unknown element ${quoteName(name)} in ${this.owner(segs)}`;
    const { type } = this.element(segs);
    const elements = type ? this.model.types.get(type) : undefined;
    if (!elements) return base;
    if (name.startsWith('_')) {
      const plain = elements.get(name.slice(1));
      if (plain && !plain.primitive) {
        return `${base}: '_' elements carry extensions of primitive values, and '${name.slice(1)}' is a ${plain.type}`;
      }
    }
    const names = [...elements.keys()];
    const same = names.find((n) => n.toLowerCase() === name.toLowerCase());
    if (same) return `${base} (did you mean '${same}'?)`;
    const choices = names.filter((n) => elements.get(n)?.choice === name);
    if (choices.length > 0) {
      return `${base}: it is a choice of type, write one of ${list(choices)}`;
    }
    return base;
  }

  /** FHIRPath for `segs` below this resource: `_name` (a primitive's extensions) reads as `name`. */
  render(segs: Seg[]): string {
    let out = this.expr;
    let type: string | undefined = this.type;
    for (const seg of segs) {
      if (typeof seg === 'number') {
        out += `[${seg}]`;
        continue;
      }
      const elements: ReadonlyMap<string, ElementDef> | undefined = type ? this.model.types.get(type) : undefined;
      const el: ElementDef | undefined = elements?.get(seg);
      const name = el && seg.startsWith('_') && elements?.has(seg.slice(1)) ? seg.slice(1) : seg;
      out += `.${fhirPathName(name)}`;
      type = el && !el.primitive && !el.resource ? el.type : undefined;
    }
    return out;
  }
}

const FORMATS: Record<string, string> = {
  base64Binary: 'base64 (A-Z, a-z, 0-9, "+", "/" and "=" in groups of four)',
  canonical: 'a canonical URL without whitespace',
  code: 'a code without leading or trailing whitespace and with single spaces only',
  date: 'YYYY, YYYY-MM or YYYY-MM-DD',
  dateTime: 'YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff] with a time zone (Z or +hh:mm)',
  id: '1 to 64 characters, each A-Z, a-z, 0-9, "-" or "."',
  instant: 'YYYY-MM-DDThh:mm:ss[.fff] with a time zone (Z or +hh:mm)',
  markdown: 'text without control characters other than tab, CR and LF',
  oid: 'urn:oid: and a dotted number, e.g. urn:oid:2.16.840.1.113883',
  string: 'text without control characters other than tab, CR and LF',
  time: 'hh:mm:ss[.fff]',
  uri: 'a URI without whitespace',
  url: 'a URL without whitespace',
  uuid: 'urn:uuid: and a lower-case UUID',
  xhtml: 'an XHTML <div> element',
};

const MONTHS = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
];

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function expected(el: ElementDef | undefined, atItem: boolean, e: AjvError): string {
  if (!el) return `a JSON ${String(e.params.type)}`;
  if (el.many && !atItem) return el.resource ? 'an array of resources' : `an array of ${el.type}`;
  if (el.resource) return 'a resource (a JSON object)';
  if (el.primitive) return `${el.type} (a JSON ${primitiveJsonType(el.type)})`;
  return `${el.type.includes('_') ? 'BackboneElement' : el.type} (a JSON object)`;
}

function issue(code: Code, diagnostics: string, expression: string): ValidationIssue {
  return { severity: 'error', code, diagnostics, expression };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isEmpty(obj: Record<string, unknown>): boolean {
  for (const key in obj) if (hasOwn(obj, key)) return false;
  return true;
}

function hasOwn(obj: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

function pointer(segs: Seg[]): string {
  let out = '';
  for (const s of segs) out += `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`;
  return out;
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

function quote(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(truncate(value, 60)) : describe(value);
}

/** A name for a diagnostic: 'foo', or a JSON string when it has odd characters. */
function quoteName(name: string): string {
  return /^[A-Za-z0-9_$.-]{1,100}$/.test(name) ? `'${name}'` : JSON.stringify(truncate(name, 100));
}

function fhirPathName(name: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && name.length <= 100) return name;
  const escaped = truncate(name, 100).replace(/[\\`]/g, (c) => `\\${c}`);
  return `\`${escaped.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\``;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty array' : 'an array';
  switch (typeof value) {
    case 'string':
      return value === '' ? 'an empty string' : `the string ${JSON.stringify(truncate(value, 60))}`;
    case 'number':
    case 'boolean':
      return String(value);
    case 'object':
      return isEmpty(value as Record<string, unknown>) ? 'an empty object' : 'an object';
    default:
      return `a ${typeof value}`;
  }
}

function list(values: unknown): string {
  if (!Array.isArray(values)) return safeJson(values);
  const shown = values.slice(0, 12).map((v) => String(v));
  return values.length > 12 ? `${shown.join(', ')}, ... (${values.length} in all)` : shown.join(', ');
}

function safeJson(value: unknown): string {
  try {
    return truncate(JSON.stringify(value) ?? String(value), 200);
  } catch {
    return '?';
  }
}

function errorMessage(err: unknown): string {
  try {
    return err instanceof Error ? truncate(err.message, 200) : 'unexpected value thrown';
  } catch {
    return 'unexpected value thrown';
  }
}
