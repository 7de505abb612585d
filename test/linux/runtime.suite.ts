import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLinuxRuntime, type LinuxRuntime } from "../../localcloud/runtime/linux/index.js";
import type { RuntimeInstance } from "../../localcloud/runtime/types.js";
import { shTry } from "../../localcloud/runtime/linux/sh.js";
import { eventually, leftovers, NOTHING } from "./leftovers.js";

const I1 = "i-0a1b2c3d4e5f60001";
const I2 = "i-0a1b2c3d4e5f60002";
const I3 = "i-0a1b2c3d4e5f60003";
const IP1 = "172.31.0.10";
const IP2 = "172.31.16.20";

function instance(rt: LinuxRuntime, id: string, ip: string, subnetCidr: string, userData: string): RuntimeInstance {
  return {
    instanceId: id,
    dir: join(rt.stateDir, "instances", id),
    userData: Buffer.from(userData),
    privateIp: ip,
    subnetCidr,
    imdsEndpoint: `http://${rt.imdsBindAddress()}:1338`,
    env: { SPOTKEEP_TIME_SCALE: "0.1" },
  };
}

async function httpGet(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.text();
}

/** Registers the suite; `skip` is why it cannot run here (null: run). */
export function runtimeSuite(skip: string | null): void {
  describe.skipIf(skip !== null)("linux runtime (root: netns, loop devices, real fsfreeze)", () => {
    let stateDir = "";
    let rt: LinuxRuntime;
    const children: ChildProcess[] = [];

    beforeAll(async () => {
      stateDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-test-"));
      rt = createLinuxRuntime({ stateDir, graceMs: 500, lockWaitMs: 120_000 });
      await rt.init();
      for (const id of [I1, I2]) {
        await rt.createVolume({ volumeId: `vol-root${id.slice(-4)}`, sizeGiB: 1 });
      }
    }, 150_000);

    afterAll(async () => {
      for (const c of children)
        if (c.pid && c.exitCode === null)
          try {
            process.kill(-c.pid, "SIGKILL");
          } catch {
            /* gone */
          }
      if (rt) await rt.cleanup();
      expect(leftovers([stateDir])).toEqual(NOTHING);
      rmSync(stateDir, { recursive: true, force: true });
    });

    it("boots user-data as root in its namespace, with the root volume (blank, formatted ext4 at first boot) at SPOTKEEP_ROOT_DIR, reachable from the host at the private IP", async () => {
      const userData = [
        "#!/bin/bash",
        'env > "$SPOTKEEP_ROOT_DIR/env.txt"',
        'id -u > "$SPOTKEEP_ROOT_DIR/uid.txt"',
        "setsid sleep 1000 &", // a daemon that leaves the process group: shutdown must still find it
        // A tiny file server (python's http.server would hang on a reverse DNS lookup: instances have no DNS).
        `exec node -e 'const fs=require("fs"),p=require("path");require("http").createServer((q,s)=>{fs.readFile(p.join(process.env.SPOTKEEP_ROOT_DIR,q.url),(e,b)=>{s.statusCode=e?404:200;s.end(e?"":b)})}).listen(8080,"${IP1}")'`,
      ].join("\n");
      await rt.boot(instance(rt, I1, IP1, "172.31.0.0/20", userData), "vol-root0001");
      const marker = await eventually(() => httpGet(`http://${IP1}:8080/etc/spotkeep-first-boot`).catch(() => undefined));
      expect(marker.trim()).toBe(`instance=${I1} volume=vol-root0001`);
      const env = await httpGet(`http://${IP1}:8080/env.txt`);
      expect(env).toContain(`AWS_EC2_METADATA_SERVICE_ENDPOINT=http://172.31.0.1:1338`);
      expect(env).toContain(`SPOTKEEP_DEV_DIR=${rt.devDir(I1)}`);
      expect(env).toContain(`SPOTKEEP_ROOT_DIR=${rt.rootDir(I1)}`);
      expect(env).toContain("SPOTKEEP_TIME_SCALE=0.1");
      expect((await httpGet(`http://${IP1}:8080/uid.txt`)).trim()).toBe("0");
      expect(env).not.toContain("169.254.169.254");
      // The root volume is mounted only inside the instance.
      expect(existsSync(join(rt.rootDir(I1), "env.txt"))).toBe(false);
      expect(readlinkSync(join(rt.devDir(I1), "xvda"))).toMatch(/^\/dev\/loop\d+$/);
      expect((await rt.exec(I1, ["ip", "-4", "route", "show", "default"])).stdout).toContain("via 172.31.0.1");
    });

    it("exposes an attached blank volume under its Nitro by-id name; a filesystem mounted inside is invisible to the host", async () => {
      await rt.createVolume({ volumeId: "vol-data0001", sizeGiB: 100 }, undefined); // sparse: 100 GiB costs nothing
      await rt.attachVolume(I1, "vol-data0001", "/dev/sdf");
      await rt.attachVolume(I1, "vol-data0001", "/dev/sdf"); // idempotent
      const byId = join(rt.devDir(I1), "nvme-Amazon_Elastic_Block_Store_voldata0001");
      const loop = readlinkSync(byId);
      expect(loop).toMatch(/^\/dev\/loop\d+$/);
      expect(readlinkSync(join(rt.devDir(I1), "sdf"))).toBe(loop);
      // Blank, as CreateVolume gives: no filesystem yet.
      const probe = await rt.exec(I1, ["blkid", "-p", loop]);
      expect(probe.code).toBe(2);
      const data = join(rt.rootDir(I1), "var/lib/data");
      const r = await rt.exec(I1, [
        "sh",
        "-c",
        `mkfs.ext4 -q ${byId} && mkdir -p ${data} && mount ${byId} ${data} && echo hello > ${data}/a && sync`,
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const hostMounts = readFileSync("/proc/self/mounts", "utf8");
      expect(hostMounts).not.toContain(`${loop} `);
      // Only the namespace pins (ns/*.mnt) are host-visible; nothing under the instance's folders is.
      expect(hostMounts.split("\n").filter((l) => l.includes(join(stateDir, "instances")))).toEqual([]);
      expect((await rt.exec(I1, ["cat", `${data}/a`])).stdout).toBe("hello\n");
    });

    it("fsfreeze inside the instance blocks a writer until thaw, and a snapshot taken while frozen restores the content", async () => {
      const data = join(rt.rootDir(I1), "var/lib/data");
      expect((await rt.exec(I1, ["fsfreeze", "-f", data])).code).toBe(0);
      let writerExited = false;
      const writer = spawn("nsenter", [...rt.nsenterArgs(I1), "--", "sh", "-c", `echo during-freeze > ${data}/b`], {
        detached: true,
        stdio: "ignore",
      });
      children.push(writer);
      writer.on("exit", () => (writerExited = true));
      try {
        // Bounded check that the writer is stuck (no timing assertion: it must simply not have finished).
        await eventually(
          async () =>
            existsSync(`/proc/${writer.pid}`) && readFileSync(`/proc/${writer.pid}/stat`, "utf8").includes(") D ") ? true : undefined,
          50,
          50,
        ).catch(() => undefined);
        expect(writerExited).toBe(false);
        await rt.createSnapshot("snap-data0001", "vol-data0001");
      } finally {
        expect((await rt.exec(I1, ["fsfreeze", "-u", data])).code).toBe(0);
      }
      await eventually(async () => (writerExited ? true : undefined));
      expect((await rt.exec(I1, ["cat", `${data}/b`])).stdout).toBe("during-freeze\n");

      // Restore into a new volume on a second instance in another subnet.
      await rt.createVolume({ volumeId: "vol-restored01", sizeGiB: 100 }, "snap-data0001");
      await rt.boot(instance(rt, I2, IP2, "172.31.16.0/20", ""), "vol-root0002");
      await rt.attachVolume(I2, "vol-restored01", "/dev/sdg");
      const mnt = join(rt.rootDir(I2), "restored");
      const dev = join(rt.devDir(I2), "nvme-Amazon_Elastic_Block_Store_volrestored01");
      const r = await rt.exec(I2, ["sh", "-c", `mkdir -p ${mnt} && mount ${dev} ${mnt} && cat ${mnt}/a && ls ${mnt}`]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe("hello\na\nlost+found\n"); // b was written after the freeze: not in the snapshot
      // Mounts are private per instance: I1 does not see I2's, and I2 does not see I1's.
      expect((await rt.exec(I1, ["cat", "/proc/self/mounts"])).stdout).not.toContain(mnt);
      expect((await rt.exec(I2, ["cat", "/proc/self/mounts"])).stdout).not.toContain(join(rt.rootDir(I1), "var/lib/data"));
      // Instances in different subnets reach each other over the bridge.
      expect(
        (
          await rt.exec(I2, ["node", "-e", `fetch("http://${IP1}:8080/uid.txt").then((r) => r.text()).then((t) => console.log(t.trim()))`])
        ).stdout.trim(),
      ).toBe("0");
    });

    it("detaching a volume still mounted inside yanks it from the instance and frees the loop device", async () => {
      const loop = readlinkSync(join(rt.devDir(I1), "sdf"));
      await rt.detachVolume(I1, "vol-data0001", "/dev/sdf");
      await rt.detachVolume(I1, "vol-data0001", "/dev/sdf"); // idempotent
      expect(existsSync(join(rt.devDir(I1), "sdf"))).toBe(false);
      expect(existsSync(join(rt.devDir(I1), "nvme-Amazon_Elastic_Block_Store_voldata0001"))).toBe(false);
      expect((await rt.exec(I1, ["cat", "/proc/self/mounts"])).stdout).not.toContain(`${loop} `);
      expect(leftovers([join(stateDir, "volumes", "vol-data0001.img")]).loops).toEqual([]);
      // The content survives on the volume: reattach elsewhere and read it.
      await rt.attachVolume(I2, "vol-data0001", "/dev/sdf");
      const mnt = join(rt.rootDir(I2), "moved");
      const r = await rt.exec(I2, ["sh", "-c", `mkdir -p ${mnt} && mount ${join(rt.devDir(I2), "sdf")} ${mnt} && cat ${mnt}/a ${mnt}/b`]);
      expect(r.stdout).toBe("hello\nduring-freeze\n");
    });

    it("shutdown completes even when a filesystem inside is frozen with a writer blocked on it, and the volume can move on", async () => {
      const mnt = join(rt.rootDir(I2), "moved");
      expect((await rt.exec(I2, ["fsfreeze", "-f", mnt])).code).toBe(0);
      const stuck = spawn("nsenter", [...rt.nsenterArgs(I2), "--", "sh", "-c", `echo stuck > ${mnt}/c`], {
        detached: true,
        stdio: "ignore",
      });
      children.push(stuck);
      let exited = false;
      stuck.on("exit", () => (exited = true));
      await rt.shutdown(I2, 200);
      await eventually(async () => (exited ? true : undefined));
      expect(leftovers([stateDir]).netns).not.toContain(`sk-${I2}`);
      // The volume detaches cleanly (the frozen filesystem was thawed and released) and keeps its content.
      await rt.detachVolume(I2, "vol-data0001", "/dev/sdf");
      expect(leftovers([join(stateDir, "volumes", "vol-data0001.img")]).loops).toEqual([]);
      await rt.attachVolume(I1, "vol-data0001", "/dev/sdf");
      const r = await rt.exec(I1, [
        "sh",
        "-c",
        `m=${join(rt.rootDir(I1), "again")} && mkdir -p $m && mount ${join(rt.devDir(I1), "sdf")} $m && cat $m/a`,
      ]);
      expect(r.stdout).toBe("hello\n");
    });

    it("shutdown kills the user-data's whole tree (daemons too) and removes the instance's network; a reboot finds the root content", async () => {
      const pids = (await rt.exec(I1, ["sh", "-c", "ip netns identify $$ >/dev/null; echo"])).code; // enter works before shutdown
      expect(pids).toBe(0);
      await rt.shutdown(I1, 500);
      expect(leftovers([stateDir]).netns).not.toContain(`sk-${I1}`);
      await expect(httpGet(`http://${IP1}:8080/uid.txt`)).rejects.toThrow();
      // Every process that was in the instance is gone (the setsid'd sleep included).
      const ps = spawn("pgrep", ["-f", "sleep 1000"]);
      const out = await new Promise<string>((res) => {
        let s = "";
        ps.stdout.on("data", (d) => (s += d));
        ps.on("close", () => res(s));
      });
      expect(out.trim()).toBe("");
      await rt.shutdown(I1, 500); // idempotent
      // A new generation from a snapshot of the root (the AMI lineage) finds the first boot's content.
      await rt.createSnapshot("snap-rootimg001", "vol-root0001");
      await rt.createVolume({ volumeId: "vol-root0003", sizeGiB: 1 }, "snap-rootimg001");
      await rt.boot(instance(rt, I3, "172.31.32.30", "172.31.32.0/20", ""), "vol-root0003");
      expect((await rt.exec(I3, ["cat", join(rt.rootDir(I3), "etc/spotkeep-first-boot"), join(rt.rootDir(I3), "uid.txt")])).stdout).toBe(
        `instance=${I1} volume=vol-root0001\n0\n`,
      );
      // Boot again (stop/start): the root volume still holds what the first boot wrote.
      await rt.boot(instance(rt, I1, IP1, "172.31.0.0/20", ""), "vol-root0001");
      expect((await rt.exec(I1, ["cat", join(rt.rootDir(I1), "uid.txt")])).stdout.trim()).toBe("0");
    });

    it("shutdown thaws a frozen filesystem even when every process exits at once, so the volume detaches and re-attaches (regression: a frozen, unmounted ext4 pinned its loop device and every later attach failed)", async () => {
      await rt.createVolume({ volumeId: "vol-frozen0001", sizeGiB: 1 });
      await rt.attachVolume(I1, "vol-frozen0001", "/dev/sdg");
      const mnt = join(rt.rootDir(I1), "frozen");
      const dev = join(rt.devDir(I1), "sdg");
      const made = await rt.exec(I1, [
        "sh",
        "-c",
        `mkfs.ext4 -q ${dev} && mkdir -p ${mnt} && mount ${dev} ${mnt} && echo kept > ${mnt}/a && sync && fsfreeze -f ${mnt}`,
      ]);
      expect(made.code).toBe(0);
      // Nothing is blocked on the frozen filesystem: SIGTERM ends every process within the grace.
      await rt.shutdown(I1, 500);
      await rt.detachVolume(I1, "vol-frozen0001", "/dev/sdg");
      expect(leftovers([join(stateDir, "volumes", "vol-frozen0001.img")]).loops).toEqual([]);
      await rt.boot(instance(rt, I1, IP1, "172.31.0.0/20", ""), "vol-root0001");
      await rt.attachVolume(I1, "vol-frozen0001", "/dev/sdg");
      const r = await rt.exec(I1, [
        "sh",
        "-c",
        `mkdir -p ${mnt} && mount ${join(rt.devDir(I1), "sdg")} ${mnt} && cat ${mnt}/a && touch ${mnt}/writable`,
      ]);
      expect(r.stdout).toBe("kept\n");
      expect(r.code).toBe(0);
    });

    it("a filesystem left frozen and unmounted by a mount namespace that died no longer pins its volume: detach thaws it and frees the loop device", async () => {
      await rt.createVolume({ volumeId: "vol-orphan0001", sizeGiB: 1 });
      await rt.attachVolume(I1, "vol-orphan0001", "/dev/sdh");
      const dev = join(rt.devDir(I1), "sdh");
      // A throwaway namespace mounts it, writes, freezes, and dies: the frozen ext4 outlives every mount.
      const made = await rt.exec(I1, [
        "sh",
        "-c",
        `mkfs.ext4 -q ${dev} && d=$(mktemp -d) && unshare --mount --propagation private sh -c "mount ${dev} $d && echo kept > $d/a && sync && fsfreeze -f ` +
          `$d"; rc=$?; rmdir $d; exit $rc`,
      ]);
      expect(made.code).toBe(0);
      await rt.detachVolume(I1, "vol-orphan0001", "/dev/sdh");
      expect(leftovers([join(stateDir, "volumes", "vol-orphan0001.img")]).loops).toEqual([]);
      await rt.attachVolume(I1, "vol-orphan0001", "/dev/sdh");
      const mnt = join(rt.rootDir(I1), "orphan");
      const r = await rt.exec(I1, [
        "sh",
        "-c",
        `mkdir -p ${mnt} && mount ${join(rt.devDir(I1), "sdh")} ${mnt} && cat ${mnt}/a && touch ${mnt}/writable`,
      ]);
      expect(r.stdout).toBe("kept\n");
      expect(r.code).toBe(0);
    });

    it("refuses to start when a host address or route overlaps the VPC (checked in a scratch namespace standing in for the host)", async () => {
      const ns = "sk-ovltest";
      const ip = async (...a: string[]) => {
        const r = await shTry("ip", ["-n", ns, ...a]);
        if (r.code !== 0) throw new Error(`ip -n ${ns} ${a.join(" ")}: ${r.stderr}`);
      };
      const check = async () => {
        const code =
          `import("${join(import.meta.dirname, "../../localcloud/runtime/linux/network.ts")}").then((m) => ` +
          `m.checkNoOverlap(["172.31.0.0/16"])).then(() => console.log("NO-OVERLAP"), (e) => console.log(e.message))`;
        return (await shTry("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", "-e", code])).stdout.trim();
      };
      await shTry("ip", ["netns", "del", ns]);
      await shTry("ip", ["netns", "add", ns]);
      try {
        await ip("link", "add", "d0", "type", "bridge"); // dummy interfaces may not exist in this kernel
        await ip("addr", "add", "10.9.0.1/24", "dev", "d0");
        await ip("link", "set", "d0", "up");
        expect(await check()).toBe("NO-OVERLAP");
        await ip("route", "add", "172.31.64.0/18", "dev", "d0");
        expect(await check()).toMatch(/host route 172\.31\.64\.0\/18 dev d0 overlaps the VPC CIDR 172\.31\.0\.0\/16/);
        await ip("route", "del", "172.31.64.0/18", "dev", "d0");
        await ip("addr", "add", "172.31.5.1/24", "dev", "d0");
        expect(await check()).toMatch(/host address 172\.31\.5\.1\/24 on d0 overlaps the VPC CIDR 172\.31\.0\.0\/16/);
      } finally {
        await shTry("ip", ["netns", "del", ns]);
      }
    });

    it("refuses bad input with a specific error and changes nothing", async () => {
      await expect(rt.attachVolume(I1, "vol-missing01", "/dev/sdh")).rejects.toThrow(/attaching vol-missing01 to .* no such volume/);
      await expect(rt.attachVolume(I1, "vol-data0001", "../../etc")).rejects.toThrow(/not a plain device name/);
      await expect(rt.createVolume({ volumeId: "vol-x/../../y", sizeGiB: 1 })).rejects.toThrow(/volume id/);
      await expect(rt.createSnapshot("snap-nope0001", "vol-missing01")).rejects.toThrow(/no such volume/);
      await expect(rt.boot(instance(rt, "i-0bad0000000000001", "10.0.0.5", "172.31.0.0/20", ""), "vol-root0001")).rejects.toThrow(
        /not inside subnet/,
      );
      await rt.deleteVolume("vol-missing01"); // already gone: no-op
      await rt.deleteSnapshot("snap-nope0001");
    });
  });
}
