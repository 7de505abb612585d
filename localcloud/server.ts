/**
 * One HTTP listener: the control API under /_localcloud/v1/, SQS (JSON requests with an
 * `X-Amz-Target: AmazonSQS.*` header), EventBridge's rule listing (`X-Amz-Target: AWSEvents.*`),
 * ELBv2 (Query requests signed for `elasticloadbalancing`), STS (Query requests signed for `sts`),
 * KMS (JSON requests signed for `kms`), the EC2 Query API everywhere else.
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { handleQuery, type QueryDeps } from "./ec2/query.js";
import { CONTROL_PREFIX, handleControl, type ControlDeps } from "./control/api.js";
import { handleSqs, isSqsRequest } from "./sqs/handler.js";
import { handleEvents, isEventsRequest } from "./events/api.js";
import { handleElbv2, isElbv2Request } from "./elbv2/query.js";
import type { Elbv2Service } from "./elbv2/targets.js";
import type { SqsService } from "./sqs/queues.js";
import { handleSts, isStsRequest } from "./sts/handler.js";
import { handleKms, isKmsRequest } from "./kms/api.js";

export interface HttpServerHandle {
  port: number;
  host: string;
  close(): Promise<void>;
}

export async function startHttpServer(opts: {
  host: string;
  port: number;
  query: QueryDeps;
  control: ControlDeps;
  sqs: SqsService;
  elbv2: Elbv2Service;
}): Promise<HttpServerHandle> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const work =
      path === CONTROL_PREFIX.slice(0, -1) || path.startsWith(CONTROL_PREFIX)
        ? handleControl(req, res, opts.control)
        : isSqsRequest(req)
          ? handleSqs(req, res, opts.sqs)
          : isEventsRequest(req)
            ? handleEvents(req, res, opts.control.events)
            : isElbv2Request(req)
              ? handleElbv2(req, res, { world: opts.query.world, elb: opts.elbv2 })
              : isStsRequest(req)
                ? handleSts(req, res, { world: opts.query.world })
                : isKmsRequest(req)
                  ? handleKms(req, res, { world: opts.query.world })
                  : handleQuery(req, res, opts.query);
    work.catch((err: unknown) => {
      opts.query.world.log(`unhandled request error: ${(err as Error)?.stack ?? String(err)}`);
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  // Bad HTTP framing gets a plain 400 instead of a crash or a hung socket.
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    else socket.destroy();
  });
  server.requestTimeout = 60_000;
  server.headersTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return {
    port: addr.port,
    host: opts.host,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
