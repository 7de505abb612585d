import type { z } from "zod";
import { ValidationError, formatPath } from "./errors.js";

/** Turn zod issues into one ValidationError whose message names each path and reason. */
export function zodToValidationError(error: z.ZodError, prefix = ""): ValidationError {
  const issues = error.issues.map((issue) => {
    const path = formatPath([...(prefix ? [prefix] : []), ...issue.path]);
    return { path, reason: describeIssue(issue) };
  });
  return new ValidationError(issues, { cause: error });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_type":
      // zod 4 reports "received undefined" for a missing field
      if (/received undefined/.test(issue.message)) return "is required";
      return issue.message.replace(/^Invalid input: /, "");
    case "unrecognized_keys":
      return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    default:
      return issue.message;
  }
}
