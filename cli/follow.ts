import { Workflow } from "../shared/api.js";
import { type ApiClient, CliError } from "./client.js";
import { renderTable } from "./table.js";

/**
 * Poll a workflow until it finishes, printing each step as it starts and ends (progress for a
 * human; nothing when quiet). Resolves with the final workflow.
 */
export async function followWorkflow(
  client: ApiClient,
  id: string,
  opts: { timeoutMs: number; quiet?: boolean; intervalMs?: number; out?: NodeJS.WritableStream },
): Promise<Workflow> {
  const out = opts.out ?? process.stdout;
  const deadline = Date.now() + opts.timeoutMs;
  const seen = new Map<number, string>();
  const started = Date.now();
  for (;;) {
    const wf = await client.get(`/api/v1/workflows/${encodeURIComponent(id)}`, Workflow);
    if (!opts.quiet) {
      for (const s of wf.steps) {
        const key = `${s.status}/${s.attempts}`;
        if (seen.get(s.seq) === key) continue;
        seen.set(s.seq, key);
        const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
        const dur = s.durationMs !== null ? ` in ${(s.durationMs / 1000).toFixed(1)}s` : "";
        const extra =
          s.status === "running" && s.attempts > 1
            ? ` (attempt ${s.attempts}${s.error ? `, last error: ${s.error}` : ""})`
            : s.error && s.status === "failed"
              ? `: ${s.error}`
              : "";
        out.write(`[${t}s] ${s.name.padEnd(28)} ${s.status}${dur}${extra}\n`);
      }
    }
    if (wf.status !== "running") {
      if (!opts.quiet && wf.steps.length)
        out.write(
          "\n" +
            renderTable(
              ["STEP", "STATUS", "DURATION", "ATTEMPTS"],
              wf.steps.map((s) => [s.name, s.status, s.durationMs !== null ? `${(s.durationMs / 1000).toFixed(1)}s` : "-", s.attempts]),
            ),
        );
      return wf;
    }
    if (Date.now() > deadline)
      throw new CliError(
        `gave up waiting for workflow ${id} after ${Math.round(opts.timeoutMs / 1000)}s (it is still running; follow it with spotkeep events)`,
      );
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 500));
  }
}
