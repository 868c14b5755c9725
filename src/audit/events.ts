/**
 * The audit trail's records and the R4 AuditEvent resources built from them
 * (http://hl7.org/fhir/R4/auditevent.html), following the IHE Basic Audit Log Patterns where they apply
 * (https://profiles.ihe.net/ITI/BALP/): the client is the "Source Role ID" agent, sp-bridge the
 * "Destination Role ID" agent, and the request id is an entity of its own.
 */

/**
 * What was asked: codes of http://hl7.org/fhir/R4/codesystem-restful-interaction.html, or `login` for a
 * token issue (recorded as DICOM 110122 Login).
 */
export type AuditInteraction =
  | 'read'
  | 'vread'
  | 'update'
  | 'patch'
  | 'delete'
  | 'history-instance'
  | 'history-type'
  | 'history-system'
  | 'create'
  | 'search-type'
  | 'search-system'
  | 'capabilities'
  | 'batch'
  | 'transaction'
  | 'operation'
  | 'login'
  | 'export';

/** http://hl7.org/fhir/R4/codesystem-audit-event-action.html: create, read, update, delete, execute. */
export type AuditAction = 'C' | 'R' | 'U' | 'D' | 'E';

/** One thing the exchange concerned. */
export interface AuditEntity {
  /** `Type/id` or `Type/id/_history/vid`, relative to the service base. */
  reference?: string;
  /** The resource type, for searches and type-level interactions (implied by `reference` when absent). */
  type?: string;
  /** The query string of a search or conditional interaction, as the client sent it. */
  query?: string;
  /** The operation invoked, e.g. `$validate`. */
  name?: string;
}

export interface AuditRecord {
  recorded: Date;
  /** Undefined when the caller was not identified (401). For an export, the destination the record went to. */
  clientId?: string;
  via?: 'token' | 'external' | 'none';
  /** The caller's IP address. */
  address?: string;
  requestId: string;
  interaction: AuditInteraction;
  action: AuditAction;
  entities: AuditEntity[];
  /** HTTP status of the answer. */
  status: number;
  /** Why, e.g. a denial reason. Never patient data. */
  description?: string;
}

export const AUDIT_EVENT_TYPE = 'AuditEvent';

/** Identifier system of a client in AuditEvent.agent.who (the registered client id, or the external token's `sub`). */
export const CLIENT_ID_SYSTEM = 'urn:sp-bridge:client-id';

// http://terminology.hl7.org/CodeSystem/audit-event-type (R4: http://hl7.org/fhir/R4/codesystem-audit-event-type.html)
const REST_EVENT: fhir4.Coding = {
  system: 'http://terminology.hl7.org/CodeSystem/audit-event-type',
  code: 'rest',
  display: 'RESTful Operation',
};
// DICOM PS3.16 CID 400 Audit Event ID and CID 401 Audit Event Type Code (http://dicom.nema.org/resources/ontology/DCM),
// as BALP's ITI-71 Get Access Token profile uses them.
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const AUTHENTICATION_EVENT: fhir4.Coding = { system: DCM, code: '110114', display: 'User Authentication' };
const LOGIN_SUBTYPE: fhir4.Coding = { system: DCM, code: '110122', display: 'Login' };
// A record sent out of sp-bridge to a destination (a GP system) by the delivery engine.
const EXPORT_EVENT: fhir4.Coding = { system: DCM, code: '110106', display: 'Export' };
/** Identifier system of a delivery destination in an export's AuditEvent.agent.who (the destinations file id). */
export const DESTINATION_ID_SYSTEM = 'urn:sp-bridge:destination';
// DICOM CID 402 Audit Active Participant Role ID: BALP's client and server agent types.
const SOURCE_ROLE: fhir4.Coding = { system: DCM, code: '110153', display: 'Source Role ID' };
const DESTINATION_ROLE: fhir4.Coding = { system: DCM, code: '110152', display: 'Destination Role ID' };

export const RESTFUL_INTERACTION_SYSTEM = 'http://hl7.org/fhir/restful-interaction';
export const DCM_SYSTEM = DCM;
export const ACTION_SYSTEM = 'http://hl7.org/fhir/audit-event-action';
export const OUTCOME_SYSTEM = 'http://hl7.org/fhir/audit-event-outcome';
/** R4's AuditEventEntityType value set includes every resource type (http://hl7.org/fhir/R4/valueset-audit-entity-type.html). */
export const RESOURCE_TYPES_SYSTEM = 'http://hl7.org/fhir/resource-types';

// http://terminology.hl7.org/CodeSystem/security-source-type
const APPLICATION_SERVER: fhir4.Coding = {
  system: 'http://terminology.hl7.org/CodeSystem/security-source-type',
  code: '4',
  display: 'Application Server',
};
// http://terminology.hl7.org/CodeSystem/object-role
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const PATIENT_ROLE: fhir4.Coding = { system: OBJECT_ROLE, code: '1', display: 'Patient' };
const RESOURCE_ROLE: fhir4.Coding = { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' };
const QUERY_ROLE: fhir4.Coding = { system: OBJECT_ROLE, code: '24', display: 'Query' };
// https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType
const REQUEST_ID_TYPE: fhir4.Coding = {
  system: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType',
  code: 'XrequestId',
  display: 'transport specific unique identifier where http X-Request-Id is used',
};

const TYPE_RE = /^[A-Z][A-Za-z]+$/;

const VIA: Record<NonNullable<AuditRecord['via']>, string | undefined> = {
  token: undefined,
  external: 'caller identified by an external token',
  none: 'authentication is off (AUTH_MODE=none)',
};

/** http://hl7.org/fhir/R4/codesystem-audit-event-outcome.html: 0 success, 4 minor failure, 8 serious failure. */
export function outcomeCode(status: number): '0' | '4' | '8' {
  if (status < 400) return '0';
  return status < 500 ? '4' : '8';
}

/** The AuditEvent.subtype code a record is stored and searched under. */
export function subtypeCode(interaction: AuditInteraction): string {
  return interaction === 'login' ? '110122' : interaction === 'export' ? '110106' : interaction;
}

/** The resource type an entity concerns: its `type`, else the type of its reference. */
export function entityType(entity: AuditEntity): string | undefined {
  if (entity.type !== undefined) return entity.type;
  const first = entity.reference?.split('/')[0];
  return first !== undefined && TYPE_RE.test(first) ? first : undefined;
}

/**
 * The values the entity and entity-type searches match: each reference as recorded, its unversioned form,
 * and each resource type. A type has no slash, a reference has one, so they cannot be confused.
 */
export function entityKeys(entities: AuditEntity[]): string[] {
  const keys = new Set<string>();
  for (const e of entities) {
    if (e.reference !== undefined) {
      keys.add(e.reference);
      keys.add(e.reference.replace(/\/_history\/[^/]*$/, ''));
    }
    const type = entityType(e);
    if (type !== undefined) keys.add(type);
  }
  return [...keys];
}

export function buildAuditEvent(id: string, r: AuditRecord): fhir4.AuditEvent {
  if (r.interaction === 'export') return exportEvent(id, r);
  const login = r.interaction === 'login';
  const client: fhir4.AuditEventAgent = {
    type: { coding: [SOURCE_ROLE] },
    who:
      r.clientId !== undefined
        ? { identifier: { system: CLIENT_ID_SYSTEM, value: r.clientId } }
        : { display: 'unauthenticated' },
    requestor: true,
  };
  if (r.address) client.network = { address: r.address, type: '2' }; // 2 = IP Address (R4 network-type)
  const event: fhir4.AuditEvent = {
    resourceType: 'AuditEvent',
    id,
    type: login ? AUTHENTICATION_EVENT : REST_EVENT,
    subtype: [login ? LOGIN_SUBTYPE : { system: RESTFUL_INTERACTION_SYSTEM, code: r.interaction, display: r.interaction }],
    action: r.action,
    recorded: r.recorded.toISOString(),
    outcome: outcomeCode(r.status),
    agent: [
      client,
      { type: { coding: [DESTINATION_ROLE] }, who: { display: 'sp-bridge' }, requestor: false },
    ],
    source: { observer: { display: 'sp-bridge' }, type: [APPLICATION_SERVER] },
    entity: [...r.entities.map(toEntity), { what: { identifier: { value: r.requestId } }, type: REQUEST_ID_TYPE }],
  };
  event.outcomeDesc = [`HTTP ${r.status}`, r.description, r.via ? VIA[r.via] : undefined].filter(Boolean).join('; ');
  return event;
}

/** sp-bridge (the requestor) sent the entities to a destination (the recipient). */
function exportEvent(id: string, r: AuditRecord): fhir4.AuditEvent {
  return {
    resourceType: 'AuditEvent',
    id,
    type: EXPORT_EVENT,
    subtype: [EXPORT_EVENT],
    action: r.action,
    recorded: r.recorded.toISOString(),
    outcome: outcomeCode(r.status),
    outcomeDesc: [`status ${r.status}`, r.description].filter(Boolean).join('; '),
    agent: [
      { type: { coding: [SOURCE_ROLE] }, who: { display: 'sp-bridge delivery' }, requestor: true },
      {
        type: { coding: [DESTINATION_ROLE] },
        who: { identifier: { system: DESTINATION_ID_SYSTEM, value: r.clientId ?? 'unknown' } },
        requestor: false,
      },
    ],
    source: { observer: { display: 'sp-bridge' }, type: [APPLICATION_SERVER] },
    entity: [...r.entities.map(toEntity), { what: { identifier: { value: r.requestId } }, type: REQUEST_ID_TYPE }],
  };
}

function toEntity(e: AuditEntity): fhir4.AuditEventEntity {
  const out: fhir4.AuditEventEntity = {};
  if (e.reference !== undefined) out.what = { reference: e.reference };
  const type = entityType(e);
  if (type !== undefined) out.type = { system: RESOURCE_TYPES_SYSTEM, code: type, display: type };
  if (e.query) out.role = QUERY_ROLE;
  else if (e.reference !== undefined) out.role = type === 'Patient' ? PATIENT_ROLE : RESOURCE_ROLE;
  if (e.name !== undefined) out.name = e.name;
  if (e.query) out.query = Buffer.from(e.query, 'utf8').toString('base64');
  return out;
}
