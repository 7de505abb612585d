/**
 * The authorization message a denied EC2 request carries ("Encoded authorization failure
 * message: …") and its decoding, shaped like what `aws sts decode-authorization-message` shows:
 * allowed, explicitDeny, matchedStatements, failures, and the context (action, resource,
 * condition keys). localcloud's encoding is deflated JSON in base64url: opaque to a client, decoded
 * by the control API.
 */
import { deflateRawSync, inflateRawSync } from "node:zlib";
import type { Context, Decision } from "./policy.js";

export interface DecodedAuthorizationMessage {
  allowed: boolean;
  explicitDeny: boolean;
  matchedStatements: { items: Array<{ statementId: string; effect: string }> };
  failures: {
    items: Array<{
      statementId: string;
      effect: string;
      failedConditions: Array<{ operator: string; key: string; policyValues: string[]; requestValues: string[] | null }>;
    }>;
  };
  context: {
    principal: { id: string; arn: string };
    action: string;
    resource: string;
    conditions: { items: Array<{ key: string; values: { items: Array<{ value: string }> } }> };
  };
}

export const PRINCIPAL = { id: "AROALOCALCLOUDSPOTKEEP:coordinator", arn: "arn:aws:sts::123456789012:assumed-role/localcloud/coordinator" };
/** Messages are small; anything bigger is not one of ours. */
const MAX_ENCODED = 64 * 1024;
const MAX_DECODED = 1024 * 1024;

export class MessageError extends Error {
  override name = "MessageError";
}

export function authorizationMessage(action: string, resource: string, context: Context, d: Decision): DecodedAuthorizationMessage {
  return {
    allowed: d.allowed,
    explicitDeny: d.explicitDeny,
    matchedStatements: { items: d.matched.map((m) => ({ statementId: m.sid, effect: m.effect })) },
    failures: {
      items: d.failed.map((f) => ({ statementId: f.sid, effect: f.effect, failedConditions: f.conditions })),
    },
    context: {
      principal: PRINCIPAL,
      action,
      resource,
      conditions: {
        items: [...context].map(([key, values]) => ({ key, values: { items: values.map((value) => ({ value })) } })),
      },
    },
  };
}

export function encodeMessage(m: DecodedAuthorizationMessage): string {
  return deflateRawSync(Buffer.from(JSON.stringify(m), "utf8")).toString("base64url");
}

export function decodeMessage(encoded: string): DecodedAuthorizationMessage {
  const text = encoded.trim();
  if (text === "") throw new MessageError("the encoded message is empty");
  if (text.length > MAX_ENCODED) throw new MessageError(`the encoded message is longer than ${MAX_ENCODED} characters`);
  if (!/^[A-Za-z0-9_-]+$/.test(text)) throw new MessageError("the encoded message is not base64url text");
  let json: string;
  try {
    json = inflateRawSync(Buffer.from(text, "base64url"), { maxOutputLength: MAX_DECODED }).toString("utf8");
  } catch {
    throw new MessageError("the encoded message is not one localcloud issued (it does not inflate)");
  }
  let m: unknown;
  try {
    m = JSON.parse(json);
  } catch {
    throw new MessageError("the encoded message is not one localcloud issued (not JSON)");
  }
  const o = m as Partial<DecodedAuthorizationMessage> | null;
  if (!o || typeof o.allowed !== "boolean" || typeof o.context?.action !== "string")
    throw new MessageError("the encoded message is not one localcloud issued (unexpected content)");
  return o as DecodedAuthorizationMessage;
}
