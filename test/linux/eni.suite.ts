import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLinuxRuntime, type LinuxRuntime } from "../../localcloud/runtime/linux/index.js";
import type { RuntimeEni } from "../../localcloud/runtime/types.js";
import { silentLogger } from "../../agent/log.js";
import { configureSecondaryEni, ipBackend, releaseSecondaryEni } from "../../agent/network/secondary.js";
import { realClock } from "../../shared/clock.js";
import { eventually, leftovers, NOTHING } from "./leftovers.js";

const A = "i-0a1b2c3d4e5f6e001";
const B = "i-0a1b2c3d4e5f6e002";
const ENI: RuntimeEni = {
  eniId: "eni-0a1b2c3d4e5f6e0a1",
  mac: "0e:5a:00:00:0e:01",
  deviceIndex: 1,
  privateIp: "172.31.0.77",
  subnetCidr: "172.31.0.0/20",
};

async function whoAnswers(ip: string): Promise<string | undefined> {
  const res = await fetch(`http://${ip}:8080/`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
  return res?.ok ? res.text() : undefined;
}

/** Registers the suite; `skip` is why it cannot run here (null: run). */
export function eniSuite(skip: string | null): void {
  describe.skipIf(skip !== null)("linux runtime: a secondary ENI moves between instances", () => {
    let stateDir = "";
    let rt: LinuxRuntime;

    beforeAll(async () => {
      stateDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-eni-"));
      rt = createLinuxRuntime({ stateDir, graceMs: 500, lockWaitMs: 120_000 });
      await rt.init();
      for (const [id, ip] of [
        [A, "172.31.0.71"],
        [B, "172.31.0.72"],
      ] as const) {
        const root = `vol-root${id.slice(-4)}`;
        await rt.createVolume({ volumeId: root, sizeGiB: 1 });
        // Each instance answers its own id on every address it has (0.0.0.0), so the answer says who holds the IP.
        const userData = `#!/bin/bash\nexec node -e 'require("http").createServer((q,s)=>s.end("${id}")).listen(8080,"0.0.0.0")'\n`;
        await rt.boot(
          {
            instanceId: id,
            dir: join(stateDir, "instances", id),
            userData: Buffer.from(userData),
            privateIp: ip,
            subnetCidr: "172.31.0.0/20",
            imdsEndpoint: `http://${rt.imdsBindAddress()}:1338`,
            env: {},
          },
          root,
        );
      }
    }, 150_000);

    afterAll(async () => {
      if (rt) await rt.cleanup();
      expect(leftovers([stateDir])).toEqual(NOTHING);
      rmSync(stateDir, { recursive: true, force: true });
    });

    /** The agent's job (agent/network/secondary.ts), its `ip` commands run inside the instance. */
    const agentDeps = (id: string) => ({
      imds: {
        networkInterfaces: async () => [
          { mac: ENI.mac, interfaceId: ENI.eniId, deviceNumber: 1, privateIps: [ENI.privateIp], subnetCidr: ENI.subnetCidr },
        ],
      },
      backend: ipBackend((argv) => rt.exec(id, argv)),
      clock: realClock,
      log: silentLogger,
      scale: (ms: number) => ms / 100,
    });
    const target = { eniId: ENI.eniId, privateIp: ENI.privateIp };
    const configure = async (id: string) => {
      const { setup } = await configureSecondaryEni(target, 10_000, agentDeps(id));
      expect(setup).toMatchObject({ link: "eth1", table: 10001, gateway: "172.31.0.1" });
      const rules = await rt.exec(id, ["ip", "-4", "rule", "show"]);
      expect(rules.stdout).toMatch(/from 172\.31\.0\.77 lookup 10001/);
      const main = await rt.exec(id, ["ip", "-4", "route", "show", "table", "main"]);
      expect(main.stdout).not.toContain("eth1"); // noprefixroute: the main table keeps using eth0
    };
    const eth1 = async (id: string) => {
      const r = await rt.exec(id, ["ip", "-j", "link", "show", "eth1"]);
      return r.code === 0 ? (JSON.parse(r.stdout) as Array<{ address: string }>)[0]!.address : null;
    };

    it("appears as eth1 with the ENI's MAC, unconfigured; the host reaches the stable IP on whichever instance holds it", async () => {
      await rt.attachEni(A, ENI);
      await rt.attachEni(A, ENI); // idempotent
      expect(await eth1(A)).toBe(ENI.mac);
      expect(await eth1(B)).toBeNull();
      expect(await whoAnswers(ENI.privateIp)).toBeUndefined(); // no address until the OS adds it
      await configure(A);
      expect(await eventually(() => whoAnswers(ENI.privateIp))).toBe(A);

      // The old instance releases it before the detach: the address leaves at once.
      await releaseSecondaryEni(target, agentDeps(A));
      expect((await rt.exec(A, ["ip", "-4", "addr", "show", "dev", "eth1"])).stdout).not.toContain(ENI.privateIp);
      expect((await rt.exec(A, ["ip", "-4", "rule", "show"])).stdout).not.toContain("lookup 10001");
      expect(await whoAnswers(ENI.privateIp)).toBeUndefined();
      await rt.detachEni(A, ENI);
      await rt.detachEni(A, ENI); // already gone: a no-op
      expect(await eth1(A)).toBeNull();
      await rt.attachEni(B, ENI);
      expect(await eth1(B)).toBe(ENI.mac);
      await configure(B);
      expect(await eventually(() => whoAnswers(ENI.privateIp).then((w) => (w === B ? w : undefined)))).toBe(B);
      // The primary addresses stay where they were.
      expect(await eventually(() => whoAnswers("172.31.0.71"))).toBe(A);
    });

    it("refuses a malformed ENI before touching the host", async () => {
      await expect(rt.attachEni(A, { ...ENI, deviceIndex: 0 })).rejects.toThrow(/device index 0/);
      await expect(rt.attachEni(A, { ...ENI, mac: "nope" })).rejects.toThrow(/invalid MAC/);
      await expect(rt.attachEni(A, { ...ENI, eniId: "eni-../x" })).rejects.toThrow(/not a valid/);
    });
  });
}
