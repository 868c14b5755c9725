import { writeFileSync } from 'node:fs';
import { ConfigError, loadConfig } from '../../src/config';
import { DestinationsError, loadDestinationsFile, loadDeliveryConfig } from '../../src/delivery';
import { adapterRef, writeDestinations } from './support';

/** The destinations file is validated in full at start-up; every problem names its field. */

function problemsOf(doc: unknown | ((file: string) => unknown)): string[] {
  const file = writeDestinations('{}');
  writeFileSync(file, typeof doc === 'function' ? JSON.stringify((doc as (f: string) => unknown)(file)) : typeof doc === 'string' ? doc : JSON.stringify(doc));
  try {
    loadDestinationsFile(file);
  } catch (err) {
    expect(err).toBeInstanceOf(DestinationsError);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('DESTINATIONS_FILE');
    return (err as ConfigError).problems;
  }
  throw new Error('expected the destinations file to be rejected');
}

const dest = (file: string, extra: Record<string, unknown> = {}) => ({
  id: 'gp',
  adapter: adapterRef(file),
  settings: { channel: 'config-test' },
  receives: [{ resourceType: 'ServiceRequest', events: ['created'] }],
  ...extra,
});

describe('destinations file', () => {
  it('loads a valid file with a module: adapter relative to the file, with defaults', () => {
    const file = writeDestinations('{}');
    writeFileSync(file, JSON.stringify({ destinations: [dest(file)] }));
    const config = loadDestinationsFile(file);
    expect(config.destinations).toHaveLength(1);
    expect(config.destinations[0]).toMatchObject({ id: 'gp', retry: { maxAttempts: 10 } });
    expect(config.destinations[0].adapter.capabilities.resourceTypes).toEqual(['*']);
    expect(config.worker.concurrency).toBeGreaterThan(0);
  });

  it('reads YAML too', () => {
    const json = writeDestinations('{}');
    const file = json.replace(/\.json$/, '.yaml');
    const d = dest(json);
    writeFileSync(
      file,
      [
        'worker:',
        '  concurrency: 2',
        'destinations:',
        `  - id: ${d.id}`,
        `    adapter: ${JSON.stringify(d.adapter)}`,
        '    settings:',
        '      channel: config-test',
        '    receives:',
        '      - resourceType: ServiceRequest',
        '        events: [created, status-changed]',
      ].join('\n'),
    );
    const config = loadDestinationsFile(file);
    expect(config.worker.concurrency).toBe(2);
    expect(config.destinations[0]).toMatchObject({ id: 'gp', receives: [{ resourceType: 'ServiceRequest', events: ['created', 'status-changed'] }] });
    writeFileSync(file, 'destinations: [unclosed');
    expect(() => loadDestinationsFile(file)).toThrow(/not valid YAML/);
  });

  it('names bad fields of the file itself', () => {
    const problems = problemsOf((file: string) => ({
      worker: { concurrency: 0, speed: 3 },
      destinations: [
        dest(file, { receives: [{ resourceType: 'ServiceRequest', events: ['sent'] }] }),
        { id: 'bad id!', adapter: adapterRef(file), receives: [] },
        { adapter: 'recording', receives: [{ resourceType: 'Observation', events: ['created'] }] },
      ],
    }));
    const text = problems.join('\n');
    expect(text).toContain('worker.concurrency: must be >= 1');
    expect(text).toContain("worker: has unknown property 'speed'");
    expect(text).toContain("destinations[0] (id 'gp').receives[0].events[0]: must be equal to one of the allowed values: created, updated, status-changed, deleted");
    expect(text).toContain("destinations[1] (id 'bad id!').id: must match pattern");
    expect(text).toContain("destinations[1] (id 'bad id!').receives: must NOT have fewer than 1 items");
    expect(text).toContain('destinations[2].id: is required');
  });

  it('names unknown adapters, modules that are not adapters, and duplicate ids', () => {
    const problems = problemsOf((file: string) => ({
      destinations: [
        dest(file, { adapter: 'carrier-pigeon' }),
        dest(file, { id: 'x', adapter: 'module:./does-not-exist' }),
        dest(file, { id: 'y', adapter: `module:${require.resolve('../fixtures')}` }),
        dest(file, { id: 'gp' }),
      ],
    }));
    const text = problems.join('\n');
    expect(text).toContain("destinations[0] (id 'gp').adapter: unknown adapter 'carrier-pigeon'");
    expect(text).toContain("destinations[1] (id 'x').adapter: cannot load './does-not-exist'");
    expect(text).toContain("destinations[2] (id 'y').adapter:");
    expect(text).toContain('does not export `adapter`');
    expect(text).toContain("destinations[3] (id 'gp').id: 'gp' is used by an earlier destination");
  });

  it("checks settings against the adapter's settingsSchema and types against its capabilities", () => {
    const problems = problemsOf((file: string) => ({
      destinations: [
        dest(file, { settings: { channel: 'c', colour: 'blue' } }),
        dest(file, { id: 'b', settings: {} }),
        dest(file, {
          id: 'c',
          settings: { channel: 'c', resourceTypes: ['ServiceRequest'] },
          receives: [{ resourceType: 'Observation', events: ['created'] }],
        }),
      ],
    }));
    const text = problems.join('\n');
    expect(text).toContain("destinations[0] (id 'gp').settings: has unknown property 'colour'");
    expect(text).toContain("destinations[1] (id 'b').settings.channel: is required");
    expect(text).toContain("destinations[2] (id 'c').receives[0].resourceType: adapter 'recording' cannot carry Observation");
  });

  it('refuses GP Connect Update Record without the Pharmacy First authorisation flag, saying why', () => {
    const problems = problemsOf(() => ({
      destinations: [
        {
          id: 'gp-ur',
          adapter: 'mesh-update-record',
          settings: { baseUrl: 'https://127.0.0.1:8700', mailboxId: 'X26ABC1', mailboxPasswordEnv: 'P', sharedKeyEnv: 'K', senderOdsCode: 'Y12345' },
          receives: [{ resourceType: 'Observation', events: ['created'] }],
        },
      ],
    }));
    expect(problems.join('\n')).toMatch(/settings\.pharmacyFirstAuthorised: is required \(.*Pharmacy First/);
  });

  it('reports unreadable files and bad JSON', () => {
    expect(problemsOf('{ not json').join('\n')).toContain('is not valid JSON');
    expect(() => loadDestinationsFile('/nonexistent/destinations.json')).toThrow(/cannot be read/);
  });

  it('DESTINATIONS_FILE is read from the environment; without it nothing is delivered', () => {
    expect(loadConfig({ AUTH_MODE: 'none' }).destinationsFile).toBeUndefined();
    expect(loadConfig({ AUTH_MODE: 'none', DESTINATIONS_FILE: 'conf/destinations.json' }).destinationsFile).toMatch(/conf\/destinations\.json$/);
    expect(loadDeliveryConfig(undefined).destinations).toEqual([]);
  });
});
