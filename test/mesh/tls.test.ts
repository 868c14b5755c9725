import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshClientFromSettings } from '../../src/delivery/adapters/mesh-send-document';
import { startMockMesh, type MockMesh } from '../../src/mock/mesh';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const maybe = hasOpenssl() ? describe : describe.skip;

maybe('MESH over mutual TLS (client certificate from settings)', () => {
  let dir: string;
  let mesh: MockMesh;
  const file = (name: string) => join(dir, name);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-tls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=Test MESH CA');
    for (const [name, cn] of [['server', '127.0.0.1'], ['client', 'X26ABC1']]) {
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1',
        ...(name === 'server' ? ['-extfile', writeExt(dir)] : []));
    }
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '1', '-subj', '/CN=X26ABC1');
    mesh = await startMockMesh({
      port: 0,
      tls: { cert: readFileSync(file('server.pem')), key: readFileSync(file('server.key')), ca: readFileSync(file('ca.pem')) },
    });
  });

  afterAll(async () => {
    await mesh?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const base = () => ({
    baseUrl: mesh.url,
    mailboxId: 'X26ABC1',
    mailboxPasswordEnv: 'P',
    sharedKeyEnv: 'K',
    senderOdsCode: 'A83008',
  });
  const env = { P: 'password', K: 'TestKey' };

  test('handshake succeeds with the client certificate', async () => {
    const client = meshClientFromSettings(
      { ...base(), tls: { certFile: file('client.pem'), keyFile: file('client.key'), caFile: file('ca.pem') } },
      env,
    );
    await expect(client.handshake()).resolves.toBeUndefined();
  });

  test('a certificate the server does not trust, or none, fails the TLS handshake (MeshError without status)', async () => {
    const rogue = meshClientFromSettings({ ...base(), tls: { certFile: file('rogue.pem'), keyFile: file('rogue.key'), caFile: file('ca.pem') } }, env);
    await expect(rogue.handshake()).rejects.toMatchObject({ name: 'MeshError', status: undefined });
    const none = meshClientFromSettings(base(), env);
    await expect(none.handshake()).rejects.toMatchObject({ name: 'MeshError', status: undefined });
  });
});

function writeExt(dir: string): string {
  const path = join(dir, 'server.ext');
  writeFileSync(path, 'subjectAltName=IP:127.0.0.1\n');
  return 'server.ext';
}
