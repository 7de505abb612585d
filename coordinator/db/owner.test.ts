import { describe, expect, it } from "vitest";
import { groupKey, ownerKey, ownerOf } from "./owner.js";

describe("workflow owners", () => {
  it("stores a group as group:NAME and an instance by its name, as earlier versions did", () => {
    expect(groupKey("web")).toBe("group:web");
    expect(ownerKey({ kind: "instance", name: "orders-db" })).toBe("orders-db");
    expect(ownerOf("group:web")).toEqual({ kind: "group", name: "web" });
    expect(ownerOf("orders-db")).toEqual({ kind: "instance", name: "orders-db" });
    expect(ownerOf("orders-db~2026-01-01T00:00:00.000Z")).toEqual({ kind: "instance", name: "orders-db~2026-01-01T00:00:00.000Z" });
  });
});
