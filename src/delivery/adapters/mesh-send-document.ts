/**
 * `mesh-send-document`: delivers a record to the patient's registered GP practice as a GP Connect Send
 * Document ITK3 message (STU3, event ITK007C) over MESH, addressed `GPPROVIDER_<NHSNo>_<DDMMYYYY>_<Surname>`,
 * taken from `item.patient` (the Patient the record references, read from the store by the engine), else from a
 * Patient the record is, contains or bundles.
 * The document Bundle holds a Composition (SNOMED document type, section text listing the record's SNOMED
 * codes) and a PDF Binary summarising the record.
 *
 * Acknowledgements: `deliver()` answers `accepted` with correlationId = the ITK MessageHeader.id (also the
 * SenderReference; derived from the item's idempotencyKey, so a retry reuses it). `start()` polls the inbox for
 * `<workflow>_ACK` ITK008M responses (MessageHeader.response.identifier = correlationId) and MESH REPORT
 * (non-delivery) messages, reports them, then acknowledges them in MESH only after the engine took the report.
 */
import type { AdapterFactory, DeliveryAdapter, DeliveryItem, DeliveryOutcome } from '../adapter';
import {
  buildSendDocumentMessage,
  mainType,
  SEND_DOCUMENT_ACK_WORKFLOW,
  SEND_DOCUMENT_WORKFLOW,
  summariseRecord,
  type SnomedCode,
} from '../../mesh/itk3';
import { renderPdf } from '../../mesh/pdf';
import { isValidSctid } from '../../terminology/sctid';
import { failed, meshSettingsProperties, MeshItkAdapter, patientName, type MeshAdapterSettings } from './mesh-common';

export { meshClientFromSettings, meshSettingsProperties, outcomeForMeshError } from './mesh-common';

export const meshSendDocumentSettingsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['baseUrl', 'mailboxId', 'mailboxPasswordEnv', 'sharedKeyEnv', 'senderOdsCode'],
  properties: {
    ...meshSettingsProperties,
    senderOdsCode: { type: 'string', pattern: '^[A-Za-z0-9]{3,10}$', description: 'our ODS code (mex-localid, MessageHeader.sender)' },
    senderOrganisationName: { type: 'string', minLength: 1, maxLength: 200 },
    to: {
      type: 'string',
      pattern: '^[A-Za-z0-9_-]{1,32}$',
      description: 'send to this mailbox instead of GPPROVIDER_ routing (testing only)',
    },
    workflowId: { type: 'string', pattern: '^[A-Z0-9_]{1,300}$', default: SEND_DOCUMENT_WORKFLOW },
    ackWorkflowId: { type: 'string', pattern: '^[A-Z0-9_]{1,300}$', default: SEND_DOCUMENT_ACK_WORKFLOW },
    deliveredOn: {
      type: 'string',
      enum: ['business', 'infrastructure'],
      default: 'business',
      description: "which ITK3 ack reports 'delivered' (a failure of either is always reported as 'failed')",
    },
    documentTypes: {
      type: 'object',
      description: 'Composition.type per resource type (SNOMED refset 1127551000000109), overriding the defaults',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['code', 'display'],
        properties: { code: { type: 'string', pattern: '^[0-9]{6,18}$' }, display: { type: 'string', minLength: 1 } },
      },
    },
  },
} as const;

/**
 * Defaults for Composition.type. Verhoeff-valid record-artifact concepts; their membership of refset
 * 1127551000000109 was not verified offline: override with `documentTypes` once checked in the termbrowser.
 */
export const DEFAULT_DOCUMENT_TYPES: Record<string, SnomedCode> = {
  CarePlan: { code: '734163000', display: 'Care plan' },
  '*': { code: '371531000', display: 'Report of clinical encounter' },
};

export const SEND_DOCUMENT_RESOURCE_TYPES = [
  'ServiceRequest',
  'CarePlan',
  'Observation',
  'QuestionnaireResponse',
  'Task',
  'Procedure',
  'Encounter',
  'Bundle',
];

interface Settings extends MeshAdapterSettings {
  documentTypes?: Record<string, SnomedCode>;
}

export class MeshSendDocumentAdapter extends MeshItkAdapter<Settings> implements DeliveryAdapter {
  readonly capabilities = { resourceTypes: SEND_DOCUMENT_RESOURCE_TYPES, asyncAcknowledgement: true };
  private readonly documentTypes: Record<string, SnomedCode>;

  constructor(settings: Settings, env: NodeJS.ProcessEnv, now: () => Date = () => new Date()) {
    super(settings, env, SEND_DOCUMENT_WORKFLOW, now);
    this.documentTypes = { ...DEFAULT_DOCUMENT_TYPES, ...(settings.documentTypes ?? {}) };
    for (const [type, dt] of Object.entries(this.documentTypes)) {
      if (!isValidSctid(dt.code)) throw new Error(`mesh-send-document: documentTypes.${type}.code ${dt.code} is not a valid SNOMED CT id`);
    }
  }

  async deliver(item: DeliveryItem, signal: AbortSignal): Promise<DeliveryOutcome> {
    if (item.event === 'deleted' || !item.resource) {
      return failed(`${item.resourceType}/${item.resourceId}: a deletion cannot be sent as a GP Connect document`, 'not-supported');
    }
    const resource = item.resource;
    if (!SEND_DOCUMENT_RESOURCE_TYPES.includes(resource.resourceType)) {
      return failed(`mesh-send-document does not carry ${resource.resourceType}`, 'not-supported');
    }
    const addressed = await this.addressPatient(item, resource, signal);
    if ('kind' in addressed) return addressed;
    const { patient, to } = addressed;
    const now = this.now();
    const summary = summariseRecord(resource);
    const documentType = this.documentTypes[mainType(resource)] ?? this.documentTypes['*'];
    const orgName = this.senderName;
    const pdf = await renderPdf({
      title: summary.title,
      keywords: summary.snomed.map((c) => `SNOMED CT ${c.code}`),
      createdAt: now,
      sections: [
        {
          heading: 'Patient',
          lines: [`Name: ${patientName(patient)}`, `NHS number: ${patient.nhsNumber}`, `Date of birth: ${patient.birthDate}`],
        },
        { heading: 'Details', lines: summary.lines },
        {
          heading: 'SNOMED CT codes',
          lines: summary.snomed.length ? summary.snomed.map((c) => `${c.code}  ${c.display ?? ''}`.trim()) : ['(none)'],
        },
        { heading: 'Sent by', lines: [`${orgName} (ODS ${this.settings.senderOdsCode}) on ${now.toISOString()}`] },
      ],
    });
    const message = buildSendDocumentMessage({
      seed: item.idempotencyKey,
      patient,
      sender: { odsCode: this.settings.senderOdsCode, organisationName: this.settings.senderOrganisationName, mailboxId: this.client.mailboxId },
      documentType,
      summary,
      pdf,
      now,
    });
    const subject = this.subject(summary.title, patient, item.versionId);
    return this.sendItk(
      message,
      to,
      subject,
      signal,
      (meshMessageId) => `sent to MESH as ${meshMessageId} (ITK message ${message.messageId}); awaiting ITK3 acknowledgement`,
    );
  }
}

export const meshSendDocumentAdapter: AdapterFactory = {
  name: 'mesh-send-document',
  settingsSchema: meshSendDocumentSettingsSchema as unknown as Record<string, unknown>,
  create: (settings, env) => new MeshSendDocumentAdapter(settings as unknown as Settings, env),
};

export default meshSendDocumentAdapter;
export const adapter = meshSendDocumentAdapter;
