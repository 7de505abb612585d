/**
 * A coordinator as a child process, for the suites that SIGKILL it (crash tests): a free port,
 * the spawn with its output collected, the exit, and the admin API at its URL.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crashingCoordinator } from "../cli/built.js";
import type { Budget } from "../support/budgets.js";
import { freePort } from "../support/ports.js";
import { coordinatorConfig, type Env, OWNER_ENV, ROOT, until } from "./harness.js";

export { freePort };

export const TEST_TOKEN = "test-admin-token-0123456789";

export interface CoordinatorChild {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  log: string[];
  /** The base URL it printed ("coordinator listening on URL"). */
  url: string;
}

/**
 * Start `node ARGS` (a coordinator entry point) owned by `ownerDir` (so a later run reaps it if
 * this one dies), wait until it listens, and track it in `children` until it exits.
 */
export async function spawnCoordinator(
  args: string[],
  o: { ownerDir: string; children: Set<ChildProcess>; env?: Record<string, string> },
): Promise<CoordinatorChild> {
  const log: string[] = [];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, [OWNER_ENV]: o.ownerDir, ...o.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  o.children.add(child);
  child.stdout?.on("data", (d) => log.push(String(d)));
  child.stderr?.on("data", (d) => log.push(String(d)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on("exit", (code, signal) => {
      o.children.delete(child);
      r({ code, signal });
    }),
  );
  // Gone once its output is all read too ('close' follows 'exit' when stdout and stderr are drained).
  let gone: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  child.on("close", (code, signal) => (gone = { code, signal }));
  const url = await until(
    "the coordinator to listen",
    () => {
      // The log first: a coordinator armed to crash may listen and be gone within one poll (a
      // resumed workflow reaching its crash step at once); its caller sees that exit.
      const listening = /coordinator listening on (http\S+)/.exec(log.join(""))?.[1];
      if (listening) return listening;
      if (gone) throw new Error(`the coordinator exited before it listened (${JSON.stringify(gone)}):\n${log.join("").slice(-4000)}`);
      return undefined;
    },
    30_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${log.join("").slice(-4000)}`);
  });
  return { child, exited, log, url };
}

/** The admin API at `baseUrl`: `call` answers status and body; `ok` returns the body and throws on an error status. */
export function adminApi(baseUrl: string, token = TEST_TOKEN) {
  const call = async (method: string, path: string, body?: unknown) => {
    const init = {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    };
    let res: Response;
    try {
      res = await fetch(`${baseUrl}/api/v1/${path}`, init);
    } catch (err) {
      // A coordinator restarted on the same port leaves fetch's pooled keep-alive socket to the old
      // process behind; the first request on it is reset before it reaches the new one. Once more
      // on a fresh connection.
      if ((err as { cause?: { code?: string } }).cause?.code !== "ECONNRESET") throw err;
      res = await fetch(`${baseUrl}/api/v1/${path}`, init);
    }
    return { status: res.status, body: (await res.json()) as any };
  };
  return {
    call,
    async ok(method: string, path: string, body?: unknown) {
      const r = await call(method, path, body);
      if (r.status >= 400) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
  };
}

/**
 * SIGKILL every child still running, with its process group (afterAll, a case's cleanup). An exited
 * child is skipped: its pid, the id of the group it led, may belong to another process by now (pids
 * wrap at 32768 on a busy machine; another case's coordinator was killed so).
 */
export function killAll(children: Iterable<ChildProcess>): void {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    try {
      if (c.pid) process.kill(-c.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/**
 * Where a crashing coordinator SIGKILLs itself: right after step `n` of a `kind` workflow is
 * recorded (which must be named `step` when given, the crash matrix); with `orLater`, after the
 * first step it records at `n` or later.
 */
export interface CrashAt {
  kind: string;
  n: number;
  step?: string;
  orLater?: boolean;
}

export interface Slot {
  port: number;
  cfgFile: string;
}

/** Model ms between the schedule's passes (lost instances, health, scheduled tasks) of a slot's coordinator. */
export const SLOT_CHECK_INTERVAL_MS = 3000;

/** A coordinator config of its own (free port, data dir under `dir`), so crash cases can run side by side. */
export async function coordinatorSlot(
  env: Env,
  dir: string,
  id: string,
  timeScale: number,
  /** Further coordinator config (the regions it manages). */
  extra: Record<string, unknown> = {},
): Promise<Slot> {
  const port = await freePort();
  const cfgFile = join(dir, `coordinator-${id}.json`);
  writeFileSync(
    cfgFile,
    JSON.stringify(
      coordinatorConfig(env, join(dir, `coord-${id}`), timeScale, {
        listen: `127.0.0.1:${port}`,
        lostCheckIntervalMs: SLOT_CHECK_INTERVAL_MS,
        ...extra,
      }),
    ),
  );
  return { port, cfgFile };
}

/**
 * The command line up to the coordinator's flags: the built `spotkeep coordinator`, or with `crash`
 * the same command through test/coordinator/crashing-coordinator.ts (bundled like the CLI), which
 * SIGKILLs the process right after step `crash.n` of a `crash.kind` workflow is recorded.
 */
export function coordinatorCommand(crash?: CrashAt): string[] {
  if (!crash) return [join(ROOT, "bin", "spotkeep.js"), "coordinator"];
  return [crashingCoordinator(), crash.kind, `${crash.n}${crash.orLater ? "+" : ""}`, ...(crash.step === undefined ? [] : [crash.step])];
}

/**
 * `spotkeep coordinator --config` of a slot, armed to SIGKILL itself after step `crash.n` of a
 * `crash.kind` workflow. A free port can be taken by another process (an outgoing connection's
 * ephemeral port) before the coordinator binds it: while nothing depends on the slot's port yet
 * (`firstStart`), such a start moves the slot to another port and tries again.
 */
export async function startCoordinatorCli(
  slot: Slot,
  o: {
    ownerDir: string;
    children: Set<ChildProcess>;
    crash?: CrashAt;
    firstStart?: boolean;
    /** The store was edited by another tool while the coordinator was stopped (its write-ahead log folded in). */
    acceptRestored?: boolean;
  },
): Promise<CoordinatorChild> {
  for (let attempt = 1; ; attempt++) {
    try {
      // Every case has a store of its own beside one localcloud that holds the other cases'
      // spotkeep-tagged resources: the first start on the slot's new data directory accepts the
      // empty store for this start only (later starts check as usual).
      const args = [
        ...coordinatorCommand(o.crash),
        "--config",
        slot.cfgFile,
        ...(o.firstStart ? ["--accept-empty-store"] : []),
        ...(o.acceptRestored ? ["--accept-restored-store"] : []),
      ];
      return await spawnCoordinator(args, { ownerDir: o.ownerDir, children: o.children });
    } catch (err) {
      if (!o.firstStart || attempt >= 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
      const port = await freePort();
      const cfg = JSON.parse(readFileSync(slot.cfgFile, "utf8")) as { listen: string };
      cfg.listen = `127.0.0.1:${port}`;
      writeFileSync(slot.cfgFile, JSON.stringify(cfg));
      slot.port = port;
    }
  }
}

/**
 * Waits until the coordinator at `baseUrl` shows `name` in `state` (at `generation`, unless null);
 * fails at once when it shows `failed`, with the reason it gives.
 */
export async function reachState(baseUrl: string, name: string, state: string, generation: number | null, limit: number | Budget) {
  const api = adminApi(baseUrl);
  return until(
    `${name} to be ${state}${generation === null ? "" : ` at generation ${generation}`}`,
    async () => {
      const d = await api.ok("GET", `instances/${encodeURIComponent(name)}`);
      if (d.state === "failed") throw new Error(`${name} failed: ${d.stateReason}`);
      return d.state === state && (generation === null || d.generation === generation) ? d : null;
    },
    limit,
  );
}
