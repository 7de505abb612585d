/**
 * localcloud's EventBridge ListRuleNamesByTarget in the AWS JSON 1.1 protocol: which rules send to a
 * queue's ARN, paged by Limit/NextToken, and AWS's error types for bad requests.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalCloud, startLocalCloud } from "../../localcloud/index.js";
import { ALL_DETAIL_TYPES } from "../../localcloud/world/events.js";
import { queueArn } from "../../localcloud/events/api.js";

let lc: LocalCloud;
let dir: string;

async function call(action: string, body: unknown): Promise<{ status: number; body: any; type: string | null }> {
  const res = await fetch(lc.endpoint, {
    method: "POST",
    headers: { "x-amz-target": `AWSEvents.${action}`, "content-type": "application/x-amz-json-1.1" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), type: res.headers.get("content-type") };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lc-events-api-"));
  lc = await startLocalCloud({
    port: 0,
    runtime: "none",
    profile: "instant",
    stateDir: dir,
    eventsQueue: "spotkeep-events",
    log: () => {},
  });
});
afterAll(async () => {
  await lc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("EventBridge ListRuleNamesByTarget", () => {
  it("names the rules that send to a queue, and none for another target", async () => {
    const r = await call("ListRuleNamesByTarget", { TargetArn: queueArn("spotkeep-events") });
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/x-amz-json-1.1");
    expect(r.body).toEqual({ RuleNames: ["spotkeep-interruptions"] });
    expect((await call("ListRuleNamesByTarget", { TargetArn: queueArn("other") })).body).toEqual({ RuleNames: [] });
  });

  it("pages with Limit and NextToken", async () => {
    for (const n of ["a-rule", "b-rule"]) lc.events.putRule({ name: n, queue: "spotkeep-events", detailTypes: [...ALL_DETAIL_TYPES] });
    try {
      const first = await call("ListRuleNamesByTarget", { TargetArn: queueArn("spotkeep-events"), Limit: 2 });
      expect(first.body).toEqual({ RuleNames: ["a-rule", "b-rule"], NextToken: "2" });
      const rest = await call("ListRuleNamesByTarget", { TargetArn: queueArn("spotkeep-events"), Limit: 2, NextToken: "2" });
      expect(rest.body).toEqual({ RuleNames: ["spotkeep-interruptions"] });
    } finally {
      lc.events.deleteRule("a-rule");
      lc.events.deleteRule("b-rule");
    }
  });

  it("answers bad requests with AWS's error types", async () => {
    expect(await call("ListRuleNamesByTarget", {})).toMatchObject({ status: 400, body: { __type: "ValidationException" } });
    expect(await call("ListRuleNamesByTarget", { TargetArn: "x", Limit: 0 })).toMatchObject({
      status: 400,
      body: { __type: "ValidationException" },
    });
    expect(await call("ListRuleNamesByTarget", { TargetArn: "x", NextToken: "nope" })).toMatchObject({
      status: 400,
      body: { __type: "ValidationException" },
    });
    expect(await call("ListRuleNamesByTarget", { TargetArn: "x", EventBusName: "other" })).toMatchObject({
      status: 400,
      body: { __type: "ResourceNotFoundException" },
    });
    expect(await call("ListRuleNamesByTarget", "{not json")).toMatchObject({ status: 400, body: { __type: "SerializationException" } });
    expect(await call("PutRule", { Name: "x" })).toMatchObject({ status: 400, body: { __type: "UnknownOperationException" } });
  });
});
