/**
 * `persistence.network.attach: secondary`: the stable ENI (and so the stable private IP) is attached
 * at device index 1; every generation launches with its own, disposable primary ENI. The step
 * bodies here move the stable ENI and the data volumes; each is ONE step's work, safe to re-run
 * (attached to the target already = done, detached already = done).
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import type { NetworkIdentity } from "../../db/store.js";
import type { WorkflowContext } from "../engine.js";
import { Failure, failureKind } from "../failure.js";
import { type RunbookDeps, waitUntil } from "./deps.js";

/** The device index the stable ENI takes on every generation. */
export const STABLE_ENI_INDEX = 1;

export function isSecondary(spec: StatefulInstanceSpec): boolean {
  return spec.persistence.network.attach === "secondary";
}

/** What the restore plan names for the agent to configure, when the stable ENI is a secondary one. */
export function planEni(spec: StatefulInstanceSpec, net: Pick<NetworkIdentity, "eniId" | "privateIp"> | null) {
  if (!isSecondary(spec) || !net?.eniId || !net.privateIp) return undefined;
  return { eniId: net.eniId, privateIp: net.privateIp };
}

/**
 * Attach the stable ENI to `instanceId` at device index 1 once it is free (the previous holder may
 * still be releasing it), and wait until EC2 reports it attached.
 */
export async function attachStableEni(deps: RunbookDeps, ctx: WorkflowContext, eniId: string, instanceId: string): Promise<true> {
  const state = await waitUntil(
    deps.clock,
    `${eniId} to be free or attached to ${instanceId}`,
    async () => {
      const e = await deps.ec2.describeNetworkInterface(eniId);
      if (!e) throw new Failure("resource-lost", `${eniId} (the stateful instance's network interface) no longer exists`);
      if (e.attachment?.instanceId === instanceId && e.attachment.status !== "detaching") return "mine";
      return e.status === "available" ? "free" : null;
    },
    { intervalMs: deps.pollMs / 4, timeoutMs: 10 * 60_000, signal: ctx.signal, grid: true },
  );
  if (state === "free") await deps.ec2.attachNetworkInterface(eniId, instanceId, STABLE_ENI_INDEX);
  await waitUntil(
    deps.clock,
    `${eniId} to attach to ${instanceId}`,
    async () => {
      const e = await deps.ec2.describeNetworkInterface(eniId);
      if (!e) throw new Failure("resource-lost", `${eniId} (the stateful instance's network interface) no longer exists`);
      const a = e.attachment;
      if (a && a.instanceId !== instanceId) throw new Failure("resource-lost", `${eniId} was attached to ${a.instanceId} meanwhile`);
      return a?.status === "attached" ? true : null;
    },
    { intervalMs: deps.pollMs / 4, timeoutMs: 5 * 60_000, signal: ctx.signal, grid: true },
  );
  return true;
}

/**
 * Detach the stable ENI from `instanceId` and wait until it is free. When it is still attached
 * after `forceAfterMs` (model ms), detach it with Force: the deadline-driven last resort, recorded
 * as an event. Returns whether force was used.
 */
export async function detachStableEni(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { eniId: string; instanceId: string; forceAfterMs: number },
): Promise<{ forced: boolean }> {
  await deps.ec2.detachNetworkInterface(o.eniId, o.instanceId);
  const freed = () =>
    waitUntil(
      deps.clock,
      `${o.eniId} to detach from ${o.instanceId}`,
      async () => {
        const e = await deps.ec2.describeNetworkInterface(o.eniId);
        if (!e) throw new Failure("resource-lost", `${o.eniId} (the stateful instance's network interface) no longer exists`);
        return e.attachment?.instanceId !== o.instanceId ? true : null;
      },
      { intervalMs: deps.pollMs / 4, timeoutMs: Math.max(1000, o.forceAfterMs), signal: ctx.signal, grid: true },
    );
  try {
    await freed();
    return { forced: false };
  } catch (err) {
    if (ctx.signal.aborted || failureKind(err) !== "timeout") throw err;
  }
  await ctx.event(
    "forced-detach",
    `${o.eniId} still attached to ${o.instanceId} after ${Math.round(o.forceAfterMs / 1000)} s: detaching with Force`,
  );
  await deps.ec2.detachNetworkInterface(o.eniId, o.instanceId, { force: true });
  await freed();
  return { forced: true };
}

/** Detach a data volume from `instanceId` and wait until it is available; Force (with an event) after `forceAfterMs`. */
export async function detachDataVolume(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { volumeId: string; device: string; instanceId: string; forceAfterMs: number },
): Promise<{ forced: boolean }> {
  const detached = async () => {
    const v = await deps.ec2.describeVolume(o.volumeId);
    if (!v) throw new Failure("resource-lost", `${o.volumeId} (${o.device}) no longer exists`);
    return v.attachments.some((a) => a.instanceId === o.instanceId) ? null : true;
  };
  if (!(await detached())) await deps.ec2.detachVolume(o.volumeId, o.instanceId);
  const wait = () =>
    waitUntil(deps.clock, `${o.volumeId} (${o.device}) to detach from ${o.instanceId}`, detached, {
      intervalMs: deps.pollMs / 4,
      timeoutMs: Math.max(1000, o.forceAfterMs),
      signal: ctx.signal,
      grid: true,
    });
  try {
    await wait();
    return { forced: false };
  } catch (err) {
    if (ctx.signal.aborted || failureKind(err) !== "timeout") throw err;
  }
  await ctx.event(
    "forced-detach",
    `${o.volumeId} (${o.device}) still attached to ${o.instanceId} after ${Math.round(o.forceAfterMs / 1000)} s: detaching with Force`,
  );
  await deps.ec2.detachVolume(o.volumeId, o.instanceId, { force: true });
  await wait();
  return { forced: true };
}
