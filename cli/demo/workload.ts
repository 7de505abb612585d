/**
 * The demo's workload: a script that appends fsync'd, numbered records to the data volume and
 * acknowledges each number in a file outside the instance, so lost writes can be counted.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";

const WORKLOAD = join(packageRoot(), "scripts", "demo-workload.mjs");

/** User-data of the demo instance: marks the root disk on first boot, then starts the workload. */
export function workloadUserData(acksFile: string): string {
  return `R="\${SPOTKEEP_ROOT_DIR:-}"
mkdir -p "$R/etc" "$R/opt" "$R/run" "$R/data"
[ -f "$R/etc/demo-marker" ] || echo "first-boot $SPOTKEEP_INSTANCE_ID" > "$R/etc/demo-marker"
cp ${JSON.stringify(WORKLOAD)} "$R/opt/demo-workload.mjs"
# A stock image has no node: the demo's workload runs on the one spotkeep's bootstrap keeps on the root.
NODE=$(command -v node || echo "$R/opt/spotkeep/node/bin/node")
nohup "$NODE" "$R/opt/demo-workload.mjs" --data "$R/data/records.log" --ack ${JSON.stringify(acksFile)} \\
  --pid "$R/run/workload.pid" >>"$R/run/workload.log" 2>&1 &
`;
}

/**
 * preStop: stop the workload and wait until it has exited (its last acknowledged record is on
 * disk). An exited workload may linger as a zombie until whatever adopted it reaps it, so a
 * zombie counts as gone.
 */
export const STOP_WORKLOAD =
  `R="\${SPOTKEEP_ROOT_DIR:-}"; P=$(cat "$R/run/workload.pid" 2>/dev/null); if [ -n "$P" ]; then kill -TERM "$P" 2>/dev/null; ` +
  `for i in $(seq 1 300); do [ -r /proc/$P/stat ] || break; ` +
  `case "$(cut -d' ' -f3 /proc/$P/stat 2>/dev/null)" in Z|X|"") break;; esac; sleep 0.02; done; fi`;

export function saveInstanceLogs(instancesDir: string, to: string): void {
  let ids: string[] = [];
  try {
    ids = readdirSync(instancesDir);
  } catch {
    return;
  }
  mkdirSync(to, { recursive: true });
  for (const id of ids) {
    try {
      copyFileSync(join(instancesDir, id, "console.log"), join(to, `${id}.log`));
    } catch {
      /* an instance that never booted has no log */
    }
  }
}

export function readFileText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

export function readLines(file: string): string[] {
  return readFileText(file).split("\n").filter(Boolean);
}
