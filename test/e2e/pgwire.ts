/**
 * A tiny PostgreSQL wire-protocol client (v3, simple query, trust auth only) for the end-to-end
 * run: enough to INSERT, SELECT and know exactly when a COMMIT returned. It avoids adding the `pg`
 * package for a test. With synchronous_commit on, CommandComplete of an autocommit INSERT comes
 * only after the commit record is flushed: that is our "acknowledged".
 */
import { connect, type Socket } from "node:net";

export class PgError extends Error {
  override name = "PgError";
  constructor(
    message: string,
    readonly code: string | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface QueryResult {
  /** The CommandComplete tag of the last statement, e.g. "INSERT 0 1". */
  command: string;
  rows: Array<Array<string | null>>;
}

interface Pending {
  rows: Array<Array<string | null>>;
  command: string;
  error: PgError | null;
  resolve: (r: QueryResult) => void;
  reject: (e: Error) => void;
}

function cstrings(parts: string[]): Buffer {
  return Buffer.concat(parts.map((p) => Buffer.from(`${p}\0`, "utf8")));
}

function errorFields(body: Buffer): { message: string; code: string | null } {
  let message = "";
  let code: string | null = null;
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const field = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    const value = body.toString("utf8", i + 1, end);
    if (field === "M") message = value;
    if (field === "C") code = value;
    i = end + 1;
  }
  return { message, code };
}

export class PgConnection {
  private buf: Buffer = Buffer.alloc(0);
  private pending: Pending | null = null;
  private ready: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private closedWith: Error | null = null;

  private constructor(
    private readonly socket: Socket,
    readonly where: string,
  ) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.fail(new PgError(`${where}: ${err.message}`, null, { cause: err })));
    socket.on("close", () => this.fail(new PgError(`${where}: connection closed`, null)));
  }

  /** Connects and authenticates (trust); rejects after `timeoutMs` real ms. */
  static connect(o: { host: string; port?: number; user?: string; database?: string; timeoutMs?: number }): Promise<PgConnection> {
    const where = `postgres at ${o.host}:${o.port ?? 5432}`;
    return new Promise((resolve, reject) => {
      const socket = connect({ host: o.host, port: o.port ?? 5432 });
      const conn = new PgConnection(socket, where);
      const timer = setTimeout(() => {
        conn.close();
        reject(new PgError(`${where}: connect timed out after ${o.timeoutMs ?? 5000} ms`, null));
      }, o.timeoutMs ?? 5000);
      conn.ready = {
        resolve: () => {
          clearTimeout(timer);
          resolve(conn);
        },
        reject: (e) => {
          clearTimeout(timer);
          conn.close();
          reject(e);
        },
      };
      socket.once("connect", () => {
        const params = cstrings(["user", o.user ?? "postgres", "database", o.database ?? "postgres", ""]);
        const head = Buffer.alloc(8);
        head.writeInt32BE(8 + params.length, 0);
        head.writeInt32BE(196608, 4); // protocol 3.0
        socket.write(Buffer.concat([head, params]));
      });
    });
  }

  /** One simple-protocol query; rejects on an ErrorResponse, a lost connection or after `timeoutMs`. */
  query(sql: string, timeoutMs = 5000): Promise<QueryResult> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.pending || this.ready) return Promise.reject(new PgError(`${this.where}: a query is already running`, null));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new PgError(`${this.where}: query timed out after ${timeoutMs} ms: ${sql.slice(0, 80)}`, null));
      }, timeoutMs);
      this.pending = {
        rows: [],
        command: "",
        error: null,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const text = Buffer.from(`${sql}\0`, "utf8");
      const head = Buffer.alloc(5);
      head.write("Q", 0, "ascii");
      head.writeInt32BE(4 + text.length, 1);
      this.socket.write(Buffer.concat([head, text]));
    });
  }

  close(): void {
    this.fail(new PgError(`${this.where}: closed by the client`, null));
  }

  private fail(err: Error): void {
    if (!this.closedWith) this.closedWith = err;
    this.socket.destroy();
    const p = this.pending;
    const r = this.ready;
    this.pending = null;
    this.ready = null;
    p?.reject(err);
    r?.reject(err);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 5) {
      const len = this.buf.readInt32BE(1);
      if (this.buf.length < 1 + len) return;
      const type = String.fromCharCode(this.buf[0]!);
      const body = this.buf.subarray(5, 1 + len);
      this.buf = this.buf.subarray(1 + len);
      this.onMessage(type, body);
    }
  }

  private onMessage(type: string, body: Buffer): void {
    switch (type) {
      case "R": {
        const code = body.readInt32BE(0);
        if (code !== 0) this.fail(new PgError(`${this.where}: authentication method ${code} is not supported (use trust)`, null));
        return;
      }
      case "E": {
        const f = errorFields(body);
        const err = new PgError(`${this.where}: ${f.message}`, f.code);
        if (this.ready) return this.fail(err);
        if (this.pending) this.pending.error = err;
        return;
      }
      case "T":
        return;
      case "D": {
        const n = body.readInt16BE(0);
        const row: Array<string | null> = [];
        let i = 2;
        for (let c = 0; c < n; c++) {
          const l = body.readInt32BE(i);
          i += 4;
          if (l < 0) row.push(null);
          else {
            row.push(body.toString("utf8", i, i + l));
            i += l;
          }
        }
        this.pending?.rows.push(row);
        return;
      }
      case "C":
        if (this.pending) this.pending.command = body.toString("utf8", 0, Math.max(0, body.length - 1));
        return;
      case "Z": {
        const r = this.ready;
        if (r) {
          this.ready = null;
          r.resolve();
          return;
        }
        const p = this.pending;
        this.pending = null;
        if (!p) return;
        if (p.error) p.reject(p.error);
        else p.resolve({ command: p.command, rows: p.rows });
        return;
      }
      default:
        return; // S (parameter status), K (backend key), N (notice), I (empty query)
    }
  }
}
