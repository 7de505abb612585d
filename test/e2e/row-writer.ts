/**
 * The client on the host: inserts numbered rows into `acked` at one private IP, continuously,
 * and records a number as acknowledged only when its autocommit INSERT returned CommandComplete.
 * A failed or timed-out INSERT is "uncertain" (it may or may not have committed) and its number
 * is never reused. Through outages it reconnects with a short pause.
 */
import { PgConnection } from "./pgwire.js";

export interface Outage {
  /** Real epoch ms of the last ack before, and the first ack after. */
  lastAckBefore: number;
  firstAckAfter: number;
}

/** Real ms between inserts (keeps the shared CPU free). */
export const WRITER_EVERY_MS = 10;
/** Real ms before a connect or an INSERT counts as failed. */
export const WRITER_TIMEOUT_MS = 3000;
/** Real ms the writer pauses after a failure before it connects again. */
export const WRITER_RETRY_MS = 100;

export class RowWriter {
  readonly acked: number[] = [];
  readonly uncertain: number[] = [];
  readonly outages: Outage[] = [];
  lastError = "";
  private next = 1;
  private stopped = false;
  private conn: PgConnection | null = null;
  private loop: Promise<void> | null = null;
  private lastAckAt = 0;
  private failing = false;

  constructor(
    readonly host: string,
    private readonly everyMs = WRITER_EVERY_MS,
    private readonly timeoutMs = WRITER_TIMEOUT_MS,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    this.conn?.close();
    this.conn = null;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        this.conn ??= await PgConnection.connect({ host: this.host, timeoutMs: this.timeoutMs });
        const n = this.next++;
        try {
          const r = await this.conn.query(`INSERT INTO acked (n) VALUES (${n})`, this.timeoutMs);
          if (r.command !== "INSERT 0 1") throw new Error(`unexpected reply ${JSON.stringify(r.command)}`);
        } catch (err) {
          this.uncertain.push(n);
          throw err;
        }
        const now = Date.now();
        this.acked.push(n);
        if (this.failing && this.lastAckAt) this.outages.push({ lastAckBefore: this.lastAckAt, firstAckAfter: now });
        this.failing = false;
        this.lastAckAt = now;
        await delay(this.everyMs);
      } catch (err) {
        this.lastError = (err as Error).message;
        this.failing = true;
        this.conn?.close();
        this.conn = null;
        await delay(WRITER_RETRY_MS);
      }
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
