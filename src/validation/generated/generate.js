#!/usr/bin/env node
// @ts-check
/**
 * Regenerates src/validation/generated/structure-validators.ts: ajv standalone validation code for every
 * R4 resource type, compiled from profiles/schema/fhir.schema.json, plus the element model the structure
 * layer uses to name types and find nested resources.
 *
 *   node src/validation/generated/generate.js
 *
 * Compiling all 146 resource types with ajv takes 1.2-2.5 s on a 2-core machine, too slow for start-up, so
 * it happens here, at build time, and the service only loads the generated code. Run this after changing
 * the schema copy or this file; test/validation/structure.test.ts fails while the output is stale.
 *
 * The loaded copy of the schema differs from the HL7 file as listed in profiles/schema/README.md.
 */
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const Ajv = require('ajv').default;
const standaloneCode = require('ajv/dist/standalone').default;
const draft06 = require('ajv/dist/refs/json-schema-draft-06.json');

const ROOT = path.resolve(__dirname, '../../..');
const SCHEMA_FILE = path.join(ROOT, 'profiles/schema/fhir.schema.json');
const OUT_FILE = path.join(__dirname, 'structure-validators.ts');
const SCHEMA_KEY = 'fhir.schema.json';

// XML Schema's \s is [ \t\n\r] only; JavaScript's \s also matches NBSP, U+2028, U+FEFF and others, which the
// HL7 regexes (written for XSD) do not mean to forbid, e.g. in names and addresses.
const XSD_WS = ' \\t\\n\\r';
const INT_MIN = -2147483648;
const INT_MAX = 2147483647;

/**
 * The primitive types as this layer checks them. Patterns are the HL7 ones unless noted.
 * @type {Record<string, object>}
 */
const PRIMITIVES = {
  // HL7 pattern (Extension.valueBase64Binary only) `^(\s*([0-9a-zA-Z\+/=]){4}\s*)+$` backtracks exponentially
  // on long whitespace-separated input; this one matches the same strings in linear time.
  base64Binary: { type: 'string', pattern: `^(?:[${XSD_WS}]*[0-9a-zA-Z+/=]{4})+[${XSD_WS}]*$` },
  boolean: { type: 'boolean' },
  canonical: { type: 'string', pattern: '^\\S*$' },
  // `^[^\s]+(\s[^\s]+)*$` with XSD whitespace
  code: { type: 'string', pattern: `^[^${XSD_WS}]+([${XSD_WS}][^${XSD_WS}]+)*$` },
  date: null,
  dateTime: null,
  decimal: { type: 'number' },
  id: null,
  instant: null,
  // HL7 declares the integer types as JSON numbers with a pattern, which JSON schema applies to strings only,
  // so 1.5 and -1 passed as positiveInt.
  integer: { type: 'integer', minimum: INT_MIN, maximum: INT_MAX },
  // `^[ \r\n\t\S]+$` with XSD whitespace accepts any non-empty string; R4 forbids characters below U+0020 other
  // than tab, LF and CR (datatypes.html#string).
  markdown: { type: 'string', pattern: '^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F]+$' },
  oid: null,
  positiveInt: { type: 'integer', minimum: 1, maximum: INT_MAX },
  string: { type: 'string', pattern: '^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F]+$' },
  time: null,
  unsignedInt: { type: 'integer', minimum: 0, maximum: INT_MAX },
  uri: { type: 'string', pattern: '^\\S*$' },
  url: { type: 'string', pattern: '^\\S*$' },
  uuid: null,
  // HL7: no constraint at all. Narrative.div is an XHTML <div> element, as a JSON string.
  xhtml: { type: 'string', pattern: `^[${XSD_WS}]*<div[${XSD_WS}>/]` },
};

function stripDescriptions(node) {
  if (Array.isArray(node)) {
    node.forEach(stripDescriptions);
  } else if (node && typeof node === 'object') {
    for (const key of Object.keys(node)) {
      if (key === 'description' && typeof node[key] === 'string') delete node[key];
      else stripDescriptions(node[key]);
    }
  }
}

/** The HL7 schema as this layer loads it; see profiles/schema/README.md. */
function loadSchema(text) {
  const schema = JSON.parse(text);
  const resourceTypes = Object.keys(schema.discriminator.mapping).sort();
  delete schema.id;
  delete schema.oneOf;
  delete schema.discriminator;
  stripDescriptions(schema);
  const defs = schema.definitions;

  // Primitive definitions: remember the HL7 form (to recognise inline copies), then replace.
  /** @type {Map<string, string>} */
  const hl7Form = new Map();
  for (const name of Object.keys(PRIMITIVES)) {
    const def = defs[name];
    if (!def || def.properties) throw new Error(`schema has no primitive ${name}`);
    hl7Form.set(name, `${def.type}|${def.pattern}`);
    defs[name] = PRIMITIVES[name] ?? { type: def.type, pattern: def.pattern };
  }
  const capitalised = (/** @type {string} */ s) => s[0].toUpperCase() + s.slice(1);

  // Nested resources are validated one by one with their own type's validator, so ResourceList (the
  // oneOf over all 146 types) accepts any object here.
  defs.ResourceList = { type: 'object' };

  for (const [defName, def] of Object.entries(defs)) {
    if (!def.properties) continue;
    // HL7 gives complex types no `type`, so a string or array where an object belongs passed.
    def.type = 'object';
    for (const [propName, prop] of Object.entries(def.properties)) {
      const target = prop.type === 'array' ? prop.items : prop;
      if (target.$ref || target.enum || target.const !== undefined) continue;
      // Choice elements (valueDateTime, occurrencePeriod, ...) copy the primitive's schema inline: point
      // them at the (replaced) definition instead. The name says which primitive (uri, url and canonical
      // share a pattern, as do string and markdown).
      const name = Object.keys(PRIMITIVES).find((p) => propName.endsWith(capitalised(p)));
      const sameForm = name && (hl7Form.get(name) === `${target.type}|${target.pattern}` || name === 'base64Binary');
      if (!name || !sameForm) {
        throw new Error(`unrecognised inline schema at ${defName}.${propName}: ${JSON.stringify(target)}`);
      }
      for (const key of Object.keys(target)) delete target[key];
      target.$ref = `#/definitions/${name}`;
    }
    // Every primitive element may carry extensions in a `_name` sibling, but HL7's generator left them out
    // for canonical elements (Meta.profile, instantiatesCanonical, ...).
    for (const [propName, prop] of Object.entries(def.properties)) {
      const many = prop.type === 'array';
      const target = many ? prop.items : prop;
      if (target.$ref !== '#/definitions/canonical' || def.properties[`_${propName}`]) continue;
      def.properties[`_${propName}`] = many
        ? { type: 'array', items: { $ref: '#/definitions/Element' } }
        : { $ref: '#/definitions/Element' };
    }
  }
  return { schema, resourceTypes };
}

/**
 * The element model: for every complex type and resource, each element's type name, with `[]` when it
 * repeats. `Resource` marks a nested resource, `code` an element with an enumerated value set.
 */
function buildModel(schema, resourceTypes) {
  /** @type {Record<string, Record<string, string>>} */
  const types = {};
  for (const [defName, def] of Object.entries(schema.definitions)) {
    if (!def.properties) continue;
    /** @type {Record<string, string>} */
    const elements = {};
    for (const [propName, prop] of Object.entries(def.properties)) {
      if (prop.const !== undefined) continue; // resourceType
      const many = prop.type === 'array';
      const target = many ? prop.items : prop;
      let type;
      if (target.enum) type = 'code';
      else if (target.$ref) type = target.$ref.replace('#/definitions/', '');
      else throw new Error(`no type for ${defName}.${propName}`);
      if (type === 'ResourceList') type = 'Resource';
      elements[propName] = many ? `${type}[]` : type;
    }
    types[defName] = elements;
  }
  return { resourceTypes, primitives: Object.keys(PRIMITIVES), types, choices: choiceElements(types) };
}

/**
 * Choice elements (`value[x]`): the JSON schema lists each type as its own optional property, so it cannot
 * say that only one may be present. A group is two or more single elements named base + Type, typed Type.
 * @param {Record<string, Record<string, string>>} types
 */
function choiceElements(types) {
  /** @type {Record<string, Record<string, string>>} */
  const choices = {};
  for (const [typeName, elements] of Object.entries(types)) {
    /** @type {Record<string, string[]>} */
    const byBase = {};
    for (const [name, type] of Object.entries(elements)) {
      if (name.startsWith('_') || type.endsWith('[]')) continue;
      const suffix = type[0].toUpperCase() + type.slice(1);
      if (name.length > suffix.length && name.endsWith(suffix)) {
        (byBase[name.slice(0, -suffix.length)] ??= []).push(name);
      }
    }
    for (const [base, names] of Object.entries(byBase)) {
      if (names.length < 2) continue;
      choices[typeName] ??= {};
      for (const name of names) choices[typeName][name] = base;
    }
  }
  return choices;
}

function main() {
  const started = performance.now();
  const text = fs.readFileSync(SCHEMA_FILE, 'utf8');
  const { schema, resourceTypes } = loadSchema(text);
  const model = buildModel(schema, resourceTypes);

  const ajv = new Ajv({
    allErrors: true,
    strict: false,
    ownProperties: true,
    inlineRefs: false, // one function per definition: half the code and compile time of inlining
    messages: false, // the structure layer writes its own diagnostics
    code: { source: true },
  });
  ajv.addMetaSchema(draft06);
  ajv.addSchema(schema, SCHEMA_KEY);
  /** @type {Record<string, string>} */
  const refs = {};
  for (const type of resourceTypes) {
    const key = `${type}.schema.json`;
    ajv.addSchema({ $ref: `${SCHEMA_KEY}#/definitions/${type}` }, key);
    refs[type] = key;
  }
  const compileStart = performance.now();
  for (const key of Object.values(refs)) ajv.getSchema(key);
  const compileMs = performance.now() - compileStart;
  const code = standaloneCode(ajv, refs);

  const sha = (/** @type {string | Buffer} */ s) => crypto.createHash('sha256').update(s).digest('hex');
  // The code goes into the .ts file as string data, one function or schema constant per line: TypeScript
  // emitting the same code as code takes over 90 s (flow analysis of the huge validate functions), while a
  // string costs it nothing. src/validation/structure.ts turns it back into functions once, at start-up.
  const chunks = code
    .replace(/^"use strict";/, '')
    .split(/(?=function validate\d+\(|const schema\d+ = |const pattern\d+ = |const func\d+ = |exports\.)/)
    .filter((c) => c.trim() !== '');
  const out = [
    '// GENERATED by src/validation/generated/generate.js from profiles/schema/fhir.schema.json: do not edit.',
    '// Regenerate with: node src/validation/generated/generate.js',
    '',
    `export const schemaSha256 = ${JSON.stringify(sha(text))};`,
    '',
    `export const generatorSha256 = ${JSON.stringify(sha(fs.readFileSync(__filename)))};`,
    '',
    '/** Element model: resource types, primitives, and every type\'s elements (`Type` or `Type[]`). */',
    `export const modelJson = ${JSON.stringify(JSON.stringify(model))};`,
    '',
    '/**',
    ' * ajv standalone code (CommonJS, strict mode) assigning one validate function per R4 resource type to',
    ' * `exports.<Type>`; it requires ajv/dist/runtime/* and nothing else.',
    ' */',
    'export const validatorsCode: string = [',
    '  \'"use strict";\',',
    ...chunks.map((c) => `  ${JSON.stringify(c)},`),
    "  '\\n//# sourceURL=sp-bridge/fhir-r4-structure-validators.js',",
    "].join('');",
    '',
  ].join('\n');
  fs.writeFileSync(OUT_FILE, out);
  const total = performance.now() - started;
  process.stdout.write(
    `wrote ${path.relative(ROOT, OUT_FILE)}: ${resourceTypes.length} resource types, ` +
      `${(fs.statSync(OUT_FILE).size / 1e6).toFixed(1)} MB; ajv compile ${compileMs.toFixed(0)} ms, ` +
      `total ${total.toFixed(0)} ms\n`,
  );
}

module.exports = { loadSchema, buildModel, PRIMITIVES };

if (require.main === module) main();
