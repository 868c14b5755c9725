import type { RequestContext } from './types';

import { version } from '../../package.json';
import type { OperationDefinition } from './operations/operation';
import { DEFAULT_PROFILES } from '../validation/validator';
import { resourceTypes } from './registry';

/** The HL7 OperationDefinition ids of the operations served. */
const OPERATION_DEFINITIONS: Record<string, string> = {
  validate: 'Resource-validate',
  lookup: 'CodeSystem-lookup',
  'validate-code': 'ValueSet-validate-code',
  expand: 'ValueSet-expand',
  subsumes: 'CodeSystem-subsumes',
};

const STARTED = new Date().toISOString();

const COMMON_SEARCH: fhir4.CapabilityStatementRestResourceSearchParam[] = [
  { name: '_id', type: 'token', documentation: 'Logical id' },
  { name: '_lastUpdated', type: 'date', documentation: 'When the resource last changed' },
];

/** The CapabilityStatement (http://hl7.org/fhir/R4/capabilitystatement.html), generated from the registry. */
export function capabilityStatement(
  ctx: RequestContext,
  served: {
    operations: OperationDefinition[];
    conformanceTypes: string[];
    /** The audit trail is served, read-only, as AuditEvent. */
    audit?: boolean;
    /** SMART Backend Services tokens are required (AUTH_MODE=smart). */
    smart?: boolean;
  },
): fhir4.CapabilityStatement {
  const operationsFor = (level: 'system' | 'type' | 'instance', type?: string) =>
    served.operations
      .filter((op) => op.levels.includes(level) && (type === undefined || op.types(type)))
      .map((op) => ({ name: op.name, definition: `http://hl7.org/fhir/OperationDefinition/${OPERATION_DEFINITIONS[op.name] ?? op.name}` }));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: STARTED,
    publisher: 'sp-bridge',
    kind: 'instance',
    software: { name: 'sp-bridge', version },
    implementation: { description: 'sp-bridge: FHIR R4 social prescribing integration service', url: ctx.baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'application/json'],
    rest: [
      {
        mode: 'server',
        security: served.smart ? security(ctx) : undefined,
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'history-system' }],
        resource: [
          ...resourceTypes.map((def): fhir4.CapabilityStatementRestResource => ({
          type: def.type as fhir4.CapabilityStatementRestResource['type'],
          documentation: def.description,
          profile: DEFAULT_PROFILES[def.type],
          interaction: (
            ['read', 'vread', 'update', 'delete', 'history-instance', 'history-type', 'create', 'search-type'] as const
          ).map((code) => ({ code })),
          versioning: 'versioned-update',
          readHistory: true,
          updateCreate: true,
          conditionalCreate: true,
          conditionalUpdate: true,
          conditionalDelete: 'single',
          conditionalRead: 'full-support',
          searchInclude: def.searchParams.filter((sp) => sp.type === 'reference').map((sp) => `${def.type}:${sp.name}`),
          searchRevInclude: resourceTypes.flatMap((other) =>
            other.searchParams
              .filter((sp) => sp.type === 'reference' && (!sp.targets || sp.targets.includes(def.type)))
              .map((sp) => `${other.type}:${sp.name}`),
          ),
          searchParam: [
            ...COMMON_SEARCH,
            ...def.searchParams.map((sp) => ({ name: sp.name, type: sp.type, documentation: sp.description })),
          ],
          operation: operationsFor('type', def.type),
          })),
          ...served.conformanceTypes.map((type): fhir4.CapabilityStatementRestResource => ({
            type: type as fhir4.CapabilityStatementRestResource['type'],
            documentation: 'Read-only: shipped with sp-bridge',
            interaction: (['read', 'search-type'] as const).map((code) => ({ code })),
            operation: operationsFor('type', type),
          })),
          ...(served.audit ? [auditEvent] : []),
        ],
      },
    ],
  };
}

/** SMART on FHIR: http://hl7.org/fhir/smart-app-launch/conformance.html#declaring-support-for-oauth2-endpoints */
function security(ctx: RequestContext): fhir4.CapabilityStatementRestSecurity {
  return {
    cors: false,
    service: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] },
    ],
    description: 'SMART Backend Services (client_credentials with a private_key_jwt assertion); see /.well-known/smart-configuration',
    extension: [
      {
        url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
        extension: [{ url: 'token', valueUri: `${ctx.baseUrl}/auth/token` }],
      },
    ],
  };
}

const auditEvent: fhir4.CapabilityStatementRestResource = {
  type: 'AuditEvent',
  documentation: 'Read-only audit trail of every read and write of patient data and every token request; needs the sp-bridge/admin scope',
  interaction: (['read', 'search-type'] as const).map((code) => ({ code })),
  searchParam: [
    { name: 'date', type: 'date', documentation: 'When the event was recorded' },
    { name: 'agent', type: 'token', documentation: 'The client id (urn:sp-bridge:client-id|id)' },
    { name: 'entity', type: 'reference', documentation: 'The resource the event concerns' },
    { name: 'entity-type', type: 'token', documentation: 'The resource type the event concerns' },
    { name: 'action', type: 'token', documentation: 'C, R, U, D or E' },
    { name: 'subtype', type: 'token', documentation: 'The interaction (restful-interaction code, or 110122 for a token request)' },
    { name: 'outcome', type: 'token', documentation: '0 success, 4 refused or invalid, 8 server error' },
  ],
};
