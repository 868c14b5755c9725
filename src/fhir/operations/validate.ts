import { FhirError } from '../../errors';
import { toOperationOutcome, type ValidationIssue } from '../../validation/types';
import type { OperationCall, OperationDefinition } from './operation';

const MODES = new Set(['create', 'update', 'delete']);

/**
 * `$validate` (http://hl7.org/fhir/R4/resource-operation-validate.html): checks a resource without storing
 * it and always answers 200 with the OperationOutcome, errors included. The body is the resource itself or
 * a Parameters with `resource`, `mode` and `profile`.
 */
export const validateOperation: OperationDefinition = {
  name: 'validate',
  levels: ['type', 'instance'],
  types: (type) => /^[A-Z][A-Za-z]+$/.test(type),
  idempotent: false,
  async run(call: OperationCall) {
    const { params, req, type } = call;
    const isParameters = (req.body as fhir4.Resource | undefined)?.resourceType === 'Parameters' && type !== 'Parameters';
    const mode = isParameters ? params.string('mode') : undefined;
    if (mode !== undefined && !MODES.has(mode)) {
      throw new FhirError('SPB_INVALID_RESOURCE', `mode must be create, update or delete, not '${mode}'`);
    }
    const profile = isParameters ? params.string('profile') : undefined;
    let resource: unknown = isParameters ? params.resource('resource') : req.body;
    if (resource === undefined && call.level === 'instance' && type && call.id) {
      if (mode === 'delete') return ok([]);
      const current = await call.repo.readCurrent(type, call.id);
      if (!current || current.deleted) throw new FhirError('SPB_NOT_FOUND', `${type}/${call.id} is not known`);
      resource = JSON.parse(current.json ?? 'null');
    }
    if (resource === undefined || resource === null) {
      throw new FhirError('SPB_INVALID_RESOURCE', 'Send the resource to validate as the body, or as the resource parameter of a Parameters');
    }
    const issues: ValidationIssue[] = [];
    const actual = typeof resource === 'object' && !Array.isArray(resource) ? (resource as { resourceType?: unknown }).resourceType : undefined;
    if (actual !== type) {
      issues.push({
        severity: 'error',
        code: 'invalid',
        diagnostics: `This is $validate for ${type}, but the resource is ${typeof actual === 'string' ? `a ${actual}` : 'not a resource'}`,
        expression: 'resourceType',
      });
    }
    if (call.level === 'instance' && mode === 'update' && (resource as fhir4.Resource).id !== call.id) {
      issues.push({ severity: 'error', code: 'invalid', diagnostics: `An update of ${type}/${call.id} needs id "${call.id}"`, expression: `${type}.id` });
    }
    issues.push(...call.validator.validate(resource, { profile }));
    return ok(issues);
  },
};

function ok(issues: ValidationIssue[]) {
  return { status: 200, body: toOperationOutcome(issues) };
}
