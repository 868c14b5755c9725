import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import type { Constraint } from '../../scripts/build-profiles';
import { profileSet } from './helpers';

const SP = 'https://fhir.sp-bridge.example/StructureDefinition/';
const SCT = 'http://snomed.info/sct';
const LOCAL = 'https://fhir.sp-bridge.example/CodeSystem/sp-outcome-measures';

function constraint(profile: string, elementId: string, key: string): Constraint {
  const e = profileSet()
    .snapshot(SP + profile)
    .find((x) => x.id === elementId);
  const c = e?.constraint?.find((x) => x.key === key);
  if (!c) throw new Error(`${profile} ${elementId} has no constraint ${key}`);
  return c;
}

function holds(expression: string, resource: object, base?: string): boolean {
  const result = fhirpath.evaluate(resource, base ? { base, expression } : expression, { resource }, r4) as unknown[];
  if (result.length !== 1 || typeof result[0] !== 'boolean') throw new Error(`${expression} gave ${JSON.stringify(result)}`);
  return result[0];
}

function score(system: string, code: string, value?: number): object {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system, code }] },
    ...(value === undefined ? { dataAbsentReason: { text: 'declined' } } : { valueQuantity: { value, system: 'http://unitsofmeasure.org', code: '{score}' } }),
  };
}

describe('SPOutcomeMeasure instrument range invariants', () => {
  // [key, system, codes, lowest valid, highest valid, an invalid value below, an invalid value above]
  const cases: [string, string, string[], number, number, number | undefined, number][] = [
    ['sp-om-wemwbs', SCT, ['718426000', '885541000000103'], 14, 70, 13, 71],
    ['sp-om-swemwbs', SCT, ['718466001', '960481000000107'], 7, 35, 6.99, 35.5],
    ['sp-om-pam-level', SCT, ['962851000000103'], 1, 4, 0, 5],
    ['sp-om-eq5d-vas', SCT, ['736535009'], 0, 100, -1, 101],
    ['sp-om-eq5d-index', SCT, ['736534008'], -0.594, 1, undefined, 1.001],
    ['sp-om-ons4', LOCAL, ['ons4-life-satisfaction', 'ons4-worthwhile', 'ons4-happy-yesterday', 'ons4-anxious-yesterday'], 0, 10, -1, 11],
    ['sp-om-gad7', SCT, ['445455005'], 0, 21, -1, 22],
    ['sp-om-phq9', SCT, ['720433000', '506701000000100'], 0, 27, -1, 28],
    ['sp-om-reqol10', SCT, ['1091071000000100'], 0, 40, -1, 41],
    ['sp-om-reqol20', SCT, ['1091081000000103'], 0, 80, -1, 81],
  ];

  describe.each(cases)('%s', (key, system, codes, low, high, below, above) => {
    const { expression } = constraint('SPOutcomeMeasure', 'Observation', key);

    it.each(codes)('holds at the ends of the range and fails outside it (code %s)', (code) => {
      expect(holds(expression as string, score(system, code, low))).toBe(true);
      expect(holds(expression as string, score(system, code, high))).toBe(true);
      if (below !== undefined) expect(holds(expression as string, score(system, code, below))).toBe(false);
      expect(holds(expression as string, score(system, code, above))).toBe(false);
    });

    it('does not apply to other codes, or when there is no value (dataAbsentReason)', () => {
      expect(holds(expression as string, score(SCT, '00000000', above))).toBe(true);
      expect(holds(expression as string, score(system, codes[0]))).toBe(true);
    });
  });

  it('PAM level must be a whole level', () => {
    const { expression } = constraint('SPOutcomeMeasure', 'Observation', 'sp-om-pam-level');
    expect(holds(expression as string, score(SCT, '962851000000103', 2.5))).toBe(false);
    expect(holds(expression as string, score(SCT, '962851000000103', 3))).toBe(true);
  });
});

describe('sp-subject-1: the patient is a reference or an NHS number', () => {
  it.each([
    ['SPReferral', 'ServiceRequest.subject'],
    ['SPCarePlan', 'CarePlan.subject'],
    ['SPOutcomeMeasure', 'Observation.subject'],
    ['SPTask', 'Task.for'],
  ])('%s %s', (profile, elementId) => {
    const { expression } = constraint(profile, elementId, 'sp-subject-1');
    const base = elementId;
    expect(holds(expression as string, { reference: 'Patient/123' }, base)).toBe(true);
    expect(holds(expression as string, { reference: 'urn:uuid:3f0d6a3e-8c1b-4f57-9a52-2b1f5e0c7d41' }, base)).toBe(true);
    expect(holds(expression as string, { identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000009' } }, base)).toBe(true);
    expect(holds(expression as string, { identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number' } }, base)).toBe(false);
    expect(holds(expression as string, { identifier: { system: 'https://example.org/mrn', value: '123' } }, base)).toBe(false);
    expect(holds(expression as string, { display: 'Jane Smith' }, base)).toBe(false);
  });
});

describe('sp-patient-1: NHS numbers are 10 digits', () => {
  const { expression } = constraint('SPPatient', 'Patient', 'sp-patient-1');
  const patient = (value: string): object => ({
    resourceType: 'Patient',
    identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value }, { system: 'https://example.org/mrn', value: 'A 1' }],
  });

  it('accepts 10 digits and refuses spaces, short and non-digit values', () => {
    expect(holds(expression as string, patient('9434765919'))).toBe(true);
    expect(holds(expression as string, patient('943 476 5919'))).toBe(false);
    expect(holds(expression as string, patient('943476591'))).toBe(false);
    expect(holds(expression as string, patient('94347659190'))).toBe(false);
    expect(holds(expression as string, patient('943476591X'))).toBe(false);
  });
});
