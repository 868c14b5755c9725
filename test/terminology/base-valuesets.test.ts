import { FhirError } from '../../src/errors';
import { SNOMED_SYSTEM, VALUESET_UNCLOSED, loadTerminology, type Terminology } from '../../src/terminology/codesystem';
import { TerminologyResources, resourceId } from '../../src/terminology/resources';

const R4 = 'http://hl7.org/fhir/ValueSet/';
const UK = 'https://fhir.hl7.org.uk/ValueSet/UKCore-';
const SP = 'https://fhir.sp-bridge.example/ValueSet/';

let tx: Terminology;
let res: TerminologyResources;
beforeAll(() => {
  tx = loadTerminology();
  res = new TerminologyResources(tx);
});

const codes = (url: string): string[] => (tx.expand(url)?.expansion?.contains ?? []).map((c) => c.code as string);

describe('base R4 required value sets', () => {
  it('request-status holds the seven request statuses, active included', () => {
    expect(codes(`${R4}request-status`)).toEqual(['draft', 'active', 'on-hold', 'revoked', 'completed', 'entered-in-error', 'unknown']);
    expect(tx.validateCode(`${R4}request-status`, 'http://hl7.org/fhir/request-status', 'active')).toMatchObject({
      result: true,
      checked: true,
      display: 'Active',
    });
  });

  it('observation-status has final (and amended, a nested code)', () => {
    const r = tx.validateCode(`${R4}observation-status`, 'http://hl7.org/fhir/observation-status', 'final');
    expect(r).toMatchObject({ result: true, display: 'Final' });
    expect(codes(`${R4}observation-status`)).toEqual(expect.arrayContaining(['registered', 'preliminary', 'final', 'amended', 'corrected']));
  });

  it('administrative-gender is male, female, other, unknown', () => {
    expect(codes(`${R4}administrative-gender`)).toEqual(['male', 'female', 'other', 'unknown']);
    const r = tx.validateCode(`${R4}administrative-gender`, 'http://hl7.org/fhir/administrative-gender', 'M');
    expect(r).toMatchObject({ result: false, checked: true });
    // 'M' is not a code of the complete administrative-gender code system at all
    expect(r.issues[0]).toMatchObject({ reason: 'invalid-code', severity: 'error' });
  });

  it('task-status, task-intent, request-intent, care-plan-intent, bundle-type, http-verb', () => {
    expect(codes(`${R4}task-status`)).toHaveLength(12);
    expect(codes(`${R4}task-status`)).toEqual(expect.arrayContaining(['requested', 'accepted', 'in-progress', 'completed', 'cancelled']));
    expect(tx.validateCode(`${R4}task-intent`, 'http://hl7.org/fhir/request-intent', 'order').result).toBe(true);
    expect(tx.validateCode(`${R4}task-intent`, 'http://hl7.org/fhir/request-intent', 'directive').checked).toBe(true);
    expect(tx.validateCode(`${R4}task-intent`, 'http://hl7.org/fhir/request-intent', 'directive').result).toBe(false);
    expect(codes(`${R4}care-plan-intent`)).toEqual(['proposal', 'plan', 'order', 'option']);
    expect(codes(`${R4}request-intent`)).toEqual(expect.arrayContaining(['proposal', 'plan', 'directive', 'order', 'original-order']));
    expect(codes(`${R4}bundle-type`)).toEqual(expect.arrayContaining(['transaction', 'batch', 'searchset', 'message']));
    expect(codes(`${R4}http-verb`)).toEqual(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']);
  });

  it('event-timing combines the FHIR codes with the v3 TimingEvent codes it lists', () => {
    expect(codes(`${R4}event-timing`)).toHaveLength(26);
    expect(tx.validateCode(`${R4}event-timing`, 'http://terminology.hl7.org/CodeSystem/v3-TimingEvent', 'ACM').result).toBe(true);
    // HS is listed; the code system's other codes (e.g. ICD) are not
    expect(tx.validateCode(`${R4}event-timing`, 'http://terminology.hl7.org/CodeSystem/v3-TimingEvent', 'ICD')).toMatchObject({
      result: false,
      checked: true,
    });
  });

  it('units-of-time lists its UCUM codes without UCUM being bundled', () => {
    expect(codes(`${R4}units-of-time`)).toEqual(['s', 'min', 'h', 'd', 'wk', 'mo', 'a']);
    expect(tx.validateCode(`${R4}units-of-time`, 'http://unitsofmeasure.org', 'mo').result).toBe(true);
    expect(tx.validateCode(`${R4}units-of-time`, 'http://unitsofmeasure.org', 'month')).toMatchObject({ result: false, checked: true });
  });

  it('accepts the |4.0.1 canonicals the R4 bindings use, and no other version', () => {
    expect(tx.hasValueSet(`${R4}request-status|4.0.1`)).toBe(true);
    expect(tx.validateCode(`${R4}request-status|4.0.1`, 'http://hl7.org/fhir/request-status', 'active').result).toBe(true);
    expect(tx.hasValueSet(`${R4}request-status|5.0.0`)).toBe(false);
    expect(tx.validateCode(`${R4}request-status|5.0.0`, 'http://hl7.org/fhir/request-status', 'active').issues[0]?.reason).toBe('unknown-value-set');
  });

  it('infers the system for code elements (no system given)', () => {
    expect(tx.validateCode(`${R4}request-status|4.0.1`, undefined, 'active')).toMatchObject({
      result: true,
      system: 'http://hl7.org/fhir/request-status',
    });
    const r = tx.validateCode(`${R4}request-status|4.0.1`, undefined, 'Active');
    expect(r).toMatchObject({ result: false, checked: true });
    expect(r.issues[0]?.reason).toBe('not-in-value-set');
  });

  it('loads mimetypes and currencies, which it cannot expand, and says so instead of rejecting', () => {
    for (const [url, system, code] of [
      [`${R4}mimetypes`, 'urn:ietf:bcp:13', 'application/fhir+json'],
      [`${R4}currencies`, 'urn:iso:std:iso:4217', 'GBP'],
    ] as const) {
      expect(tx.valueSetInfo(url)).toMatchObject({ complete: false, knownMembers: 0, open: [{ system }] });
      const r = tx.validateCode(url, system, code);
      expect(r).toMatchObject({ result: false, checked: false });
      expect(r.issues).toEqual([expect.objectContaining({ severity: 'warning', reason: 'not-expandable' })]);
      // a code under another system is certainly not a member
      expect(tx.validateCode(url, 'urn:x:other', code)).toMatchObject({ result: false, checked: true });
    }
  });
});

describe('UK Core value sets', () => {
  it('NHS number verification status: England and Wales codes and the null flavour', () => {
    const url = `${UK}NHSNumberVerificationStatus`;
    expect(tx.valueSetInfo(url)).toMatchObject({ complete: true });
    expect(
      tx.validateCode(url, 'https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland', '01'),
    ).toMatchObject({ result: true, display: 'Number present and verified' });
    expect(tx.validateCode(url, 'http://terminology.hl7.org/CodeSystem/v3-NullFlavor', 'NI').result).toBe(true);
    expect(tx.validateCode(url, 'http://terminology.hl7.org/CodeSystem/v3-NullFlavor', 'UNK')).toMatchObject({ result: false, checked: true });
    expect(
      tx.validateCode(url, 'https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland', '99').issues[0]?.reason,
    ).toBe('invalid-code');
  });

  it('uses the shipped expansion where compose names unbundled v2/v3 code systems', () => {
    expect(tx.valueSetInfo(`${UK}BirthSex`)).toMatchObject({ complete: true, source: 'expansion', knownMembers: 4 });
    expect(tx.validateCode(`${UK}BirthSex`, 'http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender', 'F')).toMatchObject({
      result: true,
      display: 'Female',
    });
    expect(tx.validateCode(`${UK}BirthSex`, 'http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender', 'X')).toMatchObject({
      result: false,
      checked: true,
    });
    expect(tx.valueSetInfo(`${UK}PersonRelationshipType`)).toMatchObject({ complete: true, knownMembers: 131 });
    expect(tx.isInValueSet(`${UK}PersonRelationshipType`, 'http://terminology.hl7.org/CodeSystem/v3-RoleCode', 'MTH')).toBe(true);
  });

  it('evaluates compose over bundled UK Core code systems (EthnicCategory, FundingCategory)', () => {
    expect(tx.valueSetInfo(`${UK}EthnicCategory`)).toMatchObject({ complete: true, source: 'compose', knownMembers: 35 });
    expect(tx.validateCode(`${UK}EthnicCategory`, 'https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland', 'A').result).toBe(true);
    expect(codes(`${UK}FundingCategory`)).toHaveLength(10);
  });

  it('cannot check SNOMED CT ECL value sets beyond the fragment, but knows their anchors', () => {
    const url = `${UK}ProcedureCode`;
    const info = tx.valueSetInfo(url);
    expect(info).toMatchObject({ complete: false, source: 'compose' });
    expect(info?.open[0]).toMatchObject({ system: SNOMED_SYSTEM });
    expect(tx.validateCode(url, SNOMED_SYSTEM, '71388002')).toMatchObject({ result: true, checked: true, display: 'Procedure' });
    const referral = tx.validateCode(url, SNOMED_SYSTEM, '871731000000106');
    expect(referral).toMatchObject({ result: false, checked: false });
    expect(referral.issues[0]).toMatchObject({ reason: 'not-expandable', severity: 'warning', code: 'not-supported' });
    expect(referral.message).toMatch(/descendantOrSelfOf 71388002/);
    // the SCTID check still runs first
    expect(tx.validateCode(url, SNOMED_SYSTEM, '1037741000000100').issues[0]?.reason).toBe('invalid-code');
    expect(tx.expand(url)?.expansion?.extension).toEqual([{ url: VALUESET_UNCLOSED, valueBoolean: true }]);
  });

  it("keeps an unclosed shipped SNOMED CT expansion open (SourceOfServiceRequest)", () => {
    const url = `${UK}SourceOfServiceRequest`;
    expect(tx.valueSetInfo(url)).toMatchObject({ complete: false, source: 'expansion', knownMembers: 57 });
    expect(tx.validateCode(url, SNOMED_SYSTEM, '183701009')).toMatchObject({ result: true, display: 'Dermatology self-referral' });
    expect(tx.validateCode(url, SNOMED_SYSTEM, '871731000000106').checked).toBe(false);
  });
});

describe("sp-bridge's own value sets", () => {
  it('are all completely expandable', () => {
    const own = tx.valueSetUrls().filter((u) => u.startsWith(SP));
    expect(own).toHaveLength(5);
    for (const url of own) expect(tx.valueSetInfo(url)).toMatchObject({ complete: true, source: 'compose' });
  });
});

describe('checkBinding', () => {
  const STATUS = `${R4}request-status|4.0.1`;

  it('required: members pass, non-members are errors, for code, Coding and CodeableConcept', () => {
    expect(tx.checkBinding(STATUS, 'required', 'active')).toEqual({ status: 'member', issues: [] });
    expect(tx.checkBinding(STATUS, 'required', 'open')).toMatchObject({
      status: 'not-member',
      issues: [{ severity: 'error', reason: 'not-in-value-set' }],
    });
    expect(tx.checkBinding(STATUS, 'required', { system: 'http://hl7.org/fhir/request-status', code: 'active' }).status).toBe('member');
    const cc = {
      coding: [
        { system: 'http://snomed.info/sct', code: '71388002' },
        { system: 'http://hl7.org/fhir/request-status', code: 'draft', display: 'Draft' },
      ],
    };
    expect(tx.checkBinding(STATUS, 'required', cc)).toEqual({ status: 'member', issues: [] });
    expect(tx.checkBinding(STATUS, 'required', { coding: [{ system: 'urn:x', code: 'a' }, { system: 'urn:y', code: 'b' }] })).toMatchObject({
      status: 'not-member',
      issues: [{ severity: 'error', reason: 'not-in-value-set', message: expect.stringMatching(/None of the codings/) }],
    });
  });

  it('extensible: non-members are warnings, text-only is fine; preferred: information; example: nothing', () => {
    const RT = `${R4}resource-types`;
    expect(tx.checkBinding(RT, 'extensible', { system: 'urn:x', code: 'Thing' }).issues).toEqual([
      expect.objectContaining({ severity: 'warning', reason: 'not-in-value-set' }),
    ]);
    expect(tx.checkBinding(RT, 'extensible', { text: 'a thing' })).toEqual({ status: 'not-member', issues: [] });
    expect(tx.checkBinding(RT, 'required', { text: 'a thing' }).issues).toEqual([expect.objectContaining({ severity: 'error', reason: 'no-code' })]);
    expect(tx.checkBinding(STATUS, 'preferred', 'open').issues).toEqual([expect.objectContaining({ severity: 'information' })]);
    expect(tx.checkBinding(STATUS, 'example', 'open').issues).toEqual([]);
  });

  it('an empty code is an error for a required binding (validateCode never throws for it)', () => {
    expect(tx.validateCode(STATUS, undefined, undefined)).toMatchObject({ result: false, checked: true, issues: [{ reason: 'no-code' }] });
    expect(tx.checkBinding(STATUS, 'required', '').issues).toEqual([expect.objectContaining({ severity: 'error', reason: 'no-code' })]);
    expect(tx.checkBinding(STATUS, 'extensible', '').issues).toEqual([expect.objectContaining({ severity: 'warning', reason: 'no-code' })]);
  });

  it('a Coding with no system is an error for a required binding', () => {
    expect(tx.checkBinding(STATUS, 'required', { code: 'active' }).issues).toEqual([
      expect.objectContaining({ severity: 'error', reason: 'no-system' }),
    ]);
  });

  it('unknown and not-expandable value sets: warning for required (configurable), information for extensible', () => {
    const unknown = tx.checkBinding(`${R4}all-languages`, 'required', 'en-GB');
    expect(unknown).toMatchObject({ status: 'cannot-check', issues: [{ severity: 'warning', reason: 'unknown-value-set' }] });
    expect(tx.checkBinding(`${R4}all-languages`, 'required', 'en-GB', { unknownValueSet: 'error' }).issues[0]?.severity).toBe('error');
    expect(tx.checkBinding(`${R4}identifier-type`, 'extensible', { coding: [{ system: 'urn:x', code: 'y' }] }).issues[0]?.severity).toBe(
      'information',
    );
    const mime = tx.checkBinding(`${R4}mimetypes|4.0.1`, 'required', 'text/plain');
    expect(mime).toMatchObject({ status: 'cannot-check', issues: [{ severity: 'warning', reason: 'not-expandable' }] });
    expect(tx.checkBinding(`${R4}mimetypes|4.0.1`, 'required', 'text/plain', { cannotCheck: 'information' }).issues[0]?.severity).toBe(
      'information',
    );
  });

  it('malformed SNOMED CT ids are errors even under a preferred binding; wrong displays are warnings', () => {
    const proc = `${UK}ProcedureCode`;
    expect(tx.checkBinding(proc, 'preferred', { system: SNOMED_SYSTEM, code: '1037741000000100' }).issues).toEqual([
      expect.objectContaining({ severity: 'error', reason: 'invalid-code' }),
    ]);
    expect(tx.checkBinding(proc, 'preferred', { system: SNOMED_SYSTEM, code: '871731000000106' })).toEqual({ status: 'cannot-check', issues: [] });
    expect(tx.checkBinding(proc, 'required', { system: SNOMED_SYSTEM, code: '71388002', display: 'Procedures' })).toMatchObject({
      status: 'member',
      issues: [{ severity: 'warning', reason: 'invalid-display' }],
    });
  });
});

describe('TerminologyResources (CodeSystem / ValueSet read and search)', () => {
  const ids = (type: string, params: [string, string][]): string[] => res.search(type, params).map((r) => r.id as string);

  it('serves every bundled resource under a stable id: its own', () => {
    for (const { resource } of tx.resources()) {
      expect(resourceId(resource)).toBe(resource.id);
      expect(res.read(resource.resourceType, resource.id as string)).toBe(resource);
    }
    expect(res.read('ValueSet', 'request-status')).toMatchObject({ url: `${R4}request-status` });
    expect(res.read('CodeSystem', 'request-status')).toMatchObject({ url: 'http://hl7.org/fhir/request-status' });
    expect(res.read('CodeSystem', 'sp-bridge-snomed-sp-subset')).toMatchObject({ url: SNOMED_SYSTEM });
    expect(res.read('ValueSet', 'nope')).toBeUndefined();
    expect(res.read('Patient', 'request-status')).toBeUndefined();
  });

  it('derives an id from the url when a resource has none', () => {
    expect(resourceId({ resourceType: 'ValueSet', status: 'active', url: 'https://example.org/fhir/ValueSet/my-codes' })).toBe('my-codes');
  });

  it('searches by url (with |version), name and title prefixes, status, version, _id, system, reference, code', () => {
    expect(ids('ValueSet', [['url', `${R4}request-status`]])).toEqual(['request-status']);
    expect(ids('ValueSet', [['url', `${R4}request-status|4.0.1`]])).toEqual(['request-status']);
    expect(ids('ValueSet', [['url', `${R4}request-status|9`]])).toEqual([]);
    expect(ids('CodeSystem', [['name', 'request']])).toEqual(['request-intent', 'request-priority', 'request-status']);
    expect(ids('CodeSystem', [['name:exact', 'RequestStatus']])).toEqual(['request-status']);
    expect(ids('ValueSet', [['title:contains', 'marital']])).toEqual(['UKCore-PersonMaritalStatusCode']);
    expect(ids('ValueSet', [['title', 'uk core eth']])).toEqual(['UKCore-EthnicCategory']);
    expect(ids('ValueSet', [['status', 'draft'], ['name', 'sp']]).length).toBeGreaterThan(0);
    expect(ids('CodeSystem', [['system', 'http://hl7.org/fhir/task-status']])).toEqual(['task-status']);
    expect(ids('CodeSystem', [['_id', 'task-status,task-intent']])).toEqual(['task-intent', 'task-status']);
    expect(ids('CodeSystem', [['version', '2018-08-12']])).toEqual(['v3-TimingEvent']);
    expect(ids('CodeSystem', [['code', 'original-order']])).toEqual(['request-intent']);
    expect(ids('ValueSet', [['reference', 'http://hl7.org/fhir/request-intent']])).toEqual(['care-plan-intent', 'request-intent', 'task-intent']);
    expect(ids('ValueSet', [])).toHaveLength(tx.valueSetUrls().length);
  });

  it('refuses unknown parameters and modifiers', () => {
    expect(() => res.search('ValueSet', [['_count', '10']])).toThrow(FhirError);
    try {
      res.search('CodeSystem', [['publisher', 'HL7']]);
    } catch (err) {
      expect((err as FhirError).code).toBe('SPB_UNKNOWN_SEARCH_PARAM');
    }
    expect(() => res.search('ValueSet', [['url:below', 'http://hl7.org']])).toThrow(/modifier/);
  });
});
