import * as path from 'node:path';
import { checkNhsNumber } from '../../src/terminology/nhs-number';
import { InstanceChecker, loadTerminologyValueSets } from './checker';
import { REPO, SP_PROFILES, examples, exampleResources, profileSet, readJson, walkObjects } from './helpers';

const checker = new InstanceChecker(profileSet(), loadTerminologyValueSets());
const snomed = new Map(
  readJson<{ concept: { code: string; display: string }[] }>(path.join(REPO, 'terminology/snomed-sp-subset.codesystem.json')).concept.map((c) => [
    c.code,
    c.display,
  ]),
);
const resources = exampleResources();

describe('profiles/examples', () => {
  it('has at least one standalone example per profile', () => {
    for (const url of Object.keys(SP_PROFILES)) {
      const claimants = examples().filter((e) => e.resource.meta?.profile?.includes(url));
      expect({ url, count: claimants.length > 0 }).toEqual({ url, count: true });
    }
  });

  it('has outcome measure examples for SWEMWBS, WEMWBS, PAM level and EQ-5D VAS', () => {
    const codes = resources
      .filter((r) => r.resource.resourceType === 'Observation')
      .map((r) => (r.resource.code as { coding: { code: string }[] }).coding[0].code);
    expect(codes).toEqual(expect.arrayContaining(['718466001', '718426000', '962851000000103', '736535009']));
  });

  describe.each(resources.map((r) => [r.where, r.resource] as const))('%s', (_where, resource) => {
    it('claims exactly one sp-bridge profile, for its type', () => {
      const claimed = (resource.meta?.profile ?? []).filter((p) => p in SP_PROFILES);
      expect(claimed).toHaveLength(1);
      expect(SP_PROFILES[claimed[0]]).toBe(resource.resourceType);
    });

    it('conforms to the profile it claims (cardinality, types, fixed/pattern values, slices, bindings, invariants)', () => {
      const url = (resource.meta?.profile ?? []).find((p) => p in SP_PROFILES) as string;
      expect(checker.check(resource as never, url)).toEqual([]);
    });

    it('uses only valid NHS numbers and SNOMED CT codes from the bundled subset, with their displays', () => {
      walkObjects(resource, (o) => {
        if (o.system === 'https://fhir.nhs.uk/Id/nhs-number' && typeof o.value === 'string') {
          expect({ nhs: o.value, check: checkNhsNumber(o.value).valid }).toEqual({ nhs: o.value, check: true });
        }
        if (o.system === 'http://snomed.info/sct' && typeof o.code === 'string') {
          expect({ code: o.code, display: o.display }).toEqual({ code: o.code, display: snomed.get(o.code) });
        }
      });
    });
  });
});

describe('profiles/examples/Bundle-sp-referral-transaction.json', () => {
  type Entry = { fullUrl?: string; resource: Record<string, unknown> & { resourceType: string }; request: { method: string; url: string; ifNoneExist?: string } };
  const bundle = readJson<{ resourceType: string; type: string; entry: Entry[] }>(path.join(REPO, 'profiles/examples/Bundle-sp-referral-transaction.json'));

  it('is a valid R4 transaction Bundle (base Bundle definition)', () => {
    expect(bundle.type).toBe('transaction');
    expect(checker.check(bundle as never, 'http://hl7.org/fhir/StructureDefinition/Bundle')).toEqual([]);
  });

  it('holds a Patient, a ServiceRequest, a CarePlan, a Task and Observations, each POSTed', () => {
    expect(bundle.entry.map((e) => e.resource.resourceType)).toEqual(
      expect.arrayContaining(['Patient', 'ServiceRequest', 'CarePlan', 'Task', 'Observation']),
    );
    for (const e of bundle.entry) expect(e.request).toMatchObject({ method: 'POST', url: e.resource.resourceType });
  });

  it('links entries by urn:uuid fullUrls, and every urn:uuid reference resolves within the Bundle', () => {
    const fullUrls = bundle.entry.map((e) => e.fullUrl as string);
    for (const f of fullUrls) expect(f).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(fullUrls).size).toBe(fullUrls.length);
    const refs: string[] = [];
    walkObjects(bundle.entry.map((e) => e.resource), (o) => {
      if (typeof o.reference === 'string') refs.push(o.reference);
    });
    expect(refs.length).toBeGreaterThan(5);
    for (const r of refs) expect(fullUrls).toContain(r);
  });

  it('creates the Patient conditionally on its NHS number', () => {
    const patient = bundle.entry.find((e) => e.resource.resourceType === 'Patient') as Entry;
    const nhs = (patient.resource.identifier as { system: string; value: string }[]).find((i) => i.system === 'https://fhir.nhs.uk/Id/nhs-number');
    expect(patient.request.ifNoneExist).toBe(`identifier=https://fhir.nhs.uk/Id/nhs-number|${nhs?.value}`);
  });

  it('creates every other entry conditionally on its business identifier, so it can be POSTed again', () => {
    for (const e of bundle.entry) {
      const [id] = e.resource.identifier as { system: string; value: string }[];
      expect(e.request.ifNoneExist).toBe(`identifier=${id.system}|${id.value}`);
    }
  });
});

describe('the test checker is not vacuous: broken copies of the examples fail', () => {
  const load = (file: string): Record<string, any> => readJson(path.join(REPO, 'profiles/examples', file));
  const findings = (resource: Record<string, any>): string[] =>
    checker.check(resource as never, resource.meta.profile[0]).map((f) => `${f.location}: ${f.message}`);

  it.each<[string, string, (r: Record<string, any>) => void, RegExp]>([
    ['Patient-sp-patient-example.json', 'no NHS number', (r) => (r.identifier = [{ system: 'https://example.org/mrn', value: '1' }]), /slice nhsNumber: minimum 1/],
    ['Patient-sp-patient-example.json', 'NHS number with spaces', (r) => (r.identifier[0].value = '900 000 0009'), /sp-patient-1/],
    ['ServiceRequest-sp-referral-example.json', 'no authoredOn', (r) => delete r.authoredOn, /minimum 1 \(ServiceRequest.authoredOn\)/],
    ['ServiceRequest-sp-referral-example.json', 'a code outside sp-referral', (r) => (r.code.coding[0].code = '306206005'), /required value set .*sp-referral/],
    ['ServiceRequest-sp-referral-example.json', 'subject by display only', (r) => (r.subject = { display: 'M Ellis' }), /sp-subject-1/],
    ['ServiceRequest-sp-referral-example.json', 'an unknown element', (r) => (r.referralReason = 'x'), /unknown element referralReason/],
    ['Observation-sp-swemwbs-example.json', 'SWEMWBS out of range', (r) => (r.valueQuantity.value = 36), /sp-om-swemwbs/],
    ['Observation-sp-swemwbs-example.json', 'a unit other than {score}', (r) => (r.valueQuantity.code = '1'), /must be exactly "\{score\}"/],
    ['Observation-sp-swemwbs-example.json', 'a string value', (r) => { delete r.valueQuantity; r.valueString = '21'; }, /type String is not allowed/],
    ['Observation-sp-swemwbs-example.json', 'no survey category', (r) => (r.category[0].coding[0].code = 'exam'), /slice survey: minimum 1/],
    ['CarePlan-sp-careplan-example.json', 'no referral extension', (r) => delete r.extension, /slice referral: minimum 1/],
    ['CarePlan-sp-careplan-example.json', 'no period start', (r) => (r.period = { end: '2026-09-01' }), /minimum 1 \(CarePlan.period.start\)/],
    ['Task-sp-referral-task-example.json', 'intent plan', (r) => (r.intent = 'plan'), /must be exactly "order"/],
    ['Task-sp-referral-task-example.json', 'no focus', (r) => delete r.focus, /minimum 1 \(Task.focus\)/],
  ])('%s with %s', (file, _what, breakIt, expected) => {
    const resource = load(file);
    expect(findings(resource)).toEqual([]);
    breakIt(resource);
    expect(findings(resource).join('\n')).toMatch(expected);
  });
});
