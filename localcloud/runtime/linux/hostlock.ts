import { mkdirSync, openSync, closeSync, writeSync, readFileSync, rmSync, existsSync, writeFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { delay } from "./sh.js";

/**
 * Host-wide bookkeeping of the linux runtime, in a run dir (default /run/spotkeep-linux):
 *  - `owner.json`: the ONE live runtime on this host. Only one can exist because every runtime
 *    gives the same VPC addresses (172.31.x.x) to its bridge; holding the lock also makes every
 *    `sk-*` netns, `skv*` veth and `skbr*` bridge on the host ours, so cleanup may sweep them all.
 *    The lock is stale when its pid is gone (or was reused: the process start time differs).
 *  - `state-dirs`: every state dir a runtime ever used, so the next start can find loop devices
 *    and mounts a SIGKILLed run left behind (matched by path prefix). An entry is dropped once
 *    that dir has been cleaned.
 */
export const DEFAULT_RUN_DIR = "/run/spotkeep-linux";

interface Owner {
  pid: number;
  startTime: string;
  token: string;
  stateDir: string;
  since: string;
}

function procStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22 (starttime); the comm field (2) may contain spaces, so split after its ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? null;
  } catch {
    return null;
  }
}

function ownerAlive(o: Owner): boolean {
  return procStartTime(o.pid) === o.startTime;
}

export class HostLock {
  private readonly token = randomBytes(8).toString("hex");
  private held = false;

  constructor(
    readonly runDir: string,
    private readonly stateDir: string,
  ) {}

  private get ownerFile(): string {
    return join(this.runDir, "owner.json");
  }

  private readOwner(): Owner | null {
    try {
      return JSON.parse(readFileSync(this.ownerFile, "utf8")) as Owner;
    } catch {
      return null;
    }
  }

  /** Takes the host lock, waiting up to `waitMs` for a live owner to release it. */
  async acquire(waitMs: number): Promise<void> {
    if (this.held) return;
    mkdirSync(this.runDir, { recursive: true, mode: 0o700 });
    const deadline = Date.now() + waitMs;
    for (;;) {
      const me: Owner = {
        pid: process.pid,
        startTime: procStartTime(process.pid) ?? "?",
        token: this.token,
        stateDir: this.stateDir,
        since: new Date().toISOString(),
      };
      try {
        const fd = openSync(this.ownerFile, "wx", 0o600);
        try {
          writeSync(fd, JSON.stringify(me));
        } finally {
          closeSync(fd);
        }
        this.held = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST")
          throw new Error(`taking the linux runtime host lock ${this.ownerFile}: ${String(err)}`, { cause: err });
      }
      const owner = this.readOwner();
      // A runtime reopened in the same process over the same state dir is a restarted localcloud
      // (the earlier object was abandoned, as after a crash): it takes over.
      const reopened = owner !== null && owner.pid === process.pid && owner.stateDir === this.stateDir;
      if (owner === null || !ownerAlive(owner) || reopened) {
        // Stale (crashed owner) or half-written: remove and retry. Two racers may both remove it;
        // only one wins the O_EXCL create above.
        rmSync(this.ownerFile, { force: true });
        continue;
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `starting the linux runtime: another spotkeep linux runtime is active on this host (pid ${owner.pid}, ` +
            `state dir ${owner.stateDir}, since ${owner.since}); only one may run at a time because they share the VPC addresses`,
        );
      }
      await delay(200);
    }
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    const owner = this.readOwner();
    if (owner?.token === this.token) rmSync(this.ownerFile, { force: true });
    try {
      if (readdirSync(this.runDir).length === 0) rmSync(this.runDir, { recursive: true, force: true });
    } catch {
      /* already gone */
    }
  }

  get isHeld(): boolean {
    return this.held;
  }

  private get registryFile(): string {
    return join(this.runDir, "state-dirs");
  }

  registeredStateDirs(): string[] {
    try {
      return [
        ...new Set(
          readFileSync(this.registryFile, "utf8")
            .split("\n")
            .filter((l) => l.startsWith("/")),
        ),
      ];
    } catch {
      return [];
    }
  }

  register(stateDir: string): void {
    const dirs = this.registeredStateDirs();
    const abs = resolve(stateDir);
    if (!dirs.includes(abs)) writeFileSync(this.registryFile, `${[...dirs, abs].join("\n")}\n`, { mode: 0o600 });
  }

  unregister(stateDir: string): void {
    const abs = resolve(stateDir);
    const rest = this.registeredStateDirs().filter((d) => d !== abs);
    if (rest.length) writeFileSync(this.registryFile, `${rest.join("\n")}\n`, { mode: 0o600 });
    else if (existsSync(this.registryFile)) rmSync(this.registryFile, { force: true });
  }
}
