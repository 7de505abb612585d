/**
 * What every benchmark report says about where it ran and how a child process fared: the machine
 * (cores, memory, node version, load), /proc samples of a child's CPU and RSS, and the node flags
 * and environment of the coordinator's systemd unit (so a bench runs the coordinator as an
 * operator does).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
  /** 1-minute load average before and after the run: above the core count, other work competed for the CPU. */
  loadAverage1m: { before: number; after: number | null };
}

export function machine(loadBefore = loadavg()[0]!): Machine {
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAverage1m: { before: +loadBefore.toFixed(2), after: null },
  };
}

/** Finish the machine record with the load average after the run. */
export function machineAfter(m: Machine): Machine {
  return { ...m, loadAverage1m: { ...m.loadAverage1m, after: +loadavg()[0]!.toFixed(2) } };
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface ProcSample {
  /** When sampled (Date.now()). */
  t: number;
  /** user + system CPU time, ms. */
  cpuMs: number;
  rssKiB: number;
  /** Peak RSS so far (VmHWM), KiB. */
  hwmKiB: number;
}

/** One /proc sample of `pid`; null when it is gone. */
export function procSample(pid: number): ProcSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
    // utime and stime are stat fields 14 and 15, counted here from the state field (3).
    return {
      t: Date.now(),
      cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK,
      rssKiB: kib("VmRSS"),
      hwmKiB: kib("VmHWM"),
    };
  } catch {
    return null;
  }
}

/** CPU use between two samples, in percent of one core. */
export function cpuPercent(a: ProcSample, b: ProcSample): number {
  return b.t > a.t ? +(((b.cpuMs - a.cpuMs) / (b.t - a.t)) * 100).toFixed(1) : 0;
}

/** The node flags of the unit's ExecStart and its Environment= settings. */
export function systemdUnitSettings(root: string): { flags: string[]; env: Record<string, string> } {
  const text = readFileSync(join(root, "docs", "systemd", "spotkeep-coordinator.service"), "utf8");
  const exec = /^ExecStart=.*?\bnode((?:\s+--\S+)*)\s+\S*bin\/spotkeep\.js/m.exec(text);
  if (!exec) throw new Error("docs/systemd/spotkeep-coordinator.service: no ExecStart running node bin/spotkeep.js");
  const env = Object.fromEntries([...text.matchAll(/^Environment=(\w+)=(\S*)$/gm)].map((m) => [m[1]!, m[2]!]));
  return { flags: exec[1]!.split(/\s+/).filter(Boolean), env };
}

/** One target of a report: what is measured, the target, the figure, and whether it is met. */
export interface TargetResult {
  what: string;
  target: string;
  measured: number | string;
  pass: boolean;
}
