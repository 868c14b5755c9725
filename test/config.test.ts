import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, VARIABLES } from '../src/config';

describe('configuration', () => {
  it('has working defaults', () => {
    const c = loadConfig({ AUTH_MODE: 'none' });
    expect(c).toMatchObject({ host: '127.0.0.1', port: 8080, bodyLimitBytes: 5 * 1024 * 1024, logLevel: 'info', unknownCodeSystem: 'warning' });
    expect(c.databaseUrl).toBeUndefined();
    expect(c.dataDir).toMatch(/data$/);
  });

  it('names every bad variable at once', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud', UNKNOWN_CODE_SYSTEM: 'error', BODY_LIMIT_BYTES: '-1', AUTH_MODE: 'sometimes', RATE_LIMIT_PER_MINUTE: '0', AUTH_EXTERNAL_ISSUER: 'https://idp' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    for (const name of ['PORT', 'DATABASE_URL', 'LOG_LEVEL', 'UNKNOWN_CODE_SYSTEM', 'BODY_LIMIT_BYTES', 'AUTH_MODE', 'RATE_LIMIT_PER_MINUTE', 'AUTH_EXTERNAL_JWKS_URL']) expect(problems).toContain(name);
  });

  it('reads PostgreSQL and proxy settings', () => {
    const c = loadConfig({ AUTH_MODE: 'none', DATABASE_URL: 'postgres://u:p@db:5432/sp', BASE_URL: 'https://sp.example.nhs.uk/fhir/', PORT: '9000' });
    expect(c.databaseUrl).toBe('postgres://u:p@db:5432/sp');
    expect(c.baseUrl).toBe('https://sp.example.nhs.uk/fhir');
    expect(c.port).toBe(9000);
  });

  it('reads secrets from the files their _FILE variables name, and refuses both forms at once', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'spb-config-'));
    const file = path.join(dir, 'db-url');
    writeFileSync(file, 'postgres://sp:secret@db:5432/sp\n');
    expect(loadConfig({ AUTH_MODE: 'none', DATABASE_URL_FILE: file }).databaseUrl).toBe('postgres://sp:secret@db:5432/sp');
    expect(() => loadConfig({ AUTH_MODE: 'none', DATABASE_URL_FILE: file, DATABASE_URL: 'postgres://x' })).toThrow(/not both/);
    expect(() => loadConfig({ AUTH_MODE: 'none', DATABASE_URL_FILE: path.join(dir, 'missing') })).toThrow(/DATABASE_URL_FILE/);
  });

  it('is documented: README lists every variable the service reads', () => {
    const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    for (const v of VARIABLES) expect(readme).toContain(`| \`${v.name}\` |`);
  });

  it('takes the trusted proxy as addresses or CIDRs and names a bad one', () => {
    expect(loadConfig({ AUTH_MODE: 'none', TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy).toBe('10.0.0.0/8, 127.0.0.1');
    expect(() => loadConfig({ AUTH_MODE: 'none', TRUST_PROXY: 'the proxy' })).toThrow(/TRUST_PROXY/);
  });

  it('needs BASE_URL when clients are registered: it fixes the audience of their assertions', () => {
    expect(() => loadConfig({ AUTH_CLIENTS_FILE: 'clients.yaml' })).toThrow(/BASE_URL is required/);
    expect(loadConfig({ AUTH_CLIENTS_FILE: 'clients.yaml', BASE_URL: 'https://sp.example.nhs.uk' }).auth.mode).toBe('smart');
  });
});
