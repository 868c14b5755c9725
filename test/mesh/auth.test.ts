import {
  meshAuthorizationHeader,
  meshHmac,
  meshTimestamp,
  parseMeshAuthorization,
  timestampWithinWindow,
  verifyMeshAuthorization,
} from '../../src/mesh/auth';
import vectors from './fixtures/auth-header-vectors.json';

const passwords: Record<string, string> = { X26ABC1: 'password', X26ABC2: 'password', X26ABC3: 'password' };

describe('NHSMESH Authorization header', () => {
  test.each(vectors.positive.map((v) => [`${v.mailbox_id} ${v.shared_key} count ${v.nonce_count}`, v]))(
    'reproduces vector %s',
    (_name, v) => {
      expect(meshHmac(v.shared_key, v.mailbox_id, v.nonce, v.nonce_count, v.mailbox_password, v.timestamp)).toBe(
        v.expected_hmac_sha256_hex,
      );
      const header = meshAuthorizationHeader(
        { mailboxId: v.mailbox_id, mailboxPassword: v.mailbox_password, sharedKey: v.shared_key },
        { nonce: v.nonce, nonceCount: v.nonce_count, timestamp: v.timestamp },
      );
      expect(header).toBe(v.expected_authorization_header);
      expect(verifyMeshAuthorization(header, v.mailbox_id, v.shared_key, (id) => passwords[id])).toMatchObject({ ok: true });
    },
  );

  test('upper-cases the mailbox id and rejects ids that cannot appear in the header', () => {
    const v = vectors.positive[0];
    const header = meshAuthorizationHeader(
      { mailboxId: v.mailbox_id.toLowerCase(), mailboxPassword: v.mailbox_password, sharedKey: v.shared_key },
      { nonce: v.nonce, nonceCount: v.nonce_count, timestamp: v.timestamp },
    );
    expect(header).toBe(v.expected_authorization_header);
    expect(() => meshAuthorizationHeader({ mailboxId: 'X26:ABC1', mailboxPassword: 'p', sharedKey: 'k' })).toThrow();
  });

  test('a fresh nonce per header and a current UTC timestamp', () => {
    const creds = { mailboxId: 'X26ABC1', mailboxPassword: 'password', sharedKey: 'TestKey' };
    const a = parseMeshAuthorization(meshAuthorizationHeader(creds))!;
    const b = parseMeshAuthorization(meshAuthorizationHeader(creds))!;
    expect(a.nonce).not.toBe(b.nonce);
    expect(a.nonce).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.timestamp).toMatch(/^\d{12}$/);
    expect(timestampWithinWindow(a.timestamp)).toBe(true);
    expect(meshTimestamp(new Date(Date.UTC(2015, 10, 20, 10, 38, 59)))).toBe('201511201038');
  });

  test.each(vectors.negative_sandbox.filter((n) => Array.isArray(n.expect)).map((n) => [(n as { why?: string }).why ?? n.authorization, n]))(
    'rejects %s as the sandbox does',
    (_name, n) => {
      const [status, message] = n.expect as [number, string];
      expect(verifyMeshAuthorization(n.authorization, n.path_mailbox, 'TestKey', (id) => passwords[id])).toEqual({
        ok: false,
        status,
        message,
      });
    },
  );

  test('accepts an upper-case hex digest (compared case-insensitively)', () => {
    const n = vectors.negative_sandbox.find((x) => x.expect === 'accepted by sandbox (hex digest compared case-insensitively)')!;
    expect(verifyMeshAuthorization(n.authorization, n.path_mailbox, 'TestKey', (id) => passwords[id])).toMatchObject({ ok: true });
  });

  test('the canned VALID nonce is not accepted with full HMAC checking', () => {
    const n = vectors.negative_sandbox.find((x) => x.authorization.includes(':VALID:'))!;
    expect(verifyMeshAuthorization(n.authorization, n.path_mailbox, 'TestKey', (id) => passwords[id])).toMatchObject({ ok: false });
  });

  test('wrong shared key or password and unknown mailbox are rejected', () => {
    const v = vectors.positive[0];
    const header = v.expected_authorization_header;
    expect(verifyMeshAuthorization(header, v.mailbox_id, 'Banana', (id) => passwords[id])).toMatchObject({ ok: false, message: 'Invalid Authentication Token' });
    expect(verifyMeshAuthorization(header, v.mailbox_id, v.shared_key, () => 'other')).toMatchObject({ ok: false, message: 'Invalid Authentication Token' });
    expect(verifyMeshAuthorization(header, v.mailbox_id, v.shared_key, () => undefined)).toMatchObject({ ok: false, message: 'No mailbox matched' });
  });

  test('timestamp window is two hours', () => {
    const now = new Date(Date.UTC(2024, 0, 31, 12, 0));
    expect(timestampWithinWindow('202401311200', now)).toBe(true);
    expect(timestampWithinWindow('202401311000', now)).toBe(true);
    expect(timestampWithinWindow('202401310959', now)).toBe(false);
    expect(timestampWithinWindow('2024013112', now)).toBe(false);
  });
});
