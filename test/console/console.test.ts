/**
 * The web console in a real headless Chromium (Debian's `chromium`, driven by puppeteer-core)
 * against an in-process coordinator on localcloud: sign-in (a wrong token refused), the fleet,
 * an interruption watched live (replacing → running without a reload), the replacement's
 * timeline with its critical path, a snapshot run from the page, all under the console's CSP
 * with no browser console errors. Screenshots go to test-output/console/.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "puppeteer-core";
import type { Coordinator } from "../../coordinator/service.js";
import { CONSOLE_CSP } from "../../coordinator/api/console.js";
import { ROOT, ensureAgentBundle, inProcessCoordinator, parseSpec, startEnv, until, type Env } from "../coordinator/harness.js";

const CHROMIUM = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find(
  (p): p is string => !!p && existsSync(p),
);
if (!CHROMIUM) console.log("skipping the web console browser test: no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)");

const SCALE = 0.05;
const TOKEN = "test-admin-token-0123456789";
const SHOTS = join(ROOT, "test-output", "console");

describe.skipIf(!CHROMIUM)("web console in headless Chromium", () => {
  let dir: string;
  let env: Env;
  let coord: Coordinator;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    ensureAgentBundle();
    mkdirSync(SHOTS, { recursive: true });
    console.log(`console screenshots: ${SHOTS}`);
    dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-console-"));
    env = await startEnv(dir, SCALE);
    coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
    // Agent health checks (autoHealing off: the fleet shows the status, nothing else changes).
    const { workflowId } = await coord.views.createInstance(
      parseSpec({ ...env.spec("orders-db"), health: { type: "agent", autoHealing: false } }),
    );
    expect((await coord.engine.wait(workflowId)).status).toBe("succeeded");
    const puppeteer = await import("puppeteer-core");
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Root in a container has no user namespaces for Chromium's sandbox.
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warn") problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`pageerror: ${(e as Error).message}`));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await coord?.stop();
    await env?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const text = (sel: string) => page.$eval(sel, (e) => e.textContent ?? "");

  it("serves the console under a strict CSP with hashed, cached assets, and nothing without the token", async () => {
    const index = await fetch(`${coord.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-security-policy")).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(CONSOLE_CSP).not.toContain("unsafe");
    expect(index.headers.get("cache-control")).toBe("no-cache");
    const html = await index.text();
    expect(html).not.toMatch(/<script>|<script [^>]*>[^<]/); // no inline script
    const asset = /src="(\/assets\/main-[A-Z0-9]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeTruthy();
    const js = await fetch(`${coord.url}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("cache-control")).toContain("immutable");
    expect(js.headers.get("content-type")).toContain("javascript");
    expect((await fetch(`${coord.url}/assets/..%2fcli%2fmain.mjs`)).status).toBe(404);
    expect((await fetch(`${coord.url}/api/v1/stream`)).status).toBe(401);
    expect((await fetch(`${coord.url}/api/v1/instances`)).status).toBe(401);
  });

  it("refuses a wrong token with a clear message, then signs in and shows the fleet", async () => {
    await page.goto(`${coord.url}/`);
    await page.waitForSelector('[data-testid="signin"]');
    expect(await page.$('[data-testid="fleet"]')).toBeNull();
    await page.type("#token", "not-the-right-token-at-all");
    await page.click('[data-testid="signin"] button[type="submit"]');
    await page.waitForSelector('[data-testid="signin-error"]');
    expect(await text('[data-testid="signin-error"]')).toContain("refused this token");
    await shot("01-signin-refused");
    // The browser logs the refused request itself; that one is expected, nothing else is.
    const refused = problems.findIndex((p) => p.includes("status of 401"));
    expect(refused).toBeGreaterThanOrEqual(0);
    problems.splice(refused, 1);
    expect(await page.$('[data-testid="fleet"]')).toBeNull();

    await page.click("#token", { count: 3 });
    await page.keyboard.press("Backspace");
    await page.type("#token", TOKEN);
    await page.click('[data-testid="signin"] button[type="submit"]');
    await page.waitForSelector('[data-testid="fleet-row"][data-name="orders-db"][data-state="running"]');
    // The token is in session storage only: no cookie, and it is not in the URL.
    expect(await page.cookies()).toEqual([]);
    expect(page.url()).not.toContain(TOKEN);
    await page.waitForSelector('::-p-xpath(//*[@data-testid="live-mode" and text()="live"])');
    expect(await text('[data-testid="fleet-row"][data-name="orders-db"] [data-testid="health"]')).toMatch(/^(initializing|healthy)$/);
    await shot("02-fleet");
  });

  it("shows an interruption live: replacing, then running on generation 2, without a reload", async () => {
    const before = (await coord.views.getInstance("orders-db"))!;
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
    await env.control("POST", `instances/${before.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    await page.waitForSelector('[data-testid="fleet-row"][data-name="orders-db"][data-state="replacing"]', { timeout: 60_000 });
    await shot("03-fleet-replacing");
    await page.waitForSelector('[data-testid="fleet-row"][data-name="orders-db"][data-state="running"]', { timeout: 90_000 });
    const row = await text('[data-testid="fleet-row"][data-name="orders-db"]');
    expect(row).toContain(before.privateIp!);
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42); // same page, never reloaded
    await until("generation 2 in the fleet", async () =>
      (await text('[data-testid="fleet-row"][data-name="orders-db"]')).includes((await coord.views.getInstance("orders-db"))!.instanceId!),
    );
    await shot("04-fleet-replaced");
  }, 120_000);

  it("opens the instance page with the replacement's Gantt timeline and its critical path", async () => {
    await page.click('[data-testid="fleet-row"][data-name="orders-db"] a');
    await page.waitForSelector('[data-testid="timeline"][data-kind="replace"]');
    const events = (await coord.views.getEvents("orders-db"))!;
    const replace = events.timelines.find((t) => t.kind === "replace")!;
    expect(replace.criticalPath.length).toBeGreaterThan(2);
    const critical = await page.$$eval('[data-testid="gantt-step"][data-critical="true"]', (els) =>
      els.map((e) => e.getAttribute("data-step")),
    );
    expect(critical).toEqual(replace.criticalPath);
    const all = await page.$$eval('[data-testid="gantt-step"]', (els) => els.length);
    expect(all).toBeGreaterThan(critical.length);
    expect(await text('[data-testid="critical-path"]')).toBe(replace.criticalPath.join(" → "));
    expect(await page.$('[data-testid="band-downtime"]')).not.toBeNull();
    expect(await text('[data-testid="generations"]')).toContain("interrupt");
    await shot("05-instance");
    // The page down to the end of the timeline (the README's picture, docs/console-instance.png).
    const bottom = await page.$eval('[data-testid="timeline"]', (e) => e.getBoundingClientRect().bottom + 12);
    await page.screenshot({ path: join(SHOTS, "instance-timeline.png"), clip: { x: 0, y: 0, width: 1240, height: bottom } });
  });

  it("runs a snapshot after confirmation and shows its workflow complete", async () => {
    await page.click('[data-testid="action-snapshot"]');
    await page.waitForSelector('[data-testid="confirm"]');
    await shot("06-confirm-snapshot");
    await page.click('[data-testid="confirm-go"]');
    await page.waitForSelector('[data-testid="workflow"][data-status="succeeded"]', { timeout: 60_000 });
    expect(await text('[data-testid="workflow"]')).toContain("snapshot");
    // The new data snapshot is listed with its age.
    const vol = (await coord.views.getInstance("orders-db"))!.resources.volumes[0]!;
    await page.waitForSelector(`[data-testid="artifacts"] ::-p-text(${vol.latestSnapshotId})`);
    await shot("07-snapshot-done");
  }, 90_000);

  it("shows a non-zero saving from spot, per instance and in total", async () => {
    const api = (await (await fetch(`${coord.url}/api/v1/savings`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as any;
    const line = api.instances.find((l: { name: string }) => l.name === "orders-db");
    expect(line.spotHours).toBeGreaterThan(0);
    expect(line.unpriced).toEqual([]);
    expect(line.saved).toBeGreaterThan(0);
    // localcloud's m5.large spot price is 28-36% of on-demand in every AZ: spot cost well under on-demand.
    expect(line.spotCost).toBeLessThan(line.onDemandEquivalent * 0.4);
    await page.click('[data-testid="nav-savings"]');
    await page.waitForSelector('[data-testid="savings-row"][data-name="orders-db"]');
    expect(await text('[data-testid="total-saved"]')).toMatch(/^\$0\.\d*[1-9]/);
    expect(await page.$('[data-testid="savings-chart"]')).not.toBeNull();
    await shot("08-savings");
  });

  it("filters the fleet, and deletes an instance with the keep choices after confirmation", async () => {
    const { workflowId } = await coord.views.createInstance(parseSpec(env.spec("scratch", { workload: false })));
    expect((await coord.engine.wait(workflowId)).status).toBe("succeeded");
    await page.click('a[href="#/"]');
    await page.waitForSelector('[data-testid="fleet-row"][data-name="scratch"][data-state="running"]');
    const names = () => page.$$eval('[data-testid="fleet-row"]', (rows) => rows.map((r) => r.getAttribute("data-name")));
    expect(await names()).toEqual(["orders-db", "scratch"]);
    await page.click('[data-testid="sort-name"]');
    expect(await names()).toEqual(["scratch", "orders-db"]);
    await page.click('[data-testid="sort-name"]');
    expect(await names()).toEqual(["orders-db", "scratch"]);
    await page.type('[data-testid="filter"]', "scra");
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('[data-testid="fleet-row"]').length === 1);
    expect(await page.$('[data-testid="fleet-row"][data-name="orders-db"]')).toBeNull();
    await page.click('[data-testid="fleet-row"][data-name="scratch"] a');
    await page.waitForSelector('[data-testid="instance"][data-name="scratch"]');
    await page.click('[data-testid="action-delete"]');
    await page.waitForSelector('[data-testid="confirm"]');
    await page.click('[data-testid="keep-volumes"]');
    await shot("09-confirm-delete");
    await page.click('[data-testid="confirm-go"]');
    await page.waitForSelector('[data-testid="workflow"][data-status="succeeded"]', { timeout: 60_000 });
    const all = await coord.views.listInstances({ includeDeleted: true });
    expect(all.find((i) => i.name === "scratch")).toBeUndefined();
    const archived = all.find((i) => i.name.startsWith("scratch") && i.state === "deleted");
    expect(archived).toBeTruthy();
    // The kept volume is still in EC2.
    const kept = await env.ec2.findInstances({ "spotkeep:instance": "scratch" });
    expect(kept.every((i) => i.state !== "running")).toBe(true);
  }, 90_000);

  it("falls back to polling when the event stream is refused, and resumes a paused instance from the page", async () => {
    const polling = await browser.newPage();
    const own: string[] = [];
    polling.on("console", (m) => {
      // The refused stream itself is logged by the browser; it is what this case sets up.
      if ((m.type() === "error" || m.type() === "warn") && !m.location().url?.includes("/api/v1/stream"))
        own.push(`${m.type()}: ${m.text()}`);
    });
    polling.on("pageerror", (e) => own.push(`pageerror: ${(e as Error).message}`));
    await polling.setRequestInterception(true);
    polling.on("request", (r) => {
      if (r.url().endsWith("/api/v1/stream")) void r.respond({ status: 503, contentType: "application/json", body: "{}" });
      else void r.continue();
    });
    try {
      await polling.goto(`${coord.url}/`);
      await polling.type("#token", TOKEN);
      await polling.click('[data-testid="signin"] button[type="submit"]');
      await polling.waitForSelector('[data-testid="fleet-row"][data-name="orders-db"][data-state="running"]');
      await polling.waitForSelector('::-p-xpath(//*[@data-testid="live-mode" and text()="polling"])');
      const { workflowId } = await coord.views.runOperation!("orders-db", "pause");
      await polling.waitForSelector('[data-testid="fleet-row"][data-name="orders-db"][data-state="paused"]', { timeout: 60_000 });
      expect((await coord.views.getWorkflow(workflowId))!.status).toBe("succeeded");
      await polling.click('[data-testid="fleet-row"][data-name="orders-db"] a');
      await polling.waitForSelector('[data-testid="action-resume"]');
      expect(await polling.$('[data-testid="action-pause"]')).toBeNull();
      // The buttons are exactly the API's allowedActions (a spec update is the CLI's).
      const buttons = await polling.$$eval('[data-testid="actions"] button', (els) => els.map((e) => e.getAttribute("data-testid")));
      const allowed = (await coord.views.getInstance("orders-db"))!.allowedActions.filter((a) => a !== "update");
      expect(buttons.sort()).toEqual(allowed.map((a) => `action-${a}`).sort());
      expect(allowed.sort()).toEqual(["delete", "resume"]);
      await polling.click('[data-testid="action-resume"]');
      await polling.waitForSelector('[data-testid="confirm"]');
      await polling.click('[data-testid="confirm-go"]');
      await polling.waitForSelector('[data-testid="workflow"][data-status="succeeded"]', { timeout: 60_000 });
      await polling.waitForSelector('[data-testid="instance-state"]::-p-text(running)', { timeout: 30_000 });
      expect((await coord.views.getInstance("orders-db"))!.state).toBe("running");
      await polling.screenshot({ path: join(SHOTS, "10-resumed-polling.png"), fullPage: true });
      expect(own).toEqual([]);
    } finally {
      await polling.close();
    }
  }, 120_000);

  it("ran every page without a browser console error (CSP violations included)", () => {
    expect(problems).toEqual([]);
  });
});
