import { validateCommand } from './validate';

const USAGE = `Usage: sp-bridge <command> [options]

Commands:
  validate <file|dir ...>   validate FHIR resources and Bundles offline (sp-bridge validate --help)
  mock-gp [--port N]        run a loopback FHIR receiver standing in for a GP system (sp-bridge mock-gp --help)
  mock-mesh [--port N]      run a loopback MESH API with an ITK3 GP responder (sp-bridge mock-mesh --help)
  register-client <id>      make a client key pair; print its clients-file entry (sp-bridge register-client --help)
  get-token --client-id ID --key FILE --token-url URL
                            get an access token as a SMART Backend Services client (sp-bridge get-token --help)`;

/** The `sp-bridge` command line; returns the process exit code. */
export function main(argv: string[], out: (line: string) => void = (line) => process.stdout.write(`${line}\n`)): number {
  const [command, ...rest] = argv;
  switch (command) {
    case 'validate':
      return validateCommand(rest, out);
    case 'mock-mesh': return (require('../mock/mesh') as typeof import('../mock/mesh')).mockMeshCommand(rest, out);
    case 'mock-gp': return (require('../mock/gp-command') as typeof import('../mock/gp-command')).mockGpCommand(rest, out);
    case 'register-client': return (require('./clients') as typeof import('./clients')).registerClientCommand(rest, out);
    case 'get-token': return (require('./clients') as typeof import('./clients')).getTokenCommand(rest, out);
    case undefined:
    case '--help':
    case 'help':
      out(USAGE);
      return command === undefined ? 2 : 0;
    default:
      out(`Unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}
