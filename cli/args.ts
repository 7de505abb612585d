import { parseArgs, type ParseArgsConfig } from "node:util";

/**
 * Marks a UsageError. A registered symbol, so that `instanceof UsageError` in cli/main.ts also
 * recognises one thrown by localcloud or the demo, which are bundled apart (dist/cli/localcloud/)
 * with their own copy of this module.
 */
const USAGE_ERROR = Symbol.for("spotkeep.cli.UsageError");

/** A bad command line: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
  readonly [USAGE_ERROR] = true;

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && (value as { [USAGE_ERROR]?: unknown })[USAGE_ERROR] === true;
  }
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parse flags strictly: an unknown flag or a missing value is a UsageError naming it.
 * `positionals` is the number of positional arguments allowed (names used in the message).
 */
export function parseFlags<O extends Options>(argv: string[], options: O, positionals: string[] = []) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { help: { type: "boolean", short: "h" }, ...options },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    const msg = (err as Error).message
      .replace(/\. To specify a positional argument.*$/s, "")
      .replace(/^Unknown option '(.*)'$/, "unknown flag $1");
    throw new UsageError(msg);
  }
  if (parsed.positionals.length > positionals.length) {
    const extra = parsed.positionals.slice(positionals.length);
    throw new UsageError(`unexpected argument${extra.length > 1 ? "s" : ""}: ${extra.join(" ")}`);
  }
  return {
    values: parsed.values as ReturnType<typeof parseArgs<{ options: O & { help: { type: "boolean" } } }>>["values"],
    positionals: parsed.positionals,
  };
}

/** Parse a numeric flag, or throw a UsageError naming it. */
export function numberFlag(
  name: string,
  value: string | undefined,
  opts: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got ${JSON.stringify(value)}`);
  if (opts.integer && !Number.isInteger(n)) throw new UsageError(`--${name} must be a whole number, got ${value}`);
  if (opts.min !== undefined && n < opts.min) throw new UsageError(`--${name} must be at least ${opts.min}, got ${value}`);
  if (opts.max !== undefined && n > opts.max) throw new UsageError(`--${name} must be at most ${opts.max}, got ${value}`);
  return n;
}

/** Require a choice among values. */
export function choiceFlag<T extends string>(name: string, value: string | undefined, choices: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value))
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got ${JSON.stringify(value)}`);
  return value as T;
}
