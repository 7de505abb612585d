/**
 * create: from a spec, make the data volumes and the ENI, launch generation 1 (with the
 * fallbacks), attach, bootstrap, wait for `ready`.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { TAG } from "../../cloud/gateway.js";
import type { Runbook } from "../engine.js";
import { waitUntil, type RunbookDeps } from "./deps.js";
import {
  LAUNCH_POLICY,
  MUTATE_POLICY,
  attachVolume,
  candidates,
  ipInCidr,
  launchGeneration,
  restoreAndWaitReady,
  waitRunning,
} from "./launch.js";

export interface CreateInput {
  name: string;
}

export function createRunbook(deps: RunbookDeps): Runbook<CreateInput> {
  return async (ctx, { name }) => {
    const spec = JSON.parse(deps.store.getInstance(name)!.spec) as StatefulInstanceSpec;
    const generation = 1;

    const plan = await ctx.step(
      "resolve",
      async () => {
        const image = await deps.ec2.describeImage(spec.launch.imageId);
        if (!image) throw new Error(`launch.imageId: ${spec.launch.imageId} does not exist`);
        const subnets = await deps.ec2.describeSubnets(spec.launch.subnetIds);
        const ordered = spec.launch.subnetIds.map((id) => {
          const s = subnets.find((x) => x.subnetId === id);
          if (!s) throw new Error(`launch.subnetIds: ${id} does not exist`);
          return { subnetId: s.subnetId, availabilityZone: s.availabilityZone, cidr: s.cidr };
        });
        deps.store.setRoot({
          instance: name,
          image_id: spec.persistence.root ? spec.launch.imageId : null,
          snapshot_id: null,
          root_device_name: image.rootDeviceName,
          architecture: image.architecture,
        });
        deps.store.ensureGeneration(name, generation, ctx.workflowId);
        return { subnets: ordered, rootDeviceName: image.rootDeviceName };
      },
      { ...MUTATE_POLICY, retryable: (e) => MUTATE_POLICY.retryable!(e) && !/does not exist/.test(String(e)) },
    );

    // With an address pool, home is the first subnet that holds one of the pool's addresses.
    const pool = spec.persistence.network.privateIp === "pool" ? spec.persistence.network.ipPool : [];
    const home = plan.subnets.find((s) => pool.some((ip) => ipInCidr(ip, s.cidr))) ?? plan.subnets[0]!;
    const tags = (step: string) => ({ [TAG.managed]: "true", [TAG.instance]: name, [TAG.workflow]: ctx.workflowId, [TAG.step]: step });

    const made = await ctx.parallel<unknown[]>([
      ...spec.persistence.volumes.map(
        (v) =>
          [
            `create-volume ${v.device}`,
            async () => {
              const step = `create-volume ${v.device}`;
              if (v.volumeId) {
                const existing = await deps.ec2.describeVolume(v.volumeId);
                if (!existing) throw new Error(`persistence.volumes: ${v.volumeId} does not exist`);
                deps.store.setVolumeCurrent(name, v.device, existing.volumeId, existing.availabilityZone);
                return existing.volumeId;
              }
              const vol = await deps.ec2.createVolume({
                availabilityZone: home.availabilityZone,
                sizeGiB: v.sizeGiB,
                volumeType: v.type,
                iops: v.iops,
                throughput: v.throughput,
                tags: { ...spec.launch.tags, ...tags(step), [TAG.device]: v.device, Name: `${name}${v.device.replace(/\//g, "-")}` },
              });
              deps.store.setVolumeCurrent(name, v.device, vol.volumeId, vol.availabilityZone);
              await waitUntil(
                deps.clock,
                `${vol.volumeId} to be available`,
                async () => ((await deps.ec2.describeVolume(vol.volumeId))?.state === "available" ? true : null),
                { intervalMs: deps.pollMs, timeoutMs: 10 * 60_000, signal: ctx.signal },
              );
              return vol.volumeId;
            },
            MUTATE_POLICY,
          ] as const,
      ),
      ...(spec.persistence.network.privateIp === "same-eni"
        ? [
            [
              "create-eni",
              async () => {
                const eni = await deps.ec2.createNetworkInterface({
                  subnetId: home.subnetId,
                  securityGroupIds: spec.launch.securityGroupIds,
                  description: `spotkeep ${name}`,
                  tags: { ...spec.launch.tags, ...tags("create-eni"), Name: name },
                });
                deps.store.setNetwork({
                  instance: name,
                  eni_id: eni.eniId,
                  private_ip: eni.privateIp,
                  subnet_id: eni.subnetId,
                  availability_zone: eni.availabilityZone,
                });
                return eni.eniId;
              },
              MUTATE_POLICY,
            ] as const,
          ]
        : []),
    ] as never);
    void made;

    const net = deps.store.getNetwork(name);
    const launched = await ctx.step(
      "launch",
      () =>
        launchGeneration(deps, ctx, {
          name,
          spec,
          generation,
          imageId: spec.launch.imageId,
          cands: candidates(spec, plan.subnets, spec.persistence.volumes.length > 0 || net?.eni_id ? home.availabilityZone : null),
          eniId: net?.eni_id ?? null,
          blockDevices: [],
        }),
      LAUNCH_POLICY,
    );

    await ctx.step("wait-running", () => waitRunning(deps, ctx, name, generation, launched.instanceId, false), MUTATE_POLICY);

    await ctx.parallel<unknown[]>(
      deps.store
        .listVolumes(name)
        .map(
          (v) => [`attach ${v.device}`, () => attachVolume(deps, ctx, v.volume_id!, launched.instanceId, v.device), MUTATE_POLICY] as const,
        ) as never,
    );

    await ctx.step(
      "restore",
      () => restoreAndWaitReady(deps, ctx, { name, spec, generation, instanceId: launched.instanceId, previousClean: true }),
      { attempts: 1 },
    );

    await ctx.step("finish", async () => {
      deps.store.tx(() => {
        deps.store.markGenerationLive(name, generation);
        deps.store.setCurrentGeneration(name, generation);
        deps.store.setInstanceState(name, "running", null);
      });
      ctx.event(
        "ready",
        `generation ${generation} (${launched.instanceId}, ${launched.market} ${launched.instanceType} in ${launched.availabilityZone}) is ready`,
      );
      return true;
    });
    return { instanceId: launched.instanceId };
  };
}
