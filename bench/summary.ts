/**
 * The part of a benchmark report that `npm run bench:report` (bench/report.ts) reads: which
 * benchmark, what it measures, each figure against its target, when and on what machine. Every
 * bench adds it to its JSON report as `summary`, beside its own detailed fields (which stay as
 * they were, so older readers of a report keep working).
 */
import { cpus, loadavg, totalmem } from "node:os";

/** One measured figure and its target. */
export interface BenchResult {
  /** What the figure is ("heartbeat -> ack p99"). */
  name: string;
  /** The figure; null when the run could not measure it. */
  measured: number | null;
  /** Unit of `measured` and of the target ("ms", "MiB", "×", "%"). */
  unit: string;
  /** The target as a comparison: measured <= value ("<=") or >= value (">="); null: reported, no target. */
  target: { op: "<=" | ">="; value: number } | null;
}

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
  /** The host is shared: a load average above the cores means other work competed for the CPU. */
  loadAverage1m: number;
}

export interface BenchSummary {
  benchmark: string;
  measures: string;
  /** The command that produced the report (with the options used). */
  command: string;
  /** ISO time the run finished. */
  date: string;
  machine: Machine;
  results: Array<BenchResult & { met: boolean | null }>;
}

export function machine(): Machine {
  const cpu = cpus();
  return {
    cores: cpu.length,
    cpuModel: cpu[0]?.model.trim() ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/** Whether `r` meets its target: null without a target or without a figure. */
export function met(r: BenchResult): boolean | null {
  if (!r.target || r.measured === null || !Number.isFinite(r.measured)) return null;
  return r.target.op === "<=" ? r.measured <= r.target.value : r.measured >= r.target.value;
}

export function benchSummary(o: { benchmark: string; measures: string; command: string; results: BenchResult[] }): BenchSummary {
  return {
    benchmark: o.benchmark,
    measures: o.measures,
    command: o.command,
    date: new Date().toISOString(),
    machine: machine(),
    results: o.results.map((r) => ({
      ...r,
      measured: r.measured !== null && Number.isFinite(r.measured) ? r.measured : null,
      met: met(r),
    })),
  };
}

/** The command line that ran this bench, for the summary (`npx tsx bench/x.ts --flag v`). */
export function commandLine(script: string, argv: string[] = process.argv.slice(2)): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ["npx tsx", script, ...argv.map(quote)].join(" ");
}
