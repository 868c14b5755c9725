/**
 * SNOMED CT identifier (SCTID) checks, as described in shared/domain/social-prescribing.md section 1.7 (SNOMED CT
 * Technical Implementation Guide, "SCTID data structure"):
 *
 * - digits only, no leading zero, 6 to 18 digits;
 * - the last digit is a Verhoeff check digit over the whole string;
 * - the 2nd and 3rd digits from the right are the partition: 00 concept, 01 description, 02 relationship (short
 *   format, international), 10 concept, 11 description, 12 relationship (long format, extension);
 * - a long-format id carries a 7-digit namespace just before the partition, so it has at least 11 digits.
 *
 * SCTIDs are always strings here. UK extension ids have 15 to 18 digits, past Number.MAX_SAFE_INTEGER, and published
 * tables contain float-damaged ids (1037741000000100 for 1037741000000106); the check digit catches them.
 */

/** The dihedral group D5 multiplication table. */
const D: readonly (readonly number[])[] = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
  [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
  [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
  [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
  [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
  [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
  [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
  [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
  [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

/** The Verhoeff permutation: 0→1, 1→5, 2→7, 3→6, 4→2, 5→8, 6→3, 7→0, 8→9, 9→4. */
export const VERHOEFF_PERMUTATION: readonly number[] = Object.freeze([1, 5, 7, 6, 2, 8, 3, 0, 9, 4]);

/** The inverse table: INV[j] is the k with D[j][k] === 0. */
const INV: readonly number[] = D.map((row) => row.indexOf(0));

/**
 * The position table, generated from the permutation (P[k][x] = perm^k(x)) rather than typed by hand: a hand-typed
 * row 4 with two digits swapped is the pitfall the domain doc records.
 */
export const VERHOEFF_P: readonly (readonly number[])[] = (() => {
  const rows: number[][] = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]];
  for (let k = 1; k < 8; k++) rows.push(rows[k - 1].map((x) => VERHOEFF_PERMUTATION[x]));
  return rows.map((row) => Object.freeze(row));
})();

const DIGITS = /^\d+$/;

/** True iff `digits` (a non-empty string of ASCII digits) ends in a valid Verhoeff check digit. */
export function verhoeffValid(digits: string): boolean {
  if (!DIGITS.test(digits)) return false;
  let c = 0;
  for (let i = 0; i < digits.length; i++) {
    c = D[c][VERHOEFF_P[i % 8][digits.charCodeAt(digits.length - 1 - i) - 48]];
  }
  return c === 0;
}

/** The Verhoeff check digit to append to `payload` (a non-empty string of ASCII digits). */
export function verhoeffCheckDigit(payload: string): number {
  if (!DIGITS.test(payload)) throw new TypeError(`Verhoeff payload must be digits, got ${JSON.stringify(payload)}`);
  let c = 0;
  for (let i = 0; i < payload.length; i++) {
    c = D[c][VERHOEFF_P[(i + 1) % 8][payload.charCodeAt(payload.length - 1 - i) - 48]];
  }
  return INV[c];
}

export type SctidKind = 'concept' | 'description' | 'relationship';
export type SctidFormat = 'short' | 'long';

/** Why a string is not a usable SCTID; stable codes a validator can map to messages. */
export type SctidProblem =
  | 'not-a-string'
  | 'not-digits'
  | 'leading-zero'
  | 'length'
  | 'partition'
  | 'namespace'
  | 'check-digit'
  | 'wrong-kind';

export interface SctidInfo {
  readonly id: string;
  readonly kind: SctidKind;
  readonly format: SctidFormat;
  /** The two partition digits, e.g. "00" or "10". */
  readonly partition: string;
  /** The 7-digit namespace of a long-format id (e.g. "1000000" for the UK clinical extension). */
  readonly namespace?: string;
  /** The item identifier: the digits before the namespace (long format) or before the partition (short format). */
  readonly itemId: string;
}

export type SctidCheck =
  | { readonly valid: true; readonly info: SctidInfo }
  | { readonly valid: false; readonly problem: SctidProblem; readonly message: string };

const PARTITIONS: Readonly<Record<string, { kind: SctidKind; format: SctidFormat }>> = {
  '00': { kind: 'concept', format: 'short' },
  '01': { kind: 'description', format: 'short' },
  '02': { kind: 'relationship', format: 'short' },
  '10': { kind: 'concept', format: 'long' },
  '11': { kind: 'description', format: 'long' },
  '12': { kind: 'relationship', format: 'long' },
};

/** Well-known namespaces, for messages. */
export const SCT_NAMESPACES: Readonly<Record<string, string>> = {
  '1000000': 'UK clinical extension',
  '1000001': 'UK drug extension (dm+d)',
};

function fail(problem: SctidProblem, message: string): SctidCheck {
  return { valid: false, problem, message };
}

/**
 * Checks an SCTID of any kind (concept, description or relationship). Pass `expect` to also require a kind: for
 * `code` in a Coding use `checkSctid(code, 'concept')` or `isSnomedConceptId`.
 */
export function checkSctid(id: unknown, expect?: SctidKind): SctidCheck {
  if (typeof id !== 'string') return fail('not-a-string', 'SNOMED CT identifier must be a string');
  const shown = JSON.stringify(id);
  if (!DIGITS.test(id)) return fail('not-digits', `SNOMED CT identifier ${shown} must contain only the digits 0-9`);
  if (id[0] === '0') return fail('leading-zero', `SNOMED CT identifier ${shown} must not start with 0`);
  if (id.length < 6 || id.length > 18) {
    return fail('length', `SNOMED CT identifier ${shown} has ${id.length} digits; it must have 6 to 18`);
  }
  const partition = id.slice(-3, -1);
  const part = PARTITIONS[partition];
  if (!part) {
    return fail('partition', `SNOMED CT identifier ${shown} has partition ${partition}; it must be one of 00, 01, 02, 10, 11, 12`);
  }
  if (part.format === 'long' && id.length < 11) {
    return fail(
      'namespace',
      `SNOMED CT identifier ${shown} has long-format partition ${partition} but only ${id.length} digits; ` +
        'a long-format id needs a 7-digit namespace and at least 11 digits',
    );
  }
  if (!verhoeffValid(id)) {
    return fail(
      'check-digit',
      `SNOMED CT identifier ${shown} fails the Verhoeff check digit` +
        (id.length >= 15 && id.endsWith('00') ? ' (it may have been damaged by floating-point rounding; keep SCTIDs as strings)' : ''),
    );
  }
  if (expect && part.kind !== expect) {
    return fail('wrong-kind', `SNOMED CT identifier ${shown} is a ${part.kind} id (partition ${partition}), not a ${expect} id`);
  }
  const info: SctidInfo =
    part.format === 'long'
      ? { id, kind: part.kind, format: 'long', partition, namespace: id.slice(-10, -3), itemId: id.slice(0, -10) }
      : { id, kind: part.kind, format: 'short', partition, itemId: id.slice(0, -3) };
  return { valid: true, info };
}

/** True iff `id` is a well-formed SCTID of any kind. */
export function isValidSctid(id: unknown): id is string {
  return checkSctid(id).valid;
}

/** True iff `id` is a well-formed concept id (partition 00 or 10): what `Coding.code` in http://snomed.info/sct must be. */
export function isSnomedConceptId(id: unknown): id is string {
  return checkSctid(id, 'concept').valid;
}

/** True iff `id` is a well-formed description id (partition 01 or 11), e.g. for the coding-sctdescid extension. */
export function isSnomedDescriptionId(id: unknown): id is string {
  return checkSctid(id, 'description').valid;
}
