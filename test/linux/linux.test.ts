/**
 * Every linux-runtime suite (root only), in ONE file so that they run one after another (they
 * share the host's VPC addresses and its one-runtime lock) and so that a host without root says
 * in one line why they were skipped.
 */
import { afterAll, beforeAll } from "vitest";
import { linuxRuntimeUnavailable } from "../../localcloud/runtime/linux/index.js";
import { holdLinuxSuiteLock } from "../e2e/linux-suite-lock.js";
import { linuxContract } from "./contract.suite.js";
import { crashSuite } from "./crash.suite.js";
import { eniSuite } from "./eni.suite.js";
import { imdsSuite } from "./imds.suite.js";
import { localcloudSuite } from "./localcloud.suite.js";
import { postgresFreezeSuite, postgresUnavailable } from "./postgres-freeze.suite.js";
import { runtimeSuite } from "./runtime.suite.js";
import { stockImageSuite } from "./stock-image.suite.js";

const why = linuxRuntimeUnavailable();
const pgWhy = why ?? postgresUnavailable();
if (why) console.log(`linux-runtime suites (and the PostgreSQL end-to-end) skipped: ${why}`);
else if (pgWhy) console.log(`linux-runtime PostgreSQL suite skipped: ${pgWhy}`);

// One linux-runtime test file at a time on this host (the PostgreSQL e2e also uses the runtime).
let releaseSuiteLock: (() => void) | undefined;
if (!why) {
  beforeAll(async () => void (releaseSuiteLock = await holdLinuxSuiteLock("test/linux/linux.test.ts")), 20 * 60_000);
  afterAll(() => releaseSuiteLock?.());
}

runtimeSuite(why);
if (!why) linuxContract();
imdsSuite(why);
eniSuite(why);
crashSuite(why);
localcloudSuite(why);
stockImageSuite(why);
postgresFreezeSuite(pgWhy);
