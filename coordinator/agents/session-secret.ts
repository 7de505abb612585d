/**
 * The per-generation session secret an agent presents in every hello.
 *
 * The identity document proves which instance a hello is about, not who sent it: anything on the
 * instance that reaches IMDS can read and replay it. So the agent creates a random secret at its
 * first start (kept in a root-only file on the root disk) and the coordinator records a hash of it
 * at the first hello of that EC2 instance; every later hello must present the same secret.
 *
 * What holds at that first hello:
 *  - On a persisted root (the generation booted from an image of an earlier generation's root) the
 *    root carries that generation's secret file. At launch the store records the hash the source
 *    generation registered (`Generation.carriedSecret`); the first hello must present the carried
 *    secret, which matches it, before the agent's own new secret is registered. A hello that cannot
 *    (a process from the old root that starts before the bootstrap) is refused and registers
 *    nothing.
 *  - On a fresh root (the spec's image: generation 1 and every make-before-break replacement; an
 *    imported instance's first generation; a source generation that never registered a secret)
 *    nothing is carried: trust on first use. A process that says hello before the real agent wins
 *    the registration, and the real agent is then refused, loudly.
 *  - Root on the instance can read the secret file, carried or not.
 *
 * Why plain SHA-256 and not scrypt or an HMAC with a server key: the secret is at least 32
 * characters of the agent's CSPRNG output, so there is nothing to guess offline and a slow KDF
 * would only cost CPU (20,000 agents reconnecting after a coordinator restart). A stolen hash does
 * not open a session either: the hub needs the secret itself, not its hash.
 */
import { createHash, timingSafeEqual } from "node:crypto";

const PREFIX = "sha256:";

/** What the store records: `sha256:` and 64 lowercase hex digits. */
export function hashSessionSecret(secret: string): string {
  return PREFIX + createHash("sha256").update("spotkeep agent session secret\0").update(secret, "utf8").digest("hex");
}

/** Whether `secret` is the one whose hash was registered; constant time in the secret's content. */
export function sessionSecretMatches(secret: string, registeredHash: string): boolean {
  const presented = Buffer.from(hashSessionSecret(secret), "utf8");
  const registered = Buffer.from(registeredHash, "utf8");
  // Both are fixed-length hex when well-formed; a malformed registered value never matches.
  if (presented.length !== registered.length) return false;
  return timingSafeEqual(presented, registered);
}
