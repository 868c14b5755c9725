import { describeEachStore, type Harness, type Reply } from './support/harness';

const SCT = 'http://snomed.info/sct';
const STATUS_VS = 'http://hl7.org/fhir/ValueSet/request-status';
const STATUS_CS = 'http://hl7.org/fhir/request-status';
const INTENT_CS = 'http://hl7.org/fhir/request-intent';
const PROCEDURE_VS = 'https://fhir.hl7.org.uk/ValueSet/UKCore-ProcedureCode';
const REFERRAL_VS = 'https://fhir.sp-bridge.example/ValueSet/sp-referral';

type Param = fhir4.ParametersParameter;

const q = (params: Record<string, string>): string => new URLSearchParams(params).toString();
const body = (...parameter: Param[]): fhir4.Parameters => ({ resourceType: 'Parameters', parameter });
/** The output parameter `name` of a Parameters reply. */
const out = (r: Reply, name: string): Param | undefined => (r.json?.parameter as Param[] | undefined)?.find((p) => p.name === name);
const outs = (r: Reply, name: string): Param[] => ((r.json?.parameter ?? []) as Param[]).filter((p) => p.name === name);
const properties = (r: Reply): [string, unknown][] =>
  outs(r, 'property').map((p) => {
    const [code, value] = p.part ?? [];
    const v = Object.entries(value ?? {}).find(([k]) => k.startsWith('value'))?.[1];
    return [code?.valueCode as string, v];
  });

function expectOutcome(r: Reply, status: number, code: string, text?: RegExp): void {
  expect(r.status).toBe(status);
  expect(r.json?.resourceType).toBe('OperationOutcome');
  expect(r.json.issue[0]).toMatchObject({ severity: 'error', code });
  if (text) expect(r.json.issue[0].diagnostics).toMatch(text);
}

describeEachStore('terminology API', (h: Harness) => {
  describe('CodeSystem/$lookup', () => {
    it('GET: name, version, display, designations, parent and inactive properties', async () => {
      const r = await h.request('GET', `/CodeSystem/$lookup?${q({ system: SCT, code: '309013001' })}`);
      expect(r.status).toBe(200);
      expect(r.json.resourceType).toBe('Parameters');
      expect(out(r, 'name')?.valueString).toMatch(/SNOMED CT/);
      expect(out(r, 'version')?.valueString).toBe('http://snomed.info/sct/83821000000107');
      expect(out(r, 'display')?.valueString).toBe('Referred by person');
      expect(outs(r, 'designation')[0]?.part).toEqual(
        expect.arrayContaining([
          { name: 'use', valueCoding: expect.objectContaining({ system: SCT, code: '900000000000003001' }) },
          { name: 'value', valueString: 'Referred by person (finding)' },
        ]),
      );
      expect(properties(r)).toEqual([
        ['parent', '397663001'],
        ['inactive', false],
      ]);
    });

    it('POST with a coding, and the property parameter to pick what comes back', async () => {
      const r = await h.request(
        'POST',
        '/CodeSystem/$lookup',
        body({ name: 'coding', valueCoding: { system: SCT, code: '309013001' } }, { name: 'property', valueCode: 'inactive' }),
      );
      expect(r.status).toBe(200);
      expect(out(r, 'display')?.valueString).toBe('Referred by person');
      expect(properties(r)).toEqual([['inactive', false]]);
      expect(outs(r, 'designation')).toEqual([]);
    });

    it('GET coding=system|code, base R4 code systems, and the instance level', async () => {
      const viaCoding = await h.request('GET', `/CodeSystem/$lookup?${q({ coding: `${STATUS_CS}|active` })}`);
      expect(viaCoding.status).toBe(200);
      expect(out(viaCoding, 'display')?.valueString).toBe('Active');
      expect(out(viaCoding, 'version')?.valueString).toBe('4.0.1');
      const nested = await h.request('GET', '/CodeSystem/request-intent/$lookup?code=original-order');
      expect(nested.status).toBe(200);
      expect(out(nested, 'name')?.valueString).toBe('RequestIntent');
      expect(properties(nested)).toEqual(expect.arrayContaining([['parent', 'order']]));
    });

    it('400 for missing, repeated or contradictory parameters and malformed SNOMED CT ids', async () => {
      expectOutcome(await h.request('GET', '/CodeSystem/$lookup?code=309013001'), 400, 'required', /system/);
      expectOutcome(await h.request('GET', `/CodeSystem/$lookup?${q({ system: SCT })}`), 400, 'required', /code/);
      expectOutcome(await h.request('GET', `/CodeSystem/$lookup?system=${SCT}&code=309013001&code=397663001`), 400, 'invalid', /at most once/);
      expectOutcome(
        await h.request('POST', '/CodeSystem/$lookup', body({ name: 'code', valueCode: 'x' }, { name: 'coding', valueCoding: { system: SCT, code: 'y' } })),
        400,
        'invalid',
      );
      expectOutcome(await h.request('GET', `/CodeSystem/$lookup?${q({ coding: 'no-bar' })}`), 400, 'value');
      expectOutcome(await h.request('GET', `/CodeSystem/$lookup?${q({ system: SCT, code: '1037741000000100' })}`), 400, 'code-invalid', /Verhoeff/);
      expectOutcome(await h.request('POST', '/CodeSystem/$lookup', { resourceType: 'CodeSystem', status: 'active', content: 'complete' }), 400, 'structure');
    });

    it('404 for an unknown code system, version, code or CodeSystem id', async () => {
      expectOutcome(await h.request('GET', `/CodeSystem/$lookup?${q({ system: 'http://loinc.org', code: '1234-5' })}`), 404, 'not-found', /loinc/);
      expectOutcome(await h.request('GET', `/CodeSystem/$lookup?${q({ system: STATUS_CS, code: 'active', version: '5.0.0' })}`), 404, 'not-found', /4\.0\.1/);
      expectOutcome(await h.request('GET', `/CodeSystem/$lookup?${q({ system: SCT, code: '22298006' })}`), 404, 'not-found', /subset/);
      expectOutcome(await h.request('GET', `/CodeSystem/$lookup?${q({ system: STATUS_CS, code: 'open' })}`), 404, 'not-found', /not defined/);
      expectOutcome(await h.request('GET', '/CodeSystem/nope/$lookup?code=x'), 404, 'not-found');
    });
  });

  describe('ValueSet/$validate-code', () => {
    it('GET with a |4.0.1 canonical as bindings give it', async () => {
      const r = await h.request('GET', `/ValueSet/$validate-code?${q({ url: `${STATUS_VS}|4.0.1`, system: STATUS_CS, code: 'active' })}`);
      expect(r.status).toBe(200);
      expect(out(r, 'result')?.valueBoolean).toBe(true);
      expect(out(r, 'display')?.valueString).toBe('Active');
      expect(out(r, 'message')).toBeUndefined();
    });

    it('answers result=false (200) for a code outside the value set, with a message', async () => {
      const r = await h.request('GET', `/ValueSet/$validate-code?${q({ url: REFERRAL_VS, system: SCT, code: '267076002' })}`);
      expect(r.status).toBe(200);
      expect(out(r, 'result')?.valueBoolean).toBe(false);
      expect(out(r, 'message')?.valueString).toMatch(/Feeling lonely.*not in value set/);
      expect(out(r, 'issues')?.resource).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'code-invalid' }] });
    });

    it('POST with a coding, a codeableConcept, and a wrong display (a warning, result stays true)', async () => {
      const coding = await h.request(
        'POST',
        '/ValueSet/$validate-code',
        body({ name: 'url', valueUri: REFERRAL_VS }, { name: 'coding', valueCoding: { system: SCT, code: '871731000000106' } }),
      );
      expect(out(coding, 'result')?.valueBoolean).toBe(true);
      expect(out(coding, 'display')?.valueString).toBe('Referral to social prescribing service');

      const concept = await h.request(
        'POST',
        '/ValueSet/$validate-code',
        body(
          { name: 'url', valueUri: STATUS_VS },
          { name: 'codeableConcept', valueCodeableConcept: { coding: [{ system: 'urn:x', code: 'a' }, { system: STATUS_CS, code: 'on-hold' }] } },
        ),
      );
      expect(out(concept, 'result')?.valueBoolean).toBe(true);
      expect(out(concept, 'display')?.valueString).toBe('On Hold');

      const none = await h.request(
        'POST',
        '/ValueSet/$validate-code',
        body({ name: 'url', valueUri: STATUS_VS }, { name: 'codeableConcept', valueCodeableConcept: { coding: [{ system: STATUS_CS, code: 'open' }] } }),
      );
      expect(out(none, 'result')?.valueBoolean).toBe(false);

      const display = await h.request(
        'POST',
        '/ValueSet/$validate-code',
        body(
          { name: 'url', valueUri: REFERRAL_VS },
          { name: 'code', valueCode: '871731000000106' },
          { name: 'system', valueUri: SCT },
          { name: 'display', valueString: 'Social prescribing referral' },
        ),
      );
      expect(out(display, 'result')?.valueBoolean).toBe(true);
      expect(out(display, 'message')?.valueString).toMatch(/does not match the preferred term/);
    });

    it('at instance level, inferring the system of a bare code', async () => {
      const r = await h.request('GET', '/ValueSet/request-status/$validate-code?code=completed');
      expect(r.status).toBe(200);
      expect(out(r, 'result')?.valueBoolean).toBe(true);
      const wrong = await h.request('GET', `/ValueSet/request-status/$validate-code?${q({ url: REFERRAL_VS, code: 'active' })}`);
      expectOutcome(wrong, 400, 'invalid', /not the url of ValueSet\/request-status/);
    });

    it('says it cannot check, rather than "not in value set", where the value set cannot be expanded locally', async () => {
      const r = await h.request('GET', `/ValueSet/UKCore-ProcedureCode/$validate-code?${q({ system: SCT, code: '871731000000106' })}`);
      expect(r.status).toBe(200);
      expect(out(r, 'result')?.valueBoolean).toBe(false);
      expect(out(r, 'message')?.valueString).toMatch(/^Cannot check .*descendantOrSelfOf 71388002/);
      expect(out(r, 'issues')?.resource).toMatchObject({ issue: [{ severity: 'warning', code: 'not-supported' }] });
      const anchor = await h.request('GET', `/ValueSet/$validate-code?${q({ url: PROCEDURE_VS, system: SCT, code: '71388002' })}`);
      expect(out(anchor, 'result')?.valueBoolean).toBe(true);
    });

    it('400 for bad input, 404 for an unknown value set or version', async () => {
      expectOutcome(await h.request('GET', `/ValueSet/$validate-code?${q({ system: STATUS_CS, code: 'active' })}`), 400, 'required', /url/);
      expectOutcome(await h.request('GET', `/ValueSet/$validate-code?${q({ url: STATUS_VS })}`), 400, 'required', /code/);
      expectOutcome(
        await h.request('GET', `/ValueSet/$validate-code?${q({ url: STATUS_VS, code: 'active', coding: `${STATUS_CS}|active` })}`),
        400,
        'invalid',
        /only one/,
      );
      expectOutcome(
        await h.request('GET', `/ValueSet/$validate-code?${q({ url: STATUS_VS, codeableConcept: 'active' })}`),
        400,
        'not-supported',
        /POST/,
      );
      expectOutcome(
        await h.request('POST', '/ValueSet/$validate-code', body({ name: 'url', valueUri: STATUS_VS }, { name: 'coding', valueString: 'active' })),
        400,
        'value',
      );
      expectOutcome(await h.request('GET', `/ValueSet/$validate-code?${q({ url: 'urn:x:nope', code: 'a' })}`), 404, 'not-found', /urn:x:nope/);
      expectOutcome(
        await h.request('GET', `/ValueSet/$validate-code?${q({ url: STATUS_VS, valueSetVersion: '3.0.2', code: 'active' })}`),
        404,
        'not-found',
        /bundled: 4\.0\.1/,
      );
      expectOutcome(await h.request('GET', '/ValueSet/nope/$validate-code?code=a'), 404, 'not-found');
    });
  });

  describe('CodeSystem/$validate-code', () => {
    it('checks a code against a code system, GET and POST, type and instance level', async () => {
      const ok = await h.request('GET', `/CodeSystem/$validate-code?${q({ url: STATUS_CS, code: 'draft' })}`);
      expect(out(ok, 'result')?.valueBoolean).toBe(true);
      const instance = await h.request('POST', '/CodeSystem/request-status/$validate-code', body({ name: 'code', valueCode: 'open' }));
      expect(out(instance, 'result')?.valueBoolean).toBe(false);
      expect(out(instance, 'message')?.valueString).toMatch(/Unknown code/);
      const fragment = await h.request('GET', `/CodeSystem/$validate-code?${q({ url: SCT, code: '22298006' })}`);
      expect(out(fragment, 'result')?.valueBoolean).toBe(false);
      expect(out(fragment, 'message')?.valueString).toMatch(/^Cannot check/);
      expectOutcome(await h.request('GET', '/CodeSystem/$validate-code?code=draft'), 400, 'required', /url/);
      expectOutcome(await h.request('GET', `/CodeSystem/$validate-code?${q({ url: 'urn:x:nope', code: 'a' })}`), 404, 'not-found');
    });
  });

  describe('ValueSet/$expand', () => {
    it('GET by url: the whole value set, with total and offset', async () => {
      const r = await h.request('GET', `/ValueSet/$expand?${q({ url: `${STATUS_VS}|4.0.1` })}`);
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({ resourceType: 'ValueSet', id: 'request-status', url: STATUS_VS, expansion: { total: 7, offset: 0 } });
      expect(r.json.compose).toBeUndefined();
      expect(r.json.expansion.contains.map((c: fhir4.ValueSetExpansionContains) => c.code)).toContain('active');
      expect(r.json.expansion.contains[0]).toEqual({ system: STATUS_CS, version: '4.0.1', code: 'draft', display: 'Draft' });
    });

    it('pages with count and offset, filters, and works at instance level and by POST', async () => {
      const page = await h.request('GET', `/ValueSet/request-status/$expand?count=2&offset=1`);
      expect(page.json.expansion).toMatchObject({ total: 7, offset: 1 });
      expect(page.json.expansion.contains.map((c: fhir4.ValueSetExpansionContains) => c.code)).toEqual(['active', 'on-hold']);
      const filtered = await h.request('GET', `/ValueSet/$expand?${q({ url: STATUS_VS, filter: 'entered' })}`);
      expect(filtered.json.expansion.contains.map((c: fhir4.ValueSetExpansionContains) => c.code)).toEqual(['entered-in-error']);
      const posted = await h.request(
        'POST',
        '/ValueSet/$expand',
        body({ name: 'url', valueUri: REFERRAL_VS }, { name: 'count', valueInteger: 1 }, { name: 'filter', valueString: 'declined' }),
      );
      expect(posted.status).toBe(200);
      expect(posted.json.expansion).toMatchObject({ total: 1, contains: [{ code: '871711000000103' }] });
      const uk = await h.request('POST', '/ValueSet/UKCore-BirthSex/$expand', body());
      expect(uk.json.expansion.total).toBe(4);
    });

    it('marks the expansion of a value set it cannot fully expand as unclosed', async () => {
      const r = await h.request('GET', '/ValueSet/UKCore-ProcedureCode/$expand');
      expect(r.status).toBe(200);
      expect(r.json.expansion.extension).toEqual([{ url: 'http://hl7.org/fhir/StructureDefinition/valueset-unclosed', valueBoolean: true }]);
      expect(r.json.expansion.contains.map((c: fhir4.ValueSetExpansionContains) => c.code)).toEqual(['71388002', '129125009']);
    });

    it('400 for a bad count or offset or a missing url, 404 for an unknown value set', async () => {
      expectOutcome(await h.request('GET', `/ValueSet/$expand?${q({ url: STATUS_VS, count: '-1' })}`), 400, 'value', /count/);
      expectOutcome(await h.request('GET', `/ValueSet/$expand?${q({ url: STATUS_VS, count: 'ten' })}`), 400, 'value', /count/);
      expectOutcome(await h.request('GET', `/ValueSet/$expand?${q({ url: STATUS_VS, offset: '1.5' })}`), 400, 'value', /offset/);
      expectOutcome(
        await h.request('POST', '/ValueSet/$expand', body({ name: 'url', valueUri: STATUS_VS }, { name: 'count', valueInteger: -3 })),
        400,
        'value',
      );
      expectOutcome(await h.request('GET', '/ValueSet/$expand?count=1'), 400, 'required', /url/);
      expectOutcome(
        await h.request('POST', '/ValueSet/$expand', body({ name: 'valueSet', resource: { resourceType: 'ValueSet', status: 'draft' } as fhir4.ValueSet })),
        400,
        'not-supported',
      );
      expectOutcome(await h.request('GET', `/ValueSet/$expand?${q({ url: 'http://hl7.org/fhir/ValueSet/all-languages' })}`), 404, 'not-found');
      expectOutcome(await h.request('GET', '/ValueSet/nope/$expand'), 404, 'not-found');
    });
  });

  describe('CodeSystem/$subsumes', () => {
    it('GET and POST over the SNOMED CT fragment and a complete R4 hierarchy', async () => {
      const get = (a: string, b: string, system = SCT) => h.request('GET', `/CodeSystem/$subsumes?${q({ system, codeA: a, codeB: b })}`);
      expect(out(await get('397663001', '309013001'), 'outcome')?.valueCode).toBe('subsumes');
      expect(out(await get('309013001', '397663001'), 'outcome')?.valueCode).toBe('subsumed-by');
      expect(out(await get('309013001', '309013001'), 'outcome')?.valueCode).toBe('equivalent');
      expect(out(await get('order', 'original-order', INTENT_CS), 'outcome')?.valueCode).toBe('subsumes');
      expect(out(await get('plan', 'order', INTENT_CS), 'outcome')?.valueCode).toBe('not-subsumed');
      const posted = await h.request(
        'POST',
        '/CodeSystem/$subsumes',
        body({ name: 'codingA', valueCoding: { system: SCT, code: '397663001' } }, { name: 'codingB', valueCoding: { system: SCT, code: '309013001' } }),
      );
      expect(posted.status).toBe(200);
      expect(out(posted, 'outcome')?.valueCode).toBe('subsumes');
      const instance = await h.request('GET', '/CodeSystem/request-intent/$subsumes?codeA=original-order&codeB=order');
      expect(out(instance, 'outcome')?.valueCode).toBe('subsumed-by');
    });

    it('422 when the fragment cannot tell; 400 for bad input; 404 for unknown systems and codes', async () => {
      expectOutcome(
        await h.request('GET', `/CodeSystem/$subsumes?${q({ system: SCT, codeA: '397663001', codeB: '306098008' })}`),
        422,
        'not-supported',
        /Cannot tell/,
      );
      expectOutcome(await h.request('GET', `/CodeSystem/$subsumes?${q({ system: SCT, codeA: '397663001' })}`), 400, 'required', /codeB/);
      expectOutcome(await h.request('GET', `/CodeSystem/$subsumes?${q({ codeA: 'order', codeB: 'plan' })}`), 400, 'required', /system/);
      expectOutcome(
        await h.request(
          'POST',
          '/CodeSystem/$subsumes',
          body({ name: 'codingA', valueCoding: { system: SCT, code: '397663001' } }, { name: 'codingB', valueCoding: { system: INTENT_CS, code: 'order' } }),
        ),
        400,
        'invalid',
        /one code system/,
      );
      expectOutcome(await h.request('GET', `/CodeSystem/$subsumes?${q({ system: SCT, codeA: '397663001', codeB: '1091081000000100' })}`), 400, 'code-invalid');
      expectOutcome(await h.request('GET', `/CodeSystem/$subsumes?${q({ system: 'http://loinc.org', codeA: 'a', codeB: 'b' })}`), 404, 'not-found');
      expectOutcome(await h.request('GET', `/CodeSystem/$subsumes?${q({ system: SCT, codeA: '397663001', codeB: '22298006' })}`), 404, 'not-found');
    });
  });

  describe('operations and methods', () => {
    it('refuses methods an operation does not take', async () => {
      expect((await h.request('DELETE', `/ValueSet/$expand?${q({ url: STATUS_VS })}`)).status).toBe(405);
      expect((await h.request('GET', '/ValueSet/request-status/_history/1/$expand')).status).toBe(404);
      expect((await h.request('GET', '/$expand')).status).toBe(404);
    });
  });

  describe('CodeSystem and ValueSet read and search', () => {
    it('reads bundled resources by id', async () => {
      const cs = await h.request('GET', '/CodeSystem/request-status');
      expect(cs.status).toBe(200);
      expect(cs.json).toMatchObject({ resourceType: 'CodeSystem', id: 'request-status', url: STATUS_CS, content: 'complete' });
      const vs = await h.request('GET', '/ValueSet/UKCore-ProcedureCode');
      expect(vs.json).toMatchObject({ resourceType: 'ValueSet', url: PROCEDURE_VS });
      const own = await h.request('GET', '/ValueSet/sp-referral');
      expect(own.json.url).toBe(REFERRAL_VS);
      expectOutcome(await h.request('GET', '/ValueSet/nope'), 404, 'not-found');
    });

    it('searches by url (with version), system, title, name, status, version and _id', async () => {
      const ids = async (url: string): Promise<string[]> => {
        const r = await h.request('GET', url);
        expect(r.status).toBe(200);
        expect(r.json).toMatchObject({ resourceType: 'Bundle', type: 'searchset' });
        expect(r.json.total).toBe((r.json.entry ?? []).length);
        return (r.json.entry ?? []).map((e: fhir4.BundleEntry) => e.resource?.id);
      };
      expect(await ids(`/ValueSet?${q({ url: `${STATUS_VS}|4.0.1` })}`)).toEqual(['request-status']);
      expect(await ids(`/CodeSystem?${q({ system: INTENT_CS })}`)).toEqual(['request-intent']);
      expect(await ids(`/ValueSet?${q({ title: 'UK Core Eth' })}`)).toEqual(['UKCore-EthnicCategory']);
      expect(await ids(`/CodeSystem?${q({ name: 'request' })}`)).toEqual(['request-intent', 'request-priority', 'request-status']);
      expect(await ids(`/CodeSystem?${q({ version: '2018-08-12' })}`)).toEqual(['v3-TimingEvent']);
      expect(await ids(`/ValueSet?${q({ _id: 'sp-referral,sp-needs' })}`)).toEqual(['sp-needs', 'sp-referral']);
      const active = await ids(`/ValueSet?${q({ status: 'active', name: 'UKCore' })}`);
      expect(active).toContain('UKCore-NHSNumberVerificationStatus');
      expect(await ids(`/ValueSet?${q({ url: 'urn:x:none' })}`)).toEqual([]);
      const self = await h.request('GET', `/CodeSystem?${q({ system: INTENT_CS })}`);
      expect(self.json.entry[0].fullUrl).toMatch(/\/CodeSystem\/request-intent$/);
    });

    it('refuses unknown search parameters and writes', async () => {
      expectOutcome(await h.request('GET', '/ValueSet?publisher=HL7'), 400, 'not-supported', /publisher/);
      expectOutcome(await h.request('GET', '/CodeSystem?_count=5'), 400, 'not-supported');
      expectOutcome(await h.request('GET', '/ValueSet?name:below=x'), 400, 'invalid', /modifier/);
      expect((await h.request('PUT', '/ValueSet/request-status', { resourceType: 'ValueSet', id: 'request-status', status: 'active' })).status).toBe(405);
      expect((await h.request('POST', '/CodeSystem', { resourceType: 'CodeSystem', status: 'active', content: 'complete' })).status).toBe(405);
    });
  });
});
