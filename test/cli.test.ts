import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { main } from '../src/cli';

function run(args: string[]): { code: number; output: string } {
  const lines: string[] = [];
  const code = main(args, (l) => lines.push(l));
  return { code, output: lines.join('\n') };
}

const examples = path.resolve(__dirname, '../profiles/examples');

describe('sp-bridge validate', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sp-cli-'));
  const referral = JSON.parse(readFileSync(path.join(examples, 'ServiceRequest-sp-referral-example.json'), 'utf8'));
  writeFileSync(path.join(dir, 'bad-status.json'), JSON.stringify({ ...referral, status: 'bogus' }));
  writeFileSync(path.join(dir, 'broken.json'), '{"resourceType": "Patient",');

  it('passes the shipped examples and exits 0', () => {
    const { code, output } = run(['validate', examples]);
    expect(code).toBe(0);
    expect(output).toMatch(/^PASS .*ServiceRequest-sp-referral-example\.json/m);
    expect(output).toMatch(/\d+ valid, 0 with errors/);
  });

  it('reports each failing file with the path of every issue and exits 1', () => {
    const { code, output } = run(['validate', dir]);
    expect(code).toBe(1);
    expect(output).toMatch(/^FAIL .*bad-status\.json/m);
    expect(output).toMatch(/error\s+ServiceRequest\.status/);
    expect(output).toMatch(/^FAIL .*broken\.json/m);
    expect(output).toMatch(/Not valid JSON/);
  });

  it('prints machine-readable results with --json', () => {
    const { code, output } = run(['validate', '--json', path.join(dir, 'bad-status.json'), path.join(examples, 'Patient-sp-patient-example.json')]);
    expect(code).toBe(1);
    const results = JSON.parse(output) as { file: string; valid: boolean; issues: { expression: string }[] }[];
    expect(results.map((r) => r.valid)).toEqual([false, true]);
    expect(results[0].issues.map((i) => i.expression)).toContain('ServiceRequest.status');
  });

  it('validates against a named profile', () => {
    const { code } = run(['validate', '--profile', 'http://hl7.org/fhir/StructureDefinition/ServiceRequest', path.join(dir, 'bad-status.json')]);
    expect(code).toBe(1);
    const ok = run(['validate', '--profile', 'http://hl7.org/fhir/StructureDefinition/ServiceRequest', path.join(examples, 'ServiceRequest-sp-referral-example.json')]);
    expect(ok.code).toBe(0);
  });

  it('explains its usage on bad arguments', () => {
    expect(run(['validate']).code).toBe(2);
    expect(run(['validate', '--nope', 'x']).output).toMatch(/Usage: sp-bridge validate/);
    expect(run(['frobnicate']).code).toBe(2);
  });
});
