/**
 * The patient a resource concerns, as `Patient/id`, for ordering deliveries per patient. Looks at the elements
 * that carry the patient in the resources sp-bridge exchanges; a reference that is not a local Patient
 * reference (a contained, absolute or logical reference) gives none.
 */
export function patientRefOf(resource: fhir4.Resource | null | undefined): string | undefined {
  if (!resource) return undefined;
  if (resource.resourceType === 'Patient') return resource.id ? `Patient/${resource.id}` : undefined;
  const r = resource as unknown as Record<string, unknown>;
  for (const element of ['subject', 'patient', 'for', 'beneficiary']) {
    const ref = localPatient(r[element]);
    if (ref) return ref;
  }
  return undefined;
}

function localPatient(value: unknown): string | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const reference = (value as { reference?: unknown }).reference;
  if (typeof reference !== 'string') return undefined;
  const m = /^Patient\/([A-Za-z0-9\-.]{1,64})(\/_history\/[^/]+)?$/.exec(reference);
  return m ? `Patient/${m[1]}` : undefined;
}
