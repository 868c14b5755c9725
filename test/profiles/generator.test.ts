import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ProfileSet,
  SnapshotError,
  buildProfiles,
  matchesPattern,
  pathOfId,
  type ElementDefinition,
  type StructureDefinition,
} from '../../scripts/build-profiles';
import { PROFILES, jsonFiles, readJson } from './helpers';

describe('build-profiles: determinism', () => {
  const first = buildProfiles(PROFILES);

  it('rebuilding yields identical files', () => {
    const second = buildProfiles(PROFILES);
    expect([...second.files.keys()]).toEqual([...first.files.keys()]);
    for (const [file, text] of first.files) expect({ file, same: second.files.get(file) === text }).toEqual({ file, same: true });
  });

  it('the files in profiles/ are what the generator produces (run `npm run build:profiles` after editing profiles/src)', () => {
    for (const [file, text] of first.files) {
      const onDisk = fs.readFileSync(path.join(PROFILES, file), 'utf8');
      expect({ file, upToDate: onDisk === text }).toEqual({ file, upToDate: true });
    }
  });

  it('writes one file per profiles/src definition and every UK Core file, and nothing else', () => {
    const expected = [
      ...jsonFiles(path.join(PROFILES, 'src')).map((f) => `${readJson<{ id: string }>(path.join(PROFILES, 'src', f)).id}.json`),
      ...jsonFiles(path.join(PROFILES, 'base/uk-core')).map((f) => `base/uk-core/${f}`),
    ].sort();
    expect([...first.files.keys()].sort()).toEqual(expected);
  });

  it('keeps UK Core files as received apart from the snapshot', () => {
    for (const f of jsonFiles(path.join(PROFILES, 'base/uk-core'))) {
      const built = JSON.parse(first.files.get(`base/uk-core/${f}`) as string) as Record<string, unknown>;
      const { snapshot, ...rest } = built;
      expect(snapshot).toBeDefined();
      const onDisk = readJson<Record<string, unknown>>(path.join(PROFILES, 'base/uk-core', f));
      delete onDisk.snapshot;
      expect(rest).toEqual(onDisk);
    }
  });
});

// -------------------------------------------------------------------------------------------------------------
// The generator's rules, on small definitions built from the shipped base R4 ones.

function baseSet(): ProfileSet {
  const set = new ProfileSet();
  for (const f of jsonFiles(path.join(PROFILES, 'base/r4'))) {
    set.add(readJson<StructureDefinition>(path.join(PROFILES, 'base/r4', f)), 'r4', `base/r4/${f}`);
  }
  return set;
}

function profile(type: string, elements: ElementDefinition[], url = `https://example.org/StructureDefinition/Test${type}`): StructureDefinition {
  return {
    resourceType: 'StructureDefinition',
    id: `Test${type}`,
    url,
    type,
    kind: 'resource',
    abstract: false,
    baseDefinition: `http://hl7.org/fhir/StructureDefinition/${type}`,
    derivation: 'constraint',
    differential: { element: [{ id: type, path: type }, ...elements] },
  };
}

function snapshotOf(sd: StructureDefinition, set = baseSet()): ElementDefinition[] {
  set.add(sd, 'sp', 'test');
  return set.snapshot(sd.url);
}

function problemsOf(sd: StructureDefinition): string[] {
  try {
    snapshotOf(sd);
  } catch (e) {
    if (e instanceof SnapshotError) return e.problems;
    throw e;
  }
  return [];
}

describe('build-profiles: snapshot rules', () => {
  it('narrows cardinality and refuses to widen it', () => {
    const snap = snapshotOf(profile('Observation', [{ id: 'Observation.subject', path: 'Observation.subject', min: 1 }]));
    expect(snap.find((e) => e.id === 'Observation.subject')).toMatchObject({ min: 1, max: '1', base: { min: 0, max: '1' } });
    expect(problemsOf(profile('Observation', [{ id: 'Observation.subject', path: 'Observation.subject', max: '*' }]))).toEqual([
      'Observation.subject: max * is wider than the base max 1',
    ]);
    expect(problemsOf(profile('Observation', [{ id: 'Observation.status', path: 'Observation.status', min: 0 }]))).toEqual([
      'Observation.status: min 0 is wider than the base min 1',
    ]);
  });

  it('restricts a choice to one type and pulls in that type\'s children', () => {
    const snap = snapshotOf(
      profile('Observation', [
        { id: 'Observation.value[x]', path: 'Observation.value[x]', type: [{ code: 'Quantity' }] },
        { id: 'Observation.value[x].code', path: 'Observation.value[x].code', min: 1, fixedCode: '{score}' },
      ]),
    );
    const ids = snap.map((e) => e.id);
    const at = ids.indexOf('Observation.value[x]');
    expect(ids.slice(at, at + 6)).toEqual([
      'Observation.value[x]',
      'Observation.value[x].id',
      'Observation.value[x].extension',
      'Observation.value[x].value',
      'Observation.value[x].comparator',
      'Observation.value[x].unit',
    ]);
    expect(snap.find((e) => e.id === 'Observation.value[x].code')).toMatchObject({
      path: 'Observation.value[x].code',
      min: 1,
      fixedCode: '{score}',
      base: { path: 'Quantity.code', min: 0, max: '1' },
    });
    expect(snap[at + 6].id).toBe('Observation.value[x].system');
  });

  it('refuses a type that is not in the base, constraining below a multi-type element, and type-specific names', () => {
    expect(problemsOf(profile('Observation', [{ id: 'Observation.value[x]', path: 'Observation.value[x]', type: [{ code: 'Money' }] }]))[0]).toMatch(
      /type Money is not one of the base types/,
    );
    expect(problemsOf(profile('Observation', [{ id: 'Observation.value[x].code', path: 'Observation.value[x].code', min: 1 }]))[0]).toMatch(
      /cannot constrain below an element with 11 types/,
    );
    expect(problemsOf(profile('Observation', [{ id: 'Observation.valueQuantity', path: 'Observation.valueQuantity' }]))[0]).toMatch(
      /type-specific names such as valueQuantity are not supported/,
    );
  });

  it('narrows reference targets and refuses targets the base does not allow', () => {
    const snap = snapshotOf(
      profile('ServiceRequest', [
        {
          id: 'ServiceRequest.subject',
          path: 'ServiceRequest.subject',
          type: [{ code: 'Reference', targetProfile: ['http://hl7.org/fhir/StructureDefinition/Patient'] }],
        },
      ]),
    );
    expect(snap.find((e) => e.id === 'ServiceRequest.subject')?.type).toEqual([
      { code: 'Reference', targetProfile: ['http://hl7.org/fhir/StructureDefinition/Patient'] },
    ]);
    expect(
      problemsOf(
        profile('CarePlan', [
          {
            id: 'CarePlan.basedOn',
            path: 'CarePlan.basedOn',
            type: [{ code: 'Reference', targetProfile: ['http://hl7.org/fhir/StructureDefinition/ServiceRequest'] }],
          },
        ]),
      ),
    ).toEqual([
      'CarePlan.basedOn: target http://hl7.org/fhir/StructureDefinition/ServiceRequest is not allowed by the base (http://hl7.org/fhir/StructureDefinition/CarePlan)',
    ]);
  });

  it('overrides bindings, but never weakens a required one', () => {
    const snap = snapshotOf(
      profile('ServiceRequest', [
        { id: 'ServiceRequest.code', path: 'ServiceRequest.code', binding: { strength: 'required', valueSet: 'https://example.org/ValueSet/x' } },
      ]),
    );
    expect(snap.find((e) => e.id === 'ServiceRequest.code')?.binding).toMatchObject({ strength: 'required', valueSet: 'https://example.org/ValueSet/x' });
    expect(problemsOf(profile('ServiceRequest', [{ id: 'ServiceRequest.status', path: 'ServiceRequest.status', binding: { strength: 'preferred' } }]))).toEqual([
      'ServiceRequest.status: binding strength preferred is weaker than the base required',
    ]);
  });

  it('adds constraints after the base ones, with the profile as source, and refuses redefining a base key', () => {
    const c = { key: 'x-1', severity: 'error', human: 'h', expression: 'true' };
    const snap = snapshotOf(profile('Observation', [{ id: 'Observation', path: 'Observation', constraint: [c] }]));
    const keys = snap[0].constraint?.map((x) => x.key);
    expect(keys?.slice(0, 2)).toEqual(['dom-2', 'dom-3']);
    expect(keys).toEqual(expect.arrayContaining(['obs-6', 'obs-7']));
    expect(snap[0].constraint?.at(-1)).toEqual({ ...c, source: 'https://example.org/StructureDefinition/TestObservation' });
    expect(problemsOf(profile('Observation', [{ id: 'Observation', path: 'Observation', constraint: [{ ...c, key: 'obs-6' }] }]))[0]).toMatch(
      /constraint obs-6 already exists/,
    );
  });

  it('inserts slices after the sliced element and its children, with the sliced type\'s children under them', () => {
    const snap = snapshotOf(
      profile('Patient', [
        { id: 'Patient.identifier', path: 'Patient.identifier', slicing: { discriminator: [{ type: 'value', path: 'system' }], rules: 'open' } },
        { id: 'Patient.identifier:a', path: 'Patient.identifier', sliceName: 'a', min: 1, max: '1' },
        { id: 'Patient.identifier:a.system', path: 'Patient.identifier.system', fixedUri: 'urn:a' },
        { id: 'Patient.identifier:b', path: 'Patient.identifier', sliceName: 'b' },
      ]),
    );
    const ids = snap.map((e) => e.id as string);
    const at = ids.indexOf('Patient.identifier');
    expect(ids.slice(at, at + 3)).toEqual(['Patient.identifier', 'Patient.identifier:a', 'Patient.identifier:a.id']);
    const b = ids.indexOf('Patient.identifier:b');
    expect(ids[b - 1]).toBe('Patient.identifier:a.assigner');
    expect(ids[b + 1]).toBe('Patient.active');
    expect(snap[b]).toMatchObject({ sliceName: 'b', min: 0, max: '*' });
    expect(snap.find((e) => e.id === 'Patient.identifier:a.system')).toMatchObject({ fixedUri: 'urn:a', path: 'Patient.identifier.system' });
    expect(snap[at].slicing).toBeDefined();
    expect(snap[at + 1].slicing).toBeUndefined();
    for (const e of snap) expect(pathOfId(e.id as string)).toBe(e.path);
  });

  it('slices extension by url implicitly, and refuses slices of an element that is not sliced', () => {
    const snap = snapshotOf(
      profile('Patient', [{ id: 'Patient.extension:x', path: 'Patient.extension', sliceName: 'x', type: [{ code: 'Extension', profile: ['https://example.org/x'] }] }]),
    );
    expect(snap.find((e) => e.id === 'Patient.extension')?.slicing).toMatchObject({ discriminator: [{ type: 'value', path: 'url' }], rules: 'open' });
    expect(problemsOf(profile('Patient', [{ id: 'Patient.name:x', path: 'Patient.name', sliceName: 'x' }]))[0]).toMatch(/is not sliced/);
  });

  it('applies fixed and pattern values, refusing ones that contradict the base', () => {
    const set = baseSet();
    const first = profile('Task', [{ id: 'Task.intent', path: 'Task.intent', fixedCode: 'order' }], 'https://example.org/A');
    set.add(first, 'sp', 'a');
    const second: StructureDefinition = {
      ...profile('Task', [{ id: 'Task.intent', path: 'Task.intent', fixedCode: 'plan' }], 'https://example.org/B'),
      baseDefinition: 'https://example.org/A',
    };
    set.add(second, 'sp', 'b');
    expect(set.snapshot('https://example.org/A').find((e) => e.id === 'Task.intent')?.fixedCode).toBe('order');
    expect(() => set.snapshot('https://example.org/B')).toThrow(/fixedCode contradicts the base fixedCode/);
  });

  it('pattern matching is by subset', () => {
    expect(matchesPattern({ coding: [{ system: 's', code: 'c', display: 'd' }], text: 't' }, { coding: [{ system: 's', code: 'c' }] })).toBe(true);
    expect(matchesPattern({ coding: [{ system: 's', code: 'x' }] }, { coding: [{ system: 's', code: 'c' }] })).toBe(false);
  });
});
