import { describe, expect, it } from "vitest";
import { parseConfig } from "./config.js";

describe("coordinator config: store", () => {
  it("is the SQLite store in dataDir unless store.url is given", () => {
    expect(parseConfig({}).store).toBeUndefined();
    expect(parseConfig({ store: { url: "postgres://spotkeep@db:5432/spotkeep" } }).store).toEqual({
      url: "postgres://spotkeep@db:5432/spotkeep",
      poolSize: 10,
      connectTimeoutSeconds: 10,
    });
    expect(parseConfig("store:\n  url: postgresql://u:p@db/spotkeep?sslmode=verify-full\n  poolSize: 4\n").store?.poolSize).toBe(4);
  });

  it.each([
    [{ store: { url: "mysql://db/spotkeep" } }, /store\.url: must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [{ store: { url: "postgres://db/spot keep" } }, /store\.url: must be a postgres/],
    [{ store: {} }, /store\.url/],
    [{ store: { url: "postgres://db/x", poolSize: 1 } }, /store\.poolSize/],
    [{ store: { url: "postgres://db/x", connectTimeoutSeconds: 0 } }, /store\.connectTimeoutSeconds/],
    [{ store: { url: "postgres://db/x", password: "x" } }, /store/],
  ])("refuses %j with the field named", (input, message) => {
    expect(() => parseConfig(input)).toThrow(message);
  });
});
