/** spotkeep's version; kept equal to package.json's by a test. Bundled into the agent. */
export const VERSION = "0.1.0";
