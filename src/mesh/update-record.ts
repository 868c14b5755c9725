/**
 * GP Connect Update Record over MESH: the ITK3 message (STU3, event ITK014M, workflow GPCONNECT_UPDATE_RECORD)
 * and the mapping of our FHIR R4 records to the STU3 resources it carries.
 *
 * Shape of the message (mirrors Send Document, src/mesh/itk3.ts):
 *   Bundle (message, ITK-Message-Bundle-1)
 *     MessageHeader (ITK-MessageHeader-2, event ITK014M, Extension-ITK-MessageHandling-2 with BusAckRequested and
 *       InfAckRequested true, RecipientType FA, MessageDefinition = the placeholder https://fhir.nhs.uk/MessageDefinition,
 *       because IOPS published none for Update Record; focus -> the document Bundle)
 *     Organization (sender, CareConnect-ITK-Header-Organization-1)
 *     Bundle (document)
 *       Composition (the structured record of this update: one section per kind of record, entries -> the resources)
 *       Patient (CareConnect-GPC-Patient-1: NHS number identifier, name, gender, birth date)
 *       Organization (author and custodian)
 *       ReferralRequest / CarePlan / Observation mapped from R4 ServiceRequest / CarePlan / Observation
 *
 * The R4 -> STU3 mapping follows the published differences between FHIR R4 (4.0.1) and STU3 (3.0.x), the
 * R3<->R4 resource maps: element renames (Observation.note -> comment, encounter -> context, ServiceRequest ->
 * ReferralRequest with code -> type, performer -> recipient, performerType -> specialty, requisition ->
 * groupIdentifier, requester -> requester.agent; CarePlan contributor -> author, activity.detail.doNotPerform ->
 * prohibited), status value sets (request status on-hold -> suspended, revoked -> cancelled), datatypes STU3
 * lacks (valueInteger -> valueQuantity with UCUM 1, effectiveInstant -> effectiveDateTime), and the code systems
 * that moved to terminology.hl7.org in R4 (moved back to their hl7.org/fhir URLs). Every coding is copied with
 * its system, code and display: no SNOMED CT code is dropped or rewritten (ServiceRequest.category and extra
 * Observation interpretations, which STU3 lacks, go in FHIR's R4 cross-version extensions; the resources' own
 * coded/simple R4 extensions, e.g. UK Core SourceOfServiceRequest, travel unchanged). What has no STU3 home is listed in
 * `lossy` (the adapter reports it with the delivery) rather than silently lost; what would change the meaning
 * (ServiceRequest.doNotPerform) refuses the record (UpdateRecordMappingError).
 *
 * WHERE THE REAL GP CONNECT UPDATE RECORD PROFILES MAY DIFFER. Update Record is published (IOPS-FHIR-Simplifier-
 * Backup, GPConnectDirectCareAPIs-STU3 "GP-Connect-Update-record") for Pharmacy First only: its bundle profile
 * GPConnect-StructuredRecord-Bundle-1 lists CareConnect-GPC-Patient-1 (1..1), CareConnect-GPC-Encounter-1 (1..1,
 * mandatory), CareConnect-GPC-Observation-1, -MedicationStatement-1, -Organization-1 and -Practitioner (0..*).
 * The profiles' differentials were not in our corpus, so:
 *   - ReferralRequest and CarePlan are NOT in the published Update Record profile set: we send them as STU3 base
 *     resources (ReferralRequest claims CareConnect-ReferralRequest-1 [unverified]); a GP system built for
 *     Pharmacy First may reject or ignore them.
 *   - No CareConnect-GPC-Encounter-1 is sent although the guide makes it mandatory (we have no encounter for a
 *     referral, care plan or outcome measure); NHS England would have to agree the payload.
 *   - The Composition uses CareConnect-Composition-1 (as Send Document); the Pharmacy First payload may have its
 *     own Composition profile, section codes, and PRSB headings in meta.tag (CodeSystem RecordStandardHeadings),
 *     which we do not set. Composition.type comes from settings (default as Send Document).
 *   - The GPC profiles use meta.security for the patient's sharing consent; we send none (= consents to share).
 *   - GP Connect may require its own identifier systems (e.g. cross-care-setting identifiers) on each resource,
 *     fixed category codings, or Observation.performer 1..1; we copy our R4 identifiers only.
 *   - The ITK014M display "ITK Update Record" and the placement of the structured record in a document Bundle
 *     (rather than flat in the message Bundle) follow Send Document and were not verified against the guide.
 *
 * STU3 JSON is built as plain objects (the R4 types do not describe it).
 */
import { deterministicUuid, handlingExtension, ITK, summariseRecord, type Json, type PatientDetails, type SenderDetails, type SnomedCode } from './itk3';

export { UPDATE_RECORD_ACK_WORKFLOW, UPDATE_RECORD_WORKFLOW } from './itk3';

export const UPDATE_RECORD = {
  event: 'ITK014M',
  eventDisplay: 'ITK Update Record',
  /** IOPS published no MessageDefinition for Update Record: the guide uses this placeholder. */
  messageDefinition: 'https://fhir.nhs.uk/MessageDefinition',
  patientProfile: 'https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Patient-1',
  observationProfile: 'https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-Observation-1',
  /** CareConnect STU3 profile name, not checked against a published copy. */
  referralRequestProfile: 'https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-ReferralRequest-1',
  nhsNumberVerificationExtension: 'https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-NHSNumberVerificationStatus-1',
  nhsNumberVerificationSystem: 'https://fhir.hl7.org.uk/STU3/CodeSystem/CareConnect-NHSNumberVerificationStatus-1',
  ukCoreNhsNumberVerificationExtension: 'https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus',
  ucum: 'http://unitsofmeasure.org',
} as const;

/** Composition.type default (as Send Document's '*' default); override with the adapter's `compositionType`. */
export const DEFAULT_UPDATE_RECORD_COMPOSITION_TYPE: SnomedCode = { code: '371531000', display: 'Report of clinical encounter' };

/** R4 resource types mapped to STU3. */
export const UPDATE_RECORD_RESOURCE_TYPES = ['ServiceRequest', 'CarePlan', 'Observation'] as const;

/** The record cannot be expressed in STU3 without changing what it says. */
export class UpdateRecordMappingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpdateRecordMappingError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Datatypes

/** R4 moved FHIR-defined code systems to terminology.hl7.org; STU3 uses the hl7.org/fhir URLs. */
export function stu3System(system: string | undefined): string | undefined {
  if (!system) return system;
  const tho = 'http://terminology.hl7.org/CodeSystem/';
  if (!system.startsWith(tho)) return system;
  const name = system.slice(tho.length);
  if (name === 'v3-ObservationInterpretation') return 'http://hl7.org/fhir/v2/0078';
  const v = /^(v2|v3)-(.+)$/.exec(name);
  if (v) return `http://hl7.org/fhir/${v[1]}/${v[2]}`;
  return `http://hl7.org/fhir/${name}`;
}

function clean(o: Json): Json {
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v === undefined || (Array.isArray(v) && v.length === 0)) delete o[k];
  }
  return o;
}

function coding(c: fhir4.Coding): Json {
  return clean({ system: stu3System(c.system), version: c.version, code: c.code, display: c.display, userSelected: c.userSelected });
}

function concept(cc: fhir4.CodeableConcept | undefined): Json | undefined {
  if (!cc) return undefined;
  return clean({ coding: cc.coding?.map(coding), text: cc.text });
}

function concepts(list: fhir4.CodeableConcept[] | undefined): Json[] | undefined {
  return list?.map((c) => concept(c)!);
}

function quantity(q: fhir4.Quantity | undefined): Json | undefined {
  if (!q) return undefined;
  return clean({ value: q.value, comparator: q.comparator, unit: q.unit, system: q.system, code: q.code });
}

function period(p: fhir4.Period | undefined): Json | undefined {
  return p ? clean({ start: p.start, end: p.end }) : undefined;
}

function identifier(i: fhir4.Identifier): Json {
  // R4 added use 'old'; STU3 has usual | official | temp | secondary. Assigner is a Reference: dropped.
  return clean({
    use: i.use === 'old' ? undefined : i.use,
    type: concept(i.type),
    system: i.system,
    value: i.value,
    period: period(i.period),
  });
}

/** Where the record's references point in the message, and what could not be carried. */
export interface MapContext {
  patientUrn: string;
  /** Reference strings that mean the patient (`#pat`, `Patient/pat`, a fullUrl). */
  patientRefs: Set<string>;
  /** R4 reference string (`ServiceRequest/sr1`, `#x`, fullUrl) -> `urn:uuid:` of its STU3 resource here. */
  refs: Map<string, string>;
  lossy: string[];
}

function refType(r: fhir4.Reference): string | undefined {
  if (r.type) return r.type;
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/[^/]+(?:\/_history\/[^/]+)?$/.exec(r.reference ?? '');
  return m?.[1];
}

/**
 * An R4 Reference in STU3: to the urn:uuid of a resource in this message when it is one; otherwise our server's
 * reference means nothing to the GP system, so only identifier and display are kept (dropped when neither).
 * `allowed`: the STU3 target types; another type is kept as identifier/display only and noted.
 */
function reference(r: fhir4.Reference | undefined, ctx: MapContext, path: string, allowed?: string[]): Json | undefined {
  if (!r) return undefined;
  const key = r.reference;
  if (key && ctx.patientRefs.has(key)) return clean({ reference: ctx.patientUrn, display: r.display });
  if (key && ctx.refs.has(key)) return clean({ reference: ctx.refs.get(key), display: r.display });
  const type = refType(r);
  if (type && allowed && !allowed.includes(type)) {
    ctx.lossy.push(`${path}: STU3 cannot reference a ${type} here (allowed: ${allowed.join(', ')}); kept as identifier/display only`);
  }
  if (!r.identifier && !r.display) {
    ctx.lossy.push(`${path}: reference ${key ?? '(empty)'} is not in the message and has no identifier or display; dropped`);
    return undefined;
  }
  return clean({ identifier: r.identifier ? identifier(r.identifier) : undefined, display: r.display });
}

function references(list: fhir4.Reference[] | undefined, ctx: MapContext, path: string, allowed?: string[]): Json[] | undefined {
  return list?.map((r, i) => reference(r, ctx, `${path}[${i}]`, allowed)).filter((x): x is Json => !!x);
}

function annotation(a: fhir4.Annotation, ctx: MapContext, path: string): Json {
  return clean({
    authorString: a.authorString,
    authorReference: reference(a.authorReference, ctx, `${path}.authorReference`, ['Practitioner', 'Patient', 'RelatedPerson']),
    time: a.time,
    text: a.text,
  });
}

/**
 * R4 content with no STU3 element but codes worth keeping (e.g. ServiceRequest.category) goes in FHIR's
 * cross-version extension, `http://hl7.org/fhir/4.0/StructureDefinition/extension-<Path>`, so no code is lost.
 */
function crossVersion(elementPath: string, list: fhir4.CodeableConcept[] | undefined): Json[] {
  return (list ?? []).map((cc) => ({ url: `http://hl7.org/fhir/4.0/StructureDefinition/extension-${elementPath}`, valueCodeableConcept: concept(cc) }));
}

/**
 * The resource's own R4 extensions (e.g. UK Core's SourceOfServiceRequest) are kept when their value is a
 * simple type or a code, so their SNOMED codes travel; the receiver may ignore an R4 URL. Others are noted.
 */
function extensions(list: fhir4.Extension[] | undefined, ctx: MapContext, path: string): Json[] {
  const out: Json[] = [];
  for (const e of list ?? []) {
    const simple = (['valueString', 'valueBoolean', 'valueCode', 'valueDateTime', 'valueDate', 'valueInteger', 'valueDecimal', 'valueUri'] as const).find(
      (k) => e[k] !== undefined,
    );
    if (e.valueCodeableConcept) out.push({ url: e.url, valueCodeableConcept: concept(e.valueCodeableConcept) });
    else if (e.valueCoding) out.push({ url: e.url, valueCoding: coding(e.valueCoding) });
    else if (simple) out.push({ url: e.url, [simple]: e[simple] });
    else ctx.lossy.push(`${path}.extension ${e.url}: not sent (only coded and simple values are carried)`);
  }
  return out;
}

function notPresent(ctx: MapContext, resource: Json, path: string, fields: string[], why = 'has no STU3 equivalent; not sent'): void {
  for (const f of fields) {
    const v = resource[f];
    if (v !== undefined && !(Array.isArray(v) && v.length === 0)) ctx.lossy.push(`${path}.${f} ${why}`);
  }
}

function mapStatus(value: string | undefined, table: Record<string, string>, ctx: MapContext, path: string): string | undefined {
  if (value === undefined) return undefined;
  const mapped = table[value];
  if (mapped === undefined) {
    ctx.lossy.push(`${path} '${value}' has no STU3 equivalent; sent as 'unknown'`);
    return 'unknown';
  }
  return mapped;
}

const same = (...codes: string[]) => Object.fromEntries(codes.map((c) => [c, c]));

// ---------------------------------------------------------------------------------------------------------
// Patient

/** CareConnect-style STU3 Patient: NHS number (with its verification status), name, gender, birth date. */
export function mapPatient(details: PatientDetails, id: string): Json {
  const p = details.patient;
  const nhs = p.identifier?.find((i) => i.value === details.nhsNumber);
  const verification = nhs?.extension?.find((e) => e.url === UPDATE_RECORD.ukCoreNhsNumberVerificationExtension)?.valueCodeableConcept;
  const vCode = verification?.coding?.find((c) => /^0[1-8]$/.test(c.code ?? ''));
  const nhsIdentifier: Json = {
    ...(vCode
      ? {
          extension: [
            {
              url: UPDATE_RECORD.nhsNumberVerificationExtension,
              valueCodeableConcept: {
                coding: [{ system: UPDATE_RECORD.nhsNumberVerificationSystem, code: vCode.code, ...(vCode.display ? { display: vCode.display } : {}) }],
              },
            },
          ],
        }
      : {}),
    system: ITK.stu3NhsNumberSystem,
    value: details.nhsNumber,
  };
  const names = (p.name ?? []).map((n) =>
    clean({ use: n.use, text: n.text, family: n.family, given: n.given, prefix: n.prefix, suffix: n.suffix }),
  );
  return clean({
    resourceType: 'Patient',
    id,
    meta: { profile: [UPDATE_RECORD.patientProfile] },
    identifier: [nhsIdentifier],
    name: names.length ? names : [clean({ use: 'official', family: details.surname, given: details.given })],
    gender: p.gender,
    birthDate: p.birthDate,
    deceasedBoolean: p.deceasedBoolean,
    deceasedDateTime: p.deceasedDateTime,
    address: p.address?.map((a) =>
      clean({ use: a.use, type: a.type, text: a.text, line: a.line, city: a.city, district: a.district, postalCode: a.postalCode, country: a.country }),
    ),
  });
}

// ---------------------------------------------------------------------------------------------------------
// Observation (R4 -> STU3: mostly unchanged)

const OBSERVATION_STATUS = same('registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown');
const OBS_PERFORMER = ['Practitioner', 'Organization', 'Patient', 'RelatedPerson'];

type ValueHolder = {
  valueQuantity?: fhir4.Quantity;
  valueCodeableConcept?: fhir4.CodeableConcept;
  valueString?: string;
  valueBoolean?: boolean;
  valueInteger?: number;
  valueRange?: fhir4.Range;
  valueRatio?: fhir4.Ratio;
  valueSampledData?: fhir4.SampledData;
  valueTime?: string;
  valueDateTime?: string;
  valuePeriod?: fhir4.Period;
};

/** value[x]: STU3 has no valueInteger (-> Quantity, UCUM unity '1'); components have no valueBoolean either. */
function value(v: ValueHolder, ctx: MapContext, path: string, booleanAllowed: boolean): Json {
  if (v.valueInteger !== undefined) return { valueQuantity: { value: v.valueInteger, system: UPDATE_RECORD.ucum, code: '1' } };
  if (v.valueBoolean !== undefined) {
    if (booleanAllowed) return { valueBoolean: v.valueBoolean };
    ctx.lossy.push(`${path}.valueBoolean: STU3 Observation.component has no valueBoolean; sent as valueString`);
    return { valueString: String(v.valueBoolean) };
  }
  if (v.valueSampledData !== undefined) ctx.lossy.push(`${path}.valueSampledData not sent`);
  return clean({
    valueQuantity: quantity(v.valueQuantity),
    valueCodeableConcept: concept(v.valueCodeableConcept),
    valueString: v.valueString,
    valueRange: v.valueRange ? clean({ low: quantity(v.valueRange.low), high: quantity(v.valueRange.high) }) : undefined,
    valueRatio: v.valueRatio ? clean({ numerator: quantity(v.valueRatio.numerator), denominator: quantity(v.valueRatio.denominator) }) : undefined,
    valueTime: v.valueTime,
    valueDateTime: v.valueDateTime,
    valuePeriod: period(v.valuePeriod),
  });
}

function interpretation(list: fhir4.CodeableConcept[] | undefined, ctx: MapContext, path: string): Json | undefined {
  if (!list?.length) return undefined;
  if (list.length > 1) ctx.lossy.push(`${path}.interpretation: STU3 allows one; the others go in the R4 cross-version extension`);
  return concept(list[0]);
}

function referenceRange(list: fhir4.ObservationReferenceRange[] | undefined): Json[] | undefined {
  return list?.map((r) =>
    clean({
      low: quantity(r.low),
      high: quantity(r.high),
      type: concept(r.type),
      appliesTo: concepts(r.appliesTo),
      age: r.age ? clean({ low: quantity(r.age.low), high: quantity(r.age.high) }) : undefined,
      text: r.text,
    }),
  );
}

export function mapObservation(o: fhir4.Observation, ctx: MapContext, id: string): Json {
  const path = `Observation/${o.id ?? '(new)'}`;
  notPresent(ctx, o as unknown as Json, path, ['partOf', 'focus', 'specimen', 'device']);
  if (o.effectiveTiming) ctx.lossy.push(`${path}.effectiveTiming: STU3 has effectiveDateTime or effectivePeriod only; not sent`);
  const related = [
    ...(o.hasMember ?? []).map((r, i) => ({ type: 'has-member', target: reference(r, ctx, `${path}.hasMember[${i}]`) })),
    ...(o.derivedFrom ?? []).map((r, i) => ({ type: 'derived-from', target: reference(r, ctx, `${path}.derivedFrom[${i}]`) })),
  ].filter((x) => x.target);
  return clean({
    resourceType: 'Observation',
    id,
    meta: { profile: [UPDATE_RECORD.observationProfile] },
    extension: [...extensions(o.extension, ctx, path), ...crossVersion('Observation.interpretation', o.interpretation?.slice(1))],
    identifier: o.identifier?.map(identifier),
    basedOn: references(o.basedOn, ctx, `${path}.basedOn`, ['CarePlan', 'DeviceRequest', 'ImmunizationRecommendation', 'MedicationRequest', 'NutritionOrder', 'ProcedureRequest', 'ReferralRequest']),
    status: mapStatus(o.status, OBSERVATION_STATUS, ctx, `${path}.status`),
    category: concepts(o.category),
    code: concept(o.code),
    subject: { reference: ctx.patientUrn },
    context: reference(o.encounter, ctx, `${path}.encounter`, ['Encounter', 'EpisodeOfCare']),
    effectiveDateTime: o.effectiveDateTime ?? o.effectiveInstant,
    effectivePeriod: period(o.effectivePeriod),
    issued: o.issued,
    performer: references(o.performer, ctx, `${path}.performer`, OBS_PERFORMER),
    ...value(o, ctx, path, true),
    dataAbsentReason: concept(o.dataAbsentReason),
    interpretation: interpretation(o.interpretation, ctx, path),
    comment: o.note?.length ? o.note.map((n) => n.text).join('\n\n') : undefined,
    bodySite: concept(o.bodySite),
    method: concept(o.method),
    referenceRange: referenceRange(o.referenceRange),
    related,
    component: o.component?.map((c, i) =>
      clean({
        extension: crossVersion('Observation.component.interpretation', c.interpretation?.slice(1)),
        code: concept(c.code),
        ...value(c, ctx, `${path}.component[${i}]`, false),
        dataAbsentReason: concept(c.dataAbsentReason),
        interpretation: interpretation(c.interpretation, ctx, `${path}.component[${i}]`),
        referenceRange: referenceRange(c.referenceRange),
      }),
    ),
  });
}

// ---------------------------------------------------------------------------------------------------------
// ServiceRequest -> ReferralRequest

/** R4 request-status -> STU3 ReferralRequest status (referralrequest-status). */
export const REFERRAL_STATUS: Record<string, string> = {
  ...same('draft', 'active', 'completed', 'entered-in-error', 'unknown'),
  'on-hold': 'suspended',
  revoked: 'cancelled',
};
/** R4 request-intent -> STU3 request-intent ('directive' is new in R4). */
const REQUEST_INTENT = same('proposal', 'plan', 'order', 'original-order', 'reflex-order', 'filler-order', 'instance-order', 'option');

export function mapServiceRequest(sr: fhir4.ServiceRequest, ctx: MapContext, id: string): Json {
  const path = `ServiceRequest/${sr.id ?? '(new)'}`;
  if (sr.doNotPerform) {
    throw new UpdateRecordMappingError(`${path}.doNotPerform is true: STU3 ReferralRequest cannot say "do not refer", so it is not sent`);
  }
  notPresent(ctx, sr as unknown as Json, path, [
    'instantiatesCanonical',
    'instantiatesUri',
    'quantityQuantity',
    'quantityRatio',
    'quantityRange',
    'asNeededBoolean',
    'asNeededCodeableConcept',
    'locationCode',
    'locationReference',
    'insurance',
    'specimen',
    'bodySite',
    'patientInstruction',
  ]);
  if (sr.occurrenceTiming) ctx.lossy.push(`${path}.occurrenceTiming: STU3 has occurrenceDateTime or occurrencePeriod only; not sent`);
  let intent = sr.intent as string | undefined;
  if (intent === 'directive') {
    ctx.lossy.push(`${path}.intent 'directive' has no STU3 equivalent; sent as 'order'`);
    intent = 'order';
  } else intent = mapStatus(intent, REQUEST_INTENT, ctx, `${path}.intent`);
  const agent = reference(sr.requester, ctx, `${path}.requester`, ['Practitioner', 'Organization', 'Patient', 'RelatedPerson', 'Device']);
  return clean({
    resourceType: 'ReferralRequest',
    id,
    meta: { profile: [UPDATE_RECORD.referralRequestProfile] },
    // STU3 ReferralRequest has no category: kept as the R4 cross-version extension.
    extension: [...extensions(sr.extension, ctx, path), ...crossVersion('ServiceRequest.category', sr.category)],
    identifier: sr.identifier?.map(identifier),
    basedOn: references(sr.basedOn, ctx, `${path}.basedOn`, ['ReferralRequest', 'CarePlan', 'ProcedureRequest']),
    replaces: references(sr.replaces, ctx, `${path}.replaces`, ['ReferralRequest']),
    groupIdentifier: sr.requisition ? identifier(sr.requisition) : undefined,
    status: mapStatus(sr.status, REFERRAL_STATUS, ctx, `${path}.status`),
    intent,
    // R4 ServiceRequest.code (what is requested: 871731000000106 Referral to social prescribing service) is the
    // STU3 ReferralRequest.type (the kind of referral); orderDetail (detail of what to do) -> serviceRequested.
    type: concept(sr.code),
    priority: sr.priority,
    serviceRequested: concepts(sr.orderDetail),
    subject: { reference: ctx.patientUrn },
    context: reference(sr.encounter, ctx, `${path}.encounter`, ['Encounter', 'EpisodeOfCare']),
    occurrenceDateTime: sr.occurrenceDateTime,
    occurrencePeriod: period(sr.occurrencePeriod),
    authoredOn: sr.authoredOn,
    // STU3 wraps the requester: requester.agent (1..1), requester.onBehalfOf.
    requester: agent ? { agent } : undefined,
    // R4 performerType (what kind of performer) is STU3's specialty.
    specialty: concept(sr.performerType),
    recipient: references(sr.performer, ctx, `${path}.performer`, ['Practitioner', 'Organization', 'HealthcareService']),
    reasonCode: concepts(sr.reasonCode),
    reasonReference: references(sr.reasonReference, ctx, `${path}.reasonReference`, ['Condition', 'Observation']),
    supportingInfo: references(sr.supportingInfo, ctx, `${path}.supportingInfo`),
    note: sr.note?.map((n, i) => annotation(n, ctx, `${path}.note[${i}]`)),
    relevantHistory: references(sr.relevantHistory, ctx, `${path}.relevantHistory`, ['Provenance']),
  });
}

// ---------------------------------------------------------------------------------------------------------
// CarePlan

/** R4 request-status -> STU3 care-plan-status. */
export const CAREPLAN_STATUS: Record<string, string> = REFERRAL_STATUS;
const CAREPLAN_INTENT = same('proposal', 'plan', 'order', 'option');
/** R4 care-plan-activity-status -> STU3 (no 'stopped' or 'entered-in-error' in STU3). */
const ACTIVITY_STATUS: Record<string, string> = {
  ...same('not-started', 'scheduled', 'in-progress', 'on-hold', 'completed', 'cancelled', 'unknown'),
  stopped: 'cancelled',
  'entered-in-error': 'cancelled',
};
const CAREPLAN_AUTHOR = ['Patient', 'Practitioner', 'RelatedPerson', 'Organization', 'CareTeam'];

export function mapCarePlan(cp: fhir4.CarePlan, ctx: MapContext, id: string): Json {
  const path = `CarePlan/${cp.id ?? '(new)'}`;
  notPresent(ctx, cp as unknown as Json, path, ['instantiatesCanonical', 'instantiatesUri', 'created']);
  const authors = [...(cp.author ? [cp.author] : []), ...(cp.contributor ?? [])];
  return clean({
    resourceType: 'CarePlan',
    id,
    extension: extensions(cp.extension, ctx, path),
    identifier: cp.identifier?.map(identifier),
    basedOn: references(cp.basedOn, ctx, `${path}.basedOn`, ['CarePlan']),
    replaces: references(cp.replaces, ctx, `${path}.replaces`, ['CarePlan']),
    partOf: references(cp.partOf, ctx, `${path}.partOf`, ['CarePlan']),
    status: mapStatus(cp.status, CAREPLAN_STATUS, ctx, `${path}.status`),
    intent: mapStatus(cp.intent, CAREPLAN_INTENT, ctx, `${path}.intent`),
    category: concepts(cp.category),
    title: cp.title,
    description: cp.description,
    subject: { reference: ctx.patientUrn },
    context: reference(cp.encounter, ctx, `${path}.encounter`, ['Encounter', 'EpisodeOfCare']),
    period: period(cp.period),
    // R4 split STU3's author (0..*) into author (0..1) and contributor (0..*).
    author: references(authors, ctx, `${path}.author/contributor`, CAREPLAN_AUTHOR),
    careTeam: references(cp.careTeam, ctx, `${path}.careTeam`, ['CareTeam']),
    addresses: references(cp.addresses, ctx, `${path}.addresses`, ['Condition']),
    supportingInfo: references(cp.supportingInfo, ctx, `${path}.supportingInfo`),
    goal: references(cp.goal, ctx, `${path}.goal`, ['Goal']),
    activity: cp.activity?.map((a, i) => {
      const ap = `${path}.activity[${i}]`;
      const d = a.detail;
      if (d?.kind) ctx.lossy.push(`${ap}.detail.kind '${d.kind}': STU3 has detail.category (diet, drug, ...) instead; not sent`);
      if (d?.instantiatesCanonical?.length || d?.instantiatesUri?.length) ctx.lossy.push(`${ap}.detail.instantiates*: not sent`);
      return clean({
        outcomeCodeableConcept: concepts(a.outcomeCodeableConcept),
        outcomeReference: references(a.outcomeReference, ctx, `${ap}.outcomeReference`),
        progress: a.progress?.map((n, j) => annotation(n, ctx, `${ap}.progress[${j}]`)),
        reference: reference(a.reference, ctx, `${ap}.reference`, [
          'Appointment',
          'CommunicationRequest',
          'DeviceRequest',
          'MedicationRequest',
          'NutritionOrder',
          'Task',
          'ProcedureRequest',
          'ReferralRequest',
          'VisionPrescription',
          'RequestGroup',
        ]),
        detail: d
          ? clean({
              code: concept(d.code),
              reasonCode: concepts(d.reasonCode),
              reasonReference: references(d.reasonReference, ctx, `${ap}.detail.reasonReference`, ['Condition']),
              goal: references(d.goal, ctx, `${ap}.detail.goal`, ['Goal']),
              status: mapStatus(d.status, ACTIVITY_STATUS, ctx, `${ap}.detail.status`),
              // STU3 statusReason is a string.
              statusReason: d.statusReason ? (d.statusReason.text ?? d.statusReason.coding?.map((c) => c.display ?? c.code).join(', ')) : undefined,
              // R4 renamed STU3 prohibited to doNotPerform.
              prohibited: d.doNotPerform,
              scheduledTiming: d.scheduledTiming,
              scheduledPeriod: period(d.scheduledPeriod),
              scheduledString: d.scheduledString,
              location: reference(d.location, ctx, `${ap}.detail.location`, ['Location']),
              performer: references(d.performer, ctx, `${ap}.detail.performer`, ['Practitioner', 'Organization', 'RelatedPerson', 'Patient', 'CareTeam']),
              productCodeableConcept: concept(d.productCodeableConcept),
              dailyAmount: quantity(d.dailyAmount),
              quantity: quantity(d.quantity),
              description: d.description,
            })
          : undefined,
      });
    }),
    note: cp.note?.map((n, i) => annotation(n, ctx, `${path}.note[${i}]`)),
  });
}

// ---------------------------------------------------------------------------------------------------------
// The record, the Composition and the ITK014M message

export interface MappedResource {
  /** The R4 resource. */
  source: fhir4.Resource;
  /** The STU3 resource (id = urn:uuid without the prefix). */
  stu3: Json;
}

const SECTION_TITLES: Record<string, string> = {
  ServiceRequest: 'Social prescribing referral',
  CarePlan: 'Personalised care and support plan',
  Observation: 'Outcome measures',
};

/**
 * The R4 resources an item carries for Update Record: the resource itself, or the ServiceRequest, CarePlan
 * and Observation entries of a Bundle (other entries except Patients are noted in `lossy`).
 */
export function recordResources(resource: fhir4.Resource, lossy: string[]): { resource: fhir4.Resource; fullUrl?: string }[] {
  const supported = (t: string) => (UPDATE_RECORD_RESOURCE_TYPES as readonly string[]).includes(t);
  if (resource.resourceType !== 'Bundle') return supported(resource.resourceType) ? [{ resource }] : [];
  const out: { resource: fhir4.Resource; fullUrl?: string }[] = [];
  for (const e of (resource as fhir4.Bundle).entry ?? []) {
    if (!e.resource || e.resource.resourceType === 'Patient') continue;
    if (supported(e.resource.resourceType)) out.push({ resource: e.resource, fullUrl: e.fullUrl });
    else lossy.push(`Bundle entry ${e.resource.resourceType}/${e.resource.id ?? ''}: not carried by Update Record`);
  }
  return out;
}

export interface UpdateRecordInput {
  /** Seeds every id (the engine's idempotency key: retries reuse the ids). */
  seed: string;
  /** The R4 record: a ServiceRequest, CarePlan, Observation, or a Bundle of them. */
  resource: fhir4.Resource;
  patient: PatientDetails;
  /** Extra reference strings that mean the patient (e.g. the delivery item's `Patient/<id>`). */
  patientRefs?: string[];
  sender: SenderDetails;
  compositionType?: SnomedCode;
  now: Date;
}

export interface UpdateRecordMessage {
  bundle: Json;
  /** MessageHeader.id, also SenderReference: what the ITK008M responses point back to. */
  messageId: string;
  mapped: MappedResource[];
  /** R4 content with no STU3 home, not sent (for the operator). */
  lossy: string[];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Builds the ITK014M message. Throws UpdateRecordMappingError when the record cannot be sent faithfully. */
export function buildUpdateRecordMessage(input: UpdateRecordInput): UpdateRecordMessage {
  const id = (part: string) => deterministicUuid(`${input.seed}|update-record|${part}`);
  const lossy: string[] = [];
  const sources = recordResources(input.resource, lossy);
  if (!sources.length) {
    throw new UpdateRecordMappingError(`${input.resource.resourceType} carries no ${UPDATE_RECORD_RESOURCE_TYPES.join(', ')} to send`);
  }
  const messageId = id('message-header');
  const bundleId = id('message-bundle');
  const docBundleId = id('document-bundle');
  const compositionId = id('composition');
  const patientId = id('patient');
  const orgId = id('organization');
  const timestamp = input.now.toISOString();

  const p = input.patient.patient;
  const patientRefs = new Set<string>(input.patientRefs ?? []);
  if (p.id) for (const k of [`#${p.id}`, `Patient/${p.id}`]) patientRefs.add(k);
  if (input.resource.resourceType === 'Bundle') {
    for (const e of (input.resource as fhir4.Bundle).entry ?? []) {
      const same = e.resource === p || (e.resource?.resourceType === 'Patient' && p.id !== undefined && e.resource.id === p.id);
      if (same && e.fullUrl) patientRefs.add(e.fullUrl);
    }
  }
  const ctx: MapContext = { patientUrn: `urn:uuid:${patientId}`, patientRefs, refs: new Map(), lossy };
  const ids = sources.map((s, i) => id(`resource|${i}|${s.resource.resourceType}/${s.resource.id ?? ''}`));
  sources.forEach((s, i) => {
    const urn = `urn:uuid:${ids[i]}`;
    if (s.resource.id) ctx.refs.set(`${s.resource.resourceType}/${s.resource.id}`, urn);
    if (s.fullUrl) ctx.refs.set(s.fullUrl, urn);
  });
  const mapped: MappedResource[] = sources.map((s, i) => {
    const r = s.resource;
    const stu3 =
      r.resourceType === 'ServiceRequest'
        ? mapServiceRequest(r as fhir4.ServiceRequest, ctx, ids[i])
        : r.resourceType === 'CarePlan'
          ? mapCarePlan(r as fhir4.CarePlan, ctx, ids[i])
          : mapObservation(r as fhir4.Observation, ctx, ids[i]);
    return { source: r, stu3 };
  });

  const organization: Json = {
    resourceType: 'Organization',
    id: orgId,
    meta: { profile: [ITK.organizationProfile] },
    identifier: [{ system: ITK.odsOrganisationSystem, value: input.sender.odsCode }],
    ...(input.sender.organisationName ? { name: input.sender.organisationName } : {}),
  };
  const stu3Patient = mapPatient(input.patient, patientId);
  const type = input.compositionType ?? DEFAULT_UPDATE_RECORD_COMPOSITION_TYPE;
  const sections = (UPDATE_RECORD_RESOURCE_TYPES as readonly string[])
    .map((t) => mapped.filter((m) => m.source.resourceType === t))
    .filter((group) => group.length)
    .map((group) => {
      const lines = group.flatMap((m) => {
        const s = summariseRecord(m.source);
        return [...s.lines, ...s.snomed.map((c) => `${c.display ?? '(no display)'} (SNOMED CT ${c.code})`)];
      });
      return {
        title: SECTION_TITLES[group[0].source.resourceType],
        text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml"><ul>${lines.map((l) => `<li>${esc(l)}</li>`).join('')}</ul></div>` },
        entry: group.map((m) => ({ reference: `urn:uuid:${m.stu3.id as string}` })),
      };
    });
  const composition: Json = {
    resourceType: 'Composition',
    id: compositionId,
    meta: { profile: [ITK.compositionProfile] },
    identifier: { system: ITK.uuidIdentifierSystem, value: compositionId },
    status: 'final',
    type: { coding: [{ system: ITK.snomed, code: type.code, display: type.display }] },
    subject: { reference: ctx.patientUrn },
    date: timestamp,
    author: [{ reference: `urn:uuid:${orgId}` }],
    title: 'Social prescribing record update',
    custodian: { reference: `urn:uuid:${orgId}` },
    section: sections,
  };
  const documentBundle: Json = {
    resourceType: 'Bundle',
    id: docBundleId,
    meta: { profile: [ITK.documentBundleProfile] },
    identifier: { system: ITK.uuidIdentifierSystem, value: docBundleId },
    type: 'document',
    entry: [composition, stu3Patient, organization, ...mapped.map((m) => m.stu3)].map((res) => ({ fullUrl: `urn:uuid:${res.id as string}`, resource: res })),
  };
  const header: Json = {
    resourceType: 'MessageHeader',
    id: messageId,
    meta: { profile: [ITK.messageHeaderProfile] },
    extension: [
      handlingExtension({
        busAck: true,
        infAck: true,
        recipientType: 'FA',
        messageDefinition: UPDATE_RECORD.messageDefinition,
        senderReference: messageId,
      }),
    ],
    event: { system: ITK.messageEventSystem, code: UPDATE_RECORD.event, display: UPDATE_RECORD.eventDisplay },
    sender: { reference: `urn:uuid:${orgId}` },
    timestamp,
    source: { endpoint: input.sender.mailboxId },
    focus: { reference: `urn:uuid:${docBundleId}` },
  };
  const bundle: Json = {
    resourceType: 'Bundle',
    id: bundleId,
    meta: { profile: [ITK.messageBundleProfile] },
    identifier: { system: ITK.uuidIdentifierSystem, value: bundleId },
    type: 'message',
    entry: [header, organization, documentBundle].map((res) => ({ fullUrl: `urn:uuid:${res.id as string}`, resource: res })),
  };
  return { bundle, messageId, mapped, lossy };
}
