import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { realClock } from "../../shared/clock.js";
import { runHook } from "../../agent/quiesce/hooks.js";
import { Quiescer } from "../../agent/quiesce/quiescer.js";
import { createFsFreezer, type Freezer } from "../../agent/storage/freezer.js";
import { protectedDevices, DIRECTORY_VOLUME_REASON } from "../../agent/storage/filesystems.js";
import { silentLogger } from "../../agent/log.js";
import { cleanupLoops, makeLoopFs, rootSkipReason, type LoopFs } from "./loopdev.js";

const scale = (ms: number) => ms;
function quiescer(opts: { rootDir?: string; freezer?: Freezer; stateDir?: string } = {}) {
  return new Quiescer({
    clock: realClock,
    log: silentLogger,
    freezer: opts.freezer ?? createFsFreezer(),
    rootDir: opts.rootDir,
    protectedDevs: protectedDevices(opts.stateDir ?? tmpdir()),
    scale,
  });
}

describe("hooks", () => {
  it("captures the hook's output and exit status", async () => {
    const step = await runHook("preStop", "echo stopping db; echo oops >&2; exit 3", { timeoutMs: 5000 });
    expect(step).toMatchObject({ name: "preStop", ok: false });
    expect(step.detail).toMatch(/^exit 3\n/);
    expect(step.detail).toMatch(/stopping db/);
    expect(step.detail).toMatch(/oops/);
  });

  it("kills a hook (and its children) that runs past its timeout", async () => {
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-hook-"));
    try {
      const step = await runHook("preStop", `echo started; (sleep 30; echo late > ${dir}/late) & sleep 30`, { timeoutMs: 200 });
      expect(step.ok).toBe(false);
      expect(step.detail).toMatch(/timed out after 200 ms; killed/);
      expect(step.detail).toMatch(/started/);
      expect(step.ms).toBeLessThan(10_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reports a successful hook as ok", async () => {
    expect(await runHook("postRestore", "true", { timeoutMs: 5000 })).toMatchObject({ ok: true, detail: "exit 0" });
  });
});

describe("quiesce without root-only features", () => {
  it("flushes directory volumes and reports them not frozen with the reason, and includes the hook output", async () => {
    const root = mkdtempSync(join(tmpdir(), "spotkeep-q-"));
    try {
      const q = quiescer({ rootDir: root });
      const r = await q.quiesce({
        mountPoints: ["/var/lib/data"],
        hooks: { preStop: "echo bye", timeoutSeconds: 5 },
        unmount: false,
        deadline: Date.now() + 10_000,
      });
      expect(r.clean).toBe(true);
      expect(r.steps.map((s) => s.name)).toEqual(["preStop", "sync"]);
      expect(r.steps[0]!.detail).toMatch(/bye/);
      expect(r.filesystems).toEqual([{ mountPoint: "/var/lib/data", frozen: false, unmounted: false, reason: DIRECTORY_VOLUME_REASON }]);
      expect(r.thawDeadline).toBeUndefined();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("never freezes / nor a path that is not a mount point, and reports dirty", async () => {
    const calls: string[] = [];
    const fake: Freezer = {
      freeze: async (p) => void calls.push(`f ${p}`),
      thaw: async () => {},
      unmount: async () => {},
      armWatchdog: () => () => {},
    };
    const q = quiescer({ freezer: fake });
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-q-"));
    try {
      const r = await q.quiesce({ mountPoints: ["/", dir], unmount: false, deadline: Date.now() + 10_000 });
      expect(calls).toEqual([]);
      expect(r.clean).toBe(false);
      expect(r.filesystems[0]!.reason).toMatch(/never freezes \//);
      expect(r.filesystems[1]!.reason).toMatch(/not a mount point/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("marks the quiesce dirty when the preStop hook times out", async () => {
    const root = mkdtempSync(join(tmpdir(), "spotkeep-q-"));
    try {
      const r = await quiescer({ rootDir: root }).quiesce({
        mountPoints: [],
        hooks: { preStop: "sleep 5", timeoutSeconds: 0.2 as unknown as number },
        unmount: false,
        deadline: Date.now() + 10_000,
      });
      expect(r.clean).toBe(false);
      expect(r.steps[0]!.detail).toMatch(/timed out/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

const skip = rootSkipReason();
if (skip) console.log(`skipping loop-device freeze tests: ${skip}`);

describe.skipIf(skip !== null)("freeze on a real ext4 loop device (root)", () => {
  let fs: LoopFs;
  const children: ChildProcess[] = [];
  beforeAll(() => {
    cleanupLoops(); // leftovers of a crashed earlier run
    fs = makeLoopFs("freeze");
  });
  afterEach(() => {
    for (const c of children.splice(0)) c.kill("SIGKILL");
  });
  afterAll(() => {
    cleanupLoops();
  });

  /** A writer that appends a line every 20 ms to a file on the fs and prints its count. */
  function startWriter(): { child: ChildProcess; count: () => number } {
    const file = join(fs.mountPoint, `w-${Date.now()}.log`);
    const child = spawn("sh", ["-c", `i=0; while true; do i=$((i+1)); echo $i >> ${file}; echo $i; sleep 0.02; done`], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    children.push(child);
    let n = 0;
    child.stdout!.on("data", (d: Buffer) => {
      const last = d.toString().trim().split("\n").at(-1);
      if (last) n = Number(last);
    });
    return { child, count: () => n };
  }

  it("freezes for a snapshot (a writer blocks) and thaws on `thaw`", async () => {
    const q = quiescer();
    const w = startWriter();
    await expect.poll(() => w.count()).toBeGreaterThan(3);
    const r = await q.freezeForSnapshot({ mountPoints: [fs.mountPoint], thawAfterMs: 20_000 });
    expect(r.clean).toBe(true);
    expect(r.filesystems).toEqual([{ mountPoint: fs.mountPoint, frozen: true, unmounted: false }]);
    expect(r.thawDeadline).toBeDefined();
    await new Promise((res) => setTimeout(res, 200));
    const blockedAt = w.count();
    await new Promise((res) => setTimeout(res, 400));
    expect(w.count()).toBeLessThanOrEqual(blockedAt + 1); // the writer is stuck on the frozen fs
    const steps = await q.thawAll("thaw requested");
    expect(steps[0]).toMatchObject({ ok: true });
    await expect.poll(() => w.count(), { timeout: 5000 }).toBeGreaterThan(blockedAt + 3);
    expect(q.frozenMountPoints).toEqual([]);
  });

  it("thaws by the deadline on its own when no thaw comes (link cut)", async () => {
    const q = quiescer();
    const w = startWriter();
    await expect.poll(() => w.count()).toBeGreaterThan(3);
    const r = await q.quiesce({
      mountPoints: [fs.mountPoint],
      hooks: { preStop: "echo pre", timeoutSeconds: 5 },
      unmount: false,
      deadline: Date.now() + 700,
    });
    expect(r.clean).toBe(true);
    expect(r.steps.map((s) => s.name)).toEqual(["preStop", "sync", `freeze:${fs.mountPoint}`]);
    await new Promise((res) => setTimeout(res, 300));
    const blockedAt = w.count();
    await new Promise((res) => setTimeout(res, 200));
    expect(w.count()).toBeLessThanOrEqual(blockedAt + 1);
    // Nobody sends thaw: the deadline timer does it.
    await expect.poll(() => w.count(), { timeout: 5000 }).toBeGreaterThan(blockedAt + 3);
    expect(q.frozenMountPoints).toEqual([]);
  });

  it("the out-of-process watchdog thaws even if the agent's own timer never fires (agent hung or dead)", async () => {
    const freezer = createFsFreezer();
    const w = startWriter();
    await expect.poll(() => w.count()).toBeGreaterThan(3);
    freezer.armWatchdog(fs.mountPoint, 600); // as the quiescer does, but no in-process timer
    await freezer.freeze(fs.mountPoint);
    await new Promise((res) => setTimeout(res, 250));
    const blockedAt = w.count();
    await expect.poll(() => w.count(), { timeout: 5000 }).toBeGreaterThan(blockedAt + 3);
  });

  it("unmounts instead of freezing when the instance is going away", async () => {
    const q = quiescer();
    const r = await q.quiesce({ mountPoints: [fs.mountPoint], unmount: true, deadline: Date.now() + 5000 });
    expect(r.filesystems).toEqual([{ mountPoint: fs.mountPoint, frozen: false, unmounted: true }]);
    expect(r.clean).toBe(true);
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(` ${fs.mountPoint} `);
  });

  it("refuses to freeze the filesystem that holds the agent's state dir", async () => {
    const other = makeLoopFs("state");
    const stateDir = join(other.mountPoint, "state");
    mkdirSync(stateDir);
    writeFileSync(join(stateDir, "x"), "1");
    const r = await quiescer({ stateDir }).quiesce({ mountPoints: [other.mountPoint], unmount: false, deadline: Date.now() + 5000 });
    expect(r.filesystems[0]).toMatchObject({ frozen: false, reason: expect.stringMatching(/agent's state/) });
    expect(r.clean).toBe(false);
  });
});
