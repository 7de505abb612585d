/**
 * The shape shared by `spotkeep pause|resume|recycle|snapshot NAME`: ask the coordinator to start
 * the operation, then (with --wait) follow its workflow step by step.
 */
import type { Operation } from "../shared/operations.js";
import { OperationResponse } from "../shared/api.js";
import { numberFlag, parseFlags, UsageError } from "./args.js";
import { ApiClient, CLIENT_FLAGS, printJson } from "./client.js";
import type { Command } from "./command.js";
import { followWorkflow } from "./follow.js";

const WHAT: Record<Operation, { doing: string; done: string; about: string }> = {
  pause: {
    doing: "pausing",
    done: "is paused",
    about:
      "Quiesces the workload (hooks, sync, freeze), keeps the root as an image, terminates the EC2 instance and keeps\n" +
      "the network interface and the data volumes. Nothing runs, nothing is lost; resume brings it back.",
  },
  resume: {
    doing: "resuming",
    done: "is running again",
    about:
      "Launches a new generation from what a paused (or failed) instance kept: same ENI and private IP, same data\nvolumes, the root image.",
  },
  recycle: {
    doing: "recycling",
    done: "is running on a new generation",
    about:
      "A planned replacement of a running instance: quiesce, capture, terminate, then launch with the same ENI, volumes\n" +
      "and root (applies spec updates). From failed, it starts from whatever resources are kept.",
  },
  snapshot: {
    doing: "snapshotting",
    done: "has fresh snapshots",
    about: "Takes a snapshot of every data volume (frozen first with snapshots.consistency: freeze).",
  },
};

export function operationCommand(op: Operation): Command {
  const w = WHAT[op];
  return {
    usage: `usage: spotkeep ${op} NAME [--wait] [--timeout SECONDS] [--json] [--url URL] [--token T | --data-dir DIR]

${w.about}
With --wait, follows the workflow step by step until it ends (exit 0 when it succeeded, 1 when not).`,
    async run(argv) {
      const { values, positionals } = parseFlags(argv, { ...CLIENT_FLAGS, wait: { type: "boolean" }, timeout: { type: "string" } }, [
        "NAME",
      ]);
      const name = positionals[0];
      if (!name) throw new UsageError(`missing NAME: spotkeep ${op} NAME`);
      const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 1800;
      const client = ApiClient.fromFlags(values);
      const started = await client.post(`/api/v1/instances/${encodeURIComponent(name)}/${op}`, undefined, OperationResponse);
      if (!values.wait) {
        if (values.json) printJson(started);
        else
          process.stdout.write(
            `${w.doing} ${started.name} (workflow ${started.workflowId}); follow it with: spotkeep events ${started.name}\n`,
          );
        return 0;
      }
      const wf = await followWorkflow(client, started.workflowId, { timeoutMs: timeoutS * 1000, quiet: !!values.json });
      if (values.json) printJson({ ...started, workflow: wf });
      if (wf.status !== "succeeded") {
        process.stderr.write(`spotkeep ${op}: ${started.name}: workflow ${wf.status}${wf.error ? `: ${wf.error}` : ""}\n`);
        return 1;
      }
      if (!values.json) process.stdout.write(`${started.name} ${w.done}\n`);
      return 0;
    },
  };
}
