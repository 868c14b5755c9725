import { ADMIN_SCOPE, type Grant, type Permission } from '../auth/scopes';
import { FhirError } from '../errors';
import { resourceType, resourceTypes, searchParam } from './registry';
import { formParams, type FhirRequest } from './types';

/** Read only, and only with the admin scope: the audit trail. */
export const AUDIT_TYPE = 'AuditEvent';

type Need = { type: string; permission: Permission } | 'admin';

const V1_NAME: Record<Permission, string> = { c: 'write', r: 'read', u: 'write', d: 'write', s: 'read' };

/**
 * Refuses (403) a request the grant does not cover. Decided from the request alone, before anything runs,
 * so a transaction can be checked entry by entry before it writes anything. No grant means an internal
 * caller, which may do everything.
 *
 * Interactions map onto SMART v2 permissions: create c; read, vread and instance history r; update u (a
 * conditional update, which may create, c, u and s); delete d (conditional: d and s); search and type or system history s;
 * `_include` and `_revinclude` also r on the types they pull in; an operation r on the type it runs on.
 *
 * A conditional create (`If-None-Exist`) also needs s: it runs its criteria as a search and answers a match
 * with the stored resource itself, which c alone must not disclose. Conditional update and delete search too
 * (their answers say whether, and which, resource matched), so they also need s.
 */
export function checkAccess(grant: Grant | undefined, req: FhirRequest): void {
  if (!grant) return;
  for (const need of needs(req)) {
    if (need === 'admin') {
      if (!grant.admin) throw new FhirError('SPB_FORBIDDEN', `${req.path.split('/')[0]} needs the ${ADMIN_SCOPE} scope`);
      continue;
    }
    checkPermission(grant, need.type, need.permission);
  }
}

/** Refuses (403) unless the grant gives `permission` on `type`; no grant means an internal caller. */
export function checkPermission(grant: Grant | undefined, type: string, permission: Permission): void {
  if (!grant || grant.allows(type, permission)) return;
  throw new FhirError(
    'SPB_FORBIDDEN',
    `This token's scopes do not allow it: it needs system/${type}.${permission} (or system/${type}.${V1_NAME[permission]})`,
  );
}

function needs(req: FhirRequest): Need[] {
  const segments = req.path.split('/').filter((s) => s !== '');
  const method = req.method.toUpperCase() === 'HEAD' ? 'GET' : req.method.toUpperCase();
  const [type, second, third] = segments;
  // Transactions and batches are checked entry by entry; the CapabilityStatement is public.
  if (segments.length === 0 || (type === 'metadata' && segments.length === 1)) return [];
  if (type === AUDIT_TYPE) return ['admin'];
  const last = segments[segments.length - 1];
  if (last.startsWith('$')) return [{ type: segments.length === 1 ? '*' : type, permission: 'r' }];
  if (type === '_history') return [{ type: '*', permission: 's' }];
  if (segments.length === 1) {
    switch (method) {
      case 'GET':
        return [{ type, permission: 's' }, ...includeNeeds(type, req.query)];
      case 'POST':
        // A conditional create searches, and answers a match with the stored resource.
        return req.ifNoneExist !== undefined
          ? [
              { type, permission: 'c' },
              { type, permission: 's' },
            ]
          : [{ type, permission: 'c' }];
      case 'PUT':
        return [
          { type, permission: 'c' },
          { type, permission: 'u' },
          { type, permission: 's' },
        ];
      case 'DELETE':
        return [
          { type, permission: 'd' },
          { type, permission: 's' },
        ];
      default:
        return [];
    }
  }
  // POST _search takes its parameters from the form body as well as the query: both can ask for includes.
  if (second === '_search') return [{ type, permission: 's' }, ...includeNeeds(type, [...req.query, ...formParams(req.body)])];
  if (second === '_history') return [{ type, permission: 's' }];
  if (third === '_history') return [{ type, permission: 'r' }];
  switch (method) {
    case 'PUT':
      return [{ type, permission: 'u' }];
    case 'DELETE':
      return [{ type, permission: 'd' }];
    default:
      return [{ type, permission: 'r' }];
  }
}

/** `_include=ServiceRequest:subject` returns Patients too: the caller must be allowed to read them. */
function includeNeeds(type: string, query: [string, string][]): Need[] {
  const out: Need[] = [];
  for (const [key, value] of query) {
    // The search parser trims names (`?+_include=` arrives as ' _include'), so this must too.
    const name = key.trim().split(':')[0];
    if (name !== '_include' && name !== '_revinclude') continue;
    const [source, param, target] = value.split(':');
    if (name === '_revinclude') {
      if (source) out.push({ type: source, permission: 'r' });
      continue;
    }
    const targets = target ? [target] : (searchParam(source ?? type, param ?? '')?.targets ?? resourceTypes.map((t) => t.type));
    for (const t of targets) if (resourceType(t)) out.push({ type: t, permission: 'r' });
  }
  return out;
}
