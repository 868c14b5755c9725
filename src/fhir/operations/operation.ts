import { FhirError } from '../../errors';
import type { Repository } from '../../storage/repository';
import type { ResourceValidator } from '../../validation/types';
import type { FhirRequest, FhirResponse, RequestContext } from '../types';

/**
 * FHIR operations (`$name`, http://hl7.org/fhir/R4/operations.html). Each is declared once with the levels
 * and types it serves; the router finds it by name.
 */
export interface OperationCall {
  req: FhirRequest;
  ctx: RequestContext;
  repo: Repository;
  validator: ResourceValidator;
  level: 'system' | 'type' | 'instance';
  type?: string;
  id?: string;
  /** Input parameters: the query string of a GET, or the Parameters body of a POST. */
  params: OperationParams;
}

export interface OperationDefinition {
  name: string;
  levels: ('system' | 'type' | 'instance')[];
  /** Resource types served at type and instance level. */
  types: (type: string) => boolean;
  /** Whether GET may call it (operations that change nothing). */
  idempotent: boolean;
  run(call: OperationCall): Promise<FhirResponse>;
}

/** Named input parameters of an operation call. */
export class OperationParams {
  private constructor(private readonly parameters: fhir4.ParametersParameter[]) {}

  static fromQuery(query: [string, string][]): OperationParams {
    return new OperationParams(
      query.filter(([k]) => !k.startsWith('_')).map(([name, valueString]) => ({ name, valueString })),
    );
  }

  /** A Parameters body; any other resource body is left to the operation (e.g. `$validate`). */
  static fromBody(body: unknown): OperationParams {
    if (typeof body === 'object' && body !== null && (body as fhir4.Resource).resourceType === 'Parameters') {
      const parameter = (body as fhir4.Parameters).parameter;
      if (parameter !== undefined && !Array.isArray(parameter)) {
        throw new FhirError('SPB_INVALID_RESOURCE', 'Parameters.parameter must be an array', { expression: ['Parameters.parameter'] });
      }
      return new OperationParams((parameter ?? []).filter((p) => typeof p === 'object' && p !== null && typeof p.name === 'string'));
    }
    return new OperationParams([]);
  }

  has(name: string): boolean {
    return this.parameters.some((p) => p.name === name);
  }

  all(name: string): fhir4.ParametersParameter[] {
    return this.parameters.filter((p) => p.name === name);
  }

  /** The parameter's primitive value as a string (valueString, valueCode, valueUri, valueInteger ...). */
  string(name: string): string | undefined {
    const p = this.parameters.find((x) => x.name === name);
    if (!p) return undefined;
    for (const [key, value] of Object.entries(p)) {
      if (key.startsWith('value') && (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')) {
        return String(value);
      }
    }
    return undefined;
  }

  /** The parameter's complex value, such as valueCoding or valueCodeableConcept. */
  value<T>(name: string, key: string): T | undefined {
    const p = this.parameters.find((x) => x.name === name) as Record<string, unknown> | undefined;
    return p?.[key] as T | undefined;
  }

  resource(name: string): fhir4.Resource | undefined {
    return this.parameters.find((p) => p.name === name)?.resource;
  }
}
