/**
 * Read-only conformance resources the server serves from what it ships (the bundled terminology, the
 * profiles), not from the database: read and search only.
 */
export interface ConformanceSource {
  /** The resource types this source serves, e.g. CodeSystem and ValueSet. */
  readonly types: readonly string[];
  read(type: string, id: string): fhir4.Resource | undefined;
  /** Resources of `type` matching every parameter; throws FhirError for a parameter it does not support. */
  search(type: string, params: [string, string][]): fhir4.Resource[];
}
