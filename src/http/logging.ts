import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Paths pino removes from every log line. Request bodies and query values are never logged at all; these
 * cover headers and anything a handler might attach by mistake.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.nhsNumber',
  '*.birthDate',
  '*.address',
  '*.telecom',
  '*.identifier',
  'resource',
  'body',
];

/**
 * Errors are logged with their class, code and stack only: database errors carry the statement's
 * parameters and detail text, which hold search values and resource content.
 */
function serializeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: 'non-error thrown' };
  const code = (err as { code?: unknown }).code;
  return { type: err.constructor.name, code: typeof code === 'string' ? code : undefined, stack: err.stack };
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, serializers: { err: serializeError } },
    destination,
  );
}
