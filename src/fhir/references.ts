/** Reference strings: `Type/id`, `Type/id/_history/v`, or an absolute URL ending in either. */
export interface ParsedReference {
  type: string;
  id: string;
}

const REFERENCE_RE = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

export function parseReference(reference: string): ParsedReference | undefined {
  if (reference.startsWith('#') || reference.startsWith('urn:')) return undefined;
  const m = REFERENCE_RE.exec(reference);
  return m ? { type: m[1], id: m[2] } : undefined;
}

export const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;

/** Calls `visit` on every `reference` string in a resource tree, replacing it with the returned value. */
export function rewriteReferences(node: unknown, visit: (reference: string) => string): void {
  if (Array.isArray(node)) {
    for (const item of node) rewriteReferences(item, visit);
  } else if (node !== null && typeof node === 'object') {
    const record = node as Record<string, unknown>;
    for (const [key, value] of Object.entries(record)) {
      if (key === 'reference' && typeof value === 'string') record[key] = visit(value);
      else if (typeof value === 'object') rewriteReferences(value, visit);
    }
  }
}
