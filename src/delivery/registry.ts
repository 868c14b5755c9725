import type { AdapterFactory } from './adapter';
import { fhirRestAdapter } from './adapters/fhir-rest';
import { meshSendDocumentAdapter } from './adapters/mesh-send-document';
import { meshUpdateRecordAdapter } from './adapters/mesh-update-record';

/**
 * The built-in adapters, by the name a destinations file uses in `adapter`. To add one, import its factory and
 * add it to the list: one line each. Third-party adapters need no entry here: a destination names them as
 * `module:<path>` (see src/delivery/destinations.ts).
 */
export const builtInAdapters: AdapterFactory[] = [fhirRestAdapter, meshSendDocumentAdapter, meshUpdateRecordAdapter];

export function findBuiltInAdapter(name: string, extra: AdapterFactory[] = []): AdapterFactory | undefined {
  return [...extra, ...builtInAdapters].find((f) => f.name === name);
}
