import * as path from 'node:path';
import { Harness } from '../support/harness';
import { EXAMPLES, examples, readJson } from './helpers';

/**
 * The examples are also sample requests for integration testers: the transaction Bundle is POSTed as-is, twice
 * (every entry is a conditional create, so the second POST creates nothing), and the standalone examples are loaded
 * with PUT, Patient first. PGlite only: this is about the files, not the store.
 */
describe('profiles/examples against the server', () => {
  const h = new Harness('pglite');
  beforeAll(() => h.start());
  afterAll(() => h.stop());

  it('accepts Bundle-sp-referral-transaction.json as-is, and again without duplicating anything', async () => {
    const bundle = readJson<{ entry: unknown[] }>(path.join(EXAMPLES, 'Bundle-sp-referral-transaction.json'));
    const first = await h.request('POST', '/', bundle);
    expect({ status: first.status, body: first.status === 200 ? '' : first.body }).toEqual({ status: 200, body: '' });
    const statuses = (first.json.entry as { response: { status: string } }[]).map((e) => e.response.status);
    expect(statuses.every((s) => s.startsWith('201'))).toBe(true);
    expect(statuses).toHaveLength(bundle.entry.length);

    const again = await h.request('POST', '/', bundle);
    expect(again.status).toBe(200);
    expect((again.json.entry as { response: { status: string } }[]).every((e) => e.response.status.startsWith('200'))).toBe(true);

    const patients = await h.request('GET', '/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919');
    expect(patients.json.entry).toHaveLength(1);
    const patientRef = `Patient/${patients.json.entry[0].resource.id}`;
    const referrals = await h.request('GET', `/ServiceRequest?subject=${patientRef}`);
    expect(referrals.json.entry).toHaveLength(1);
    const tasks = await h.request('GET', `/Task?focus=ServiceRequest/${referrals.json.entry[0].resource.id}`);
    expect(tasks.status).toBe(200);
  });

  it('accepts the standalone examples with PUT, Patient first', async () => {
    const ordered = examples()
      .filter((e) => e.resource.resourceType !== 'Bundle')
      .sort((a, b) => Number(b.resource.resourceType === 'Patient') - Number(a.resource.resourceType === 'Patient'));
    for (const { file, resource } of ordered) {
      const res = await h.request('PUT', `/${resource.resourceType}/${String(resource.id)}`, resource);
      expect({ file, status: res.status, body: res.status < 300 ? '' : res.body }).toEqual({ file, status: 201, body: '' });
    }
  });
});
