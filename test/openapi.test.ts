import type { FastifyInstance } from 'fastify';
import { Grant, ADMIN_SCOPE } from '../src/auth/scopes';
import { TokenService } from '../src/auth/tokens';
import { capabilityStatement } from '../src/fhir/capability';
import { checkAccess } from '../src/fhir/access';
import { operations } from '../src/fhir/operations';
import { parsePrefer, type FhirRequest } from '../src/fhir/types';
import { buildApp, type AppOptions } from '../src/http/app';
import { createLogger } from '../src/http/logging';
import {
  buildOpenApiDocument,
  openApiFromCapabilityStatement,
  type HttpMethod,
  type OpenApiDocument,
  type Operation,
  type Parameter,
  type Reference,
} from '../src/http/openapi';
import type { Database } from '../src/storage/db';
import { openTestDatabase } from './support/harness';

const METHODS: HttpMethod[] = ['get', 'post', 'put', 'delete'];
/** Paths that are not FHIR interactions (described by hand in openapi.ts). */
const NON_FHIR = /^\/(auth\/|\.well-known\/|healthz$|readyz$|metrics$|admin\/)/;

interface App {
  app: FastifyInstance;
  db: Database;
}

async function start(options: Partial<Pick<AppOptions, 'auth' | 'config'>> = {}): Promise<App> {
  const db = await openTestDatabase('pglite');
  const app = await buildApp({
    config: { bodyLimitBytes: 1024 * 1024, ...options.config },
    db,
    logger: createLogger('silent'),
    auth: options.auth ?? { mode: 'none' },
  });
  return { app, db };
}

async function stop(a: App | undefined): Promise<void> {
  await a?.app.close();
  await a?.db.close();
}

async function get(app: FastifyInstance, url: string, headers: Record<string, string> = {}) {
  const res = await app.inject({ method: 'GET', url, headers });
  let json: unknown;
  try {
    json = JSON.parse(res.body);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, body: res.body, json };
}

/** Every `METHOD path` of the document's FHIR part. */
function fhirRoutes(doc: OpenApiDocument): Set<string> {
  const out = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    if (NON_FHIR.test(path)) continue;
    for (const m of METHODS) if (item[m]) out.add(`${m.toUpperCase()} ${path}`);
  }
  return out;
}

/** What the CapabilityStatement declares, mapped to routes as FHIR R4 http.html does (independently of openapi.ts). */
function declaredRoutes(cs: fhir4.CapabilityStatement): Set<string> {
  const out = new Set<string>(['GET /metadata']);
  const rest = cs.rest?.[0];
  const system = new Set((rest?.interaction ?? []).map((i) => i.code));
  if (system.has('transaction') || system.has('batch')) out.add('POST /');
  if (system.has('history-system')) out.add('GET /_history');
  const ops = (list: fhir4.CapabilityStatementRestResourceOperation[] | undefined, type?: string) => {
    for (const op of list ?? []) {
      const def = operations.find((o) => o.name === op.name);
      expect(def).toBeDefined();
      for (const level of def!.levels) {
        if ((type === undefined) !== (level === 'system')) continue;
        const path = level === 'system' ? `/$${op.name}` : level === 'type' ? `/${type}/$${op.name}` : `/${type}/{id}/$${op.name}`;
        out.add(`POST ${path}`);
        if (def!.idempotent) out.add(`GET ${path}`);
      }
    }
  };
  ops(rest?.operation);
  for (const r of rest?.resource ?? []) {
    const t = r.type;
    for (const { code } of r.interaction ?? []) {
      switch (code) {
        case 'read':
          out.add(`GET /${t}/{id}`);
          break;
        case 'vread':
          out.add(`GET /${t}/{id}/_history/{vid}`);
          break;
        case 'update':
          out.add(`PUT /${t}/{id}`);
          if (r.conditionalUpdate) out.add(`PUT /${t}`);
          break;
        case 'delete':
          out.add(`DELETE /${t}/{id}`);
          if (r.conditionalDelete === 'single' || r.conditionalDelete === 'multiple') out.add(`DELETE /${t}`);
          break;
        case 'history-instance':
          out.add(`GET /${t}/{id}/_history`);
          break;
        case 'history-type':
          out.add(`GET /${t}/_history`);
          break;
        case 'create':
          out.add(`POST /${t}`);
          break;
        case 'search-type':
          out.add(`GET /${t}`);
          out.add(`POST /${t}/_search`);
          break;
        default:
          throw new Error(`unmapped interaction ${code}`);
      }
    }
    ops(r.operation, t);
  }
  return out;
}

function resolve<T>(doc: OpenApiDocument, x: T | Reference): T {
  const r = x as Reference;
  if (typeof r.$ref !== 'string') return x as T;
  const [, , kind, name] = r.$ref.split('/');
  const found = (doc.components as unknown as Record<string, Record<string, T>>)[kind]?.[name];
  if (!found) throw new Error(`unresolved ${r.$ref}`);
  return found;
}

function operationsOf(doc: OpenApiDocument): [string, HttpMethod, Operation][] {
  return Object.entries(doc.paths).flatMap(([path, item]) => METHODS.filter((m) => item[m]).map((m): [string, HttpMethod, Operation] => [path, m, item[m]!]));
}

describe('OpenAPI description', () => {
  let a: App;
  let doc: OpenApiDocument;
  let cs: fhir4.CapabilityStatement;

  beforeAll(async () => {
    a = await start();
    doc = (await get(a.app, '/docs/openapi.json')).json as OpenApiDocument;
    cs = (await get(a.app, '/metadata')).json as fhir4.CapabilityStatement;
  });
  afterAll(() => stop(a));

  it('serves an OpenAPI 3 document at /docs/openapi.json, with the request base URL as server', async () => {
    const res = await get(a.app, '/docs/openapi.json');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(doc.openapi).toMatch(/^3\.0\.\d+$/);
    expect(doc.info.title).toBeTruthy();
    expect(doc.info.version).toBe(cs.software?.version);
    expect(Object.keys(doc.paths).length).toBeGreaterThan(50);
    expect(doc.servers).toEqual([expect.objectContaining({ url: 'http://localhost:80' })]);
    expect(doc.components.securitySchemes.smartBackendServices.flows?.clientCredentials.tokenUrl).toBe('http://localhost:80/auth/token');
    const other = await get(a.app, '/docs/openapi.json', { host: 'sp.example:8443', 'x-forwarded-proto': 'https' });
    expect((other.json as OpenApiDocument).servers[0].url).toBe('http://sp.example:8443');
  });

  it('is well-formed: unique operationIds, declared path parameters, resolvable $refs, responses everywhere', () => {
    const ids = operationsOf(doc).map(([, , op]) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    const text = JSON.stringify(doc);
    for (const m of text.matchAll(/"\$ref":"([^"]+)"/g)) expect(() => resolve(doc, { $ref: m[1] })).not.toThrow();
    for (const [path, method, op] of operationsOf(doc)) {
      const params = (op.parameters ?? []).map((p) => resolve<Parameter>(doc, p));
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      expect([`${method} ${path}`, params.filter((p) => p.in === 'path').map((p) => p.name).sort()]).toEqual([`${method} ${path}`, templated]);
      expect(Object.keys(op.responses).length).toBeGreaterThan(0);
      expect(op.tags.length).toBeGreaterThan(0);
      if (method === 'get') expect(op.requestBody).toBeUndefined();
    }
  });

  it('has a path and method for every interaction the CapabilityStatement declares, and no other FHIR path', () => {
    const expected = declaredRoutes(cs);
    const actual = fhirRoutes(doc);
    expect([...actual].filter((r) => !expected.has(r)).sort()).toEqual([]);
    expect([...expected].filter((r) => !actual.has(r)).sort()).toEqual([]);
  });

  it('describes every search parameter of every type, as a query parameter and in the POST _search form', () => {
    for (const r of cs.rest![0].resource!) {
      if (!r.interaction?.some((i) => i.code === 'search-type')) continue;
      const search = doc.paths[`/${r.type}`].get!;
      const names = new Map((search.parameters ?? []).map((p) => resolve<Parameter>(doc, p)).map((p) => [p.name, p]));
      const form = doc.paths[`/${r.type}/_search`].post!.requestBody!.content['application/x-www-form-urlencoded'].schema.properties as Record<string, unknown>;
      for (const sp of r.searchParam ?? []) {
        expect([r.type, sp.name, names.get(sp.name)?.in]).toEqual([r.type, sp.name, 'query']);
        expect(names.get(sp.name)?.['x-fhir-search-type']).toBe(sp.type);
        expect(names.get(sp.name)?.description).toContain(sp.type);
        expect(Object.keys(form)).toContain(sp.name);
      }
      if (r.searchInclude?.length) {
        const include = names.get('_include')!;
        expect((include.schema.items as { enum: string[] }).enum).toEqual(r.searchInclude);
      }
    }
    // the stored types search with the common parameters
    const patientParams = doc.paths['/Patient'].get!.parameters!.map((p) => resolve<Parameter>(doc, p).name);
    expect(patientParams).toEqual(expect.arrayContaining(['_id', '_lastUpdated', 'identifier', 'birthdate', '_count', '_sort']));
    // conditional writes take the criteria only, not the result parameters
    const conditional = doc.paths['/Patient'].put!.parameters!.map((p) => resolve<Parameter>(doc, p).name);
    expect(conditional).toEqual(expect.arrayContaining(['identifier', 'birthdate']));
    expect(conditional).not.toContain('_count');
    expect(doc.paths['/Patient'].delete!.parameters!.map((p) => resolve<Parameter>(doc, p).name)).not.toContain('_include');
    // conformance types declare no search parameters in the CapabilityStatement, so none are described
    expect(doc.paths['/CodeSystem'].get!.parameters!.map((p) => resolve<Parameter>(doc, p).name)).toEqual(['_format', '_pretty']);
  });

  it('puts each operation at its levels: POST with Parameters, GET only when idempotent', () => {
    for (const r of cs.rest![0].resource!) {
      for (const op of r.operation ?? []) {
        const def = operations.find((o) => o.name === op.name)!;
        for (const level of def.levels.filter((l) => l !== 'system')) {
          const path = level === 'type' ? `/${r.type}/$${op.name}` : `/${r.type}/{id}/$${op.name}`;
          const item = doc.paths[path];
          expect([path, Boolean(item?.post)]).toEqual([path, true]);
          expect([path, Boolean(item?.get)]).toEqual([path, def.idempotent]);
          expect(JSON.stringify(item.post!.requestBody)).toContain('#/components/schemas/Parameters');
          expect(item.post!.description).toContain(op.definition);
        }
      }
    }
    expect(doc.paths['/ValueSet/$expand'].get).toBeDefined();
    expect(doc.paths['/ValueSet/{id}/$expand'].get).toBeDefined();
    expect(doc.paths['/Patient/$validate'].get).toBeUndefined();
    expect(doc.paths['/ServiceRequest/{id}/$validate'].post!.requestBody!.required).toBe(false);
    expect(doc.paths['/ServiceRequest/$validate'].post!.requestBody!.required).toBe(true);
    expect(JSON.stringify(doc.paths['/ServiceRequest/$validate'].post!.requestBody)).toContain('#/components/schemas/ServiceRequest');
  });

  it('uses application/fhir+json bodies, OperationOutcome errors and the profile links the CapabilityStatement gives', () => {
    const create = doc.paths['/ServiceRequest'].post!;
    expect(Object.keys(create.requestBody!.content)).toEqual(['application/fhir+json', 'application/json']);
    expect(create.requestBody!.content['application/fhir+json'].schema).toEqual({ $ref: '#/components/schemas/ServiceRequest' });
    expect(doc.components.schemas.ServiceRequest.properties).toMatchObject({ resourceType: { enum: ['ServiceRequest'] } });
    expect(Object.keys(create.responses)).toEqual(expect.arrayContaining(['201', '400', '401', '403', '412', '413', '415', '422', '429', '503']));
    const e422 = resolve(doc, create.responses['422']);
    expect(e422.content!['application/fhir+json'].schema).toEqual({ $ref: '#/components/schemas/OperationOutcome' });
    expect(create.parameters!.map((p) => resolve<Parameter>(doc, p).name)).toContain('If-None-Exist');
    expect(doc.paths['/ServiceRequest/{id}'].put!.parameters!.map((p) => resolve<Parameter>(doc, p).name)).toContain('If-Match');
    for (const r of cs.rest![0].resource!) {
      for (const profile of [r.profile, ...(r.supportedProfile ?? [])].filter(Boolean)) {
        expect(doc.components.schemas[r.type].description).toContain(profile);
      }
    }
  });

  it('requires a token with the right SMART scope on every FHIR path but /metadata, as src/fhir/access.ts enforces', () => {
    expect(doc.paths['/metadata'].get!.security).toEqual([]);
    for (const path of ['/.well-known/smart-configuration', '/auth/token', '/healthz', '/readyz', '/metrics']) {
      const item = doc.paths[path];
      for (const m of METHODS) if (item[m]) expect([path, item[m]!.security]).toEqual([path, []]);
    }
    const none = Grant.parse('system/Nothing.r');
    for (const [path, method, op] of operationsOf(doc)) {
      if (path === '/metadata' || !op.security || op.security.length === 0) continue;
      expect(op.security).toContainEqual({ bearerToken: [] });
      if (path === '/' || NON_FHIR.test(path)) continue;
      const scopes = op['x-smart-scopes'];
      expect([method, path, Array.isArray(scopes) && scopes.length > 0]).toEqual([method, path, true]);
      for (const s of scopes!) expect(op.description).toContain(s);
      const req: FhirRequest = {
        method: method.toUpperCase(),
        path: path.slice(1).replace('{id}', 'x1').replace('{vid}', '1'),
        query: op['x-fhir-interaction']?.startsWith('conditional') ? [['identifier', 's|v']] : [],
        body: undefined,
        prefer: parsePrefer(undefined),
      };
      for (const scope of scopes!) {
        expect(() => checkAccess(Grant.parse(scope), req)).not.toThrow();
        const alternatives = op.security.filter((s) => 'smartBackendServices' in s).map((s) => s.smartBackendServices);
        expect(alternatives).toContainEqual([scope]);
      }
      expect(() => checkAccess(none, req)).toThrow();
    }
    for (const path of Object.keys(doc.paths).filter((p) => p.startsWith('/admin/'))) {
      for (const m of METHODS) if (doc.paths[path][m]) expect(doc.paths[path][m]!['x-smart-scopes']).toEqual([ADMIN_SCOPE]);
    }
    const flow = doc.components.securitySchemes.smartBackendServices.flows!.clientCredentials;
    expect(Object.keys(flow.scopes)).toEqual(expect.arrayContaining(['system/ServiceRequest.c', 'system/ServiceRequest.write', ADMIN_SCOPE]));
  });

  it('describes the token endpoint, SMART configuration, probes, metrics and the admin API', () => {
    const token = doc.paths['/auth/token'].post!;
    const form = token.requestBody!.content['application/x-www-form-urlencoded'].schema as { required: string[]; properties: Record<string, { enum?: string[] }> };
    expect(form.required).toEqual(['grant_type', 'scope', 'client_assertion_type', 'client_assertion']);
    expect(form.properties.client_assertion_type.enum).toEqual(['urn:ietf:params:oauth:client-assertion-type:jwt-bearer']);
    const ok = (token.responses['200'] as unknown as { content: Record<string, { schema: { required: string[] } }> }).content['application/json'].schema;
    expect(ok.required).toEqual(['access_token', 'token_type', 'expires_in', 'scope']);
    for (const path of ['/.well-known/smart-configuration', '/healthz', '/readyz', '/metrics', '/admin/deliveries', '/admin/deliveries/stats', '/admin/deliveries/{id}']) {
      expect([path, doc.paths[path]?.get !== undefined]).toEqual([path, true]);
    }
    expect(doc.paths['/admin/deliveries/{id}/replay'].post).toBeDefined();
  });

  it('serves the same document at swagger-ui\'s /docs/json', async () => {
    expect((await get(a.app, '/docs/json')).json).toEqual(doc);
  });

  it('serves Swagger UI at /docs with its assets, ahead of the FHIR wildcard', async () => {
    for (const url of ['/docs', '/docs/']) {
      const page = await get(a.app, url);
      expect([url, page.status]).toEqual([url, 200]);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      expect(page.body).toContain('swagger-ui-bundle.js');
    }
    const css = await get(a.app, '/docs/static/swagger-ui.css');
    expect(css.status).toBe(200);
    expect(css.headers['content-type']).toMatch(/^text\/css/);
    const bundle = await get(a.app, '/docs/static/swagger-ui-bundle.js');
    expect(bundle.status).toBe(200);
    expect(bundle.headers['content-type']).toMatch(/javascript/);
    const init = await get(a.app, '/docs/static/swagger-initializer.js');
    expect(init.status).toBe(200);
    expect(init.body).toContain('SwaggerUIBundle');
    expect(init.body).toContain("resolveUrl('./json')");
    // the FHIR routes still answer, and a missing asset is an ordinary 404
    expect((await get(a.app, '/Patient')).json).toMatchObject({ resourceType: 'Bundle' });
    const missing = await get(a.app, '/docs/static/nope.js');
    expect(missing.status).toBe(404);
  });

  it('emits a path only for what a CapabilityStatement declares', () => {
    const full = capabilityStatement({ baseUrl: 'http://x' }, { operations, conformanceTypes: [] });
    const patient = full.rest![0].resource!.find((r) => r.type === 'Patient')!;
    const trimmed: fhir4.CapabilityStatement = {
      ...full,
      rest: [
        {
          mode: 'server',
          resource: [
            {
              type: 'Patient',
              profile: 'https://fhir.sp-bridge.example/StructureDefinition/SPPatient',
              interaction: [{ code: 'read' }, { code: 'search-type' }],
              searchParam: patient.searchParam,
            },
          ],
        },
      ],
    };
    const small = openApiFromCapabilityStatement(trimmed, { operations });
    expect([...fhirRoutes(small)].sort()).toEqual(['GET /Patient', 'GET /Patient/{id}', 'GET /metadata', 'POST /Patient/_search']);
    expect([...fhirRoutes(small)].sort()).toEqual([...declaredRoutes(trimmed)].sort());
    expect(small.components.schemas.Patient.description).toContain('SPPatient');
    expect(small.tags.find((t) => t.name === 'Patient')?.description).toContain('https://fhir.sp-bridge.example/StructureDefinition/SPPatient');
    // and the full generator agrees with the served CapabilityStatement
    expect(fhirRoutes(buildOpenApiDocument({ operations, conformanceTypes: [] }))).toEqual(declaredRoutes(full));
  });
});

describe('OpenAPI behind a proxy (BASE_URL with a path)', () => {
  let a: App;
  beforeAll(async () => {
    a = await start({ config: { bodyLimitBytes: 1024 * 1024, baseUrl: 'https://sp.example.nhs.uk/fhir' } });
  });
  afterAll(() => stop(a));

  it('names BASE_URL as the server and token URL, and links the UI assets under its path', async () => {
    const doc = (await get(a.app, '/docs/openapi.json')).json as OpenApiDocument;
    expect(doc.servers[0].url).toBe('https://sp.example.nhs.uk/fhir');
    expect(doc.components.securitySchemes.smartBackendServices.flows?.clientCredentials.tokenUrl).toBe('https://sp.example.nhs.uk/fhir/auth/token');
    const page = await get(a.app, '/docs');
    expect(page.body).toContain('/fhir/docs/static/swagger-ui-bundle.js');
  });
});

describe('OpenAPI with SMART authentication on', () => {
  let a: App;
  beforeAll(async () => {
    const db = await openTestDatabase('pglite');
    const tokens = await TokenService.create({ db, config: { mode: 'smart', tokenLifetimeSeconds: 300 }, clients: new Map() });
    const app = await buildApp({ config: { bodyLimitBytes: 1024 * 1024 }, db, logger: createLogger('silent'), auth: { mode: 'smart', tokens } });
    a = { app, db };
  });
  afterAll(() => stop(a));

  it('serves /docs, its assets and the document without a token, while FHIR paths need one', async () => {
    for (const url of ['/docs', '/docs/', '/docs/openapi.json', '/docs/json', '/docs/static/swagger-ui.css', '/docs/static/swagger-initializer.js']) {
      expect([url, (await get(a.app, url)).status]).toEqual([url, 200]);
    }
    expect((await get(a.app, '/metadata')).status).toBe(200);
    expect((await get(a.app, '/Patient')).status).toBe(401);
  });
});
