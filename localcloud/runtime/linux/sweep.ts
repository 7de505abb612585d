import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { hostMounts, isUnder, releaseOrphanedFreeze, thawUnder } from "./mounts.js";
import { NETNS_PREFIX, netnsList, netnsPids, projectLinks } from "./network.js";
import { groupMembers, signalAll, waitGone } from "./processes.js";
import { shTry } from "./sh.js";
import { detachLoop, listLoops } from "./volumes.js";

/** The sub-folders the runtime creates in a state dir (the state dir itself belongs to the caller). */
export const RUNTIME_SUBDIRS = ["volumes", "snapshots", "instances", "ns"];

export interface SweepReport {
  /** State dirs with nothing of ours left in them. */
  cleanDirs: string[];
  problems: string[];
}

function pgidsIn(stateDir: string): number[] {
  const dir = join(stateDir, "instances");
  if (!existsSync(dir)) return [];
  const out: number[] = [];
  for (const id of readdirSync(dir)) {
    try {
      const n = Number(readFileSync(join(dir, id, "pgid"), "utf8").trim());
      if (Number.isInteger(n) && n > 1 && n !== process.pid) out.push(n);
    } catch {
      /* no user-data ran */
    }
  }
  return out;
}

/**
 * Removes everything a linux runtime created for the given state dirs, whether its owner stopped
 * cleanly or was SIGKILLed: processes (pgid files + every pid in a `sk-*` netns), frozen
 * filesystems (thawed first: a writer blocked on a frozen fs cannot die), mounts, loop devices
 * whose backing file lies under a state dir, `sk-*` netns, `skv*`/`skbr*` links, and the runtime's
 * sub-folders. Caller must hold the host lock (which makes every `sk-*` netns and project link ours).
 * Idempotent; never throws for things already gone.
 */
export async function sweepLeftovers(stateDirs: readonly string[]): Promise<SweepReport> {
  const problems: string[] = [];
  const namespaces = (await netnsList()).filter((n) => n.startsWith(NETNS_PREFIX));
  const pgids = stateDirs.flatMap(pgidsIn);
  const pids: number[] = [];
  for (const ns of namespaces) pids.push(...(await netnsPids(ns)));
  for (const g of pgids) pids.push(...groupMembers(g));

  // Thaw through every live process's mount namespace, and through every pinned namespace.
  const nsFiles = stateDirs.flatMap((d) => {
    const nsDir = join(d, "ns");
    return existsSync(nsDir)
      ? readdirSync(nsDir)
          .filter((f) => f.endsWith(".mnt"))
          .map((f) => join(nsDir, f))
      : [];
  });
  const mounted = new Set(hostMounts().map((m) => m.target));
  for (const f of nsFiles) if (mounted.has(f)) await thawUnder([`--mount=${f}`], stateDirs);
  for (const p of new Set(pids)) await thawUnder(["--target", String(p), "--mount"], stateDirs);

  signalAll(pgids, pids, "SIGKILL");
  if (!(await waitGone(pgids, pids, 10_000)))
    problems.push(`processes still alive after SIGKILL: ${pids.filter((p) => existsSync(`/proc/${p}`)).join(" ")}`);

  // Host-visible mounts under the state dirs (namespace pins, the ns/ bind, anything else), deepest first.
  const ours = hostMounts()
    .map((m) => m.target)
    .filter((t) => stateDirs.some((d) => isUnder(t, d)))
    .sort((a, b) => b.length - a.length);
  for (const t of ours) {
    const r = await shTry("umount", ["-l", t]);
    if (r.code !== 0 && hostMounts().some((m) => m.target === t)) problems.push(`unmounting ${t}: ${r.stderr.trim()}`);
  }

  for (const loop of await listLoops()) {
    if (!stateDirs.some((d) => isUnder(loop.backFile, d))) continue;
    const what = `detaching leftover ${loop.name} (${loop.backFile})`;
    // Still busy: maybe a filesystem left frozen by a namespace that died (releaseOrphanedFreeze).
    try {
      if (!(await detachLoop(loop.name, what))) {
        await releaseOrphanedFreeze(loop.name);
        await detachLoop(loop.name, what);
      }
    } catch (e) {
      problems.push(String(e));
    }
  }
  const busy = (await listLoops()).filter((l) => stateDirs.some((d) => isUnder(l.backFile, d)));
  if (busy.length) problems.push(`loop devices still busy: ${busy.map((l) => `${l.name} (${l.backFile})`).join(", ")}`);

  for (const ns of namespaces) await shTry("ip", ["netns", "del", ns]);
  for (const link of await projectLinks()) await shTry("ip", ["link", "del", link]);
  const leftNs = (await netnsList()).filter((n) => n.startsWith(NETNS_PREFIX));
  if (leftNs.length) problems.push(`network namespaces still present: ${leftNs.join(", ")}`);
  const leftLinks = await projectLinks();
  if (leftLinks.length) problems.push(`links still present: ${leftLinks.join(", ")}`);
  await unmountEmptyNetnsDir();

  const cleanDirs: string[] = [];
  const stillMounted = hostMounts().map((m) => m.target);
  for (const d of stateDirs) {
    // Never rm -rf through a live mount (it would delete the mounted filesystem's content).
    if (stillMounted.some((t) => isUnder(t, d))) {
      problems.push(`not removing files under ${d}: something is still mounted there`);
      continue;
    }
    for (const sub of RUNTIME_SUBDIRS) rmSync(join(d, sub), { recursive: true, force: true });
    cleanDirs.push(d);
  }
  return { cleanDirs, problems };
}

/**
 * `ip netns add` bind-mounts /run/netns onto itself the first time; once no namespace is left in
 * it, undo that so `mount` shows nothing of ours (iproute2 recreates it when needed).
 */
async function unmountEmptyNetnsDir(): Promise<void> {
  const dir = "/run/netns";
  if (!existsSync(dir) || readdirSync(dir).length > 0) return;
  while (hostMounts().some((m) => m.target === dir)) {
    if ((await shTry("umount", [dir])).code !== 0) return;
  }
}
