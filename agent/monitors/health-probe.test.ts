import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realClock } from "../../shared/clock.js";
import { createLogger } from "../log.js";
import { HealthProbe, probeOnce } from "./health-probe.js";

let server: Server;
let port: number;
let answer: number | "hang" = 200;
const seen: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(req.url ?? "");
    if (answer === "hang") return; // never answers
    res.writeHead(answer).end("x".repeat(100_000));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const until = async (what: string, f: () => boolean) => {
  for (let i = 0; i < 400 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!f()) throw new Error(`timed out waiting for ${what}`);
};

describe("probeOnce", () => {
  it("2xx is healthy; other statuses, refusals and silence are not, with the reason", async () => {
    answer = 204;
    expect(await probeOnce(port, "/healthz?deep=1", 1000)).toEqual({ ok: true, detail: "HTTP 204" });
    expect(seen.at(-1)).toBe("/healthz?deep=1");
    answer = 503;
    expect(await probeOnce(port, "/", 1000)).toEqual({ ok: false, detail: "HTTP 503" });
    answer = 301;
    expect(await probeOnce(port, "/", 1000)).toEqual({ ok: false, detail: "HTTP 301" });
    answer = "hang";
    expect(await probeOnce(port, "/", 100)).toEqual({ ok: false, detail: "no answer within 100 ms" });
    expect(await probeOnce(port, "/bad\r\nX-Injected: 1", 1000)).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/unescaped|invalid/i),
    });
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    expect(await probeOnce(closedPort, "/", 1000)).toEqual({ ok: false, detail: "ECONNREFUSED" });
  });
});

describe("HealthProbe", () => {
  it("probes on its interval, keeps the last result, and stops", async () => {
    answer = 200;
    const probe = new HealthProbe({ clock: realClock, log: createLogger({ write: () => undefined }), scale: (ms) => ms / 100 });
    probe.configure({ port, path: "/live", intervalMs: 1000, timeoutMs: 50_000 });
    await until("a healthy report", () => probe.report?.ok === true);
    expect(probe.report).toMatchObject({ ok: true, detail: "HTTP 200" });
    answer = 500;
    await until("an unhealthy report", () => probe.report?.ok === false);
    expect(probe.report?.detail).toBe("HTTP 500");
    probe.configure(undefined);
    expect(probe.report).toBeUndefined();
    const n = seen.length;
    await new Promise((r) => setTimeout(r, 60));
    expect(seen.length).toBe(n);
  });
});
