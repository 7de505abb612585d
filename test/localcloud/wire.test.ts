/** The Query wire format itself: malformed requests get EC2-style errors, never a crash (raw HTTP). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DescribeAvailabilityZonesCommand } from "@aws-sdk/client-ec2";
import { startEnv, type Env } from "./helpers.js";

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env?.stop();
});

async function post(body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`${env.cloud.endpoint}/`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8", ...headers },
    body,
  });
  const text = await res.text();
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
  return { status: res.status, text, code, message, requestId: res.headers.get("x-amzn-requestid"), type: res.headers.get("content-type") };
}

describe("EC2 Query wire format", () => {
  it("answers with <ActionResponse xmlns>, requestId in body and header, and item lists", async () => {
    const r = await post("Action=DescribeAvailabilityZones&Version=2016-11-15");
    expect(r.status).toBe(200);
    expect(r.type).toBe("text/xml;charset=UTF-8");
    expect(r.text).toMatch(
      /^<\?xml version="1.0" encoding="UTF-8"\?>\n<DescribeAvailabilityZonesResponse xmlns="http:\/\/ec2.amazonaws.com\/doc\/2016-11-15\/">/,
    );
    expect(r.text).toContain(`<requestId>${r.requestId}</requestId>`);
    expect(r.text).toMatch(/<availabilityZoneInfo><item>.*<zoneName>us-east-1a<\/zoneName>.*<\/item><item>/);
  });

  it("accepts GET with a query string", async () => {
    const res = await fetch(`${env.cloud.endpoint}/?Action=DescribeAvailabilityZones&Version=2016-11-15&ZoneName.1=us-east-1c`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toContain("<zoneName>us-east-1c</zoneName>");
    expect(text).not.toContain("us-east-1a");
  });

  it.each([
    ["an unknown action", "Action=LaunchRockets&Version=2016-11-15", "InvalidAction", 400],
    ["an SDK action localcloud does not implement", "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0/16", "InvalidAction", 400],
    ["no action", "Version=2016-11-15", "MissingAction", 400],
    ["no version", "Action=DescribeAvailabilityZones", "MissingParameter", 400],
    ["an unknown parameter", "Action=DescribeInstances&Version=2016-11-15&Colour=blue", "UnknownParameter", 400],
    ["an unknown nested parameter", "Action=DescribeInstances&Version=2016-11-15&Filter.1.Nme=x", "UnknownParameter", 400],
    ["a non-numeric list index", "Action=DescribeInstances&Version=2016-11-15&InstanceId.first=i-1", "InvalidParameterValue", 400],
    ["a list sent as a scalar", "Action=DescribeInstances&Version=2016-11-15&InstanceId=i-0123456789abcdef0", "InvalidParameterValue", 400],
    [
      "a non-integer MinCount",
      "Action=RunInstances&Version=2016-11-15&ImageId=ami-1&MinCount=one&MaxCount=1",
      "InvalidParameterValue",
      400,
    ],
    ["a non-boolean DryRun", "Action=DescribeInstances&Version=2016-11-15&DryRun=yes", "InvalidParameterValue", 400],
    ["a bad timestamp", "Action=DescribeSpotPriceHistory&Version=2016-11-15&StartTime=yesterday", "InvalidParameterValue", 400],
    ["broken percent-encoding", "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=%zz", "MalformedQueryString", 400],
    ["a duplicated parameter", "Action=DescribeInstances&Version=2016-11-15&Version=2016-11-15", "InvalidParameterValue", 400],
    ["an empty key", "Action=DescribeInstances&Version=2016-11-15&=x", "MalformedQueryString", 400],
    ["a key with an empty segment", "Action=DescribeInstances&Version=2016-11-15&Filter..Name=x", "InvalidParameterValue", 400],
    ["MinCount missing", "Action=RunInstances&Version=2016-11-15&ImageId=ami-0123456789abcdef0&MaxCount=1", "MissingParameter", 400],
  ])("rejects %s with an EC2 error document", async (_what, body, code, status) => {
    const r = await post(body);
    expect({ status: r.status, code: r.code }).toEqual({ status, code });
    expect(r.text).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<Response><Errors><Error><Code>/);
    expect(r.text).toMatch(/<RequestID>[0-9a-f-]{36}<\/RequestID><\/Response>$/);
    expect(r.message?.length).toBeGreaterThan(5);
  });

  it("names the offending parameter in type errors", async () => {
    const r = await post(
      "Action=RunInstances&Version=2016-11-15&ImageId=ami-1&MinCount=1&MaxCount=1&BlockDeviceMapping.1.Ebs.VolumeSize=big",
    );
    expect(r.code).toBe("InvalidParameterValue");
    expect(r.message).toContain("BlockDeviceMapping.1.Ebs.VolumeSize");
  });

  it("rejects a huge body with 413 and keeps serving", async () => {
    const big = `Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=x&Filter.1.Value.1=${"a".repeat(2 * 1024 * 1024)}`;
    const r = await post(big);
    expect({ status: r.status, code: r.code }).toEqual({ status: 413, code: "RequestEntityTooLarge" });
    const ok = await env.ec2.send(new DescribeAvailabilityZonesCommand({}));
    expect(ok.AvailabilityZones).toHaveLength(3);
  });

  it("rejects a non-form content type and unsupported methods", async () => {
    const j = await post(JSON.stringify({ Action: "DescribeInstances" }), { "content-type": "application/json" });
    expect({ status: j.status, code: j.code }).toEqual({ status: 400, code: "InvalidParameterValue" });
    const del = await fetch(`${env.cloud.endpoint}/`, { method: "DELETE" });
    expect(del.status).toBe(405);
    expect(await del.text()).toContain("<Code>InvalidHttpRequest</Code>");
  });

  it("survives binary garbage and broken HTTP framing", async () => {
    const r = await post(Buffer.from([0xff, 0xfe, 0x00, 0x26, 0x3d, 0x25]));
    expect(r.status).toBe(400);
    const net = await import("node:net");
    const url = new URL(env.cloud.endpoint);
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect(Number(url.port), url.hostname, () => s.write("NOT HTTP AT ALL\r\n\r\n"));
      let buf = "";
      s.on("data", (d) => (buf += d.toString()));
      s.on("close", () => resolve(buf));
      s.on("error", () => resolve(buf));
    });
    expect(reply).toMatch(/^HTTP\/1.1 400/);
    const ok = await env.ec2.send(new DescribeAvailabilityZonesCommand({}));
    expect(ok.AvailabilityZones).toHaveLength(3);
  });
});

describe("startLocalCloud", () => {
  it("fails clearly when the port is taken and leaves nothing running", async () => {
    const { startLocalCloud } = await import("../../localcloud/index.js");
    const port = Number(new URL(env.cloud.endpoint).port);
    await expect(startLocalCloud({ port, runtime: "none", log: () => {} })).rejects.toThrow(/listening on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
  });

  it("answers <return>true</return> for actions without output members", async () => {
    const r = await post(`Action=CreateTags&Version=2016-11-15&ResourceId.1=${env.cloud.world.baseImageId}&Tag.1.Key=k&Tag.1.Value=v`);
    expect(r.text).toContain("<return>true</return></CreateTagsResponse>");
  });
});
