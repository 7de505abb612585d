/**
 * One HTTP listener: the control API under /_localcloud/v1/, SQS (JSON requests with an
 * `X-Amz-Target: AmazonSQS.*` header), EventBridge's rule listing (`X-Amz-Target: AWSEvents.*`),
 * ELBv2 (Query requests signed for `elasticloadbalancing`), STS (Query requests signed for `sts`),
 * KMS (JSON requests signed for `kms`), the EC2 Query API everywhere else. Each request outside the
 * control API goes to the region its signature names (`regions.ts`); a region localcloud does not
 * serve gets the service's invalid-credentials error.
 */
import http from "node:http";
import { randomUUID } from "node:crypto";
import type { AddressInfo, Socket } from "node:net";
import { handleQuery } from "./ec2/query.js";
import { encodeError, xmlEscape } from "./ec2/codec.js";
import { CONTROL_PREFIX, handleControl, type ControlDeps } from "./control/api.js";
import { handleSqs, isSqsRequest } from "./sqs/handler.js";
import { handleEvents, isEventsRequest } from "./events/api.js";
import { ELBV2_VERSION, handleElbv2, isElbv2Request } from "./elbv2/query.js";
import { handleSts, isStsRequest, STS_VERSION } from "./sts/handler.js";
import { handleKms, isKmsRequest } from "./kms/api.js";
import type { Regions } from "./regions.js";
import type { Throttle } from "./throttle.js";

export interface HttpServerHandle {
  port: number;
  host: string;
  close(): Promise<void>;
}

/** The messages AWS answers a request for a region the account has not enabled with, per protocol. */
const INVALID_TOKEN = "The security token included in the request is invalid.";
const EC2_AUTH_FAILURE = "AWS was not able to validate the provided access credentials";

/** Refuse a request for a region this localcloud does not serve, in the protocol of its service. */
function refuseRegion(req: http.IncomingMessage, res: http.ServerResponse, why: string): void {
  req.resume();
  const requestId = randomUUID();
  const send = (status: number, type: string, body: string) => {
    res.writeHead(status, { "content-type": type, "x-amzn-requestid": requestId, "content-length": Buffer.byteLength(body) }).end(body);
  };
  const xmlError = (xmlns: string) =>
    `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${xmlns}"><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>` +
    `<Message>${xmlEscape(`${INVALID_TOKEN} ${why}`)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`;
  if (isSqsRequest(req)) {
    const body = JSON.stringify({ __type: "com.amazon.coral.service#UnrecognizedClientException", message: `${INVALID_TOKEN} ${why}` });
    res.writeHead(400, {
      "content-type": "application/x-amz-json-1.0",
      "x-amzn-requestid": requestId,
      "x-amzn-query-error": "InvalidClientTokenId;Sender",
    });
    res.end(body);
    return;
  }
  if (isEventsRequest(req) || isKmsRequest(req))
    return send(
      400,
      "application/x-amz-json-1.1",
      JSON.stringify({ __type: "UnrecognizedClientException", message: `${INVALID_TOKEN} ${why}` }),
    );
  if (isElbv2Request(req)) return send(403, "text/xml", xmlError(`http://elasticloadbalancing.amazonaws.com/doc/${ELBV2_VERSION}/`));
  if (isStsRequest(req)) return send(403, "text/xml", xmlError(`https://sts.amazonaws.com/doc/${STS_VERSION}/`));
  send(401, "text/xml;charset=UTF-8", encodeError("AuthFailure", `${EC2_AUTH_FAILURE}: ${why}`, requestId));
}

export async function startHttpServer(opts: {
  host: string;
  port: number;
  regions: Regions;
  throttle: Throttle;
  control: ControlDeps;
}): Promise<HttpServerHandle> {
  const sockets = new Set<Socket>();
  const home = opts.regions.home.world;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const control = path === CONTROL_PREFIX.slice(0, -1) || path.startsWith(CONTROL_PREFIX);
    const region = control ? opts.regions.home : opts.regions.forRequest(req);
    if ("unserved" in region) return refuseRegion(req, res, opts.regions.unservedReason(region.unserved));
    const { world } = region;
    const work = control
      ? handleControl(req, res, opts.control)
      : isSqsRequest(req)
        ? handleSqs(req, res, region.sqs)
        : isEventsRequest(req)
          ? handleEvents(req, res, region.events)
          : isElbv2Request(req)
            ? handleElbv2(req, res, { world, elb: region.elbv2 })
            : isStsRequest(req)
              ? handleSts(req, res, { world })
              : isKmsRequest(req)
                ? handleKms(req, res, { world })
                : handleQuery(req, res, { world, throttle: opts.throttle });
    work.catch((err: unknown) => {
      home.log(`unhandled request error: ${(err as Error)?.stack ?? String(err)}`);
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
