/**
 * The agent's small persistent state: one JSON file in the state dir, rewritten atomically
 * (write tmp, fsync, rename) on every change. It holds
 *  - the outbox: messages sent but not yet acked, so a notice observed before a restart or during
 *    an outage is still delivered (at-least-once, same message id => the coordinator dedupes);
 *  - ids of coordinator commands already handled (duplicates are dropped across restarts);
 *  - ids of notices already reported (a restarted agent does not report them again);
 *  - a status snapshot that `spotkeep-agent status` prints.
 * The file is bound to an instance id: on a replacement that booted from an image of the old root
 * disk, the previous generation's outbox is discarded instead of being replayed as ours.
 * A corrupt file is moved aside (never crashes the agent).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { AgentMessage } from "../../shared/protocol.js";
import type { Logger } from "../log.js";

export interface OutboxEntry {
  message: AgentMessage;
  /** Real ms (Date.now) of the last send attempt, 0 = never. */
  sentAt: number;
}

export interface AgentStateFile {
  instanceId?: string;
  outbox: OutboxEntry[];
  seenCommands: string[];
  notices: string[];
  status?: Record<string, unknown>;
}

const MAX_SEEN = 500;
const MAX_OUTBOX = 1000;

export const STATE_FILE = "agent-state.json";

export class StateStore {
  readonly path: string;
  private data: AgentStateFile = { outbox: [], seenCommands: [], notices: [] };
  private seenSet = new Set<string>();
  private noticeSet = new Set<string>();

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {
    this.path = join(dir, STATE_FILE);
  }

  /** Load the file (if any) and bind it to `instanceId` (discarding another instance's outbox). */
  load(instanceId?: string): this {
    mkdirSync(this.dir, { recursive: true });
    let raw: string | undefined;
    try {
      raw = readFileSync(this.path, "utf8");
    } catch {
      raw = undefined;
    }
    if (raw !== undefined) {
      try {
        const parsed = JSON.parse(raw) as Partial<AgentStateFile>;
        this.data = {
          instanceId: parsed.instanceId,
          outbox: Array.isArray(parsed.outbox) ? parsed.outbox.filter((e) => e && typeof e.message?.id === "string") : [],
          seenCommands: Array.isArray(parsed.seenCommands) ? parsed.seenCommands.filter((s) => typeof s === "string") : [],
          notices: Array.isArray(parsed.notices) ? parsed.notices.filter((s) => typeof s === "string") : [],
          status: parsed.status,
        };
      } catch (err) {
        const aside = `${this.path}.corrupt-${Date.now()}`;
        this.log.warn("agent state file is corrupt; moving it aside", { path: this.path, aside, error: (err as Error).message });
        try {
          renameSync(this.path, aside);
        } catch {
          /* best effort */
        }
      }
    }
    if (instanceId && this.data.instanceId && this.data.instanceId !== instanceId) {
      this.log.info("agent state belongs to another instance (root disk restored from an image); starting fresh", {
        stateInstanceId: this.data.instanceId,
        instanceId,
        droppedOutbox: this.data.outbox.length,
      });
      this.data = { outbox: [], seenCommands: [], notices: [] };
    }
    if (instanceId) this.data.instanceId = instanceId;
    this.seenSet = new Set(this.data.seenCommands);
    this.noticeSet = new Set(this.data.notices);
    this.save();
    return this;
  }

  get outbox(): readonly OutboxEntry[] {
    return this.data.outbox;
  }

  enqueue(message: AgentMessage): void {
    this.data.outbox.push({ message, sentAt: 0 });
    if (this.data.outbox.length > MAX_OUTBOX) {
      const dropped = this.data.outbox.splice(0, this.data.outbox.length - MAX_OUTBOX);
      this.log.warn("outbox full; dropping the oldest messages", { dropped: dropped.map((d) => d.message.id) });
    }
    this.save();
  }

  markSent(id: string, at: number): void {
    const e = this.data.outbox.find((x) => x.message.id === id);
    if (e) e.sentAt = at; // in memory only: resend timing need not survive a restart
  }

  /** Remove an acked message; true when it was pending. */
  ack(id: string): boolean {
    const before = this.data.outbox.length;
    this.data.outbox = this.data.outbox.filter((e) => e.message.id !== id);
    if (this.data.outbox.length === before) return false;
    this.save();
    return true;
  }

  /** Record a coordinator command id; false when it was already seen (a duplicate). */
  firstSeen(commandId: string): boolean {
    if (this.seenSet.has(commandId)) return false;
    this.seenSet.add(commandId);
    this.data.seenCommands.push(commandId);
    if (this.data.seenCommands.length > MAX_SEEN) this.seenSet.delete(this.data.seenCommands.shift()!);
    this.save();
    return true;
  }

  recentCommands(n = 100): string[] {
    return this.data.seenCommands.slice(-n);
  }

  /** Notice ids already reported, as a Set-like the monitor loop can use. */
  readonly notices = {
    has: (id: string) => this.noticeSet.has(id),
    add: (id: string) => {
      if (this.noticeSet.has(id)) return;
      this.noticeSet.add(id);
      this.data.notices.push(id);
      if (this.data.notices.length > MAX_SEEN) this.noticeSet.delete(this.data.notices.shift()!);
      this.save();
    },
  };

  setStatus(status: Record<string, unknown>): void {
    this.data.status = { ...this.data.status, ...status, updatedAt: new Date().toISOString() };
    this.save();
  }

  snapshot(): AgentStateFile {
    return JSON.parse(JSON.stringify(this.data)) as AgentStateFile;
  }

  private save(): void {
    const tmp = `${this.path}.tmp`;
    try {
      const fd = openSync(tmp, "w", 0o600);
      try {
        writeSync(fd, JSON.stringify(this.data));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
    } catch (err) {
      // Losing persistence must not stop the agent from reporting over the live link.
      this.log.error("saving agent state failed", { path: this.path, error: (err as Error).message });
    }
  }
}

/** Read a state file without binding it (for `spotkeep-agent status`). */
export function readStateFile(dir: string): AgentStateFile | null {
  try {
    return JSON.parse(readFileSync(join(dir, STATE_FILE), "utf8")) as AgentStateFile;
  } catch {
    return null;
  }
}
