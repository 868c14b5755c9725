/**
 * NHS number Modulus 11 check (NHS Data Dictionary; restated in NHSDigital/mesh-api-specification
 * scripts/nhs_number_utils.py and shared/domain/social-prescribing.md section 3.3):
 *
 * 1. 10 digits. Multiply digits 1-9 by the weights 10, 9, ..., 2 and sum the products.
 * 2. check = 11 - (sum mod 11). 11 becomes 0. 10 means the number is invalid (no NHS number has that stem).
 * 3. The check must equal digit 10.
 *
 * The identifier system is https://fhir.nhs.uk/Id/nhs-number.
 */

export const NHS_NUMBER_SYSTEM = 'https://fhir.nhs.uk/Id/nhs-number';

export type NhsNumberProblem = 'not-a-string' | 'format' | 'no-check-digit' | 'check-digit';

export type NhsNumberCheck =
  | { readonly valid: true; readonly value: string }
  | { readonly valid: false; readonly problem: NhsNumberProblem; readonly message: string };

/**
 * Removes the spaces people type or print ("943 476 5919" -> "9434765919") and returns the 10 digits, or undefined
 * if what is left is not exactly 10 ASCII digits. It does not check the check digit.
 */
export function normaliseNhsNumber(input: string): string | undefined {
  const compact = input.replace(/[ \t\u00a0]+/g, '');
  return /^\d{10}$/.test(compact) ? compact : undefined;
}

/**
 * The Modulus 11 check digit for the first 9 digits of an NHS number, or undefined when the stem gives 10 (no valid
 * NHS number starts with it).
 */
export function nhsNumberCheckDigit(first9: string): number | undefined {
  if (!/^\d{9}$/.test(first9)) throw new TypeError(`an NHS number stem is 9 digits, got ${JSON.stringify(first9)}`);
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += (first9.charCodeAt(i) - 48) * (10 - i);
  const check = 11 - (sum % 11);
  if (check === 11) return 0;
  if (check === 10) return undefined;
  return check;
}

/** Checks an NHS number, accepting spaces ("943 476 5919"). On success `value` is the 10-digit form. */
export function checkNhsNumber(input: unknown): NhsNumberCheck {
  if (typeof input !== 'string') return { valid: false, problem: 'not-a-string', message: 'NHS number must be a string' };
  const value = normaliseNhsNumber(input);
  if (value === undefined) {
    return { valid: false, problem: 'format', message: 'NHS number must be 10 digits (spaces allowed)' };
  }
  const check = nhsNumberCheckDigit(value.slice(0, 9));
  if (check === undefined) {
    return {
      valid: false,
      problem: 'no-check-digit',
      message: 'NHS number is invalid: its first 9 digits give a Modulus 11 check of 10',
    };
  }
  if (check !== value.charCodeAt(9) - 48) {
    return { valid: false, problem: 'check-digit', message: 'NHS number fails the Modulus 11 check digit' };
  }
  return { valid: true, value };
}

/** True iff `input` is a valid NHS number (spaces allowed). */
export function isValidNhsNumber(input: unknown): boolean {
  return checkNhsNumber(input).valid;
}
