import YAML from "yaml";
import { ImportResponse } from "../../shared/api.js";
import type { Command } from "../command.js";
import { numberFlag, parseFlags, UsageError } from "../args.js";
import { ApiClient, CLIENT_FLAGS, CliError, printJson } from "../client.js";
import { followWorkflow } from "../follow.js";
import { readOverrides } from "../spec-file.js";

export const command: Command = {
  usage: `usage: spotkeep import INSTANCE_ID --name NAME [-f OVERRIDES] [--region REGION] [--adopt-kept] [--dry-run] [--wait]
                       [--timeout SECONDS] [--json] [--url URL] [--token T | --data-dir DIR]

Makes an existing EC2 instance (EBS-backed, in a VPC, Linux) a stateful instance without moving its
data or changing its IP. The coordinator reads everything from EC2 (image, type, subnet, security
groups, key pair, instance profile, tags, user-data, root and data volumes, primary ENI) and builds
the spec: the root persisted, each data volume adopted by id, the instance's own ENI kept.

-f OVERRIDES is a partial spec in the spec's own format (YAML or JSON; - reads standard input) laid
over the discovered one; data volumes are matched by device. Give each data volume the mountPoint
where the agent should mount it on every generation (without one it is attached and reported, but
left for the workload to mount, e.g. by its own fstab):
    persistence:
      volumes:
        - device: /dev/sdf
          mountPoint: /var/lib/postgresql
    launch:
      instanceTypes: [m6i.large, m5.large]

Then it converts: DeleteOnTermination off on the volumes and the ENI, the instance stopped cleanly,
its root snapshotted into an image, the instance terminated, and generation 1 launched on spot with
the same ENI and volumes (the agent's bootstrap runs before the instance's own user-data). Until the
original is terminated a failure rolls everything back and the instance runs as before.

A volume or ENI that a deleted stateful instance kept (delete --keep) is refused, naming that
instance: its TTL would delete it later. --adopt-kept takes it over: it becomes the new stateful
instance's and its TTL no longer applies.

--region names the region the instance is in (default the coordinator's region); it must be one the
coordinator manages (its config region or regions).

--dry-run prints the spec (YAML) and the steps, and changes nothing. --wait follows the import
until generation 1 is ready (exit 0) or the import fails (exit 1).`,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...CLIENT_FLAGS,
        name: { type: "string" },
        file: { type: "string", short: "f" },
        "dry-run": { type: "boolean" },
        "adopt-kept": { type: "boolean" },
        region: { type: "string" },
        wait: { type: "boolean" },
        timeout: { type: "string" },
      },
      ["INSTANCE_ID"],
    );
    const instanceId = positionals[0];
    if (!instanceId) throw new UsageError("missing INSTANCE_ID");
    if (!/^i-[0-9a-f]{8,17}$/.test(instanceId))
      throw new UsageError(`INSTANCE_ID must be an EC2 instance id (i-…), got ${JSON.stringify(instanceId)}`);
    if (values.region !== undefined && !/^[a-z]{2}(-gov)?-[a-z]+-\d$/.test(values.region))
      throw new UsageError(`--region must be an AWS region (such as us-west-2), got ${JSON.stringify(values.region)}`);
    if (!values.name) throw new UsageError("missing --name NAME (the stateful instance's name)");
    if (values["dry-run"] && values.wait) throw new UsageError("--dry-run changes nothing, so there is nothing to --wait for");
    const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 1800;
    const overrides = values.file ? readOverrides(values.file, { optional: true }) : undefined;
    const client = ApiClient.fromFlags(values);
    const body = JSON.stringify({
      instanceId,
      name: values.name,
      ...(values.region ? { region: values.region } : {}),
      overrides: overrides ?? undefined,
      dryRun: !!values["dry-run"],
      ...(values["adopt-kept"] ? { adoptKept: true } : {}),
    });
    const out = await client.post("/api/v1/import", body, ImportResponse);
    if (values["dry-run"]) {
      if (values.json) printJson(out);
      else {
        process.stdout.write(`# spec for ${out.name} (from ${out.instanceId}); nothing was changed\n`);
        process.stdout.write(YAML.stringify(out.spec));
        process.stdout.write(`# plan\n${out.steps.map((s, n) => `#  ${n + 1}. ${s}`).join("\n")}\n`);
      }
      return 0;
    }
    const workflowId = out.workflowId;
    if (!workflowId) throw new CliError("the coordinator started no import workflow");
    if (!values.wait) {
      if (values.json) printJson(out);
      else
        process.stdout.write(
          `importing ${out.instanceId} as ${out.name} (workflow ${workflowId}); follow it with: spotkeep events ${out.name}\n`,
        );
      return 0;
    }
    const wf = await followWorkflow(client, workflowId, { timeoutMs: timeoutS * 1000, quiet: !!values.json });
    if (values.json) printJson({ ...out, workflow: wf });
    if (wf.status !== "succeeded") {
      process.stderr.write(
        `spotkeep import: ${out.instanceId} was not imported: workflow ${wf.status}${wf.error ? `: ${wf.error}` : ""}\n`,
      );
      return 1;
    }
    if (!values.json) process.stdout.write(`${out.instanceId} is now ${out.name}, generation 1 is ready\n`);
    return 0;
  },
};
