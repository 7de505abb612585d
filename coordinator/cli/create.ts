import { readFileSync } from "node:fs";
import { CreateResponse, Workflow } from "../../shared/api.js";
import { parseSpec } from "../../shared/spec.js";
import type { Command } from "./main.js";
import { numberFlag, parseFlags, UsageError } from "./args.js";
import { ApiClient, CLIENT_FLAGS, CliError, printJson } from "./client.js";
import { renderTable } from "./table.js";

export const command: Command = {
  usage: `usage: spotkeep create -f SPEC [--wait] [--timeout SECONDS] [--json] [--url URL] [--token T | --data-dir DIR]

Creates a stateful instance from a spec file (YAML or JSON; - reads standard input). The spec is
checked locally first, so a typo is reported before anything is sent. With --wait, follows the
create workflow step by step until the instance is ready (exit 0) or the workflow fails (exit 1).`,
  async run(argv) {
    const { values } = parseFlags(argv, {
      ...CLIENT_FLAGS,
      file: { type: "string", short: "f" },
      wait: { type: "boolean" },
      timeout: { type: "string" },
    });
    if (!values.file) throw new UsageError("missing -f SPEC");
    const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 1800;
    let text: string;
    try {
      text = values.file === "-" ? readFileSync(0, "utf8") : readFileSync(values.file, "utf8");
    } catch (err) {
      throw new CliError(`cannot read ${values.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const spec = parseSpec(text, values.file); // local check: names the bad path before anything is sent
    const client = ApiClient.fromFlags(values);
    const created = await client.post("/api/v1/instances", JSON.stringify(spec), CreateResponse);
    if (!values.wait) {
      if (values.json) printJson(created);
      else
        process.stdout.write(
          `creating ${created.name} (workflow ${created.workflowId}); follow it with: spotkeep events ${created.name}\n`,
        );
      return 0;
    }
    const wf = await followWorkflow(client, created.workflowId, { timeoutMs: timeoutS * 1000, quiet: !!values.json });
    if (values.json) printJson({ ...created, workflow: wf });
    if (wf.status !== "succeeded") {
      process.stderr.write(
        `spotkeep create: ${created.name} did not become ready: workflow ${wf.status}${wf.error ? `: ${wf.error}` : ""}\n`,
      );
      return 1;
    }
    if (!values.json) process.stdout.write(`${created.name} is ready\n`);
    return 0;
  },
};

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
