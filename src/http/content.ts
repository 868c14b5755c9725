import type { FastifyInstance, FastifyRequest } from 'fastify';
import sjson from 'secure-json-parse';
import { FhirError } from '../errors';

const JSON_TYPES = ['application/fhir+json', 'application/json'];

/**
 * Request body parsers. JSON is parsed with secure-json-parse (prototype poisoning is refused) and never
 * coerced or trimmed: what the client sent is what the FHIR layer sees. Anything else is a 415.
 */
export function mediaTypes(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(new FhirError('SPB_INVALID_RESOURCE', 'The request body is empty; a FHIR resource in JSON was expected'), undefined);
      return;
    }
    try {
      done(null, sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }));
    } catch (err) {
      done(new FhirError('SPB_MALFORMED_JSON', `The request body is not valid JSON: ${(err as Error).message}`), undefined);
    }
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, new URLSearchParams(typeof body === 'string' ? body : body.toString('utf8')));
  });
}

const FORMAT_ALIASES: Record<string, string | undefined> = {
  json: 'application/fhir+json',
  'application/json': 'application/json',
  'application/fhir+json': 'application/fhir+json',
  'application/json+fhir': 'application/fhir+json',
};

/**
 * The media type to answer in, from `_format` (which wins, http://hl7.org/fhir/R4/http.html#mime-type) or
 * Accept; undefined when the client accepts no JSON.
 */
export function responseType(req: FastifyRequest): string | undefined {
  const format = new URLSearchParams(req.url.split('?', 2)[1] ?? '').get('_format');
  if (format !== null) return FORMAT_ALIASES[format.trim().toLowerCase().split(';')[0]];
  const accept = req.headers.accept;
  if (!accept) return 'application/fhir+json';
  const types = accept.split(',').map((t) => t.split(';')[0].trim().toLowerCase());
  if (types.some((t) => t === 'application/fhir+json' || t === 'application/json+fhir')) return 'application/fhir+json';
  if (types.includes('application/json')) return 'application/json';
  if (types.some((t) => t === '*/*' || t === 'application/*')) return 'application/fhir+json';
  return undefined;
}
