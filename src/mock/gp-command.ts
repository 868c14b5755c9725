/**
 * `sp-bridge mock-gp [--port N] [--host ADDR] [--client-id ID]`: runs the mock GP receiver until
 * interrupted (or `POST /_control/shutdown`). Only `--host` moves it off loopback: the HOST environment
 * variable the service uses is deliberately ignored.
 */
import { startMockGp, isLoopback, type MockGpOptions } from './gp';

export const MOCK_GP_USAGE = `Usage: sp-bridge mock-gp [--port N] [--host 127.0.0.1] [--client-id ID] [--quiet]

A loopback FHIR R4 receiver standing in for a GP system (in memory). Control API:
  POST /_control/fail      {status, count, retryAfter, delayMs, drop, outcome, target}
  GET  /_control/received  what arrived, deliveries, duplicates
  POST /_control/reset     forget everything
  POST /_control/shutdown  stop
  POST /oauth/token        OAuth2 client_credentials; with --client-id, FHIR requests need its token
                           (the secret is read from MOCK_GP_CLIENT_SECRET)`;

/** Parses the arguments; a string is an error message. */
export function parseMockGpArgs(args: string[], env: NodeJS.ProcessEnv): MockGpOptions | string {
  const options: MockGpOptions = { port: 8090, host: '127.0.0.1' };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = args[i + 1];
    switch (arg) {
      case '--port': {
        const port = Number(value);
        if (value === undefined || !Number.isInteger(port) || port < 0 || port > 65535) return `--port needs a port number, not '${value ?? ''}'`;
        options.port = port;
        i++;
        break;
      }
      case '--host':
        if (!value) return '--host needs an address';
        options.host = value;
        options.allowNonLoopback = true;
        i++;
        break;
      case '--client-id': {
        if (!value) return '--client-id needs a value';
        const secret = env.MOCK_GP_CLIENT_SECRET;
        if (!secret) return '--client-id needs the client secret in the MOCK_GP_CLIENT_SECRET environment variable';
        options.auth = { clientId: value, clientSecret: secret };
        i++;
        break;
      }
      case '--quiet':
        options.log = undefined;
        break;
      default:
        return `Unknown option '${arg}'`;
    }
  }
  return options;
}

/** The `mock-gp` command: starts the receiver and returns at once (the server keeps the process alive). */
export function mockGpCommand(args: string[], out: (line: string) => void, env: NodeJS.ProcessEnv = process.env): number {
  if (args.includes('--help')) {
    out(MOCK_GP_USAGE);
    return 0;
  }
  const parsed = parseMockGpArgs(args, env);
  if (typeof parsed === 'string') {
    out(`${parsed}\n\n${MOCK_GP_USAGE}`);
    return 2;
  }
  const options: MockGpOptions = args.includes('--quiet') ? parsed : { ...parsed, log: out };
  startMockGp(options).then(
    (gp) => {
      if (!isLoopback(gp.host)) out(`WARNING: mock-gp is listening on ${gp.host}, not loopback: anyone who can reach it can read what it stores`);
      out(`mock-gp listening on ${gp.url}${options.auth ? ' (bearer tokens required)' : ''}`);
      const stop = (): void => void gp.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      gp.closed.then(() => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      });
    },
    (err: unknown) => {
      out(`mock-gp could not start: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    },
  );
  return 0;
}
