import { GetCallerIdentityCommand, STSClient, STSServiceException } from "@aws-sdk/client-sts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalCloud, startLocalCloud } from "../../localcloud/index.js";

let lc: LocalCloud;
let sts: STSClient;

beforeAll(async () => {
  lc = await startLocalCloud({ port: 0, runtime: "none", log: () => undefined });
  sts = new STSClient({
    region: "us-east-1",
    endpoint: lc.endpoint,
    credentials: { accessKeyId: "x", secretAccessKey: "y" },
    maxAttempts: 1,
  });
});
afterAll(async () => {
  sts?.destroy();
  await lc?.stop();
});

describe("localcloud STS", () => {
  it("answers GetCallerIdentity through the unmodified SDK with the account EC2 resources belong to", async () => {
    const r = await sts.send(new GetCallerIdentityCommand({}));
    expect(r.Account).toBe("123456789012");
    expect(r.Arn).toMatch(/^arn:aws:sts::123456789012:assumed-role\//);
    expect(r.UserId).toBeTruthy();
  });

  it("answers GetCallerIdentity even when an IAM policy denies everything, as AWS does", async () => {
    await fetch(`${lc.endpoint}/_localcloud/v1/iam/policy`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Deny", Action: "*", Resource: "*" }] }),
    });
    try {
      expect((await sts.send(new GetCallerIdentityCommand({}))).Account).toBe("123456789012");
    } finally {
      await fetch(`${lc.endpoint}/_localcloud/v1/iam/policy`, { method: "DELETE" });
    }
  });

  it("refuses other actions and parameters with STS's error codes", async () => {
    const signed = (body: string) =>
      fetch(lc.endpoint, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          authorization: "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
        },
        body,
      });
    const assume = await signed("Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::123456789012:role/x&RoleSessionName=s");
    expect(assume.status).toBe(400);
    expect(await assume.text()).toMatch(/<Code>InvalidAction<\/Code>/);
    const extra = await signed("Action=GetCallerIdentity&Version=2011-06-15&Foo=1");
    expect(await extra.text()).toMatch(/<Code>InvalidParameterValue<\/Code>.*Foo/);
    const noVersion = await signed("Action=GetCallerIdentity");
    expect(await noVersion.text()).toMatch(/<Code>MissingParameter<\/Code>/);
  });

  it("passes an injected fault through as STS's error", async () => {
    lc.world.faults.push({ action: "GetCallerIdentity", code: "ExpiredToken", count: 1 });
    const err = await sts.send(new GetCallerIdentityCommand({})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(STSServiceException);
    expect((err as STSServiceException).name).toBe("ExpiredToken");
  });
});
