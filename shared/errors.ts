/** An input that failed validation. `path` names the field (`persistence.volumes[0].device`). */
export class ValidationError extends Error {
  override name = "ValidationError";
  constructor(
    readonly issues: ReadonlyArray<{ path: string; reason: string }>,
    options?: { cause?: unknown },
  ) {
    super(issues.map((i) => (i.path ? `${i.path}: ${i.reason}` : i.reason)).join("; "), options);
  }
}

/** Format a zod-style path (`["a", 0, "b"]`) as `a[0].b`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}
