/** `spotkeep localcloud --events-queue NAME`: the queue and its rule exist at start; a bad name is a usage error. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { GetQueueUrlCommand, SQSClient } from "@aws-sdk/client-sqs";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../cli/built.js";

const BIN = path.resolve(import.meta.dirname, "../../bin/spotkeep.js");
const children: ChildProcess[] = [];
const dirs: string[] = [];

beforeAll(() => ensureBuilt());
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(-c.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function start(args: string[]) {
  const child = spawn(process.execPath, [BIN, "localcloud", "--port", "0", "--profile", "instant", "--runtime", "none", ...args], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, exited, output: () => ({ out, err }) };
}

describe("spotkeep localcloud --events-queue", () => {
  it("creates the queue and a rule for EC2's instance events, and prints the queue URL", async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), "lc-events-cli-"));
    dirs.push(stateDir);
    const p = start(["--state-dir", stateDir, "--events-queue", "spotkeep-events"]);
    const deadline = Date.now() + 30_000;
    while (!/events queue (\S+)/.test(p.output().out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const { out } = p.output();
    const endpoint = /localcloud listening on (\S+)/.exec(out)![1]!;
    const queueUrl = /events queue (\S+)/.exec(out)![1]!;
    const sqs = new SQSClient({ endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
    expect((await sqs.send(new GetQueueUrlCommand({ QueueName: "spotkeep-events" }))).QueueUrl).toBe(queueUrl);
    sqs.destroy();
    const rules = (await fetch(`${endpoint}/_localcloud/v1/events/rules`).then((r) => r.json())) as {
      rules: Array<{ name: string; queue: string }>;
    };
    expect(rules.rules.map((r) => [r.name, r.queue])).toEqual([["spotkeep-interruptions", "spotkeep-events"]]);
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  });

  it("refuses a queue name SQS would refuse, with a usage error", async () => {
    const p = start(["--events-queue", "not a name"]);
    expect(await p.exited).toBe(2);
    expect(p.output().err).toMatch(/--events-queue: "not a name" is not a queue name/);
  });
});
