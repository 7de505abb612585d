import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";

/** What the host shows of a linux runtime's state dir and namespaces (empty lists = nothing left). */
export function leftovers(stateDirs: readonly string[]): { netns: string[]; loops: string[]; mounts: string[]; links: string[] } {
  const under = (p: string) => stateDirs.some((d) => p === d || p.startsWith(`${d}/`));
  const netns = execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith("sk-"));
  const loops = execFileSync("losetup", ["-a"], { encoding: "utf8" })
    .split("\n")
    .filter((l) => stateDirs.some((d) => l.includes(d)));
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .filter((l) => under(l.split(" ")[1] ?? "") || (l.split(" ")[1] ?? "") === "/run/netns");
  const links = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" })
    .split("\n")
    .map((l) => (l.split(": ")[1] ?? "").split("@")[0] ?? "")
    .filter((n) => n.startsWith("skv") || n.startsWith("skbr"));
  return { netns, loops, mounts, links };
}

export const NOTHING = { netns: [], loops: [], mounts: [], links: [] };

/** Polls `fn` until it returns a value or `tries` run out (bounded retries, no wall-clock assertion). */
export async function eventually<T>(fn: () => Promise<T | undefined>, tries = 100, everyMs = 100): Promise<T> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`condition not met after ${tries} tries${last ? `: ${String(last)}` : ""}`);
}

/**
 * Start a child script (in its own process group, so a test can SIGKILL the whole group) and
 * resolve its first stdout line parsed as JSON: the child's "ready" report.
 */
export function spawnReadyChild<T>(script: string, arg: string, what: string): { child: ChildProcess; ready: Promise<T> } {
  const child = spawn(process.execPath, ["--import", "tsx", script, arg], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d));
  const ready = new Promise<T>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!) as T);
    });
    child.on("exit", (code: number | null) => reject(new Error(`${what} exited ${code} before ready: ${err}`)));
  });
  return { child, ready };
}
