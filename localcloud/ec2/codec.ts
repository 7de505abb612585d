/**
 * The EC2 Query wire codec, driven by the SDK's own model.
 *
 * `@aws-sdk/client-ec2` exports the Smithy schema of every shape (`RunInstancesRequest$`,
 * `Instance$`, ...). The client serializes requests and deserializes responses from exactly these
 * schemas, so walking them here guarantees that localcloud reads the keys the SDK writes
 * (`BlockDeviceMapping.1.Ebs.SnapshotId`) and writes the element names the SDK reads
 * (`instancesSet/item/instanceState/name`). Handlers therefore deal in SDK-shaped objects
 * (`{ Reservations: [{ Instances: [...] }] }`) and never spell an XML element by hand.
 *
 * Raw schema encoding (see @smithy/core/schema): a number is a simple type (0 string, 1 number,
 * 2 boolean, 4-7 timestamp, 21/42 blob, 15 document, 17/19 big numbers, 64|x list of x, 128|x map);
 * an array is [kind, namespace, name, traits, ...] with kind 0 simple-with-traits, 1 list, 2 map,
 * 3/-3 structure, 4 union, 9 operation; a member is [schemaRef, memberTraits]; refs may be thunks.
 */
import * as sdk from "@aws-sdk/client-ec2";
import { Ec2Error } from "./errors.js";

type Raw = unknown;
type Traits = Record<string, unknown>;

const models = sdk as unknown as Record<string, Raw>;

function deref(s: Raw): Raw {
  return typeof s === "function" ? (s as () => Raw)() : s;
}

function traitsOf(t: unknown): Traits {
  return t && typeof t === "object" ? (t as Traits) : {};
}

/** Split a member entry into its target schema and its member traits. */
function splitMember(m: Raw): { schema: Raw; traits: Traits } {
  if (
    Array.isArray(m) &&
    m.length === 2 &&
    (typeof m[0] === "function" || typeof m[0] === "number" || m[0] === null || Array.isArray(m[0])) &&
    !Array.isArray(m[1]) &&
    (typeof m[1] === "object" || typeof m[1] === "number")
  ) {
    return { schema: deref(m[0]), traits: traitsOf(m[1]) };
  }
  return { schema: deref(m), traits: {} };
}

type Kind = "string" | "number" | "boolean" | "timestamp" | "blob" | "struct" | "list" | "map" | "other";

interface Resolved {
  kind: Kind;
  /** For lists: the element schema and its traits. */
  item?: { schema: Raw; traits: Traits };
  /** For structures: name, member names and entries. */
  name?: string;
  members?: Array<{ name: string; schema: Raw; traits: Traits }>;
  ownTraits?: Traits;
}

const structCache = new WeakMap<object, Resolved>();

function resolve(s0: Raw): Resolved {
  let s = deref(s0);
  // simple type with traits: [0, ns, name, traits, schemaRef]
  while (Array.isArray(s) && s[0] === 0) s = deref(s[4]);
  if (typeof s === "number") {
    if (s === 0) return { kind: "string" };
    if (s === 1 || s === 17 || s === 19) return { kind: "number" };
    if (s === 2) return { kind: "boolean" };
    if (s >= 4 && s <= 7) return { kind: "timestamp" };
    if (s === 21 || s === 42) return { kind: "blob" };
    if (s >= 64 && s < 128) return { kind: "list", item: { schema: s & 63, traits: {} } };
    if (s >= 128 && s <= 255) return { kind: "map" };
    return { kind: "other" };
  }
  if (!Array.isArray(s)) return { kind: "other" };
  const cached = structCache.get(s);
  if (cached) return cached;
  let out: Resolved;
  if (s[0] === 1) {
    out = { kind: "list", item: splitMember(s[4]), ownTraits: traitsOf(s[3]) };
  } else if (s[0] === 3 || s[0] === -3 || s[0] === 4) {
    const names = s[4] as string[];
    const entries = s[5] as Raw[];
    out = {
      kind: "struct",
      name: s[2] as string,
      ownTraits: traitsOf(s[3]),
      members: names.map((name, i) => ({ name, ...splitMember(entries[i]) })),
    };
  } else if (s[0] === 2) {
    out = { kind: "map" };
  } else {
    out = { kind: "other" };
  }
  structCache.set(s, out);
  return out;
}

/** The request and response schemas of an action, or null for an action the SDK doesn't know. */
export function operationSchemas(action: string): { input: Raw; output: Raw } | null {
  if (!/^[A-Z][A-Za-z0-9]+$/.test(action)) return null;
  const op = models[`${action}$`];
  if (!Array.isArray(op) || op[0] !== 9) return null;
  return { input: deref(op[4]), output: deref(op[5]) };
}

// ---------------------------------------------------------------------------------------------
// Requests: flat `Key.N.Sub` pairs -> SDK-shaped object, with type checks naming the parameter.

interface Node {
  value?: string;
  children?: Map<string, Node>;
}

function buildTree(params: Map<string, string>): Node {
  const root: Node = { children: new Map() };
  for (const [key, value] of params) {
    const parts = key.split(".");
    if (parts.some((p) => p === "")) throw new Ec2Error("InvalidParameterValue", `Malformed parameter name '${key}'`);
    let node = root;
    for (const part of parts) {
      node.children ??= new Map();
      let next = node.children.get(part);
      if (!next) {
        next = {};
        node.children.set(part, next);
      }
      node = next;
    }
    node.value = value;
  }
  return root;
}

function queryKey(member: { name: string; traits: Traits }): string {
  if (typeof member.traits.ec2QueryName === "string") return member.traits.ec2QueryName;
  const key = typeof member.traits.xmlName === "string" ? member.traits.xmlName : member.name;
  return key.charAt(0).toUpperCase() + key.slice(1);
}

const keyIndex = new WeakMap<object, Map<string, { name: string; schema: Raw; traits: Traits }>>();

function membersByKey(r: Resolved): Map<string, { name: string; schema: Raw; traits: Traits }> {
  let idx = keyIndex.get(r);
  if (!idx) {
    idx = new Map();
    for (const m of r.members ?? []) idx.set(queryKey(m), m);
    keyIndex.set(r, idx);
  }
  return idx;
}

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$/;

function readNode(schema: Raw, node: Node, path: string): unknown {
  const r = resolve(schema);
  switch (r.kind) {
    case "struct": {
      if (node.value !== undefined && !node.children)
        throw new Ec2Error("InvalidParameterValue", `Parameter ${path} must be a structure, not a value`);
      const out: Record<string, unknown> = {};
      const idx = membersByKey(r);
      for (const [key, child] of node.children ?? []) {
        const m = idx.get(key);
        const full = path ? `${path}.${key}` : key;
        if (!m) throw new Ec2Error("UnknownParameter", `The parameter ${full} is not recognized`);
        out[m.name] = readNode(m.schema, child, full);
      }
      return out;
    }
    case "list": {
      if (!node.children) throw new Ec2Error("InvalidParameterValue", `Parameter ${path} is a list: send it as ${path}.1, ${path}.2, ...`);
      const entries: Array<[number, Node]> = [];
      for (const [key, child] of node.children) {
        if (!/^[1-9][0-9]{0,4}$/.test(key))
          throw new Ec2Error("InvalidParameterValue", `Invalid list index in parameter ${path}.${key}: indexes are 1, 2, ...`);
        entries.push([Number(key), child]);
      }
      entries.sort((a, b) => a[0] - b[0]);
      return entries.map(([i, child]) => readNode(r.item!.schema, child, `${path}.${i}`));
    }
    default: {
      if (node.children) throw new Ec2Error("UnknownParameter", `The parameter ${path}.${[...node.children.keys()][0]} is not recognized`);
      const v = node.value ?? "";
      switch (r.kind) {
        case "string":
          return v;
        case "number": {
          if (!/^-?\d+(\.\d+)?$/.test(v.trim()))
            throw new Ec2Error("InvalidParameterValue", `Invalid value '${v}' for ${path}: expected a number`);
          return Number(v);
        }
        case "boolean": {
          if (v !== "true" && v !== "false")
            throw new Ec2Error("InvalidParameterValue", `Invalid value '${v}' for ${path}: expected true or false`);
          return v === "true";
        }
        case "timestamp": {
          const t = /^\d+(\.\d+)?$/.test(v) ? new Date(Number(v) * 1000) : ISO_RE.test(v) ? new Date(v) : new Date(NaN);
          if (Number.isNaN(t.getTime()))
            throw new Ec2Error("InvalidParameterValue", `Invalid value '${v}' for ${path}: expected an ISO 8601 timestamp`);
          return t;
        }
        case "blob":
          return v;
        default:
          return v;
      }
    }
  }
}

/**
 * Decode an action's parameters (everything but Action/Version) into its SDK request shape.
 * Unknown parameters -> UnknownParameter; wrong types -> InvalidParameterValue naming the key.
 */
export function decodeRequest(action: string, params: Map<string, string>): Record<string, unknown> {
  const ops = operationSchemas(action);
  if (!ops) throw new Ec2Error("InvalidAction", `The action ${action} is not valid for this web service.`);
  return readNode(ops.input, buildTree(params), "") as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Responses: SDK-shaped object -> `<ActionResponse>` XML.

const XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/";

export function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : "&apos;"));
}

function scalarText(kind: Kind, v: unknown): string {
  if (kind === "timestamp") {
    const d = v instanceof Date ? v : new Date(typeof v === "number" ? v : String(v));
    return Number.isNaN(d.getTime()) ? String(v) : d.toISOString();
  }
  if (kind === "blob" && v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  return String(v);
}

function writeValue(schema: Raw, value: unknown, tag: string, out: string[]): void {
  if (value === undefined || value === null) return;
  const r = resolve(schema);
  if (r.kind === "struct") {
    out.push(`<${tag}>`);
    const obj = value as Record<string, unknown>;
    for (const m of r.members!) {
      const v = obj[m.name];
      if (v === undefined || v === null) continue;
      writeValue(m.schema, v, typeof m.traits.xmlName === "string" ? m.traits.xmlName : m.name, out);
    }
    out.push(`</${tag}>`);
  } else if (r.kind === "list") {
    const arr = value as unknown[];
    if (!Array.isArray(arr)) throw new Error(`localcloud bug: ${tag} must be an array`);
    if (arr.length === 0) {
      out.push(`<${tag}/>`);
      return;
    }
    const item = r.item!;
    const itemTag = typeof item.traits.xmlName === "string" ? item.traits.xmlName : "member";
    out.push(`<${tag}>`);
    for (const v of arr) writeValue(item.schema, v, itemTag, out);
    out.push(`</${tag}>`);
  } else {
    out.push(`<${tag}>${xmlEscape(scalarText(r.kind, value))}</${tag}>`);
  }
}

/** Serialize an action's SDK-shaped output as the EC2 success document. */
export function encodeResponse(action: string, output: Record<string, unknown>, requestId: string): string {
  const ops = operationSchemas(action);
  if (!ops) throw new Error(`localcloud bug: no schema for ${action}`);
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${XMLNS}">`,
    `<requestId>${requestId}</requestId>`,
  ];
  const r = resolve(ops.output);
  // Actions with no modelled output (DeleteVolume, ModifyInstanceAttribute, ...) answer <return>true</return> on the wire.
  if (!r.members || r.members.length === 0) out.push("<return>true</return>");
  for (const m of r.members ?? []) {
    const v = output[m.name];
    if (v === undefined || v === null) continue;
    writeValue(m.schema, v, typeof m.traits.xmlName === "string" ? m.traits.xmlName : m.name, out);
  }
  out.push(`</${action}Response>`);
  return out.join("");
}

export function encodeError(code: string, message: string, requestId: string): string {
  const error = `<Error><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message></Error>`;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors>${error}</Errors><RequestID>${requestId}</RequestID></Response>`;
}
