import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ValidationIssue } from '../validation/types';
import { Validator } from '../validation/validator';

export interface FileResult {
  file: string;
  valid: boolean;
  issues: ValidationIssue[];
}

const USAGE = `Usage: sp-bridge validate [--json] [--profile <url>] [--quiet] <file|directory> ...

Validates FHIR R4 JSON resources and Bundles offline, against the social prescribing profiles and the
bundled terminology, exactly as the server does on every write. Directories are searched for *.json.
Exits 1 if any file has an error, 2 on bad usage.`;

/** `sp-bridge validate`: returns the exit code. */
export function validateCommand(argv: string[], out: (line: string) => void): number {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean', default: false },
        profile: { type: 'string' },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    out(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.values.help || args.positionals.length === 0) {
    out(USAGE);
    return args.values.help ? 0 : 2;
  }
  const files = args.positionals.flatMap(expand);
  if (files.length === 0) {
    out('No .json files found');
    return 2;
  }
  const validator = Validator.load();
  const results = files.map((file) => validateFile(validator, file, args.values.profile));
  if (args.values.json) out(JSON.stringify(results, null, 2));
  else for (const r of results) printResult(r, out, args.values.quiet === true);
  const failed = results.filter((r) => !r.valid).length;
  if (!args.values.json) out(`\n${results.length - failed} valid, ${failed} with errors`);
  return failed > 0 ? 1 : 0;
}

function expand(target: string): string[] {
  let stat;
  try {
    stat = statSync(target);
  } catch {
    return [target]; // reported as unreadable
  }
  if (!stat.isDirectory()) return [target];
  return readdirSync(target)
    .sort()
    .flatMap((name) => {
      const full = path.join(target, name);
      return statSync(full).isDirectory() ? expand(full) : name.endsWith('.json') ? [full] : [];
    });
}

export function validateFile(validator: Validator, file: string, profile?: string): FileResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { file, valid: false, issues: [issue('exception', `Cannot read the file: ${(err as Error).message}`)] };
  }
  let resource: unknown;
  try {
    resource = JSON.parse(text);
  } catch (err) {
    return { file, valid: false, issues: [issue('structure', `Not valid JSON: ${(err as Error).message}`)] };
  }
  const issues = validator.validate(resource, { profile });
  return { file, valid: !issues.some((i) => i.severity === 'error' || i.severity === 'fatal'), issues };
}

function issue(code: ValidationIssue['code'], diagnostics: string): ValidationIssue {
  return { severity: 'error', code, diagnostics, expression: '(file)' };
}

function printResult(r: FileResult, out: (line: string) => void, quiet: boolean): void {
  const shown = quiet ? r.issues.filter((i) => i.severity === 'error' || i.severity === 'fatal') : r.issues;
  const errors = r.issues.filter((i) => i.severity === 'error' || i.severity === 'fatal').length;
  const warnings = r.issues.filter((i) => i.severity === 'warning').length;
  out(`${r.valid ? 'PASS' : 'FAIL'} ${r.file} (${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'})`);
  for (const i of shown) {
    out(`  ${i.severity.padEnd(11)} ${i.expression}  [${i.code}${i.rule ? ` ${i.rule}` : ''}] ${i.diagnostics}`);
  }
}
