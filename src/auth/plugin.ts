import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FhirError } from '../errors';
import type { Principal } from './principal';
import { ADMIN_SCOPE, Grant } from './scopes';
import { OAuthError, TokenError, type TokenService } from './tokens';

export type AuthSetup = { mode: 'none' } | { mode: 'smart'; tokens: TokenService };

export interface AuthPluginOptions {
  auth: AuthSetup;
  /** The service base URL as the client addressed it (BASE_URL or the request's Host). */
  baseUrl: (req: FastifyRequest) => string;
  /** Told of every token request and every request refused for want of a valid token (the audit trail). */
  onTokenRequest?: (req: FastifyRequest, outcome: { status: number; clientId?: string; description?: string }) => Promise<void>;
  onUnauthenticated?: (req: FastifyRequest, reason: string) => Promise<void>;
}

/** Paths anyone may call: the CapabilityStatement, discovery, the token endpoint, probes and docs. */
const PUBLIC = /^\/(metadata|\.well-known\/.*|auth\/token|healthz|readyz|metrics|docs(\/.*)?)\/?$/;
/** Of those, the one the FHIR catch-all route serves. */
const FHIR_PUBLIC = /^\/metadata\/?$/;
/** The routes the FHIR API is served from (src/http/app.ts): everything no other route claims. */
const FHIR_ROUTES = new Set(['/', '/*']);

/**
 * Whether a request may go without a token. The path alone is not enough: `/docs/../Patient` or
 * `/.well-known/x/../../Patient` match a public prefix but, sent as is, fall through to the FHIR catch-all
 * route, which must not run without a principal. So a public path is public only on the route that serves it.
 */
function isPublic(req: FastifyRequest): boolean {
  const path = req.url.split('?', 1)[0];
  if (!PUBLIC.test(path)) return false;
  const route = req.routeOptions.url;
  if (route === undefined) return false;
  return FHIR_ROUTES.has(route) ? FHIR_PUBLIC.test(path) : true;
}
const LOCAL: Principal = { clientId: 'local', via: 'none', grant: Grant.all() };

/**
 * Who is calling. Sets `req.principal` from the bearer token before anything else reads the request, and
 * serves the SMART Backend Services token endpoint and its discovery document. What the principal may do
 * is decided where the interaction is known: the FHIR router and the admin API.
 */
export function registerAuth(app: FastifyInstance, options: AuthPluginOptions): void {
  const { auth } = options;

  app.addHook('onRequest', async (req, reply) => {
    if (auth.mode === 'none') {
      req.principal = LOCAL;
      return;
    }
    if (isPublic(req)) return;
    try {
      req.principal = await auth.tokens.authenticate(req.headers.authorization);
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      await options.onUnauthenticated?.(req, err.message);
      const code = req.headers.authorization ? 'invalid_token' : undefined;
      reply.header('WWW-Authenticate', code ? `Bearer error="${code}", error_description="${err.message}"` : 'Bearer');
      throw new FhirError('SPB_UNAUTHORIZED', err.message);
    }
  });

  if (auth.mode === 'none') return;

  app.get('/.well-known/smart-configuration', async (req, reply) => {
    const base = options.baseUrl(req);
    return reply.type('application/json').send({
      token_endpoint: `${base}/auth/token`,
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      grant_types_supported: ['client_credentials'],
      scopes_supported: ['system/*.cruds', 'system/*.rs', 'system/*.read', 'system/*.write', ADMIN_SCOPE],
      capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
    });
  });

  app.post('/auth/token', async (req, reply) => {
    reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache');
    if (!(req.body instanceof URLSearchParams)) {
      return oauthError(req, reply, new OAuthError('invalid_request', 'Send the token request as application/x-www-form-urlencoded'));
    }
    try {
      const { token, clientId } = await auth.tokens.issue(req.body, `${options.baseUrl(req)}/auth/token`);
      await options.onTokenRequest?.(req, { status: 200, clientId });
      return reply.type('application/json').send(token);
    } catch (err) {
      if (err instanceof OAuthError) return oauthError(req, reply, err);
      // This route answers before the app's error handler is set, so Fastify's default one would send the
      // error's message (a database error, say) to the client. Log it; tell the client only the request id.
      req.log.error({ err }, 'token request failed');
      await options.onTokenRequest?.(req, { status: 500, description: 'internal error' });
      return reply
        .code(500)
        .type('application/json')
        .send({ error: 'server_error', error_description: `Internal error; quote request id ${req.id} to the operator` });
    }
  });

  async function oauthError(req: FastifyRequest, reply: FastifyReply, err: OAuthError): Promise<FastifyReply> {
    await options.onTokenRequest?.(req, { status: err.status, clientId: err.clientId, description: err.description });
    return reply.code(err.status).type('application/json').send({ error: err.error, error_description: err.description });
  }
}

/** The admin API's gate: the admin scope, which no resource wildcard implies. */
export function requireAdmin(req: FastifyRequest): void {
  if (!req.principal?.grant.admin) {
    throw new FhirError('SPB_FORBIDDEN', `This needs the ${ADMIN_SCOPE} scope`);
  }
}
