import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadRows, metFlags, ReportError, renderReadme, renderTable } from "./report.js";
import { benchSummary } from "./summary.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-bench-report-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, body: unknown) => writeFileSync(join(dir, name), typeof body === "string" ? body : JSON.stringify(body));
/** Table lines with the padding collapsed, for comparing contents. */
const cells = (table: string) => table.split("\n").map((l) => l.replace(/ {2,}/g, " ").replace(/-{3,}/g, "---"));
const machine = { cores: 2, cpuModel: "Xeon", memoryGiB: 23.5, node: "v20.20.2", platform: "linux-x64", loadAverage1m: 3.2 };

describe("bench:report", () => {
  it("reads a report that lists {what, target, measured, pass} targets, recomputing pass/fail from the figures", () => {
    write("coordinator-burst-1000.json", {
      name: "coordinator-burst-1000",
      description: "1000 interrupted at once",
      date: "2026-11-26T21:41:00.000Z",
      machine: { ...machine, loadAverage1m: { before: 2.6, after: 3.4 } },
      targets: [
        { what: "instances recovered", target: "1000 of 1000", measured: 1000, pass: true },
        // The report's own flag says pass; the figure says otherwise, and the figure wins.
        { what: "calls refused", target: "0", measured: 2, pass: true },
        { what: "slowest / bound", target: "<= 1.03", measured: 1.027, pass: false },
      ],
    });
    const [row] = loadRows(dir);
    expect(row).toMatchObject({
      benchmark: "coordinator-burst-1000",
      measures: "1000 interrupted at once",
      targets: ["instances recovered 1000 of 1000", "calls refused 0", "slowest / bound <= 1.03"],
      measured: ["instances recovered: 1000", "calls refused: 2", "slowest / bound: 1.027"],
      verdict: "FAIL (calls refused)",
      date: "2026-11-26 21:41 UTC",
      machine: "2 cores, 23.5 GiB, node v20.20.2, load 3.4",
    });
    write("coordinator-burst-1000.json", { name: "x", date: "yesterday", targets: [] });
    expect(() => loadRows(dir)).toThrow(/coordinator-burst-1000.json: date: not a date/);
  });

  it("turns each report's summary into a table row: figures, targets, pass/fail, date and machine", () => {
    write("coordinator-downtime.json", {
      summary: {
        benchmark: "coordinator-downtime",
        measures: "break-before-make downtime over the critical path",
        command: "npx tsx bench/coordinator-downtime.ts --time-scale 1",
        date: "2026-11-26T20:30:00.000Z",
        machine,
        results: [
          { name: "downtime / critical path", measured: 1.021, unit: "×", target: { op: "<=", value: 1.05 }, met: true },
          { name: "downtime p50", measured: 59.73, unit: "s", target: null, met: null },
        ],
      },
      downtimeSeconds: { p50: 59.73 },
    });
    write("hub-fanin.json", {
      summary: {
        benchmark: "hub-fanin",
        measures: "heartbeat -> ack",
        date: "2026-11-26T19:00:00.000Z",
        machine,
        // `met` as written by the bench is not trusted: 61 ms is over 50 ms
        results: [{ name: "p99", measured: 61, unit: "ms", target: { op: "<=", value: 50 }, met: true }],
      },
    });
    const rows = loadRows(dir);
    const table = renderTable(rows);
    // columns padded to one width, as the formatter lays tables out
    expect(new Set(table.split("\n").map((l) => l.length)).size).toBe(1);
    expect(cells(table)).toEqual([
      "| benchmark | what it measures | target | last measured | pass/fail | date | machine |",
      "| --- | --- | --- | --- | --- | --- | --- |",
      "| `coordinator-downtime` | break-before-make downtime over the critical path | downtime / critical path <= 1.05× | downtime / critical path: 1.021×<br>downtime p50: 59.73 s | pass | 2026-11-26 20:30 UTC | 2 cores, 23.5 GiB, node v20.20.2, load 3.2 |",
      "| `hub-fanin` | heartbeat -> ack | p99 <= 50 ms | p99: 61 ms | FAIL (p99) | 2026-11-26 19:00 UTC | 2 cores, 23.5 GiB, node v20.20.2, load 3.2 |",
    ]);
    expect(renderReadme(rows, "bench/reports")).toContain(
      "- `coordinator-downtime`: `npx tsx bench/coordinator-downtime.ts --time-scale 1`",
    );
  });

  it("reads what bench/summary.ts writes", () => {
    const summary = benchSummary({
      benchmark: "agent",
      measures: "one agent's footprint",
      command: "npx tsx bench/agent-bench.ts",
      results: [
        { name: "RSS max", measured: 47.7, unit: "MiB", target: { op: "<=", value: 50 } },
        { name: "IMDS requests", measured: Number.NaN, unit: "/s", target: null },
      ],
    });
    expect(summary.results.map((r) => [r.measured, r.met])).toEqual([
      [47.7, true],
      [null, null],
    ]);
    write("agent.json", { summary, rssMiB: { max: 47.7 } });
    const [row] = loadRows(dir);
    expect(row).toMatchObject({ benchmark: "agent", verdict: "pass", measured: ["RSS max: 47.7 MiB", "IMDS requests: not recorded"] });
    expect(row!.machine).toMatch(/^\d+ cores, [\d.]+ GiB, node v\d+/);
  });

  it("gives an old report without a summary a row that says what was not recorded", () => {
    write("coordinator-footprint.json", {
      at: "2026-11-26T14:30:29.528Z",
      node: "v20.20.2",
      targets: { startupMs: 300, idleRssMiB: 100 },
      met: { startup: true, idleRss: false },
    });
    write("notice-paths.json", {
      at: "2026-11-26T15:02:37.885Z",
      host: { cores: 2, loadAverage1m: 6.33 },
      targets: { agentP99Ms: 1500, agentMet: true, queueMet: true },
    });
    write("weird.json", { something: [1, 2, 3] });
    const rows = loadRows(dir);
    expect(rows.map((r) => [r.benchmark, r.verdict, r.date, r.machine, r.targets.join("; ")])).toEqual([
      [
        "coordinator-footprint",
        "FAIL (idleRss)",
        "2026-11-26 14:30 UTC",
        "node v20.20.2; cores, memory not recorded",
        "startupMs: 300; idleRssMiB: 100",
      ],
      ["notice-paths", "pass", "2026-11-26 15:02 UTC", "2 cores; memory, node not recorded", "agentP99Ms: 1500"],
      ["weird", "not recorded", "not recorded", "not recorded", "not recorded"],
    ]);
    for (const r of rows) expect(r.measured).toEqual(["not recorded (a report from before summaries; see the file)"]);
  });

  it("finds no reports in a directory that is not there (a fresh clone)", () => {
    expect(loadRows(join(dir, "missing"))).toEqual([]);
  });

  it("names the file (and the field) of a malformed report", () => {
    write("good.json", { at: "2026-11-26T14:30:29.528Z" });
    write("broken.json", '{"summary": {');
    expect(() => loadRows(dir)).toThrow(ReportError);
    expect(() => loadRows(dir)).toThrow(/broken\.json: not valid JSON/);
    rmSync(join(dir, "broken.json"));

    write("list.json", [1, 2]);
    expect(() => loadRows(dir)).toThrow(/list\.json: not a JSON object/);
    rmSync(join(dir, "list.json"));

    write("bad-summary.json", {
      summary: {
        benchmark: "x",
        measures: "y",
        date: "2026-11-26T14:30:29.528Z",
        results: [{ name: "p99", measured: "fast", unit: "ms", target: null }],
      },
    });
    expect(() => loadRows(dir)).toThrow(/bad-summary\.json: summary\.results\.0\.measured: /);
    write("bad-summary.json", { summary: { benchmark: "x", measures: "y", date: "yesterday", results: [] } });
    expect(() => loadRows(dir)).toThrow(/bad-summary\.json: summary\.date: is not a date/);
  });

  it("keeps a report's text from breaking the table", () => {
    write("x.json", {
      summary: { benchmark: "x", measures: "a | b\nc", date: "2026-11-26T14:30:29.528Z", results: [] },
    });
    const line = cells(renderTable(loadRows(dir)))[2]!;
    expect(line).toBe("| `x` | a \\| b c | none | | no target | 2026-11-26 14:30 UTC | not recorded |");
  });

  it("finds the met/ok flags a report wrote, by path, not inside arrays", () => {
    expect(metFlags({ ok: true, target: { met: false }, targets: { queueMet: true }, samples: [{ ok: false }] })).toEqual([
      { name: "ok", met: true },
      { name: "target", met: false },
      { name: "queue", met: true },
    ]);
  });
});
