import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../config';
import { Grant } from './scopes';

/** A backend-services client registered by the operator (AUTH_CLIENTS_FILE). */
export interface RegisteredClient {
  clientId: string;
  name?: string;
  /** The most this client may be granted; a token carries the part of it the client asked for. */
  allowed: Grant;
  /** Its public keys, from an inline JWKS or its JWKS URL. */
  keys: JWTVerifyGetKey;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
const ALGORITHMS = new Set(['RS384', 'ES384']);

/**
 * Reads the clients file (YAML or JSON):
 *
 *   clients:
 *     - clientId: emis-pcn-north
 *       scopes: [system/ServiceRequest.cruds, system/Patient.rs]
 *       jwks: { keys: [ ...public JWKs... ] }     # or jwksUrl: https://vendor.example/.well-known/jwks.json
 *
 * Every problem is named at once, as for the environment.
 */
export function loadClients(file: string): Map<string, RegisteredClient> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError([`AUTH_CLIENTS_FILE ${file} cannot be read: ${(err as Error).message}`]);
  }
  const entries = (doc as { clients?: unknown } | null)?.clients;
  if (!Array.isArray(entries)) throw new ConfigError([`AUTH_CLIENTS_FILE ${file} must have a 'clients' list`]);
  const problems: string[] = [];
  const clients = new Map<string, RegisteredClient>();
  entries.forEach((entry: Record<string, unknown>, i) => {
    const where = `AUTH_CLIENTS_FILE clients[${i}]`;
    const clientId = entry?.clientId;
    if (typeof clientId !== 'string' || !/^[A-Za-z0-9._~-]{1,128}$/.test(clientId)) {
      problems.push(`${where}: clientId must be 1-128 letters, digits or . _ ~ -`);
      return;
    }
    if (clients.has(clientId)) problems.push(`${where}: clientId '${clientId}' is registered twice`);
    const given = typeof entry.scopes === 'string' ? [entry.scopes] : entry.scopes;
    if (!Array.isArray(given) || given.some((s) => typeof s !== 'string')) {
      problems.push(`${where} (${clientId}): scopes must be a list of SMART scopes`);
      return;
    }
    const scopes = (given as string[]).flatMap((s) => s.split(/\s+/)).filter(Boolean);
    const allowed = Grant.parse(scopes);
    const ignored = scopes.filter((s) => !allowed.scopes.includes(s));
    if (ignored.length) problems.push(`${where} (${clientId}): not a system scope sp-bridge grants: ${ignored.join(', ')}`);
    let keys: JWTVerifyGetKey | undefined;
    if (entry.jwks !== undefined && entry.jwksUrl !== undefined) {
      problems.push(`${where} (${clientId}): give jwks or jwksUrl, not both`);
    } else if (typeof entry.jwksUrl === 'string') {
      if (!/^https?:\/\//.test(entry.jwksUrl)) problems.push(`${where} (${clientId}): jwksUrl must be an http(s) URL`);
      else keys = createRemoteJWKSet(new URL(entry.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 });
    } else if (entry.jwks !== undefined) {
      const keyProblems = checkJwks(entry.jwks);
      if (keyProblems.length) problems.push(...keyProblems.map((p) => `${where} (${clientId}): ${p}`));
      else keys = createLocalJWKSet(entry.jwks as JSONWebKeySet);
    } else {
      problems.push(`${where} (${clientId}): jwks or jwksUrl is required`);
    }
    if (keys) {
      clients.set(clientId, { clientId, name: typeof entry.name === 'string' ? entry.name : undefined, allowed, keys });
    }
  });
  if (problems.length) throw new ConfigError(problems);
  return clients;
}

function checkJwks(jwks: unknown): string[] {
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) return ['jwks must be {"keys": [...]} with at least one key'];
  const problems: string[] = [];
  keys.forEach((key: Record<string, unknown>, i) => {
    if (PRIVATE_MEMBERS.some((m) => key?.[m] !== undefined)) {
      problems.push(`jwks key ${i} holds private key material: register the public key only`);
    }
    if (key?.kty !== 'RSA' && key?.kty !== 'EC') problems.push(`jwks key ${i}: kty must be RSA or EC`);
    if (key?.alg !== undefined && !ALGORITHMS.has(String(key.alg))) problems.push(`jwks key ${i}: alg must be RS384 or ES384`);
  });
  return problems;
}
