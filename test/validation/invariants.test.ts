import * as fs from 'node:fs';
import * as path from 'node:path';
import { fhirpathStats } from '../../src/validation/fhirpath';
import { compileInvariants, type InvariantChecker } from '../../src/validation/invariants';
import type { ValidationIssue } from '../../src/validation/types';

const HL7 = path.resolve(__dirname, '../../../shared/fhir/hl7-r4');
const SD_DIR = path.join(HL7, 'core-structuredefinitions');
const EXAMPLES = path.join(HL7, 'examples');

type SD = fhir4.StructureDefinition;

function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

const byType = new Map<string, SD>();
const byUrl = new Map<string, SD>();
for (const f of fs.readdirSync(SD_DIR)) {
  if (!f.endsWith('.json')) continue;
  const sd = readJson<SD>(path.join(SD_DIR, f));
  byUrl.set(sd.url, sd);
  // Base definitions only: the vital-signs profiles also have type Observation.
  if (sd.derivation !== 'constraint') byType.set(sd.type, sd);
}
const resolveType = (code: string): SD | undefined => byUrl.get(code) ?? byType.get(code);
const base = (type: string): SD => byType.get(type)!;

const checkers = new Map<string, InvariantChecker>();
function checkerFor(type: string): InvariantChecker {
  let c = checkers.get(type);
  if (!c) checkers.set(type, (c = compileInvariants(base(type), resolveType)));
  return c;
}

function check(resource: unknown, type?: string, pathPrefix?: string): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const t = type ?? (resource as { resourceType: string }).resourceType;
  checkerFor(t).check(resource, issues, pathPrefix);
  return issues;
}

const errors = (issues: ValidationIssue[]) => issues.filter((i) => i.severity === 'error');
const rules = (issues: ValidationIssue[]) => issues.map((i) => `${i.rule}@${i.expression}`);

const NARRATIVE = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>Referral to social prescribing link worker</p></div>' };

/** A realistic social-prescribing referral (UK Core style, valid NHS number, real SNOMED codes). */
function serviceRequest(): Record<string, unknown> {
  return {
    resourceType: 'ServiceRequest',
    id: 'sp-referral-1',
    meta: { profile: ['https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest'] },
    text: NARRATIVE,
    identifier: [
      { system: 'https://fhir.nhs.uk/Id/BaRS-Identifier', value: 'a7b3c1d2-0001', period: { start: '2024-03-01' } },
    ],
    status: 'active',
    intent: 'order',
    category: [{ coding: [{ system: 'http://snomed.info/sct', code: '306206005', display: 'Referral to service' }] }],
    priority: 'routine',
    code: {
      coding: [{ system: 'http://snomed.info/sct', code: '871731000000106', display: 'Referral to social prescribing service' }],
    },
    subject: {
      reference: 'Patient/9449306680',
      identifier: { system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9449306680' },
      display: 'Jane SMITH',
    },
    occurrencePeriod: { start: '2024-03-04T09:00:00Z', end: '2024-06-04' },
    authoredOn: '2024-03-01T10:15:00+00:00',
    requester: { reference: 'PractitionerRole/gp-1', display: 'Dr A Jones' },
    performer: [{ reference: 'HealthcareService/sp-link-workers' }],
    reasonCode: [{ coding: [{ system: 'http://snomed.info/sct', code: '422650009', display: 'Social isolation' }] }],
    note: [
      { text: 'Lives alone since bereavement.', time: '2024-03-01T10:10:00Z' },
      { authorReference: { reference: 'Practitioner/gp-1' }, text: 'Prefers telephone contact.' },
    ],
  };
}

function observation(): Record<string, unknown> {
  return {
    resourceType: 'Observation',
    id: 'wemwbs-1',
    text: NARRATIVE,
    status: 'final',
    category: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey' }] },
    ],
    code: { coding: [{ system: 'http://snomed.info/sct', code: '885541000000103', display: 'WEMWBS score' }] },
    subject: { reference: 'Patient/9449306680' },
    effectiveDateTime: '2024-03-10T11:00:00Z',
    performer: [{ reference: 'Practitioner/link-worker-1', display: 'Link worker' }],
    valueQuantity: { value: 31, unit: 'score', system: 'http://unitsofmeasure.org', code: '{score}' },
    interpretation: [{ text: 'Low wellbeing' }],
    referenceRange: [{ low: { value: 14 }, high: { value: 70 } }],
  };
}

describe('invariants: cost (printed, not asserted)', () => {
  // First in the file, so that compile times are with a cold expression cache. Jest runs the code in a vm
  // context, which makes fhirpath.js 3-4x slower than plain node: these numbers are upper bounds.
  it('compile time and per-resource check time', () => {
    const lines: string[] = [];
    for (const type of ['ServiceRequest', 'CarePlan', 'Observation', 'Patient', 'Task']) {
      const t0 = process.hrtime.bigint();
      compileInvariants(base(type), resolveType);
      lines.push(`compile ${type}: ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)} ms`);
    }
    const time = (label: string, c: InvariantChecker, r: unknown) => {
      const sink: ValidationIssue[] = [];
      for (let i = 0; i < 2000; i++) c.check(r, sink);
      const n = 20000;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        sink.length = 0;
        c.check(r, sink);
      }
      lines.push(`check ${label}: ${(Number(process.hrtime.bigint() - t0) / 1e3 / n).toFixed(1)} us/resource`);
    };
    time('ServiceRequest (realistic)', checkerFor('ServiceRequest'), serviceRequest());
    time('Observation (realistic)', checkerFor('Observation'), observation());
    const withContained = serviceRequest();
    withContained.contained = [{ resourceType: 'Patient', id: 'pat', name: [{ family: 'Smith' }] }];
    withContained.subject = { reference: '#pat' };
    time('ServiceRequest with a contained Patient', checkerFor('ServiceRequest'), withContained);
    // eslint-disable-next-line no-console
    console.log(lines.join('\n'));
  });
});

describe('invariants: clean instances', () => {
  it('every R4 core StructureDefinition here compiles (all its expressions parse)', () => {
    for (const sd of byUrl.values()) expect(() => compileInvariants(sd, resolveType)).not.toThrow();
  });


  it('a realistic ServiceRequest and Observation have no invariant issues', () => {
    expect(check(serviceRequest())).toEqual([]);
    expect(check(observation())).toEqual([]);
  });
});

describe('invariants: violations', () => {
  it('prr-1: orderDetail without code', () => {
    const sr = serviceRequest();
    delete sr.code;
    sr.orderDetail = [{ text: 'Weekly group sessions' }];
    const issues = check(sr);
    expect(issues).toEqual([
      {
        severity: 'error',
        code: 'invariant',
        rule: 'prr-1',
        diagnostics: 'orderDetail SHALL only be present if code is present',
        expression: 'ServiceRequest',
      },
    ]);
  });

  it('ref-1: a reference to a contained resource that is not there (on Reference, wherever it appears)', () => {
    const sr = serviceRequest();
    sr.subject = { reference: '#pat' };
    (sr.note as unknown[])[1] = { authorReference: { reference: '#nobody' }, text: 'x' };
    const issues = check(sr);
    expect(rules(issues).sort()).toEqual(['ref-1@ServiceRequest.note[1].author', 'ref-1@ServiceRequest.subject']);
    expect(issues[0]).toMatchObject({ severity: 'error', code: 'invariant' });
  });

  it('ref-1 passes for a reference to a contained resource, and for `#` (a contained resource referring to its container)', () => {
    const sr = serviceRequest();
    sr.contained = [
      { resourceType: 'Patient', id: 'pat', name: [{ family: 'Smith' }], link: [{ other: { reference: '#' }, type: 'seealso' }] },
    ];
    sr.subject = { reference: '#pat' };
    expect(check(sr)).toEqual([]);
  });

  it('ref-1 inside a nested datatype: Identifier.assigner, and inside an extension value', () => {
    const sr = serviceRequest();
    (sr.identifier as Record<string, unknown>[])[0].assigner = { reference: '#org' };
    sr.extension = [{ url: 'http://example.org/ext', valueReference: { reference: '#missing' } }];
    expect(rules(check(sr)).sort()).toEqual([
      'ref-1@ServiceRequest.extension[0].value',
      'ref-1@ServiceRequest.identifier[0].assigner',
    ]);
  });

  it('dom-3: a contained resource that nothing references', () => {
    const sr = serviceRequest();
    sr.contained = [{ resourceType: 'Patient', id: 'orphan', name: [{ family: 'Smith' }] }];
    const issues = check(sr);
    expect(rules(issues)).toEqual(['dom-3@ServiceRequest']);
    expect(issues[0].severity).toBe('error');
  });

  it('dom-2: a contained resource that contains another', () => {
    const sr = serviceRequest();
    sr.contained = [
      {
        resourceType: 'Patient',
        id: 'pat',
        contained: [{ resourceType: 'Organization', id: 'org', name: 'GP surgery' }],
        managingOrganization: { reference: '#org' },
      },
    ];
    sr.subject = { reference: '#pat' };
    expect(rules(check(sr))).toContain('dom-2@ServiceRequest');
  });

  it('dom-4/dom-5: contained resources carry no versionId/lastUpdated/security', () => {
    const sr = serviceRequest();
    sr.contained = [{ resourceType: 'Patient', id: 'pat', meta: { versionId: '2' }, name: [{ family: 'Smith' }] }];
    sr.subject = { reference: '#pat' };
    expect(rules(check(sr))).toEqual(['dom-4@ServiceRequest']);
  });

  it('obs-6: dataAbsentReason together with a value', () => {
    const obs = observation();
    obs.dataAbsentReason = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'unknown' }] };
    expect(check(obs)).toEqual([
      {
        severity: 'error',
        code: 'invariant',
        rule: 'obs-6',
        diagnostics: 'dataAbsentReason SHALL only be present if Observation.value[x] is not present',
        expression: 'Observation',
      },
    ]);
  });

  it('obs-7: value[x] while a component has the same code', () => {
    const obs = observation();
    obs.component = [{ code: obs.code, valueQuantity: { value: 3 } }];
    expect(rules(check(obs))).toEqual(['obs-7@Observation']);
  });

  it('per-1: Period end before start, wherever a Period is (also nested: Identifier.period)', () => {
    const sr = serviceRequest();
    sr.occurrencePeriod = { start: '2024-06-04', end: '2024-03-04' };
    (sr.identifier as Record<string, unknown>[])[0].period = { start: '2024-03-02T10:00:00Z', end: '2024-03-01' };
    const issues = check(sr);
    expect(rules(issues).sort()).toEqual(['per-1@ServiceRequest.identifier[0].period', 'per-1@ServiceRequest.occurrence']);
    expect(issues.every((i) => i.severity === 'error' && i.diagnostics === 'If present, start SHALL have a lower value than end')).toBe(true);
  });

  it('per-1 accepts periods whose ends have different precisions', () => {
    const sr = serviceRequest();
    sr.occurrencePeriod = { start: '2024', end: '2024-05' };
    expect(check(sr)).toEqual([]);
    sr.occurrencePeriod = { start: '2024-03-01T23:30:00-02:00', end: '2024-03-02' };
    expect(check(sr)).toEqual([]);
  });

  it('qty-3 and sqty-1 on Quantity; obs-3 on a BackboneElement', () => {
    const obs = observation();
    obs.valueQuantity = { value: 31, code: '{score}' };
    obs.referenceRange = [{ low: { value: 14, comparator: '>' } }, { appliesTo: [{ text: 'adults' }] }];
    expect(rules(check(obs)).sort()).toEqual([
      'obs-3@Observation.referenceRange[1]',
      'qty-3@Observation.value',
      'sqty-1@Observation.referenceRange[0].low',
    ]);
  });

  it('ext-1 natively: an extension needs a value or nested extensions, not both, not neither', () => {
    const sr = serviceRequest();
    sr.extension = [
      { url: 'http://example.org/a' },
      { url: 'http://example.org/b', valueString: 'x', extension: [{ url: 'c', valueBoolean: true }] },
      { url: 'http://example.org/d', extension: [{ url: 'e', valueBoolean: true }] },
    ];
    sr._status = { extension: [{ url: 'http://example.org/f' }] };
    expect(rules(check(sr)).sort()).toEqual([
      'ext-1@ServiceRequest.extension[0]',
      'ext-1@ServiceRequest.extension[1]',
      'ext-1@ServiceRequest.status.extension[0]',
    ]);
  });

  it('txt-1/txt-2: narrative XHTML rules (fhirpath.js htmlChecks(), split as the HL7 validator does)', () => {
    const sr = serviceRequest();
    const div = (inner: string) => ({ status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${inner}</div>` });
    sr.text = div('<script>alert(1)</script>');
    expect(rules(check(sr))).toEqual(['txt-1@ServiceRequest.text.div']);
    sr.text = div('<p onclick="go()">Referral</p>');
    expect(rules(check(sr))).toEqual(['txt-1@ServiceRequest.text.div']);
    sr.text = div('<p>  </p>');
    expect(rules(check(sr))).toEqual(['txt-2@ServiceRequest.text.div']);
    sr.text = div('<p xml:lang="en-GB" lang="en-GB">Referral</p><img src="#logo"/>');
    expect(check(sr)).toEqual([]);
  });

  it('dom-6 is a warning', () => {
    const sr = serviceRequest();
    delete sr.text;
    const issues = check(sr);
    expect(issues).toEqual([
      {
        severity: 'warning',
        code: 'invariant',
        rule: 'dom-6',
        diagnostics: 'A resource should have narrative for robust management',
        expression: 'ServiceRequest',
      },
    ]);
  });

  it('the path parameter prefixes expressions of a nested resource', () => {
    const sr = serviceRequest();
    sr.occurrencePeriod = { start: '2024-06-04', end: '2024-03-04' };
    expect(rules(check(sr, undefined, 'Bundle.entry[3].resource'))).toEqual(['per-1@Bundle.entry[3].resource.occurrence']);
  });

  it('checks resources inside a Bundle against their own type', () => {
    const sr = serviceRequest();
    sr.occurrencePeriod = { start: '2024-06-04', end: '2024-03-04' };
    const bundle = { resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: 'urn:uuid:0b8c7c5e-55a4-4c2b-a7c3-1f9a8c0e7d11', resource: sr }] };
    expect(rules(check(bundle))).toEqual(['per-1@Bundle.entry[0].resource.occurrence']);
  });

  it('dom-6 (narrative) is not required of contained resources', () => {
    const sr = serviceRequest();
    sr.contained = [{ resourceType: 'Patient', id: 'pat', name: [{ family: 'Smith' }] }];
    sr.subject = { reference: '#pat' };
    expect(check(sr)).toEqual([]);
  });

  it('dom-3 also counts canonical references to contained resources', () => {
    const cp = {
      resourceType: 'CarePlan',
      text: NARRATIVE,
      contained: [{ resourceType: 'Questionnaire', id: 'q1', status: 'active' }],
      instantiatesCanonical: ['#q1'],
      status: 'active',
      intent: 'plan',
      subject: { reference: 'Patient/9449306680' },
    };
    expect(check(cp)).toEqual([]);
    cp.instantiatesCanonical = ['http://example.org/Questionnaire/other'];
    expect(rules(check(cp))).toEqual(['dom-3@CarePlan']);
  });

  it('resolve() finds contained resources (ctm-1 on a contained CareTeam)', () => {
    const careTeam = (memberRef: string) => ({
      resourceType: 'CarePlan',
      text: NARRATIVE,
      status: 'active',
      intent: 'plan',
      subject: { reference: 'Patient/9449306680' },
      careTeam: [{ reference: '#team' }],
      contained: [
        { resourceType: 'Practitioner', id: 'lw', name: [{ family: 'Link-Worker' }] },
        { resourceType: 'Patient', id: 'pat', name: [{ family: 'Smith' }] },
        {
          resourceType: 'CareTeam',
          id: 'team',
          participant: [{ member: { reference: memberRef }, onBehalfOf: { reference: 'Organization/pcn-1' } }],
        },
      ],
    });
    // The Patient must be referenced somewhere too (dom-3): reference it from the note.
    const ok = { ...careTeam('#lw'), note: [{ authorReference: { reference: '#pat' }, text: 'x' }] };
    expect(check(ok)).toEqual([]);
    const bad = { ...careTeam('#pat'), note: [{ authorReference: { reference: '#lw' }, text: 'x' }] };
    expect(rules(check(bad))).toEqual(['ctm-1@CarePlan.contained[2].participant[0]']);
    // Not resolvable locally: iif(empty(), true, ...) holds, as in the HL7 validator without a fetcher.
    const remote = { ...careTeam('Practitioner/elsewhere'), note: [{ authorReference: { reference: '#pat' }, text: 'x' }] };
    (remote.contained as unknown[]).splice(0, 1);
    expect(check(remote)).toEqual([]);
  });

  it('resolve() finds entries of the enclosing Bundle', () => {
    const team = {
      resourceType: 'CareTeam',
      text: NARRATIVE,
      participant: [{ member: { reference: 'Patient/pat-1' }, onBehalfOf: { reference: 'Organization/pcn-1' } }],
    };
    const bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        { fullUrl: 'https://sp.example.org/fhir/CareTeam/t1', resource: team },
        { fullUrl: 'https://sp.example.org/fhir/Patient/pat-1', resource: { resourceType: 'Patient', id: 'pat-1', text: NARRATIVE } },
      ],
    };
    expect(rules(check(bundle))).toEqual(['ctm-1@Bundle.entry[0].resource.participant[0]']);
  });

  it('Questionnaire.item.item (contentReference) gets Questionnaire.item constraints', () => {
    const q = {
      resourceType: 'Questionnaire',
      text: NARRATIVE,
      status: 'draft',
      item: [{ linkId: '1', type: 'group', item: [{ linkId: '1.1', type: 'display', required: true }] }],
    };
    expect(rules(check(q))).toEqual(['que-6@Questionnaire.item[0].item[0]']);
  });
});

describe('invariants: the HL7 vital-signs profile', () => {
  let vitals: InvariantChecker;
  beforeAll(() => {
    vitals = compileInvariants(byUrl.get('http://hl7.org/fhir/StructureDefinition/vitalsigns')!, resolveType);
  });
  const bp = () => readJson<Record<string, unknown>>(path.join(EXAMPLES, 'Observation', 'Observation-blood-pressure.json'));
  const run = (r: unknown) => {
    const issues: ValidationIssue[] = [];
    vitals.check(r, issues);
    return issues;
  };

  it('vs-3 on a component without value or dataAbsentReason, vs-1 on a dateTime less precise than a day', () => {
    expect(run(bp())).toEqual([]);
    const r = bp();
    delete (r.component as Record<string, unknown>[])[1].valueQuantity;
    r.effectiveDateTime = '2012-09';
    expect(rules(run(r)).sort()).toEqual(['vs-1@Observation.effective', 'vs-3@Observation.component[1]']);
  });

  it('vs-1 (corrected) holds for effectivePeriod', () => {
    const r = bp();
    delete r.effectiveDateTime;
    r.effectivePeriod = { start: '2012-09-17T08:00:00Z', end: '2012-09-17T08:05:00Z' };
    expect(run(r)).toEqual([]);
  });
});

describe('invariants: profile-added constraints', () => {
  const obsSd = byType.get('Observation')!;
  const profile: SD = JSON.parse(JSON.stringify(obsSd)) as SD;
  profile.url = 'https://example.org/fhir/StructureDefinition/sp-wellbeing-score';
  profile.name = 'SpWellbeingScore';
  profile.derivation = 'constraint';
  profile.baseDefinition = obsSd.url;
  profile.snapshot!.element[0].constraint = [
    ...(profile.snapshot!.element[0].constraint ?? []),
    {
      key: 'sp-test',
      severity: 'error',
      human: 'The score SHALL be at most 35',
      expression: 'valueQuantity.value <= 35',
      source: profile.url,
    },
  ];
  let checker: InvariantChecker;
  beforeAll(() => {
    checker = compileInvariants(profile, resolveType);
  });

  it('reports a violation of the added constraint and nothing for a conforming instance', () => {
    const ok: ValidationIssue[] = [];
    checker.check(observation(), ok);
    expect(ok).toEqual([]);

    const bad = observation();
    bad.valueQuantity = { value: 40, unit: 'score', system: 'http://unitsofmeasure.org', code: '{score}' };
    const issues: ValidationIssue[] = [];
    checker.check(bad, issues);
    expect(issues).toEqual([
      { severity: 'error', code: 'invariant', rule: 'sp-test', diagnostics: 'The score SHALL be at most 35', expression: 'Observation' },
    ]);
  });

  it('as in the HL7 validator, an empty result is a failure (no valueQuantity at all)', () => {
    const obs = observation();
    delete obs.valueQuantity;
    obs.valueString = 'not scored';
    const issues: ValidationIssue[] = [];
    checker.check(obs, issues);
    expect(rules(issues)).toEqual(['sp-test@Observation']);
  });

  it('base-resource constraints still apply under the profile', () => {
    const obs = observation();
    obs.dataAbsentReason = { text: 'unknown' };
    const issues: ValidationIssue[] = [];
    checker.check(obs, issues);
    expect(rules(issues)).toEqual(['obs-6@Observation']);
  });

  it('constraints on elements added by a profile, including inside a choice type slice', () => {
    const p: SD = JSON.parse(JSON.stringify(profile)) as SD;
    const els = p.snapshot!.element;
    const vi = els.findIndex((e) => e.id === 'Observation.value[x]');
    els.splice(vi + 1, 0, {
      id: 'Observation.value[x]:valueQuantity',
      path: 'Observation.value[x]',
      sliceName: 'valueQuantity',
      min: 0,
      max: '1',
      type: [{ code: 'Quantity' }],
      constraint: [{ key: 'sp-unit', severity: 'warning', human: 'Scores use UCUM {score}', expression: "code = '{score}'" }],
    });
    const checker2 = compileInvariants(p, resolveType);
    const obs = observation();
    obs.valueQuantity = { value: 20, code: 'kg', system: 'http://unitsofmeasure.org' };
    const issues: ValidationIssue[] = [];
    checker2.check(obs, issues);
    expect(issues).toEqual([
      { severity: 'warning', code: 'invariant', rule: 'sp-unit', diagnostics: 'Scores use UCUM {score}', expression: 'Observation.value' },
    ]);
  });
});

/**
 * Genuine defects in the HL7 R4 examples of these five types, found by this layer: file -> `rule@expression`.
 * There are none. (Elsewhere in examples/: Questionnaire-zika-virus-exposure-assessment.json breaks txt-2, its
 * narrative being `<pre>` with only whitespace in it: "The narrative SHALL have some non-whitespace content".)
 */
const UPSTREAM_DEFECTS: Record<string, string[]> = {};

describe('invariants: HL7 R4 examples', () => {
  for (const type of ['ServiceRequest', 'CarePlan', 'Observation', 'Patient', 'Task']) {
    it(`${type} examples have no error-severity invariant issues (except listed upstream defects)`, () => {
      const dir = path.join(EXAMPLES, type);
      const found: Record<string, string[]> = {};
      for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.json')).sort()) {
        const res = readJson<{ resourceType: string }>(path.join(dir, f));
        const errs = errors(check(res, res.resourceType));
        if (errs.length > 0) found[f] = rules(errs);
      }
      const expected = Object.fromEntries(
        Object.entries(UPSTREAM_DEFECTS).filter(([f]) => fs.existsSync(path.join(dir, f))),
      );
      expect(found).toEqual(expected);
    });
  }
});

describe('invariants: robustness', () => {
  function junk(seed: number): unknown {
    let s = seed * 2654435761;
    const rnd = () => {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      return s / 0x7fffffff;
    };
    const atoms: unknown[] = [null, true, false, 0, -1.5, 1e308, '', '#', '#x', 'x'.repeat(300), '2024-13-45', [], {}, NaN];
    const keys = [
      'resourceType', 'contained', 'subject', 'reference', 'occurrencePeriod', 'start', 'end', 'note', 'authorReference',
      'extension', 'url', 'valueString', 'valueReference', 'orderDetail', 'code', 'text', 'div', 'identifier', 'period',
      'id', 'meta', '_status', 'valueQuantity', 'value', 'component', 'dataAbsentReason', '__proto__', 'constructor',
    ];
    const gen = (depth: number): unknown => {
      const r = rnd();
      if (depth > 4 || r < 0.3) return atoms[Math.floor(rnd() * atoms.length)];
      if (r < 0.45) return Array.from({ length: Math.floor(rnd() * 4) }, () => gen(depth + 1));
      const o: Record<string, unknown> = {};
      const n = Math.floor(rnd() * 6);
      for (let i = 0; i < n; i++) o[keys[Math.floor(rnd() * keys.length)]] = gen(depth + 1);
      if (depth === 0 && rnd() < 0.8) o.resourceType = ['ServiceRequest', 'Observation', 'Patient', 'Bundle', 42][Math.floor(rnd() * 5)];
      if (rnd() < 0.3) o.contained = [gen(depth + 1), { resourceType: 'Patient', id: 'x', contained: gen(depth + 2) }];
      return o;
    };
    return gen(0);
  }

  it('check() never throws on 200 junk inputs', () => {
    const inputs: unknown[] = [undefined, null, 0, 'ServiceRequest', [], [serviceRequest()], { resourceType: null }];
    for (let i = 0; inputs.length < 200; i++) inputs.push(junk(i + 1));
    const cyclic: Record<string, unknown> = { resourceType: 'ServiceRequest' };
    cyclic.subject = cyclic;
    cyclic.note = [{ authorReference: cyclic }];
    inputs.push(cyclic);
    for (const type of ['ServiceRequest', 'Observation', 'Patient', 'Bundle']) {
      const c = checkerFor(type);
      for (const input of inputs) {
        const issues: ValidationIssue[] = [];
        expect(() => c.check(input, issues)).not.toThrow();
        for (const i of issues) expect(typeof i.expression).toBe('string');
      }
    }
  });

  it('does not modify the instance', () => {
    const sr = serviceRequest();
    sr.contained = [{ resourceType: 'Patient', id: 'pat' }];
    sr.subject = { reference: '#pat' };
    const before = JSON.stringify(sr);
    const keysBefore = Object.getOwnPropertyNames(sr.subject);
    check(sr);
    expect(JSON.stringify(sr)).toBe(before);
    expect(Object.getOwnPropertyNames(sr.subject)).toEqual(keysBefore);
  });

  it('most R4 core constraints run as compiled closures, which never failed internally on all of the above', () => {
    // (Differential tests against fhirpath.js: fhirpath-compile.test.ts.)
    expect(fhirpathStats.compiled).toBeGreaterThan(fhirpathStats.interpreted);
    expect(fhirpathStats.unexpectedErrors).toBe(0);
  });
});
