import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FakeClock } from "../../shared/clock.js";
import type { ImdsEni } from "../imds/client.js";
import { silentLogger } from "../log.js";
import {
  type CommandResult,
  configureSecondaryEni,
  forgetStableEni,
  eniSetup,
  folderBackend,
  ipBackend,
  type LinkBackend,
  releaseSecondaryEni,
  rememberedStableEni,
  rememberStableEni,
  STABLE_ENI_FILE,
  type SecondaryEniDeps,
} from "./secondary.js";

const TARGET = { eniId: "eni-0a0b0c0d0e0f01234", privateIp: "172.31.0.77" };
const PRIMARY: ImdsEni = { mac: "0e:00:00:00:00:01", interfaceId: "eni-00000000000000001", deviceNumber: 0, privateIps: ["172.31.0.10"] };
const STABLE: ImdsEni = {
  mac: "0e:5a:00:00:0e:01",
  interfaceId: TARGET.eniId,
  deviceNumber: 1,
  privateIps: [TARGET.privateIp],
  subnetCidr: "172.31.0.0/20",
};

/** A fake `ip`: links by MAC, addresses, routes per table and rules, as the commands change them. */
function fakeIp(links: Record<string, string>) {
  const calls: string[] = [];
  const state = {
    up: new Set<string>(),
    addrs: new Set<string>(),
    routes: new Map<string, Set<string>>(),
    rules: [] as Array<{ src: string; table: string }>,
  };
  const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
  const run = async (argv: readonly string[]): Promise<CommandResult> => {
    const cmd = argv.join(" ");
    calls.push(cmd);
    const a = [...argv];
    if (cmd === "ip -j link show") return ok(JSON.stringify(Object.entries(links).map(([ifname, address]) => ({ ifname, address }))));
    if (a[1] === "link" && a[2] === "set") {
      if (a[5] === "up") state.up.add(a[4]!);
      else state.up.delete(a[4]!);
      return ok();
    }
    if (a[2] === "addr" && a[3] === "replace") {
      state.addrs.add(`${a[4]} ${a[6]}`);
      return ok();
    }
    if (a[2] === "addr" && a[3] === "del")
      return state.addrs.delete(`${a[4]} ${a[6]}`)
        ? ok()
        : { code: 2, stdout: "", stderr: "RTNETLINK answers: Cannot assign requested address" };
    if (a[2] === "route" && a[3] === "replace") {
      const table = a[a.length - 1]!;
      const set = state.routes.get(table) ?? new Set();
      set.add(a.slice(4, a.indexOf("table")).join(" ").split(" dev")[0]!);
      state.routes.set(table, set);
      return ok();
    }
    if (a[2] === "route" && a[3] === "flush") {
      state.routes.delete(a[5]!);
      return ok();
    }
    if (a[3] === "rule" && a[4] === "show")
      return ok(
        JSON.stringify(
          state.rules.filter((r) => r.table === a[6]).map((r) => ({ priority: Number(r.table), src: r.src, srclen: 32, table: r.table })),
        ),
      );
    if (a[2] === "rule" && a[3] === "add") {
      state.rules.push({ src: a[5]!.split("/")[0]!, table: a[7]! });
      return ok();
    }
    if (a[2] === "rule" && a[3] === "del") {
      const i = state.rules.findIndex((r) => r.src === a[5]!.split("/")[0] && r.table === a[7]);
      if (i < 0) return { code: 2, stdout: "", stderr: "RTNETLINK answers: No such file or directory" };
      state.rules.splice(i, 1);
      return ok();
    }
    throw new Error(`unexpected command: ${cmd}`);
  };
  return { run, calls, state };
}

function deps(imdsList: () => ImdsEni[], backend: LinkBackend, clock: FakeClock): SecondaryEniDeps {
  return { imds: { networkInterfaces: async () => imdsList() }, backend, clock, log: silentLogger, scale: (ms) => ms };
}

/** Drives a fake clock until `p` settles. */
async function drive<T>(clock: FakeClock, p: Promise<T>): Promise<T> {
  let done = false;
  const out = p.finally(() => (done = true));
  out.catch(() => {}); // the caller awaits `out` (and sees the rejection) once the loop ends
  for (let i = 0; i < 1000 && !done; i++) await clock.advance(100);
  return out;
}

describe("eniSetup", () => {
  it("derives prefix, subnet, gateway and table from IMDS", () => {
    expect(eniSetup(TARGET, STABLE, "eth1")).toEqual({
      eniId: TARGET.eniId,
      mac: STABLE.mac,
      link: "eth1",
      address: "172.31.0.77",
      prefix: 20,
      subnet: "172.31.0.0/20",
      gateway: "172.31.0.1",
      table: 10001,
    });
  });
  it("refuses the primary ENI, a different address, a missing or foreign subnet", () => {
    expect(() => eniSetup(TARGET, { ...STABLE, deviceNumber: 0 }, "eth0")).toThrow(/primary ENI/);
    expect(() => eniSetup(TARGET, { ...STABLE, privateIps: ["172.31.0.78"] }, "eth1")).toThrow(/lists 172.31.0.78, not 172.31.0.77/);
    expect(() => eniSetup(TARGET, { ...STABLE, subnetCidr: undefined }, "eth1")).toThrow(/no subnet-ipv4-cidr-block/);
    expect(() => eniSetup(TARGET, { ...STABLE, subnetCidr: "10.0.0.0/16" }, "eth1")).toThrow(/not inside its subnet/);
  });
});

describe("Linux: ip through the runner", () => {
  it("waits for the ENI in IMDS and its link, configures address, table and rule once, and releases all of it", async () => {
    const clock = new FakeClock();
    const links: Record<string, string> = { lo: "00:00:00:00:00:00", eth0: PRIMARY.mac };
    const ip = fakeIp(links);
    let attached = false;
    const d = deps(() => (attached ? [PRIMARY, STABLE] : [PRIMARY]), ipBackend(ip.run), clock);
    const pending = configureSecondaryEni(TARGET, 60_000, d);
    await clock.advance(1_000);
    attached = true; // EC2 reports it before the OS shows the link
    await clock.advance(1_000);
    links.eth1 = STABLE.mac;
    const { setup, steps } = await drive(clock, pending);
    expect(setup.link).toBe("eth1");
    expect(steps.map((s) => s.name)).toEqual([`eni:${TARGET.eniId}`, "eni-configure:eth1"]);
    expect(ip.state.up.has("eth1")).toBe(true);
    expect([...ip.state.addrs]).toEqual(["172.31.0.77/20 eth1"]);
    expect(ip.calls).toContain("ip -4 addr replace 172.31.0.77/20 dev eth1 noprefixroute");
    expect([...ip.state.routes.get("10001")!]).toEqual(["172.31.0.0/20", "default via 172.31.0.1"]);
    expect(ip.state.rules).toEqual([{ src: "172.31.0.77", table: "10001" }]);

    // Idempotent: a second configure adds no second rule.
    await drive(clock, configureSecondaryEni(TARGET, 60_000, d));
    expect(ip.state.rules).toHaveLength(1);

    const released = await releaseSecondaryEni(TARGET, d);
    expect(released.link).toBe("eth1");
    expect(ip.state).toMatchObject({ rules: [], addrs: new Set() });
    expect(ip.state.routes.has("10001")).toBe(false);
    expect(ip.state.up.has("eth1")).toBe(false);
    // And again: nothing left, nothing fails.
    await releaseSecondaryEni(TARGET, d);
  });

  it("times out naming what it waited for; a failing command is reported with its stderr", async () => {
    const clock = new FakeClock();
    const ip = fakeIp({ eth0: PRIMARY.mac });
    const d = deps(() => [PRIMARY, STABLE], ipBackend(ip.run), clock);
    await expect(drive(clock, configureSecondaryEni(TARGET, 5_000, d))).rejects.toThrow(
      /the link with MAC 0e:5a:00:00:0e:01 .*not there in time/,
    );
    const none = deps(() => [PRIMARY], ipBackend(ip.run), clock);
    await expect(drive(clock, configureSecondaryEni(TARGET, 5_000, none))).rejects.toThrow(
      /eni-0a0b0c0d0e0f01234 in IMDS .*not there in time/,
    );
    const failing = ipBackend(async (argv) =>
      argv.includes("-j")
        ? { code: 0, stdout: JSON.stringify([{ ifname: "eth1", address: STABLE.mac }]), stderr: "" }
        : { code: 2, stdout: "", stderr: "RTNETLINK answers: Operation not permitted" },
    );
    await expect(
      drive(
        clock,
        configureSecondaryEni(
          TARGET,
          5_000,
          deps(() => [STABLE], failing, clock),
        ),
      ),
    ).rejects.toThrow(/ip link set dev eth1 up: exit 2: RTNETLINK answers: Operation not permitted/);
  });

  it("refuses odd `ip -j` output instead of using it", async () => {
    const b = (stdout: string) => ipBackend(async () => ({ code: 0, stdout, stderr: "" }));
    await expect(b("not json").findLink(STABLE.mac)).rejects.toThrow(/not JSON/);
    await expect(b("{}").findLink(STABLE.mac)).rejects.toThrow(/not a JSON array/);
    await expect(b(JSON.stringify([{ ifname: "eth1; rm -rf /", address: STABLE.mac }])).findLink(STABLE.mac)).rejects.toThrow(
      /odd link name/,
    );
  });
});

describe("process runtime: link folders", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("finds the link by MAC, marks it configured and up, then released and down", async () => {
    dir = mkdtempSync(join(tmpdir(), "sk-net-"));
    const clock = new FakeClock();
    const backend = folderBackend(dir);
    const d = deps(() => [PRIMARY, STABLE], backend, clock);
    const pending = configureSecondaryEni(TARGET, 60_000, d);
    await clock.advance(500);
    mkdirSync(join(dir, "eth1"));
    writeFileSync(join(dir, "eth1", "address"), `${STABLE.mac}\n`);
    await drive(clock, pending);
    expect(JSON.parse(readFileSync(join(dir, "eth1", "configured"), "utf8"))).toMatchObject({ address: "172.31.0.77/20", table: 10001 });
    expect(readFileSync(join(dir, "eth1", "operstate"), "utf8")).toBe("up\n");
    await releaseSecondaryEni(TARGET, d);
    expect(existsSync(join(dir, "eth1", "configured"))).toBe(false);
    expect(readFileSync(join(dir, "eth1", "operstate"), "utf8")).toBe("down\n");
    // Already detached (IMDS no longer lists it): nothing to release.
    expect(
      await releaseSecondaryEni(
        TARGET,
        deps(() => [PRIMARY], backend, clock),
      ),
    ).toEqual({ detail: `${TARGET.eniId} is not attached here` });
  });
});

describe("process runtime: link folders, read while they change", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  // Regression: a plain write truncates the file first, so a reader in between saw an empty
  // `operstate` while a repeated configure rewrote it (make-before-break.test read "" in a full run).
  it("a reader sees `operstate` and `configured` whole while configure repeats", async () => {
    dir = mkdtempSync(join(tmpdir(), "sk-net-"));
    mkdirSync(join(dir, "eth1"));
    writeFileSync(join(dir, "eth1", "address"), `${STABLE.mac}\n`);
    writeFileSync(join(dir, "eth1", "operstate"), "down\n");
    const backend = folderBackend(dir);
    const setup = {
      eniId: TARGET.eniId,
      mac: STABLE.mac,
      link: "eth1",
      address: TARGET.privateIp,
      prefix: 20,
      subnet: "172.31.0.0/20",
      gateway: "172.31.0.1",
      table: 10001,
    };
    await backend.configure(setup);
    const seen = new Set<string>();
    let configuring = true;
    const reader = (async () => {
      while (configuring) {
        seen.add(readFileSync(join(dir, "eth1", "operstate"), "utf8"));
        seen.add(JSON.stringify(JSON.parse(readFileSync(join(dir, "eth1", "configured"), "utf8") || "null")));
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let i = 0; i < 300; i++) await backend.configure(setup);
    configuring = false;
    await reader;
    expect([...seen].sort()).toEqual(
      [
        "up\n",
        JSON.stringify({
          address: "172.31.0.77/20",
          table: 10001,
          routes: ["172.31.0.0/20", "default via 172.31.0.1"],
          rule: "from 172.31.0.77",
        }),
      ].sort(),
    );
  });
});

describe("the remembered stable ENI (for a restarted agent)", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("comes back only on the instance that configured it, only when well-formed, and is gone once forgotten", () => {
    dir = mkdtempSync(join(tmpdir(), "sk-state-"));
    expect(rememberedStableEni(dir, "i-00000000000000001")).toBeNull();
    rememberStableEni(dir, "i-00000000000000001", TARGET);
    expect(rememberedStableEni(dir, "i-00000000000000001")).toEqual(TARGET);
    // A root volume carried to another instance carries the file: not this instance's ENI.
    expect(rememberedStableEni(dir, "i-00000000000000002")).toBeNull();
    writeFileSync(join(dir, STABLE_ENI_FILE), JSON.stringify({ instanceId: "i-00000000000000001", eniId: "eth1; reboot", privateIp: "x" }));
    expect(rememberedStableEni(dir, "i-00000000000000001")).toBeNull();
    writeFileSync(join(dir, STABLE_ENI_FILE), "not json");
    expect(rememberedStableEni(dir, "i-00000000000000001")).toBeNull();
    rememberStableEni(dir, "i-00000000000000001", TARGET);
    forgetStableEni(dir);
    expect(rememberedStableEni(dir, "i-00000000000000001")).toBeNull();
  });
});
