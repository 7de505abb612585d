/**
 * The stable ENI of an `attach: secondary` instance, on the instance: the job amazon-ec2-net-utils
 * does on Amazon Linux, for the one ENI spotkeep moves between generations.
 *
 * Configure (restore, after the coordinator attached the ENI at device index 1): wait until IMDS
 * lists the ENI (by id, under network/interfaces/macs/), wait for the OS link with its MAC, then
 * bring the link up, add the address without a main-table route, and give it its own routing table
 * (`10000 + device number`: the subnet on-link and a default route via the subnet's gateway) with
 * a rule `from <address> lookup <table>`, so replies to traffic that arrived on the ENI leave
 * through it while everything else keeps using the primary ENI.
 * Release (quiesce before the ENI is detached): rule, table, address removed, link down.
 *
 * The OS work goes through a `LinkBackend`: `ipBackend` runs `ip` through an injected runner
 * (Linux), `folderBackend` is the localcloud process runtime's equivalent (link folders under
 * SPOTKEEP_NET_DIR). Both are idempotent: a repeated configure or release changes nothing more.
 */
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "../../shared/clock.js";
import type { SecondaryEni, StepTiming } from "../../shared/protocol.js";
import type { Imds, ImdsEni } from "../imds/client.js";
import type { Logger } from "../log.js";
import { resolveBinary } from "../storage/freezer.js";

/** Everything the OS needs to carry the ENI's address. */
export interface EniSetup {
  eniId: string;
  mac: string;
  link: string;
  address: string;
  prefix: number;
  subnet: string;
  gateway: string;
  table: number;
}

export interface LinkBackend {
  /** The OS link that carries this MAC, or null while it has not appeared. */
  findLink(mac: string): Promise<string | null>;
  configure(s: EniSetup): Promise<void>;
  release(s: EniSetup): Promise<void>;
}

export class EniError extends Error {
  override name = "EniError";
}

// ---------- addresses ----------

function ipToInt(ip: string): number {
  const p = ip.split(".").map(Number);
  return (((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0) as number;
}
function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** The setup for an ENI as IMDS describes it; refuses what cannot be right (address outside its subnet, primary ENI). */
export function eniSetup(target: SecondaryEni, eni: ImdsEni, link: string): EniSetup {
  if (eni.deviceNumber < 1) throw new EniError(`${target.eniId} is the primary ENI (device number 0): not configuring it`);
  if (!eni.privateIps.includes(target.privateIp))
    throw new EniError(`${target.eniId}: IMDS lists ${eni.privateIps.join(", ") || "no address"}, not ${target.privateIp}`);
  if (!eni.subnetCidr) throw new EniError(`${target.eniId}: IMDS gives no subnet-ipv4-cidr-block`);
  const [base, len] = eni.subnetCidr.split("/") as [string, string];
  const prefix = Number(len);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const net = (ipToInt(base) & mask) >>> 0;
  if ((ipToInt(target.privateIp) & mask) >>> 0 !== net)
    throw new EniError(`${target.eniId}: ${target.privateIp} is not inside its subnet ${eni.subnetCidr}`);
  return {
    eniId: target.eniId,
    mac: eni.mac,
    link,
    address: target.privateIp,
    prefix,
    subnet: `${intToIp(net)}/${prefix}`,
    // The VPC router is the subnet's first address (.1 of the base).
    gateway: intToIp(net + 1),
    table: 10000 + eni.deviceNumber,
  };
}

// ---------- configure / release ----------

export interface SecondaryEniDeps {
  imds: Pick<Imds, "networkInterfaces">;
  backend: LinkBackend;
  clock: Clock;
  log: Logger;
  /** Model ms -> real ms. */
  scale: (modelMs: number) => number;
}

async function waitFor<T>(deps: SecondaryEniDeps, deadline: number, what: string, probe: () => Promise<T | null>): Promise<T> {
  const pollMs = Math.max(10, deps.scale(250));
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (deps.clock.now() >= deadline) throw new EniError(`waiting for ${what}: not there in time`);
    await deps.clock.sleep(Math.min(pollMs, Math.max(1, deadline - deps.clock.now())));
  }
}

/** Waits (until `timeoutMs` real ms) for the ENI in IMDS and its link, then configures it. */
export async function configureSecondaryEni(
  target: SecondaryEni,
  timeoutMs: number,
  deps: SecondaryEniDeps,
): Promise<{ setup: EniSetup; steps: StepTiming[] }> {
  const steps: StepTiming[] = [];
  const t0 = deps.clock.now();
  const ms = (t: number) => Math.max(0, Math.round(deps.clock.now() - t));
  const deadline = t0 + timeoutMs;
  const eni = await waitFor(deps, deadline, `${target.eniId} in IMDS network/interfaces/macs/`, async () => {
    const all = await deps.imds.networkInterfaces();
    return all.find((e) => e.interfaceId === target.eniId) ?? null;
  });
  steps.push({ name: `eni:${target.eniId}`, ok: true, ms: ms(t0), detail: `${eni.mac} at device number ${eni.deviceNumber}` });
  const t1 = deps.clock.now();
  const link = await waitFor(deps, deadline, `the link with MAC ${eni.mac} (${target.eniId})`, () => deps.backend.findLink(eni.mac));
  const setup = eniSetup(target, eni, link);
  await deps.backend.configure(setup);
  steps.push({
    name: `eni-configure:${link}`,
    ok: true,
    ms: ms(t1),
    detail: `${setup.address}/${setup.prefix} on ${link}, table ${setup.table} via ${setup.gateway}`,
  });
  deps.log.info("stable ENI configured", { eniId: target.eniId, link, address: setup.address, table: setup.table });
  return { setup, steps };
}

/**
 * Releases the ENI before it is detached. Not listed in IMDS (already detaching) or no link: there
 * is nothing left to release on this instance, which is reported as released.
 */
export async function releaseSecondaryEni(target: SecondaryEni, deps: SecondaryEniDeps): Promise<{ link?: string; detail: string }> {
  const eni = (await deps.imds.networkInterfaces()).find((e) => e.interfaceId === target.eniId);
  if (!eni) return { detail: `${target.eniId} is not attached here` };
  const link = await deps.backend.findLink(eni.mac);
  if (!link) return { detail: `no link carries ${eni.mac}` };
  const setup = eniSetup(target, eni, link);
  await deps.backend.release(setup);
  deps.log.info("stable ENI released", { eniId: target.eniId, link, address: setup.address });
  return { link, detail: `${setup.address} removed from ${link}, link down` };
}

// ---------- Linux: `ip` through an injected runner ----------

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}
export type CommandRunner = (argv: readonly string[]) => Promise<CommandResult>;

/** Links and rules answers are small; anything bigger is not `ip -j` output to trust. */
const MAX_IP_JSON = 1024 * 1024;

function parseJsonArray(text: string, what: string): Array<Record<string, unknown>> {
  if (text.length > MAX_IP_JSON) throw new EniError(`${what}: ${text.length} bytes of output`);
  let v: unknown;
  try {
    v = JSON.parse(text || "[]");
  } catch {
    throw new EniError(`${what}: not JSON`);
  }
  if (!Array.isArray(v)) throw new EniError(`${what}: not a JSON array`);
  return v.filter((x): x is Record<string, unknown> => typeof x === "object" && x !== null);
}

export function ipBackend(run: CommandRunner): LinkBackend {
  const must = async (argv: string[]) => {
    const r = await run(argv);
    if (r.code !== 0) throw new EniError(`${argv.join(" ")}: exit ${r.code}: ${r.stderr.trim().slice(0, 500)}`);
    return r;
  };
  const rulePresent = async (s: EniSetup) => {
    const r = await must(["ip", "-j", "-4", "rule", "show", "table", String(s.table)]);
    return parseJsonArray(r.stdout, "ip rule show").some((x) => x.src === s.address && (x.srclen === undefined || x.srclen === 32));
  };
  return {
    async findLink(mac) {
      const r = await must(["ip", "-j", "link", "show"]);
      const hit = parseJsonArray(r.stdout, "ip link show").find((l) => l.address === mac && typeof l.ifname === "string");
      const name = hit?.ifname as string | undefined;
      if (name !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(name))
        throw new EniError(`ip link show: odd link name ${JSON.stringify(name)}`);
      return name ?? null;
    },
    async configure(s) {
      await must(["ip", "link", "set", "dev", s.link, "up"]);
      // noprefixroute: the subnet stays routed through the primary ENI in the main table.
      await must(["ip", "-4", "addr", "replace", `${s.address}/${s.prefix}`, "dev", s.link, "noprefixroute"]);
      await must(["ip", "-4", "route", "replace", s.subnet, "dev", s.link, "src", s.address, "table", String(s.table)]);
      await must(["ip", "-4", "route", "replace", "default", "via", s.gateway, "dev", s.link, "table", String(s.table)]);
      if (!(await rulePresent(s)))
        await must(["ip", "-4", "rule", "add", "from", `${s.address}/32`, "lookup", String(s.table), "priority", String(s.table)]);
    },
    async release(s) {
      while (await rulePresent(s)) await must(["ip", "-4", "rule", "del", "from", `${s.address}/32`, "lookup", String(s.table)]);
      const flush = await run(["ip", "-4", "route", "flush", "table", String(s.table)]);
      // An empty or missing table is already flushed.
      if (flush.code !== 0 && !/FIB table does not exist|No such/i.test(flush.stderr))
        throw new EniError(`ip route flush table ${s.table}: exit ${flush.code}: ${flush.stderr.trim().slice(0, 500)}`);
      const del = await run(["ip", "-4", "addr", "del", `${s.address}/${s.prefix}`, "dev", s.link]);
      if (del.code !== 0 && !/Cannot assign requested address/i.test(del.stderr))
        throw new EniError(`ip addr del ${s.address}/${s.prefix} dev ${s.link}: exit ${del.code}: ${del.stderr.trim().slice(0, 500)}`);
      await must(["ip", "link", "set", "dev", s.link, "down"]);
    },
  };
}

// ---------- localcloud process runtime: link folders ----------

/**
 * `<netDir>/<link>/address` holds the link's MAC (as /sys/class/net); configuring writes
 * `configured` (what `ip` would have set up) and `operstate` up; releasing removes `configured`
 * and writes `operstate` down. Each file is replaced whole (written beside it, then renamed), as a
 * /sys attribute changes: a reader never sees one half-written (a plain write truncates first, and
 * a reader in between read an empty `operstate` while a repeated configure rewrote it).
 */
async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.new`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

export function folderBackend(netDir: string): LinkBackend {
  return {
    async findLink(mac) {
      const names = await readdir(netDir).catch(() => [] as string[]);
      for (const name of names.slice(0, 64)) {
        if (!/^[A-Za-z0-9_-]{1,15}$/.test(name)) continue;
        const addr = await readFile(join(netDir, name, "address"), "utf8").catch(() => "");
        if (addr.slice(0, 64).trim() === mac) return name;
      }
      return null;
    },
    async configure(s) {
      const dir = join(netDir, s.link);
      const cfg = {
        address: `${s.address}/${s.prefix}`,
        table: s.table,
        routes: [s.subnet, `default via ${s.gateway}`],
        rule: `from ${s.address}`,
      };
      // Link up first, then the configuration (as `ip link set up` precedes `ip addr add`): a reader
      // that sees `configured` also sees the link up.
      await replaceFile(join(dir, "operstate"), "up\n");
      await replaceFile(join(dir, "configured"), `${JSON.stringify(cfg)}\n`);
    },
    async release(s) {
      const dir = join(netDir, s.link);
      await rm(join(dir, "configured"), { force: true });
      await replaceFile(join(dir, "operstate"), "down\n").catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err; // unplugged meanwhile: nothing to bring down
      });
    },
  };
}

// ---------- what this instance carries, across agent restarts ----------

/** In the agent's state dir: the stable ENI this instance configured, so a restarted agent (a reboot) configures it again. */
export const STABLE_ENI_FILE = "stable-eni.json";

export function rememberStableEni(stateDir: string, instanceId: string, target: SecondaryEni): void {
  writeFileSync(join(stateDir, STABLE_ENI_FILE), `${JSON.stringify({ instanceId, eniId: target.eniId, privateIp: target.privateIp })}\n`);
}

export function forgetStableEni(stateDir: string): void {
  rmSync(join(stateDir, STABLE_ENI_FILE), { force: true });
}

/** The remembered ENI when it was configured on this very instance (a root volume restored elsewhere carries the file too). */
export function rememberedStableEni(stateDir: string, instanceId: string): SecondaryEni | null {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(join(stateDir, STABLE_ENI_FILE), "utf8").slice(0, 4096));
  } catch {
    return null;
  }
  const o = v as { instanceId?: unknown; eniId?: unknown; privateIp?: unknown } | null;
  if (!o || o.instanceId !== instanceId || typeof o.eniId !== "string" || typeof o.privateIp !== "string") return null;
  if (!/^eni-[0-9a-f]{8,17}$/.test(o.eniId) || !/^\d{1,3}(\.\d{1,3}){3}$/.test(o.privateIp)) return null;
  return { eniId: o.eniId, privateIp: o.privateIp };
}

// ---------- the real runner ----------

/** Runs a command with a time limit and bounded output (what `ipBackend` needs on a real instance). */
export function spawnRunner(timeoutMs = 30_000, maxBytes = MAX_IP_JSON): CommandRunner {
  return (argv) =>
    new Promise((resolve) => {
      const [cmd, ...args] = argv;
      execFile(
        cmd === "ip" ? resolveBinary("ip") : cmd!,
        args,
        { timeout: timeoutMs, maxBuffer: maxBytes, killSignal: "SIGKILL", encoding: "utf8" },
        (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : null) : 0;
          resolve({ code, stdout: stdout ?? "", stderr: stderr || (err && code === null ? err.message : "") || "" });
        },
      );
    });
}

/** The backend for this instance: link folders under SPOTKEEP_NET_DIR (localcloud process runtime), else `ip`. */
export function linkBackendFor(cfg: { netDir: string | undefined }): LinkBackend {
  return cfg.netDir ? folderBackend(cfg.netDir) : ipBackend(spawnRunner());
}
