import { describe, expect, it } from "vitest";
import { blockDevicesInfo, parseLsblkPairs } from "../../agent/storage/inventory.js";

describe("block device facts from lsblk", () => {
  it("parses lsblk -bP pairs, including escaped bytes and empty values", () => {
    const text = [
      'NAME="nvme1n1" TYPE="disk" SIZE="107374182400" FSTYPE="ext4" MOUNTPOINT="/var/lib/my\\x20data" UUID="0b1c-2d"',
      'NAME="/dev/loop3" TYPE="loop" SIZE="33554432" FSTYPE="" MOUNTPOINT="" UUID=""',
      "",
      "garbage line",
    ].join("\n");
    expect(parseLsblkPairs(text)).toEqual([
      { name: "nvme1n1", type: "disk", fsType: "ext4", mount: "/var/lib/my data", size: 107374182400, uuid: "0b1c-2d" },
      { name: "loop3", type: "loop", fsType: "", mount: "", size: 33554432, uuid: "" },
    ]);
  });

  it("answers [] rather than failing when lsblk cannot run in time", async () => {
    expect(Array.isArray(await blockDevicesInfo(1))).toBe(true);
  });
});
