/**
 * Request bodies: bounded before they are parsed. The YAML parser recurses per nesting level and
 * builds error excerpts with regular expressions, so a few kilobytes of `[[[[…` (as YAML or as
 * "JSON" read by the YAML parser) exhausts its stack or the process's memory, and a large body
 * holds the event loop for seconds. Hence:
 *  - JSON (application/json) is read by JSON.parse, after a linear scan refuses nesting deeper
 *    than MAX_BODY_DEPTH;
 *  - YAML only for YAML content types, at most MAX_YAML_BYTES. Before anything recursive runs, the
 *    yaml package's own lexer (a linear state machine that applies YAML's quoting rules: a `"` in a
 *    plain or single-quoted scalar is just a character) counts flow brackets and stops at the
 *    first one past MAX_BODY_DEPTH, and a line scan refuses deep block indentation; aliases are
 *    capped when the document is built, and the built value's depth is checked again;
 *  - any other content type is refused (415) before the body is read.
 */
import YAML, { Lexer } from "yaml";

/** Nesting depth (objects/arrays, mappings/sequences) any body may have; a spec needs 5. */
export const MAX_BODY_DEPTH = 32;
/** YAML bodies are smaller than JSON ones: a spec is a few kilobytes, and YAML costs far more per byte. */
export const MAX_YAML_BYTES = 64 * 1024;
const MAX_YAML_ALIASES = 50;

export type BodyFormat = "json" | "yaml";

export class BodyError extends Error {
  override name = "BodyError";
  constructor(
    readonly status: 400 | 413 | 415,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const JSON_TYPES = ["application/json"];
const YAML_TYPES = ["application/yaml", "application/x-yaml", "text/yaml"];

/** The body format a Content-Type header asks for; BodyError 415 for anything else (a missing header included). */
export function bodyFormat(contentType: string | undefined): BodyFormat {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (JSON_TYPES.includes(type)) return "json";
  if (YAML_TYPES.includes(type)) return "yaml";
  throw new BodyError(
    415,
    "unsupported-media-type",
    `send the spec with Content-Type application/json or application/yaml (or text/yaml, application/x-yaml), ` +
      `not ${type ? JSON.stringify(type) : "without a content type"}`,
  );
}

/** Parse a body of the given format into plain data, or throw BodyError(400/413) saying why. */
export function parseBody(text: string, format: BodyFormat, source = "body"): unknown {
  if (!text.trim()) throw new BodyError(400, "bad-request", "the request body is empty; send a stateful instance spec");
  return format === "json" ? parseJsonBody(text, source) : parseYamlBody(text, source);
}

function parseJsonBody(text: string, source: string): unknown {
  const deep = jsonNestingBeyond(text, MAX_BODY_DEPTH);
  if (deep !== null) throw tooDeep(source, `at character ${deep}`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BodyError(400, "invalid-spec", `${source}: is not valid JSON (${(err as Error).message})`);
  }
}

function parseYamlBody(text: string, source: string): unknown {
  const size = Buffer.byteLength(text);
  if (size > MAX_YAML_BYTES)
    throw new BodyError(413, "payload-too-large", `a YAML body may be ${MAX_YAML_BYTES} bytes; this one is ${size} (send JSON for more)`);
  const flow = yamlFlowNestingBeyond(text, MAX_BODY_DEPTH);
  if (flow !== null) throw tooDeep(source, `at character ${flow}`);
  const block = yamlBlockNestingBeyond(text, MAX_BODY_DEPTH);
  if (block !== null) throw tooDeep(source, `at line ${block}`);
  let data: unknown;
  try {
    const doc = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: false });
    if (doc.errors.length > 0) throw doc.errors[0];
    data = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (err) {
    throw new BodyError(400, "invalid-spec", `${source}: is not valid YAML: ${String((err as Error)?.message ?? err).split("\n")[0]}`);
  }
  if (depthOf(data, MAX_BODY_DEPTH + 1) > MAX_BODY_DEPTH) throw tooDeep(source, "after expanding aliases");
  return data;
}

function tooDeep(source: string, where: string): BodyError {
  return new BodyError(400, "too-deep", `${source}: nests deeper than ${MAX_BODY_DEPTH} levels (${where}); a spec needs far fewer`);
}

/**
 * Index of the first `[` or `{` outside a JSON string that opens level `max + 1`, or null.
 * Linear, no allocation. JSON's quoting rules only: YAML goes through yamlFlowNestingBeyond.
 */
export function jsonNestingBeyond(text: string, max: number): number | null {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return i;
    } else if (c === 0x5d || c === 0x7d) {
      if (depth > 0) depth--;
    }
  }
  return null;
}

/**
 * Index of the first YAML flow-collection start (`[` or `{`) that opens level `max + 1`, or null.
 * The tokens come from the yaml package's Lexer, so quoted scalars, plain scalars, comments and
 * block scalars are told apart exactly as the parser will tell them apart: brackets inside any of
 * them are text and never counted, and a quote inside a plain or single-quoted scalar opens
 * nothing. The lexer keeps a counter, not a stack, and the scan stops at the first bracket too
 * deep, so the work is linear in the text and nothing recurses.
 */
export function yamlFlowNestingBeyond(text: string, max: number): number | null {
  let depth = 0;
  let offset = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === "[" || token === "{") {
      if (++depth > max) return offset;
    } else if (token === "]" || token === "}") {
      if (depth > 0) depth--;
    }
    // The lexer's document, scalar and flow-end markers are not source text.
    if (token !== "\x02" && token !== "\x1f" && token !== "\x18") offset += token.length;
  }
  return null;
}

/**
 * 1-based line at which block nesting exceeds `max`, or null. A line's depth is the number of
 * enclosing indentation levels plus the compact collection indicators it starts with
 * (`- - - x`, `? `). Text inside block scalars counts too, so a deeply indented script can be
 * refused; that takes more than `max` distinct indentation levels.
 */
export function yamlBlockNestingBeyond(text: string, max: number): number | null {
  const indents: number[] = [];
  let line = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    line++;
    let i = start;
    while (i < end && text.charCodeAt(i) === 0x20) i++;
    const indent = i - start;
    const first = text.charCodeAt(i);
    // Blank and comment lines do not open levels.
    if (i < end && first !== 0x23 && first !== 0x0d) {
      while (indents.length > 0 && indents[indents.length - 1]! >= indent) indents.pop();
      indents.push(indent);
      let compact = 0;
      for (;;) {
        const c = text.charCodeAt(i);
        const next = text.charCodeAt(i + 1);
        if ((c === 0x2d || c === 0x3f) && (next === 0x20 || next === 0x09) && i + 1 < end) {
          compact++;
          i += 2;
          while (i < end && (text.charCodeAt(i) === 0x20 || text.charCodeAt(i) === 0x09)) i++;
        } else break;
      }
      if (indents.length + compact > max) return line;
    }
    start = end + 1;
  }
  return null;
}

/** Depth of plain data, counting stops once it passes `limit`. */
export function depthOf(value: unknown, limit: number): number {
  if (typeof value !== "object" || value === null) return 0;
  if (limit <= 0) return 1;
  let deepest = 0;
  for (const v of Array.isArray(value) ? value : Object.values(value)) {
    const d = depthOf(v, limit - 1);
    if (d > deepest) deepest = d;
    if (deepest >= limit) break;
  }
  return deepest + 1;
}
