/**
 * The resource types sp-bridge serves and their search parameters. Adding a type is one entry here.
 * Parameter names, types and paths follow the R4 search parameter registry
 * (http://hl7.org/fhir/R4/searchparameter-registry.html).
 */
export type SearchParamType = 'token' | 'reference' | 'date' | 'string';

export interface SearchParamDef {
  name: string;
  type: SearchParamType;
  /** Dotted element paths from the resource root; `x[x]` matches every choice of a choice element. */
  paths: string[];
  /** For reference parameters: the resource types a reference must point to. */
  targets?: string[];
  description: string;
}

export interface ResourceTypeDef {
  type: string;
  description: string;
  searchParams: SearchParamDef[];
}

const p = (
  name: string,
  type: SearchParamType,
  paths: string | string[],
  description: string,
  targets?: string[],
): SearchParamDef => ({ name, type, paths: Array.isArray(paths) ? paths : [paths], description, targets });

const CAREPLAN_BASED_ON_R5 = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-CarePlan.basedOn';

const identifier = p('identifier', 'token', 'identifier', 'A business identifier (system|value)');
const subjectPatient = (path: string) => p('patient', 'reference', path, 'The patient the resource is about', ['Patient']);
const subject = (path: string) => p('subject', 'reference', path, 'Who or what the resource is about');
const status = p('status', 'token', 'status', 'The status of the resource');
const basedOn = p('based-on', 'reference', 'basedOn', 'The request this fulfils');

export const resourceTypes: readonly ResourceTypeDef[] = [
  {
    type: 'Patient',
    description: 'The person referred to social prescribing',
    searchParams: [
      identifier,
      p('name', 'string', ['name'], 'Any part of a name'),
      p('family', 'string', 'name.family', 'Family name'),
      p('given', 'string', 'name.given', 'Given name'),
      p('birthdate', 'date', 'birthDate', 'Date of birth'),
      p('gender', 'token', 'gender', 'Administrative gender'),
      p('address-postalcode', 'string', 'address.postalCode', 'Postcode'),
      p('general-practitioner', 'reference', 'generalPractitioner', 'Registered GP practice or practitioner'),
      p('organization', 'reference', 'managingOrganization', 'Managing organisation'),
      p('active', 'token', 'active', 'Whether the record is active'),
    ],
  },
  {
    type: 'ServiceRequest',
    description: 'A referral to social prescribing',
    searchParams: [
      identifier,
      subjectPatient('subject'),
      subject('subject'),
      status,
      p('intent', 'token', 'intent', 'proposal | plan | order ...'),
      p('priority', 'token', 'priority', 'routine | urgent | asap | stat'),
      p('code', 'token', 'code', 'What is being requested'),
      p('category', 'token', 'category', 'Classification of the request'),
      p('authored', 'date', 'authoredOn', 'When the request was signed'),
      p('occurrence', 'date', 'occurrence[x]', 'When the service should occur'),
      p('requester', 'reference', 'requester', 'Who asked for the referral'),
      p('performer', 'reference', 'performer', 'Who should perform it'),
      basedOn,
      p('replaces', 'reference', 'replaces', 'The request this one replaces'),
      p('requisition', 'token', 'requisition', 'Composite request identifier'),
    ],
  },
  {
    type: 'CarePlan',
    description: 'A personalised care and support plan',
    searchParams: [
      identifier,
      subjectPatient('subject'),
      subject('subject'),
      status,
      p('intent', 'token', 'intent', 'proposal | plan | order | option'),
      p('category', 'token', 'category', 'Type of plan'),
      p('date', 'date', 'period', 'Time period the plan covers'),
      // R4 CarePlan.basedOn names only CarePlans; a plan's referral travels in the R5 basedOn extension.
      p('based-on', 'reference', ['basedOn', `extension(${CAREPLAN_BASED_ON_R5}).valueReference`], 'The request this plan fulfils'),
      p('part-of', 'reference', 'partOf', 'The plan this is part of'),
      p('replaces', 'reference', 'replaces', 'The plan this one replaces'),
      p('activity-code', 'token', 'activity.detail.code', 'What the activity is'),
      p('performer', 'reference', 'activity.detail.performer', 'Who performs an activity'),
      p('care-team', 'reference', 'careTeam', 'Who is involved'),
    ],
  },
  {
    type: 'Observation',
    description: 'An outcome measure such as ONS4, WEMWBS or PAM',
    searchParams: [
      identifier,
      subjectPatient('subject'),
      subject('subject'),
      status,
      p('code', 'token', 'code', 'The kind of observation'),
      p('component-code', 'token', 'component.code', 'The kind of a component'),
      p('category', 'token', 'category', 'Classification of the observation'),
      p('date', 'date', 'effective[x]', 'When the observation applies'),
      p('performer', 'reference', 'performer', 'Who made the observation'),
      basedOn,
      p('part-of', 'reference', 'partOf', 'The event this is part of'),
      p('derived-from', 'reference', 'derivedFrom', 'What the value was derived from'),
      p('focus', 'reference', 'focus', 'What the observation is about when not the subject'),
    ],
  },
  {
    type: 'Task',
    description: "A referral's acceptance workflow",
    searchParams: [
      identifier,
      subjectPatient('for'),
      p('subject', 'reference', 'for', 'Beneficiary of the task'),
      status,
      p('business-status', 'token', 'businessStatus', 'Business-specific status'),
      p('intent', 'token', 'intent', 'proposal | plan | order ...'),
      p('priority', 'token', 'priority', 'routine | urgent | asap | stat'),
      p('code', 'token', 'code', 'Task type'),
      p('authored-on', 'date', 'authoredOn', 'When the task was created'),
      p('modified', 'date', 'lastModified', 'When the task was last modified'),
      p('period', 'date', 'executionPeriod', 'When the task is being done'),
      p('requester', 'reference', 'requester', 'Who asked for the task'),
      p('owner', 'reference', 'owner', 'Who is responsible for the task'),
      p('performer', 'token', 'performerType', 'The kind of performer wanted'),
      basedOn,
      p('focus', 'reference', 'focus', 'What the task acts on'),
      p('part-of', 'reference', 'partOf', 'The task this is part of'),
    ],
  },
];

const byType = new Map(resourceTypes.map((def) => [def.type, def]));

export function resourceType(type: string): ResourceTypeDef | undefined {
  return byType.get(type);
}

export function searchParam(type: string, name: string): SearchParamDef | undefined {
  return byType.get(type)?.searchParams.find((sp) => sp.name === name);
}
