/**
 * The one systeminformation module the agent loads, imported by its own path so the bundle
 * carries it (and its helpers) rather than the whole library; the types come from the package's
 * own declarations.
 */
declare module "systeminformation/lib/filesystem.js" {
  import type { Systeminformation } from "systeminformation";
  export function fsSize(): Promise<Systeminformation.FsSizeData[]>;
  export function blockDevices(): Promise<Systeminformation.BlockDevicesData[]>;
}
