import Ajv from 'ajv';
import type { Acknowledgement, DeliveryItem } from '../../src/delivery/adapter';
import {
  meshUpdateRecordAdapter,
  MeshUpdateRecordAdapter,
  meshUpdateRecordSettingsSchema,
  PHARMACY_FIRST_NOTICE,
} from '../../src/delivery/adapters/mesh-update-record';
import { DestinationsError, parseDestinations } from '../../src/delivery/destinations';
import { findBuiltInAdapter } from '../../src/delivery/registry';
import { findPatient, ITK, readItkHeader, type PatientDetails } from '../../src/mesh/itk3';
import { buildUpdateRecordMessage, stu3System, UPDATE_RECORD, UpdateRecordMappingError } from '../../src/mesh/update-record';
import { startMockMesh, type MockMesh } from '../../src/mock/mesh';

/* eslint-disable @typescript-eslint/no-explicit-any */
type J = Record<string, any>;
type Rec = fhir4.ServiceRequest | fhir4.CarePlan | fhir4.Observation | fhir4.Bundle | fhir4.Task;

let mesh: MockMesh;
const env = { MESH_PASSWORD: 'password', MESH_SHARED_KEY: 'TestKey' };
const settings = (extra: Record<string, unknown> = {}) => ({
  baseUrl: mesh.url,
  mailboxId: 'X26ABC1',
  mailboxPasswordEnv: 'MESH_PASSWORD',
  sharedKeyEnv: 'MESH_SHARED_KEY',
  senderOdsCode: 'A83008',
  senderOrganisationName: 'Riverside Social Prescribing Service',
  pharmacyFirstAuthorised: true,
  pollIntervalMs: 20,
  ...extra,
});

const SCT = 'http://snomed.info/sct';
const NHS = 'https://fhir.nhs.uk/Id/nhs-number';

const patient: fhir4.Patient = {
  resourceType: 'Patient',
  id: 'pat',
  identifier: [
    {
      system: NHS,
      value: '9434765919',
      extension: [
        {
          url: 'https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus',
          valueCodeableConcept: {
            coding: [{ system: 'https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland', code: '01', display: 'Number present and verified' }],
          },
        },
      ],
    },
  ],
  name: [{ use: 'official', family: 'Mowers', given: ['Jane'] }],
  gender: 'female',
  birthDate: '1955-01-09',
};

const referral: fhir4.ServiceRequest = {
  resourceType: 'ServiceRequest',
  id: 'sr1',
  extension: [
    {
      url: 'https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-SourceOfServiceRequest',
      valueCodeableConcept: { coding: [{ system: SCT, code: '306098008', display: 'Self-referral' }] },
    },
  ],
  identifier: [{ system: 'https://sp.example.org/Id/referral', value: 'REF-0001' }],
  status: 'on-hold',
  intent: 'order',
  category: [{ coding: [{ system: SCT, code: '306206005', display: 'Referral to service' }] }],
  priority: 'routine',
  code: { coding: [{ system: SCT, code: '871731000000106', display: 'Referral to social prescribing service' }] },
  orderDetail: [{ coding: [{ system: SCT, code: '390893007', display: 'Referral to physical activity program' }] }],
  subject: { reference: 'Patient/pat' },
  encounter: { reference: 'Encounter/enc1' },
  authoredOn: '2026-11-20T10:00:00Z',
  requester: { reference: 'Practitioner/gp1', display: 'Dr A Patel', identifier: { system: 'https://fhir.hl7.org.uk/Id/gmc-number', value: 'G1234567' } },
  performerType: { text: 'Social prescribing link worker' },
  performer: [{ reference: 'Organization/spl', display: 'Riverside Social Prescribing Service' }],
  reasonCode: [
    { coding: [{ system: SCT, code: '267076002', display: 'Feeling lonely' }] },
    { coding: [{ system: SCT, code: '81877007', display: 'Housing problems' }] },
  ],
  note: [{ text: 'Lives alone since bereavement; interested in a walking group.', time: '2026-11-20T10:00:00Z' }],
};

const carePlan: fhir4.CarePlan = {
  resourceType: 'CarePlan',
  id: 'cp1',
  status: 'revoked',
  intent: 'plan',
  category: [{ coding: [{ system: SCT, code: '734163000', display: 'Care plan' }] }],
  title: 'Personalised care and support plan',
  subject: { reference: 'Patient/pat' },
  period: { start: '2026-11-21' },
  created: '2026-11-21T09:00:00Z',
  author: { reference: 'Practitioner/lw1', display: 'Sam Link-Worker' },
  contributor: [{ reference: 'Patient/pat' }],
  activity: [
    {
      reference: { reference: 'ServiceRequest/sr1' },
      detail: {
        kind: 'ServiceRequest',
        code: { coding: [{ system: SCT, code: '390893007', display: 'Referral to physical activity program' }] },
        status: 'stopped',
        statusReason: { text: 'Moved away' },
        doNotPerform: false,
        scheduledString: 'Tuesdays 10:00',
      },
    },
    { detail: { code: { coding: [{ system: SCT, code: '171000001', display: 'Social counseling' }] }, status: 'in-progress' } },
  ],
  note: [{ text: 'Agreed with Jane.' }],
};

const swemwbs: fhir4.Observation = {
  resourceType: 'Observation',
  id: 'obs1',
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey', display: 'Survey' }] }],
  code: { coding: [{ system: SCT, code: '718466001', display: 'Short Warwick-Edinburgh Mental Well-being Scale score' }] },
  subject: { reference: 'Patient/pat' },
  basedOn: [{ reference: 'ServiceRequest/sr1' }],
  effectiveDateTime: '2026-11-22T11:00:00Z',
  valueInteger: 24,
  interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'L', display: 'Low' }] }],
  note: [{ text: 'First measure.' }, { text: 'Patient completed alone.' }],
  derivedFrom: [{ reference: 'QuestionnaireResponse/qr1' }],
};

const wemwbs: fhir4.Observation = {
  resourceType: 'Observation',
  id: 'obs2',
  status: 'amended',
  code: { coding: [{ system: SCT, code: '718426000', display: 'Warwick-Edinburgh Mental Well-being Scale score' }] },
  subject: { reference: 'Patient/pat' },
  effectiveInstant: '2026-11-23T09:30:00.000Z',
  valueQuantity: { value: 51, unit: 'score', system: 'http://unitsofmeasure.org', code: '{score}' },
  component: [
    { code: { text: 'Completed unaided' }, valueBoolean: true },
    { code: { coding: [{ system: SCT, code: '736535009', display: 'EuroQol visual analogue score' }] }, valueInteger: 70 },
  ],
};

const record = (): fhir4.Bundle => ({
  resourceType: 'Bundle',
  type: 'collection',
  entry: [patient, referral, carePlan, swemwbs, wemwbs].map((r) => ({ fullUrl: `https://sp.example.org/fhir/${r.resourceType}/${r.id}`, resource: r })),
});

function item(resource: Rec | undefined, key = 'gp-ur:Bundle/b1/_history/1'): DeliveryItem {
  return {
    idempotencyKey: key,
    destinationId: 'gp-ur',
    event: 'created',
    resourceType: resource?.resourceType ?? 'Bundle',
    resourceId: resource?.id ?? 'b1',
    versionId: '1',
    resource,
    patientRef: 'Patient/pat',
    attempt: 1,
  };
}

const details = () => findPatient(patient) as PatientDetails;
const sender = { odsCode: 'A83008', organisationName: 'Riverside Social Prescribing Service', mailboxId: 'X26ABC1' };
const build = (resource: Rec = record()) =>
  buildUpdateRecordMessage({ seed: 'k1', resource, patient: details(), patientRefs: ['Patient/pat'], sender, now: new Date('2026-11-25T10:00:00Z') });

function documentOf(bundle: J): J {
  return bundle.entry.find((e: J) => e.resource.resourceType === 'Bundle').resource;
}
function ofType(doc: J, type: string): J[] {
  return doc.entry.filter((e: J) => e.resource.resourceType === type).map((e: J) => e.resource);
}
function snomedCodes(value: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) value.forEach((v) => snomedCodes(v, out));
  else if (value && typeof value === 'object') {
    const o = value as J;
    if (o.system === SCT && typeof o.code === 'string') out.add(o.code);
    Object.values(o).forEach((v) => snomedCodes(v, out));
  }
  return out;
}

async function waitFor<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeAll(async () => {
  mesh = await startMockMesh({ port: 0 });
});
afterAll(async () => {
  await mesh.close();
});
beforeEach(() => mesh.reset());

describe('mesh-update-record: the Pharmacy First authorisation flag', () => {
  test('the settings schema requires pharmacyFirstAuthorised: true', () => {
    const validate = new Ajv({ strict: false }).compile(meshUpdateRecordSettingsSchema);
    expect(validate(settings())).toBe(true);
    const { pharmacyFirstAuthorised: _omit, ...without } = settings();
    expect(validate(without)).toBe(false);
    expect(validate(settings({ pharmacyFirstAuthorised: false }))).toBe(false);
    expect(validate(settings({ pharmacyFirstAuthorised: 'yes' }))).toBe(false);
    expect(meshUpdateRecordSettingsSchema.properties.pharmacyFirstAuthorised.description).toBe(PHARMACY_FIRST_NOTICE);
  });

  test('create() refuses without the flag, explaining why', () => {
    expect(() => meshUpdateRecordAdapter.create(settings({ pharmacyFirstAuthorised: false }), env)).toThrow(PHARMACY_FIRST_NOTICE);
    expect(PHARMACY_FIRST_NOTICE).toMatch(/NHS England authorises GP Connect Update Record .*only for Pharmacy First/);
    expect(meshUpdateRecordAdapter.create(settings(), env)).toBeInstanceOf(MeshUpdateRecordAdapter);
  });

  test('a destinations file without the flag is refused at start; with it, the adapter is built in', () => {
    expect(findBuiltInAdapter('mesh-update-record')).toBe(meshUpdateRecordAdapter);
    const doc = (s: Record<string, unknown>) => ({
      destinations: [{ id: 'gp-ur', adapter: 'mesh-update-record', settings: s, receives: [{ resourceType: 'Observation', events: ['created'] }] }],
    });
    const { pharmacyFirstAuthorised: _omit, ...without } = settings();
    for (const bad of [without, settings({ pharmacyFirstAuthorised: false })]) {
      let error: unknown;
      try {
        parseDestinations(doc(bad), { env });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(DestinationsError);
      expect((error as Error).message).toContain("destinations[0] (id 'gp-ur').settings.pharmacyFirstAuthorised");
    }
    const config = parseDestinations(doc(settings()), { env });
    expect(config.destinations[0].adapter).toBeInstanceOf(MeshUpdateRecordAdapter);
  });
});

describe('R4 -> STU3 mapping', () => {
  test('ServiceRequest -> ReferralRequest', () => {
    const { bundle, lossy } = build();
    const doc = documentOf(bundle);
    const [stu3Patient] = ofType(doc, 'Patient');
    const [rr] = ofType(doc, 'ReferralRequest');
    expect(rr.meta.profile).toEqual([UPDATE_RECORD.referralRequestProfile]);
    expect(rr.identifier).toEqual([{ system: 'https://sp.example.org/Id/referral', value: 'REF-0001' }]);
    expect(rr.status).toBe('suspended'); // R4 on-hold
    expect(rr.intent).toBe('order');
    expect(rr.priority).toBe('routine');
    expect(rr.type).toEqual({ coding: [{ system: SCT, code: '871731000000106', display: 'Referral to social prescribing service' }] });
    expect(rr.serviceRequested[0].coding[0].code).toBe('390893007');
    expect(rr.subject).toEqual({ reference: `urn:uuid:${stu3Patient.id}` });
    expect(rr.authoredOn).toBe('2026-11-20T10:00:00Z');
    expect(rr.requester).toEqual({ agent: { identifier: { system: 'https://fhir.hl7.org.uk/Id/gmc-number', value: 'G1234567' }, display: 'Dr A Patel' } });
    expect(rr.specialty).toEqual({ text: 'Social prescribing link worker' });
    expect(rr.recipient).toEqual([{ display: 'Riverside Social Prescribing Service' }]);
    expect(rr.reasonCode.map((c: J) => c.coding[0].code)).toEqual(['267076002', '81877007']);
    expect(rr.note).toEqual([{ time: '2026-11-20T10:00:00Z', text: 'Lives alone since bereavement; interested in a walking group.' }]);
    expect(rr.context).toBeUndefined(); // Encounter/enc1 is not in the message and has no display
    // No STU3 category: the R4 cross-version extension keeps it; UK Core extensions travel as they are.
    expect(rr.category).toBeUndefined();
    expect(rr.extension).toEqual([
      {
        url: 'https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-SourceOfServiceRequest',
        valueCodeableConcept: { coding: [{ system: SCT, code: '306098008', display: 'Self-referral' }] },
      },
      {
        url: 'http://hl7.org/fhir/4.0/StructureDefinition/extension-ServiceRequest.category',
        valueCodeableConcept: { coding: [{ system: SCT, code: '306206005', display: 'Referral to service' }] },
      },
    ]);
    expect(lossy).toEqual(
      expect.arrayContaining([
        'ServiceRequest/sr1.encounter: reference Encounter/enc1 is not in the message and has no identifier or display; dropped',
      ]),
    );
    const statusOf = (status: fhir4.ServiceRequest['status']) => ofType(documentOf(build({ ...referral, status, contained: [patient] }).bundle), 'ReferralRequest')[0].status;
    expect([statusOf('revoked'), statusOf('active'), statusOf('completed'), statusOf('entered-in-error'), statusOf('draft')]).toEqual([
      'cancelled',
      'active',
      'completed',
      'entered-in-error',
      'draft',
    ]);
  });

  test('a ServiceRequest that says do-not-perform is refused, not turned into a referral', () => {
    expect(() => build({ ...referral, doNotPerform: true })).toThrow(UpdateRecordMappingError);
  });

  test('CarePlan -> STU3 CarePlan', () => {
    const { bundle, lossy } = build();
    const doc = documentOf(bundle);
    const [rr] = ofType(doc, 'ReferralRequest');
    const [cp] = ofType(doc, 'CarePlan');
    const [stu3Patient] = ofType(doc, 'Patient');
    expect(cp.status).toBe('cancelled'); // R4 revoked
    expect(cp.intent).toBe('plan');
    expect(cp.category[0].coding[0]).toEqual({ system: SCT, code: '734163000', display: 'Care plan' });
    expect(cp.title).toBe('Personalised care and support plan');
    expect(cp.subject).toEqual({ reference: `urn:uuid:${stu3Patient.id}` });
    expect(cp.period).toEqual({ start: '2026-11-21' });
    expect(cp.created).toBeUndefined();
    // R4 author + contributor -> STU3 author[]; the patient reference resolves inside the message.
    expect(cp.author).toEqual([{ display: 'Sam Link-Worker' }, { reference: `urn:uuid:${stu3Patient.id}` }]);
    const [a0, a1] = cp.activity;
    expect(a0.reference).toEqual({ reference: `urn:uuid:${rr.id}` });
    expect(a0.detail).toEqual({
      code: { coding: [{ system: SCT, code: '390893007', display: 'Referral to physical activity program' }] },
      status: 'cancelled', // R4 stopped
      statusReason: 'Moved away',
      prohibited: false, // R4 doNotPerform
      scheduledString: 'Tuesdays 10:00',
    });
    expect(a1.detail.status).toBe('in-progress');
    expect(a1.detail.code.coding[0].code).toBe('171000001');
    expect(cp.note).toEqual([{ text: 'Agreed with Jane.' }]);
    expect(lossy).toEqual(
      expect.arrayContaining([
        'CarePlan/cp1.created has no STU3 equivalent; not sent',
        "CarePlan/cp1.activity[0].detail.kind 'ServiceRequest': STU3 has detail.category (diet, drug, ...) instead; not sent",
      ]),
    );
  });

  test('Observation -> STU3 Observation', () => {
    const { bundle, lossy } = build();
    const doc = documentOf(bundle);
    const [rr] = ofType(doc, 'ReferralRequest');
    const [stu3Patient] = ofType(doc, 'Patient');
    const [sw, we] = ofType(doc, 'Observation');
    expect(sw.meta.profile).toEqual(['https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Observation-1']);
    expect(sw.status).toBe('final');
    expect(sw.category).toEqual([{ coding: [{ system: 'http://hl7.org/fhir/observation-category', code: 'survey', display: 'Survey' }] }]);
    expect(sw.code.coding[0]).toEqual({ system: SCT, code: '718466001', display: 'Short Warwick-Edinburgh Mental Well-being Scale score' });
    expect(sw.subject).toEqual({ reference: `urn:uuid:${stu3Patient.id}` });
    expect(sw.basedOn).toEqual([{ reference: `urn:uuid:${rr.id}` }]);
    expect(sw.effectiveDateTime).toBe('2026-11-22T11:00:00Z');
    expect(sw.valueInteger).toBeUndefined();
    expect(sw.valueQuantity).toEqual({ value: 24, system: 'http://unitsofmeasure.org', code: '1' });
    expect(sw.interpretation).toEqual({ coding: [{ system: 'http://hl7.org/fhir/v2/0078', code: 'L', display: 'Low' }] });
    expect(sw.comment).toBe('First measure.\n\nPatient completed alone.');
    expect(sw.note).toBeUndefined();
    expect(sw.related).toBeUndefined(); // QuestionnaireResponse/qr1 is not in the message
    expect(we.status).toBe('amended');
    expect(we.effectiveDateTime).toBe('2026-11-23T09:30:00.000Z'); // from effectiveInstant
    expect(we.valueQuantity).toEqual({ value: 51, unit: 'score', system: 'http://unitsofmeasure.org', code: '{score}' });
    expect(we.component).toEqual([
      { code: { text: 'Completed unaided' }, valueString: 'true' },
      {
        code: { coding: [{ system: SCT, code: '736535009', display: 'EuroQol visual analogue score' }] },
        valueQuantity: { value: 70, system: 'http://unitsofmeasure.org', code: '1' },
      },
    ]);
    expect(lossy).toContain('Observation/obs2.component[0].valueBoolean: STU3 Observation.component has no valueBoolean; sent as valueString');
    expect(stu3System('http://terminology.hl7.org/CodeSystem/v2-0203')).toBe('http://hl7.org/fhir/v2/0203');
    expect(stu3System('http://terminology.hl7.org/CodeSystem/v3-ActCode')).toBe('http://hl7.org/fhir/v3/ActCode');
    expect(stu3System(SCT)).toBe(SCT);
  });

  test('Patient, Composition, and every SNOMED CT code kept', () => {
    const { bundle } = build();
    const doc = documentOf(bundle);
    expect(doc.type).toBe('document');
    const [p] = ofType(doc, 'Patient');
    expect(p.meta.profile).toEqual(['https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Patient-1']);
    expect(p.identifier).toEqual([
      {
        extension: [
          {
            url: 'https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-NHSNumberVerificationStatus-1',
            valueCodeableConcept: {
              coding: [
                { system: 'https://fhir.hl7.org.uk/STU3/CodeSystem/CareConnect-NHSNumberVerificationStatus-1', code: '01', display: 'Number present and verified' },
              ],
            },
          },
        ],
        system: NHS,
        value: '9434765919',
      },
    ]);
    expect(p.name).toEqual([{ use: 'official', family: 'Mowers', given: ['Jane'] }]);
    expect([p.gender, p.birthDate]).toEqual(['female', '1955-01-09']);

    const [composition] = ofType(doc, 'Composition');
    expect(doc.entry[0].resource).toBe(composition);
    expect(composition.subject).toEqual({ reference: `urn:uuid:${p.id}` });
    expect(composition.type.coding[0]).toEqual({ system: SCT, code: '371531000', display: 'Report of clinical encounter' });
    const urn = (r: J) => `urn:uuid:${r.id}`;
    expect(composition.section.map((s: J) => [s.title, s.entry.map((e: J) => e.reference)])).toEqual([
      ['Social prescribing referral', ofType(doc, 'ReferralRequest').map(urn)],
      ['Personalised care and support plan', ofType(doc, 'CarePlan').map(urn)],
      ['Outcome measures', ofType(doc, 'Observation').map(urn)],
    ]);
    expect(composition.section[0].text.div).toContain('871731000000106');
    // Every reference inside the document resolves to an entry of it.
    const fullUrls = new Set(doc.entry.map((e: J) => e.fullUrl));
    const refs: string[] = [];
    (function walk(v: unknown) {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === 'reference' && typeof x === 'string') refs.push(x);
          else walk(x);
        }
      }
    })(doc);
    expect(refs.length).toBeGreaterThan(10);
    expect(refs.filter((r) => !fullUrls.has(r))).toEqual([]);

    const before = snomedCodes(record());
    const after = snomedCodes(ofType(doc, 'ReferralRequest').concat(ofType(doc, 'CarePlan'), ofType(doc, 'Observation')));
    expect(before.size).toBe(11);
    expect([...before].filter((c) => !after.has(c))).toEqual([]);
  });

  test('the ITK014M message header', () => {
    const { bundle, messageId } = build();
    expect(bundle.type).toBe('message');
    const header = (bundle.entry as J[])[0].resource;
    expect(header.event).toEqual({ system: ITK.messageEventSystem, code: 'ITK014M', display: 'ITK Update Record' });
    const info = readItkHeader(bundle)!;
    expect(info).toMatchObject({ messageHeaderId: messageId, event: 'ITK014M', senderReference: messageId, busAckRequested: true, infAckRequested: true, sourceEndpoint: 'X26ABC1', senderOds: 'A83008' });
    const handling = header.extension.find((e: J) => e.url === ITK.messageHandlingExtension);
    const sub = Object.fromEntries(handling.extension.map((e: J) => [e.url, e]));
    expect(sub.RecipientType.valueCoding.code).toBe('FA');
    expect(sub.MessageDefinition.valueReference.reference).toBe('https://fhir.nhs.uk/MessageDefinition');
    expect(sub.LocalExtension.valueString).toBe('None');
    expect(header.focus.reference).toBe(`urn:uuid:${documentOf(bundle).id}`);
    // Deterministic: the same seed gives the same ids (a retry is the same message).
    expect(build().messageId).toBe(messageId);
  });
});

describe('mesh-update-record over MESH (mock-mesh on loopback)', () => {
  test('sends ITK014M on GPCONNECT_UPDATE_RECORD to GPPROVIDER_, and start() reports delivered on the business ack', async () => {
    const adapter = meshUpdateRecordAdapter.create(settings(), env) as MeshUpdateRecordAdapter;
    const outcome = await adapter.deliver(item(record()), new AbortController().signal);
    expect(outcome).toMatchObject({ kind: 'accepted', httpStatus: 202 });
    const correlationId = (outcome as { correlationId: string }).correlationId;
    expect(outcome.summary).toContain('ITK014M');
    expect(outcome.summary).toContain('CarePlan/cp1.created has no STU3 equivalent');

    const sent = mesh.messages().find((m) => m.from === 'X26ABC1')!;
    expect(sent).toMatchObject({ to: 'X26ABC2', toAddress: 'GPPROVIDER_9434765919_09011955_MOWERS', workflowId: 'GPCONNECT_UPDATE_RECORD' });
    expect(sent.mex.localid).toBe('A83008');
    expect(sent.mex.subject).toBe(
      'Social prescribing record update for Jane Mowers, NHS Number: 9434765919, seen at Riverside Social Prescribing Service, ODS code: A83008, version 1',
    );
    const body = JSON.parse(mesh.body(sent.messageId).toString()) as J;
    const header = readItkHeader(body)!;
    expect(header.event).toBe('ITK014M');
    expect(header.messageHeaderId).toBe(correlationId);
    expect(ofType(documentOf(body), 'ReferralRequest')).toHaveLength(1);

    // The mock GP answered on GPCONNECT_UPDATE_RECORD_ACK.
    expect(mesh.inbox('X26ABC1').map((m) => m.workflowId)).toEqual(['GPCONNECT_UPDATE_RECORD_ACK', 'GPCONNECT_UPDATE_RECORD_ACK']);
    const acks: Acknowledgement[] = [];
    await adapter.start(async (ack) => void acks.push(ack));
    try {
      await waitFor(() => (mesh.inbox('X26ABC1').length === 0 ? true : undefined));
    } finally {
      await adapter.stop();
    }
    expect(acks).toEqual([{ correlationId, result: 'delivered', summary: 'ITK3 business acknowledgement 30001 Patient known here' }]);
  });

  test('a failed infrastructure ack (20009) fails the delivery via start()', async () => {
    mesh.setNextAck({ code: '20009', diagnostics: 'ReferralRequest not supported' });
    const adapter = meshUpdateRecordAdapter.create(settings(), env) as MeshUpdateRecordAdapter;
    const outcome = await adapter.deliver(item({ ...referral, status: 'active', contained: [patient], subject: { reference: '#pat' } }, 'k-sr'), new AbortController().signal);
    const correlationId = (outcome as { correlationId: string }).correlationId;
    const acks: Acknowledgement[] = [];
    await adapter.start(async (ack) => void acks.push(ack));
    try {
      await waitFor(() => (acks.length ? true : undefined));
    } finally {
      await adapter.stop();
    }
    expect(acks).toHaveLength(1);
    expect(acks[0]).toMatchObject({ correlationId, result: 'failed', summary: 'ITK3 infrastructure acknowledgement 20009 Payload validation failure: ReferralRequest not supported' });
    expect(acks[0].outcome!.issue[0].details!.coding![0]).toEqual({ system: ITK.responseCodeSystem, code: '20009', display: 'Payload validation failure' });
  });

  test('a negative business ack (30002 patient not known) fails the delivery', async () => {
    mesh.setNextAck({ code: '30002' });
    const adapter = meshUpdateRecordAdapter.create(settings(), env) as MeshUpdateRecordAdapter;
    const obs = { ...swemwbs, basedOn: undefined, contained: [patient], subject: { reference: '#pat' } };
    const outcome = await adapter.deliver(item(obs, 'k-obs'), new AbortController().signal);
    const acks: Acknowledgement[] = [];
    await adapter.start(async (ack) => void acks.push(ack));
    try {
      await waitFor(() => (acks.length ? true : undefined));
    } finally {
      await adapter.stop();
    }
    expect(acks).toEqual([
      expect.objectContaining({ correlationId: (outcome as { correlationId: string }).correlationId, result: 'failed', summary: 'ITK3 business acknowledgement 30002 Patient not known here' }),
    ]);
  });

  test("takes the Patient the engine read from the store (item.patient) when the record carries none", async () => {
    const adapter = meshUpdateRecordAdapter.create(settings(), env) as MeshUpdateRecordAdapter;
    const obs = { ...swemwbs, basedOn: undefined };
    const withPatient = { ...item(obs, 'k-store'), patient } as DeliveryItem;
    expect(await adapter.deliver(withPatient, new AbortController().signal)).toMatchObject({ kind: 'accepted' });
    const sent = mesh.messages().find((m) => m.from === 'X26ABC1')!;
    expect(sent.toAddress).toBe('GPPROVIDER_9434765919_09011955_MOWERS');
    const doc = documentOf(JSON.parse(mesh.body(sent.messageId).toString()) as J);
    const [p] = ofType(doc, 'Patient');
    expect(ofType(doc, 'Observation')[0].subject).toEqual({ reference: `urn:uuid:${p.id}` });
  });

  test('refuses deletions, unsupported types, records without a patient, and do-not-perform referrals, sending nothing', async () => {
    const adapter = meshUpdateRecordAdapter.create(settings(), env) as MeshUpdateRecordAdapter;
    const signal = new AbortController().signal;
    expect(await adapter.deliver({ ...item(record()), event: 'deleted' }, signal)).toMatchObject({ kind: 'failed' });
    expect(await adapter.deliver(item({ resourceType: 'Task', id: 't1', status: 'requested', intent: 'order' } as fhir4.Task), signal)).toMatchObject({
      kind: 'failed',
      summary: 'mesh-update-record does not carry Task',
    });
    expect(await adapter.deliver(item(referral), signal)).toMatchObject({ kind: 'failed', summary: expect.stringContaining('Cannot address the GP practice') });
    const dnp = await adapter.deliver(item({ ...referral, doNotPerform: true, contained: [patient] }), signal);
    expect(dnp).toMatchObject({ kind: 'failed', summary: expect.stringContaining('doNotPerform') });
    expect(mesh.messages()).toEqual([]);
  });
});
