/**
 * The application's health endpoint, probed on the instance: GET http://127.0.0.1:PORT/PATH every
 * interval (the coordinator's welcome.config.healthCheck), any 2xx within the timeout is healthy.
 * The last result rides on every heartbeat; the coordinator decides what it means. The body is
 * never read beyond discarding it, and a probe never outlives its timeout.
 */
import { type ClientRequest, request } from "node:http";
import type { Clock } from "../../shared/clock.js";
import type { MessageOf } from "../../shared/protocol.js";
import type { Logger } from "../log.js";

export type HealthCheckConfig = NonNullable<MessageOf<"welcome">["config"]["healthCheck"]>;
export type HealthReport = NonNullable<MessageOf<"heartbeat">["health"]>;

/** One GET; resolves (never rejects) with the verdict. `timeoutMs` is real time. */
export function probeOnce(port: number, path: string, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    let settled = false;
    let req: ClientRequest | null = null;
    const timer = setTimeout(() => done(false, `no answer within ${timeoutMs} ms`), timeoutMs);
    function done(ok: boolean, detail: string): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req?.destroy();
      resolve({ ok, detail: detail.slice(0, 256) });
    }
    try {
      req = request({ host: "127.0.0.1", port, path, method: "GET", headers: { "user-agent": "spotkeep-agent health check" } }, (res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        done(status >= 200 && status < 300, `HTTP ${status}`);
      });
      req.on("error", (err) => done(false, (err as NodeJS.ErrnoException).code ?? err.message));
      req.end();
    } catch (err) {
      // A path Node refuses to send (control characters): a failed check, never a crash.
      done(false, (err as Error).message);
    }
  });
}

export class HealthProbe {
  private config: HealthCheckConfig | null = null;
  private cancel: (() => void) | null = null;
  private generation = 0;
  private lastOk: boolean | null = null;
  report: HealthReport | undefined;

  constructor(
    private readonly o: {
      clock: Clock;
      log: Logger;
      /** Model ms -> real ms. */
      scale: (modelMs: number) => number;
      probe?: typeof probeOnce;
    },
  ) {}

  /** Start (or change, or stop with undefined) probing; the last result is forgotten when the target changes. */
  configure(config: HealthCheckConfig | undefined): void {
    const same = JSON.stringify(config ?? null) === JSON.stringify(this.config);
    if (same) return;
    this.stop();
    this.config = config ?? null;
    this.report = undefined;
    this.lastOk = null;
    if (config) this.tick(++this.generation);
  }

  stop(): void {
    this.generation++;
    this.cancel?.();
    this.cancel = null;
  }

  private tick(generation: number): void {
    const c = this.config;
    if (!c || generation !== this.generation) return;
    // The application answers in real time: a scaled-down timeout keeps a floor of half a second.
    const timeoutMs = Math.max(500, Math.round(this.o.scale(c.timeoutMs)));
    void (this.o.probe ?? probeOnce)(c.port, c.path, timeoutMs).then((r) => {
      if (generation !== this.generation) return;
      this.report = { ok: r.ok, detail: r.detail, checkedAt: new Date(this.o.clock.now()).toISOString() };
      if (r.ok !== this.lastOk)
        this.o.log[r.ok ? "info" : "warn"](`health check ${r.ok ? "passing" : "failing"}`, {
          port: c.port,
          path: c.path,
          detail: r.detail,
        });
      this.lastOk = r.ok;
      this.cancel = this.o.clock.setTimer(Math.max(1, this.o.scale(c.intervalMs)), () => this.tick(generation));
    });
  }
}
