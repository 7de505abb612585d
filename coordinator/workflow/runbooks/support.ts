/**
 * Spec features the schema describes but this coordinator's runbooks do not carry
 * out yet. A spec asking for one is refused at create with the field named, instead of being
 * accepted and silently ignored.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";

export function unsupportedFeatures(spec: StatefulInstanceSpec): Array<{ path: string; reason: string }> {
  const out: Array<{ path: string; reason: string }> = [];
  if (spec.persistence.network.attach === "secondary") {
    out.push({
      path: "persistence.network.attach",
      reason: "secondary (make-before-break) is not supported by this coordinator yet; use primary",
    });
  }
  return out;
}
