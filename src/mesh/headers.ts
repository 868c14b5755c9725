/**
 * MESH control headers: length limits and content rules as mesh-sandbox enforces them (control characters
 * -> 06 MalformedControlFile; mex-To / mex-WorkflowID / mex-Content-Checksum must not be URLs), and the
 * `GPPROVIDER_<NHSNo>_<DDMMYYYY>_<Surname>` address that routes to the patient's registered practice.
 */
import { isValidNhsNumber, normaliseNhsNumber } from '../terminology/nhs-number';

/** Maximum lengths (mesh-sandbox `mex_headers.py`). */
export const MEX_HEADER_LIMITS: Record<string, number> = {
  'mex-to': 100,
  'mex-workflowid': 300,
  'mex-chunk-range': 20,
  'mex-subject': 500,
  'mex-localid': 300,
  'mex-partnerid': 500,
  'mex-filename': 300,
  'mex-content-checksum': 100,
  'mex-content-type': 100,
  'mex-content-encrypted': 1,
  'mex-content-compressed': 1,
};

const CONTROL_CHARS = /[\x00-\x1f\x7f]/;
const URL_LIKE = /^https?:\/\//i;
const NO_URL_HEADERS = new Set(['mex-to', 'mex-workflowid', 'mex-content-checksum']);

export class MeshHeaderError extends Error {
  readonly code = 'MESH_HEADER_INVALID';
  constructor(
    readonly header: string,
    message: string,
  ) {
    super(`${header}: ${message}`);
    this.name = 'MeshHeaderError';
  }
}

/** Returns a problem description for a mex header value, or undefined if it is acceptable. */
export function mexHeaderProblem(name: string, value: string): string | undefined {
  const key = name.toLowerCase();
  if (CONTROL_CHARS.test(value)) return 'must not contain control characters';
  if (/[^\x20-\x7e]/.test(value)) return 'must be printable ASCII';
  const max = MEX_HEADER_LIMITS[key];
  if (max !== undefined && value.length > max) return `longer than ${max} characters`;
  if (NO_URL_HEADERS.has(key) && URL_LIKE.test(value)) return 'must not be a URL';
  if (key === 'mex-content-checksum' && !/^[A-Za-z0-9\s:\-/]*$/.test(value)) return 'has characters outside [A-Za-z0-9 :-/]';
  if ((key === 'mex-content-encrypted' || key === 'mex-content-compressed') && !/^[YN]$/.test(value)) return 'must be Y or N';
  if (key === 'mex-chunk-range' && !/^\d+:\d+$/.test(value)) return 'must be <n>:<total>';
  return undefined;
}

export function assertMexHeader(name: string, value: string): void {
  const problem = mexHeaderProblem(name, value);
  if (problem) throw new MeshHeaderError(name, problem);
}

/** Strips control characters and collapses whitespace (for free text such as the subject). */
export function sanitiseMexText(value: string, max: number): string {
  return value
    .replace(/[\x00-\x1f\x7f]+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, max);
}

export interface GpProviderPatient {
  nhsNumber: string;
  /** FHIR date `YYYY-MM-DD`. */
  birthDate: string;
  surname: string;
}

/**
 * `GPPROVIDER_<NHSNo>_<DDMMYYYY>_<Surname>`: routes to the practice where the patient is registered.
 * Throws MeshHeaderError for an invalid NHS number, a partial or impossible birth date, or a surname that
 * leaves nothing after removing characters MESH cannot carry.
 */
export function gpProviderAddress(patient: GpProviderPatient): string {
  const nhs = normaliseNhsNumber(patient.nhsNumber);
  if (!nhs || !isValidNhsNumber(nhs)) throw new MeshHeaderError('mex-to', 'NHS number is not valid');
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(patient.birthDate ?? '');
  if (!m) throw new MeshHeaderError('mex-to', 'birth date must be a full date YYYY-MM-DD');
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
  if (d.getUTCFullYear() !== +m[1] || d.getUTCMonth() !== +m[2] - 1 || d.getUTCDate() !== +m[3]) {
    throw new MeshHeaderError('mex-to', 'birth date is not a real date');
  }
  if (CONTROL_CHARS.test(patient.surname ?? '')) throw new MeshHeaderError('mex-to', 'surname contains control characters');
  // Letters (accents folded), hyphen and apostrophe survive; spaces and anything else are dropped.
  const surname = (patient.surname ?? '')
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^A-Za-z'-]/g, '');
  if (!surname) throw new MeshHeaderError('mex-to', 'surname is empty');
  const address = `GPPROVIDER_${nhs}_${m[3]}${m[2]}${m[1]}_${surname}`.slice(0, MEX_HEADER_LIMITS['mex-to']);
  assertMexHeader('mex-to', address);
  return address;
}

/** Parses a GPPROVIDER address; undefined when it is not one. */
export function parseGpProviderAddress(address: string): { nhsNumber: string; birthDate: string; surname: string } | undefined {
  const m = /^GPPROVIDER_(\d{10})_(\d{2})(\d{2})(\d{4})_(.+)$/i.exec(address);
  if (!m) return undefined;
  return { nhsNumber: m[1], birthDate: `${m[4]}-${m[3]}-${m[2]}`, surname: m[5] };
}
