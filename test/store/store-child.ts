/**
 * A coordinator stand-in for the store tests, run as a child process so a test can SIGKILL it with
 * writes in the WAL. Argument: JSON {mode, dir, rows?, checkpointAfter?}. Prints one JSON line when
 * ready, then waits to be killed.
 *  - "hold-lock": takes the data directory's lock.
 *  - "write": opens the store, appends `rows` events (one transaction each; a passive checkpoint
 *    after `checkpointAfter` of them), leaves everything in the WAL.
 */
import { join } from "node:path";
import { openDataDir } from "../../coordinator/db/datadir.js";
import { openDatabase } from "../../coordinator/db/open.js";

const args = JSON.parse(process.argv[2]!) as { mode: "hold-lock" | "write"; dir: string; rows?: number; checkpointAfter?: number };
if (args.mode === "hold-lock") {
  openDataDir(args.dir);
  process.stdout.write(`${JSON.stringify({ pid: process.pid })}\n`);
} else {
  const db = openDatabase(join(args.dir, "coordinator.sqlite"));
  db.pragma("wal_autocheckpoint = 0");
  const insert = db.prepare("INSERT INTO events (at, instance, kind, message) VALUES (?, 'orders-db', 'test', ?)");
  for (let i = 0; i < (args.rows ?? 10); i++) {
    insert.run(i, `row ${i} ${"x".repeat(200)}`);
    if (args.checkpointAfter !== undefined && i + 1 === args.checkpointAfter) db.pragma("wal_checkpoint(PASSIVE)");
  }
  process.stdout.write(`${JSON.stringify({ pid: process.pid })}\n`);
}
setInterval(() => undefined, 1 << 30);
