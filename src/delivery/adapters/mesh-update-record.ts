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
import type { AdapterFactory, DeliveryAdapter, DeliveryItem, DeliveryOutcome } from '../adapter';
import type { SnomedCode } from '../../mesh/itk3';
import {
  buildUpdateRecordMessage,
  UPDATE_RECORD_ACK_WORKFLOW,
  UPDATE_RECORD_RESOURCE_TYPES,
  UPDATE_RECORD_WORKFLOW,
  UpdateRecordMappingError,
} from '../../mesh/update-record';
import { isValidSctid } from '../../terminology/sctid';
import { failed, meshSettingsProperties, MeshItkAdapter, type MeshAdapterSettings } from './mesh-common';

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

interface Settings extends MeshAdapterSettings {
  pharmacyFirstAuthorised: boolean;
  compositionType?: SnomedCode;
}

/** Refuses settings without the Pharmacy First authorisation flag or with an invalid compositionType. */
function checkedSettings(settings: Settings): Settings {
  // The schema says `const: true`; this also guards callers that skip the schema (module use, tests).
  if (settings.pharmacyFirstAuthorised !== true) throw new Error(PHARMACY_FIRST_NOTICE);
  if (settings.compositionType && !isValidSctid(settings.compositionType.code)) {
    throw new Error(`mesh-update-record: compositionType.code ${settings.compositionType.code} is not a valid SNOMED CT id`);
  }
  return settings;
}

export class MeshUpdateRecordAdapter extends MeshItkAdapter<Settings> implements DeliveryAdapter {
  readonly capabilities = { resourceTypes: UPDATE_RECORD_ITEM_TYPES, asyncAcknowledgement: true };

  constructor(settings: Settings, env: NodeJS.ProcessEnv, now: () => Date = () => new Date()) {
    super(checkedSettings(settings), env, UPDATE_RECORD_WORKFLOW, now);
  }

  async deliver(item: DeliveryItem, signal: AbortSignal): Promise<DeliveryOutcome> {
    if (item.event === 'deleted' || !item.resource) {
      return failed(`${item.resourceType}/${item.resourceId}: GP Connect Update Record cannot delete from the GP record`, 'not-supported');
    }
    const resource = item.resource;
    if (!UPDATE_RECORD_ITEM_TYPES.includes(resource.resourceType)) {
      return failed(`mesh-update-record does not carry ${resource.resourceType}`, 'not-supported');
    }
    const addressed = await this.addressPatient(item, resource, signal);
    if ('kind' in addressed) return addressed;
    const { patient, to } = addressed;
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
    const subject = this.subject('Social prescribing record update', patient, item.versionId);
    const notSent = message.lossy.length ? `; not representable in STU3 and not sent: ${message.lossy.join('; ')}` : '';
    return this.sendItk(
      message,
      to,
      subject,
      signal,
      (meshMessageId) => `sent to MESH as ${meshMessageId} (ITK014M message ${message.messageId}); awaiting ITK3 acknowledgement${notSent}`,
    );
  }
}

export const meshUpdateRecordAdapter: AdapterFactory = {
  name: 'mesh-update-record',
  settingsSchema: meshUpdateRecordSettingsSchema as unknown as Record<string, unknown>,
  create: (settings, env) => new MeshUpdateRecordAdapter(settings as unknown as Settings, env),
};

export default meshUpdateRecordAdapter;
export const adapter = meshUpdateRecordAdapter;
