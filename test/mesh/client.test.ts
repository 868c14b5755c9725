import { createHash, randomBytes } from 'node:crypto';
import { MeshClient, MeshError } from '../../src/mesh/client';
import { meshAuthorizationHeader } from '../../src/mesh/auth';
import { gpProviderAddress, MeshHeaderError, mexHeaderProblem, parseGpProviderAddress } from '../../src/mesh/headers';
import { startMockMesh, type MockMesh } from '../../src/mock/mesh';
import vectors from './fixtures/auth-header-vectors.json';

let mesh: MockMesh;
const client = (mailboxId: string, extra: Partial<ConstructorParameters<typeof MeshClient>[0]> = {}) =>
  new MeshClient({ baseUrl: mesh.url, mailboxId, mailboxPassword: 'password', sharedKey: 'TestKey', timeoutMs: 10_000, ...extra });

beforeAll(async () => {
  mesh = await startMockMesh({ port: 0 });
});
afterAll(async () => {
  await mesh.close();
});
beforeEach(() => mesh.reset());

async function raw(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${mesh.url}${path}`, init);
}

describe('MESH client against mock-mesh (loopback)', () => {
  test('handshake succeeds with a valid header; vectors are accepted once, then the nonce is spent', async () => {
    await expect(client('X26ABC1').handshake()).resolves.toBeUndefined();
    const v = vectors.positive.find((x) => x.shared_key === 'TestKey' && x.mailbox_id === 'X26ABC1')!;
    const headers = { authorization: v.expected_authorization_header, accept: 'application/vnd.mesh.v2+json' };
    expect((await raw('/messageexchange/X26ABC1', { method: 'POST', headers })).status).toBe(200);
    const again = await raw('/messageexchange/X26ABC1', { method: 'POST', headers });
    expect(again.status).toBe(403);
    expect(await again.json()).toEqual({ errorDescription: 'Invalid Authentication Token' });
  });

  test('bad auth is rejected with 403 and a MeshError the caller must not retry', async () => {
    const bad = client('X26ABC1', { sharedKey: 'Banana' });
    const err = await bad.handshake().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).status).toBe(403);
    expect((err as MeshError).retryable).toBe(false);
    await expect(client('X26ABC1', { mailboxPassword: 'wrong' }).handshake()).rejects.toMatchObject({ status: 403 });
    const wrongPath = await raw('/messageexchange/X26ABC2', {
      headers: { authorization: meshAuthorizationHeader({ mailboxId: 'X26ABC1', mailboxPassword: 'password', sharedKey: 'TestKey' }) },
    });
    expect(wrongPath.status).toBe(403);
    expect(await wrongPath.json()).toEqual({ errorDescription: 'Mailbox id does not match token' });
    expect((await raw('/messageexchange/X26ABC1')).status).toBe(403);
    const badAccept = await raw('/messageexchange/X26ABC1', {
      headers: {
        accept: 'application/vnd.mesh.v9+json',
        authorization: meshAuthorizationHeader({ mailboxId: 'X26ABC1', mailboxPassword: 'password', sharedKey: 'TestKey' }),
      },
    });
    expect(badAccept.status).toBe(400);
  });

  test('send, list, download and acknowledge round trip with mex headers', async () => {
    const sender = client('X26ABC1');
    const receiver = client('X26ABC2');
    const id = await sender.send('hello MESH', {
      to: 'x26abc2',
      workflowId: 'TEST_WORKFLOW',
      subject: 'A subject',
      localId: 'A83008',
      fileName: 'hello.txt',
    });
    expect(id).toMatch(/^\d{17}\d{3}_[0-9A-F]{6}$/);
    expect(await receiver.listInbox()).toEqual([id]);
    const msg = await receiver.download(id);
    expect(msg.body.toString()).toBe('hello MESH');
    expect(msg.mex).toMatchObject({
      from: 'X26ABC1',
      to: 'X26ABC2',
      workflowid: 'TEST_WORKFLOW',
      subject: 'A subject',
      localid: 'A83008',
      filename: 'hello.txt',
      messagetype: 'DATA',
      messageid: id,
      'content-checksum': `sha256:${createHash('sha256').update('hello MESH').digest('hex')}`,
    });
    await receiver.acknowledge(id);
    expect(await receiver.listInbox()).toEqual([]);
    await expect(receiver.download(id)).rejects.toMatchObject({ status: 410 });
    await expect(receiver.acknowledge('NOPE')).rejects.toMatchObject({ status: 404, meshErrorCode: '20' });
  });

  test('a multi-megabyte message is chunked on upload and reassembled on download', async () => {
    const sender = client('X26ABC1', { chunkSizeBytes: 1024 * 1024 });
    const body = randomBytes(3 * 1024 * 1024 + 12345);
    const id = await sender.send(body, { to: 'X26ABC2', workflowId: 'TEST_WORKFLOW', fileName: 'big.bin' });
    const stored = mesh.messages().find((m) => m.messageId === id)!;
    expect(stored.totalChunks).toBe(4);
    expect(stored.chunks.map((c) => c.length)).toEqual([1048576, 1048576, 1048576, 12345]);
    const msg = await client('X26ABC2').download(id);
    expect(msg.mex['chunk-range']).toBe('1:4');
    expect(msg.body.equals(body)).toBe(true);
  });

  test('gzip-compressed chunks are decoded on download', async () => {
    const body = Buffer.from('x'.repeat(300_000));
    const id = await client('X26ABC1', { chunkSizeBytes: 100_000 }).send(body, { to: 'X26ABC2', workflowId: 'TEST_WORKFLOW', compress: true });
    expect(mesh.messages().find((m) => m.messageId === id)!.chunks[0].length).toBeLessThan(10_000);
    expect(mesh.body(id).equals(body)).toBe(true);
    expect((await client('X26ABC2').download(id)).body.equals(body)).toBe(true);
  });

  test('inbox paging follows links.next', async () => {
    const sender = client('X26ABC1');
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await sender.send(`m${i}`, { to: 'X26ABC2', workflowId: 'TEST_WORKFLOW' }));
    const receiver = client('X26ABC2');
    const first = await receiver.inboxPage({ maxResults: 3 });
    expect(first.messages).toEqual(ids.slice(0, 3));
    expect(first.next).toContain('continue_from=');
    expect(first.approxInboxCount).toBe(7);
    const second = await receiver.inboxPage({ next: first.next });
    expect(second.messages).toEqual(ids.slice(3, 6));
    expect(await receiver.listInbox({ maxResults: 3 })).toEqual(ids);
    for (const id of ids.slice(0, 5)) await receiver.acknowledge(id);
    expect(await receiver.listInbox({ maxResults: 2 })).toEqual(ids.slice(5));
    expect(await client('X26ABC1').listInbox()).toEqual([]);
  });

  test('workflow_filter selects messages', async () => {
    const sender = client('X26ABC1');
    const a = await sender.send('a', { to: 'X26ABC2', workflowId: 'TEST_WORKFLOW' });
    const b = await sender.send('b', { to: 'X26ABC2', workflowId: 'TEST_WORKFLOW_ACK' });
    expect(await client('X26ABC2').listInbox({ workflowFilter: 'TEST_WORKFLOW' })).toEqual([a]);
    expect(await client('X26ABC2').listInbox({ workflowFilter: '*_ACK*' })).toEqual([b]);
  });

  test('send errors: unknown recipient, malformed headers rejected client-side and server-side', async () => {
    const sender = client('X26ABC1');
    await expect(sender.send('x', { to: 'NOBODY', workflowId: 'TEST_WORKFLOW' })).rejects.toMatchObject({ status: 417, meshErrorCode: '12' });
    await expect(sender.send('x', { to: 'X26ABC2', workflowId: 'TEST_WORKFLOW', subject: 'bad\nsubject' })).rejects.toBeInstanceOf(MeshHeaderError);
    await expect(sender.send('x', { to: 'X26ABC2', workflowId: 'W'.repeat(301) })).rejects.toBeInstanceOf(MeshHeaderError);
    await expect(sender.send('x', { to: 'https://evil', workflowId: 'TEST_WORKFLOW' })).rejects.toBeInstanceOf(MeshHeaderError);
    const res = await raw('/messageexchange/X26ABC1/outbox', {
      method: 'POST',
      headers: {
        accept: 'application/vnd.mesh.v2+json',
        authorization: meshAuthorizationHeader({ mailboxId: 'X26ABC1', mailboxPassword: 'password', sharedKey: 'TestKey' }),
        'mex-to': 'X26ABC2',
        'mex-workflowid': 'http://x',
      },
      body: 'x',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ detail: [{ code: '06', msg: 'MalformedControlFile' }] });
    await expect(sender.send('x', { to: 'GPPROVIDER_9434765918_09011955_Mowers', workflowId: 'X' })).rejects.toMatchObject({
      status: 417,
      meshErrorCode: 'EPL-151',
    });
  });

  test('tracking and endpoint lookup', async () => {
    const id = await client('X26ABC1').send('t', { to: 'X26ABC2', workflowId: 'TEST_WORKFLOW' });
    expect(await client('X26ABC1').track(id)).toMatchObject({ message_id: id, status: 'Accepted', recipient: 'X26ABC2' });
    await client('X26ABC2').acknowledge(id);
    expect(await client('X26ABC1').track(id)).toMatchObject({ status: 'Acknowledged' });
    await expect(client('X26ABC2').track(id)).rejects.toMatchObject({ status: 404 });
    expect(await client('X26ABC1').endpointLookup('X27', 'TEST_WORKFLOW')).toEqual([{ mailboxId: 'X26ABC3', mailboxName: 'TESTMB3' }]);
  });

  test('v1 clients get v1 bodies', async () => {
    const auth = () => meshAuthorizationHeader({ mailboxId: 'X26ABC1', mailboxPassword: 'password', sharedKey: 'TestKey' });
    const sent = await raw('/messageexchange/X26ABC1/outbox', {
      method: 'POST',
      headers: { accept: 'application/json', authorization: auth(), 'mex-to': 'X26ABC1', 'mex-workflowid': 'TEST_WORKFLOW2' },
      body: 'v1',
    });
    expect(sent.status).toBe(202);
    const { messageID } = (await sent.json()) as { messageID: string };
    const list = await raw('/messageexchange/X26ABC1/inbox', { headers: { authorization: auth() } });
    expect(await list.json()).toEqual({ messages: [messageID] });
  });

  test('network failure is a retryable MeshError', async () => {
    const dead = new MeshClient({ baseUrl: 'http://127.0.0.1:1', mailboxId: 'X26ABC1', mailboxPassword: 'p', sharedKey: 'k' });
    await expect(dead.handshake()).rejects.toMatchObject({ name: 'MeshError', retryable: true, status: undefined });
  });
});

describe('GPPROVIDER addressing and header rules', () => {
  test('builds the address from NHS number, birth date and surname', () => {
    expect(gpProviderAddress({ nhsNumber: '943 476 5919', birthDate: '1955-01-09', surname: 'Mowers' })).toBe(
      'GPPROVIDER_9434765919_09011955_Mowers',
    );
    expect(gpProviderAddress({ nhsNumber: '9434765919', birthDate: '1955-01-09', surname: "O'Brien-Smith Jr" })).toBe(
      "GPPROVIDER_9434765919_09011955_O'Brien-SmithJr",
    );
    expect(gpProviderAddress({ nhsNumber: '9434765919', birthDate: '1955-01-09', surname: 'Ní Dhúill' })).toBe('GPPROVIDER_9434765919_09011955_NiDhuill');
    expect(parseGpProviderAddress('GPPROVIDER_9434765919_09011955_Mowers')).toEqual({ nhsNumber: '9434765919', birthDate: '1955-01-09', surname: 'Mowers' });
  });

  test.each([
    [{ nhsNumber: '9434765918', birthDate: '1955-01-09', surname: 'Mowers' }, 'NHS number'],
    [{ nhsNumber: '9434765919', birthDate: '1955-01', surname: 'Mowers' }, 'full date'],
    [{ nhsNumber: '9434765919', birthDate: '1955-02-30', surname: 'Mowers' }, 'real date'],
    [{ nhsNumber: '9434765919', birthDate: '1955-01-09', surname: '  ' }, 'surname is empty'],
    [{ nhsNumber: '9434765919', birthDate: '1955-01-09', surname: 'Mow\u0000ers' }, 'control'],
  ])('rejects %o', (patient, message) => {
    expect(() => gpProviderAddress(patient)).toThrow(message);
  });

  test('header limits and content', () => {
    expect(mexHeaderProblem('mex-to', 'A'.repeat(101))).toMatch(/100/);
    expect(mexHeaderProblem('mex-subject', 'ok subject')).toBeUndefined();
    expect(mexHeaderProblem('mex-subject', 'tab\there')).toMatch(/control/);
    expect(mexHeaderProblem('mex-content-checksum', 'md5:abc!')).toBeDefined();
    expect(mexHeaderProblem('mex-chunk-range', '1:2')).toBeUndefined();
    expect(mexHeaderProblem('mex-chunk-range', '1-2')).toBeDefined();
  });
});
