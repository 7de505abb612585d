/**
 * Removes everything spotkeep's linux runtime left on this host (after a crash, or by hand):
 * `node --import tsx scripts/linux-cleanup.ts`. Waits for a live runtime to stop first (it never
 * sweeps under a running one). Prints what was left before and exits 0 when the host is clean.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLinuxRuntime, linuxRuntimeUnavailable } from "../localcloud/runtime/linux/index.js";

const why = linuxRuntimeUnavailable();
if (why) {
  console.error(`linux-cleanup: ${why}`);
  process.exit(1);
}
const scratch = mkdtempSync(join(tmpdir(), "spotkeep-lc-cleanup-"));
try {
  await createLinuxRuntime({ stateDir: scratch, log: (l) => console.log(l) }).cleanup();
  console.log("linux-cleanup: nothing of spotkeep's linux runtime is left on this host");
} catch (err) {
  console.error(`linux-cleanup: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
