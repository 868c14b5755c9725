import { backoffMs } from '../../src/delivery/backoff';
import { eventsOf, idempotencyKey } from '../../src/delivery/outbox';
import { patientRefOf } from '../../src/delivery/patient';

describe('backoff', () => {
  const policy = { maxAttempts: 10, baseDelayMs: 1000, maxDelayMs: 60_000 };

  it('is full jitter: uniform below a ceiling that doubles per attempt up to the cap', () => {
    expect(backoffMs(policy, 1, () => 0.999)).toBe(999);
    expect(backoffMs(policy, 3, () => 0.5)).toBe(2000);
    expect(backoffMs(policy, 30, () => 0.5)).toBe(30_000);
    expect(backoffMs(policy, 5, () => 0)).toBe(0);
  });

  it("never waits less than the destination's Retry-After", () => {
    expect(backoffMs(policy, 1, () => 0, 120_000)).toBe(120_000);
    expect(backoffMs(policy, 10, () => 0.9, 10)).toBe(54_000);
  });
});

describe('events and keys', () => {
  const sr = (status: string) => ({ resourceType: 'ServiceRequest', status }) as fhir4.Resource;
  it('classifies writes', () => {
    const base = { type: 'ServiceRequest', id: 'a', version: 2 };
    expect(eventsOf({ ...base, resource: sr('active'), previous: undefined })).toEqual(['created']);
    expect(eventsOf({ ...base, resource: sr('active'), previous: null })).toEqual(['created']);
    expect(eventsOf({ ...base, resource: sr('active'), previous: sr('active') })).toEqual(['updated']);
    expect(eventsOf({ ...base, resource: sr('revoked'), previous: sr('active') })).toEqual(['status-changed', 'updated']);
    expect(eventsOf({ ...base, resource: null, previous: sr('active') })).toEqual(['deleted']);
    expect(idempotencyKey('gp', 'ServiceRequest', 'a', 2)).toBe('gp:ServiceRequest/a/_history/2');
  });

  it('finds the patient a resource concerns', () => {
    expect(patientRefOf({ resourceType: 'Patient', id: 'p1' })).toBe('Patient/p1');
    expect(patientRefOf({ resourceType: 'Task', for: { reference: 'Patient/p2' } } as fhir4.Task)).toBe('Patient/p2');
    expect(patientRefOf({ resourceType: 'Observation', subject: { reference: 'Patient/p3/_history/2' } } as fhir4.Observation)).toBe('Patient/p3');
    expect(patientRefOf({ resourceType: 'Observation', subject: { reference: 'Group/g' } } as fhir4.Observation)).toBeUndefined();
  });
});
