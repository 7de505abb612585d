/**
 * The admin CLI's HTTP client. URL from --url, $SPOTKEEP_URL or http://127.0.0.1:7400; token from
 * --token, $SPOTKEEP_TOKEN or the coordinator's data dir (--data-dir, $SPOTKEEP_DATA_DIR,
 * ./spotkeep-data). Failures become one clear line (CliError) and a non-zero exit.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import { defaultDataDir, readTokenFile, TOKEN_FILE } from "../coordinator/api/token.js";
import { UsageError } from "./args.js";

export const DEFAULT_URL = "http://127.0.0.1:7400";

/** A failure the CLI reports as one line with exit code 1. */
export class CliError extends Error {
  override name = "CliError";
}

export const CLIENT_FLAGS = {
  url: { type: "string" },
  token: { type: "string" },
  "data-dir": { type: "string" },
  json: { type: "boolean" },
} as const;

export interface ClientFlags {
  url?: string;
  token?: string;
  "data-dir"?: string;
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  static fromFlags(flags: ClientFlags, env: NodeJS.ProcessEnv = process.env): ApiClient {
    const url = (flags.url ?? env.SPOTKEEP_URL ?? DEFAULT_URL).replace(/\/+$/, "");
    try {
      const u = new URL(url);
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
    } catch {
      throw new UsageError(`--url must be an http(s) URL, got ${JSON.stringify(url)}`);
    }
    let token = flags.token ?? env.SPOTKEEP_TOKEN;
    if (!token) {
      const file = join(flags["data-dir"] ?? defaultDataDir(env), TOKEN_FILE);
      if (!existsSync(file))
        throw new CliError(
          `no admin token: pass --token, set SPOTKEEP_TOKEN, or point --data-dir at the coordinator's data dir (${file} does not exist)`,
        );
      token = readTokenFile(file);
    }
    return new ApiClient(url, token);
  }

  async get<T>(path: string, schema: z.ZodType<T>): Promise<T> {
    return this.request("GET", path, undefined, schema);
  }

  async post<T>(path: string, body: string | undefined, schema: z.ZodType<T>, contentType = "application/json"): Promise<T> {
    return this.request("POST", path, body, schema, contentType);
  }

  async delete<T>(path: string, schema: z.ZodType<T>): Promise<T> {
    return this.request("DELETE", path, undefined, schema);
  }

  async put<T>(path: string, body: string | undefined, schema: z.ZodType<T>, contentType = "application/json"): Promise<T> {
    return this.request("PUT", path, body, schema, contentType);
  }

  private async request<T>(method: string, path: string, body: string | undefined, schema: z.ZodType<T>, contentType?: string): Promise<T> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.baseUrl + path, {
        method,
        body,
        headers: { authorization: `Bearer ${this.token}`, ...(contentType ? { "content-type": contentType } : {}) },
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const c = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
      const cause = c?.code ?? c?.errors?.[0]?.code ?? c?.message ?? (err as Error).message;
      throw new CliError(`cannot reach the coordinator at ${this.baseUrl} (${cause})`);
    }
    const text = await res.text();
    let data: unknown;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      throw new CliError(`the coordinator at ${this.baseUrl} answered ${res.status} with a non-JSON body`);
    }
    if (!res.ok) {
      const msg = (data as { error?: { message?: string } })?.error?.message ?? `HTTP ${res.status}`;
      if (res.status === 401) throw new CliError(`the coordinator refused the admin token: ${msg}`);
      throw new CliError(msg);
    }
    const parsed = schema.safeParse(data);
    if (!parsed.success)
      throw new CliError(`unexpected answer from the coordinator for ${method} ${path}: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Seconds with one decimal, or "-". */
export function secs(v: number | null | undefined): string {
  return v === null || v === undefined ? "-" : `${v.toFixed(1)}s`;
}
