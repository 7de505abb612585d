/** Shared setup for the localcloud contract suite: a fresh localcloud and an SDK client for it. */
import { EC2Client } from "@aws-sdk/client-ec2";
import { rm } from "node:fs/promises";
import { expect } from "vitest";
import { startLocalCloud, type LocalCloud, type LocalCloudOptions } from "../../localcloud/index.js";

export interface Env {
  cloud: LocalCloud;
  ec2: EC2Client;
  stop(): Promise<void>;
}

export async function startEnv(opts: LocalCloudOptions = {}): Promise<Env> {
  const cloud = await startLocalCloud({ port: 0, profile: "instant", runtime: "none", log: () => {}, ...opts });
  const ec2 = new EC2Client({
    endpoint: cloud.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
    maxAttempts: 1,
  });
  return {
    cloud,
    ec2,
    async stop() {
      ec2.destroy();
      await cloud.stop();
      if (!opts.stateDir) await rm(cloud.stateDir, { recursive: true, force: true });
    },
  };
}

/** Assert an SDK call fails with exactly this EC2 error code and HTTP status. */
export async function expectEc2Error(p: Promise<unknown>, code: string, status: number): Promise<Error> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(Error);
  const e = err as Error & { $metadata?: { httpStatusCode?: number } };
  expect({ code: e.name, status: e.$metadata?.httpStatusCode }, e.message).toEqual({ code, status });
  return e;
}

/** Poll `fn` until it returns a truthy value (real time, bounded). */
export async function until<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function control(
  cloud: LocalCloud,
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${cloud.controlUrl}/${route}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON (certificate) */
  }
  return { status: res.status, json, text };
}

/** Waiter settings for the instant profile: poll every few ms, give up after 10 s. */
export function fast(env: Env) {
  return { client: env.ec2, maxWaitTime: 10, minDelay: 0.005, maxDelay: 0.02 };
}
