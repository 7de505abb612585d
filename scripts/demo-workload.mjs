#!/usr/bin/env node
// The demo's stateful workload: appends numbered records to a file on the data volume, fsyncs
// each one, and only then acknowledges it (appends its number to an ack file outside the
// volume, fsync'd too). Every acknowledged record must therefore survive any replacement.
// On start it continues after the last complete record it finds, so a replacement resumes.
//
// usage: node demo-workload.mjs --data FILE --ack FILE [--pid FILE] [--interval-ms 50]
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { data: { type: "string" }, ack: { type: "string" }, pid: { type: "string" }, "interval-ms": { type: "string" } },
});
if (!values.data || !values.ack) {
  console.error("usage: demo-workload.mjs --data FILE --ack FILE [--pid FILE] [--interval-ms N]");
  process.exit(2);
}
const intervalMs = Number(values["interval-ms"] ?? 50);
mkdirSync(dirname(values.data), { recursive: true });
mkdirSync(dirname(values.ack), { recursive: true });
if (values.pid) writeFileSync(values.pid, `${process.pid}\n`);

let next = 1;
if (existsSync(values.data)) {
  // A torn last line (no newline) is not a complete record; it was never acknowledged.
  const lines = readFileSync(values.data, "utf8").split("\n").slice(0, -1);
  const last = lines
    .map((l) => /^record (\d+) /.exec(l))
    .filter(Boolean)
    .pop();
  if (last) next = Number(last[1]) + 1;
}
console.log(JSON.stringify({ msg: "demo workload started", pid: process.pid, resumeAt: next }));

const data = openSync(values.data, "a");
const ack = openSync(values.ack, "a");
let stopping = false;
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    stopping = true;
  });
}

function writeOne() {
  if (stopping) {
    closeSync(data);
    closeSync(ack);
    console.log(JSON.stringify({ msg: "demo workload stopped", lastRecord: next - 1 }));
    process.exit(0);
  }
  const n = next++;
  writeSync(data, `record ${n} ${process.env.SPOTKEEP_INSTANCE_ID ?? "-"} ${new Date().toISOString()}\n`);
  fsyncSync(data);
  writeSync(ack, `${n}\n`);
  fsyncSync(ack);
  setTimeout(writeOne, intervalMs);
}
writeOne();
