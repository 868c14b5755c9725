/**
 * What every validation layer reports. A layer never throws for bad input: whatever the shape of the
 * resource, it appends issues and returns.
 */
export interface ValidationIssue {
  severity: 'fatal' | 'error' | 'warning' | 'information';
  /** From http://hl7.org/fhir/R4/valueset-issue-type.html, e.g. structure, required, value, invariant, code-invalid. */
  code: fhir4.OperationOutcomeIssue['code'];
  /** One human-readable line: what is wrong and, where it helps, what was expected. */
  diagnostics: string;
  /** FHIRPath of the offending element, e.g. `ServiceRequest.code.coding[0].code`. */
  expression: string;
  /** Stable id of the rule broken, where there is one: an invariant key (`ref-1`), a layer code. */
  rule?: string;
}

/** A JSON value of unknown shape, as clients send it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function toOperationOutcome(issues: ValidationIssue[]): fhir4.OperationOutcome {
  if (issues.length === 0) {
    return {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'information', code: 'informational', diagnostics: 'No issues found' }],
    };
  }
  const rank = { fatal: 0, error: 1, warning: 2, information: 3 };
  return {
    resourceType: 'OperationOutcome',
    issue: [...issues].sort((a, b) => rank[a.severity] - rank[b.severity]).map((i) => ({
      severity: i.severity,
      code: i.code,
      diagnostics: i.rule ? `${i.rule}: ${i.diagnostics}` : i.diagnostics,
      expression: [i.expression],
    })),
  };
}

export interface ValidateOptions {
  /** Validate against this profile (canonical URL) instead of the one the resource claims or its type's default. */
  profile?: string;
  /** FHIRPath prefix for a resource nested in another, e.g. `Bundle.entry[2].resource`. */
  path?: string;
}

/** The whole validator as the FHIR layer sees it. */
export interface ResourceValidator {
  validate(resource: unknown, options?: ValidateOptions): ValidationIssue[];
}
