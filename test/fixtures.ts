/** Real-looking social prescribing resources: valid NHS numbers, national SNOMED CT codes. */

export const NHS_NUMBER_SYSTEM = 'https://fhir.nhs.uk/Id/nhs-number';
export const SNOMED = 'http://snomed.info/sct';
export const REFERRAL_CODE = '871731000000106'; // Referral to social prescribing service

/** NHS numbers that pass the Modulus 11 check (NHS England test ranges start 999). */
export const NHS_NUMBERS = ['9000000009', '9434765919', '9449306060', '9449310475', '9449310351'];

export function patient(nhsNumber = NHS_NUMBERS[0], extra: Partial<fhir4.Patient> = {}): fhir4.Patient {
  return {
    resourceType: 'Patient',
    identifier: [{ system: NHS_NUMBER_SYSTEM, value: nhsNumber }],
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

export function carePlan(patientRef: string, referralRef: string): fhir4.CarePlan {
  return {
    resourceType: 'CarePlan',
    // R4 CarePlan.basedOn may only name another CarePlan: the referral is linked with the R5 basedOn extension.
    extension: [{ url: 'http://hl7.org/fhir/5.0/StructureDefinition/extension-CarePlan.basedOn', valueReference: { reference: referralRef } }],
    status: 'active',
    intent: 'plan',
    subject: { reference: patientRef },
    period: { start: '2026-03-20' },
    title: 'Personalised care and support plan',
  };
}

export function task(patientRef: string, referralRef: string, status: fhir4.Task['status'] = 'requested'): fhir4.Task {
  return {
    resourceType: 'Task',
    status,
    intent: 'order',
    focus: { reference: referralRef },
    for: { reference: patientRef },
    authoredOn: '2026-03-14T10:30:00Z',
  };
}
