import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freePort, reserve } from "./ports.js";

const DIR = join(tmpdir(), `spotkeep-test-ports-${process.getuid?.() ?? "u"}`);
const EPHEMERAL_LOW = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);

describe("test ports", () => {
  it("hands out distinct bindable ports below the ephemeral range, each reserved for this process", async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    expect(new Set(ports).size).toBe(20);
    for (const p of ports) {
      expect(p).toBeLessThan(EPHEMERAL_LOW);
      expect(readFileSync(join(DIR, String(p)), "utf8").trim()).toBe(String(process.pid));
    }
    const s = createServer();
    await new Promise<void>((r) => s.listen(ports[0], "127.0.0.1", () => r()));
    await new Promise<void>((r) => s.close(() => r()));
  });

  it("takes over the reservation of a process that is gone and never one of a live process", async () => {
    await freePort(); // the reservation directory exists from here on
    // pid 2^22+1 is above Linux's pid_max ceiling, so no process has it.
    writeFileSync(join(DIR, "20001"), "4194305\n");
    expect(reserve(20001)).toBe(true);
    expect(readFileSync(join(DIR, "20001"), "utf8").trim()).toBe(String(process.pid));
    writeFileSync(join(DIR, "20002"), `${process.ppid}\n`);
    expect(reserve(20002)).toBe(false);
    expect(readFileSync(join(DIR, "20002"), "utf8").trim()).toBe(String(process.ppid));
    rmSync(join(DIR, "20002"));
  });
});
