import { describe, expect, it } from "vitest";
import { descriptorPressure, openFiles, parseOpenFilesLimit } from "./process-limits.js";

describe("parseOpenFilesLimit", () => {
  it("reads the soft and hard limit of the Max open files line", () => {
    const limits = [
      "Limit                     Soft Limit           Hard Limit           Units     ",
      "Max processes             63413                63413                processes ",
      "Max open files            65536                1048576              files     ",
    ].join("\n");
    expect(parseOpenFilesLimit(limits)).toEqual({ soft: 65536, hard: 1048576 });
    expect(parseOpenFilesLimit("Max open files            unlimited            unlimited            files")).toEqual({
      soft: "unlimited",
      hard: "unlimited",
    });
    expect(parseOpenFilesLimit("Max processes 1 1")).toBeNull();
  });
});

describe("descriptorPressure", () => {
  it("is null below 90% of the soft limit", () => {
    expect(descriptorPressure({ open: 899, soft: 1000, hard: 4096 })).toBeNull();
    expect(descriptorPressure({ open: 10, soft: 1000, hard: 4096 })).toBeNull();
  });
  it("names the figures and the remedy from 90% on", () => {
    expect(descriptorPressure({ open: 900, soft: 1000, hard: 4096 })).toBe(
      "900 of 1000 open descriptors in use (90%, hard limit 4096): new agent sessions and API connections will soon be refused; " +
        "raise the limit (LimitNOFILE= in the systemd unit)",
    );
    expect(descriptorPressure({ open: 1000, soft: 1000, hard: "unlimited" })).toMatch(/^1000 of 1000 .*\(100%, hard limit unlimited\)/);
  });
  it("cannot judge without a count or a finite limit", () => {
    expect(descriptorPressure({ open: null, soft: 1000, hard: 1000 })).toBeNull();
    expect(descriptorPressure({ open: 5000, soft: "unlimited", hard: "unlimited" })).toBeNull();
    expect(descriptorPressure({ open: 5000, soft: null, hard: null })).toBeNull();
  });
  it("takes another threshold", () => {
    expect(descriptorPressure({ open: 500, soft: 1000, hard: 1000 }, 0.5)).toMatch(/^500 of 1000/);
  });
});

describe("openFiles", () => {
  it.skipIf(process.platform !== "linux")("counts this process's descriptors and reads its limits on Linux", () => {
    const o = openFiles();
    expect(o.open).toBeGreaterThan(2);
    expect(o.soft === "unlimited" || (typeof o.soft === "number" && o.soft >= (o.open ?? 0))).toBe(true);
  });
});
