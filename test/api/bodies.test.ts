/**
 * Request bodies are bounded before they are parsed, and a failing handler never takes the
 * coordinator down. Regressions pinned: a 6 KB deeply nested JSON body crashed the coordinator
 * (every body went through the YAML parser), and an 800 KB one held the event loop for ~20 s.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiServer, type ApiServer } from "../../coordinator/api/server.js";
import {
  MAX_BODY_DEPTH,
  MAX_YAML_BYTES,
  depthOf,
  jsonNestingBeyond,
  yamlBlockNestingBeyond,
  yamlFlowNestingBeyond,
} from "../../coordinator/api/bodies.js";
import { FakeViews } from "./fake-views.js";
import { unusedGroups } from "../../coordinator/api/unused-deps.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";

const TOKEN = "bodies-test-token-0123456789abcdef";
const spec = {
  name: "web-db",
  launch: { imageId: "ami-0abc0123456789def", instanceTypes: ["m6i.large"], subnetIds: ["subnet-0a0000000000000a1"] },
  persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 10, mountPoint: "/data" }] },
};

/** Views whose createInstance can be told to fail the next call. */
class FailingViews extends FakeViews {
  failNext: unknown = null;
  override async createInstance(s: StatefulInstanceSpec): Promise<{ workflowId: string }> {
    const err = this.failNext;
    if (err) {
      this.failNext = null;
      throw err;
    }
    return super.createInstance(s);
  }
}

let dir: string;
let api: ApiServer;
let base: string;
let views: FailingViews;
let upgradeThrows = false;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-bodies-"));
  writeFileSync(join(dir, "agent.js"), "//\n");
  views = new FailingViews();
  api = createApiServer({
    views,
    groups: unusedGroups(),
    adminToken: TOKEN,
    agentBundlePath: join(dir, "agent.js"),
    onAgentUpgrade: (_req, socket) => {
      if (upgradeThrows) throw new Error("upgrade handler bug");
      socket.destroy();
    },
    metricsText: async () => "",
    health: () => ({ ok: true }),
  });
  base = await api.listen(0);
});
afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  views.failNext = null;
  upgradeThrows = false;
});

function post(body: string, contentType: string | null = "application/json") {
  const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
  if (contentType) headers["content-type"] = contentType;
  return fetch(`${base}/api/v1/instances`, { method: "POST", headers, body });
}
async function error(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  return { status: res.status, ...body.error };
}
async function healthy(): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${base}/healthz`);
  expect(res.status).toBe(200);
  await res.json();
  return performance.now() - t0;
}
async function median(n: number, f: () => Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await f());
  return xs.sort((a, b) => a - b)[Math.floor(n / 2)]!;
}
const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
const nestedObject = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

describe("JSON bodies", () => {
  it("a 6 KB deeply nested JSON body (crashed the coordinator through the YAML parser) is a quick 400; the server keeps serving", async () => {
    for (const body of [nested(3000), nestedObject(1200)]) {
      expect(body.length).toBeLessThan(8 * 1024);
      const e = await error(await post(body));
      expect(e).toMatchObject({ status: 400, code: "too-deep" });
      expect(e.message).toMatch(new RegExp(`deeper than ${MAX_BODY_DEPTH} levels`));
    }
    await healthy();
  });

  it("an 800 KB nested JSON body (held the event loop ~20 s) is a quick 400, and /healthz answers meanwhile", async () => {
    // Quick as a ratio in one run: no slower than 10 times a shallow body of the same size, which
    // goes through the same read and a full JSON.parse (the old scan was about 1,000 times slower).
    const body = nested(400_000);
    const shallow = JSON.stringify({ pad: "x".repeat(body.length) });
    const reference = await median(3, async () => {
      const t0 = performance.now();
      await error(await post(shallow));
      return performance.now() - t0;
    });
    const started = post(body);
    const during = healthy();
    const t0 = performance.now();
    const e = await error(await started);
    const elapsed = performance.now() - t0;
    expect(e).toMatchObject({ status: 400, code: "too-deep" });
    expect(elapsed / reference).toBeLessThan(10);
    await during;
  });

  it("a large but shallow JSON body is parsed as JSON in well under a second", async () => {
    const tags = Object.fromEntries(Array.from({ length: 24_000 }, (_, i) => [`k${i}`, `${"v".repeat(16)}${i}`]));
    const body = JSON.stringify({ ...spec, name: "Not A Valid Name", launch: { ...spec.launch, tags } });
    expect(body.length).toBeGreaterThan(500_000);
    const e = await error(await post(body));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/name/);
  });

  it("JSON depth is counted outside strings only, so brackets in a hook script are fine", async () => {
    const ok = { ...spec, name: "brackets", hooks: { preStop: `${"[".repeat(100)} not nesting ${"{".repeat(100)}` } };
    expect((await post(JSON.stringify(ok))).status).toBe(201);
    expect(views.created.at(-1)!.hooks.preStop).toMatch(/^\[{100}/);
  });

  it("a JSON body is never read as YAML", async () => {
    const e = await error(await post("name: yaml-in-json\n"));
    expect(e).toMatchObject({ status: 400, code: "invalid-spec" });
    expect(e.message).toMatch(/not valid JSON/);
  });
});

describe("YAML bodies", () => {
  it("accepts a YAML spec sent as application/yaml, text/yaml and application/x-yaml", async () => {
    let n = 0;
    for (const type of ["application/yaml", "text/yaml; charset=utf-8", "application/x-yaml"]) {
      const yaml = `name: yaml-${++n}\nlaunch:\n  imageId: ami-0abc0123456789def\n  instanceTypes: [t3.small]\n  subnetIds: [subnet-0a0000000000000a1]\nhooks:\n  preStop: |\n    if [ -f /x ]; then echo "{"; fi\n`;
      expect((await post(yaml, type)).status).toBe(201);
    }
  });

  it.each([
    ["flow nesting (60 KB of it ran the old parser out of memory, a fatal V8 error)", nested(30_000)],
    ["compact sequences (- - - …)", `${"- ".repeat(1000)}x`],
    ["block indentation", `${Array.from({ length: 40 }, (_, i) => `${" ".repeat(i)}a:`).join("\n")}\n${" ".repeat(40)}x`],
  ])("refuses deep %s with a 400 before the YAML parser sees it", async (_what, body) => {
    // too-deep is the pre-scan's answer; the parser's own failure would be invalid-spec.
    const e = await error(await post(body, "application/yaml"));
    expect(e).toMatchObject({ status: 400, code: "too-deep" });
    await healthy();
  });

  // Regression: the old pre-scan used JSON's quoting rules, so a `"` inside a plain or single-quoted
  // scalar (or a block scalar) put it in "string mode" and 64 KB of `[[[` reached the YAML parser,
  // which overflowed its stack after up to ~3 s of blocked event loop and answered invalid-spec.
  let smallSpecs = 0;
  const fill = (head: string) => head + "[".repeat(MAX_YAML_BYTES - head.length - 1);
  it.each([
    ["a plain scalar", fill('name: it"s\nx: ')],
    ["a single-quoted scalar", fill("name: 'say \"hi'\nx: ")],
    ["a block scalar", fill('hooks:\n  preStop: |\n    "\nx: ')],
    ["a comment", fill('# "\nx: ')],
  ])("refuses 64 KB of [[[ after a quote inside %s as too deep, before the YAML parser", async (what, body) => {
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_YAML_BYTES);
    // Reported, not asserted (no test asserts wall-clock time): the refusal against a small valid spec.
    const small = `name: small-${++smallSpecs}\nlaunch:\n  imageId: ami-0abc0123456789def\n  instanceTypes: [t3.small]\n  subnetIds: [subnet-0a0000000000000a1]\n`;
    const t0 = performance.now();
    expect((await post(small, "application/yaml")).status).toBe(201);
    const t1 = performance.now();
    const e = await error(await post(body, "application/yaml"));
    const t2 = performance.now();
    expect(e).toMatchObject({ status: 400, code: "too-deep" });
    expect(e.message).toMatch(new RegExp(`deeper than ${MAX_BODY_DEPTH} levels \\(at character \\d+\\)`));
    console.log(
      `quoted-YAML nesting body (${what}): refused in ${(t2 - t1).toFixed(1)} ms, a small valid spec took ${(t1 - t0).toFixed(1)} ms`,
    );
    await healthy();
  });

  it("brackets inside quoted, plain and block scalars are text, not nesting", async () => {
    const deep = "[".repeat(60);
    const yaml =
      `name: yaml-brackets\nlaunch:\n  imageId: ami-0abc0123456789def\n  instanceTypes: [t3.small]\n  subnetIds: [subnet-0a0000000000000a1]\n` +
      `  tags:\n    a: '${deep}'\n    b: "${deep}"\n    c: x${deep}\nhooks:\n  preStop: |\n    ${deep}\n`;
    expect((await post(yaml, "application/yaml")).status).toBe(201);
    const created = views.created.at(-1)!;
    expect(created.launch.tags).toEqual({ a: deep, b: deep, c: `x${deep}` });
    expect(created.hooks.preStop).toBe(`${deep}\n`);
  });

  it("refuses an alias bomb (billion laughs)", async () => {
    let yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (let i = 1; i < 9; i++)
      yaml += `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(", ")}]\n`;
    const e = await error(await post(yaml, "application/yaml"));
    expect(e).toMatchObject({ status: 400, code: "invalid-spec" });
    expect(e.message).toMatch(/alias/i);
  });

  it("limits YAML bodies to 64 KiB (JSON may be larger)", async () => {
    const yaml = `name: big\n# ${"x".repeat(MAX_YAML_BYTES)}\n`;
    const e = await error(await post(yaml, "application/yaml"));
    expect(e.status).toBe(413);
    expect(e.message).toMatch(/65536/);
  });
});

describe("content types", () => {
  it.each([
    ["text/plain", "text/plain"],
    ["no content type", null],
    ["form encoding", "application/x-www-form-urlencoded"],
  ])("415 for %s, before the body is parsed", async (_what, type) => {
    const e = await error(await post(JSON.stringify({ ...spec, name: "typed" }), type));
    expect(e).toMatchObject({ status: 415, code: "unsupported-media-type" });
    expect(views.created.some((s) => s.name === "typed")).toBe(false);
  });
});

describe("handler failures", () => {
  it("an unexpected exception in a handler is a 500 and the server keeps serving", async () => {
    views.failNext = new TypeError("Cannot read properties of undefined (reading 'spec')");
    const e = await error(await post(JSON.stringify({ ...spec, name: "boom" })));
    expect(e).toMatchObject({ status: 500, code: "internal" });
    await healthy();
    expect((await post(JSON.stringify({ ...spec, name: "after-boom" }))).status).toBe(201);
  });

  it("an exception in the upgrade handler destroys that socket, not the process", async () => {
    upgradeThrows = true;
    const res = await fetch(`${base}/agent/v1/ws`, { headers: { connection: "upgrade", upgrade: "websocket" } }).catch((e: Error) => e);
    expect(res).toBeInstanceOf(Error);
    await healthy();
  });

  const sqlite = (code: string, message: string) => Object.assign(new Error(message), { code });
  it.each([
    ["SQLITE_FULL", 507, "insufficient-storage", /out of disk space/],
    ["SQLITE_IOERR", 503, "storage-unavailable", /retry/],
    ["SQLITE_IOERR_WRITE", 503, "storage-unavailable", /retry/],
    ["SQLITE_BUSY", 503, "storage-unavailable", /retry/],
    ["SQLITE_CORRUPT", 503, "storage-damaged", /restore the database from a backup/],
  ])("a store error %s is answered %i with a clear message", async (code, status, errCode, message) => {
    views.failNext = sqlite(code, "from the store");
    const res = await post(JSON.stringify({ ...spec, name: "storage" }));
    if (status === 503) expect(res.headers.get("retry-after")).toBe("5");
    const e = await error(res);
    expect(e).toMatchObject({ status, code: errCode });
    expect(e.message).toMatch(message);
    expect(e.message).toContain(code);
  });

  it("finds the SQLite code on a wrapped cause; other SQLite codes stay 500", async () => {
    views.failNext = new Error("inserting web-db", { cause: sqlite("SQLITE_FULL", "database or disk is full") });
    expect((await error(await post(JSON.stringify({ ...spec, name: "wrapped" })))).status).toBe(507);
    views.failNext = sqlite("SQLITE_CONSTRAINT_UNIQUE", "UNIQUE constraint failed");
    expect((await error(await post(JSON.stringify({ ...spec, name: "constraint" })))).status).toBe(500);
  });
});

describe("nesting scans", () => {
  it("count JSON brackets outside strings, with escapes", () => {
    expect(jsonNestingBeyond(nested(32), 32)).toBeNull();
    expect(jsonNestingBeyond(nested(33), 32)).toBe(32);
    expect(jsonNestingBeyond(`["\\"${"[".repeat(50)}"]`, 32)).toBeNull();
  });
  it("count YAML flow brackets by YAML's quoting rules, at their character offset", () => {
    expect(yamlFlowNestingBeyond("a: [[[1]]]\n", 3)).toBeNull();
    expect(yamlFlowNestingBeyond("a: [[[[1]]]]\n", 3)).toBe(6);
    expect(yamlFlowNestingBeyond(`a: it"s\nb: [[[[1]]]]\n`, 3)).toBe(14);
    expect(yamlFlowNestingBeyond(`a: 'x"y'\nb: {c: [[[1]]]}\n`, 3)).toBe(18);
    expect(yamlFlowNestingBeyond(`a: "[[[[\\"[["\nb: '[[[['\nc: x[[[[ # [[[[\n`, 3)).toBeNull();
    expect(yamlFlowNestingBeyond('a: |\n  "\nb: [[[[1]]]]\n', 3)).toBe(15);
    expect(yamlFlowNestingBeyond("a: x\n---\nb: [[[[1]]]]\n", 3)).toBe(15);
  });

  it("count YAML indentation levels and compact indicators", () => {
    expect(yamlBlockNestingBeyond("a:\n  b:\n    c: 1\n# [[[\n\n", 3)).toBeNull();
    expect(yamlBlockNestingBeyond("a:\n  b:\n    c:\n      d: 1\n", 3)).toBe(4);
    expect(yamlBlockNestingBeyond("a:\n  - - - x\n", 3)).toBe(2);
    expect(yamlBlockNestingBeyond("a:\n  - x\n  - y\nb: 2\n", 3)).toBeNull();
  });
  it("measure the depth of a cyclic value without looping", () => {
    const a: unknown[] = [];
    a.push(a);
    expect(depthOf(a, 33)).toBeGreaterThan(32);
    expect(depthOf({ a: { b: [1] } }, 33)).toBe(3);
  });
});
