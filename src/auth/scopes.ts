/**
 * SMART on FHIR system scopes, v1 (`system/Observation.read`, `.write`, `.*`) and v2
 * (`system/Observation.rs`, `system/*.cruds`): http://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
 * Backend services act for no user or patient, so only the `system/` context grants anything here.
 */

/** v2 permission letters, in the order the spec requires them to appear. */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';
const ORDER: readonly Permission[] = ['c', 'r', 'u', 'd', 's'];

/** Reads sp-bridge's own APIs: the delivery admin API and the AuditEvent log. Not covered by any wildcard. */
export const ADMIN_SCOPE = 'sp-bridge/admin';

// A Map, not an object literal: `system/Patient.constructor` must not find Object.prototype.constructor.
const V1: ReadonlyMap<string, readonly Permission[]> = new Map<string, readonly Permission[]>([
  ['read', ['r', 's']],
  ['write', ['c', 'u', 'd']],
  ['*', ORDER],
]);
const SCOPE_RE = /^system\/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$/;

/** What a set of scopes lets a client do. */
export class Grant {
  private constructor(
    private readonly byType: ReadonlyMap<string, ReadonlySet<Permission>>,
    readonly admin: boolean,
    /** The scopes that granted something, as given: what a token's `scope` says. */
    readonly scopes: readonly string[],
  ) {}

  /** Parses a space-separated scope string or list. Scopes that grant nothing here are left out. */
  static parse(scopes: string | readonly string[]): Grant {
    const list = typeof scopes === 'string' ? scopes.split(/\s+/).filter(Boolean) : scopes;
    const byType = new Map<string, Set<Permission>>();
    const kept: string[] = [];
    let admin = false;
    for (const scope of list) {
      if (scope === ADMIN_SCOPE) {
        admin = true;
        kept.push(scope);
        continue;
      }
      const parsed = parseScope(scope);
      if (!parsed) continue;
      const set = byType.get(parsed.type) ?? new Set<Permission>();
      for (const p of parsed.permissions) set.add(p);
      byType.set(parsed.type, set);
      kept.push(scope);
    }
    return new Grant(byType, admin, [...new Set(kept)]);
  }

  /** Everything, admin included: AUTH_MODE=none. */
  static all(): Grant {
    return Grant.parse(['system/*.cruds', ADMIN_SCOPE]);
  }

  allows(type: string, permission: Permission): boolean {
    return Boolean(this.byType.get(type)?.has(permission) || this.byType.get('*')?.has(permission));
  }

  /**
   * The requested scopes this grant covers in full (RFC 6749 §3.3: the server may issue fewer scopes than
   * asked for). A requested scope partly covered is left out rather than silently narrowed.
   */
  narrow(requested: string): Grant {
    return Grant.parse(
      requested
        .split(/\s+/)
        .filter(Boolean)
        .filter((scope) => {
          if (scope === ADMIN_SCOPE) return this.admin;
          const parsed = parseScope(scope);
          if (!parsed) return false;
          if (parsed.type === '*') return parsed.permissions.every((p) => this.byType.get('*')?.has(p));
          return parsed.permissions.every((p) => this.allows(parsed.type, p));
        }),
    );
  }

  get empty(): boolean {
    return this.scopes.length === 0;
  }

  toString(): string {
    return this.scopes.join(' ');
  }
}

/** `system/Type.perms` to its type and permissions; undefined for a scope that grants nothing here. */
export function parseScope(scope: string): { type: string; permissions: readonly Permission[] } | undefined {
  const m = SCOPE_RE.exec(scope);
  if (!m) return undefined;
  const [, type, perms] = m;
  const v1 = V1.get(perms);
  if (v1) return { type, permissions: v1 };
  // v2: the letters of cruds, each at most once and in that order.
  let at = 0;
  const permissions: Permission[] = [];
  for (const letter of perms) {
    const index = ORDER.indexOf(letter as Permission, at);
    if (index < 0) return undefined;
    permissions.push(letter as Permission);
    at = index + 1;
  }
  return permissions.length ? { type, permissions } : undefined;
}
