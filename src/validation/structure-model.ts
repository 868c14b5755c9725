/**
 * The R4 element model the structure layer walks with: for every resource and complex type, each element's
 * type and whether it repeats. Built from the generated model (src/validation/generated/), which comes from
 * the same schema as the generated ajv code.
 */

/** One element of a resource or complex type, e.g. ServiceRequest.code or Coding.system. */
export interface ElementDef {
  /** Type name: a primitive (`code`, `dateTime`), a complex type or backbone (`Coding`, `Bundle_Entry`), or `Resource`. */
  type: string;
  /** Repeats: an array in JSON. */
  many: boolean;
  primitive: boolean;
  /** A nested resource (contained[], Bundle.entry.resource, Parameters.parameter.resource, ...). */
  resource: boolean;
  /** For one type of a choice element (`occurrenceDateTime`), its base name (`occurrence`). */
  choice?: string;
}

export interface ElementModel {
  resourceTypes: ReadonlySet<string>;
  /** Elements by type name, then element (JSON property) name. Maps, so `__proto__` and friends are plain keys. */
  types: ReadonlyMap<string, ReadonlyMap<string, ElementDef>>;
}

interface GeneratedModel {
  resourceTypes: string[];
  primitives: string[];
  types: Record<string, Record<string, string>>;
  choices: Record<string, Record<string, string>>;
}

/** JSON type a primitive takes in FHIR JSON. */
export function primitiveJsonType(type: string): 'string' | 'number' | 'boolean' {
  switch (type) {
    case 'boolean':
      return 'boolean';
    case 'decimal':
    case 'integer':
    case 'positiveInt':
    case 'unsignedInt':
      return 'number';
    default:
      return 'string';
  }
}

export function parseElementModel(json: string): ElementModel {
  const raw = JSON.parse(json) as GeneratedModel;
  const primitives = new Set(raw.primitives);
  const types = new Map<string, Map<string, ElementDef>>();
  for (const [typeName, elements] of Object.entries(raw.types)) {
    const map = new Map<string, ElementDef>();
    const choices = raw.choices[typeName] ?? {};
    for (const [name, spec] of Object.entries(elements)) {
      const many = spec.endsWith('[]');
      const type = many ? spec.slice(0, -2) : spec;
      const choice = Object.hasOwn(choices, name) ? choices[name] : undefined;
      map.set(name, { type, many, primitive: primitives.has(type), resource: type === 'Resource', ...(choice ? { choice } : {}) });
    }
    types.set(typeName, map);
  }
  return { resourceTypes: new Set(raw.resourceTypes), types };
}
