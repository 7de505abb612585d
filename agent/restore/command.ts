/**
 * `spotkeep-agent restore`: run first by a replacement's user-data. Connects with hello mode
 * "restore", waits for the coordinator's `restore-plan`, restores the volumes (restore.ts), reports
 * `restored` (and an `error` message on failure); with `attach: secondary` the plan names the
 * stable ENI, configured first (agent/network/secondary.ts),, waits until the report is acked (bounded), and
 * exits: 0 when restored so the rest of user-data continues, 1 with the reason otherwise.
 *
 * Contract with the coordinator: restore sends `restored` (ref = the plan's id); the `ready`
 * message comes from `spotkeep-agent run` right after its first welcome, carrying the restore's
 * step timings (left in <stateDir>/restored.json).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { MessageOf, StepTiming } from "../../shared/protocol.js";
import { createContext, createLink, type ContextOverrides } from "../context.js";
import type { AgentConfig } from "../config.js";
import { errorText } from "../log.js";
import { configureSecondaryEni, linkBackendFor, type LinkBackend, rememberStableEni } from "../network/secondary.js";
import { RESTORED_MARKER } from "../run.js";
import { restoreVolumes, type RestoreReport } from "./restore.js";

export interface RestoreOverrides extends ContextOverrides {
  /** Model ms to wait for the plan. Default 10 minutes. */
  planTimeoutMs?: number;
  /** How the stable ENI's link is configured (default: from the config, `ip` or SPOTKEEP_NET_DIR). */
  linkBackend?: LinkBackend;
}

export async function restoreMode(cfg: AgentConfig, o: RestoreOverrides = {}): Promise<number> {
  const ctx = await createContext(cfg, o);
  const { log, clock, scale } = ctx;
  let gotPlan: (p: MessageOf<"restore-plan">) => void = () => {};
  const planArrived = new Promise<MessageOf<"restore-plan">>((r) => (gotPlan = r));
  const link = createLink(ctx, "restore", {
    onCommand: (m) => {
      if (m.type === "restore-plan") gotPlan(m);
      else if (m.type === "error") log.warn("coordinator reported an error", { code: m.code, message: m.message });
      else log.info("ignoring a command during restore", { type: m.type });
    },
  });
  link.start();
  try {
    const timeout = scale(o.planTimeoutMs ?? 600_000);
    const plan = await Promise.race([planArrived, clock.sleep(timeout).then(() => null)]);
    if (!plan) {
      log.error("restore failed: no restore plan from the coordinator", { waitedMs: timeout });
      process.stderr.write(`spotkeep-agent restore: no restore plan from the coordinator after ${timeout} ms\n`);
      return 1;
    }
    log.info("restore plan received", {
      statefulInstance: plan.statefulInstance,
      generation: plan.generation,
      volumes: plan.volumes.length,
      previousClean: plan.previousClean,
    });
    let report: RestoreReport;
    // attach: secondary: the stable ENI first (the coordinator attached it with the volumes), then the volumes.
    let network: { eniId: string; ok: boolean; link?: string; reason?: string } | undefined;
    const eniSteps: StepTiming[] = [];
    if (plan.eni) {
      const backend = o.linkBackend ?? linkBackendFor(cfg);
      try {
        const r = await configureSecondaryEni(plan.eni, scale(plan.deviceTimeoutMs), { imds: ctx.imds, backend, clock, log, scale });
        eniSteps.push(...r.steps);
        network = { eniId: plan.eni.eniId, ok: true, link: r.setup.link };
        rememberStableEni(cfg.stateDir, ctx.info.instanceId, plan.eni);
      } catch (err) {
        const reason = `configuring ${plan.eni.eniId} (${plan.eni.privateIp}): ${errorText(err)}`;
        log.error("restore failed", { eniId: plan.eni.eniId, error: reason });
        eniSteps.push({ name: `eni:${plan.eni.eniId}`, ok: false, ms: 0, detail: reason });
        network = { eniId: plan.eni.eniId, ok: false, reason };
      }
    }
    try {
      report =
        network && !network.ok
          ? { ok: false, volumes: [], steps: [], reason: network.reason }
          : await restoreVolumes(plan, { devDir: cfg.devDir, rootDir: cfg.rootDir, clock, log, scale });
    } catch (err) {
      report = { ok: false, volumes: [], steps: [], reason: `restore crashed: ${errorText(err)}` };
    }
    report = { ...report, steps: [...eniSteps, ...report.steps] };
    link.send({
      type: "restored",
      ref: plan.id,
      ok: report.ok,
      volumes: report.volumes,
      ...(network ? { network } : {}),
      steps: report.steps.slice(0, 64),
      ...(report.reason ? { reason: report.reason } : {}),
    });
    if (!report.ok) link.send({ type: "error", code: "restore-failed", message: report.reason ?? "restore failed", ref: plan.id });
    else
      writeFileSync(
        join(cfg.stateDir, RESTORED_MARKER),
        JSON.stringify({ instanceId: ctx.info.instanceId, steps: report.steps.slice(0, 63) }),
      );
    // Make the report reach the coordinator before user-data moves on (bounded: the outbox keeps it anyway).
    await link.waitOutboxEmpty(scale(30_000));
    if (!report.ok) {
      process.stderr.write(`spotkeep-agent restore: ${report.reason}\n`);
      return 1;
    }
    log.info("restore finished", { volumes: report.volumes.length });
    return 0;
  } finally {
    await link.stop();
  }
}
