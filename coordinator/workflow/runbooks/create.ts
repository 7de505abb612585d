/**
 * create: from a spec, make the data volumes and the ENI, launch generation 1 (with the
 * fallbacks), attach, bootstrap, wait for `ready`.
 *
 *   resolve → { create-volume each ‖ create-eni } → bring-up (runbooks/generation.ts: launch →
 *   wait-running → attach each → restore → finish → [register-targets → wait-targets-healthy])
 *
 * With `attach: secondary` generation 1 launches with its own primary ENI in the stable ENI's AZ and
 * the bring-up's `attach-eni` puts the stable ENI at device index 1 beside the volumes; the agent
 * configures it.
 */
import { STEP, STEP_OF } from "../../../shared/steps.js";
import { errorCode } from "../../cloud/errors.js";
import { TAG } from "../../cloud/gateway.js";
import type { DataVolume, NetworkIdentity } from "../../db/store.js";
import { encryptionOf, type StatefulInstanceSpec } from "../../../shared/spec.js";
import { type Runbook, step, together, type WorkflowContext } from "../engine.js";
import { Failure, isPermanent } from "../failure.js";
import { type RunbookDeps, waitUntil } from "./deps.js";
import { bringUp } from "./generation.js";
import { candidates, describeLaunchSubnets, ipInCidr, MUTATE_POLICY, volumeEncryption } from "./launch.js";
import { resourceTags } from "./steps.js";

export interface CreateInput {
  name: string;
  /** A group member's pool address: its stable ENI is created with it, in this subnet. */
  address?: { privateIp: string; subnetId: string };
}

export function createRunbook(deps: RunbookDeps): Runbook<CreateInput> {
  return async (ctx, { name, address }) => {
    const generation = 1;

    // 1. Resolve the spec's image and subnets (a missing one fails the create: retrying will not make it exist).
    const plan = await ctx.step(
      STEP.resolve,
      async () => {
        const inst = await deps.store.instances.get(name);
        if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
        const spec = inst.spec;
        const image = await deps.ec2.describeImage(spec.launch.imageId);
        if (!image) throw new Failure("invalid-spec", `launch.imageId: ${spec.launch.imageId} does not exist`);
        const subnets = await describeLaunchSubnets(deps, spec, "refuse");
        // Adopted volumes (volumeId) cannot move: they decide the AZ, which a subnet must be in.
        const adoptedAzs = new Map<string, string>();
        for (const v of spec.persistence.volumes) {
          if (!v.volumeId) continue;
          const found = await deps.ec2.describeVolume(v.volumeId);
          if (!found) throw new Failure("invalid-spec", `persistence.volumes: ${v.volumeId} does not exist`);
          adoptedAzs.set(v.volumeId, found.availabilityZone);
        }
        const azs = [...new Set(adoptedAzs.values())];
        if (azs.length > 1)
          throw new Failure(
            "invalid-spec",
            `persistence.volumes: the adopted volumes are in different AZs (${[...adoptedAzs].map(([id, az]) => `${id} in ${az}`).join(", ")}); ` +
              "an instance attaches volumes of its own AZ only",
          );
        if (azs[0] && !subnets.some((s) => s.availabilityZone === azs[0]))
          throw new Failure(
            "invalid-spec",
            `launch.subnetIds: none is in ${azs[0]}, where the adopted volume${adoptedAzs.size > 1 ? "s are" : " is"} (${[...adoptedAzs.keys()].join(", ")})`,
          );
        await deps.store.tx(async (t) => {
          await t.root.set({
            instance: name,
            imageId: spec.persistence.root ? spec.launch.imageId : null,
            snapshotId: null,
            rootDeviceName: image.rootDeviceName,
            architecture: image.architecture,
          });
          await t.generations.ensure(name, generation, ctx.workflowId);
        });
        return { spec, subnets, volumes: await deps.store.volumes.list(name), adoptedAz: azs[0] ?? null };
      },
      { ...MUTATE_POLICY, retryable: (e) => !isPermanent(e) && (MUTATE_POLICY.retryable?.(e) ?? true) },
    );
    const { spec } = plan;

    // Home: the adopted volumes' AZ if any; else with an address pool the first subnet that holds
    // one of the pool's addresses; else the first subnet.
    const pool = spec.persistence.network.privateIp === "pool" ? spec.persistence.network.ipPool : [];
    const home =
      (address ? plan.subnets.find((s) => s.subnetId === address.subnetId) : undefined) ??
      (plan.adoptedAz
        ? plan.subnets.find((s) => s.availabilityZone === plan.adoptedAz && (!pool.length || pool.some((ip) => ipInCidr(ip, s.cidr))))
        : plan.subnets.find((s) => pool.some((ip) => ipInCidr(ip, s.cidr)))) ??
      plan.subnets[0];
    if (!home) throw new Failure("invalid-spec", "launch.subnetIds: no subnet to launch in");
    if (address && home.subnetId !== address.subnetId)
      throw new Failure("invalid-spec", `launch.subnetIds: ${address.subnetId}, where ${address.privateIp} lives, is no longer listed`);

    // 2. The persisted resources: one EBS volume per data volume, and the stable ENI.
    const [volumes, eni] = await together(
      ctx.all(
        plan.volumes.map((v) =>
          step(STEP_OF.createVolume(v.device), () => createDataVolume(deps, ctx, spec, v, home.availabilityZone), MUTATE_POLICY),
        ),
      ),
      spec.persistence.network.privateIp === "same-eni"
        ? ctx.step(STEP.createEni, () => createStableEni(deps, ctx, spec, home.subnetId, address?.privateIp), {
            ...MUTATE_POLICY,
            // The group checked the address was free; taken since, it stays taken: fail, naming it.
            retryable: (e) => errorCode(e) !== "InvalidIPAddress.InUse" && (MUTATE_POLICY.retryable?.(e) ?? true),
          })
        : Promise.resolve(null),
    );

    // 3. Generation 1, pinned to home's AZ when volumes or the ENI live there: launch, attach, the
    //    agent formats blank volumes, mounts them and runs postRestore; then it serves.
    const launched = await bringUp(
      deps,
      ctx,
      { name, spec, generation, imageId: spec.launch.imageId, eni, volumes, previousClean: true, how: "is ready" },
      { cands: candidates(spec, plan.subnets, volumes.length > 0 || eni ? home.availabilityZone : null) },
    );
    return { instanceId: launched.instanceId };
  };
}

/**
 * Adopt the spec's existing volume, or create a blank one in `availabilityZone` (tagged with the
 * instance, workflow, step and device, so a re-run finds it instead of creating another) and wait
 * until it is available. The store records it as the device's current volume unless `record` is
 * false (a volume added to a running instance is recorded once it is mounted: runbooks/grow.ts).
 */
export async function createDataVolume(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  spec: StatefulInstanceSpec,
  v: DataVolume,
  availabilityZone: string,
  o: { record: boolean } = { record: true },
): Promise<DataVolume> {
  const name = spec.name;
  const sv = spec.persistence.volumes.find((x) => x.device === v.device);
  if (!sv) throw new Failure("invalid-spec", `${name} ${v.device} is not in the spec`);
  if (sv.volumeId) {
    const existing = await deps.ec2.describeVolume(sv.volumeId);
    if (!existing) throw new Failure("invalid-spec", `persistence.volumes: ${sv.volumeId} does not exist`);
    if (o.record) await deps.store.volumes.setCurrent(name, v.device, existing.volumeId, existing.availabilityZone);
    return { ...v, volumeId: existing.volumeId, availabilityZone: existing.availabilityZone };
  }
  const step = `create-volume ${v.device}`;
  const vol = await deps.ec2.createVolume({
    availabilityZone,
    sizeGiB: sv.sizeGiB,
    volumeType: sv.type,
    iops: sv.iops,
    throughput: sv.throughput,
    ...volumeEncryption(spec),
    tags: {
      ...spec.launch.tags,
      ...resourceTags(ctx, name, step, { [TAG.device]: v.device }),
      Name: `${name}${v.device.replace(/\//g, "-")}`,
    },
  });
  if (o.record) await deps.store.volumes.setCurrent(name, v.device, vol.volumeId, vol.availabilityZone);
  // EC2 checks a volume's KMS key only once it creates it: a key it cannot use (missing, disabled,
  // or not granted to the caller through EC2) makes the new volume vanish, or end in `error`. A new
  // volume may also be missing from DescribeVolumes for a moment (EC2 is eventually consistent), so
  // only one missing for VANISHED_AFTER_MS of model time counts as vanished.
  const askedAt = deps.clock.now();
  await waitUntil(
    deps.clock,
    `${vol.volumeId} to be available`,
    async () => {
      const found = await deps.ec2.describeVolume(vol.volumeId);
      if (!found && deps.clock.modelMsSince(askedAt) < VANISHED_AFTER_MS) return null;
      if (!found || found.state === "error") {
        const enc = encryptionOf(spec);
        throw new Failure(
          "invalid-spec",
          `${vol.volumeId} (${v.device}) ${found ? "ended in error" : "vanished"} after CreateVolume` +
            (enc.encrypted
              ? `: EC2 could not use the KMS key ${enc.kmsKeyId ?? "(the account's default EBS key)"} (missing, disabled, or the coordinator's role ` +
                "lacks kms:CreateGrant, kms:Decrypt, kms:GenerateDataKeyWithoutPlaintext or kms:ReEncrypt* through EC2)"
              : ""),
        );
      }
      const state = found.state;
      return state === "available" ? true : null;
    },
    { intervalMs: deps.pollMs, timeoutMs: 10 * 60_000, signal: ctx.signal },
  );
  return { ...v, volumeId: vol.volumeId, availabilityZone: vol.availabilityZone };
}

/** How long (model ms) a volume CreateVolume returned may be missing from DescribeVolumes before it counts as vanished. */
const VANISHED_AFTER_MS = 30_000;

/** The stable ENI that carries the private IP across generations (DeleteOnTermination false when attached at launch). */
export async function createStableEni(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  spec: StatefulInstanceSpec,
  subnetId: string,
  privateIp?: string,
): Promise<NetworkIdentity> {
  const name = spec.name;
  const eni = await deps.ec2.createNetworkInterface({
    subnetId,
    ...(privateIp ? { privateIp } : {}),
    securityGroupIds: spec.launch.securityGroupIds,
    description: `spotkeep ${name}`,
    tags: { ...spec.launch.tags, ...resourceTags(ctx, name, "create-eni"), Name: name },
  });
  const identity: NetworkIdentity = {
    instance: name,
    eniId: eni.eniId,
    privateIp: eni.privateIp,
    subnetId: eni.subnetId,
    availabilityZone: eni.availabilityZone,
  };
  await deps.store.network.set(identity);
  return identity;
}
