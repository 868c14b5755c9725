/**
 * What the MESH adapters (`mesh-send-document`, `mesh-update-record`) share: the common settings, the MESH
 * client built from them, the mapping of MESH errors to outcomes, and `MeshItkAdapter`, a base class that finds
 * and addresses the patient's GP practice, sends an ITK3 message over MESH, remembers it for the ITK
 * acknowledgement poller and delegates start/stop/pollOnce/stats to that poller. Each adapter builds its own
 * message.
 */
import type { Acknowledgement, DeliveryItem, DeliveryOutcome } from '../adapter';
import { ItkAckPoller } from '../../mesh/ack-poller';
import { MeshClient, MeshError, type MeshClientOptions } from '../../mesh/client';
import { gpProviderAddress, MeshHeaderError, sanitiseMexText } from '../../mesh/headers';
import { findPatient, type PatientDetails } from '../../mesh/itk3';

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

/** The settings both MESH adapters take. */
export interface MeshAdapterSettings {
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
  tls?: { certFile: string; keyFile: string; caFile?: string; keyPassphraseEnv?: string };
}

function requireEnv(env: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = env[name];
  if (!value) throw new Error(`mesh adapter: environment variable ${name} (${what}) is not set`);
  return value;
}

/** Builds the MESH client from the common settings; secrets from the environment. */
export function meshClientFromSettings(s: MeshAdapterSettings, env: NodeJS.ProcessEnv): MeshClient {
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

export function failed(
  summary: string,
  code: fhir4.OperationOutcomeIssue['code'],
  extra: Partial<fhir4.OperationOutcomeIssue> = {},
): DeliveryOutcome {
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

/** The patient found for a record and the MESH mailbox of their GP practice. */
export interface AddressedPatient {
  patient: PatientDetails;
  to: string;
}

/** Base of the MESH ITK3 adapters: patient addressing, the MESH send and the acknowledgement poller. */
export abstract class MeshItkAdapter<S extends MeshAdapterSettings> {
  readonly client: MeshClient;
  protected readonly workflowId: string;
  /**
   * Optional, last resort: how to find the Patient when the item has no `patient` (the engine fills it from the
   * store when the record references a Patient sp-bridge holds) and the record neither is, contains nor bundles
   * one. Set it after `create()`; the engine does not need it.
   */
  patientResolver?: (item: DeliveryItem, signal: AbortSignal) => Promise<fhir4.Patient | undefined>;
  private readonly poller: ItkAckPoller;

  constructor(
    protected readonly settings: S,
    env: NodeJS.ProcessEnv,
    defaultWorkflowId: string,
    protected readonly now: () => Date,
  ) {
    this.client = meshClientFromSettings(settings, env);
    this.workflowId = settings.workflowId ?? defaultWorkflowId;
    this.poller = new ItkAckPoller(
      this.client,
      this.workflowId,
      settings.ackWorkflowId ?? `${this.workflowId}_ACK`,
      settings.deliveredOn ?? 'business',
      settings.pollIntervalMs ?? 300_000,
      this.now,
    );
  }

  /** Our organisation's name for subjects and documents: the configured name, else the ODS code. */
  protected get senderName(): string {
    return this.settings.senderOrganisationName ?? this.settings.senderOdsCode;
  }

  /**
   * Finds the Patient: the one the engine read from the store (item.patient) first, then one the record itself
   * carries (contained, a Bundle entry), then the optional resolver; and addresses their GP practice. Answers a
   * `failed` outcome when neither works.
   */
  protected async addressPatient(
    item: DeliveryItem,
    resource: fhir4.Resource,
    signal: AbortSignal,
  ): Promise<AddressedPatient | DeliveryOutcome> {
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
    try {
      return { patient, to: this.settings.to ?? gpProviderAddress(patient) };
    } catch (err) {
      if (err instanceof MeshHeaderError) return failed(`Cannot address the GP practice: ${err.message}`, 'invalid');
      throw err;
    }
  }

  /** The MESH subject: `<what> for <patient>, NHS Number: …, seen at <sender>, ODS code: …, version …`. */
  protected subject(what: string, patient: PatientDetails, versionId: string): string {
    return sanitiseMexText(
      `${what} for ${patientName(patient)}, NHS Number: ${patient.nhsNumber}, seen at ${this.senderName}, ODS code: ${this.settings.senderOdsCode}, version ${versionId}`,
      500,
    );
  }

  /**
   * Sends the ITK3 message's Bundle over MESH, remembers it for the acknowledgement poller and answers
   * `accepted` (correlationId = the ITK message id) with `summary(meshMessageId)`; MESH errors become outcomes.
   */
  protected async sendItk(
    message: { bundle: unknown; messageId: string },
    to: string,
    subject: string,
    signal: AbortSignal,
    summary: (meshMessageId: string) => string,
  ): Promise<DeliveryOutcome> {
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
      return { kind: 'accepted', httpStatus: 202, correlationId: message.messageId, summary: summary(meshMessageId) };
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

/** Given names then surname. */
export function patientName(patient: PatientDetails): string {
  return [...patient.given, patient.surname].join(' ');
}
