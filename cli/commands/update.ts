import { UpdateResponse } from "../../shared/api.js";
import { parseSpec, specData } from "../../shared/spec.js";
import { numberFlag, parseFlags, UsageError } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson } from "../client.js";
import type { Command } from "../command.js";
import { followWorkflow } from "../follow.js";
import { readSpecText } from "../spec-file.js";

export const command: Command = {
  usage: `usage: spotkeep update NAME -f SPEC [--recycle] [--wait] [--timeout SECONDS] [--json] [--url URL] [--token T | --data-dir DIR]

Replaces a stateful instance's spec. The new spec applies from the next generation (the next
replacement, resume or recycle); --recycle applies it now through a recycle. A data volume that
grows (or changes type, IOPS, throughput) and a new data volume are applied live on the running
instance instead, and the spec is stored once they are in place (not with --recycle). Name, region,
a volume's device, fsType and volumeId, shrinking or removing a volume, root persistence, the data
method and the network settings cannot change: the coordinator names the field. With --wait,
follows the recycle or the volume change to its end.`,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...CLIENT_FLAGS,
        file: { type: "string", short: "f" },
        recycle: { type: "boolean" },
        wait: { type: "boolean" },
        timeout: { type: "string" },
      },
      ["NAME"],
    );
    const name = positionals[0];
    if (!name) throw new UsageError("missing NAME");
    if (!values.file) throw new UsageError("missing -f SPEC");
    const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 1800;
    const text = readSpecText(values.file);
    const spec = parseSpec(text, values.file);
    if (spec.name !== name) throw new UsageError(`the spec names ${spec.name}, not ${name} (a name cannot change)`);
    const client = ApiClient.fromFlags(values);
    const updated = await client.put(
      `/api/v1/instances/${encodeURIComponent(name)}${values.recycle ? "?recycle=true" : ""}`,
      // As written, defaults unfilled: the coordinator fills them (a spec without a region is in its region).
      JSON.stringify(specData(text, values.file)),
      UpdateResponse,
    );
    // Without --recycle a workflow runs only for a live volume change.
    const what = values.recycle ? "recycle" : "volume change";
    if (!updated.workflowId || !values.wait) {
      if (values.json) printJson(updated);
      else
        process.stdout.write(
          updated.workflowId
            ? values.recycle
              ? `updated ${name}; recycling to apply it (workflow ${updated.workflowId})\n`
              : `changing the volumes of ${name} live (workflow ${updated.workflowId}); the spec is stored once they are in place\n`
            : `updated ${name}; the new spec applies at its next generation\n`,
        );
      return 0;
    }
    const wf = await followWorkflow(client, updated.workflowId, { timeoutMs: timeoutS * 1000, quiet: !!values.json });
    if (values.json) printJson({ ...updated, workflow: wf });
    if (wf.status !== "succeeded") {
      process.stderr.write(`spotkeep update: ${name}: ${what} ${wf.status}${wf.error ? `: ${wf.error}` : ""}\n`);
      return 1;
    }
    if (!values.json) process.stdout.write(`${name} runs with the new spec\n`);
    return 0;
  },
};
