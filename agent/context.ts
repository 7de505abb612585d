/**
 * What both modes (run, restore) set up the same way: logger, IMDS client, who we are, the state
 * store and the link to the coordinator.
 */
import { realClock, type Clock } from "../shared/clock.js";
import { VERSION } from "../shared/version.js";
import { scaleMs, type AgentConfig } from "./config.js";
import { ImdsClient, type Imds, type InstanceInfo } from "./imds/client.js";
import { AgentLink, type LinkOptions } from "./link/client.js";
import { loadSessionSecret, newSessionSecret } from "./link/session-secret.js";
import { StateStore } from "./link/state.js";
import { createLogger, errorText, type Logger } from "./log.js";

export interface AgentContext {
  cfg: AgentConfig;
  clock: Clock;
  log: Logger;
  imds: Imds;
  info: InstanceInfo;
  store: StateStore;
  /** Sent in every hello; bound to this instance (link/session-secret.ts). */
  sessionSecret: string;
  /** The secret the root carries from the earlier generation it was imaged from; sent in every hello. Null on a fresh root. */
  carriedSecret: string | null;
  scale: (modelMs: number) => number;
}

export interface ContextOverrides {
  clock?: Clock;
  log?: Logger;
  imds?: Imds;
  signal?: AbortSignal;
}

/** Wait for IMDS to answer (it may not be ready in the first seconds of boot), backing off. */
export async function createContext(cfg: AgentConfig, o: ContextOverrides = {}): Promise<AgentContext> {
  const clock = o.clock ?? realClock;
  const log = o.log ?? createLogger({ level: cfg.logLevel });
  const scale = (ms: number) => scaleMs(cfg, ms);
  const imds =
    o.imds ??
    new ImdsClient({
      endpoint: cfg.imdsEndpoint,
      clock,
      timeoutMs: 2000,
      retry: { initialMs: scale(100), maxMs: scale(2000), attempts: 4 },
      onRetry: (what, err, attempt) => log.debug("IMDS retry", { what, attempt, error: errorText(err) }),
    });
  let info: InstanceInfo | null = null;
  for (let attempt = 1; !info; attempt++) {
    try {
      info = await imds.instanceInfo();
    } catch (err) {
      if (o.signal?.aborted) throw err;
      const delay = Math.min(scale(30_000), scale(500) * 2 ** Math.min(attempt, 10));
      log.warn("IMDS not answering yet; retrying", { attempt, delayMs: delay, error: errorText(err) });
      await clock.sleep(delay, o.signal);
    }
  }
  const store = new StateStore(cfg.stateDir, log).load(info.instanceId);
  let sessionSecret: string;
  let carriedSecret: string | null = null;
  try {
    ({ secret: sessionSecret, carried: carriedSecret } = loadSessionSecret(cfg.stateDir, info.instanceId, log));
  } catch (err) {
    // The agent still has to guard the volumes (autonomous quiesce), so it runs; this process's
    // secret is valid until it restarts, after which the coordinator refuses the new one.
    log.error("cannot keep a session secret on disk; using one for this process only", { error: errorText(err) });
    sessionSecret = newSessionSecret();
  }
  return { cfg, clock, log: log.child({ instanceId: info.instanceId }), imds, info, store, sessionSecret, carriedSecret, scale };
}

export function createLink(
  ctx: AgentContext,
  mode: "run" | "restore",
  handlers: Pick<LinkOptions, "onWelcome" | "onCommand" | "heartbeatExtras">,
): AgentLink {
  if (!ctx.cfg.coordinatorUrls.length) throw new Error("no coordinator configured (set SPOTKEEP_COORDINATOR or --coordinator)");
  return new AgentLink({
    urls: ctx.cfg.coordinatorUrls,
    clock: ctx.clock,
    log: ctx.log.child({ component: "link" }),
    store: ctx.store,
    scale: ctx.scale,
    hello: async () => ({
      identity: await ctx.imds.identity(),
      agentVersion: VERSION,
      mode,
      sessionSecret: ctx.sessionSecret,
      ...(ctx.carriedSecret ? { carriedSecret: ctx.carriedSecret } : {}),
    }),
    ...handlers,
  });
}
