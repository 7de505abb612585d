import { describe, expect, it } from "vitest";
import { healthText } from "../../cli/health-text.js";

describe("healthText", () => {
  it("shows the status and since when, the reason on request, and - without health checks", () => {
    const h = {
      type: "agent" as const,
      status: "unhealthy" as const,
      since: "2026-11-26T10:02:03.456Z",
      reason: "the agent has been silent for 40 s",
    };
    expect(healthText(h)).toBe("unhealthy since 2026-11-26T10:02:03Z");
    expect(healthText(h, { reason: true })).toBe("unhealthy since 2026-11-26T10:02:03Z (the agent has been silent for 40 s)");
    expect(healthText({ ...h, status: "unknown", since: null, reason: null }, { reason: true })).toBe("unknown");
    expect(healthText(null)).toBe("-");
    expect(healthText(undefined)).toBe("-");
  });
});
