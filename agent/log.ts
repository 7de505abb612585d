/**
 * JSON-lines logger (journald-friendly): one object per line on stdout, `{ts, level, msg, ...fields}`.
 * Logging never throws: a failed write is dropped rather than crashing the agent (and never blocks
 * on a frozen filesystem, since the agent refuses to freeze the fs its stdout goes to).
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(opts: { level?: LogLevel; write?: (line: string) => void; fields?: Record<string, unknown> } = {}): Logger {
  const min = ORDER[opts.level ?? "info"];
  const write = opts.write ?? ((line: string) => void process.stdout.write(line));
  const base = opts.fields ?? {};
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    try {
      write(`${JSON.stringify({ ts: new Date().toISOString(), level, msg, ...base, ...normalise(fields) })}\n`);
    } catch {
      // never let logging take the agent down
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger({ ...opts, fields: { ...base, ...fields } }),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = createLogger({ write: () => {} });

function normalise(fields?: Record<string, unknown>): Record<string, unknown> {
  if (!fields) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = v instanceof Error ? errorText(v) : v;
  return out;
}

/** `message (cause: …)` chain, so a wrapped error keeps what was attempted and why it failed. */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  let text = err.message;
  let cause = (err as { cause?: unknown }).cause;
  for (let i = 0; cause !== undefined && i < 4; i++) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    if (!text.includes(msg)) text += ` (cause: ${msg})`;
    cause = cause instanceof Error ? (cause as { cause?: unknown }).cause : undefined;
  }
  return text;
}
