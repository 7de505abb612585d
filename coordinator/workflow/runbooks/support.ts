/**
 * Spec features the schema describes but this coordinator's runbooks do not carry
 * out yet. A spec asking for one is refused at create with the field named, instead of being
 * accepted and silently ignored.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";

/**
 * `region`: the coordinator's own region (its config `region`). Every EC2 call of this coordinator
 * goes there, so a spec naming another region is refused rather than launched where it does not say.
 */
export function unsupportedFeatures(spec: StatefulInstanceSpec, o: { region?: string } = {}): Array<{ path: string; reason: string }> {
  const out: Array<{ path: string; reason: string }> = [];
  if (o.region !== undefined && spec.region !== o.region)
    out.push({
      path: "region",
      reason: `${spec.region} is not this coordinator's region (${o.region}); one coordinator manages one region`,
    });
  if (spec.persistence.network.attach === "secondary") {
    // Make-before-break boots the replacement while the old instance still serves: there is no
    // quiesced root to capture and no point-in-time data snapshot to launch from before it starts.
    if (spec.persistence.root)
      out.push({
        path: "persistence.root",
        reason: "cannot be true with persistence.network.attach: secondary (make-before-break boots the replacement from launch.imageId)",
      });
    if (spec.persistence.dataMethod === "snapshot")
      out.push({
        path: "persistence.dataMethod",
        reason:
          "snapshot cannot be used with persistence.network.attach: secondary (make-before-break moves the volumes themselves); use reattach",
      });
  }
  return out;
}
