import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { ValidationIssue } from '../../src/validation/types';
import { Validator } from '../../src/validation/validator';

const validator = Validator.load();
const examples = path.resolve(__dirname, '../../profiles/examples');
const shared = path.resolve(__dirname, '../../../shared/fhir');

function example<T>(file: string): T {
  return JSON.parse(readFileSync(path.join(examples, file), 'utf8')) as T;
}

const referral = () => example<fhir4.ServiceRequest & Record<string, unknown>>('ServiceRequest-sp-referral-example.json');
const errors = (issues: ValidationIssue[]) => issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');

function expectError(issues: ValidationIssue[], expression: string, pattern?: RegExp, rule?: string): void {
  const found = errors(issues).filter((i) => i.expression === expression && (!pattern || pattern.test(i.diagnostics)) && (!rule || i.rule === rule));
  if (found.length === 0) throw new Error(`No error at ${expression}${pattern ? ` matching ${pattern}` : ''}; got ${JSON.stringify(errors(issues), null, 1)}`);
}

describe('validator: the cases common validators miss', () => {
  it('accepts the referral example as it is', () => {
    expect(errors(validator.validate(referral()))).toEqual([]);
  });

  it('unknown element', () => {
    expectError(validator.validate({ ...referral(), colour: 'blue' }), 'ServiceRequest.colour', /colour/);
  });

  it('missing required element (authoredOn in the referral profile)', () => {
    const r = referral();
    delete r.authoredOn;
    expectError(validator.validate(r), 'ServiceRequest.authoredOn', /required/);
  });

  it('missing subject', () => {
    const r = referral();
    delete (r as Partial<fhir4.ServiceRequest>).subject;
    expectError(validator.validate(r), 'ServiceRequest.subject', /required/);
  });

  it('wrong JSON type', () => {
    expectError(validator.validate({ ...referral(), priority: 3 }), 'ServiceRequest.priority');
    expectError(validator.validate({ ...referral(), subject: [{ reference: 'Patient/x' }] }), 'ServiceRequest.subject');
  });

  it('bad dateTime', () => {
    expectError(validator.validate({ ...referral(), authoredOn: '2026-13-01' }), 'ServiceRequest.authoredOn');
    expectError(validator.validate({ ...referral(), authoredOn: '2026-03-14T10:30:00' }), 'ServiceRequest.authoredOn');
  });

  it('status "bogus" in a required binding', () => {
    expectError(validator.validate({ ...referral(), status: 'bogus' }), 'ServiceRequest.status');
  });

  it('empty string', () => {
    expectError(validator.validate({ ...referral(), priority: '' }), 'ServiceRequest.priority');
  });

  it('prr-1: orderDetail only with a code', () => {
    const r = referral();
    delete (r as Partial<fhir4.ServiceRequest>).code;
    r.orderDetail = [{ text: 'weekly sessions' }];
    expectError(validator.validate(r), 'ServiceRequest', undefined, 'prr-1');
  });

  it('ref-1: a reference to a #contained resource that is not there', () => {
    const r = referral();
    r.performer = [{ reference: '#splw' }];
    expectError(validator.validate(r), 'ServiceRequest.performer[0]', undefined, 'ref-1');
  });

  it('SNOMED CT id failing its Verhoeff check digit (float-corrupted)', () => {
    const r = referral();
    r.reasonCode = [{ coding: [{ system: 'http://snomed.info/sct', code: '1037741000000100' }] }];
    expectError(validator.validate(r), 'ServiceRequest.reasonCode[0].coding[0].code', /Verhoeff|check digit/i);
  });

  it('a concept outside the subset in the required referral binding', () => {
    const r = referral();
    r.code = { coding: [{ system: 'http://snomed.info/sct', code: '71388002', display: 'Procedure' }] };
    expectError(validator.validate(r), 'ServiceRequest.code.coding', /sp-referral|value set/i);
  });

  it('NHS number failing Modulus 11', () => {
    const patient = example<fhir4.Patient>('Patient-sp-patient-example.json');
    const nhs = patient.identifier!.find((i) => i.system === 'https://fhir.nhs.uk/Id/nhs-number')!;
    nhs.value = '9000000008';
    const issues = validator.validate(patient);
    const index = patient.identifier!.indexOf(nhs);
    expectError(issues, `Patient.identifier[${index}].value`, /NHS number|Modulus|check/i);
    expect(JSON.stringify(issues)).not.toContain('9000000008');
  });

  it('SWEMWBS score 40 (range 7-35)', () => {
    const obs = example<fhir4.Observation>('Observation-sp-swemwbs-example.json');
    obs.valueQuantity = { ...obs.valueQuantity, value: 40 };
    expectError(validator.validate(obs), 'Observation', undefined, 'sp-om-swemwbs');
  });

  it('an ONS4 item outside 0-10 (local code: ONS4 has no SNOMED CT code)', () => {
    const obs = example<fhir4.Observation>('Observation-sp-ons4-life-satisfaction-example.json');
    expect(errors(validator.validate(obs))).toEqual([]);
    obs.valueQuantity = { ...obs.valueQuantity, value: 11 };
    expectError(validator.validate(obs), 'Observation', undefined, 'sp-om-ons4');
  });

  it('reports every problem at once, not just the first', () => {
    const r = { ...referral(), status: 'bogus', authoredOn: 'yesterday', colour: 'blue' };
    delete (r as Partial<fhir4.ServiceRequest>).subject;
    const found = new Set(errors(validator.validate(r)).map((i) => i.expression));
    expect(found).toEqual(new Set(['ServiceRequest.status', 'ServiceRequest.authoredOn', 'ServiceRequest.colour', 'ServiceRequest.subject']));
  });

  it('a resource claiming an unknown profile is a clear error', () => {
    const r = referral();
    r.meta = { profile: ['https://example.org/StructureDefinition/nope'] };
    expectError(validator.validate(r), 'ServiceRequest.meta.profile[0]', /Unknown profile/);
  });

  it('a resource without meta.profile is checked against the default social prescribing profile', () => {
    const r = referral();
    delete r.meta;
    delete r.authoredOn;
    expectError(validator.validate(r), 'ServiceRequest.authoredOn', /required/);
    // ...and the base R4 definition does not require authoredOn.
    expect(errors(validator.validate(r, { profile: 'http://hl7.org/fhir/StructureDefinition/ServiceRequest' }))).toEqual([]);
  });

  it('a reference to the wrong type of resource', () => {
    const r = referral();
    r.subject = { reference: 'Practitioner/abc' };
    expectError(validator.validate(r), 'ServiceRequest.subject.reference', /Patient/);
  });

  it('a choice type the profile does not allow', () => {
    const obs = example<fhir4.Observation & Record<string, unknown>>('Observation-sp-swemwbs-example.json');
    delete obs.valueQuantity;
    obs.valueString = 'twenty';
    expectError(validator.validate(obs), 'Observation.valueString');
  });

  it('never throws, whatever the input', () => {
    const junk: unknown[] = [null, 42, 'x', [], {}, { resourceType: 7 }, { resourceType: 'Nope' }, { resourceType: 'ServiceRequest', subject: 'x', code: [[[]]] },
      { resourceType: 'Bundle', entry: [null, { resource: 5 }, { resource: { resourceType: 'Patient', identifier: 'x' } }] },
      JSON.parse('{"resourceType":"Patient","__proto__":{"x":1}}'), { resourceType: 'Observation', valueQuantity: { value: 'high' } }];
    for (const input of junk) {
      const issues = validator.validate(input);
      expect(Array.isArray(issues)).toBe(true);
      expect(issues.every((i) => i.code !== 'exception')).toBe(true);
    }
  });
});

describe('validator: examples', () => {
  it.each(readdirSync(examples))('profiles/examples/%s validates with no errors', (file) => {
    expect(errors(validator.validate(example(file)))).toEqual([]);
  });

  const covered = ['Patient', 'ServiceRequest', 'CarePlan', 'Observation', 'Task'];
  const files = (dir: string): string[] =>
    readdirSync(dir).flatMap((f) => (statSync(path.join(dir, f)).isDirectory() ? files(path.join(dir, f)) : f.endsWith('.json') ? [path.join(dir, f)] : []));
  const upstream = [...files(path.join(shared, 'hl7-r4/examples')), ...files(path.join(shared, 'uk-core/examples'))]
    .map((f) => ({ f, r: JSON.parse(readFileSync(f, 'utf8')) as fhir4.Resource }))
    .filter(({ r }) => covered.includes(r.resourceType));
  it('finds upstream examples to check', () => {
    expect(upstream.length).toBeGreaterThan(20);
  });
  // Genuine defects in the published examples, which the HL7 validator reports too.
  const upstreamDefects: Record<string, string> = {
    'hl7-r4/examples/Observation/Observation-clinical-gender.json': 'performer refers to an Encounter, which Observation.performer does not allow',
  };
  it.each(Object.entries(upstreamDefects))('%s is reported: %s', (rel) => {
    const r = JSON.parse(readFileSync(path.join(shared, rel), 'utf8')) as fhir4.Resource;
    expect(errors(validator.validate(r, { profile: `http://hl7.org/fhir/StructureDefinition/${r.resourceType}` })).length).toBeGreaterThan(0);
  });
  it.each(upstream.map(({ f }) => path.relative(shared, f)).filter((rel) => !(rel in upstreamDefects)))('%s validates against base R4 with no errors', (rel) => {
    const r = JSON.parse(readFileSync(path.join(shared, rel), 'utf8')) as fhir4.Resource;
    const issues = validator.validate(r, { profile: `http://hl7.org/fhir/StructureDefinition/${r.resourceType}` });
    expect(errors(issues)).toEqual([]);
  });
});
