/**
 * ITK3 (STU3) messages carried over MESH: the GP Connect Send Document message (event ITK007C) and the
 * ITK Response (ITK008M) acknowledgements. Source: IOPS-FHIR-Simplifier-Backup GPConnectDirectCareAPIs-STU3
 * (ITK-Message-Bundle-1, ITK-MessageHeader-2, Extension-ITK-MessageHandling-2, ITK-ResponseCodes-1).
 *
 * STU3 JSON is built as plain objects (the R4 types do not describe it).
 */
import { createHash } from 'node:crypto';
import { NHS_NUMBER_SYSTEM } from '../terminology/nhs-number';

export type Json = Record<string, unknown>;

export const ITK = {
  messageBundleProfile: 'https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Message-Bundle-1',
  messageHeaderProfile: 'https://fhir.nhs.uk/STU3/StructureDefinition/ITK-MessageHeader-2',
  documentBundleProfile: 'https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Document-Bundle-1',
  compositionProfile: 'https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Composition-1',
  patientProfile: 'https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Patient-1',
  organizationProfile: 'https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-ITK-Header-Organization-1',
  binaryProfile: 'https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Attachment-Binary-1',
  responseOutcomeProfile: 'https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Response-OperationOutcome-1',
  messageHandlingExtension: 'https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2',
  messageEventSystem: 'https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2',
  recipientTypeSystem: 'https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1',
  responseCodeSystem: 'https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1',
  sendDocumentDefinition: 'https://fhir.nhs.uk/STU3/MessageDefinition/ITK-GPConnectSendDocument-MessageDefinition-1',
  responseDefinition: 'https://fhir.nhs.uk/STU3/MessageDefinition/ITK-Response-MessageDefinition-1',
  uuidIdentifierSystem: 'https://tools.ietf.org/html/rfc4122',
  odsOrganisationSystem: 'https://fhir.nhs.uk/Id/ods-organization-code',
  stu3NhsNumberSystem: 'https://fhir.nhs.uk/Id/nhs-number',
  snomed: 'http://snomed.info/sct',
} as const;

export const SEND_DOCUMENT_WORKFLOW = 'GPCONNECT_SEND_DOCUMENT';
export const SEND_DOCUMENT_ACK_WORKFLOW = 'GPCONNECT_SEND_DOCUMENT_ACK';
export const UPDATE_RECORD_WORKFLOW = 'GPCONNECT_UPDATE_RECORD';
export const UPDATE_RECORD_ACK_WORKFLOW = 'GPCONNECT_UPDATE_RECORD_ACK';

/** ITK-ResponseCodes-1 displays for the codes we produce or map. */
export const ITK_RESPONSE_CODES: Record<string, string> = {
  '20001': 'Unrecognised recipient person',
  '20002': 'Unrecognised recipient organisation',
  '20003': 'Unrecognised sender',
  '20004': 'File type not supported',
  '20005': 'File type not supported',
  '20006': 'Header validation failure',
  '20007': 'Duplicate message received',
  '20008': 'Duplicate document received',
  '20009': 'Payload validation failure',
  '20012': 'Unauthorised sender',
  '20013': 'Success',
  '20014': 'Unable to process document replacement',
  '20015': 'Message too large',
  '30001': 'Patient known here',
  '30002': 'Patient not known here',
  '30003': 'Patient no longer at this clinical setting',
  '30004': 'Patient recently deceased',
  '30017': 'Referral rejected',
};

/** Business responses that mean the GP practice could not take the document for the patient. */
const NEGATIVE_BUSINESS_CODES = new Set(['30002', '30003', '30004', '30015', '30017']);

/** A UUID (RFC 4122 v4 layout) derived from a seed: retries of the same delivery reuse the same message id. */
export function deterministicUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  h[6] = (h[6] & 0x0f) | 0x40;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

// ---------------------------------------------------------------------------------------------------------
// Patient details for GPPROVIDER routing

export interface PatientDetails {
  nhsNumber: string;
  birthDate: string;
  surname: string;
  given: string[];
  gender?: string;
  patient: fhir4.Patient;
}

function patientFrom(p: fhir4.Patient): PatientDetails | { problem: string } {
  const nhs = p.identifier?.find((i) => i.system === NHS_NUMBER_SYSTEM)?.value;
  const name = p.name?.find((n) => n.use === 'official') ?? p.name?.[0];
  const missing: string[] = [];
  if (!nhs) missing.push(`an identifier with system ${NHS_NUMBER_SYSTEM}`);
  if (!p.birthDate) missing.push('birthDate');
  if (!name?.family) missing.push('name.family');
  if (missing.length) return { problem: `the Patient has no ${missing.join(', ')}` };
  return { nhsNumber: nhs!, birthDate: p.birthDate!, surname: name!.family!, given: name!.given ?? [], gender: p.gender, patient: p };
}

/**
 * The patient the item concerns: the resource itself if it is a Patient, a contained Patient (the one the
 * subject/patient reference points at first), or a Patient entry of a Bundle.
 */
export function findPatient(resource: fhir4.Resource | undefined): PatientDetails | { problem: string } {
  if (!resource) return { problem: 'the delivery item has no resource' };
  if (resource.resourceType === 'Patient') return patientFrom(resource as fhir4.Patient);
  const candidates: fhir4.Patient[] = [];
  const r = resource as fhir4.DomainResource & { subject?: fhir4.Reference; patient?: fhir4.Reference };
  const contained = (r.contained ?? []).filter((c): c is fhir4.Patient => c.resourceType === 'Patient');
  const ref = r.subject?.reference ?? r.patient?.reference;
  if (ref?.startsWith('#')) {
    const hit = contained.find((c) => c.id === ref.slice(1));
    if (hit) candidates.push(hit);
  }
  candidates.push(...contained);
  if (resource.resourceType === 'Bundle') {
    for (const e of (resource as fhir4.Bundle).entry ?? []) {
      if (e.resource?.resourceType === 'Patient') candidates.push(e.resource as fhir4.Patient);
    }
  }
  if (!candidates.length) {
    return {
      problem:
        `${resource.resourceType} carries no Patient: MESH GPPROVIDER routing needs the NHS number, birth date and ` +
        'surname, from a contained Patient or a Patient entry in a Bundle',
    };
  }
  return patientFrom(candidates[0]);
}

// ---------------------------------------------------------------------------------------------------------
// Human-readable summary of a record (for the PDF and the Composition section text)

export interface SnomedCode {
  code: string;
  display?: string;
}

export interface RecordSummary {
  title: string;
  lines: string[];
  snomed: SnomedCode[];
}

const TITLES: Record<string, string> = {
  ServiceRequest: 'Social prescribing referral',
  CarePlan: 'Social prescribing care plan',
  Observation: 'Social prescribing outcome',
  QuestionnaireResponse: 'Social prescribing outcome measure',
  Task: 'Social prescribing referral update',
  Procedure: 'Social prescribing activity',
  Encounter: 'Social prescribing contact',
  Bundle: 'Social prescribing summary',
};

function collectSnomed(value: unknown, out: Map<string, SnomedCode>, depth = 0): void {
  if (depth > 12 || value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    for (const v of value) collectSnomed(v, out, depth + 1);
    return;
  }
  const o = value as Json;
  if (o.system === ITK.snomed && typeof o.code === 'string' && !out.has(o.code)) {
    out.set(o.code, { code: o.code, display: typeof o.display === 'string' ? o.display : undefined });
  }
  for (const [k, v] of Object.entries(o)) if (k !== 'contained' && k !== 'text') collectSnomed(v, out, depth + 1);
}

function conceptText(cc: fhir4.CodeableConcept | undefined): string | undefined {
  if (!cc) return undefined;
  const c = cc.coding?.[0];
  const label = cc.text ?? c?.display ?? c?.code;
  return c?.code && c.system === ITK.snomed ? `${label} (SNOMED CT ${c.code})` : label;
}

/** Longest value quoted in a summary line: the document summarises, the GP record keeps the detail. */
const MAX_LINE = 2000;

function summaryLines(resource: fhir4.Resource): string[] {
  const lines: string[] = [];
  const add = (label: string, value: unknown) => {
    if (value === undefined || value === null || value === '') return;
    const text = String(value);
    lines.push(`${label}: ${text.length > MAX_LINE ? `${text.slice(0, MAX_LINE)}... (truncated)` : text}`);
  };
  const r = resource as unknown as Json;
  add('Record', `${resource.resourceType}/${resource.id ?? '(new)'}`);
  add('Status', r.status);
  add('Intent', r.intent);
  switch (resource.resourceType) {
    case 'ServiceRequest': {
      const sr = resource as fhir4.ServiceRequest;
      add('Referral', conceptText(sr.code));
      add('Date', sr.authoredOn);
      for (const reason of sr.reasonCode ?? []) add('Reason', conceptText(reason));
      add('Performer', sr.performer?.map((p) => p.display ?? p.reference).join(', '));
      break;
    }
    case 'CarePlan': {
      const cp = resource as fhir4.CarePlan;
      add('Title', cp.title);
      add('Period', cp.period ? `${cp.period.start ?? '?'} to ${cp.period.end ?? 'ongoing'}` : undefined);
      add('Description', cp.description);
      for (const a of cp.activity ?? []) {
        add('Activity', [conceptText(a.detail?.code), a.detail?.status].filter(Boolean).join(', '));
      }
      break;
    }
    case 'Observation': {
      const ob = resource as fhir4.Observation;
      add('Observation', conceptText(ob.code));
      add('Date', ob.effectiveDateTime ?? ob.effectivePeriod?.start ?? ob.issued);
      if (ob.valueQuantity) add('Value', `${ob.valueQuantity.value ?? ''} ${ob.valueQuantity.unit ?? ob.valueQuantity.code ?? ''}`.trim());
      add('Value', ob.valueInteger ?? ob.valueString ?? conceptText(ob.valueCodeableConcept));
      break;
    }
    default: {
      const dr = resource as unknown as { code?: fhir4.CodeableConcept };
      add('Code', conceptText(dr.code));
    }
  }
  for (const n of ((resource as unknown as { note?: fhir4.Annotation[] }).note ?? [])) add('Note', n.text);
  return lines;
}

/** Title, lines and SNOMED codes describing the record (for a Bundle: each entry except Patients). */
export function summariseRecord(resource: fhir4.Resource): RecordSummary {
  const snomed = new Map<string, SnomedCode>();
  const lines: string[] = [];
  if (resource.resourceType === 'Bundle') {
    for (const e of (resource as fhir4.Bundle).entry ?? []) {
      if (!e.resource || e.resource.resourceType === 'Patient') continue;
      lines.push(...summaryLines(e.resource));
      collectSnomed(e.resource, snomed);
    }
  } else {
    lines.push(...summaryLines(resource));
    collectSnomed(resource, snomed);
  }
  return { title: TITLES[mainType(resource)] ?? `Social prescribing ${mainType(resource)}`, lines, snomed: [...snomed.values()] };
}

/** The resource type a record is about: for a Bundle, its first entry that is not a Patient. */
export function mainType(resource: fhir4.Resource): string {
  if (resource.resourceType !== 'Bundle') return resource.resourceType;
  const first = ((resource as fhir4.Bundle).entry ?? []).find((e) => e.resource && e.resource.resourceType !== 'Patient');
  return first?.resource?.resourceType ?? 'Bundle';
}

// ---------------------------------------------------------------------------------------------------------
// Send Document message

export interface SenderDetails {
  odsCode: string;
  organisationName?: string;
  mailboxId: string;
}

export interface SendDocumentInput {
  /** Seeds the message id / SenderReference (the engine's idempotency key: retries reuse the ids). */
  seed: string;
  patient: PatientDetails;
  sender: SenderDetails;
  /** Composition.type: a member of SNOMED refset 1127551000000109. */
  documentType: SnomedCode;
  summary: RecordSummary;
  pdf: Uint8Array;
  now: Date;
}

export interface SendDocumentMessage {
  bundle: Json;
  /** MessageHeader.id, also SenderReference: what the ITK008M responses point back to. */
  messageId: string;
}

/** Extension-ITK-MessageHandling-2: every sub-extension is 1..1. */
export function handlingExtension(values: {
  busAck: boolean;
  infAck: boolean;
  recipientType: 'FA' | 'FI';
  messageDefinition: string;
  senderReference: string;
}): Json {
  return {
    url: ITK.messageHandlingExtension,
    extension: [
      { url: 'BusAckRequested', valueBoolean: values.busAck },
      { url: 'InfAckRequested', valueBoolean: values.infAck },
      {
        url: 'RecipientType',
        valueCoding: {
          system: ITK.recipientTypeSystem,
          code: values.recipientType,
          display: values.recipientType === 'FA' ? 'For Action' : 'For Information',
        },
      },
      { url: 'MessageDefinition', valueReference: { reference: values.messageDefinition } },
      { url: 'SenderReference', valueString: values.senderReference },
      { url: 'LocalExtension', valueString: 'None' },
    ],
  };
}

export function buildSendDocumentMessage(input: SendDocumentInput): SendDocumentMessage {
  const id = (part: string) => deterministicUuid(`${input.seed}|${part}`);
  const messageId = id('message-header');
  const bundleId = id('message-bundle');
  const docBundleId = id('document-bundle');
  const compositionId = id('composition');
  const patientId = id('patient');
  const orgId = id('organization');
  const binaryId = id('binary');
  const timestamp = input.now.toISOString();
  const { patient, sender } = input;

  const organization: Json = {
    resourceType: 'Organization',
    id: orgId,
    meta: { profile: [ITK.organizationProfile] },
    identifier: [{ system: ITK.odsOrganisationSystem, value: sender.odsCode }],
    ...(sender.organisationName ? { name: sender.organisationName } : {}),
  };
  const stu3Patient: Json = {
    resourceType: 'Patient',
    id: patientId,
    meta: { profile: [ITK.patientProfile] },
    identifier: [{ system: ITK.stu3NhsNumberSystem, value: patient.nhsNumber }],
    name: [{ use: 'official', family: patient.surname, ...(patient.given.length ? { given: patient.given } : {}) }],
    ...(patient.gender ? { gender: patient.gender } : {}),
    birthDate: patient.birthDate,
  };
  const binary: Json = {
    resourceType: 'Binary',
    id: binaryId,
    meta: { profile: [ITK.binaryProfile] },
    contentType: 'application/pdf',
    content: Buffer.from(input.pdf).toString('base64'),
  };
  const codeList = input.summary.snomed.map((c) => `${c.display ?? '(no display)'} (SNOMED CT ${c.code})`);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const composition: Json = {
    resourceType: 'Composition',
    id: compositionId,
    meta: { profile: [ITK.compositionProfile] },
    identifier: { system: ITK.uuidIdentifierSystem, value: compositionId },
    status: 'final',
    type: { coding: [{ system: ITK.snomed, code: input.documentType.code, display: input.documentType.display }] },
    subject: { reference: `urn:uuid:${patientId}` },
    date: timestamp,
    author: [{ reference: `urn:uuid:${orgId}` }],
    title: input.summary.title,
    custodian: { reference: `urn:uuid:${orgId}` },
    section: [
      {
        title: input.summary.title,
        text: {
          status: 'generated',
          div: `<div xmlns="http://www.w3.org/1999/xhtml"><ul>${[...input.summary.lines, ...codeList]
            .map((l) => `<li>${esc(l)}</li>`)
            .join('')}</ul></div>`,
        },
        entry: [{ reference: `urn:uuid:${binaryId}` }],
      },
    ],
  };
  const documentBundle: Json = {
    resourceType: 'Bundle',
    id: docBundleId,
    meta: { profile: [ITK.documentBundleProfile] },
    identifier: { system: ITK.uuidIdentifierSystem, value: docBundleId },
    type: 'document',
    entry: [composition, stu3Patient, organization, binary].map((res) => ({ fullUrl: `urn:uuid:${res.id}`, resource: res })),
  };
  const header: Json = {
    resourceType: 'MessageHeader',
    id: messageId,
    meta: { profile: [ITK.messageHeaderProfile] },
    extension: [
      handlingExtension({
        busAck: true,
        infAck: true,
        recipientType: 'FA',
        messageDefinition: ITK.sendDocumentDefinition,
        senderReference: messageId,
      }),
    ],
    event: { system: ITK.messageEventSystem, code: 'ITK007C', display: 'ITK GP Connect Send Document' },
    sender: { reference: `urn:uuid:${orgId}` },
    timestamp,
    source: { endpoint: sender.mailboxId },
    focus: { reference: `urn:uuid:${docBundleId}` },
  };
  const bundle: Json = {
    resourceType: 'Bundle',
    id: bundleId,
    meta: { profile: [ITK.messageBundleProfile] },
    identifier: { system: ITK.uuidIdentifierSystem, value: bundleId },
    type: 'message',
    entry: [header, organization, documentBundle].map((res) => ({ fullUrl: `urn:uuid:${res.id}`, resource: res })),
  };
  return { bundle, messageId };
}

// ---------------------------------------------------------------------------------------------------------
// Reading messages and ITK Responses

export interface ItkHeaderInfo {
  messageHeaderId: string;
  event?: string;
  senderReference?: string;
  sourceEndpoint?: string;
  senderOds?: string;
  busAckRequested: boolean;
  infAckRequested: boolean;
  /** For ITK008M: the id of the message being answered and the header's response code. */
  responseTo?: string;
  responseCode?: string;
  bundle: Json;
}

function entries(bundle: Json): Json[] {
  return ((bundle.entry as Json[] | undefined) ?? []).map((e) => e.resource as Json).filter(Boolean);
}

export function readItkHeader(bundle: unknown): ItkHeaderInfo | undefined {
  if (!bundle || typeof bundle !== 'object' || (bundle as Json).resourceType !== 'Bundle') return undefined;
  const all = entries(bundle as Json);
  const header = all.find((r) => r.resourceType === 'MessageHeader');
  if (!header || typeof header.id !== 'string') return undefined;
  const handling = ((header.extension as Json[] | undefined) ?? []).find((e) => e.url === ITK.messageHandlingExtension);
  const sub = (name: string) => ((handling?.extension as Json[] | undefined) ?? []).find((e) => e.url === name);
  const senderRef = (header.sender as Json | undefined)?.reference as string | undefined;
  const senderOrg = all.find((r) => r.resourceType === 'Organization' && senderRef?.endsWith(String(r.id)));
  const response = header.response as Json | undefined;
  return {
    messageHeaderId: header.id,
    event: (header.event as Json | undefined)?.code as string | undefined,
    senderReference: sub('SenderReference')?.valueString as string | undefined,
    sourceEndpoint: (header.source as Json | undefined)?.endpoint as string | undefined,
    senderOds: ((senderOrg?.identifier as Json[] | undefined) ?? [])[0]?.value as string | undefined,
    busAckRequested: sub('BusAckRequested')?.valueBoolean === true,
    infAckRequested: sub('InfAckRequested')?.valueBoolean === true,
    responseTo: response?.identifier as string | undefined,
    responseCode: response?.code as string | undefined,
    bundle: bundle as Json,
  };
}

export interface ItkResponseInput {
  /** The header of the message being answered. */
  original: ItkHeaderInfo;
  /** ITK-ResponseCodes-1 code, e.g. 20013. */
  code: string;
  display?: string;
  diagnostics?: string;
  responderMailbox: string;
  responderOds: string;
  now?: Date;
}

/** An ITK008M ITK Response: infrastructure (1xxxx/2xxxx codes) or business (3xxxx) acknowledgement. */
export function buildItkResponse(input: ItkResponseInput): Json {
  const seed = `${input.original.messageHeaderId}|${input.code}|${input.responderMailbox}`;
  const headerId = deterministicUuid(`${seed}|header`);
  const bundleId = deterministicUuid(`${seed}|bundle`);
  const outcomeId = deterministicUuid(`${seed}|outcome`);
  const orgId = deterministicUuid(`${seed}|org`);
  const success = input.code === '20013' || (input.code.startsWith('3') && !NEGATIVE_BUSINESS_CODES.has(input.code));
  const display = input.display ?? ITK_RESPONSE_CODES[input.code] ?? 'ITK response';
  const outcome: Json = {
    resourceType: 'OperationOutcome',
    id: outcomeId,
    meta: { profile: [ITK.responseOutcomeProfile] },
    issue: [
      {
        severity: success ? 'information' : 'error',
        code: success ? 'informational' : 'processing',
        details: { coding: [{ system: ITK.responseCodeSystem, code: input.code, display }] },
        ...(input.diagnostics ? { diagnostics: input.diagnostics } : {}),
      },
    ],
  };
  const org: Json = {
    resourceType: 'Organization',
    id: orgId,
    meta: { profile: [ITK.organizationProfile] },
    identifier: [{ system: ITK.odsOrganisationSystem, value: input.responderOds }],
  };
  const header: Json = {
    resourceType: 'MessageHeader',
    id: headerId,
    meta: { profile: [ITK.messageHeaderProfile] },
    extension: [
      handlingExtension({
        busAck: false,
        infAck: false,
        recipientType: 'FI',
        messageDefinition: ITK.responseDefinition,
        senderReference: input.original.senderReference ?? 'None',
      }),
    ],
    event: { system: ITK.messageEventSystem, code: 'ITK008M', display: 'ITK Response' },
    sender: { reference: `urn:uuid:${orgId}` },
    timestamp: (input.now ?? new Date()).toISOString(),
    source: { endpoint: input.responderMailbox },
    response: {
      identifier: input.original.messageHeaderId,
      code: success ? 'ok' : 'fatal-error',
      details: { reference: `urn:uuid:${outcomeId}` },
    },
    focus: { reference: `urn:uuid:${outcomeId}` },
  };
  return {
    resourceType: 'Bundle',
    id: bundleId,
    meta: { profile: [ITK.messageBundleProfile] },
    identifier: { system: ITK.uuidIdentifierSystem, value: bundleId },
    type: 'message',
    entry: [header, org, outcome].map((res) => ({ fullUrl: `urn:uuid:${res.id}`, resource: res })),
  };
}

export interface ItkResponse {
  /** The MessageHeader.id of the message answered (our correlation id). */
  responseTo: string;
  senderReference?: string;
  kind: 'infrastructure' | 'business';
  code: string;
  display?: string;
  diagnostics?: string;
  success: boolean;
}

/** Reads an ITK008M response; undefined when the bundle is not one. */
export function parseItkResponse(bundle: unknown): ItkResponse | undefined {
  const header = readItkHeader(bundle);
  if (!header || header.event !== 'ITK008M' || !header.responseTo) return undefined;
  const outcome = entries(header.bundle).find((r) => r.resourceType === 'OperationOutcome');
  const issues = (outcome?.issue as Json[] | undefined) ?? [];
  let coding: Json | undefined;
  let diagnostics: string | undefined;
  for (const issue of issues) {
    const c = (((issue.details as Json | undefined)?.coding as Json[] | undefined) ?? []).find(
      (x) => x.system === ITK.responseCodeSystem,
    );
    if (c && !coding) {
      coding = c;
      diagnostics = issue.diagnostics as string | undefined;
    }
  }
  const code = (coding?.code as string | undefined) ?? '';
  const kind = code.startsWith('3') ? 'business' : 'infrastructure';
  let success: boolean;
  if (code === '20013') success = true;
  else if (/^[12]\d{4}$/.test(code)) success = false;
  else if (code.startsWith('3')) success = !NEGATIVE_BUSINESS_CODES.has(code) && header.responseCode !== 'fatal-error';
  else success = header.responseCode === 'ok';
  return {
    responseTo: header.responseTo,
    senderReference: header.senderReference,
    kind,
    code,
    display: coding?.display as string | undefined,
    diagnostics,
    success,
  };
}
