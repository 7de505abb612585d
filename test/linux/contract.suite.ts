import { mkdtempSync } from "node:fs";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtimeContract } from "../localcloud/runtime-contract.js";
import { shTry } from "../../localcloud/runtime/linux/sh.js";
import { createLinuxRuntime } from "../../localcloud/runtime/linux/index.js";

/**
 * Reads and writes a volume's content the way a host admin would: mount its filesystem (its loop
 * device if attached, else the backing file) in a throwaway private mount namespace, so nothing
 * shows on the host. A blank volume gets ext4 on first write.
 */
async function onVolume(file: string, script: string, env: Record<string, string>): Promise<string | null> {
  if (!existsSync(file)) return null;
  const body = [
    "set -e",
    `dev=$(losetup -j "$VOL" | cut -d: -f1 | head -n1)`,
    `if [ -z "$dev" ]; then dev=$(losetup -f --show "$VOL"); own=1; fi`,
    `trap '[ -n "$own" ] && losetup -d "$dev"' EXIT`,
    `if ! blkid -p "$dev" >/dev/null 2>&1; then [ "$MODE" = write ] || exit 3; mkfs.ext4 -q "$dev"; fi`,
    `m=$(mktemp -d); mount "$dev" "$m"`,
    script,
    `umount "$m"; rmdir "$m"`,
  ].join("\n");
  const r = await shTry("env", [
    ...Object.entries({ ...env, VOL: file }).map(([k, v]) => `${k}=${v}`),
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    body,
  ]);
  if (r.code === 3 || r.code === 4) return null;
  if (r.code !== 0) throw new Error(`volume ${file}: ${r.stderr}`);
  return r.stdout;
}

/** The shared Runtime contract against the linux runtime (register only where it can run). */
export function linuxContract(): void {
  runtimeContract("linux", async () => {
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-lc-contract-"));
    const make = () => createLinuxRuntime({ stateDir: dir, graceMs: 500, lockWaitMs: 120_000 });
    const runtime = make();
    const vol = (id: string) => join(dir, "volumes", `${id}.img`);
    return {
      runtime,
      dir,
      reopen: make,
      devicePath: (instanceId, name) => join(dir, "instances", instanceId, "dev", name),
      writeOnVolume: async (volumeId, name, content) => {
        const out = await onVolume(vol(volumeId), `printf %s "$CONTENT" > "$m/$NAME"; sync`, {
          MODE: "write",
          NAME: name,
          CONTENT: content,
        });
        if (out === null) throw new Error(`writeOnVolume: no volume ${volumeId}`);
      },
      readOnVolume: async (volumeId, name) =>
        onVolume(vol(volumeId), `if [ -f "$m/$NAME" ]; then cat "$m/$NAME"; else umount "$m"; exit 4; fi`, { MODE: "read", NAME: name }),
    };
  });
}
