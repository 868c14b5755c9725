import type { FastifyError, FastifyRequest } from 'fastify';
import { errorTable, FhirError, operationOutcome } from '../errors';
import type { FhirResponse } from '../fhir/types';

/** Fastify's own errors that a client can cause, mapped onto our table. */
const FASTIFY_ERRORS: Record<string, { code: keyof typeof errorTable; message: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'SPB_BODY_TOO_LARGE', message: 'The request body is larger than this server accepts' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'SPB_UNSUPPORTED_MEDIA_TYPE',
    message: 'Send FHIR resources as application/fhir+json (or application/json)',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'SPB_INVALID_HEADER', message: 'Content-Length does not match the body' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'SPB_INVALID_RESOURCE', message: 'The request body is empty' },
  FST_ERR_HANDLER_TIMEOUT: {
    code: 'SPB_TIMEOUT',
    message: 'The request took too long to answer; it may still complete: read before retrying a write',
  },
};

/**
 * Turns any error into an OperationOutcome response. Client errors say what was wrong; anything else is a
 * 500 that names only the request id, with the details in the log.
 */
export function toErrorResponse(err: unknown, req: FastifyRequest): FhirResponse {
  if (err instanceof FhirError) return { status: err.status, body: err.outcome };
  const code = (err as FastifyError).code;
  const known = code ? FASTIFY_ERRORS[code] : undefined;
  if (known) {
    const fhirError = new FhirError(known.code, known.message);
    return { status: fhirError.status, body: fhirError.outcome };
  }
  if (code === '23505') {
    // A unique constraint caught a write that raced another one for the same resource.
    const conflict = new FhirError('SPB_CONFLICT', 'The resource was changed by another request at the same time; retry');
    return { status: conflict.status, body: conflict.outcome };
  }
  const status = (err as FastifyError).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, body: operationOutcome('error', 'invalid', 'The request could not be understood') };
  }
  req.log.error({ err }, 'request failed');
  return {
    status: 500,
    body: operationOutcome('error', errorTable.SPB_INTERNAL.issue, `Internal error; quote request id ${req.id} to the operator`),
  };
}
