import { describe, expect, it } from "vitest";
import { Ec2Error } from "../cloud/errors.js";
import { StepFailedError } from "./engine.js";
import { Failure, failureKind, isPermanent, recordFailure, replayFailure, toFailureKind } from "./failure.js";

describe("failure kinds", () => {
  it("reads a Failure's kind and an EC2 error's class through step-failure wrappers", () => {
    expect(failureKind(new StepFailedError("launch", 3, new Failure("no-capacity", "none")))).toBe("no-capacity");
    expect(failureKind(new Ec2Error("attaching vol-1 to i-2", "VolumeInUse", ""))).toBe("transient-in-use");
    expect(failureKind(new Error("bug"))).toBe("error");
  });

  it("replays a recorded kind as the same kind", () => {
    const f = replayFailure(recordFailure(new Failure("resource-lost", "gone", { code: "X" })));
    expect([f.kind, f.code, f.message]).toEqual(["resource-lost", "X", "gone"]);
    expect(isPermanent(f)).toBe(true);
  });

  it("replays a kind recorded by another version that this one does not know as `error`, which is not permanent", () => {
    expect(toFailureKind("throttled")).toBe("error");
    const f = replayFailure({ kind: "some-future-kind", code: null, message: "failed" });
    expect(f.kind).toBe("error");
    expect(isPermanent(f)).toBe(false);
  });
});
