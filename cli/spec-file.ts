/**
 * Reading the spec files commands take with -f (YAML or JSON; "-" is standard input), with the
 * error a person can act on: the file that could not be read and why, or where it is not YAML.
 */
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { CliError } from "./client.js";

/** The text of `file` ("-": standard input). */
export function readSpecText(file: string): string {
  try {
    return file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * A partial spec laid over another (import, restore): a mapping, or nothing at all when the file is
 * empty and `optional`. Duplicate keys are refused, as in a spec.
 */
export function readOverrides(file: string, o: { optional?: boolean } = {}): Record<string, unknown> | undefined {
  const text = readSpecText(file);
  let data: unknown;
  try {
    const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) throw doc.errors[0];
    data = doc.toJS();
  } catch (err) {
    throw new CliError(`${file}: is not valid YAML or JSON: ${(err as Error).message.split("\n")[0]}`);
  }
  if ((data === null || data === undefined) && o.optional) return undefined;
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw new CliError(`${file}: must be a mapping (a partial spec)`);
  return data as Record<string, unknown>;
}
