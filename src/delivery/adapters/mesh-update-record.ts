/**
 * `mesh-update-record`: GP Connect Update Record over MESH. Delivers a social prescribing record to the
 * patient's registered GP practice as STRUCTURED data: an ITK3 message (STU3, event ITK014M, workflow
 * GPCONNECT_UPDATE_RECORD, both acknowledgements requested) whose document Bundle holds a Composition and the
 * STU3 ReferralRequest / CarePlan / Observation mapped from our R4 ServiceRequest / CarePlan / Observation, with
 * a CareConnect-style Patient (NHS number). Mapping and its caveats: src/mesh/update-record.ts.
 *
 * AUTHORISATION FLAG. NHS England's GP Connect Update Record guide says "This capability is only authorized for
 * Pharmacy First". A destination using this adapter must say `"pharmacyFirstAuthorised": true` in its settings
 * (settingsSchema `const: true`, and create() refuses otherwise), i.e. the operator states that NHS England has
 * authorised this sender to use Update Record. Without that, use `mesh-send-document` (a PDF document, open to
 * all senders).
 *
 * Addressing, MESH errors and acknowledgements behave as in `mesh-send-document`: `deliver()` answers `accepted`
 * with correlationId = the ITK MessageHeader.id (derived from the idempotency key: a retry reuses it); `start()`
 * polls the inbox for GPCONNECT_UPDATE_RECORD_ACK ITK008M responses and MESH REPORTs, reports them, and only then
 * acknowledges them in MESH.
 */
import type { Acknowledgement, AdapterFactory, DeliveryAdapter, DeliveryItem, DeliveryOutcome } from '../adapter';
import { ItkAckPoller } from '../../mesh/ack-poller';
import { MeshError, type MeshClient } from '../../mesh/client';
import { gpProviderAddress, MeshHeaderError, sanitiseMexText } from '../../mesh/headers';
import { findPatient, type SnomedCode } from '../../mesh/itk3';
import {
  buildUpdateRecordMessage,
  UPDATE_RECORD_ACK_WORKFLOW,
  UPDATE_RECORD_RESOURCE_TYPES,
  UPDATE_RECORD_WORKFLOW,
  UpdateRecordMappingError,
} from '../../mesh/update-record';
import { isValidSctid } from '../../terminology/sctid';
import { meshClientFromSettings, meshSettingsProperties, outcomeForMeshError } from './mesh-send-document';

export const PHARMACY_FIRST_NOTICE =
  'mesh-update-record needs "pharmacyFirstAuthorised": true in the destination settings. NHS England authorises ' +
  'GP Connect Update Record (ITK014M, workflow GPCONNECT_UPDATE_RECORD) only for Pharmacy First today; set the ' +
  'flag only once NHS England has authorised this sender for Update Record. Otherwise use the mesh-send-document ' +
  'adapter (GP Connect Send Document), which any sender may use.';

export const meshUpdateRecordSettingsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['baseUrl', 'mailboxId', 'mailboxPasswordEnv', 'sharedKeyEnv', 'senderOdsCode', 'pharmacyFirstAuthorised'],
  properties: {
    ...meshSettingsProperties,
    pharmacyFirstAuthorised: { const: true, description: PHARMACY_FIRST_NOTICE },
    senderOdsCode: { type: 'string', pattern: '^[A-Za-z0-9]{3,10}$', description: 'our ODS code (mex-localid, MessageHeader.sender)' },
    senderOrganisationName: { type: 'string', minLength: 1, maxLength: 200 },
    to: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,32}$', description: 'send to this mailbox instead of GPPROVIDER_ routing (testing only)' },
    workflowId: { type: 'string', pattern: '^[A-Z0-9_]{1,300}$', default: UPDATE_RECORD_WORKFLOW },
    ackWorkflowId: { type: 'string', pattern: '^[A-Z0-9_]{1,300}$', default: UPDATE_RECORD_ACK_WORKFLOW },
    deliveredOn: {
      type: 'string',
      enum: ['business', 'infrastructure'],
      default: 'business',
      description: "which ITK3 ack reports 'delivered' (a failure of either is always reported as 'failed')",
    },
    compositionType: {
      type: 'object',
      additionalProperties: false,
      required: ['code', 'display'],
      description: 'Composition.type (SNOMED CT), overriding the default 371531000 Report of clinical encounter',
      properties: { code: { type: 'string', pattern: '^[0-9]{6,18}$' }, display: { type: 'string', minLength: 1 } },
    },
  },
} as const;

export const UPDATE_RECORD_ITEM_TYPES = [...UPDATE_RECORD_RESOURCE_TYPES, 'Bundle'];

interface Settings {
  baseUrl: string;
  mailboxId: string;
  mailboxPasswordEnv: string;
  sharedKeyEnv: string;
  senderOdsCode: string;
  pharmacyFirstAuthorised: boolean;
  senderOrganisationName?: string;
  to?: string;
  workflowId?: string;
  ackWorkflowId?: string;
  chunkSizeBytes?: number;
  timeoutMs?: number;
  pollIntervalMs?: number;
  deliveredOn?: 'business' | 'infrastructure';
  compositionType?: SnomedCode;
  tls?: { certFile: string; keyFile: string; caFile?: string; keyPassphraseEnv?: string };
}

function failed(summary: string, code: fhir4.OperationOutcomeIssue['code'], extra: Partial<fhir4.OperationOutcomeIssue> = {}): DeliveryOutcome {
  return {
    kind: 'failed',
    summary,
    outcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: summary, ...extra }] },
  };
}

export class MeshUpdateRecordAdapter implements DeliveryAdapter {
  readonly capabilities = { resourceTypes: UPDATE_RECORD_ITEM_TYPES, asyncAcknowledgement: true };
  readonly client: MeshClient;
  private readonly workflowId: string;
  /** Optional: finds the Patient when the record neither contains nor bundles one. Set it after `create()`. */
  patientResolver?: (item: DeliveryItem, signal: AbortSignal) => Promise<fhir4.Patient | undefined>;
  private readonly poller: ItkAckPoller;

  constructor(
    private readonly settings: Settings,
    env: NodeJS.ProcessEnv,
    private readonly now: () => Date = () => new Date(),
  ) {
    // The schema says `const: true`; this also guards callers that skip the schema (module use, tests).
    if (settings.pharmacyFirstAuthorised !== true) throw new Error(PHARMACY_FIRST_NOTICE);
    if (settings.compositionType && !isValidSctid(settings.compositionType.code)) {
      throw new Error(`mesh-update-record: compositionType.code ${settings.compositionType.code} is not a valid SNOMED CT id`);
    }
    this.client = meshClientFromSettings(settings, env);
    this.workflowId = settings.workflowId ?? UPDATE_RECORD_WORKFLOW;
    this.poller = new ItkAckPoller(
      this.client,
      this.workflowId,
      settings.ackWorkflowId ?? `${this.workflowId}_ACK`,
      settings.deliveredOn ?? 'business',
      settings.pollIntervalMs ?? 300_000,
      this.now,
    );
  }

  async deliver(item: DeliveryItem, signal: AbortSignal): Promise<DeliveryOutcome> {
    if (item.event === 'deleted' || !item.resource) {
      return failed(`${item.resourceType}/${item.resourceId}: GP Connect Update Record cannot delete from the GP record`, 'not-supported');
    }
    const resource = item.resource;
    if (!UPDATE_RECORD_ITEM_TYPES.includes(resource.resourceType)) {
      return failed(`mesh-update-record does not carry ${resource.resourceType}`, 'not-supported');
    }
    // As mesh-send-document: the Patient the engine read from the store (item.patient) first, then one the
    // record carries (contained, a Bundle entry), then the optional resolver.
    const stored = (item as DeliveryItem & { patient?: fhir4.Patient }).patient;
    const fromStore = stored ? findPatient(stored) : undefined;
    let patient = fromStore && !('problem' in fromStore) ? fromStore : findPatient(resource);
    if ('problem' in patient && this.patientResolver) {
      const resolved = await this.patientResolver(item, signal);
      if (resolved) patient = findPatient(resolved);
    }
    if ('problem' in patient) {
      if (fromStore && 'problem' in fromStore) {
        return failed(`Cannot address the GP practice: ${item.patientRef ?? 'the Patient'}: ${fromStore.problem}`, 'required', { expression: ['Patient'] });
      }
      return failed(`Cannot address the GP practice: ${patient.problem}`, 'required', { expression: [`${resource.resourceType}.contained`] });
    }
    let to: string;
    try {
      to = this.settings.to ?? gpProviderAddress(patient);
    } catch (err) {
      if (err instanceof MeshHeaderError) return failed(`Cannot address the GP practice: ${err.message}`, 'invalid');
      throw err;
    }
    let message;
    try {
      message = buildUpdateRecordMessage({
        seed: item.idempotencyKey,
        resource,
        patient,
        patientRefs: item.patientRef ? [item.patientRef] : [],
        sender: { odsCode: this.settings.senderOdsCode, organisationName: this.settings.senderOrganisationName, mailboxId: this.client.mailboxId },
        compositionType: this.settings.compositionType,
        now: this.now(),
      });
    } catch (err) {
      if (err instanceof UpdateRecordMappingError) return failed(err.message, 'not-supported');
      throw err;
    }
    const orgName = this.settings.senderOrganisationName ?? this.settings.senderOdsCode;
    const patientName = [...patient.given, patient.surname].join(' ');
    const subject = sanitiseMexText(
      `Social prescribing record update for ${patientName}, NHS Number: ${patient.nhsNumber}, seen at ${orgName}, ODS code: ${this.settings.senderOdsCode}, version ${item.versionId}`,
      500,
    );
    try {
      const meshMessageId = await this.client.send(JSON.stringify(message.bundle), {
        to,
        workflowId: this.workflowId,
        subject,
        localId: this.settings.senderOdsCode,
        fileName: `${message.messageId}.json`,
        contentType: 'application/fhir+json',
        signal,
      });
      this.poller.remember(meshMessageId, message.messageId);
      const notSent = message.lossy.length ? `; not representable in STU3 and not sent: ${message.lossy.join('; ')}` : '';
      return {
        kind: 'accepted',
        httpStatus: 202,
        correlationId: message.messageId,
        summary: `sent to MESH as ${meshMessageId} (ITK014M message ${message.messageId}); awaiting ITK3 acknowledgement${notSent}`,
      };
    } catch (err) {
      if (err instanceof MeshError) return outcomeForMeshError(err);
      if (err instanceof MeshHeaderError) return failed(err.message, 'invalid');
      throw err;
    }
  }

  start(onAcknowledgement: (ack: Acknowledgement) => Promise<void>): Promise<void> {
    return this.poller.start(onAcknowledgement);
  }

  stop(): Promise<void> {
    return this.poller.stop();
  }

  /** One inbox pass of the acknowledgement poller (see ItkAckPoller). */
  pollOnce(onAcknowledgement: (ack: Acknowledgement) => Promise<void>, signal?: AbortSignal): Promise<number> {
    return this.poller.pollOnce(onAcknowledgement, signal);
  }

  get stats(): ItkAckPoller['stats'] {
    return this.poller.stats;
  }
}

export const meshUpdateRecordAdapter: AdapterFactory = {
  name: 'mesh-update-record',
  settingsSchema: meshUpdateRecordSettingsSchema as unknown as Record<string, unknown>,
  create: (settings, env) => new MeshUpdateRecordAdapter(settings as unknown as Settings, env),
};

export default meshUpdateRecordAdapter;
export const adapter = meshUpdateRecordAdapter;
