import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import Ajv, { type ErrorObject } from 'ajv';
import { ConfigError } from '../config';
import type { AdapterFactory, DeliveryAdapter, DeliveryEvent } from './adapter';
import type { RetryPolicy } from './backoff';
import { builtInAdapters, findBuiltInAdapter } from './registry';

/**
 * The destinations file (env DESTINATIONS_FILE, JSON): where records go and which ones. Validated in full at
 * start-up: the file against DESTINATIONS_SCHEMA, each destination's settings against its adapter's
 * settingsSchema, and each subscribed resource type against what the adapter can carry. Every problem is
 * reported at once, each naming the field.
 */

export const DELIVERY_EVENTS: DeliveryEvent[] = ['created', 'updated', 'status-changed', 'deleted'];

export interface ReceiveRule {
  resourceType: string;
  events: DeliveryEvent[];
  /** Only versions whose `status` is one of these (e.g. Observation `final`). */
  status?: string[];
}

export interface WorkerSettings {
  /** Attempts in flight at once in this process. */
  concurrency: number;
  /** How often an idle worker looks for due rows. */
  pollIntervalMs: number;
  /** How long a claim holds before another worker may take the row again. */
  leaseMs: number;
  /** An attempt longer than this is aborted and retried. Must be below leaseMs. */
  attemptTimeoutMs: number;
  /** At shutdown, how long in-flight attempts may take to finish before they are aborted and given back. */
  shutdownTimeoutMs: number;
}

export interface Destination {
  id: string;
  /** The adapter name (built-in) or `module:<path>` as written. */
  adapterName: string;
  adapter: DeliveryAdapter;
  receives: ReceiveRule[];
  retry: RetryPolicy;
}

export interface DeliveryConfig {
  worker: WorkerSettings;
  destinations: Destination[];
}

export const DEFAULT_WORKER: WorkerSettings = {
  concurrency: 8,
  pollIntervalMs: 1000,
  leaseMs: 5 * 60_000,
  // Above the fhir-rest adapter's own connect + headers + body timeouts (70 s), so the adapter reports first.
  attemptTimeoutMs: 90_000,
  shutdownTimeoutMs: 10_000,
};

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 10, baseDelayMs: 5_000, maxDelayMs: 60 * 60_000 };

const int = (minimum: number, maximum?: number) => ({ type: 'integer', minimum, ...(maximum === undefined ? {} : { maximum }) });

export const DESTINATIONS_SCHEMA = {
  type: 'object',
  required: ['destinations'],
  additionalProperties: false,
  properties: {
    worker: {
      type: 'object',
      additionalProperties: false,
      properties: {
        concurrency: int(1, 1000),
        pollIntervalMs: int(10),
        leaseMs: int(1000),
        attemptTimeoutMs: int(100),
        shutdownTimeoutMs: int(0),
      },
    },
    destinations: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'adapter', 'receives'],
        additionalProperties: false,
        properties: {
          id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' },
          adapter: { type: 'string', minLength: 1 },
          settings: { type: 'object' },
          receives: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              required: ['resourceType', 'events'],
              additionalProperties: false,
              properties: {
                resourceType: { type: 'string', pattern: '^[A-Z][A-Za-z]{1,63}$' },
                events: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: DELIVERY_EVENTS } },
                status: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
              },
            },
          },
          retry: {
            type: 'object',
            additionalProperties: false,
            properties: { maxAttempts: int(1, 1000), baseDelayMs: int(0), maxDelayMs: int(0) },
          },
        },
      },
    },
  },
} as const;

export class DestinationsError extends ConfigError {
  constructor(file: string, problems: string[]) {
    super(problems.map((p) => `DESTINATIONS_FILE ${file}: ${p}`));
    this.name = 'DestinationsError';
  }
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Extra factories, as if built in (tests). */
  factories?: AdapterFactory[];
}

/** Reads and validates the destinations file (JSON, or YAML when it ends .yaml/.yml), creating each destination's adapter. Throws DestinationsError. */
export function loadDestinationsFile(file: string, options: LoadOptions = {}): DeliveryConfig {
  const resolved = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(resolved, 'utf8');
  } catch (err) {
    throw new DestinationsError(file, [`cannot be read: ${(err as Error).message}`]);
  }
  const yaml = /\.ya?ml$/i.test(resolved);
  let json: unknown;
  try {
    json = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new DestinationsError(file, [`is not valid ${yaml ? 'YAML' : 'JSON'}: ${(err as Error).message}`]);
  }
  return parseDestinations(json, { ...options, file, baseDir: path.dirname(resolved) });
}

/** Validates an already parsed destinations document; `module:` paths resolve against `baseDir`. */
export function parseDestinations(
  doc: unknown,
  options: LoadOptions & { file?: string; baseDir?: string } = {},
): DeliveryConfig {
  const file = options.file ?? '(inline)';
  const ajv = new Ajv({ verbose: true, allErrors: true, strict: false });
  const validate = ajv.compile(DESTINATIONS_SCHEMA);
  if (!validate(doc)) throw new DestinationsError(file, describe(validate.errors ?? [], doc));

  const raw = doc as {
    worker?: Partial<WorkerSettings>;
    destinations: { id: string; adapter: string; settings?: Record<string, unknown>; receives: ReceiveRule[]; retry?: Partial<RetryPolicy> }[];
  };
  const problems: string[] = [];
  const worker: WorkerSettings = { ...DEFAULT_WORKER, ...raw.worker };
  if (worker.attemptTimeoutMs >= worker.leaseMs) {
    problems.push(`worker.attemptTimeoutMs (${worker.attemptTimeoutMs}) must be less than worker.leaseMs (${worker.leaseMs})`);
  }
  const seen = new Set<string>();
  const destinations: Destination[] = [];
  raw.destinations.forEach((d, i) => {
    const where = `destinations[${i}] (id '${d.id}')`;
    if (seen.has(d.id)) problems.push(`${where}.id: '${d.id}' is used by an earlier destination; ids must be unique`);
    seen.add(d.id);
    const retry: RetryPolicy = { ...DEFAULT_RETRY, ...d.retry };
    if (retry.baseDelayMs > retry.maxDelayMs) {
      problems.push(`${where}.retry.baseDelayMs (${retry.baseDelayMs}) must not exceed retry.maxDelayMs (${retry.maxDelayMs})`);
    }
    const factory = resolveFactory(d.adapter, `${where}.adapter`, problems, options);
    if (!factory) return;
    const settings = d.settings ?? {};
    let check;
    try {
      check = ajv.compile(factory.settingsSchema);
    } catch (err) {
      problems.push(`${where}.adapter: the settingsSchema of adapter '${factory.name}' is not a valid JSON Schema: ${(err as Error).message}`);
      return;
    }
    if (!check(settings)) {
      problems.push(...describe(check.errors ?? [], settings).map((p) => `${where}.settings${p.startsWith('(root)') ? p.slice(6) : `.${p}`}`));
      return;
    }
    let adapter: DeliveryAdapter;
    try {
      adapter = factory.create(settings, options.env ?? process.env);
    } catch (err) {
      problems.push(`${where}.settings: adapter '${factory.name}' refused them: ${(err as Error).message}`);
      return;
    }
    const carries = adapter.capabilities.resourceTypes;
    d.receives.forEach((rule, j) => {
      if (!carries.includes('*') && !carries.includes(rule.resourceType)) {
        problems.push(
          `${where}.receives[${j}].resourceType: adapter '${factory.name}' cannot carry ${rule.resourceType} (it carries ${carries.join(', ') || 'nothing'})`,
        );
      }
    });
    destinations.push({ id: d.id, adapterName: d.adapter, adapter, receives: d.receives, retry });
  });
  if (problems.length) throw new DestinationsError(file, problems);
  return { worker, destinations };
}

function resolveFactory(
  name: string,
  where: string,
  problems: string[],
  options: LoadOptions & { baseDir?: string },
): AdapterFactory | undefined {
  if (!name.startsWith('module:')) {
    const factory = findBuiltInAdapter(name, options.factories);
    if (!factory) {
      const known = [...(options.factories ?? []), ...builtInAdapters].map((f) => f.name);
      problems.push(
        `${where}: unknown adapter '${name}'; built-in adapters are ${known.join(', ') || '(none)'}, or use module:<path> for a third-party adapter`,
      );
    }
    return factory;
  }
  const spec = name.slice('module:'.length);
  const target = spec.startsWith('.') || path.isAbsolute(spec) ? path.resolve(options.baseDir ?? process.cwd(), spec) : spec;
  let loaded: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- adapters are CommonJS modules named at run time
    loaded = require(target);
  } catch (err) {
    problems.push(`${where}: cannot load '${spec}' (${target}): ${(err as Error).message}`);
    return undefined;
  }
  const factory = (loaded as { adapter?: unknown } | undefined)?.adapter as AdapterFactory | undefined;
  if (
    !factory ||
    typeof factory !== 'object' ||
    typeof factory.name !== 'string' ||
    typeof factory.create !== 'function' ||
    !factory.settingsSchema ||
    typeof factory.settingsSchema !== 'object'
  ) {
    problems.push(`${where}: '${spec}' does not export \`adapter\`, an AdapterFactory with name, settingsSchema and create()`);
    return undefined;
  }
  return factory;
}

/** ajv errors as `destinations[0].receives[1].events[0]: must be equal to one of the allowed values (...)`. */
function describe(errors: ErrorObject[], doc: unknown): string[] {
  const out = new Set<string>();
  for (const e of errors) {
    const segments = e.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    let field = '';
    let node: unknown = doc;
    for (const seg of segments) {
      const isIndex = Array.isArray(node) && /^\d+$/.test(seg);
      field += isIndex ? `[${seg}]` : `${field ? '.' : ''}${seg}`;
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[seg] : undefined;
      if (isIndex && field === `destinations[${seg}]` && node && typeof (node as { id?: unknown }).id === 'string') {
        field += ` (id '${(node as { id: string }).id}')`;
      }
    }
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'additionalProperties') message = `has unknown property '${(e.params as { additionalProperty: string }).additionalProperty}'`;
    if (e.keyword === 'required') {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      field += `${field ? '.' : ''}${missing}`;
      message = 'is required';
    }
    if (e.keyword === 'enum') message += `: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    // A schema's description of the failing property says why it matters (e.g. an authorisation flag).
    const parent = e.parentSchema as { description?: unknown; properties?: Record<string, { description?: unknown }> } | undefined;
    const why = e.keyword === 'required' ? parent?.properties?.[(e.params as { missingProperty: string }).missingProperty]?.description : e.keyword === 'const' ? parent?.description : undefined;
    if (typeof why === 'string') message += ` (${why})`;
    out.add(`${field || '(root)'}: ${message}`);
  }
  return [...out];
}
