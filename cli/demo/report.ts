/** What the demo verified, and how it is printed for a human. */
import type { Timeline } from "../../shared/api.js";
import { renderTable } from "../table.js";
import { renderTimeline } from "../timeline.js";

export interface DemoResult {
  recovered: boolean;
  samePrivateIp: boolean;
  sameEni: boolean;
  sameDataVolume: boolean;
  /** null with --network secondary: make-before-break boots the replacement from the launch image. */
  sameRootDisk: boolean | null;
  workloadResumed: boolean;
  /**
   * The instances boot a stock image with no Node.js: the first generation's bootstrap downloaded
   * the runtime the coordinator serves, and (root persistence) the replacement used the copy its
   * root carries; null for the replacement when its root is not the old one (make-before-break).
   */
  agentRuntime: { downloadedAtFirstBoot: boolean; keptByReplacement: boolean | null };
  acknowledgedWrites: number;
  lostWrites: number;
  downtimeSeconds: number | null;
  recoverySeconds: number | null;
  criticalPathSeconds: number;
  downtimeOverCriticalPath: number | null;
  timeScale: number;
  dataMethod: "reattach" | "snapshot";
  /** primary: break-before-make; secondary: make-before-break (criticalPathSeconds is then detach + attach). */
  network: "primary" | "secondary";
  realSeconds: number;
  before: { instanceId: string; privateIp: string | null; eniId: string | null; volumeId: string | null };
  after: { instanceId: string | null; privateIp: string | null; eniId: string | null; volumeId: string | null; generation: number };
  timeline: Timeline | null;
}

export function verified(r: DemoResult): boolean {
  return (
    r.recovered &&
    r.samePrivateIp &&
    r.sameEni &&
    r.sameDataVolume === (r.dataMethod === "reattach") &&
    r.sameRootDisk !== false &&
    r.workloadResumed &&
    r.agentRuntime.downloadedAtFirstBoot &&
    r.agentRuntime.keptByReplacement !== false &&
    r.lostWrites === 0 &&
    r.acknowledgedWrites > 0
  );
}

export function printReport(out: NodeJS.WritableStream, r: DemoResult): void {
  const ok = (b: boolean) => (b ? "yes" : "NO");
  out.write("\nVERIFICATION\n");
  out.write(
    renderTable(
      ["CHECK", "RESULT", "DETAIL"],
      [
        ["recovered", ok(r.recovered), `generation ${r.after.generation} on ${r.after.instanceId}`],
        ["same private IP", ok(r.samePrivateIp), `${r.before.privateIp} -> ${r.after.privateIp}`],
        ["same network interface", ok(r.sameEni), `${r.before.eniId} -> ${r.after.eniId}`],
        [
          r.dataMethod === "reattach" ? "same data volume" : "data volume restored",
          ok(r.dataMethod === "reattach" ? r.sameDataVolume : !!r.after.volumeId),
          `${r.before.volumeId} -> ${r.after.volumeId}`,
        ],
        r.sameRootDisk === null
          ? ["root disk kept (image)", "n/a", "make-before-break boots the replacement from the launch image"]
          : ["root disk kept (image)", ok(r.sameRootDisk), "marker written at first boot is on the new root"],
        [
          "acknowledged writes kept",
          ok(r.lostWrites === 0 && r.acknowledgedWrites > 0),
          `${r.acknowledgedWrites - r.lostWrites} of ${r.acknowledgedWrites} acknowledged records found (${r.lostWrites} lost)`,
        ],
        ["workload serving again", ok(r.workloadResumed), "new records written by the replacement"],
        [
          "agent on a stock image",
          ok(r.agentRuntime.downloadedAtFirstBoot && r.agentRuntime.keptByReplacement !== false),
          r.agentRuntime.keptByReplacement === null
            ? "no Node.js on the image: the first boot downloaded the coordinator's runtime"
            : "no Node.js on the image: the first boot downloaded the coordinator's runtime, the replacement used the copy on its root",
        ],
      ],
    ),
  );
  out.write("\nTIMING (model seconds)\n");
  out.write(
    renderTable(
      ["MEASURE", "SECONDS", "NOTE"],
      [
        ["downtime", r.downtimeSeconds?.toFixed(1), "quiesce start on the old instance -> replacement ready"],
        ["recovery", r.recoverySeconds?.toFixed(1), "notice -> replacement ready"],
        [
          "critical path",
          r.criticalPathSeconds.toFixed(1),
          r.network === "secondary"
            ? "profile's lower bound: detach + attach (quiesce and mount on top)"
            : "profile's lower bound: terminate + ENI free + launch + boot",
        ],
        [
          "downtime / critical path",
          r.downtimeOverCriticalPath?.toFixed(2),
          r.network === "secondary" ? "quiesce and mount come on top of this path" : "target <= 1.15",
        ],
        ["demo wall clock", r.realSeconds.toFixed(1), `real seconds at time scale ${r.timeScale}`],
      ],
    ),
  );
  if (r.timeline) out.write(`\nTIMELINE\n${renderTimeline(r.timeline)}`);
  const rootDisk = r.sameRootDisk === null ? "" : "root disk ";
  const mode = r.network === "secondary" ? " (make-before-break)" : "";
  out.write(
    verified(r)
      ? `\ndemo verified: the stateful instance survived the interruption with its IP, volume, ${rootDisk}and every acknowledged write${mode}\n`
      : "\ndemo FAILED verification (see above)\n",
  );
}
