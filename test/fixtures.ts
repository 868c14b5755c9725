import { randomUUID } from 'node:crypto';
/** Real-looking social prescribing resources: valid NHS numbers, national SNOMED CT codes. */

export const NHS_NUMBER_SYSTEM = 'https://fhir.nhs.uk/Id/nhs-number';
export const SNOMED = 'http://snomed.info/sct';
export const REFERRAL_CODE = '871731000000106'; // Referral to social prescribing service

/** NHS numbers that pass the Modulus 11 check (NHS England test ranges start 999). */
export const NHS_NUMBERS = ['9000000009', '9434765919', '9449306060', '9449310475', '9449310351'];

/** The identifier SPPatient requires (slice nhsNumber): the NHS number system and a valid 10-digit number. */
export function nhsNumberIdentifier(nhsNumber = NHS_NUMBERS[0]): fhir4.Identifier {
  return { system: NHS_NUMBER_SYSTEM, value: nhsNumber };
}

/**
 * A Patient's identifiers: the NHS number SPPatient requires, then the given ones. Use it where a test gives a
 * patient its own business identifier (e.g. to scope a search), since `patient(nhs, { identifier })` replaces them all.
 */
export function withNhsNumber(identifiers: fhir4.Identifier[], nhsNumber = NHS_NUMBERS[0]): fhir4.Identifier[] {
  return [nhsNumberIdentifier(nhsNumber), ...identifiers];
}

/** A random NHS number (starting 9, as the test ranges do) that passes the Modulus 11 check. */
export function randomNhsNumber(): string {
  for (;;) {
    const stem = `9${Math.floor(Math.random() * 1e8).toString().padStart(8, '0')}`;
    let sum = 0;
    for (let i = 0; i < 9; i++) sum += Number(stem[i]) * (10 - i);
    const check = (11 - (sum % 11)) % 11;
    if (check !== 10) return `${stem}${check}`;
  }
}

export function patient(nhsNumber = NHS_NUMBERS[0], extra: Partial<fhir4.Patient> = {}): fhir4.Patient {
  return {
    resourceType: 'Patient',
    identifier: [nhsNumberIdentifier(nhsNumber)],
    name: [{ use: 'official', family: 'Smith', given: ['Jane'] }],
    gender: 'female',
    birthDate: '1956-04-12',
    address: [{ line: ['1 High Street'], city: 'Leeds', postalCode: 'LS1 4AP' }],
    ...extra,
  };
}

export function referral(patientRef: string, extra: Partial<fhir4.ServiceRequest> = {}): fhir4.ServiceRequest {
  return {
    resourceType: 'ServiceRequest',
    identifier: [{ system: 'https://sp-bridge.example/referral', value: `ref-${Math.random().toString(36).slice(2)}` }],
    status: 'active',
    intent: 'order',
    category: [{ coding: [{ system: SNOMED, code: '306206005', display: 'Referral to service' }] }],
    code: { coding: [{ system: SNOMED, code: REFERRAL_CODE, display: 'Referral to social prescribing service' }] },
    subject: { reference: patientRef },
    authoredOn: '2026-03-14T10:30:00Z',
    requester: { reference: 'Practitioner/gp-1' },
    performer: [{ reference: 'Practitioner/splw-1' }],
    ...extra,
  };
}

export function wellbeing(patientRef: string, score: number, extra: Partial<fhir4.Observation> = {}): fhir4.Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey' }] }],
    code: { coding: [{ system: SNOMED, code: '885541000000103', display: 'Warwick-Edinburgh Mental Well-being Scale score' }] },
    subject: { reference: patientRef },
    effectiveDateTime: '2026-04-01T09:00:00Z',
    valueQuantity: { value: score, unit: 'score', system: 'http://unitsofmeasure.org', code: '{score}' },
    ...extra,
  };
}

export const CAREPLAN_BASED_ON_R5 = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-CarePlan.basedOn';

export function carePlan(patientRef: string, referralRef: string, extra: Partial<fhir4.CarePlan> = {}): fhir4.CarePlan {
  return {
    resourceType: 'CarePlan',
    // R4 CarePlan.basedOn may only name another CarePlan: the referral is linked with the R5 basedOn extension.
    extension: [{ url: CAREPLAN_BASED_ON_R5, valueReference: { reference: referralRef } }],
    status: 'active',
    intent: 'plan',
    subject: { reference: patientRef },
    period: { start: '2026-03-20' },
    title: 'Personalised care and support plan',
    ...extra,
  };
}

export function task(
  patientRef: string,
  referralRef: string,
  status: fhir4.Task['status'] = 'requested',
  extra: Partial<fhir4.Task> = {},
): fhir4.Task {
  return {
    resourceType: 'Task',
    status,
    intent: 'order',
    focus: { reference: referralRef },
    for: { reference: patientRef },
    authoredOn: '2026-03-14T10:30:00Z',
    ...extra,
  };
}

/** A fresh identifier system: tests that share a store each work in their own. */
export function scope(): string {
  return `https://sp-bridge.example/test/${randomUUID()}`;
}

export function ident(system: string, value: string): fhir4.Identifier[] {
  return [{ system, value }];
}

/** A patient's identifiers: the NHS number SPPatient requires, and the test's own. */
export function pident(system: string, value: string): fhir4.Identifier[] {
  return withNhsNumber(ident(system, value));
}
