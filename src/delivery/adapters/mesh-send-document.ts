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
import type { Acknowledgement, AdapterFactory, DeliveryAdapter, DeliveryItem, DeliveryOutcome } from '../adapter';
import { ItkAckPoller } from '../../mesh/ack-poller';
import { MeshClient, MeshError, type MeshClientOptions } from '../../mesh/client';
import { gpProviderAddress, MeshHeaderError, sanitiseMexText } from '../../mesh/headers';
import {
  buildSendDocumentMessage,
  findPatient,
  mainType,
  SEND_DOCUMENT_ACK_WORKFLOW,
  SEND_DOCUMENT_WORKFLOW,
  summariseRecord,
  type SnomedCode,
} from '../../mesh/itk3';
import { renderPdf } from '../../mesh/pdf';
import { isValidSctid } from '../../terminology/sctid';

const ENV_NAME = '^[A-Za-z_][A-Za-z0-9_]*$';

export const meshSettingsProperties = {
  baseUrl: { type: 'string', pattern: '^https?://', description: 'MESH server, e.g. https://msg.intspineservices.nhs.uk' },
  mailboxId: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,32}$', description: 'our MESH mailbox (sender)' },
  mailboxPasswordEnv: { type: 'string', pattern: ENV_NAME, description: 'environment variable holding the mailbox password' },
  sharedKeyEnv: { type: 'string', pattern: ENV_NAME, description: 'environment variable holding the MESH environment shared key' },
  chunkSizeBytes: { type: 'integer', minimum: 1024, maximum: 100 * 1024 * 1024, default: 20 * 1024 * 1024 },
  timeoutMs: { type: 'integer', minimum: 100, maximum: 600_000, default: 60_000 },
  pollIntervalMs: {
    type: 'integer',
    minimum: 10,
    maximum: 86_400_000,
    default: 300_000,
    description: 'inbox poll interval; MESH asks for no more than one poll every 5 minutes in live',
  },
  tls: {
    type: 'object',
    additionalProperties: false,
    required: ['certFile', 'keyFile'],
    description: 'client certificate for live/INT MESH (PEM files); the sandbox and mock-mesh need none',
    properties: {
      certFile: { type: 'string', minLength: 1 },
      keyFile: { type: 'string', minLength: 1 },
      caFile: { type: 'string', minLength: 1 },
      keyPassphraseEnv: { type: 'string', pattern: ENV_NAME },
    },
  },
} as const;

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

interface Settings {
  baseUrl: string;
  mailboxId: string;
  mailboxPasswordEnv: string;
  sharedKeyEnv: string;
  senderOdsCode: string;
  senderOrganisationName?: string;
  to?: string;
  workflowId?: string;
  ackWorkflowId?: string;
  chunkSizeBytes?: number;
  timeoutMs?: number;
  pollIntervalMs?: number;
  deliveredOn?: 'business' | 'infrastructure';
  documentTypes?: Record<string, SnomedCode>;
  tls?: { certFile: string; keyFile: string; caFile?: string; keyPassphraseEnv?: string };
}

function requireEnv(env: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = env[name];
  if (!value) throw new Error(`mesh adapter: environment variable ${name} (${what}) is not set`);
  return value;
}

/** Builds the MESH client from the common settings; secrets from the environment. */
export function meshClientFromSettings(s: Settings, env: NodeJS.ProcessEnv): MeshClient {
  const options: MeshClientOptions = {
    baseUrl: s.baseUrl,
    mailboxId: s.mailboxId,
    mailboxPassword: requireEnv(env, s.mailboxPasswordEnv, 'MESH mailbox password'),
    sharedKey: requireEnv(env, s.sharedKeyEnv, 'MESH shared key'),
    chunkSizeBytes: s.chunkSizeBytes,
    timeoutMs: s.timeoutMs,
  };
  if (s.tls) {
    // Client certificates need a dispatcher: undici's own fetch with an Agent (mutual TLS to Spine).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('node:fs') as typeof import('node:fs');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const undici = require('undici') as typeof import('undici');
    const agent = new undici.Agent({
      connect: {
        cert: fs.readFileSync(s.tls.certFile),
        key: fs.readFileSync(s.tls.keyFile),
        ca: s.tls.caFile ? fs.readFileSync(s.tls.caFile) : undefined,
        passphrase: s.tls.keyPassphraseEnv ? requireEnv(env, s.tls.keyPassphraseEnv, 'TLS key passphrase') : undefined,
      },
    });
    options.fetch = ((input: string, init?: RequestInit) =>
      undici.fetch(input, { ...(init as object), dispatcher: agent } as Parameters<typeof undici.fetch>[1])) as unknown as typeof fetch;
  }
  return new MeshClient(options);
}

function failed(summary: string, code: fhir4.OperationOutcomeIssue['code'], extra: Partial<fhir4.OperationOutcomeIssue> = {}): DeliveryOutcome {
  return {
    kind: 'failed',
    summary,
    outcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: summary, ...extra }] },
  };
}

/** Maps a MESH error to an outcome: network/5xx/429/auth -> retry; addressing and content -> failed. */
export function outcomeForMeshError(err: MeshError): DeliveryOutcome {
  if (err.retryable || err.status === 401 || err.status === 403) {
    return {
      kind: 'retry',
      summary: err.message,
      retryAfterMs: err.retryAfterMs,
      ...(err.status ? { httpStatus: err.status } : {}),
      outcome: {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: err.status === 403 ? 'security' : 'transient', diagnostics: err.message }],
      },
    };
  }
  const code: fhir4.OperationOutcomeIssue['code'] =
    err.meshErrorCode === 'EPL-151' || err.meshErrorCode === '12' ? 'not-found' : err.status === 413 ? 'too-costly' : 'invalid';
  return { ...failed(err.message, code), ...(err.status ? { httpStatus: err.status } : {}) };
}

export class MeshSendDocumentAdapter implements DeliveryAdapter {
  readonly capabilities = { resourceTypes: SEND_DOCUMENT_RESOURCE_TYPES, asyncAcknowledgement: true };
  readonly client: MeshClient;
  private readonly workflowId: string;
  private readonly documentTypes: Record<string, SnomedCode>;
  /**
   * Optional, last resort: how to find the Patient when the item has no `patient` (the engine fills it from the
   * store when the record references a Patient sp-bridge holds) and the record neither is, contains nor bundles
   * one. Set it after `create()`; the engine does not need it.
   */
  patientResolver?: (item: DeliveryItem, signal: AbortSignal) => Promise<fhir4.Patient | undefined>;
  private readonly poller: ItkAckPoller;

  constructor(
    private readonly settings: Settings,
    env: NodeJS.ProcessEnv,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.client = meshClientFromSettings(settings, env);
    this.workflowId = settings.workflowId ?? SEND_DOCUMENT_WORKFLOW;
    this.poller = new ItkAckPoller(
      this.client,
      this.workflowId,
      settings.ackWorkflowId ?? `${this.workflowId}_ACK`,
      settings.deliveredOn ?? 'business',
      settings.pollIntervalMs ?? 300_000,
      this.now,
    );
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
    // The Patient the engine read from the store (item.patient) first, then one the record itself carries
    // (contained, a Bundle entry), then the optional resolver.
    const fromStore = item.patient ? findPatient(item.patient) : undefined;
    let patient = fromStore && !('problem' in fromStore) ? fromStore : findPatient(resource);
    if ('problem' in patient && this.patientResolver) {
      const resolved = await this.patientResolver(item, signal);
      if (resolved) patient = findPatient(resolved);
    }
    if ('problem' in patient) {
      if (fromStore && 'problem' in fromStore) {
        return failed(`Cannot address the GP practice: ${item.patientRef ?? 'the Patient'}: ${fromStore.problem}`, 'required', {
          expression: ['Patient'],
        });
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
    const now = this.now();
    const summary = summariseRecord(resource);
    const documentType = this.documentTypes[mainType(resource)] ?? this.documentTypes['*'];
    const orgName = this.settings.senderOrganisationName ?? this.settings.senderOdsCode;
    const patientName = [...patient.given, patient.surname].join(' ');
    const pdf = await renderPdf({
      title: summary.title,
      keywords: summary.snomed.map((c) => `SNOMED CT ${c.code}`),
      createdAt: now,
      sections: [
        {
          heading: 'Patient',
          lines: [`Name: ${patientName}`, `NHS number: ${patient.nhsNumber}`, `Date of birth: ${patient.birthDate}`],
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
    const subject = sanitiseMexText(
      `${summary.title} for ${patientName}, NHS Number: ${patient.nhsNumber}, seen at ${orgName}, ODS code: ${this.settings.senderOdsCode}, version ${item.versionId}`,
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
      return {
        kind: 'accepted',
        httpStatus: 202,
        correlationId: message.messageId,
        summary: `sent to MESH as ${meshMessageId} (ITK message ${message.messageId}); awaiting ITK3 acknowledgement`,
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

export const meshSendDocumentAdapter: AdapterFactory = {
  name: 'mesh-send-document',
  settingsSchema: meshSendDocumentSettingsSchema as unknown as Record<string, unknown>,
  create: (settings, env) => new MeshSendDocumentAdapter(settings as unknown as Settings, env),
};

export default meshSendDocumentAdapter;
export const adapter = meshSendDocumentAdapter;
