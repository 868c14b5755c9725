import { describeEachStore } from './support/harness';
import { patient } from './fixtures';

describeEachStore('smoke', (h) => {
  it('creates and reads a patient', async () => {
    const created = await h.request('POST', '/Patient', patient());
    expect(created.status).toBe(201);
    const read = await h.request('GET', `/Patient/${created.json.id}`);
    expect(read.status).toBe(200);
    expect(read.json.identifier[0].value).toBe('9000000009');
  });
});
