import {
  VERHOEFF_P,
  VERHOEFF_PERMUTATION,
  checkSctid,
  isSnomedConceptId,
  isSnomedDescriptionId,
  isValidSctid,
  verhoeffCheckDigit,
  verhoeffValid,
} from '../../src/terminology/sctid';

// Well-known ids named in shared/domain/social-prescribing.md section 1.7.
const KNOWN_VALID = ['138875005', '404684003', '71388002', '900000000000207008', '871731000000106'];
// Float-damaged ids found in published NHS reference tables (section 1.7).
const FLOAT_CORRUPTED = ['1037741000000100', '1091081000000100', '198881000000000'];

describe('Verhoeff', () => {
  it('builds the position table from the permutation, including the row the domain doc warns about', () => {
    expect(VERHOEFF_P).toHaveLength(8);
    expect(VERHOEFF_P[0]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(VERHOEFF_P[1]).toEqual(VERHOEFF_PERMUTATION);
    expect(VERHOEFF_P[4]).toEqual([9, 4, 5, 3, 1, 2, 6, 8, 7, 0]);
    expect(VERHOEFF_P[4]).not.toEqual([9, 4, 5, 3, 1, 2, 7, 6, 8, 0]);
    // The permutation has order 8, so the table wraps.
    expect(VERHOEFF_P[7].map((x) => VERHOEFF_PERMUTATION[x])).toEqual(VERHOEFF_P[0]);
  });

  it.each(KNOWN_VALID)('accepts the known id %s', (id) => {
    expect(verhoeffValid(id)).toBe(true);
  });

  it.each(FLOAT_CORRUPTED)('rejects the float-corrupted id %s', (id) => {
    expect(verhoeffValid(id)).toBe(false);
  });

  it('computes the check digit of known ids', () => {
    for (const id of KNOWN_VALID) expect(verhoeffCheckDigit(id.slice(0, -1))).toBe(Number(id.at(-1)));
    expect(verhoeffCheckDigit('103774100000010')).toBe(6);
    expect(verhoeffCheckDigit('109108100000010')).toBe(3);
  });

  it('catches every single-digit change and adjacent transposition of a known id', () => {
    const id = '871731000000106';
    for (let i = 0; i < id.length; i++) {
      for (let d = 0; d <= 9; d++) {
        const changed = id.slice(0, i) + d + id.slice(i + 1);
        if (changed !== id) expect(verhoeffValid(changed)).toBe(false);
      }
      if (i + 1 < id.length && id[i] !== id[i + 1]) {
        expect(verhoeffValid(id.slice(0, i) + id[i + 1] + id[i] + id.slice(i + 2))).toBe(false);
      }
    }
  });

  it('rejects non-digits rather than treating them as numbers', () => {
    expect(verhoeffValid('')).toBe(false);
    expect(verhoeffValid('7138800a')).toBe(false);
    expect(() => verhoeffCheckDigit('12x')).toThrow(TypeError);
  });
});

describe('checkSctid', () => {
  it.each(KNOWN_VALID)('accepts %s as a concept id', (id) => {
    expect(isSnomedConceptId(id)).toBe(true);
  });

  it('describes short- and long-format ids', () => {
    expect(checkSctid('71388002')).toEqual({
      valid: true,
      info: { id: '71388002', kind: 'concept', format: 'short', partition: '00', itemId: '71388' },
    });
    expect(checkSctid('871731000000106')).toEqual({
      valid: true,
      info: { id: '871731000000106', kind: 'concept', format: 'long', partition: '10', namespace: '1000000', itemId: '87173' },
    });
  });

  it.each(FLOAT_CORRUPTED)('rejects %s with a check-digit problem and a hint about floats', (id) => {
    const check = checkSctid(id, 'concept');
    expect(check.valid).toBe(false);
    if (!check.valid) {
      expect(check.problem).toBe('check-digit');
      expect(check.message).toContain(id);
      expect(check.message).toMatch(/floating-point/);
    }
  });

  it.each([
    ['12345', 'length'],
    ['1234567890123456789', 'length'],
    ['0138875005', 'leading-zero'],
    ['138875005 ', 'not-digits'],
    ['1.38875005e8', 'not-digits'],
    ['', 'not-digits'],
  ])('rejects %j (%s)', (id, problem) => {
    const check = checkSctid(id);
    expect(check.valid).toBe(false);
    if (!check.valid) expect(check.problem).toBe(problem);
  });

  it('rejects numbers: SCTIDs are strings', () => {
    const check = checkSctid(138875005);
    expect(check.valid).toBe(false);
    if (!check.valid) expect(check.problem).toBe('not-a-string');
  });

  it('rejects partitions other than 00, 01, 02, 10, 11, 12 even with a good check digit', () => {
    const payload = '12345' + '03';
    const id = payload + verhoeffCheckDigit(payload);
    expect(verhoeffValid(id)).toBe(true);
    const check = checkSctid(id);
    expect(check.valid).toBe(false);
    if (!check.valid) expect(check.problem).toBe('partition');
  });

  it('needs a 7-digit namespace (11+ digits) for long-format partitions', () => {
    const short = '1234567' + '10';
    const tooShort = short + verhoeffCheckDigit(short); // 10 digits
    expect(verhoeffValid(tooShort)).toBe(true);
    const check = checkSctid(tooShort);
    expect(check.valid).toBe(false);
    if (!check.valid) expect(check.problem).toBe('namespace');

    const ok = '1' + '1000000' + '10';
    expect(checkSctid(ok + verhoeffCheckDigit(ok))).toMatchObject({ valid: true, info: { namespace: '1000000', itemId: '1' } });
  });

  it('tells concept ids from description ids', () => {
    const desc = '751689013'; // partition 01, good check digit
    expect(isValidSctid(desc)).toBe(true);
    expect(isSnomedDescriptionId(desc)).toBe(true);
    expect(isSnomedConceptId(desc)).toBe(false);
    const check = checkSctid(desc, 'concept');
    expect(check.valid).toBe(false);
    if (!check.valid) expect(check.problem).toBe('wrong-kind');
    const longDesc = '99' + '1000000' + '11';
    expect(isSnomedDescriptionId(longDesc + verhoeffCheckDigit(longDesc))).toBe(true);
    expect(isSnomedConceptId('871731000000106')).toBe(true);
    expect(isSnomedDescriptionId('871731000000106')).toBe(false);
  });

  it('explains why JS numbers must not carry SCTIDs', () => {
    const id = '900000000000207008';
    expect(Number(id) > Number.MAX_SAFE_INTEGER).toBe(true);
    expect(String(Number(id))).not.toBe(id);
    expect(isSnomedConceptId(String(Number(id)))).toBe(false);
  });
});
