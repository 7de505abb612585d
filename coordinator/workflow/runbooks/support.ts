/**
 * Spec features the schema describes but this coordinator's runbooks do not carry
 * out yet. A spec asking for one is refused at create with the field named, instead of being
 * accepted and silently ignored.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";

/**
 * `region`: one of the regions this coordinator manages (its config `region` and `regions`). Every
 * EC2 call about an instance goes to its region, so a spec naming a region the coordinator is not
 * set up for is refused rather than launched where it does not say.
 */
export function unsupportedFeatures(
  spec: StatefulInstanceSpec,
  o: { regions?: readonly string[] } = {},
): Array<{ path: string; reason: string }> {
  const out: Array<{ path: string; reason: string }> = [];
  if (o.regions !== undefined && !o.regions.includes(spec.region))
    out.push({
      path: "region",
      reason:
        `${spec.region} is not a region this coordinator manages (${o.regions.join(", ")}); ` +
        "add it to the coordinator's config regions to launch there",
    });
  (spec.snapshots.copyToRegions ?? []).forEach((c, i) => {
    if (o.regions !== undefined && !o.regions.includes(c.region))
      out.push({
        path: `snapshots.copyToRegions[${i}].region`,
        reason: `${c.region} is not a region this coordinator manages (${o.regions.join(", ")}); the copies are made with its clients`,
      });
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
