/**
 * The one table of coded errors. Every failure a client can see has a stable code, an HTTP status and an
 * OperationOutcome issue type (http://hl7.org/fhir/R4/valueset-issue-type.html).
 */
export const errorTable = {
  SPB_MALFORMED_JSON: { status: 400, issue: 'structure' },
  SPB_INVALID_RESOURCE: { status: 400, issue: 'structure' },
  SPB_WRONG_RESOURCE_TYPE: { status: 400, issue: 'invalid' },
  SPB_ID_MISMATCH: { status: 400, issue: 'invalid' },
  SPB_INVALID_ID: { status: 400, issue: 'value' },
  SPB_INVALID_SEARCH: { status: 400, issue: 'invalid' },
  SPB_UNKNOWN_SEARCH_PARAM: { status: 400, issue: 'not-supported' },
  SPB_INVALID_BUNDLE: { status: 400, issue: 'invalid' },
  SPB_INVALID_HEADER: { status: 400, issue: 'invalid' },
  SPB_UNAUTHORIZED: { status: 401, issue: 'login' },
  SPB_FORBIDDEN: { status: 403, issue: 'forbidden' },
  SPB_UNKNOWN_TYPE: { status: 404, issue: 'not-supported' },
  SPB_NOT_FOUND: { status: 404, issue: 'not-found' },
  SPB_VERSION_NOT_FOUND: { status: 404, issue: 'not-found' },
  SPB_ROUTE_NOT_FOUND: { status: 404, issue: 'not-supported' },
  SPB_METHOD_NOT_ALLOWED: { status: 405, issue: 'not-supported' },
  SPB_NOT_ACCEPTABLE: { status: 406, issue: 'not-supported' },
  SPB_CONFLICT: { status: 409, issue: 'conflict' },
  SPB_GONE: { status: 410, issue: 'deleted' },
  SPB_PRECONDITION_FAILED: { status: 412, issue: 'conflict' },
  SPB_MULTIPLE_MATCHES: { status: 412, issue: 'multiple-matches' },
  SPB_BODY_TOO_LARGE: { status: 413, issue: 'too-costly' },
  SPB_UNSUPPORTED_MEDIA_TYPE: { status: 415, issue: 'not-supported' },
  SPB_UNPROCESSABLE: { status: 422, issue: 'processing' },
  SPB_RATE_LIMITED: { status: 429, issue: 'throttled' },
  SPB_INTERNAL: { status: 500, issue: 'exception' },
  SPB_UNAVAILABLE: { status: 503, issue: 'transient' },
  SPB_TIMEOUT: { status: 503, issue: 'timeout' },
} as const satisfies Record<string, { status: number; issue: fhir4.OperationOutcomeIssue['code'] }>;

export type ErrorCode = keyof typeof errorTable;

export class FhirError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly outcome: fhir4.OperationOutcome;

  constructor(code: ErrorCode, diagnostics: string, options: { expression?: string[]; outcome?: fhir4.OperationOutcome } = {}) {
    super(diagnostics);
    this.name = 'FhirError';
    this.code = code;
    this.status = errorTable[code].status;
    this.outcome =
      options.outcome ?? operationOutcome('error', errorTable[code].issue, diagnostics, options.expression);
  }
}

export function operationOutcome(
  severity: fhir4.OperationOutcomeIssue['severity'],
  code: fhir4.OperationOutcomeIssue['code'],
  diagnostics: string,
  expression?: string[],
): fhir4.OperationOutcome {
  const issue: fhir4.OperationOutcomeIssue = { severity, code, diagnostics };
  if (expression?.length) issue.expression = expression;
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

export function informational(diagnostics: string): fhir4.OperationOutcome {
  return operationOutcome('information', 'informational', diagnostics);
}
