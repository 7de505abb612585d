import type { BuildOptions } from "esbuild";
export declare const repoRoot: string;
export declare function agentBundleOptions(outfile: string): BuildOptions;
