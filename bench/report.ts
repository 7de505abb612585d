/**
 * `npm run bench:report`: regenerates bench/README.md from the reports in bench/reports/*.json,
 * nothing typed by hand: per benchmark what it measures, each figure against its target, pass or
 * fail, when it ran and on what machine.
 *
 *   npx tsx bench/report.ts [--reports bench/reports] [--out bench/README.md]
 *
 * A report's `summary` (bench/summary.ts) is the contract. A report written before benches had
 * one still gets a row: its date, node version and cores where it recorded them, pass/fail from
 * its own `met`/`ok` flags, and "not recorded" for the rest. A file that is not a JSON object, or
 * whose `summary` is malformed, stops the run with an error naming the file and the field.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";

const NOT_RECORDED = "not recorded";
/** Reports are small; a bigger file is not one of ours. */
const MAX_REPORT_BYTES = 16 * 1024 * 1024;

const Result = z.object({
  name: z.string().min(1).max(200),
  measured: z.number().nullable(),
  unit: z.string().max(20),
  target: z.object({ op: z.enum(["<=", ">="]), value: z.number() }).nullable(),
  met: z.boolean().nullable().optional(),
});

const Summary = z.object({
  benchmark: z.string().min(1).max(100),
  measures: z.string().max(500),
  command: z.string().max(1000).optional(),
  date: z.string().refine((s) => !Number.isNaN(Date.parse(s)), "is not a date"),
  machine: z
    .object({
      cores: z.number().int().positive(),
      cpuModel: z.string().max(200).optional(),
      memoryGiB: z.number().positive(),
      node: z.string().max(50),
      platform: z.string().max(50).optional(),
      loadAverage1m: z.number().nonnegative().optional(),
    })
    .optional(),
  results: z.array(Result).max(50),
});
type Summary = z.infer<typeof Summary>;

/** One benchmark's line in the table. */
export interface Row {
  file: string;
  benchmark: string;
  measures: string;
  targets: string[];
  measured: string[];
  verdict: string;
  date: string;
  machine: string;
  command: string | null;
}

export class ReportError extends Error {
  override name = "ReportError";
}

/** The rows for every *.json in `dir`, sorted by benchmark then file name. */
export function loadRows(dir: string): Row[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new ReportError(`reading ${dir}: ${(err as Error).message}`, { cause: err });
  }
  return files
    .sort()
    .map((f) => rowFor(join(dir, f)))
    .sort((a, b) => a.benchmark.localeCompare(b.benchmark) || a.file.localeCompare(b.file));
}

export function rowFor(path: string): Row {
  const file = basename(path);
  const text = readFileSync(path);
  if (text.length > MAX_REPORT_BYTES)
    throw new ReportError(`${path}: ${text.length} bytes, more than a report can be (${MAX_REPORT_BYTES})`);
  let json: unknown;
  try {
    json = JSON.parse(text.toString("utf8"));
  } catch (err) {
    throw new ReportError(`${path}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new ReportError(`${path}: not a JSON object`);
  const report = json as Record<string, unknown>;
  if (report.summary === undefined) return Array.isArray(report.targets) ? targetsRow(path, file, report) : legacyRow(file, report);
  const parsed = Summary.safeParse(report.summary);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ReportError(`${path}: summary.${issue.path.join(".")}: ${issue.message}`);
  }
  return summaryRow(file, parsed.data);
}

function summaryRow(file: string, s: Summary): Row {
  const withTarget = s.results.filter((r) => r.target);
  const failed = withTarget.filter((r) => verdictOf(r) === false);
  const unknown = withTarget.filter((r) => verdictOf(r) === null);
  return {
    file,
    benchmark: s.benchmark,
    measures: s.measures || NOT_RECORDED,
    targets: withTarget.map((r) => `${r.name} ${r.target!.op} ${num(r.target!.value)}${unit(r.unit)}`),
    measured: s.results.map((r) => `${r.name}: ${r.measured === null ? NOT_RECORDED : `${num(r.measured)}${unit(r.unit)}`}`),
    verdict:
      withTarget.length === 0
        ? "no target"
        : failed.length
          ? `FAIL (${failed.map((r) => r.name).join(", ")})`
          : unknown.length
            ? `not measured (${unknown.map((r) => r.name).join(", ")})`
            : "pass",
    date: dateText(s.date),
    machine: s.machine ? machineText(s.machine) : NOT_RECORDED,
    command: s.command ?? null,
  };
}

/** Pass/fail of one result: recomputed from the figure and the target, never taken on trust. */
function verdictOf(r: z.infer<typeof Result>): boolean | null {
  if (!r.target || r.measured === null) return null;
  return r.target.op === "<=" ? r.measured <= r.target.value : r.measured >= r.target.value;
}

const TargetResult = z.object({
  what: z.string().min(1).max(200),
  target: z.string().max(100),
  measured: z.union([z.number(), z.string().max(100)]),
  pass: z.boolean(),
});
const TargetsReport = z.object({
  name: z.string().min(1).max(100),
  description: z.string().max(500).optional(),
  date: z.string().refine((d) => !Number.isNaN(Date.parse(d)), "not a date"),
  command: z.string().max(500).optional(),
  machine: z
    .object({
      cores: z.number().int().positive(),
      memoryGiB: z.number().positive(),
      node: z.string().max(50),
      loadAverage1m: z.union([z.number(), z.object({ before: z.number(), after: z.number() })]).optional(),
    })
    .optional(),
  targets: z.array(TargetResult).max(50),
});

/**
 * Pass/fail of a `targets` entry, recomputed where the target reads as a comparison ("<= 1.03",
 * ">= 5", "0", "1000 of 1000"); the report's own flag only where it does not.
 */
export function targetVerdict(t: z.infer<typeof TargetResult>): boolean {
  if (typeof t.measured !== "number") return t.pass;
  const cmp = /^(<=|>=)\s*(-?[\d.]+)$/.exec(t.target.trim());
  if (cmp) return cmp[1] === "<=" ? t.measured <= Number(cmp[2]) : t.measured >= Number(cmp[2]);
  if (/^-?[\d.]+$/.test(t.target.trim())) return t.measured === Number(t.target);
  const of = /^(\d+) of (\d+)$/.exec(t.target.trim());
  if (of) return t.measured >= Number(of[1]);
  return t.pass;
}

/** A report that lists its targets as {what, target, measured, pass} (the burst and fan-in benches). */
function targetsRow(path: string, file: string, report: Record<string, unknown>): Row {
  const parsed = TargetsReport.safeParse(report);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ReportError(`${path}: ${issue.path.join(".")}: ${issue.message}`);
  }
  const r = parsed.data;
  const failed = r.targets.filter((t) => !targetVerdict(t));
  const m = r.machine;
  const load = m?.loadAverage1m === undefined ? undefined : typeof m.loadAverage1m === "number" ? m.loadAverage1m : m.loadAverage1m.after;
  return {
    file,
    benchmark: r.name,
    measures: r.description ?? NOT_RECORDED,
    targets: r.targets.map((t) => `${t.what} ${t.target}`),
    measured: r.targets.map((t) => `${t.what}: ${typeof t.measured === "number" ? num(t.measured) : t.measured}`),
    verdict: r.targets.length === 0 ? "no target" : failed.length ? `FAIL (${failed.map((t) => t.what).join(", ")})` : "pass",
    date: dateText(r.date),
    machine: m ? machineText({ ...m, loadAverage1m: load }) : NOT_RECORDED,
    command: r.command ?? null,
  };
}

/** A report from before `summary`: what it recorded in its own words, "not recorded" for the rest. */
function legacyRow(file: string, r: Record<string, unknown>): Row {
  const date = [r.at, r.when, r.date].find((d): d is string => typeof d === "string" && !Number.isNaN(Date.parse(d)));
  const host = r.host as { cores?: unknown } | undefined;
  const cores = typeof host?.cores === "number" ? `${host.cores} cores` : null;
  const node = typeof r.node === "string" ? `node ${r.node}` : null;
  const missing = [cores ? null : "cores", "memory", node ? null : "node"].filter(Boolean);
  const flags = metFlags(r);
  const failed = flags.filter((f) => !f.met);
  const targets = [r.targets, r.target].flatMap((t) =>
    t && typeof t === "object" && !Array.isArray(t)
      ? Object.entries(t).flatMap(([k, v]) => (typeof v === "number" ? [`${k}: ${num(v)}`] : []))
      : [],
  );
  return {
    file,
    benchmark: file.replace(/\.json$/, ""),
    measures: typeof r.what === "string" ? r.what : NOT_RECORDED,
    targets: targets.length ? targets : [NOT_RECORDED],
    measured: [`${NOT_RECORDED} (a report from before summaries; see the file)`],
    verdict: flags.length === 0 ? NOT_RECORDED : failed.length ? `FAIL (${failed.map((f) => f.name).join(", ")})` : "pass",
    date: date ? dateText(date) : NOT_RECORDED,
    machine: cores || node ? `${[cores, node].filter(Boolean).join(", ")}; ${missing.join(", ")} ${NOT_RECORDED}` : NOT_RECORDED,
    command: null,
  };
}

/** 2026-11-26T20:25:36.155Z -> 2026-11-26 20:25 UTC */
function dateText(iso: string): string {
  return `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/**
 * Booleans a report wrote about its targets, to depth 3 (not inside arrays): `ok`, `met` (named
 * after the object holding it), `…Met`, and every boolean inside a `met` object.
 */
export function metFlags(r: Record<string, unknown>, prefix: string[] = [], depth = 0): Array<{ name: string; met: boolean }> {
  const out: Array<{ name: string; met: boolean }> = [];
  const inMet = prefix.at(-1) === "met";
  for (const [k, v] of Object.entries(r)) {
    if (typeof v === "boolean" && (inMet || k === "met" || k === "ok" || /.Met$/.test(k))) {
      const name = inMet ? k : k === "met" || k === "ok" ? (prefix.at(-1) ?? k) : k.replace(/Met$/, "");
      out.push({ name, met: v });
    } else if (v && typeof v === "object" && !Array.isArray(v) && depth < 3) {
      out.push(...metFlags(v as Record<string, unknown>, [...prefix, k], depth + 1));
    }
  }
  return out;
}

function machineText(m: NonNullable<Summary["machine"]>): string {
  const load = m.loadAverage1m !== undefined ? `, load ${num(m.loadAverage1m)}` : "";
  return `${m.cores} cores, ${num(m.memoryGiB)} GiB, node ${m.node}${load}`;
}

function num(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Math.round(x * 1000) / 1000);
}

function unit(u: string): string {
  if (!u) return "";
  return u === "×" || u === "%" ? u : ` ${u}`;
}

/** Markdown table cell: no pipes or newlines from a report can break the table. */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/[\r\n]+/g, " ");
}

/** A markdown table with its columns padded to a common width (the way the repo's formatter lays tables out). */
export function renderTable(rows: Row[]): string {
  const header = ["benchmark", "what it measures", "target", "last measured", "pass/fail", "date", "machine"];
  const body = rows.map((r) => [
    `\`${cell(r.benchmark)}\`${r.benchmark === r.file.replace(/\.json$/, "") ? "" : ` (${cell(r.file)})`}`,
    cell(r.measures),
    r.targets.length ? r.targets.map(cell).join("<br>") : "none",
    r.measured.map(cell).join("<br>"),
    cell(r.verdict),
    cell(r.date),
    cell(r.machine),
  ]);
  const widths = header.map((h, i) => Math.max(3, h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

export function renderReadme(rows: Row[], reportsDir: string): string {
  const commands = rows.filter((r) => r.command);
  return [
    "# Benchmarks: last measured figures",
    "",
    `<!-- Generated by \`npm run bench:report\` (bench/report.ts) from ${reportsDir}/*.json. Do not edit by hand. -->`,
    "",
    "Each script under `bench/` writes a JSON report to `bench/reports/` (not committed); this page is",
    "regenerated from those reports by `npm run bench:report`. Pass/fail is worked out from each figure",
    "and its target. Reports written before benches recorded a summary show `not recorded` where they",
    "lack a field. The host is shared: the machine column gives the load average at the end of the run.",
    "",
    rows.length ? renderTable(rows) : `No reports in ${reportsDir}/: run a benchmark first.`,
    "",
    ...(commands.length
      ? ["Commands that produced these figures:", "", ...commands.map((r) => `- \`${r.benchmark}\`: \`${r.command}\``), ""]
      : []),
  ].join("\n");
}

function main(): void {
  const root = join(fileURLToPath(import.meta.url), "..", "..");
  const { values } = parseArgs({
    options: {
      reports: { type: "string", default: join(root, "bench", "reports") },
      out: { type: "string", default: join(root, "bench", "README.md") },
    },
  });
  const rows = loadRows(values.reports);
  // A fresh clone has no reports: keep the committed figures rather than replace them with nothing.
  if (rows.length === 0) throw new ReportError(`no reports in ${values.reports}: run a benchmark first (${values.out} is left as it is)`);
  writeFileSync(values.out, renderReadme(rows, relative(root, values.reports) || "."));
  console.log(`wrote ${relative(process.cwd(), values.out) || values.out}: ${rows.length} benchmark report(s)`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  try {
    main();
  } catch (err) {
    if (!(err instanceof ReportError)) throw err;
    console.error(`bench:report: ${err.message}`);
    process.exit(1);
  }
}
