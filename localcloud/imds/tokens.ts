/**
 * IMDSv2 session tokens (PUT /latest/api/token with a TTL of 1..21600 s). Tokens are stateless:
 * nonce + expiry + an HMAC binding them to the instance that issued them, under a per-process
 * secret. So clients that fetch a fresh token before every request (the AWS SDK does) cost no
 * memory, a token is only valid on its own instance, and tokens die with the localcloud process
 * like AWS tokens die with a stop/start.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Clock } from "../../shared/clock.js";

export const TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds";
export const TOKEN_HEADER = "x-aws-ec2-metadata-token";
export const MAX_TOKEN_TTL_SECONDS = 21600;

/** The TTL header of a token PUT: an integer 1..21600, else null (-> 400). */
export function parseTokenTtl(raw: string | string[] | undefined): number | null {
  if (typeof raw !== "string" || !/^[0-9]{1,6}$/.test(raw.trim())) return null;
  const ttl = Number(raw.trim());
  return ttl >= 1 && ttl <= MAX_TOKEN_TTL_SECONDS ? ttl : null;
}

const NONCE = 16;
const EXPIRY = 8;
const MAC = 32;

export class TokenIssuer {
  private readonly secret = randomBytes(32);

  constructor(private readonly clock: Clock) {}

  issue(instanceId: string, ttlSeconds: number): string {
    const nonce = randomBytes(NONCE);
    const expiry = Buffer.alloc(EXPIRY);
    expiry.writeBigUInt64BE(BigInt(Math.floor(this.clock.now() + ttlSeconds * 1000)));
    return Buffer.concat([nonce, expiry, this.mac(instanceId, nonce, expiry)]).toString("base64");
  }

  /** Seconds the token has left on `instanceId` (>= 1), or null if invalid, foreign or expired. */
  remainingSeconds(token: string, instanceId: string): number | null {
    if (token.length > 200) return null;
    const raw = Buffer.from(token, "base64");
    if (raw.length !== NONCE + EXPIRY + MAC || raw.toString("base64") !== token) return null;
    const nonce = raw.subarray(0, NONCE);
    const expiry = raw.subarray(NONCE, NONCE + EXPIRY);
    if (!timingSafeEqual(raw.subarray(NONCE + EXPIRY), this.mac(instanceId, nonce, expiry))) return null;
    const left = Number(expiry.readBigUInt64BE()) - this.clock.now();
    return left > 0 ? Math.ceil(left / 1000) : null;
  }

  private mac(instanceId: string, nonce: Buffer, expiry: Buffer): Buffer {
    return createHmac("sha256", this.secret).update(instanceId).update("\0").update(nonce).update(expiry).digest();
  }
}
