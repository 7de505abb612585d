/**
 * TCP ports for test servers whose port must be known before they start: a coordinator's config
 * names its listen address (and an HA pair's standby names the leader's URL), PostgreSQL takes `-p`,
 * an application's health endpoint is written into its user-data.
 *
 * A port from listen(0) comes from the kernel's ephemeral range (net.ipv4.ip_local_port_range,
 * 32768-60999 by default), the range every outgoing connection's local port comes from. Between
 * such a probe closing and the server binding, a connection of any parallel test can take it and
 * the server fails with EADDRINUSE. The ports here come from below that range, where no outgoing
 * connection and no listen(0) lands, and each is reserved for this process by a file in the temp
 * directory so two test processes never hand out the same one. A reservation whose process is gone
 * is taken over, and swept at the first call of each process (a worker killed by the test runner
 * never runs its exit handlers); this process's reservations are removed when it exits.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const RESERVATIONS = join(tmpdir(), `spotkeep-test-ports-${process.getuid?.() ?? "u"}`);
/** Below this, ports are left to well-known and registered services. */
const LOWEST = 20_000;
const held = new Set<string>();
let cleanupInstalled = false;

/** The lowest port of the kernel's ephemeral range (32768 when it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Takes the reservation file of `port` for this process; false when a live process holds it. */
export function reserve(port: number): boolean {
  const file = join(RESERVATIONS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      held.add(file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let pid = NaN;
      try {
        pid = Number(readFileSync(file, "utf8").trim());
      } catch {
        continue; // removed meanwhile: try again
      }
      // Empty: its owner is between creating and writing it.
      if (!Number.isInteger(pid) || pid <= 0 || alive(pid)) return false;
      try {
        unlinkSync(file);
      } catch {
        // another process took it over first
      }
    }
  }
  return false;
}

/** Removes the reservations whose process is gone. */
function sweep(): void {
  for (const name of readdirSync(RESERVATIONS)) {
    const file = join(RESERVATIONS, name);
    try {
      const pid = Number(readFileSync(file, "utf8").trim());
      if (Number.isInteger(pid) && pid > 0 && !alive(pid)) unlinkSync(file);
    } catch {
      // removed meanwhile
    }
  }
}

function release(file: string): void {
  held.delete(file);
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

function listenZero(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/**
 * A port on 127.0.0.1 that nothing listens on, outside the ephemeral range and reserved for this
 * process until it exits. Where the ephemeral range starts too low to leave room below it, a
 * listen(0) port (which can race as described above).
 */
export async function freePort(): Promise<number> {
  const high = ephemeralLow();
  if (high - LOWEST < 1000) return listenZero();
  mkdirSync(RESERVATIONS, { recursive: true });
  if (!cleanupInstalled) {
    cleanupInstalled = true;
    sweep();
    process.once("exit", () => {
      for (const f of [...held]) release(f);
    });
  }
  const span = high - LOWEST;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < 200; i++) {
    const port = LOWEST + ((start + i * 7919) % span);
    if (!reserve(port)) continue;
    if (await bindable(port)) return port;
    release(join(RESERVATIONS, String(port)));
  }
  throw new Error(`no free port between ${LOWEST} and ${high - 1} after 200 tries (reservations in ${RESERVATIONS})`);
}
