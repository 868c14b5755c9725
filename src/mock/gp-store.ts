/**
 * The mock GP system's record store: in memory, per type and id, every version kept. Just enough FHIR
 * for a delivery adapter to talk to: create, conditional create, update, conditional update, delete,
 * read, vread and search by identifier.
 */
import { randomUUID } from 'node:crypto';

export interface StoredVersion {
  versionId: string;
  lastUpdated: string;
  /** Absent for a deletion. */
  resource?: fhir4.Resource;
}

export interface Identifier {
  system?: string;
  value: string;
}

/** `identifier=system|value` (or `identifier=value`, `identifier=|value`) from a query string; else undefined. */
export function parseIdentifierCriteria(query: string): Identifier | undefined {
  const params = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query);
  const raw = params.get('identifier');
  if (raw === null || raw === '') return undefined;
  // A `|` escaped as `\|` belongs to the value.
  const split = /(?<!\\)\|/.exec(raw);
  const unescape = (s: string): string => s.replace(/\\([|,$\\])/g, '$1');
  if (!split) return { value: unescape(raw) };
  const system = raw.slice(0, split.index);
  return { system: system === '' ? undefined : unescape(system), value: unescape(raw.slice(split.index + 1)) };
}

function hasIdentifier(resource: fhir4.Resource, wanted: Identifier): boolean {
  const identifiers = (resource as { identifier?: fhir4.Identifier[] }).identifier;
  if (!Array.isArray(identifiers)) return false;
  return identifiers.some((i) => i.value === wanted.value && (wanted.system === undefined || i.system === wanted.system));
}

export class GpStore {
  private readonly byType = new Map<string, Map<string, StoredVersion[]>>();

  private versions(type: string, id: string): StoredVersion[] | undefined {
    return this.byType.get(type)?.get(id);
  }

  /** The current version, or undefined when the resource never existed. `resource` is absent when deleted. */
  current(type: string, id: string): StoredVersion | undefined {
    const versions = this.versions(type, id);
    return versions?.[versions.length - 1];
  }

  version(type: string, id: string, versionId: string): StoredVersion | undefined {
    return this.versions(type, id)?.find((v) => v.versionId === versionId);
  }

  history(type: string, id: string): StoredVersion[] {
    return [...(this.versions(type, id) ?? [])];
  }

  /** Live (not deleted) resources of a type, optionally those carrying an identifier. */
  search(type: string, identifier?: Identifier): fhir4.Resource[] {
    const found: fhir4.Resource[] = [];
    for (const versions of this.byType.get(type)?.values() ?? []) {
      const resource = versions[versions.length - 1].resource;
      if (resource && (!identifier || hasIdentifier(resource, identifier))) found.push(resource);
    }
    return found;
  }

  /** Writes a new version under `id` (a new id when absent); returns it and whether the resource is new. */
  put(type: string, resource: fhir4.Resource, id: string = randomUUID()): { version: StoredVersion; created: boolean } {
    let ofType = this.byType.get(type);
    if (!ofType) this.byType.set(type, (ofType = new Map()));
    let versions = ofType.get(id);
    if (!versions) ofType.set(id, (versions = []));
    const created = versions.length === 0 || versions[versions.length - 1].resource === undefined;
    const versionId = String(versions.length + 1);
    const lastUpdated = new Date().toISOString();
    const stored: fhir4.Resource = { ...resource, id, meta: { ...resource.meta, versionId, lastUpdated } };
    const version: StoredVersion = { versionId, lastUpdated, resource: stored };
    versions.push(version);
    return { version, created };
  }

  /** Records a deletion; false when there was nothing live to delete. */
  delete(type: string, id: string): boolean {
    const versions = this.versions(type, id);
    if (!versions || versions[versions.length - 1].resource === undefined) return false;
    versions.push({ versionId: String(versions.length + 1), lastUpdated: new Date().toISOString() });
    return true;
  }

  /** Counts of live resources per type. */
  counts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const [type, ofType] of this.byType) {
      counts[type] = [...ofType.values()].filter((v) => v[v.length - 1].resource !== undefined).length;
    }
    return counts;
  }

  clear(): void {
    this.byType.clear();
  }
}
