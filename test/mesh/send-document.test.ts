import { PDFDocument } from 'pdf-lib';
import type { Acknowledgement, DeliveryItem } from '../../src/delivery/adapter';
import { meshSendDocumentAdapter, MeshSendDocumentAdapter, meshSendDocumentSettingsSchema } from '../../src/delivery/adapters/mesh-send-document';
import { MeshClient } from '../../src/mesh/client';
import { ITK, parseItkResponse, readItkHeader } from '../../src/mesh/itk3';
import { startMockMesh, type MockMesh } from '../../src/mock/mesh';
import { isValidSctid } from '../../src/terminology/sctid';
import Ajv from 'ajv';

let mesh: MockMesh;
const env = { MESH_PASSWORD: 'password', MESH_SHARED_KEY: 'TestKey' };
const settings = () => ({
  baseUrl: mesh.url,
  mailboxId: 'X26ABC1',
  mailboxPasswordEnv: 'MESH_PASSWORD',
  sharedKeyEnv: 'MESH_SHARED_KEY',
  senderOdsCode: 'A83008',
  senderOrganisationName: 'Riverside Social Prescribing Service',
  pollIntervalMs: 20,
});

const patient: fhir4.Patient = {
  resourceType: 'Patient',
  id: 'pat',
  identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9434765919' }],
  name: [{ use: 'official', family: 'Mowers', given: ['Jane'] }],
  gender: 'female',
  birthDate: '1955-01-09',
};

function referral(overrides: Partial<fhir4.ServiceRequest> = {}): fhir4.ServiceRequest {
  return {
    resourceType: 'ServiceRequest',
    id: 'sr1',
    contained: [patient],
    status: 'active',
    intent: 'order',
    code: { coding: [{ system: 'http://snomed.info/sct', code: '871731000000106', display: 'Referral to social prescribing service' }] },
    reasonCode: [{ coding: [{ system: 'http://snomed.info/sct', code: '267076002', display: 'Feeling lonely' }] }],
    subject: { reference: '#pat' },
    authoredOn: '2026-11-20T10:00:00Z',
    note: [{ text: 'Lives alone since bereavement; interested in a walking group.' }],
    ...overrides,
  };
}

function item(resource: fhir4.Resource | undefined, key = 'dest-1|ServiceRequest/sr1|1'): DeliveryItem {
  return {
    idempotencyKey: key,
    destinationId: 'gp-mesh',
    event: 'created',
    resourceType: resource?.resourceType ?? 'ServiceRequest',
    resourceId: resource?.id ?? 'sr1',
    versionId: '1',
    resource,
    patientRef: 'Patient/pat',
    attempt: 1,
  };
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

describe('mesh-send-document adapter', () => {
  test('the settings schema compiles and accepts the example settings', () => {
    const ajv = new Ajv({ strict: false });
    const validate = ajv.compile(meshSendDocumentSettingsSchema);
    expect(validate(settings())).toBe(true);
    expect(validate({ ...settings(), mailboxPassword: 'inline secret' })).toBe(false);
    expect(validate({ ...settings(), deliveredOn: 'sometimes' })).toBe(false);
    expect(meshSendDocumentAdapter.name).toBe('mesh-send-document');
    expect(() => meshSendDocumentAdapter.create(settings(), {})).toThrow(/MESH_PASSWORD/);
    expect(isValidSctid('734163000') && isValidSctid('371531000')).toBe(true);
  });

  test('sends an ITK3 Send Document message to GPPROVIDER_ with a PDF, and reports delivered after the acks', async () => {
    const adapter = meshSendDocumentAdapter.create(settings(), env) as MeshSendDocumentAdapter;
    const outcome = await adapter.deliver(item(referral()), new AbortController().signal);
    expect(outcome).toMatchObject({ kind: 'accepted', httpStatus: 202 });
    const correlationId = (outcome as { correlationId: string }).correlationId;

    // What arrived at the GP mailbox.
    const sent = mesh.messages().find((m) => m.workflowId === 'GPCONNECT_SEND_DOCUMENT')!;
    expect(sent).toMatchObject({ from: 'X26ABC1', to: 'X26ABC2', toAddress: 'GPPROVIDER_9434765919_09011955_MOWERS' });
    expect(sent.mex.localid).toBe('A83008');
    expect(sent.mex.subject).toBe(
      'Social prescribing referral for Jane Mowers, NHS Number: 9434765919, seen at Riverside Social Prescribing Service, ODS code: A83008, version 1',
    );
    const bundle = JSON.parse(mesh.body(sent.messageId).toString()) as { type: string; entry: Array<{ resource: Record<string, any> }> };
    expect(bundle.type).toBe('message');
    const header = bundle.entry[0].resource;
    expect(header.id).toBe(correlationId);
    expect(header.event).toEqual({ system: ITK.messageEventSystem, code: 'ITK007C', display: 'ITK GP Connect Send Document' });
    const handling = header.extension.find((e: { url: string }) => e.url === ITK.messageHandlingExtension);
    const sub = Object.fromEntries(handling.extension.map((e: Record<string, unknown>) => [e.url, e]));
    expect(sub.BusAckRequested.valueBoolean).toBe(true);
    expect(sub.InfAckRequested.valueBoolean).toBe(true);
    expect(sub.RecipientType.valueCoding.code).toBe('FA');
    expect(sub.MessageDefinition.valueReference.reference).toBe(ITK.sendDocumentDefinition);
    expect(sub.SenderReference.valueString).toBe(correlationId);
    expect(sub.LocalExtension.valueString).toBe('None');
    expect(header.source.endpoint).toBe('X26ABC1');
    const doc = bundle.entry.find((e) => e.resource.type === 'document')!.resource;
    expect(header.focus.reference).toBe(`urn:uuid:${doc.id}`);
    const byType = (t: string) => doc.entry.filter((e: { resource: { resourceType: string } }) => e.resource.resourceType === t).map((e: { resource: unknown }) => e.resource);
    const [composition] = byType('Composition');
    expect(composition.type.coding[0]).toEqual({ system: 'http://snomed.info/sct', code: '371531000', display: 'Report of clinical encounter' });
    expect(composition.section[0].text.div).toContain('871731000000106');
    expect(composition.section[0].text.div).toContain('267076002');
    const [binary] = byType('Binary');
    expect(composition.section[0].entry).toEqual([{ reference: `urn:uuid:${binary.id}` }]);
    expect(binary.contentType).toBe('application/pdf');
    const pdfBytes = Buffer.from(binary.content, 'base64');
    expect(pdfBytes.subarray(0, 5).toString()).toBe('%PDF-');
    const pdf = await PDFDocument.load(pdfBytes);
    expect(pdf.getTitle()).toBe('Social prescribing referral');
    expect(pdf.getKeywords()).toBe('SNOMED CT 871731000000106 SNOMED CT 267076002');
    expect(pdf.getPageCount()).toBe(1);
    const [stu3Patient] = byType('Patient');
    expect(stu3Patient.identifier[0].value).toBe('9434765919');

    // The mock GP answered: infrastructure ack 20013 and business ack 30001.
    const responses = mesh.inbox('X26ABC1').map((m) => parseItkResponse(JSON.parse(mesh.body(m.messageId).toString())));
    expect(responses.map((r) => [r?.kind, r?.code, r?.responseTo])).toEqual([
      ['infrastructure', '20013', correlationId],
      ['business', '30001', correlationId],
    ]);

    const acks: Acknowledgement[] = [];
    await adapter.start(async (ack) => void acks.push(ack));
    try {
      await waitFor(() => (mesh.inbox('X26ABC1').length === 0 ? true : undefined));
      expect(acks).toEqual([{ correlationId, result: 'delivered', summary: 'ITK3 business acknowledgement 30001 Patient known here' }]);
    } finally {
      await adapter.stop!();
    }
  });

  test('a retry of the same item reuses the ITK message id; deliveredOn infrastructure reports the infAck', async () => {
    const adapter = meshSendDocumentAdapter.create({ ...settings(), deliveredOn: 'infrastructure' }, env) as MeshSendDocumentAdapter;
    const a = await adapter.deliver(item(referral()), new AbortController().signal);
    const b = await adapter.deliver({ ...item(referral()), attempt: 2 }, new AbortController().signal);
    expect((a as { correlationId: string }).correlationId).toBe((b as { correlationId: string }).correlationId);
    const acks: Acknowledgement[] = [];
    expect(await adapter.pollOnce(async (ack) => void acks.push(ack))).toBe(2);
    expect(acks.map((x) => [x.result, x.summary])).toEqual([
      ['delivered', 'ITK3 infrastructure acknowledgement 20013 Success'],
      ['delivered', 'ITK3 infrastructure acknowledgement 20013 Success'],
    ]);
    expect(mesh.inbox('X26ABC1')).toEqual([]);
  });

  test('a failure ack (20009 via the control endpoint) is reported as failed', async () => {
    const control = await fetch(`${mesh.url}/_control/next-ack`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: '20009', diagnostics: 'Composition.type not recognised' }),
    });
    expect(control.status).toBe(200);
    const adapter = meshSendDocumentAdapter.create(settings(), env) as MeshSendDocumentAdapter;
    const outcome = await adapter.deliver(item(referral()), new AbortController().signal);
    const correlationId = (outcome as { correlationId: string }).correlationId;
    const acks: Acknowledgement[] = [];
    await adapter.start(async (ack) => void acks.push(ack));
    try {
      await waitFor(() => (acks.length ? true : undefined));
    } finally {
      await adapter.stop!();
    }
    expect(acks).toHaveLength(1);
    expect(acks[0]).toMatchObject({ correlationId, result: 'failed' });
    expect(acks[0].summary).toBe('ITK3 infrastructure acknowledgement 20009 Payload validation failure: Composition.type not recognised');
    expect(acks[0].outcome!.issue[0].details!.coding![0]).toEqual({
      system: 'https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1',
      code: '20009',
      display: 'Payload validation failure',
    });
  });

  test('a negative business ack (30002 patient not known) is reported as failed', async () => {
    mesh.setNextAck({ code: '30002' });
    const adapter = meshSendDocumentAdapter.create(settings(), env) as MeshSendDocumentAdapter;
    await adapter.deliver(item(referral()), new AbortController().signal);
    const acks: Acknowledgement[] = [];
    await adapter.pollOnce(async (ack) => void acks.push(ack));
    expect(acks.map((a) => [a.result, a.summary])).toEqual([['failed', 'ITK3 business acknowledgement 30002 Patient not known here']]);
  });

  test('when reporting an ack fails the MESH message stays in the inbox for the next pass', async () => {
    const adapter = meshSendDocumentAdapter.create(settings(), env) as MeshSendDocumentAdapter;
    await adapter.deliver(item(referral()), new AbortController().signal);
    await adapter.pollOnce(async () => {
      throw new Error('database down');
    });
    // The infrastructure ack (not reported under deliveredOn=business) is acknowledged; the business ack stays.
    expect(mesh.inbox('X26ABC1')).toHaveLength(1);
    const acks: Acknowledgement[] = [];
    await adapter.pollOnce(async (ack) => void acks.push(ack));
    expect(acks.map((a) => a.result)).toEqual(['delivered']);
    expect(mesh.inbox('X26ABC1')).toHaveLength(0);
  });

  test('a MESH non-delivery REPORT for a message sent by this adapter is reported as failed', async () => {
    mesh.setNextAck({ code: '20013', responder: false });
    const adapter = meshSendDocumentAdapter.create(settings(), env) as MeshSendDocumentAdapter;
    const outcome = await adapter.deliver(item(referral()), new AbortController().signal);
    const sent = mesh.messages().find((m) => m.workflowId === 'GPCONNECT_SEND_DOCUMENT')!;
    mesh.inject({
      from: 'X26ABC1',
      to: 'X26ABC1',
      workflowId: 'GPCONNECT_SEND_DOCUMENT',
      body: '',
      messageType: 'REPORT',
      mex: { linkedmsgid: sent.messageId, statuscode: '14', statusdescription: 'Message not collected by recipient after 5 days' },
    });
    const acks: Acknowledgement[] = [];
    await adapter.pollOnce(async (ack) => void acks.push(ack));
    expect(acks).toEqual([
      expect.objectContaining({
        correlationId: (outcome as { correlationId: string }).correlationId,
        result: 'failed',
        summary: `MESH could not deliver message ${sent.messageId}: 14 Message not collected by recipient after 5 days`,
      }),
    ]);
    expect(mesh.inbox('X26ABC1')).toEqual([]);
    // A report the adapter cannot match (sent before a restart) is counted and acknowledged.
    const fresh = meshSendDocumentAdapter.create(settings(), env) as MeshSendDocumentAdapter;
    mesh.inject({ from: 'X26ABC1', to: 'X26ABC1', workflowId: 'GPCONNECT_SEND_DOCUMENT', body: '', messageType: 'REPORT', mex: { linkedmsgid: 'OLD' } });
    expect(await fresh.pollOnce(async () => undefined)).toBe(0);
    expect(fresh.stats.unmatchedReports).toBe(1);
    expect(mesh.inbox('X26ABC1')).toEqual([]);
  });

  test('other workflows in the mailbox are left alone', async () => {
    const other = mesh.inject({ from: 'X26ABC2', to: 'X26ABC1', workflowId: 'TEST_WORKFLOW', body: 'x' });
    const adapter = meshSendDocumentAdapter.create(settings(), env) as MeshSendDocumentAdapter;
    expect(await adapter.pollOnce(async () => undefined)).toBe(0);
    expect(mesh.inbox('X26ABC1').map((m) => m.messageId)).toEqual([other]);
  });

  test.each([
    ['no patient', referral({ contained: [] }), /carries no Patient/],
    ['patient without NHS number', referral({ contained: [{ ...patient, identifier: []  } as fhir4.Patient] }), /nhs-number/],
    ['invalid NHS number', referral({ contained: [{ ...patient, identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9434765918' }]  } as fhir4.Patient] }), /NHS number is not valid/],
    ['partial birth date', referral({ contained: [{ ...patient, birthDate: '1955'  } as fhir4.Patient] }), /full date/],
  ])('%s -> failed with a clear OperationOutcome, nothing sent', async (_name, resource, message) => {
    const adapter = meshSendDocumentAdapter.create(settings(), env);
    const outcome = await adapter.deliver(item(resource), new AbortController().signal);
    expect(outcome.kind).toBe('failed');
    expect((outcome as { outcome: fhir4.OperationOutcome }).outcome.issue[0].diagnostics).toMatch(message);
    expect(mesh.messages()).toEqual([]);
  });

  test('a patientResolver supplies the Patient when the record only references it', async () => {
    const adapter = meshSendDocumentAdapter.create(settings(), env) as MeshSendDocumentAdapter;
    const seen: Array<string | undefined> = [];
    adapter.patientResolver = async (it) => {
      seen.push(it.patientRef);
      return patient;
    };
    const outcome = await adapter.deliver(item(referral({ contained: undefined, subject: { reference: 'Patient/pat' } })), new AbortController().signal);
    expect(outcome.kind).toBe('accepted');
    expect(seen).toEqual(['Patient/pat']);
    expect(mesh.messages()[0].toAddress).toBe('GPPROVIDER_9434765919_09011955_MOWERS');
  });

  test('a Bundle with a Patient entry and a CarePlan is sent with the care plan document type', async () => {
    const carePlan: fhir4.CarePlan = {
      resourceType: 'CarePlan',
      id: 'cp1',
      status: 'active',
      intent: 'plan',
      subject: { reference: 'Patient/pat' },
      title: 'What matters to me',
      activity: [{ detail: { status: 'in-progress', code: { coding: [{ system: 'http://snomed.info/sct', code: '401167006', display: 'Group exercise program' }] } } }],
    };
    const adapter = meshSendDocumentAdapter.create(settings(), env);
    const outcome = await adapter.deliver(
      item({ resourceType: 'Bundle', id: 'b1', type: 'collection', entry: [{ resource: patient }, { resource: carePlan }] } as fhir4.Bundle),
      new AbortController().signal,
    );
    expect(outcome.kind).toBe('accepted');
    const sent = mesh.messages().find((m) => m.workflowId === 'GPCONNECT_SEND_DOCUMENT')!;
    const header = readItkHeader(JSON.parse(mesh.body(sent.messageId).toString()))!;
    const doc = (header.bundle.entry as Array<{ resource: Record<string, any> }>)[2].resource;
    expect(doc.entry[0].resource.type.coding[0].code).toBe('734163000');
    expect(doc.entry[0].resource.section[0].text.div).toContain('401167006');
  });

  test('MESH errors: unreachable server -> retry, bad credentials -> retry with security issue, start() refuses bad credentials', async () => {
    const down = meshSendDocumentAdapter.create({ ...settings(), baseUrl: 'http://127.0.0.1:1' }, env);
    expect(await down.deliver(item(referral()), new AbortController().signal)).toMatchObject({ kind: 'retry' });
    const badKey = meshSendDocumentAdapter.create(settings(), { ...env, MESH_SHARED_KEY: 'Banana' });
    expect(await badKey.deliver(item(referral()), new AbortController().signal)).toMatchObject({
      kind: 'retry',
      httpStatus: 403,
      outcome: { issue: [{ code: 'security' }] },
    });
    await expect(badKey.start!(async () => undefined)).rejects.toMatchObject({ status: 403 });
  });

  test('a document larger than the chunk size goes in chunks and still round-trips; long text is truncated', async () => {
    const adapter = meshSendDocumentAdapter.create({ ...settings(), chunkSizeBytes: 1024 }, env) as MeshSendDocumentAdapter;
    const big = referral({ note: [{ text: 'word '.repeat(600_000) }] });
    const outcome = await adapter.deliver(item(big), new AbortController().signal);
    expect(outcome.kind).toBe('accepted');
    const sent = mesh.messages().find((m) => m.workflowId === 'GPCONNECT_SEND_DOCUMENT')!;
    expect(sent.totalChunks).toBeGreaterThan(2);
    const gp = new MeshClient({ baseUrl: mesh.url, mailboxId: 'X26ABC2', mailboxPassword: 'password', sharedKey: 'TestKey' });
    const received = await gp.download(sent.messageId);
    expect(received.body.length).toBeLessThan(100_000);
    expect(received.body.toString()).toContain('... (truncated)');
    expect(readItkHeader(JSON.parse(received.body.toString()))?.messageHeaderId).toBe((outcome as { correlationId: string }).correlationId);
  });
});
