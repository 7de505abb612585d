import { OperationResponse } from "../../shared/api.js";
import type { Command } from "../command.js";
import { numberFlag, parseFlags, UsageError } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson } from "../client.js";
import { followWorkflow } from "../follow.js";
import { readOverrides } from "../spec-file.js";

export const command: Command = {
  usage: `usage: spotkeep restore NAME --region REGION -f OVERRIDES [--wait] [--timeout SECONDS] [--json]
                        [--url URL] [--token T | --data-dir DIR]

Disaster recovery: brings a paused or failed stateful instance back in another region from the
copies of its snapshots and root image there (spec snapshots.copyToRegions). Each data volume is
made from its latest completed copy, the root from the latest available root image copy
(persistence.root), and the instance gets a new ENI: its private IP changes, and the timeline says
from which to which. What it had in the old region (volumes, ENI, snapshots, images, copies
elsewhere) is recorded as kept and never touched: the old region may be down. Delete it there by
hand once it is of no use. From then on the instance is managed in REGION like any other.

-f OVERRIDES is a partial spec (YAML or JSON; - reads standard input) laid over the stored one; data
volumes are matched by device. It must give what is regional:
    launch:
      subnetIds: [subnet-…]          # subnets of REGION (always)
      securityGroupIds: [sg-…]       # when the spec has security groups
      keyName: …                     # when the spec names a key pair
      imageId: ami-…                 # without persistence.root, or no root image copy in REGION
    persistence:
      encryption: {kmsKeyId: …}      # when the spec names a customer-managed key
      network: {ipPool: [...]}       # with privateIp: pool
    loadBalancers: {targetGroupArns: [...]}   # when the spec has target groups
When the overrides leave snapshots.copyToRegions out, REGION is dropped from it.

A restore that fails once it has begun leaves the instance failed in REGION (its spec there); resume
then makes the data volumes from the same copies.

REGION must be one the coordinator manages (config regions). --wait follows the restore until the
instance serves in REGION (exit 0) or the restore fails (exit 1).`,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...CLIENT_FLAGS,
        region: { type: "string" },
        file: { type: "string", short: "f" },
        wait: { type: "boolean" },
        timeout: { type: "string" },
      },
      ["NAME"],
    );
    const name = positionals[0];
    if (!name) throw new UsageError("missing NAME: spotkeep restore NAME --region REGION -f OVERRIDES");
    if (!values.region) throw new UsageError("missing --region REGION (where the instance comes back)");
    if (!/^[a-z]{2}(-gov)?-[a-z]+-\d$/.test(values.region))
      throw new UsageError(`--region must be an AWS region (such as us-west-2), got ${JSON.stringify(values.region)}`);
    if (!values.file) throw new UsageError("missing -f OVERRIDES (at least launch.subnetIds: subnets of the new region)");
    const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 1800;
    const overrides = readOverrides(values.file);
    const client = ApiClient.fromFlags(values);
    const started = await client.post(
      `/api/v1/instances/${encodeURIComponent(name)}/restore`,
      JSON.stringify({ region: values.region, overrides }),
      OperationResponse,
    );
    if (!values.wait) {
      if (values.json) printJson(started);
      else
        process.stdout.write(
          `restoring ${started.name} in ${values.region} (workflow ${started.workflowId}); follow it with: spotkeep events ${started.name}\n`,
        );
      return 0;
    }
    const wf = await followWorkflow(client, started.workflowId, { timeoutMs: timeoutS * 1000, quiet: !!values.json });
    if (values.json) printJson({ ...started, region: values.region, workflow: wf });
    if (wf.status !== "succeeded") {
      process.stderr.write(`spotkeep restore: ${started.name}: workflow ${wf.status}${wf.error ? `: ${wf.error}` : ""}\n`);
      return 1;
    }
    if (!values.json)
      process.stdout.write(`${started.name} is running in ${values.region} (a new private IP: spotkeep describe ${started.name})\n`);
    return 0;
  },
};
