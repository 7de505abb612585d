/**
 * Evidence of a failed process-level test case, written where CI's log can point at it:
 * `test-output/<suite>/<case>/`, one file per source (the coordinator's output, localcloud's log,
 * the instance's timeline with every workflow's steps, localcloud's view of its EC2 instances).
 *
 * A suite wraps a case's body in `withEvidence(ctx, …)`; the files are written only when that case
 * fails, and a line naming the directory goes to stderr, followed by the end of each instance
 * timeline and scenario log, so the CI log itself shows why. Each collector is bounded in time and size and may
 * fail on its own (the coordinator may be the thing that died) without hiding the others.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { TestContext } from "vitest";
import { ROOT } from "../coordinator/harness.js";

export const OUTPUT_DIR = join(ROOT, "test-output");

/** A named piece of evidence: text, or a function that produces it (possibly asynchronously). */
export type Collector = string | (() => string | Promise<string>);

const MAX_BYTES = 2 * 1024 * 1024;
const COLLECT_MS = 10_000;

function slug(s: string): string {
  return (
    s
      .replace(/[^A-Za-z0-9._-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 120) || "case"
  );
}

async function collect(c: Collector): Promise<string> {
  if (typeof c === "string") return c;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(c),
      new Promise<string>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`collector gave no answer in ${COLLECT_MS} ms`)), COLLECT_MS);
      }),
    ]);
  } catch (err) {
    return `(could not collect: ${(err as Error).message})\n`;
  } finally {
    clearTimeout(timer);
  }
}

/** Writes the collectors' text into test-output/<suite>/<case>/; returns the directory and what was written. */
export async function writeEvidence(
  suiteFile: string,
  caseName: string,
  collectors: Record<string, Collector>,
): Promise<{ dir: string; texts: Record<string, string> }> {
  const dir = join(OUTPUT_DIR, slug(basename(suiteFile).replace(/\.test\.ts$/, "")), slug(caseName));
  mkdirSync(dir, { recursive: true });
  const texts: Record<string, string> = {};
  for (const [file, c] of Object.entries(collectors)) {
    let text = await collect(c);
    if (text.length > MAX_BYTES) text = `(first ${text.length - MAX_BYTES} characters cut)\n${text.slice(-MAX_BYTES)}`;
    writeFileSync(join(dir, slug(file)), text);
    texts[file] = text;
  }
  return { dir, texts };
}

/** Evidence whose end goes into the test log as well: a CI log that keeps no files still shows why. */
const DIGESTED = /(^|-)timeline\.txt$|^scenario\.log$/;
const DIGEST_LINES = 40;
const DIGEST_CHARS = 6000;

/** The last DIGEST_LINES lines (at most DIGEST_CHARS characters) of each instance timeline and scenario log. */
export function evidenceDigest(texts: Record<string, string>): string {
  const parts: string[] = [];
  for (const [file, text] of Object.entries(texts)) {
    if (!DIGESTED.test(file)) continue;
    const lines = text.trimEnd().split("\n");
    let tail = lines.slice(-DIGEST_LINES).join("\n");
    if (tail.length > DIGEST_CHARS) tail = tail.slice(-DIGEST_CHARS);
    const cut = lines.length > DIGEST_LINES || tail.length === DIGEST_CHARS ? " (its end)" : "";
    parts.push(`--- ${file}${cut}:\n${tail}`);
  }
  return parts.join("\n");
}

/**
 * Runs a test body and, when it fails, writes the collectors' evidence (see writeEvidence) before
 * the error goes on, so a caller's clean-up (killing the coordinator) runs after the evidence was
 * read: call it inside the try whose finally cleans up. A body that never ends (the test's own
 * timeout) is covered by the test context's failure hook, which runs while the body's processes
 * still live. Takes the test's own context: in a concurrent suite the global hook cannot tell which
 * case is running.
 */
export async function withEvidence<T>(
  ctx: TestContext,
  suiteFile: string,
  collectors: Record<string, Collector>,
  body: () => Promise<T>,
): Promise<T> {
  let written = false;
  const write = async () => {
    if (written) return;
    written = true;
    const { dir, texts } = await writeEvidence(suiteFile, ctx.task.name, collectors);
    const digest = evidenceDigest(texts);
    process.stderr.write(`evidence of the failed case "${ctx.task.name}": ${dir}\n${digest ? `${digest}\n` : ""}`);
  };
  ctx.onTestFailed(write);
  try {
    return await body();
  } catch (err) {
    await write();
    throw err;
  }
}

/** JSON with a trailing newline (for evidence files). */
export const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

type ApiCall = (method: string, path: string) => Promise<{ status: number; body: unknown }>;

interface TimelineStep {
  seq: number;
  name: string;
  status: string;
  attempts: number;
  startedAt: string | null;
  endedAt: string | null;
  error: string | null;
}

/**
 * The instance as the coordinator sees it: its detail, then its timeline (events and every
 * workflow's steps with times and attempts) as text a person reads top to bottom.
 */
export function instanceEvidence(call: ApiCall, name: string): Record<string, Collector> {
  const path = encodeURIComponent(name);
  return {
    "instance.json": async () => json(await call("GET", `instances/${path}`)),
    "timeline.txt": async () => {
      const r = await call("GET", `instances/${path}/events`);
      if (r.status !== 200) return `GET instances/${name}/events: ${r.status} ${JSON.stringify(r.body)}\n`;
      const body = r.body as {
        events: Array<{ at: string; kind: string; message: string; workflowId: string | null }>;
        timelines: Array<{ workflowId: string; kind: string; outcome: string; steps: TimelineStep[] }>;
      };
      const lines = body.events.map((e) => `${e.at}  ${e.kind.padEnd(20)} ${e.message}${e.workflowId ? `  [${e.workflowId}]` : ""}`);
      for (const t of body.timelines) {
        lines.push("", `workflow ${t.workflowId} (${t.kind}): ${t.outcome}`);
        for (const s of t.steps)
          lines.push(
            `  ${String(s.seq).padStart(3)} ${s.name.padEnd(28)} ${s.status.padEnd(9)} x${s.attempts}  ${s.startedAt ?? "-"} → ${s.endedAt ?? "-"}${s.error ? `  ${s.error}` : ""}`,
          );
      }
      return `${lines.join("\n")}\n`;
    },
  };
}

/** What localcloud holds for a stateful instance's resources (tag spotkeep:instance = name). */
export function localcloudEvidence(
  world: {
    instances: Map<string, { id: string; state: string; tags: Map<string, string>; launchTime: Date; stateTransitionReason: string }>;
    volumes: Map<string, { id: string; state: string; tags: Map<string, string>; attachment?: { instanceId: string } | null }>;
    enis: Map<string, { id: string; tags: Map<string, string>; attachment?: { instanceId: string; deviceIndex?: number } | null }>;
  },
  name: string,
): Record<string, Collector> {
  const mine = (t: Map<string, string>) => t.get("spotkeep:instance") === name;
  return {
    "localcloud.json": () =>
      json({
        instances: [...world.instances.values()]
          .filter((i) => mine(i.tags))
          .map((i) => ({
            id: i.id,
            state: i.state,
            launchTime: i.launchTime,
            reason: i.stateTransitionReason,
            tags: Object.fromEntries(i.tags),
          })),
        volumes: [...world.volumes.values()]
          .filter((v) => mine(v.tags))
          .map((v) => ({ id: v.id, state: v.state, attachedTo: v.attachment?.instanceId ?? null, tags: Object.fromEntries(v.tags) })),
        enis: [...world.enis.values()]
          .filter((e) => mine(e.tags))
          .map((e) => ({ id: e.id, attachment: e.attachment ?? null, tags: Object.fromEntries(e.tags) })),
      }),
  };
}

/**
 * The evidence of one crash case: every coordinator run's output (oldest first), the instance as the
 * last coordinator sees it, and localcloud's view of its resources.
 */
export function crashCaseEvidence(o: {
  runs: ReadonlyArray<{ log: string[] }>;
  call: ApiCall;
  name: string;
  world: Parameters<typeof localcloudEvidence>[0];
}): Record<string, Collector> {
  return {
    "coordinator.log": () => o.runs.map((r, i) => `===== coordinator run ${i + 1} =====\n${r.log.join("")}`).join("\n"),
    ...instanceEvidence(o.call, o.name),
    ...localcloudEvidence(o.world, o.name),
  };
}

/** The same collectors under file names that start with `prefix` (several instances in one case). */
export function prefixed(prefix: string, collectors: Record<string, Collector>): Record<string, Collector> {
  return Object.fromEntries(Object.entries(collectors).map(([file, c]) => [`${prefix}${file}`, c]));
}

/**
 * The evidence of a group's crash case: every coordinator run's output, the group as the last
 * coordinator sees it, and each member's detail, timeline and localcloud resources (files
 * prefixed with the member's name).
 */
export function groupCaseEvidence(o: {
  runs: ReadonlyArray<{ log: string[] }>;
  call: ApiCall;
  group: string;
  members: string[];
  world: Parameters<typeof localcloudEvidence>[0];
}): Record<string, Collector> {
  return {
    "coordinator.log": () => o.runs.map((r, i) => `===== coordinator run ${i + 1} =====\n${r.log.join("")}`).join("\n"),
    "group.json": async () => json(await o.call("GET", `groups/${encodeURIComponent(o.group)}`)),
    ...Object.assign({}, ...o.members.map((m) => prefixed(`${m}-`, { ...instanceEvidence(o.call, m), ...localcloudEvidence(o.world, m) }))),
  };
}

/**
 * The collectors' text now (each bounded as in writeEvidence), for a case that stops the process
 * they ask before its last checks: the evidence then shows what that process said while it ran.
 */
export async function settled(collectors: Record<string, Collector>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [file, c] of Object.entries(collectors)) out[file] = await collect(c);
  return out;
}
