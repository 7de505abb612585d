import YAML from "yaml";
import { z } from "zod";
import { CreateResponse } from "../../shared/api.js";
import { parseSpec, specData } from "../../shared/spec.js";
import type { Command } from "../command.js";
import { numberFlag, parseFlags, UsageError } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson } from "../client.js";
import { followWorkflow } from "../follow.js";
import { readSpecText } from "../spec-file.js";

const DryRunResponse = z.object({ name: z.string(), dryRun: z.literal(true), spec: z.record(z.string(), z.unknown()) });

export const command: Command = {
  usage: `usage: spotkeep create -f SPEC [--dry-run] [--wait] [--timeout SECONDS] [--json] [--url URL] [--token T | --data-dir DIR]

Creates a stateful instance from a spec file (YAML or JSON; - reads standard input). The spec is
checked locally first, so a typo is reported before anything is sent. With --wait, follows the
create workflow step by step until the instance is ready (exit 0) or the workflow fails (exit 1).
--dry-run has the coordinator check the spec as a create would (its region, the image's
architecture, user-data size, the name not in use), prints the spec with its defaults (YAML) and
creates nothing; a refusal is printed as a create's would be (exit 1).`,
  async run(argv) {
    const { values } = parseFlags(argv, {
      ...CLIENT_FLAGS,
      file: { type: "string", short: "f" },
      "dry-run": { type: "boolean" },
      wait: { type: "boolean" },
      timeout: { type: "string" },
    });
    if (!values.file) throw new UsageError("missing -f SPEC");
    if (values["dry-run"] && values.wait) throw new UsageError("--dry-run creates nothing, so there is nothing to --wait for");
    const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 1800;
    const text = readSpecText(values.file);
    parseSpec(text, values.file); // local check: names the bad path before anything is sent
    // Sent as written, defaults unfilled: the coordinator fills them (a spec without a region is in its region).
    const spec = specData(text, values.file);
    const client = ApiClient.fromFlags(values);
    if (values["dry-run"]) {
      const checked = await client.post("/api/v1/instances?dryRun=true", JSON.stringify(spec), DryRunResponse);
      if (values.json) printJson(checked);
      else {
        process.stdout.write(`# spec for ${checked.name}, checked by the coordinator; nothing was created\n`);
        process.stdout.write(YAML.stringify(checked.spec));
      }
      return 0;
    }
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
