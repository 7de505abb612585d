/**
 * Where a process's CPU went, from a V8 .cpuprofile (node --cpu-prof): self time per function,
 * highest first, so a report can say what limits a figure without opening DevTools.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  fn: string;
  /** Script basename and 1-based line (bundled code: the dist chunk). */
  at: string;
  selfMs: number;
  percent: number;
}

export function hotFunctions(file: string, top = 15): { totalMs: number; top: HotFunction[] } {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, { fn: string; at: string; us: number }>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const us = p.timeDeltas[i] ?? 0;
    total += us;
    const f = frames.get(id);
    if (!f) return;
    const fn = f.functionName || "(anonymous)";
    const at = f.url ? `${f.url.split("/").at(-1)}:${f.lineNumber + 1}` : "";
    const key = `${fn} ${at}`;
    const e = self.get(key) ?? { fn, at, us: 0 };
    e.us += us;
    self.set(key, e);
  });
  const list = [...self.values()].sort((a, b) => b.us - a.us).slice(0, top);
  return {
    totalMs: Math.round(total / 1000),
    top: list.map((e) => ({
      fn: e.fn,
      at: e.at,
      selfMs: Math.round(e.us / 1000),
      percent: +((e.us / Math.max(1, total)) * 100).toFixed(1),
    })),
  };
}

/** The .cpuprofile that process `pid` wrote into `dir`, if any. */
export function profileOf(dir: string, pid: number): string | null {
  try {
    const f = readdirSync(dir).find((n) => n.endsWith(".cpuprofile") && n.includes(`.${pid}.`));
    return f ? join(dir, f) : null;
  } catch {
    return null;
  }
}
