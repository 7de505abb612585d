import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLinuxRuntime, type LinuxRuntime } from "../../localcloud/runtime/linux/index.js";
import { shTry } from "../../localcloud/runtime/linux/sh.js";
import { eventually, leftovers, NOTHING } from "./leftovers.js";

/** Debian's PostgreSQL server binaries (`apt-get install postgresql`), newest major first. */
function postgresBin(): string | null {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return null;
  const majors = readdirSync(base)
    .filter((d) => existsSync(join(base, d, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(base, majors[0], "bin") : null;
}

const bin = postgresBin();

/** Why the PostgreSQL suite cannot run here (beyond the runtime itself), or null. */
export function postgresUnavailable(): string | null {
  return bin ? null : "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)";
}

const ID = "i-0f0e0d0c0b0a00001";
const IP = "172.31.0.40";
const DATA_VOL = "vol-pgdata0001";

/** User-data: format the data volume if blank, mount it, initdb when empty, start PostgreSQL (fsync and synchronous_commit on) on the private IP. */
const userData = `#!/bin/bash
set -eu
DEV="$SPOTKEEP_DEV_DIR/nvme-Amazon_Elastic_Block_Store_${DATA_VOL.replace("-", "")}"
MNT="$SPOTKEEP_ROOT_DIR/var/lib/postgresql"
SOCK="$SPOTKEEP_ROOT_DIR/run/postgresql"
blkid -p "$DEV" >/dev/null 2>&1 || mkfs.ext4 -q "$DEV"
mkdir -p "$MNT" "$SOCK"
mount "$DEV" "$MNT"
chown postgres:postgres "$MNT" "$SOCK"
if [ ! -f "$MNT/data/PG_VERSION" ]; then
  runuser -u postgres -- ${bin}/initdb -D "$MNT/data" -A trust -U postgres >/dev/null
  echo "host all all 172.31.0.0/16 trust" >> "$MNT/data/pg_hba.conf"
fi
runuser -u postgres -- ${bin}/pg_ctl -D "$MNT/data" -l "$SOCK/server.log" -w -t 60 \\
  -o "-c listen_addresses=${IP} -c unix_socket_directories=$SOCK -c fsync=on -c synchronous_commit=on" start
echo PG-READY
`;

function psql(sql: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return shTry(
    join(bin ?? "", "psql"),
    ["-h", IP, "-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
    { timeoutMs: 30_000 },
  );
}

/** Registers the suite; `skip` is why it cannot run here (null: run). */
export function postgresFreezeSuite(skip: string | null): void {
  describe.skipIf(skip !== null)("PostgreSQL inside a linux-runtime instance", () => {
    let stateDir = "";
    let rt: LinuxRuntime;
    let writer: ChildProcess | undefined;

    beforeAll(async () => {
      stateDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-pg-"));
      rt = createLinuxRuntime({ stateDir, graceMs: 2000, lockWaitMs: 120_000 });
      await rt.init();
      await rt.createVolume({ volumeId: "vol-pgroot0001", sizeGiB: 1 });
      await rt.createVolume({ volumeId: DATA_VOL, sizeGiB: 10 });
      await rt.attachVolume(ID, DATA_VOL, "/dev/sdf");
      await rt.boot(
        {
          instanceId: ID,
          dir: "",
          userData: Buffer.from(userData),
          privateIp: IP,
          subnetCidr: "172.31.0.0/20",
          imdsEndpoint: `http://${rt.imdsBindAddress()}:1`,
          env: {},
        },
        "vol-pgroot0001",
      );
      await eventually(async () => (readFileSync(rt.logPath(ID), "utf8").includes("PG-READY") ? true : undefined), 600, 100).catch((e) => {
        throw new Error(`PostgreSQL did not start: ${String(e)}\n${readFileSync(rt.logPath(ID), "utf8")}`);
      });
    }, 120_000);

    afterAll(async () => {
      if (writer?.pid && writer.exitCode === null)
        try {
          process.kill(writer.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      if (rt) await rt.cleanup();
      expect(leftovers([stateDir])).toEqual(NOTHING);
      rmSync(stateDir, { recursive: true, force: true });
    }, 120_000);

    it("serves on the instance's private IP with fsync and synchronous_commit on", async () => {
      const r = await psql("CREATE TABLE acked (n int primary key); INSERT INTO acked VALUES (1); SHOW fsync; SHOW synchronous_commit;");
      expect(r.stderr).toBe("");
      expect(r.stdout.trim().split("\n").slice(-2)).toEqual(["on", "on"]);
    });

    it("a COMMIT blocks while the data filesystem is frozen and completes after thaw", async () => {
      const mnt = join(rt.rootDir(ID), "var/lib/postgresql");
      await psql("CHECKPOINT");
      expect((await rt.exec(ID, ["fsfreeze", "-f", mnt])).code).toBe(0);
      let done: { code: number | null } | undefined;
      try {
        writer = spawn(
          join(bin!, "psql"),
          ["-h", IP, "-U", "postgres", "-d", "postgres", "-X", "-v", "ON_ERROR_STOP=1", "-c", "INSERT INTO acked VALUES (2)"],
          { stdio: "ignore" },
        );
        writer.on("exit", (code) => (done = { code }));
        // Bounded observation: the session's backend must be waiting, and the client not finished.
        const waiting = await eventually(
          async () => {
            // The client's backend process, in uninterruptible sleep on the frozen filesystem.
            const r = await rt.exec(ID, ["ps", "-eo", "stat=,args="]);
            return r.stdout.split("\n").some((l) => /^D/.test(l.trim()) && l.includes("postgres: postgres postgres")) ? true : undefined;
          },
          100,
          50,
        ).catch(() => false);
        expect(done).toBeUndefined();
        expect(waiting).toBe(true);
      } finally {
        expect((await rt.exec(ID, ["fsfreeze", "-u", mnt])).code).toBe(0);
      }
      const exit = await eventually(async () => done, 300, 50);
      expect(exit.code).toBe(0);
      expect((await psql("SELECT count(*) FROM acked")).stdout.trim()).toBe("2");
    });

    it("the acknowledged rows survive a shutdown and a boot of a new instance on the same volumes", async () => {
      await rt.shutdown(ID, 5000);
      await rt.detachVolume(ID, DATA_VOL, "/dev/sdf");
      await rt.attachVolume(ID, DATA_VOL, "/dev/sdf");
      await rt.boot(
        {
          instanceId: ID,
          dir: "",
          userData: Buffer.from(userData),
          privateIp: IP,
          subnetCidr: "172.31.0.0/20",
          imdsEndpoint: `http://${rt.imdsBindAddress()}:1`,
          env: {},
        },
        "vol-pgroot0001",
      );
      await eventually(
        async () => ((readFileSync(rt.logPath(ID), "utf8").match(/PG-READY/g) ?? []).length >= 2 ? true : undefined),
        600,
        100,
      );
      expect((await psql("SELECT string_agg(n::text, ',' ORDER BY n) FROM acked")).stdout.trim()).toBe("1,2");
    });
  });
}
