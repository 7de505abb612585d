/**
 * The e2e's tiny PostgreSQL client against a scripted fake server (no PostgreSQL, no root): what
 * counts as an acknowledged COMMIT, errors, timeouts and lost connections.
 */
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { PgConnection } from "./pgwire.js";

function msg(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, "ascii");
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const cstr = (s: string) => Buffer.from(`${s}\0`);
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const ready = () => msg("Z", Buffer.from("I"));
function dataRow(values: Array<string | null>): Buffer {
  const n = Buffer.alloc(2);
  n.writeInt16BE(values.length);
  return msg(
    "D",
    Buffer.concat([n, ...values.map((v) => (v === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(v)), Buffer.from(v)])))]),
  );
}

/** A fake server: answers the startup with AuthenticationOk, then `onQuery(sql, socket)`. */
async function fakeServer(
  onQuery: (sql: string, s: Socket) => void,
  auth = 0,
): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    let buf = Buffer.alloc(0);
    let started = false;
    s.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (!started) {
        if (buf.length < 4 || buf.length < buf.readInt32BE(0)) return;
        buf = buf.subarray(buf.readInt32BE(0));
        started = true;
        s.write(
          Buffer.concat([
            msg("R", int32(auth)),
            ...(auth === 0 ? [msg("S", Buffer.concat([cstr("server_version"), cstr("15")])), ready()] : []),
          ]),
        );
      }
      while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
        const len = buf.readInt32BE(1);
        const sql = buf.toString("utf8", 5, len);
        buf = buf.subarray(1 + len);
        onQuery(sql, s);
      }
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as { port: number }).port, sockets };
}

let cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup) f();
  cleanup = [];
});

describe("the e2e's PostgreSQL wire client", () => {
  it("returns the CommandComplete tag and rows (NULLs included) once ReadyForQuery arrives", async () => {
    const f = await fakeServer((sql, s) => {
      if (sql.startsWith("INSERT")) s.write(Buffer.concat([msg("C", cstr("INSERT 0 1")), ready()]));
      else s.write(Buffer.concat([msg("T", Buffer.alloc(2)), dataRow(["1"]), dataRow([null]), msg("C", cstr("SELECT 2")), ready()]));
    });
    cleanup.push(() => f.server.close());
    const c = await PgConnection.connect({ host: "127.0.0.1", port: f.port });
    cleanup.push(() => c.close());
    expect(await c.query("INSERT INTO acked (n) VALUES (1)")).toEqual({ command: "INSERT 0 1", rows: [] });
    expect(await c.query("SELECT n FROM acked")).toEqual({ command: "SELECT 2", rows: [["1"], [null]] });
  });

  it("rejects with the server's message and SQLSTATE on an ErrorResponse, and stays usable", async () => {
    let n = 0;
    const f = await fakeServer((_sql, s) => {
      if (n++ === 0)
        s.write(
          Buffer.concat([msg("E", Buffer.concat([cstr("SERROR"), cstr("C23505"), cstr("Mduplicate key"), Buffer.from([0])])), ready()]),
        );
      else s.write(Buffer.concat([msg("C", cstr("INSERT 0 1")), ready()]));
    });
    cleanup.push(() => f.server.close());
    const c = await PgConnection.connect({ host: "127.0.0.1", port: f.port });
    cleanup.push(() => c.close());
    await expect(c.query("INSERT INTO acked (n) VALUES (1)")).rejects.toMatchObject({
      code: "23505",
      message: expect.stringContaining("duplicate key"),
    });
    expect((await c.query("INSERT INTO acked (n) VALUES (2)")).command).toBe("INSERT 0 1");
  });

  it("an INSERT whose reply never comes is not acknowledged: it times out, and so does a dropped connection", async () => {
    const f = await fakeServer((sql, s) => {
      if (sql.includes("(2)")) s.destroy();
    });
    cleanup.push(() => f.server.close());
    const c = await PgConnection.connect({ host: "127.0.0.1", port: f.port });
    await expect(c.query("INSERT INTO acked (n) VALUES (1)", 100)).rejects.toThrow(/timed out after 100 ms/);
    await expect(c.query("INSERT INTO acked (n) VALUES (3)")).rejects.toThrow(/timed out|closed/);
    const d = await PgConnection.connect({ host: "127.0.0.1", port: f.port });
    await expect(d.query("INSERT INTO acked (n) VALUES (2)", 5000)).rejects.toThrow(/closed/);
  });

  it("refuses password authentication clearly (the e2e uses trust)", async () => {
    const f = await fakeServer(() => undefined, 5);
    cleanup.push(() => f.server.close());
    await expect(PgConnection.connect({ host: "127.0.0.1", port: f.port, timeoutMs: 2000 })).rejects.toThrow(
      /authentication method 5 is not supported/,
    );
  });
});
