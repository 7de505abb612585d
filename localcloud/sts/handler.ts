/**
 * STS in the AWS Query protocol `@aws-sdk/client-sts` speaks (POST /, form-encoded,
 * `Version=2011-06-15`, XML answers, errors as `<ErrorResponse><Error><Type/><Code/><Message/>`),
 * with the one action the coordinator calls: GetCallerIdentity, which answers the account, ARN and
 * user id of the credentials that signed the request. It shares the port with the EC2 Query API:
 * a request is STS's when its SigV4 credential scope names the `sts` service. As on AWS,
 * GetCallerIdentity needs no IAM permission (an explicit deny does not stop it), takes no
 * parameters, and any other action is `InvalidAction`.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { xmlEscape } from "../ec2/codec.js";
import { Ec2Error } from "../ec2/errors.js";
import { parseForm } from "../ec2/query.js";
import { PRINCIPAL } from "../iam/message.js";
import { ACCOUNT_ID } from "../world/catalog.js";
import type { World } from "../world/world.js";

export const STS_VERSION = "2011-06-15";
export const STS_ACTIONS = ["GetCallerIdentity"] as const;
const XMLNS = `https://sts.amazonaws.com/doc/${STS_VERSION}/`;
/** STS's own limit on a Query request body is far larger; nothing localcloud implements needs more. */
const MAX_BODY_BYTES = 64 * 1024;

export function isStsRequest(req: IncomingMessage): boolean {
  const auth = req.headers.authorization;
  return typeof auth === "string" && /Credential=[^/,\s]+\/\d{8}\/[a-z0-9-]+\/sts\/aws4_request/.test(auth);
}

/** An STS error as the wire carries it (`Sender` faults are 400). */
export class StsError extends Error {
  override name = "StsError";
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners("data");
        req.resume();
        reject(new StsError("ValidationError", `Request body is larger than ${MAX_BODY_BYTES} bytes`, 413));
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export async function handleSts(req: IncomingMessage, res: ServerResponse, deps: { world: World }): Promise<void> {
  const requestId = randomUUID();
  const send = (status: number, body: string) => {
    if (res.headersSent) return;
    res.writeHead(status, { "content-type": "text/xml", "x-amzn-requestid": requestId, "content-length": Buffer.byteLength(body) });
    res.end(body);
  };
  try {
    if (req.method !== "POST") {
      req.resume();
      throw new StsError("InvalidAction", `The HTTP method ${req.method} is not supported: use POST on /`, 405);
    }
    let form: Map<string, string>;
    try {
      form = parseForm(await readBody(req));
    } catch (err) {
      if (err instanceof Ec2Error) throw new StsError("MalformedQueryString", err.message);
      throw err;
    }
    const action = form.get("Action");
    const version = form.get("Version");
    form.delete("Action");
    form.delete("Version");
    if (!action) throw new StsError("MissingAction", "Missing Action");
    if (!version) throw new StsError("MissingParameter", "The request must contain the parameter Version");
    if (version !== STS_VERSION) throw new StsError("InvalidParameterValue", `Version '${version}' is not ${STS_VERSION}`);
    if (action !== "GetCallerIdentity")
      throw new StsError(
        "InvalidAction",
        `Could not find operation ${action} for version ${STS_VERSION} (localcloud implements ${STS_ACTIONS.join(", ")})`,
      );
    const extra = [...form.keys()];
    if (extra.length)
      throw new StsError("InvalidParameterValue", `GetCallerIdentity takes no parameters; got ${extra.slice(0, 5).join(", ")}`);
    const fault = deps.world.takeFault(action);
    if (fault) throw new StsError(fault.code, fault.message ?? `localcloud injected fault: ${fault.code}`);
    send(
      200,
      `<?xml version="1.0" encoding="UTF-8"?>\n<GetCallerIdentityResponse xmlns="${XMLNS}"><GetCallerIdentityResult>` +
        `<Arn>${xmlEscape(PRINCIPAL.arn)}</Arn><UserId>${xmlEscape(PRINCIPAL.id)}</UserId><Account>${ACCOUNT_ID}</Account>` +
        `</GetCallerIdentityResult><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
    );
  } catch (err) {
    if (err instanceof StsError) {
      send(
        err.status,
        `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${XMLNS}"><Error><Type>Sender</Type><Code>${xmlEscape(err.code)}</Code>` +
          `<Message>${xmlEscape(err.message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      );
      return;
    }
    deps.world.log(`internal error in STS request: ${(err as Error)?.stack ?? String(err)}`);
    send(
      500,
      `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${XMLNS}"><Error><Type>Receiver</Type><Code>InternalFailure</Code>` +
        `<Message>${xmlEscape((err as Error)?.message ?? String(err))}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
    );
  }
}
