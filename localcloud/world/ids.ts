import { randomBytes } from "node:crypto";

/** EC2-style id: prefix + 17 hex digits. */
export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(9).toString("hex").slice(0, 17)}`;
}

export function newMac(): string {
  const b = randomBytes(5);
  return ["0e", ...[...b].map((x) => x.toString(16).padStart(2, "0"))].join(":");
}

export const ID_PREFIX = {
  instance: "i",
  volume: "vol",
  snapshot: "snap",
  image: "ami",
  eni: "eni",
  eniAttachment: "eni-attach",
  subnet: "subnet",
  reservation: "r",
  spotRequest: "sir",
  securityGroup: "sg",
  vpc: "vpc",
} as const;

/** True when `id` looks like `<prefix>-<8 or 17 hex digits>` (AWS accepts both lengths). */
export function wellFormed(id: string, prefix: string): boolean {
  return new RegExp(`^${prefix}-([0-9a-f]{8}|[0-9a-f]{17})$`).test(id);
}
