import type { Runtime } from "../runtime/types.js";

/** `--runtime none`: the model alone, no processes or folders (pure API tests). */
export function createNullRuntime(): Runtime {
  const ok = async () => {};
  return {
    kind: "process",
    init: ok,
    createVolume: ok,
    deleteVolume: ok,
    createSnapshot: ok,
    deleteSnapshot: ok,
    attachVolume: ok,
    detachVolume: ok,
    attachEni: ok,
    detachEni: ok,
    boot: ok,
    shutdown: ok,
    logPath: () => "",
    cleanup: ok,
  };
}
