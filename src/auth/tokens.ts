import { randomUUID } from 'node:crypto';
import {
  calculateJwkThumbprint,
  createRemoteJWKSet,
  decodeJwt,
  errors as joseErrors,
  exportJWK,
  generateKeyPair,
  importJWK,
  importPKCS8,
  jwtVerify,
  SignJWT,
  type CryptoKey,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { AuthConfig } from '../config';
import type { Database } from '../storage/db';
import type { RegisteredClient } from './clients';
import type { Principal } from './principal';
import { ADMIN_SCOPE, Grant } from './scopes';

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ASSERTION_ALGORITHMS = ['RS384', 'ES384'];
/** SMART Backend Services: an assertion's exp is at most five minutes ahead. */
const MAX_ASSERTION_LIFETIME_S = 300;
const CLOCK_SKEW_S = 60;
const OWN_ISSUER = 'urn:sp-bridge';
const OWN_AUDIENCE = 'urn:sp-bridge:fhir';
const VERIFIED_CACHE_SIZE = 10_000;
/**
 * A verified token is checked again at least this often, however long it lives: an external issuer's
 * tokens may live for hours, and a key it has withdrawn from its JWKS must stop letting them in.
 */
const VERIFIED_CACHE_MAX_MS = 5 * 60_000;
/** Signature algorithms accepted from the external issuer: asymmetric only (no `none`, no HMAC). */
const EXTERNAL_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** An OAuth 2.0 error (RFC 6749 §5.2): the token endpoint answers with these, not OperationOutcomes. */
export class OAuthError extends Error {
  constructor(
    readonly error: 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unsupported_grant_type' | 'invalid_scope',
    readonly description: string,
    /** The client the request named, when it named a registered one (for the audit trail). */
    readonly clientId?: string,
  ) {
    super(description);
    this.name = 'OAuthError';
  }

  get status(): number {
    return this.error === 'invalid_client' ? 401 : 400;
  }
}

/** A bearer token that does not let its holder in; the text is safe to show the client. */
export class TokenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenError';
  }
}

export interface IssuedToken {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
}

interface SigningKey {
  privateKey: CryptoKey;
  alg: 'ES384' | 'RS384';
  kid: string;
  verifyKey: CryptoKey;
}

/**
 * Issues access tokens to registered clients that prove who they are with a signed assertion
 * (http://hl7.org/fhir/smart-app-launch/backend-services.html), and checks the bearer tokens presented
 * with every request: its own, and an external issuer's when one is configured.
 */
export class TokenService {
  private lastPurge = 0;
  /**
   * Tokens already verified, until they expire: checking an ES384 signature costs about as much as the
   * rest of a read. A token cannot change, so its verdict cannot either.
   */
  private readonly verified = new Map<string, { principal: Principal; expiresMs: number }>();

  private constructor(
    private readonly db: Database,
    private readonly clients: ReadonlyMap<string, RegisteredClient>,
    private readonly key: SigningKey,
    private readonly lifetimeSeconds: number,
    private readonly external?: { issuer: string; audience: string; keys: JWTVerifyGetKey },
    private readonly clock: () => Date = () => new Date(),
  ) {}

  static async create(options: {
    db: Database;
    config: AuthConfig;
    clients: ReadonlyMap<string, RegisteredClient>;
    clock?: () => Date;
  }): Promise<TokenService> {
    const { config } = options;
    const key = await signingKey(config.tokenSigningKey);
    const external = config.external && {
      issuer: config.external.issuer,
      audience: config.external.audience,
      keys: createRemoteJWKSet(new URL(config.external.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 }),
    };
    return new TokenService(options.db, options.clients, key, config.tokenLifetimeSeconds, external, options.clock);
  }

  /** The `client_credentials` grant with a `private_key_jwt` assertion; `tokenUrl` is the assertion's audience. */
  async issue(form: URLSearchParams, tokenUrl: string): Promise<{ token: IssuedToken; clientId: string }> {
    const one = (name: string): string | undefined => {
      const values = form.getAll(name);
      if (values.length > 1) throw new OAuthError('invalid_request', `${name} is given more than once`);
      return values[0] || undefined;
    };
    const grantType = one('grant_type');
    if (grantType !== 'client_credentials') {
      throw new OAuthError('unsupported_grant_type', 'grant_type must be client_credentials');
    }
    if (one('client_assertion_type') !== ASSERTION_TYPE) {
      throw new OAuthError('invalid_request', `client_assertion_type must be ${ASSERTION_TYPE}`);
    }
    const assertion = one('client_assertion');
    if (!assertion) throw new OAuthError('invalid_request', 'client_assertion is required');
    const requested = one('scope');
    if (!requested) throw new OAuthError('invalid_request', 'scope is required');

    let claimedId: unknown;
    try {
      claimedId = decodeJwt(assertion).iss;
    } catch {
      throw new OAuthError('invalid_client', 'client_assertion is not a JWT');
    }
    const client = typeof claimedId === 'string' ? this.clients.get(claimedId) : undefined;
    if (!client) throw new OAuthError('invalid_client', 'The assertion names no registered client');

    const now = this.clock();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(assertion, client.keys, {
        algorithms: ASSERTION_ALGORITHMS,
        issuer: client.clientId,
        subject: client.clientId,
        audience: tokenUrl,
        requiredClaims: ['exp', 'jti'],
        clockTolerance: CLOCK_SKEW_S,
        currentDate: now,
      }));
    } catch (err) {
      throw new OAuthError('invalid_client', assertionProblem(err), client.clientId);
    }
    const nowS = Math.floor(now.getTime() / 1000);
    const exp = payload.exp as number;
    if (exp > nowS + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S) {
      throw new OAuthError('invalid_client', 'The assertion expires more than five minutes from now', client.clientId);
    }
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256) {
      throw new OAuthError('invalid_client', 'The assertion needs a jti of 1-256 characters', client.clientId);
    }
    if (!(await this.firstUse(client.clientId, payload.jti, exp, now))) {
      throw new OAuthError('invalid_grant', 'This assertion was already used (jti replay)', client.clientId);
    }

    const grant = client.allowed.narrow(requested);
    if (grant.empty) {
      throw new OAuthError('invalid_scope', 'None of the requested scopes is allowed for this client', client.clientId);
    }
    const accessToken = await new SignJWT({ scope: grant.toString(), client_id: client.clientId })
      .setProtectedHeader({ alg: this.key.alg, kid: this.key.kid, typ: 'at+jwt' })
      .setIssuer(OWN_ISSUER)
      .setAudience(OWN_AUDIENCE)
      .setSubject(client.clientId)
      .setIssuedAt(nowS)
      .setExpirationTime(nowS + this.lifetimeSeconds)
      .setJti(randomUUID())
      .sign(this.key.privateKey);
    return {
      clientId: client.clientId,
      token: { access_token: accessToken, token_type: 'bearer', expires_in: this.lifetimeSeconds, scope: grant.toString() },
    };
  }

  /** Who presents this `Authorization` header value. Throws TokenError when it lets nobody in. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const m = /^Bearer\s+([A-Za-z0-9._~+/-]+=*)\s*$/i.exec(authorization ?? '');
    if (!m) throw new TokenError(authorization ? 'The Authorization header must be Bearer <token>' : 'An access token is required');
    const token = m[1];
    const now = this.clock();
    const known = this.verified.get(token);
    if (known && known.expiresMs > now.getTime()) return known.principal;
    if (known) this.verified.delete(token);
    const principal = await this.verify(token, now);
    const exp = decodeJwt(token).exp;
    if (typeof exp === 'number') {
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value as string);
      this.verified.set(token, { principal, expiresMs: Math.min(exp * 1000, now.getTime() + VERIFIED_CACHE_MAX_MS) });
    }
    return principal;
  }

  private async verify(token: string, now: Date): Promise<Principal> {
    let issuer: unknown;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      throw new TokenError('The access token is not a JWT');
    }
    try {
      if (issuer === OWN_ISSUER) {
        const { payload } = await jwtVerify(token, this.key.verifyKey, {
          issuer: OWN_ISSUER,
          audience: OWN_AUDIENCE,
          algorithms: [this.key.alg],
          typ: 'at+jwt',
          currentDate: now,
        });
        const clientId = payload.client_id;
        if (typeof clientId !== 'string' || !this.clients.has(clientId)) throw new TokenError('The client of this token is no longer registered');
        // The client's registration may have shrunk since the token was issued.
        const grant = this.clients.get(clientId)!.allowed.narrow(String(payload.scope ?? ''));
        return { clientId, via: 'token', grant };
      }
      if (this.external && issuer === this.external.issuer) {
        const { payload } = await jwtVerify(token, this.external.keys, {
          issuer: this.external.issuer,
          audience: this.external.audience,
          algorithms: EXTERNAL_ALGORITHMS,
          requiredClaims: ['exp'],
          clockTolerance: CLOCK_SKEW_S,
          currentDate: now,
        });
        const clientId = [payload.client_id, payload.azp, payload.sub].find((v) => typeof v === 'string') as string | undefined;
        if (!clientId) throw new TokenError('The token names no client (client_id, azp or sub)');
        const scp = payload.scp;
        const scope = typeof payload.scope === 'string' ? payload.scope : Array.isArray(scp) ? scp.join(' ') : '';
        // The admin scope opens the audit trail (patient data from every client) and the delivery queue. Only
        // the operator grants it, by registering a client for it here; another server's say-so is not enough.
        const granted = scope.split(/\s+/).filter((s) => s !== '' && s !== ADMIN_SCOPE);
        return { clientId, via: 'external', grant: Grant.parse(granted) };
      }
    } catch (err) {
      if (err instanceof TokenError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw new TokenError('The access token has expired');
      if (err instanceof joseErrors.JOSEError) throw new TokenError('The access token is not valid');
      throw err;
    }
    throw new TokenError('The access token is from an issuer this server does not trust');
  }

  /** Records the assertion's jti; false when it was seen before. Shared by every instance on the database. */
  private async firstUse(clientId: string, jti: string, exp: number, now: Date): Promise<boolean> {
    if (now.getTime() - this.lastPurge > 60_000) {
      this.lastPurge = now.getTime();
      await this.db.query('DELETE FROM auth_assertions WHERE expires_at < $1', [now]);
    }
    const { rows } = await this.db.query(
      'INSERT INTO auth_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1 AS inserted',
      [clientId, jti, new Date((exp + CLOCK_SKEW_S) * 1000)],
    );
    return rows.length === 1;
  }
}

async function signingKey(pem: string | undefined): Promise<SigningKey> {
  if (pem) {
    for (const alg of ['ES384', 'RS384'] as const) {
      try {
        const privateKey = await importPKCS8(pem, alg, { extractable: true });
        const jwk = await exportJWK(privateKey);
        const publicJwk = alg === 'ES384' ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } : { kty: jwk.kty, n: jwk.n, e: jwk.e };
        const verifyKey = (await importJWK(publicJwk, alg)) as CryptoKey;
        return { privateKey, alg, kid: await calculateJwkThumbprint(publicJwk), verifyKey };
      } catch {
        // try the next algorithm
      }
    }
    throw new Error('AUTH_TOKEN_SIGNING_KEY is not an EC P-384 or RSA private key');
  }
  const { privateKey, publicKey } = await generateKeyPair('ES384');
  return { privateKey, alg: 'ES384', kid: await calculateJwkThumbprint(await exportJWK(publicKey)), verifyKey: publicKey };
}

function assertionProblem(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'The assertion has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `The assertion's ${err.claim} claim is not valid`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'The assertion signature does not verify with the registered keys of the client';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'No registered key of this client matches the assertion (kid/alg)';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'The assertion must be signed with RS384 or ES384';
  if (err instanceof joseErrors.JWKSTimeout || (err as { code?: string }).code === 'ERR_JOSE_GENERIC') {
    return 'The JWKS of the client could not be fetched';
  }
  return 'The assertion is not valid';
}
