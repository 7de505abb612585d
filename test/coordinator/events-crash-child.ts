/**
 * A coordinator for the queue crash test, run as a child process: argv[2] is the config file,
 * argv[3] = "crash" arms the hook that SIGKILLs the process right after it records a queue event
 * (before the message is deleted). Prints the coordinator's log; SIGTERM stops it cleanly.
 */
import { readFileSync } from "node:fs";
import { startCoordinator } from "../../coordinator/service.js";

const config = JSON.parse(readFileSync(process.argv[2]!, "utf8"));
const log = (line: string) => process.stdout.write(`${line}\n`);
const coord = await startCoordinator(
  { config, log },
  process.argv[3] === "crash"
    ? {
        afterEventRecord: (eventId) => {
          log(`crash hook: killing myself after recording event ${eventId}`);
          process.kill(process.pid, "SIGKILL");
        },
      }
    : {},
);
process.once("SIGTERM", () => {
  coord.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
