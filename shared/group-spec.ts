/**
 * The stateful group spec: `kind: group`, a name, a size, the member template (the fields of a
 * stateful instance spec, without its name) and the group's private-IP pool. Members are named
 * `NAME-ORDINAL` (kafka-0, kafka-1, …); each is an ordinal stateful instance whose spec is the
 * template with that name, keeping its own ENI (and the pool address on it) across generations.
 */
import { z } from "zod";
import YAML from "yaml";
import { ValidationError } from "./errors.js";
import { StatefulInstanceSpec } from "./spec.js";
import { zodToValidationError } from "./zod-errors.js";

/** Room for "-" and an ordinal of up to four digits inside the 63 characters of a member's name. */
const GROUP_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,56}[a-z0-9])?$/;
export const MAX_GROUP_SIZE = 100;
const ipv4 = z.ipv4({ message: "is not an IPv4 address" });

export type MemberTemplate = Omit<StatefulInstanceSpec, "name">;

export const GroupSpec = z
  .object({
    kind: z.literal("group", { message: 'must be "group"' }),
    name: z.string().refine((n) => GROUP_NAME_RE.test(n), {
      error: (iss) =>
        `${JSON.stringify(iss.input)} must be 1-58 lowercase letters, digits or dashes, starting and ending with a letter or digit ` +
        "(member names add -ORDINAL)",
    }),
    size: z
      .number()
      .int({ message: "must be a whole number" })
      .min(0, { message: "must be 0 or more" })
      .max(MAX_GROUP_SIZE, { message: `must be at most ${MAX_GROUP_SIZE}` }),
    /** How many members planned work (recycle, update roll-out, scheduled tasks, …) may have down at once. */
    maxUnavailable: z.number().int({ message: "must be a whole number" }).min(1, { message: "must be at least 1" }).default(1),
    /** The addresses members draw from: each member keeps one for its whole life. */
    ipPool: z.array(ipv4).min(1, { message: "must list at least one address" }).max(1024, { message: "lists more than 1024 addresses" }),
    /** A stateful instance spec without `name`. */
    template: z.record(z.string(), z.unknown(), { message: "must be a mapping (a stateful instance spec without name)" }),
  })
  .strict()
  .transform((g, ctx) => {
    const add = (path: PropertyKey[], message: string) => ctx.addIssue({ code: "custom", path, message });
    g.ipPool.forEach((ip, i) => {
      if (g.ipPool.indexOf(ip) !== i) add(["ipPool", i], `repeats ipPool[${g.ipPool.indexOf(ip)}] (${ip})`);
    });
    if (g.size > g.ipPool.length) add(["size"], `${g.size} members need ${g.size} addresses; ipPool lists ${g.ipPool.length}`);
    if ("name" in g.template) add(["template", "name"], `members are named by the group (${g.name}-0, ${g.name}-1, …); leave name out`);
    const parsed = StatefulInstanceSpec.safeParse({ ...g.template, name: memberName(g.name, 0) });
    if (!parsed.success) {
      for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: ["template", ...issue.path] } as never);
      return z.NEVER;
    }
    const { name: _member, ...template } = parsed.data;
    const net = template.persistence.network;
    if (net.privateIp !== "same-eni")
      add(
        ["template", "persistence", "network", "privateIp"],
        `must be same-eni in a group (each member keeps its pool address on its own ENI); it is ${net.privateIp}`,
      );
    template.persistence.volumes.forEach((v, i) => {
      if (v.volumeId)
        add(["template", "persistence", "volumes", i, "volumeId"], "cannot be adopted by a group: every member has its own volumes");
      if (v.mountPoint && v.mountPoint.length > 1 && v.mountPoint.endsWith("/")) v.mountPoint = v.mountPoint.slice(0, -1);
    });
    return { kind: g.kind, name: g.name, size: g.size, maxUnavailable: g.maxUnavailable, ipPool: g.ipPool, template };
  });

export type GroupSpec = z.output<typeof GroupSpec>;
export type GroupSpecInput = z.input<typeof GroupSpec>;

export function memberName(group: string, ordinal: number): string {
  return `${group}-${ordinal}`;
}

/** The member's stateful instance spec: the template under the member's name. */
export function memberSpec(group: GroupSpec, ordinal: number): StatefulInstanceSpec {
  return structuredClone({ ...group.template, name: memberName(group.name, ordinal) });
}

/** Parse a group spec from JSON or YAML text (or an object); the ValidationError names every bad path. */
export function parseGroupSpec(input: string | unknown, source = "spec"): GroupSpec {
  let data: unknown = input;
  if (typeof input === "string") {
    try {
      const doc = YAML.parseDocument(input, { prettyErrors: true, uniqueKeys: true });
      if (doc.errors.length > 0) throw doc.errors[0];
      data = doc.toJS();
    } catch (err) {
      throw new ValidationError([{ path: source, reason: `is not valid JSON or YAML: ${(err as Error).message.split("\n")[0]}` }], {
        cause: err,
      });
    }
  }
  if (typeof data !== "object" || data === null || Array.isArray(data))
    throw new ValidationError([{ path: source, reason: "must be a mapping with kind: group, name, size, ipPool and template" }]);
  const parsed = GroupSpec.safeParse(data);
  if (!parsed.success) throw zodToValidationError(parsed.error);
  return parsed.data;
}
