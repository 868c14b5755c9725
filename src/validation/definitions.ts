import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { FhirError } from '../errors';
import type { ConformanceSource } from '../fhir/conformance';

const BASE = 'http://hl7.org/fhir/StructureDefinition/';

const SEARCH_PARAMS = new Set(['_id', 'url', 'name', 'type', 'status', 'base', 'derivation']);

/** The StructureDefinitions the product ships, by canonical URL, read once at start-up. */
export class Definitions implements ConformanceSource {
  readonly types = ['StructureDefinition'] as const;
  private readonly byUrl = new Map<string, fhir4.StructureDefinition>();

  /** Reads every StructureDefinition in `dirs` (not recursive); a later one with the same url wins. */
  static load(dirs: string[]): Definitions {
    const defs = new Definitions();
    for (const dir of dirs) {
      let files: string[];
      try {
        files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
      } catch {
        continue;
      }
      for (const file of files) {
        const json = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as fhir4.Resource;
        if (json.resourceType === 'StructureDefinition') defs.add(json as fhir4.StructureDefinition);
      }
    }
    return defs;
  }

  add(sd: fhir4.StructureDefinition): void {
    this.byUrl.set(sd.url, sd);
  }

  get(url: string): fhir4.StructureDefinition | undefined {
    return this.byUrl.get(url.split('|')[0]);
  }

  /** The base R4 definition of a resource type or datatype. */
  base(type: string): fhir4.StructureDefinition | undefined {
    return this.byUrl.get(`${BASE}${type}`);
  }

  all(): fhir4.StructureDefinition[] {
    return [...this.byUrl.values()];
  }

  read(_type: string, id: string): fhir4.StructureDefinition | undefined {
    return this.all().find((sd) => sd.id === id);
  }

  search(_type: string, params: [string, string][]): fhir4.StructureDefinition[] {
    for (const [k] of params) {
      if (!SEARCH_PARAMS.has(k)) {
        throw new FhirError('SPB_UNKNOWN_SEARCH_PARAM', `StructureDefinition search takes ${[...SEARCH_PARAMS].join(', ')}, not '${k}'`);
      }
    }
    const field: Record<string, (sd: fhir4.StructureDefinition) => string | undefined> = {
      _id: (sd) => sd.id,
      url: (sd) => sd.url,
      name: (sd) => sd.name,
      type: (sd) => sd.type,
      status: (sd) => sd.status,
      base: (sd) => sd.baseDefinition,
      derivation: (sd) => sd.derivation,
    };
    return this.all().filter((sd) => params.every(([k, v]) => v.split(',').includes(field[k](sd) ?? '')));
  }
}
