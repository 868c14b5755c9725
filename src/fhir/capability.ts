import type { RequestContext } from './types';

import { version } from '../../package.json';
import { resourceTypes } from './registry';

const STARTED = new Date().toISOString();

const COMMON_SEARCH: fhir4.CapabilityStatementRestResourceSearchParam[] = [
  { name: '_id', type: 'token', documentation: 'Logical id' },
  { name: '_lastUpdated', type: 'date', documentation: 'When the resource last changed' },
];

/** The CapabilityStatement (http://hl7.org/fhir/R4/capabilitystatement.html), generated from the registry. */
export function capabilityStatement(ctx: RequestContext): fhir4.CapabilityStatement {
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
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'history-system' }],
        resource: resourceTypes.map((def) => ({
          type: def.type as fhir4.CapabilityStatementRestResource['type'],
          documentation: def.description,
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
        })),
      },
    ],
  };
}
