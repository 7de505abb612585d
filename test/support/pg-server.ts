/**
 * A throwaway PostgreSQL server for tests and benchmarks: Debian's server binaries, a cluster in a
 * temporary directory, listening on 127.0.0.1 at a free port (and a Unix socket in that directory).
 * As root the cluster belongs to the `postgres` system user (initdb refuses to run as root); as any
 * other user it runs as that user. `stop()` stops the server and removes the directory; a cluster a
 * killed test left behind is found by its directory prefix and removed by the next `startPostgres`.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";

const PREFIX = "spotkeep-pgtest-";

/** Debian's PostgreSQL server binaries, newest major first, or null. */
export function postgresServerBin(): string | null {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return null;
  const majors = readdirSync(base)
    .filter((d) => existsSync(join(base, d, "bin", "initdb")) && existsSync(join(base, d, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(base, majors[0], "bin") : null;
}

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

function postgresUid(): { uid: number; gid: number } | null {
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null;
  }
}

/** Why a throwaway server cannot start here, or null when it can. */
export function postgresUnavailable(): string | null {
  if (!postgresServerBin()) {
    return "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)";
  }
  if (isRoot() && !postgresUid()) return "running as root and there is no postgres system user to own the cluster";
  return null;
}

function run(bin: string, args: string[]): void {
  const argv = isRoot() ? ["runuser", "-u", "postgres", "--", bin, ...args] : [bin, ...args];
  const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) {
    throw new Error(`${args[0] === "-D" ? bin : `${bin} ${args[0]}`} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`);
  }
}

/** Stops and removes clusters an earlier run left behind (a test killed before its stop()). */
function sweepLeftovers(bin: string): void {
  for (const d of readdirSync(tmpdir())) {
    if (!d.startsWith(PREFIX)) continue;
    const dir = join(tmpdir(), d);
    const pidFile = join(dir, "data", "postmaster.pid");
    if (existsSync(pidFile)) {
      // A live server of another test in this run keeps its directory; only dead owners are swept.
      const owner = Number(readFileSync(join(dir, "owner"), "utf8").trim() || "0");
      if (owner && processAlive(owner)) continue;
      try {
        run(join(bin, "pg_ctl"), ["-D", join(dir, "data"), "-m", "immediate", "-w", "stop"]);
      } catch {
        // Already stopped: the directory is removed below either way.
      }
    } else if (existsSync(join(dir, "owner"))) {
      const owner = Number(readFileSync(join(dir, "owner"), "utf8").trim() || "0");
      if (owner && processAlive(owner)) continue;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  dir: string;
  /** A new empty database on this server; its URL. */
  createDatabase(name: string): string;
  /** Stop the server (connections are cut) and keep its data; `start()` brings it back on the same port. */
  halt(): void;
  start(): void;
  stop(): void;
}

/** Starts a throwaway server; throws with the reason when postgresUnavailable() would name one. */
export async function startPostgres(): Promise<PostgresServer> {
  const why = postgresUnavailable();
  if (why) throw new Error(why);
  const bin = postgresServerBin() as string;
  sweepLeftovers(bin);
  const dir = mkdtempSync(join(tmpdir(), PREFIX));
  writeFileSync(join(dir, "owner"), `${process.pid}\n`);
  const owner = isRoot() ? postgresUid() : null;
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const data = join(dir, "data");
  const port = await freePort();
  const opts = [
    `-c listen_addresses=127.0.0.1`,
    `-c port=${port}`,
    `-c unix_socket_directories=${dir}`,
    // A test database: its durability is not under test; WAL flushes only slow the suite down.
    `-c fsync=off`,
    `-c max_connections=200`,
  ].join(" ");
  try {
    run(join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
    run(join(bin, "pg_ctl"), ["-D", data, "-l", join(dir, "server.log"), "-w", "-t", "60", "-o", opts, "start"]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url,
    port,
    dir,
    createDatabase(name: string): string {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name ${JSON.stringify(name)}`);
      run(join(bin, "psql"), ["-h", dir, "-p", String(port), "-U", "postgres", "-X", "-q", "-c", `CREATE DATABASE ${name}`]);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    halt(): void {
      run(join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]);
    },
    start(): void {
      run(join(bin, "pg_ctl"), ["-D", data, "-l", join(dir, "server.log"), "-w", "-t", "60", "-o", opts, "start"]);
    },
    stop(): void {
      try {
        run(join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
