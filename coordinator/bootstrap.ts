/**
 * The replacement's user-data (design §4.1 step 8). The script itself is the agent's own
 * template (agent/deploy/bootstrap.ts: get the agent, `spotkeep-agent restore`, the user's
 * user-data, then `spotkeep-agent run` under systemd or in the foreground); the coordinator only
 * fills in where agents reach it.
 */
import { renderBootstrap } from "../agent/deploy/bootstrap.js";

/** EC2 accepts 16 KB of user-data (before base64). */
export const USER_DATA_LIMIT = 16 * 1024;

export function renderUserData(o: { publicUrl: string; userUserData: string; timeScale: number }): string {
  const base = o.publicUrl.replace(/\/+$/, "");
  const text = renderBootstrap({
    coordinatorUrl: `${base.replace(/^http/, "ws")}/agent/v1/ws`,
    agentUrl: `${base}/agent/v1/agent.js`,
    userUserData: o.userUserData,
    timeScale: o.timeScale,
  });
  if (Buffer.byteLength(text) > USER_DATA_LIMIT)
    throw new Error(
      `launch.userData: with spotkeep's bootstrap the user-data is ${Buffer.byteLength(text)} bytes, over EC2's ${USER_DATA_LIMIT}`,
    );
  return text;
}
