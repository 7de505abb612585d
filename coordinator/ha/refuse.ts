/**
 * A standby's answer to an agent's WebSocket upgrade: the handshake completes and the session is
 * closed at once with NOT_LEADER_CLOSE_CODE and a reason naming the leader, so the agent moves on
 * to the next coordinator URL it knows (or the named leader, when that is on its list).
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import { safeTimeout } from "../../shared/clock.js";
import { NOT_LEADER_CLOSE_CODE } from "../../shared/coordinators.js";

export class StandbyRefusals {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 1024 });
  refused = 0;

  refuse(req: IncomingMessage, socket: Duplex, head: Buffer, leader: string | null): void {
    socket.on("error", () => socket.destroy());
    try {
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        this.refused++;
        // The agent's hello may already be on its way (larger than maxPayload): whatever it sends ends the connection, never the process.
        ws.on("error", () => ws.terminate());
        // A close reason is at most 123 bytes.
        const reason = (leader ? `standby coordinator; leader: ${leader}` : "standby coordinator; no leader just now").slice(0, 123);
        ws.close(NOT_LEADER_CLOSE_CODE, reason);
        const kill = safeTimeout(2000, () => ws.terminate());
        ws.once("close", kill);
      });
    } catch {
      socket.destroy();
    }
  }

  close(): void {
    for (const c of this.wss.clients) c.terminate();
    this.wss.close();
  }
}
