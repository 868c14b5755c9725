import * as fs from 'node:fs';
import * as path from 'node:path';
import fhirpath from 'fhirpath';
import { pathOfId, type ElementDefinition } from '../../scripts/build-profiles';
import { PROFILES, REPO, SP_PROFILES, jsonFiles, profileSet, readJson, shippedDefinitions } from './helpers';

/** Value sets a binding may name: the bundled terminology/, base R4 and UK Core. */
const terminologyUrls = new Set(
  jsonFiles(path.join(REPO, 'terminology'))
    .map((f) => readJson<{ resourceType: string; url?: string }>(path.join(REPO, 'terminology', f)))
    .filter((r) => r.resourceType === 'ValueSet')
    .map((r) => r.url as string),
);
const EXTERNAL_VALUE_SET_PREFIXES = ['http://hl7.org/fhir/ValueSet/', 'http://terminology.hl7.org/ValueSet/', 'https://fhir.hl7.org.uk/ValueSet/'];

const definitions = shippedDefinitions();
const max = (m: string | undefined): number => (m === undefined || m === '*' ? Infinity : Number(m));

describe('shipped StructureDefinitions', () => {
  it('are the five sp-bridge profiles, the CarePlan.basedOn extension and the UK Core definitions', () => {
    const urls = definitions.map((d) => d.sd.url);
    for (const url of Object.keys(SP_PROFILES)) expect(urls).toContain(url);
    expect(urls).toContain('http://hl7.org/fhir/5.0/StructureDefinition/extension-CarePlan.basedOn');
    for (const id of ['Patient', 'ServiceRequest', 'CarePlan', 'Observation', 'Task']) {
      expect(urls).toContain(`https://fhir.hl7.org.uk/StructureDefinition/UKCore-${id}`);
    }
  });

  it('sp-bridge profiles are draft, FHIR 4.0.1, constraints on UK Core, with the expected type', () => {
    for (const [url, type] of Object.entries(SP_PROFILES)) {
      const { sd } = definitions.find((d) => d.sd.url === url)!;
      expect(sd.status).toBe('draft');
      expect(sd.fhirVersion).toBe('4.0.1');
      expect(sd.type).toBe(type);
      expect(sd.derivation).toBe('constraint');
      expect(sd.baseDefinition).toBe(`https://fhir.hl7.org.uk/StructureDefinition/UKCore-${type}`);
      expect(url).toBe(`https://fhir.sp-bridge.example/StructureDefinition/${sd.id}`);
    }
  });

  describe.each(definitions.map((d) => [d.file, d.sd] as const))('%s', (_file, sd) => {
    const snapshot = sd.snapshot?.element ?? [];
    const differential = sd.differential?.element ?? [];
    const byId = new Map(snapshot.map((e) => [e.id as string, e]));

    it('has a snapshot and a differential', () => {
      expect(snapshot.length).toBeGreaterThan(1);
      expect(differential.length).toBeGreaterThan(0);
      expect(snapshot[0].id).toBe(sd.type);
    });

    it('has every differential element in the snapshot, in the same order', () => {
      let last = -1;
      for (const d of differential) {
        const id = (d.id ?? d.path) as string;
        const at = snapshot.findIndex((e) => e.id === id);
        expect({ id, found: at >= 0 }).toEqual({ id, found: true });
        expect({ id, inOrder: at > last }).toEqual({ id, inOrder: true });
        last = at;
      }
    });

    it('carries every differential constraint, cardinality, type, fixed/pattern value and binding into the snapshot', () => {
      for (const d of differential) {
        const s = byId.get(d.id as string) as ElementDefinition;
        if (d.min !== undefined) expect({ id: d.id, min: s.min }).toEqual({ id: d.id, min: d.min });
        if (d.max !== undefined) expect({ id: d.id, max: s.max }).toEqual({ id: d.id, max: d.max });
        for (const c of d.constraint ?? []) expect(s.constraint?.map((x) => x.key)).toContain(c.key);
        if (d.type) expect(s.type?.map((t) => t.code)).toEqual(d.type.map((t) => t.code));
        for (const [k, v] of Object.entries(d)) if (/^(fixed|pattern)[A-Z]/.test(k)) expect(s[k]).toEqual(v);
        if (d.binding?.valueSet) expect(s.binding?.valueSet).toBe(d.binding.valueSet);
        if (d.binding) expect(s.binding?.strength).toBe(d.binding.strength);
      }
    });

    it('has unique element ids, paths that match them and start with the type', () => {
      const ids = snapshot.map((e) => e.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const e of snapshot) {
        expect(e.path === sd.type || e.path.startsWith(`${sd.type}.`)).toBe(true);
        expect(pathOfId(e.id as string)).toBe(e.path);
        expect(e.min).toBeGreaterThanOrEqual(0);
        expect(max(e.max)).toBeGreaterThanOrEqual(e.min as number);
      }
    });

    it('is never wider than its base: base cardinality, the base profile, and the sliced element', () => {
      const base = profileSet().snapshot(sd.baseDefinition as string);
      const baseById = new Map(base.map((e) => [e.id as string, e]));
      for (const e of snapshot) {
        const id = e.id as string;
        const isSlice = e.sliceName !== undefined;
        expect({ id, max: max(e.max) <= max(e.base?.max) }).toEqual({ id, max: true });
        if (!isSlice) expect({ id, min: (e.min ?? 0) >= (e.base?.min ?? 0) }).toEqual({ id, min: true });
        const inBase = baseById.get(id);
        if (inBase) {
          expect({ id, max: max(e.max) <= max(inBase.max) }).toEqual({ id, max: true });
          expect({ id, min: (e.min ?? 0) >= (inBase.min ?? 0) }).toEqual({ id, min: true });
          for (const c of inBase.constraint ?? []) expect({ id, keys: e.constraint?.map((x) => x.key) }).toEqual({ id, keys: expect.arrayContaining([c.key]) });
        }
        if (isSlice) {
          const sliced = byId.get(id.slice(0, id.lastIndexOf(':')));
          expect(sliced?.slicing).toBeDefined();
          expect({ id, max: max(e.max) <= max(sliced?.max) }).toEqual({ id, max: true });
        }
      }
    });

    it('binds only value sets that are bundled in terminology/ or are base R4 / UK Core', () => {
      for (const e of snapshot) {
        const vs = e.binding?.valueSet?.split('|')[0];
        if (!vs) continue;
        const known = terminologyUrls.has(vs) || EXTERNAL_VALUE_SET_PREFIXES.some((p) => vs.startsWith(p));
        expect({ id: e.id, vs, known }).toEqual({ id: e.id, vs, known: true });
      }
    });

    it('has constraints with unique keys, and FHIRPath expressions that parse', () => {
      for (const e of snapshot) {
        const keys = (e.constraint ?? []).map((c) => c.key);
        expect({ id: e.id, dupes: keys.filter((k, i) => keys.indexOf(k) !== i) }).toEqual({ id: e.id, dupes: [] });
        for (const c of e.constraint ?? []) {
          if (c.source?.startsWith('https://fhir.sp-bridge.example/')) expect(() => fhirpath.parse(c.expression as string)).not.toThrow();
        }
      }
    });
  });
});

describe('what the profiles say', () => {
  const el = (profile: string, id: string): ElementDefinition => {
    const e = profileSet().snapshot(`https://fhir.sp-bridge.example/StructureDefinition/${profile}`).find((x) => x.id === id);
    if (!e) throw new Error(`${profile} has no ${id}`);
    return e;
  };

  it('SPReferral: code 1..1 required sp-referral; subject, authoredOn, requester 1..1; subject is a Patient', () => {
    expect(el('SPReferral', 'ServiceRequest.code')).toMatchObject({
      min: 1,
      max: '1',
      binding: { strength: 'required', valueSet: 'https://fhir.sp-bridge.example/ValueSet/sp-referral' },
    });
    for (const id of ['subject', 'authoredOn', 'requester']) expect(el('SPReferral', `ServiceRequest.${id}`).min).toBe(1);
    expect(el('SPReferral', 'ServiceRequest.subject').type).toEqual([
      { code: 'Reference', targetProfile: ['http://hl7.org/fhir/StructureDefinition/Patient'] },
    ]);
    expect(el('SPReferral', 'ServiceRequest.subject').constraint?.map((c) => c.key)).toContain('sp-subject-1');
    // base constraints are kept
    expect(el('SPReferral', 'ServiceRequest').constraint?.map((c) => c.key)).toEqual(expect.arrayContaining(['prr-1', 'dom-2', 'dom-6']));
  });

  it('SPPatient: exactly one NHS number, system fixed, value required', () => {
    expect(el('SPPatient', 'Patient.identifier')).toMatchObject({ min: 1, slicing: { discriminator: [{ type: 'value', path: 'system' }] } });
    expect(el('SPPatient', 'Patient.identifier:nhsNumber')).toMatchObject({ min: 1, max: '1', sliceName: 'nhsNumber' });
    expect(el('SPPatient', 'Patient.identifier:nhsNumber.system')).toMatchObject({ min: 1, fixedUri: 'https://fhir.nhs.uk/Id/nhs-number' });
    expect(el('SPPatient', 'Patient.identifier:nhsNumber.value').min).toBe(1);
    expect(el('SPPatient', 'Patient.identifier:nhsNumber').comment).toMatch(/Modulus 11/);
  });

  it('SPOutcomeMeasure: survey category slice, required code binding, Quantity {score} value, obs-6/obs-7 kept', () => {
    expect(el('SPOutcomeMeasure', 'Observation.category:survey')).toMatchObject({ min: 1, max: '1' });
    expect(el('SPOutcomeMeasure', 'Observation.code').binding).toMatchObject({
      strength: 'required',
      valueSet: 'https://fhir.sp-bridge.example/ValueSet/sp-outcome-measures',
    });
    expect(el('SPOutcomeMeasure', 'Observation.value[x]').type).toEqual([{ code: 'Quantity' }]);
    expect(el('SPOutcomeMeasure', 'Observation.value[x].system')).toMatchObject({ min: 1, fixedUri: 'http://unitsofmeasure.org' });
    expect(el('SPOutcomeMeasure', 'Observation.value[x].code')).toMatchObject({ min: 1, fixedCode: '{score}' });
    expect(el('SPOutcomeMeasure', 'Observation.effective[x]').min).toBe(1);
    expect(el('SPOutcomeMeasure', 'Observation.subject').min).toBe(1);
    expect(el('SPOutcomeMeasure', 'Observation').constraint?.map((c) => c.key)).toEqual(
      expect.arrayContaining(['obs-6', 'obs-7', 'sp-om-swemwbs', 'sp-om-wemwbs', 'sp-om-ons4', 'sp-om-pam-level', 'sp-om-eq5d-vas']),
    );
  });

  it('SPCarePlan: referral extension 1..1 to a ServiceRequest, period.start 1..1, activity codes extensible sp-activities', () => {
    expect(el('SPCarePlan', 'CarePlan.extension:referral')).toMatchObject({ min: 1, max: '1' });
    expect(el('SPCarePlan', 'CarePlan.extension:referral.url').fixedUri).toBe(
      'http://hl7.org/fhir/5.0/StructureDefinition/extension-CarePlan.basedOn',
    );
    expect(el('SPCarePlan', 'CarePlan.extension:referral.value[x]').type?.[0].targetProfile).toEqual([
      'http://hl7.org/fhir/StructureDefinition/ServiceRequest',
    ]);
    expect(el('SPCarePlan', 'CarePlan.period.start').min).toBe(1);
    expect(el('SPCarePlan', 'CarePlan.activity.detail.code').binding).toMatchObject({
      strength: 'extensible',
      valueSet: 'https://fhir.sp-bridge.example/ValueSet/sp-activities',
    });
  });

  it('SPTask: focus a ServiceRequest, for 1..1, intent fixed order, businessStatus optional', () => {
    expect(el('SPTask', 'Task.focus')).toMatchObject({ min: 1, type: [{ code: 'Reference', targetProfile: ['http://hl7.org/fhir/StructureDefinition/ServiceRequest'] }] });
    expect(el('SPTask', 'Task.for').min).toBe(1);
    expect(el('SPTask', 'Task.intent').fixedCode).toBe('order');
    expect(el('SPTask', 'Task.businessStatus')).toMatchObject({ min: 0, max: '1' });
    expect(el('SPTask', 'Task').constraint?.map((c) => c.key)).toContain('inv-1');
  });
});

describe('profiles/base', () => {
  const sources = readJson<{ files: { file: string; repository: string; commit: string; licence: string }[] }>(
    path.join(PROFILES, 'base/SOURCES.json'),
  );

  it('every shipped base file has its source repository, commit and licence recorded, and nothing else is listed', () => {
    const shipped = ['r4', 'uk-core'].flatMap((d) => jsonFiles(path.join(PROFILES, 'base', d)).map((f) => `${d}/${f}`));
    expect(sources.files.map((s) => s.file).sort()).toEqual(shipped.sort());
    for (const s of sources.files) {
      expect(s.repository).toMatch(/^[\w.-]+\/[\w.-]+$/);
      expect(s.commit).toMatch(/^[0-9a-f]{40}$/);
      expect(s.licence).toMatch(/CC0|Apache/);
    }
  });

  it('the README names every base repository and commit', () => {
    const readme = fs.readFileSync(path.join(PROFILES, 'README.md'), 'utf8');
    for (const s of sources.files) {
      expect(readme).toContain(s.repository);
      expect(readme).toContain(s.commit.slice(0, 7));
    }
  });

  it('base R4 definitions all have snapshots; the datatypes the profiles use are shipped', () => {
    for (const f of jsonFiles(path.join(PROFILES, 'base/r4'))) {
      const sd = readJson<{ snapshot?: unknown; fhirVersion: string }>(path.join(PROFILES, 'base/r4', f));
      expect(sd.snapshot).toBeDefined();
      expect(sd.fhirVersion).toBe('4.0.1');
    }
    for (const t of ['Identifier', 'CodeableConcept', 'Coding', 'Reference', 'Period', 'Quantity', 'SimpleQuantity', 'Extension', 'Meta', 'Narrative']) {
      expect(profileSet().typeSnapshot(t)).toBeDefined();
    }
  });
});
