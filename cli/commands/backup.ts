/**
 * `spotkeep backup --out FILE [--data-dir DIR]`: an online, verified copy of the coordinator's
 * store, safe while the coordinator runs (SQLite's backup API).
 */
import { join } from "node:path";
import { defaultDataDir } from "../../coordinator/api/token.js";
import { backupStore, STORE_FILE } from "../../coordinator/db/backup.js";
import { parseFlags, UsageError } from "../args.js";
import { printJson } from "../client.js";
import type { Command } from "../command.js";

export const command: Command = {
  usage: `usage: spotkeep backup --out FILE [--data-dir DIR] [--json]

Copies the coordinator's store (<data dir>/${STORE_FILE}) to FILE while the coordinator keeps
running: one consistent snapshot, written with mode 0600 as a single self-contained SQLite file,
checked with integrity_check, then renamed into place (an existing FILE is replaced). The copy
carries the store identity. Restore it with: spotkeep restore-backup --from FILE.
  --data-dir DIR  the coordinator's data directory (default $SPOTKEEP_DATA_DIR, else ./spotkeep-data)`,
  async run(argv) {
    const { values } = parseFlags(argv, { out: { type: "string" }, "data-dir": { type: "string" }, json: { type: "boolean" } });
    if (!values.out) throw new UsageError("--out FILE is required");
    const r = await backupStore(join(values["data-dir"] ?? defaultDataDir(), STORE_FILE), values.out);
    if (values.json) printJson(r);
    else
      process.stdout.write(
        `backed up ${r.storeId ? `store ${r.storeId} (generation ${r.generation})` : "the store"} to ${r.file} (${r.bytes} bytes, integrity_check ok)\n`,
      );
    return 0;
  },
};
