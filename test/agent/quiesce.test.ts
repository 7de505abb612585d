import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock, realClock } from "../../shared/clock.js";
import { runHook } from "../../agent/quiesce/hooks.js";
import { capDeadline, MAX_FREEZE_MS, MIN_FREEZE_MS, Quiescer } from "../../agent/quiesce/quiescer.js";
import { createFsFreezer, FreezeError, type Freezer, type ThawResult } from "../../agent/storage/freezer.js";
import { protectedDevices, DIRECTORY_VOLUME_REASON } from "../../agent/storage/filesystems.js";
import { silentLogger } from "../../agent/log.js";
import { cleanupLoops, makeLoopFs, rootSkipReason, type LoopFs } from "./loopdev.js";

const scale = (ms: number) => ms;
function quiescer(
  opts: { rootDir?: string; freezer?: Freezer; stateDir?: string; clock?: FakeClock; maxFreezeMs?: number; syncBin?: string } = {},
) {
  return new Quiescer({
    clock: opts.clock ?? realClock,
    log: silentLogger,
    freezer: opts.freezer ?? createFsFreezer(),
    rootDir: opts.rootDir,
    protectedDevs: protectedDevices(opts.stateDir ?? tmpdir()),
    scale,
    ...(opts.maxFreezeMs ? { maxFreezeMs: opts.maxFreezeMs } : {}),
    ...(opts.syncBin ? { syncBin: opts.syncBin } : {}),
  });
}

/** 2^31+1 ms: one past what setTimeout can wait (it fired at once: issue 11 item 2). */
const OVERFLOW_MS = 2 ** 31 + 1;
const YEAR_9999 = Date.parse("9999-12-31T23:59:59Z");

/**
 * A stand-in fsfreeze: `-f` takes `freezeMs`, then marks the "filesystem" frozen in `state`;
 * `-u` thaws (exit 0) or says "Invalid argument" like fsfreeze on a filesystem that is not frozen.
 */
function fakeFsfreeze(dir: string, freezeMs: number): { bin: string; frozen: () => boolean } {
  const state = join(dir, "frozen");
  const bin = join(dir, "fsfreeze");
  writeFileSync(
    bin,
    `#!/bin/sh
case "$1" in
  -f) sleep ${freezeMs / 1000}; touch ${state}; exit 0 ;;
  -u) if [ -e ${state} ]; then rm -f ${state}; exit 0; fi; echo "fsfreeze: $2: thaw failed: Invalid argument" >&2; exit 1 ;;
esac
exit 2
`,
    { mode: 0o755 },
  );
  return { bin, frozen: () => existsSync(state) };
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
      thaw: async () => "not-frozen" as const,
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

describe("deadlines the agent is given are capped", () => {
  const now = Date.parse("2026-06-01T00:00:00Z");
  it("caps a far deadline (2^31+1 ms away, 9999-12-31) to ten minutes and a past or unparsable one to the minimum", () => {
    expect(capDeadline(now + OVERFLOW_MS, now)).toEqual({ at: now + MAX_FREEZE_MS, capped: "too far away" });
    expect(capDeadline(YEAR_9999, now)).toEqual({ at: now + MAX_FREEZE_MS, capped: "too far away" });
    expect(capDeadline(Number.POSITIVE_INFINITY, now).at).toBe(now + MAX_FREEZE_MS);
    expect(capDeadline(Date.parse("2020-01-01T00:00:00Z"), now)).toEqual({ at: now + MIN_FREEZE_MS, capped: "in the past" });
    expect(capDeadline(Number.NaN, now)).toEqual({ at: now + MIN_FREEZE_MS, capped: "not a time" });
    expect(capDeadline(now + 60_000, now)).toEqual({ at: now + 60_000 });
    expect(MAX_FREEZE_MS).toBe(600_000);
  });

  it("reports the capped thaw deadline, not the one given", async () => {
    const clock = new FakeClock(Date.parse("2026-06-01T00:00:00Z"));
    const freezer: Freezer = {
      freeze: async () => {},
      thaw: async () => "not-frozen",
      unmount: async () => {},
      armWatchdog: () => () => {},
    };
    const q = quiescer({ clock, freezer, syncBin: "true" });
    const r = await q.quiesce({ mountPoints: ["/proc"], unmount: false, deadline: YEAR_9999 });
    expect(r.thawDeadline).toBe(new Date(clock.now() + MAX_FREEZE_MS).toISOString());
    await clock.advance(MAX_FREEZE_MS);
    expect(q.frozenMountPoints).toEqual([]);
  });
});

describe("thaw ordering and verification (scripted freezer, fake clock)", () => {
  /** A freezer whose calls the test completes by hand. */
  function scripted() {
    const calls: string[] = [];
    let finishFreeze: () => void = () => {};
    const thawAnswers: Array<ThawResult | Error> = [];
    let watchdogArmed = false;
    const freezer: Freezer = {
      freeze: () => {
        calls.push("freeze");
        return new Promise<void>((r) => (finishFreeze = r));
      },
      thaw: async () => {
        calls.push("thaw");
        const a = thawAnswers.shift() ?? "not-frozen";
        if (a instanceof Error) throw a;
        return a;
      },
      unmount: async () => {},
      armWatchdog: () => {
        watchdogArmed = true;
        return () => {
          watchdogArmed = false;
        };
      },
    };
    return { freezer, calls, thawAnswers, finishFreeze: () => finishFreeze(), watchdogArmed: () => watchdogArmed };
  }

  it("a deadline that fires while the freeze call runs waits for it, then thaws (never 'not frozen' before the freeze returned)", async () => {
    const clock = new FakeClock(0);
    const s = scripted();
    const q = quiescer({ clock, freezer: s.freezer, syncBin: "true" });
    const report = q.freezeForSnapshot({ mountPoints: ["/proc"], thawAfterMs: 5_000 });
    await clock.advance(0);
    await expect.poll(() => s.calls).toEqual(["freeze"]);
    await clock.advance(10_000); // the deadline fires; the freeze has not returned
    expect(s.calls).toEqual(["freeze"]);
    expect(s.watchdogArmed()).toBe(true);
    s.thawAnswers.push("thawed", "not-frozen");
    s.finishFreeze();
    const r = await report;
    await expect.poll(() => s.calls).toEqual(["freeze", "thaw", "thaw"]);
    await expect.poll(() => q.frozenMountPoints).toEqual([]);
    expect(r.filesystems[0]).toMatchObject({ frozen: false, reason: expect.stringMatching(/deadline reached while freezing/) });
    expect(s.watchdogArmed()).toBe(false);
  });

  it("keeps the watchdog armed and retries while a thaw cannot be verified", async () => {
    const clock = new FakeClock(0);
    const s = scripted();
    const q = quiescer({ clock, freezer: s.freezer, syncBin: "true" });
    const report = q.freezeForSnapshot({ mountPoints: ["/proc"], thawAfterMs: 60_000 });
    await expect.poll(() => s.calls).toEqual(["freeze"]);
    s.finishFreeze();
    expect((await report).filesystems[0]).toMatchObject({ frozen: true });
    s.thawAnswers.push(new Error("fsfreeze -u /proc: exit 1"), "thawed", "thawed", "thawed");
    const [first] = await q.thawAll("thaw requested");
    expect(first).toMatchObject({ ok: false });
    expect(s.watchdogArmed()).toBe(true);
    expect(q.frozenMountPoints).toEqual(["/proc"]);
    await clock.advance(1_000); // retry: three "thawed" in a row are not a verified thaw either
    await expect.poll(() => s.calls.length).toBe(5);
    expect(s.watchdogArmed()).toBe(true);
    await clock.advance(1_000); // retry: "not-frozen" now
    await expect.poll(() => q.frozenMountPoints).toEqual([]);
    expect(s.watchdogArmed()).toBe(false);
  });

  it("a freeze whose outcome is unknown (tool killed) is thawed and verified; a freeze that failed cleanly disarms", async () => {
    const clock = new FakeClock(0);
    const calls: string[] = [];
    let armed = 0;
    let outcome = true;
    const freezer: Freezer = {
      freeze: async () => {
        calls.push("freeze");
        throw new FreezeError("fsfreeze -f /proc: killed", outcome);
      },
      thaw: async () => {
        calls.push("thaw");
        return "not-frozen";
      },
      unmount: async () => {},
      armWatchdog: () => {
        armed++;
        return () => void armed--;
      },
    };
    const q = quiescer({ clock, freezer, syncBin: "true" });
    let r = await q.freezeForSnapshot({ mountPoints: ["/proc"], thawAfterMs: 60_000 });
    expect(r.filesystems[0]).toMatchObject({ frozen: false });
    expect(calls).toEqual(["freeze", "thaw"]);
    expect(armed).toBe(0);
    outcome = false;
    r = await q.freezeForSnapshot({ mountPoints: ["/proc"], thawAfterMs: 60_000 });
    expect(calls).toEqual(["freeze", "thaw", "freeze"]);
    expect(armed).toBe(0);
    expect(q.frozenMountPoints).toEqual([]);
    expect(clock.pending).toBe(0);
  });
});

describe("the out-of-process watchdog (stand-in fsfreeze)", () => {
  it("a watchdog that fires while the freeze still runs thaws once the freeze has returned", async () => {
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-wd-"));
    try {
      const fake = fakeFsfreeze(dir, 1_500);
      const freezer = createFsFreezer({ fsfreeze: fake.bin });
      freezer.armWatchdog("/proc", 200); // fires long before the freeze returns; the agent "dies" here
      await freezer.freeze("/proc");
      expect(fake.frozen()).toBe(true);
      await expect.poll(() => fake.frozen(), { timeout: 5_000, interval: 100 }).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the quiescer waits for a slow freeze before its (past) deadline's thaw: never left frozen", async () => {
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-wd-"));
    try {
      const fake = fakeFsfreeze(dir, 1_500);
      const q = quiescer({ freezer: createFsFreezer({ fsfreeze: fake.bin }), syncBin: "true" });
      const r = await q.quiesce({ mountPoints: ["/proc"], unmount: false, deadline: Date.parse("2020-01-01T00:00:00Z") });
      expect(r.filesystems[0]).toMatchObject({ frozen: false, reason: expect.stringMatching(/deadline reached while freezing/) });
      await expect.poll(() => fake.frozen(), { timeout: 5_000, interval: 50 }).toBe(false);
      await expect.poll(() => q.frozenMountPoints).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
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

  /** Frozen = a write to the filesystem does not finish within 300 ms (the stuck writer is killed after a thaw). */
  async function frozenNow(): Promise<boolean> {
    const child = spawn("sh", ["-c", `echo probe > ${join(fs.mountPoint, "probe")}`], { stdio: "ignore" });
    children.push(child);
    const done = await Promise.race([
      new Promise<boolean>((r) => child.once("exit", () => r(true))),
      new Promise<boolean>((r) => setTimeout(() => r(false), 300)),
    ]);
    return !done;
  }

  for (const [label, deadline] of [
    ["2^31+1 ms away", () => Date.now() + OVERFLOW_MS],
    ["9999-12-31T23:59:59Z", () => YEAR_9999],
  ] as const) {
    it(`a deadline ${label} is capped: frozen until the cap, never after (regression: the thaw timer overflowed and fired first)`, async () => {
      const q = quiescer({ maxFreezeMs: 1_500 });
      const w = startWriter();
      await expect.poll(() => w.count()).toBeGreaterThan(3);
      const t0 = Date.now();
      const r = await q.quiesce({ mountPoints: [fs.mountPoint], unmount: false, deadline: deadline() });
      expect(r.filesystems[0]).toMatchObject({ frozen: true });
      expect(Date.parse(r.thawDeadline!)).toBeLessThanOrEqual(t0 + 1_500 + 200);
      expect(await frozenNow()).toBe(true);
      const blockedAt = w.count();
      await expect.poll(() => w.count(), { timeout: 5_000 }).toBeGreaterThan(blockedAt + 3);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1_400);
      expect(q.frozenMountPoints).toEqual([]);
      await new Promise((res) => setTimeout(res, 1_000)); // the watchdog (cap + 250 ms) must not have been the one left
      expect(await frozenNow()).toBe(false);
    });
  }

  it("the default cap is ten minutes: a 9999-12-31 deadline reports a thaw deadline at most ten minutes away", async () => {
    const q = quiescer();
    const t0 = Date.now();
    const r = await q.freezeForSnapshot({ mountPoints: [fs.mountPoint], thawAfterMs: YEAR_9999 - t0 });
    try {
      expect(r.filesystems[0]).toMatchObject({ frozen: true });
      expect(Date.parse(r.thawDeadline!)).toBeLessThanOrEqual(Date.now() + 10 * 60_000);
      expect(Date.parse(r.thawDeadline!)).toBeGreaterThanOrEqual(t0 + 10 * 60_000);
    } finally {
      expect((await q.thawAll("test done"))[0]).toMatchObject({ ok: true });
    }
    expect(await frozenNow()).toBe(false);
  });

  it("a deadline in the past gets the minimum, and the thaw is verified", async () => {
    const q = quiescer();
    const t0 = Date.now();
    const r = await q.quiesce({ mountPoints: [fs.mountPoint], unmount: false, deadline: Date.parse("2001-01-01T00:00:00Z") });
    expect(r.filesystems[0]).toMatchObject({ frozen: true });
    expect(Date.parse(r.thawDeadline!)).toBeGreaterThanOrEqual(t0 + MIN_FREEZE_MS);
    await expect.poll(() => q.frozenMountPoints, { timeout: 5_000 }).toEqual([]);
    expect(await frozenNow()).toBe(false);
  });

  it("a freeze that returns after its deadline fired is thawed right after it returns", async () => {
    const real = createFsFreezer();
    const slow: Freezer = {
      ...real,
      freeze: async (p) => {
        await new Promise((res) => setTimeout(res, MIN_FREEZE_MS + 500));
        await real.freeze(p);
      },
    };
    const q = quiescer({ freezer: slow });
    const r = await q.quiesce({ mountPoints: [fs.mountPoint], unmount: false, deadline: 0 });
    expect(r.filesystems[0]).toMatchObject({ frozen: false, reason: expect.stringMatching(/deadline reached while freezing/) });
    await expect.poll(() => q.frozenMountPoints, { timeout: 5_000 }).toEqual([]);
    expect(await frozenNow()).toBe(false);
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
