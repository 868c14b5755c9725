import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadProfileSet, type ProfileSet, type StructureDefinition } from '../../scripts/build-profiles';

export const REPO = path.resolve(__dirname, '../..');
export const PROFILES = path.join(REPO, 'profiles');
export const EXAMPLES = path.join(PROFILES, 'examples');
export const SP = 'https://fhir.sp-bridge.example/StructureDefinition/';

/** sp-bridge's profiles: canonical url -> resource type. */
export const SP_PROFILES: Record<string, string> = {
  [`${SP}SPReferral`]: 'ServiceRequest',
  [`${SP}SPCarePlan`]: 'CarePlan',
  [`${SP}SPOutcomeMeasure`]: 'Observation',
  [`${SP}SPPatient`]: 'Patient',
  [`${SP}SPTask`]: 'Task',
};

export function readJson<T = unknown>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

export function jsonFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
}

/** The built definitions as shipped: profiles/*.json and base/uk-core/*.json (with their snapshots). */
export function shippedDefinitions(): { file: string; sd: StructureDefinition }[] {
  const out: { file: string; sd: StructureDefinition }[] = [];
  for (const f of jsonFiles(PROFILES)) {
    const sd = readJson<StructureDefinition>(path.join(PROFILES, f));
    if (sd.resourceType === 'StructureDefinition') out.push({ file: f, sd });
  }
  for (const f of jsonFiles(path.join(PROFILES, 'base/uk-core'))) {
    out.push({ file: `base/uk-core/${f}`, sd: readJson(path.join(PROFILES, 'base/uk-core', f)) });
  }
  return out;
}

let cached: ProfileSet | undefined;
/** The profile set the generator loads (snapshots computed on demand, once per test file). */
export function profileSet(): ProfileSet {
  cached ??= loadProfileSet(PROFILES);
  return cached;
}

export interface Example {
  file: string;
  resource: Record<string, unknown> & { resourceType: string; meta?: { profile?: string[] } };
}

export function examples(): Example[] {
  return jsonFiles(EXAMPLES).map((file) => ({ file, resource: readJson(path.join(EXAMPLES, file)) }));
}

/** Every resource in the examples: the standalone ones and each transaction Bundle entry. */
export function exampleResources(): { where: string; resource: Example['resource'] }[] {
  const out: { where: string; resource: Example['resource'] }[] = [];
  for (const { file, resource } of examples()) {
    if (resource.resourceType === 'Bundle') {
      const entries = (resource.entry ?? []) as { resource?: Example['resource'] }[];
      entries.forEach((e, i) => {
        if (e.resource) out.push({ where: `${file} entry[${i}]`, resource: e.resource });
      });
    } else {
      out.push({ where: file, resource });
    }
  }
  return out;
}

/** Walks a JSON tree, calling `visit` on every object. */
export function walkObjects(node: unknown, visit: (o: Record<string, unknown>) => void): void {
  if (Array.isArray(node)) {
    for (const x of node) walkObjects(x, visit);
  } else if (node !== null && typeof node === 'object') {
    visit(node as Record<string, unknown>);
    for (const x of Object.values(node)) walkObjects(x, visit);
  }
}
