import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const BASE = 'http://hl7.org/fhir/StructureDefinition/';

/** The StructureDefinitions the product ships, by canonical URL, read once at start-up. */
export class Definitions {
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
}
