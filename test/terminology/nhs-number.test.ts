import {
  NHS_NUMBER_SYSTEM,
  checkNhsNumber,
  isValidNhsNumber,
  nhsNumberCheckDigit,
  normaliseNhsNumber,
} from '../../src/terminology/nhs-number';

describe('NHS number Modulus 11', () => {
  it.each(['9000000009', '9434765919', '9912003888', '9476719931', '4010232137'])('accepts %s', (n) => {
    expect(isValidNhsNumber(n)).toBe(true);
    expect(checkNhsNumber(n)).toEqual({ valid: true, value: n });
  });

  it('accepts the spaced form people type and returns the 10 digits', () => {
    expect(normaliseNhsNumber('943 476 5919')).toBe('9434765919');
    expect(checkNhsNumber('943 476 5919')).toEqual({ valid: true, value: '9434765919' });
    expect(checkNhsNumber(' 900 000 0009 ')).toEqual({ valid: true, value: '9000000009' });
  });

  it.each([
    ['9434765918', 'check-digit'], // last digit mistyped
    ['9434765929', 'check-digit'], // one digit mistyped
    ['4934765919', 'check-digit'], // first two digits swapped
    ['9344765919', 'no-check-digit'], // adjacent digits swapped, and the new stem gives 10
    ['9434765991', 'check-digit'], // last two swapped
    ['1234567890', 'no-check-digit'], // the domain doc's failing example: stem 123456789 gives 10
    ['1000000010', 'no-check-digit'], // stem 100000001 gives 10: no valid number starts with it
    ['943476591', 'format'],
    ['94347659190', 'format'],
    ['943-476-5919', 'format'],
    ['943476591X', 'format'],
    ['', 'format'],
  ])('rejects %j (%s)', (n, problem) => {
    const check = checkNhsNumber(n);
    expect(check.valid).toBe(false);
    if (!check.valid) expect(check.problem).toBe(problem);
  });

  it('rejects non-strings and never echoes the number in messages (PHI)', () => {
    expect(checkNhsNumber(9434765919)).toMatchObject({ valid: false, problem: 'not-a-string' });
    const check = checkNhsNumber('9434765918');
    expect(check.valid).toBe(false);
    if (!check.valid) expect(check.message).not.toContain('943');
  });

  it('computes check digits, with 11 -> 0 and 10 -> none', () => {
    expect(nhsNumberCheckDigit('943476591')).toBe(9);
    expect(nhsNumberCheckDigit('900000000')).toBe(9);
    expect(nhsNumberCheckDigit('000000000')).toBe(0); // 11 - 0 = 11 -> 0
    expect(nhsNumberCheckDigit('100000001')).toBeUndefined();
    expect(() => nhsNumberCheckDigit('94347659')).toThrow(TypeError);
  });

  it('exports the identifier system', () => {
    expect(NHS_NUMBER_SYSTEM).toBe('https://fhir.nhs.uk/Id/nhs-number');
  });
});
