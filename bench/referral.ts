/**
 * A realistic social prescribing referral: the kind of ServiceRequest a GP system sends when a patient is
 * referred to a social prescribing link worker. About 3 KB as compact JSON.
 */

export const SNOMED = 'http://snomed.info/sct';
export const REFERRAL_CODE = '871731000000106'; // Referral to social prescribing service
export const NHS_NUMBER_SYSTEM = 'https://fhir.nhs.uk/Id/nhs-number';

export interface ReferralOptions {
  /** Local referral number; autocannon's `[<id>]` placeholder may be passed to make each body unique. */
  referralNumber: string;
  patientId: string;
  nhsNumber: string;
  status: fhir4.ServiceRequest['status'];
  authoredOn: string;
}

export function referral(o: ReferralOptions): fhir4.ServiceRequest {
  return {
    resourceType: 'ServiceRequest',
    meta: { profile: ['https://fhir.sp-bridge.example/StructureDefinition/SPReferral'] },
    text: {
      status: 'generated',
      div:
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>Referral to social prescribing service for Jane SMITH (NHS ' +
        `${o.nhsNumber}): feeling lonely, lives alone, housing problems.</p></div>`,
    },
    identifier: [
      { use: 'usual', system: 'https://sp-bridge.example/Id/referral-number', value: o.referralNumber },
      { use: 'secondary', system: 'https://fhir.nhs.uk/Id/ubr-number', value: `0000-${o.nhsNumber.slice(0, 4)}-${o.nhsNumber.slice(4, 8)}` },
    ],
    status: o.status,
    intent: 'order',
    category: [
      {
        coding: [{ system: SNOMED, code: '306206005', display: 'Referral to service' }],
        text: 'Referral to service',
      },
    ],
    priority: 'routine',
    code: {
      coding: [{ system: SNOMED, code: REFERRAL_CODE, display: 'Referral to social prescribing service' }],
      text: 'Referral to social prescribing service',
    },
    subject: {
      reference: `Patient/${o.patientId}`,
      identifier: { system: NHS_NUMBER_SYSTEM, value: o.nhsNumber },
      display: 'Jane SMITH',
    },
    occurrencePeriod: { start: o.authoredOn.slice(0, 10), end: '2026-12-31' },
    authoredOn: o.authoredOn,
    requester: {
      reference: 'PractitionerRole/gp-role-b86016',
      identifier: { system: 'https://fhir.nhs.uk/Id/sds-role-profile-id', value: '555254240100' },
      display: 'Dr Anita PATEL, Beeston Hill Health Centre',
    },
    performer: [
      {
        reference: 'Organization/spls-leeds-south',
        identifier: { system: 'https://fhir.nhs.uk/Id/ods-organization-code', value: 'RR8SP' },
        display: 'Leeds South Social Prescribing Service',
      },
      { reference: 'Practitioner/splw-0042', display: 'Sam OKAFOR, Social Prescribing Link Worker' },
    ],
    reasonCode: [
      { coding: [{ system: SNOMED, code: '267076002', display: 'Feeling lonely' }], text: 'Socially isolated since bereavement' },
      { coding: [{ system: SNOMED, code: '105529008', display: 'Lives alone' }], text: 'Lives alone, second floor flat' },
      { coding: [{ system: SNOMED, code: '81877007', display: 'Housing problems' }], text: 'Rent arrears, damp in the flat' },
    ],
    supportingInfo: [{ reference: 'Observation/wemwbs-baseline', display: 'WEMWBS baseline score 38' }],
    note: [
      {
        authorReference: { reference: 'Practitioner/gp-b86016-7', display: 'Dr Anita PATEL' },
        time: o.authoredOn,
        text:
          'Widowed eight months ago and lives alone in a second floor flat. Has stopped attending the lunch club ' +
          'and church choir she used to enjoy. Reports low mood and poor sleep; PHQ-9 score 11. Not at risk of ' +
          'self-harm. Would like help to get out of the house and meet people, and advice on pension credit and ' +
          'council tax support. Prefers phone contact in the mornings.',
      },
      {
        authorString: 'Practice care coordinator',
        time: o.authoredOn,
        text:
          'Patient consented to this referral and to her details being shared with the social prescribing service. ' +
          'Mobility limited by knee osteoarthritis: uses a walking stick, can manage the bus with help. Hearing ' +
          'aid user, please speak clearly. Daughter (next of kin) lives in Bradford and visits fortnightly.',
      },
    ],
    patientInstruction:
      'A link worker will phone you within two weeks to arrange a first conversation about what matters to you.',
  };
}

/** The benchmark's POST body: one referral, compact JSON. */
export function referralBody(referralNumber = 'REF-2026-000001'): string {
  return JSON.stringify(
    referral({
      referralNumber,
      patientId: 'pat-000123',
      nhsNumber: '9434765919',
      status: 'active',
      authoredOn: '2026-03-14T10:30:00Z',
    }),
  );
}
