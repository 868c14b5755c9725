import type { Grant } from './scopes';

/** Who is calling: set on every request by the auth hook (src/auth/plugin.ts) before any handler runs. */
export interface Principal {
  /** The registered client id, the external token's `sub`, or `local` when AUTH_MODE=none. */
  clientId: string;
  /** How the caller was identified. */
  via: 'token' | 'external' | 'none';
  grant: Grant;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Undefined only on public routes (/metadata, /.well-known/*, /healthz, /readyz, /metrics, /docs, /auth/token). */
    principal?: Principal;
  }
}
