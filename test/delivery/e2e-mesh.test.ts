import { loadDestinationsFile, setUpDelivery, type DeliveryEngine } from '../../src/delivery';
import { buildApp } from '../../src/http/app';
import { createLogger } from '../../src/http/logging';
import { readItkHeader } from '../../src/mesh/itk3';
import { startMockMesh, type MockMesh } from '../../src/mock/mesh';
import { patient, referral } from '../fixtures';
import { Harness, openTestDatabase, type StoreName } from '../support/harness';
import { eachStore, waitFor, writeDestinations } from './support';

/**
 * End to end over MESH: a Patient and a referral written through the FHIR API; the engine reads the referenced
 * Patient from the store (item.patient) so mesh-send-document can address GPPROVIDER_<NHS>_<DOB>_<SURNAME>; mock-mesh
 * routes it to the GP mailbox, whose ITK3 responder answers; the adapter's start() loop reports the
 * acknowledgement and the delivery ends delivered (or dead on a failure ack).
 */

const ENV = { E2E_MESH_PASSWORD: 'password', E2E_MESH_SHARED_KEY: 'TestKey' };
const NHS = '9449310475';

interface AdminView {
  delivery: { id: string; state: string; correlationId: string | null };
  attempts: { outcome: string; httpStatus: number | null; summary: string; operationOutcome: fhir4.OperationOutcome | null }[];
}

class MeshE2E extends Harness {
  engine!: DeliveryEngine;

  constructor(
    store: StoreName,
    private readonly mesh: MockMesh,
  ) {
    super(store);
  }

  override async start(): Promise<void> {
    const file = writeDestinations({
      worker: { concurrency: 4, pollIntervalMs: 20, leaseMs: 60_000, attemptTimeoutMs: 20_000, shutdownTimeoutMs: 2_000 },
      destinations: [
        {
          id: 'gp-mesh',
          adapter: 'mesh-send-document',
          settings: {
            baseUrl: this.mesh.url,
            mailboxId: 'X26ABC1',
            mailboxPasswordEnv: 'E2E_MESH_PASSWORD',
            sharedKeyEnv: 'E2E_MESH_SHARED_KEY',
            senderOdsCode: 'A83008',
            senderOrganisationName: 'Riverside Social Prescribing Service',
            pollIntervalMs: 20,
          },
          receives: [{ resourceType: 'ServiceRequest', events: ['created'] }],
          retry: { maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 1_000 },
        },
      ],
    });
    const config = loadDestinationsFile(file, { env: ENV });
    this.db = await openTestDatabase(this.store);
    const delivery = setUpDelivery(config, this.db);
    this.engine = delivery.engine;
    this.app = await buildApp({
      auth: { mode: 'none' },
      config: { bodyLimitBytes: 4 * 1024 * 1024 },
      db: this.db,
      logger: createLogger('silent'),
      delivery: { outbox: delivery.outbox, destinations: delivery.destinationIds },
    });
    await this.engine.start();
  }

  override async stop(): Promise<void> {
    await this.engine?.stop();
    await super.stop();
  }

  async create(resource: fhir4.Resource): Promise<string> {
    const res = await this.request('POST', `/${resource.resourceType}`, resource);
    expect(res.status).toBe(201);
    return res.json.id as string;
  }

  async settled(key: string, state: string): Promise<AdminView> {
    let view: AdminView | undefined;
    try {
      await waitFor(`${key} to be ${state}`, async () => {
        const { rows } = await this.db.query<{ id: string }>('SELECT id::text AS id FROM deliveries WHERE idempotency_key = $1', [key]);
        if (!rows[0]) return false;
        const res = await this.request('GET', `/admin/deliveries/${rows[0].id}`);
        view = res.json as AdminView;
        return view.delivery.state === state;
      }, 30_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(view)}`);
    }
    return view as AdminView;
  }
}

let mesh: MockMesh;
beforeAll(async () => {
  mesh = await startMockMesh({ port: 0 });
});
afterAll(async () => {
  await mesh?.close();
});

async function withMesh(store: StoreName, fn: (h: MeshE2E) => Promise<void>): Promise<void> {
  mesh.reset();
  const h = new MeshE2E(store, mesh);
  await h.start();
  try {
    await fn(h);
  } finally {
    await h.stop();
  }
}

/** Patient and referral through the API: the referral only references the Patient. */
async function writeReferral(h: MeshE2E): Promise<{ patientId: string; id: string; key: string }> {
  const patientId = await h.create(patient(NHS, { name: [{ use: 'official', family: 'Mowbray', given: ['Mary'] }], birthDate: '1948-07-03' }));
  const sent = referral(`Patient/${patientId}`);
  expect(sent.contained).toBeUndefined();
  const id = await h.create(sent);
  return { patientId, id, key: `gp-mesh:ServiceRequest/${id}/_history/1` };
}

const sentDocuments = () => mesh.messages().filter((m) => m.workflowId === 'GPCONNECT_SEND_DOCUMENT');

eachStore('end to end: mesh-send-document to mock-mesh', (store) => {
  it('a referral reaches the GP mailbox addressed from the stored Patient; the ITK3 acks make it delivered', () =>
    withMesh(store, async (h) => {
      const { key } = await writeReferral(h);
      const view = await h.settled(key, 'delivered');

      const [message] = sentDocuments();
      expect(sentDocuments()).toHaveLength(1);
      expect(message).toMatchObject({ from: 'X26ABC1', to: 'X26ABC2', toAddress: `GPPROVIDER_${NHS}_03071948_MOWBRAY` });
      const header = readItkHeader(JSON.parse(mesh.body(message.messageId).toString('utf8')));
      expect(header).toBeDefined();
      expect(JSON.stringify(header!.bundle)).toContain(NHS);
      // Acknowledgements (infrastructure, then business) were sent back to our mailbox and consumed.
      const acks = mesh.messages().filter((m) => m.workflowId === 'GPCONNECT_SEND_DOCUMENT_ACK');
      expect(acks.length).toBeGreaterThanOrEqual(1);
      await waitFor('the acks to be acknowledged in MESH', () => mesh.inbox('X26ABC1').length === 0, 10_000);

      expect(view.delivery.correlationId).toEqual(expect.any(String));
      expect(view.attempts.map((a) => a.outcome)).toEqual(['accepted', 'acknowledged']);
      expect(view.attempts[0]).toMatchObject({ httpStatus: 202, summary: expect.stringContaining('awaiting ITK3 acknowledgement') });
      expect(view.attempts[1].summary).toMatch(/ITK3 business acknowledgement/);
    }));

  it('a failure acknowledgement (ITK 20009) makes the delivery dead, with the reason', () =>
    withMesh(store, async (h) => {
      const res = await fetch(`${mesh.url}/_control/next-ack`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: '20009' }),
      });
      expect(res.status).toBe(200);
      const { key } = await writeReferral(h);
      const view = await h.settled(key, 'dead');
      expect(sentDocuments()).toHaveLength(1);
      expect(view.attempts.map((a) => a.outcome)).toEqual(['accepted', 'rejected']);
      expect(view.attempts[1].summary).toMatch(/20009/);
      expect(view.attempts[1].operationOutcome).toMatchObject({
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', details: { coding: [{ code: '20009' }] } }],
      });
      const dead = await h.request('GET', '/admin/deliveries?state=dead');
      expect(dead.json.items).toHaveLength(1);
    }));
});
