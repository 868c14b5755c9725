import type { SentAttempt } from '../delivery/engine';
import { formParams, responseResource, type FhirRequest, type FhirResponse } from '../fhir/types';
import type { AuditAction, AuditEntity, AuditInteraction, AuditRecord } from './events';

export type ExchangeDescription = Pick<AuditRecord, 'interaction' | 'action' | 'entities'>;

const TYPE_RE = /^[A-Z][A-Za-z]+$/;

/**
 * Maps one FHIR exchange to what the audit trail records of it (http://hl7.org/fhir/R4/http.html). The
 * request decides the interaction, so a refused request (4xx) is described like one that succeeded; the
 * response adds the ids the server assigned (create, conditional update, transaction entries).
 */
export function describeExchange(req: FhirRequest, res: FhirResponse): ExchangeDescription {
  const described = describeRequest(req, res);
  // What was disclosed: the resources a read or search returned and the patients they concern, so that
  // "who has seen this patient's records" finds searches and reads of their referrals too.
  if (described.action === 'R' && res.status < 300) described.entities.push(...disclosed(res, described.entities));
  return described;
}

function describeRequest(req: FhirRequest, res: FhirResponse): ExchangeDescription {
  const method = req.method.toUpperCase() === 'HEAD' ? 'GET' : req.method.toUpperCase();
  const segments = req.path.split('/').filter((s) => s !== '');
  const query = queryString(req.query);
  const [type, second, third, fourth] = segments;
  const last = segments[segments.length - 1];

  if (segments.length === 0) {
    if (method === 'POST') return bundleExchange(req, res);
    return describe('search-system', 'R', query ? [{ query }] : []);
  }
  if (last.startsWith('$')) {
    const entity: AuditEntity = { name: last };
    if (segments.length === 2 && TYPE_RE.test(type)) entity.type = type;
    if (segments.length === 3 && TYPE_RE.test(type)) entity.reference = `${type}/${second}`;
    return describe('operation', 'E', [withQuery(entity, query)]);
  }
  if (type === 'metadata' && segments.length === 1) return describe('capabilities', 'R', []);
  if (type === '_history' && segments.length === 1) return describe('history-system', 'R', query ? [{ query }] : []);
  if (!TYPE_RE.test(type)) return byMethod(method, []);

  if (segments.length === 1) {
    switch (method) {
      case 'GET':
        return describe('search-type', 'R', [withQuery({ type }, query)]);
      case 'POST': {
        const created = locationReference(res.location);
        return describe('create', 'C', [created ? { reference: created } : { type }]);
      }
      case 'PUT':
        return describe('update', 'U', [conditional(type, query, res)]);
      case 'DELETE':
        return describe('delete', 'D', [conditional(type, query, res)]);
      default:
        return byMethod(method, [{ type }]);
    }
  }
  if (second === '_search' && segments.length === 2) {
    return describe('search-type', 'R', [withQuery({ type }, queryString([...req.query, ...formParams(req.body)]))]);
  }
  if (second === '_history' && segments.length === 2) {
    return describe('history-type', 'R', [withQuery({ type }, query)]);
  }
  const instance = `${type}/${second}`;
  if (segments.length === 2) {
    switch (method) {
      case 'GET':
        return describe('read', 'R', [{ reference: instance }]);
      case 'PUT':
        return describe('update', 'U', [{ reference: instance }]);
      case 'PATCH':
        return describe('patch', 'U', [{ reference: instance }]);
      case 'DELETE':
        return describe('delete', 'D', [{ reference: instance }]);
      default:
        return byMethod(method, [{ reference: instance }]);
    }
  }
  if (third === '_history' && segments.length === 3) return describe('history-instance', 'R', [{ reference: instance }]);
  if (third === '_history' && segments.length === 4) return describe('vread', 'R', [{ reference: `${instance}/_history/${fourth}` }]);
  return byMethod(method, [{ type }]);
}

/** Transaction or batch: one entity per entry, from the response entry's location or else the request entry's url. */
function bundleExchange(req: FhirRequest, res: FhirResponse): ExchangeDescription {
  const body = isRecord(req.body) ? req.body : {};
  const interaction = body.type === 'batch' ? 'batch' : 'transaction';
  const requests = Array.isArray(body.entry) ? body.entry : [];
  const response = safeResponse(res);
  const responses = response?.resourceType === 'Bundle' ? ((response as fhir4.Bundle).entry ?? []) : [];
  const entities: AuditEntity[] = [];
  for (let i = 0; i < Math.max(requests.length, responses.length); i++) {
    const located = locationReference(responses[i]?.response?.location);
    const entry: unknown = requests[i];
    const request = isRecord(entry) && isRecord(entry.request) ? entry.request : undefined;
    const url = typeof request?.url === 'string' ? request.url : undefined;
    const entity = located ? { reference: located } : url ? urlEntity(url) : undefined;
    if (entity) entities.push(entity);
    const answer = responses[i];
    if (answer?.resource && (request?.method === 'GET' || request?.method === 'HEAD' || answer.response?.status?.startsWith('200'))) {
      entities.push(...disclosed({ status: 200, body: answer.resource }, entities));
    }
  }
  return describe(interaction, 'E', entities);
}

/** The entity an entry's request url names: `Type/id[/_history/vid]`, or `Type?query`, or `Type`. */
function urlEntity(url: string): AuditEntity | undefined {
  const [path, query] = url.replace(/^\/+/, '').split('?', 2);
  const segments = path.split('/').filter((s) => s !== '');
  const [type, id, history, vid] = segments;
  if (type === undefined || !TYPE_RE.test(type)) return undefined;
  if (id !== undefined && !id.startsWith('$') && id !== '_search' && id !== '_history') {
    return { reference: history === '_history' && vid !== undefined ? `${type}/${id}/_history/${vid}` : `${type}/${id}` };
  }
  return withQuery({ type }, query);
}

/** A conditional update or delete: the resource it reached when the response names one, and the criteria. */
function conditional(type: string, query: string, res: FhirResponse): AuditEntity {
  const reference = locationReference(res.location);
  return withQuery(reference ? { reference } : { type }, query);
}

/** `Type/id` of a location (`Type/id/_history/vid`, relative or absolute), without its version. */
function locationReference(location: string | undefined): string | undefined {
  if (!location) return undefined;
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/?#]+)?\/?(?:[?#].*)?$/.exec(location);
  return m ? `${m[1]}/${m[2]}` : undefined;
}

function byMethod(method: string, entities: AuditEntity[]): ExchangeDescription {
  switch (method) {
    case 'GET':
      return describe('read', 'R', entities);
    case 'POST':
      return describe('create', 'C', entities);
    case 'PUT':
      return describe('update', 'U', entities);
    case 'PATCH':
      return describe('patch', 'U', entities);
    case 'DELETE':
      return describe('delete', 'D', entities);
    default:
      return describe('operation', 'E', entities);
  }
}

function describe(interaction: AuditInteraction, action: AuditAction, entities: AuditEntity[]): ExchangeDescription {
  return { interaction, action, entities };
}

function withQuery(entity: AuditEntity, query: string | undefined): AuditEntity {
  return query ? { ...entity, query } : entity;
}

function queryString(query: [string, string][]): string {
  return new URLSearchParams(query).toString();
}

/** The response body, unless it cannot be read: describing an exchange must never throw. */
const PATIENT_FIELDS = ['subject', 'patient', 'for', 'beneficiary'] as const;

/** References of the resources in a read or search answer and of the Patients they concern, not yet in `known`. */
function disclosed(res: FhirResponse, known: AuditEntity[]): AuditEntity[] {
  const body = safeResponse(res);
  if (!body) return [];
  const resources =
    body.resourceType === 'Bundle' ? ((body as fhir4.Bundle).entry ?? []).map((e) => e.resource).filter((r) => r !== undefined) : [body];
  const seen = new Set(known.map((e) => e.reference?.replace(/\/_history\/[^/]*$/, '')).filter((r) => r !== undefined));
  const out: AuditEntity[] = [];
  const add = (reference: string | undefined) => {
    if (reference && !seen.has(reference)) {
      seen.add(reference);
      out.push({ reference });
    }
  };
  for (const r of resources) {
    if (r.resourceType === 'OperationOutcome' || r.id === undefined) continue;
    add(`${r.resourceType}/${r.id}`);
    for (const field of PATIENT_FIELDS) {
      const ref = locationReference((r as unknown as Record<string, { reference?: unknown } | undefined>)[field]?.reference as string | undefined);
      if (ref?.startsWith('Patient/')) add(ref);
    }
  }
  return out;
}

function safeResponse(res: FhirResponse): fhir4.Resource | undefined {
  try {
    return responseResource(res);
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A delivery attempt as an export: which version of which record went to which destination, and how it ended. */
export function describeDelivery(a: SentAttempt): AuditRecord {
  const entities: AuditEntity[] = [{ reference: `${a.resourceType}/${a.resourceId}/_history/${a.version}` }];
  if (a.patientRef && a.patientRef !== `${a.resourceType}/${a.resourceId}`) entities.push({ reference: a.patientRef });
  const status = a.httpStatus ?? (a.outcome === 'delivered' || a.outcome === 'accepted' ? 200 : a.outcome === 'failed' ? 400 : 503);
  return {
    recorded: a.at,
    clientId: a.destination,
    requestId: `delivery-${a.deliveryId}`,
    interaction: 'export',
    action: 'R',
    entities,
    status,
    description: a.outcome,
  };
}
