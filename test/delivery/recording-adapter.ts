import type { Acknowledgement, AdapterFactory, DeliveryItem, DeliveryOutcome } from '../../src/delivery/adapter';

/**
 * A real adapter for the engine tests, loaded the way a third-party adapter is (`module:` in a destinations
 * file). Each destination names a channel; a test looks the channel up to see the calls and to say how the
 * next ones go.
 */

export type Behaviour = (item: DeliveryItem, signal: AbortSignal) => DeliveryOutcome | Promise<DeliveryOutcome>;

export interface Channel {
  calls: DeliveryItem[];
  /** Absent: every call is delivered (HTTP 201). */
  behave?: Behaviour;
  onAck?: (ack: Acknowledgement) => Promise<void>;
  started: number;
  stopped: number;
}

const channels = new Map<string, Channel>();

export function channel(name: string): Channel {
  let ch = channels.get(name);
  if (!ch) {
    ch = { calls: [], started: 0, stopped: 0 };
    channels.set(name, ch);
  }
  return ch;
}

/** Answers `outcome` for the first `times` calls, then delivers. */
export function failTimes(times: number, outcome: DeliveryOutcome): Behaviour {
  let left = times;
  return () => (left-- > 0 ? outcome : { kind: 'delivered', summary: 'stored', httpStatus: 201 });
}

export const adapter: AdapterFactory = {
  name: 'recording',
  settingsSchema: {
    type: 'object',
    required: ['channel'],
    additionalProperties: false,
    properties: {
      channel: { type: 'string', minLength: 1 },
      resourceTypes: { type: 'array', items: { type: 'string' } },
      async: { type: 'boolean' },
    },
  },
  create(settings) {
    const ch = channel(settings.channel as string);
    return {
      capabilities: {
        resourceTypes: (settings.resourceTypes as string[] | undefined) ?? ['*'],
        asyncAcknowledgement: settings.async === true,
      },
      async deliver(item, signal) {
        ch.calls.push(item);
        return ch.behave ? ch.behave(item, signal) : { kind: 'delivered', summary: 'stored', httpStatus: 201 };
      },
      async start(onAck) {
        ch.started++;
        ch.onAck = onAck;
      },
      async stop() {
        ch.stopped++;
      },
    };
  },
};
