/**
 * Numbered, forward-only migrations. Never edit a released one: add the next number.
 * Applied by `migrate()` inside one IMMEDIATE transaction, so two coordinators starting on the
 * same file at once serialise on SQLite's write lock and the second sees nothing left to do.
 */
import type Database from "better-sqlite3";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "initial",
    sql: `
CREATE TABLE instances (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  state_reason TEXT,
  generation INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
-- One EC2 instance that served a stateful instance. status: launching | live | ended.
CREATE TABLE generations (
  instance TEXT NOT NULL REFERENCES instances(name),
  generation INTEGER NOT NULL,
  instance_id TEXT,
  instance_type TEXT,
  availability_zone TEXT,
  lifecycle TEXT,
  private_ip TEXT,
  status TEXT NOT NULL,
  launched_at INTEGER,
  ready_at INTEGER,
  ended_at INTEGER,
  end_reason TEXT,
  workflow_id TEXT,
  PRIMARY KEY (instance, generation)
);
CREATE UNIQUE INDEX generations_instance_id ON generations(instance_id) WHERE instance_id IS NOT NULL;
-- Data volumes by logical device: the current EBS volume and the latest snapshot of it.
CREATE TABLE volumes (
  instance TEXT NOT NULL REFERENCES instances(name),
  device TEXT NOT NULL,
  mount_point TEXT NOT NULL,
  fs_type TEXT NOT NULL,
  volume_id TEXT,
  availability_zone TEXT,
  latest_snapshot_id TEXT,
  PRIMARY KEY (instance, device)
);
-- Every snapshot/image spotkeep made, for lineage and retention.
CREATE TABLE artifacts (
  id TEXT PRIMARY KEY,
  instance TEXT NOT NULL,
  kind TEXT NOT NULL,           -- data-snapshot | root-snapshot | image
  device TEXT,
  source_id TEXT,               -- volume id (snapshots) or root snapshot id (images)
  generation INTEGER,
  created_at INTEGER NOT NULL,
  deleted_at INTEGER
);
CREATE INDEX artifacts_instance ON artifacts(instance, kind, created_at);
CREATE TABLE network (
  instance TEXT PRIMARY KEY REFERENCES instances(name),
  eni_id TEXT,
  private_ip TEXT,
  subnet_id TEXT,
  availability_zone TEXT
);
CREATE TABLE root_lineage (
  instance TEXT PRIMARY KEY REFERENCES instances(name),
  image_id TEXT,
  snapshot_id TEXT,
  root_device_name TEXT,
  architecture TEXT
);
CREATE TABLE workflows (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  instance TEXT NOT NULL,
  status TEXT NOT NULL,          -- running | succeeded | failed | cancelled
  input TEXT NOT NULL,
  trigger TEXT,
  result TEXT,
  error TEXT,
  started_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX workflows_instance ON workflows(instance, started_at);
CREATE INDEX workflows_status ON workflows(status);
-- Retry state lives here, so a restart resumes the backoff where it was.
CREATE TABLE steps (
  workflow_id TEXT NOT NULL REFERENCES workflows(id),
  seq INTEGER NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,          -- running | done | failed (pending = waiting for a retry)
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  result TEXT,
  error TEXT,
  started_at INTEGER,
  ended_at INTEGER,
  PRIMARY KEY (workflow_id, seq)
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  instance TEXT NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  workflow_id TEXT
);
CREATE INDEX events_instance ON events(instance, id);
-- What agents reported (quiesced, restored, ready, notice), keyed by EC2 instance id; runbook
-- waits read these rows, so a restarted coordinator still sees a report made before the crash.
CREATE TABLE agent_reports (
  instance_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  ref TEXT NOT NULL DEFAULT '',
  data TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (instance_id, kind, ref)
);
`,
  },
  {
    version: 2,
    name: "step failure kinds and agent session secrets",
    sql: `
-- A failed step keeps what kind of failure it was (and the EC2 error code, if any), so a replay
-- rethrows an error of the same kind and runbooks branch on it, never on message text.
ALTER TABLE steps ADD COLUMN error_kind TEXT;
ALTER TABLE steps ADD COLUMN error_code TEXT;
-- SHA-256 of the secret the generation's agent presented at its first hello (trust on first use);
-- every later session of that EC2 instance must present the same secret.
ALTER TABLE generations ADD COLUMN session_secret_hash TEXT;
`,
  },
  {
    version: 3,
    name: "store identity",
    sql: `
-- The store's identity (one row, written by coordinator/db/open.ts, not by this migration): a
-- random id and a generation bumped at every open and clean close. The data dir's store-identity
-- file holds the same pair, so an empty, replaced or rolled-back database is refused at open.
CREATE TABLE store_meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  store_id TEXT NOT NULL,
  generation INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
`,
  },
  {
    version: 4,
    name: "queue events and notice arrivals",
    sql: `
-- Every EventBridge event taken from the interruption queue, by its event id, recorded before the
-- queue message is deleted: a redelivered or duplicated message finds its row and is handled once.
-- handled_at is set when the decision it led to is recorded (null: recorded, not yet handled).
CREATE TABLE queue_events (
  event_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  ec2_instance_id TEXT,
  instance TEXT,
  data TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  handled_at INTEGER,
  outcome TEXT
);
-- The first time each source (agent, queue) reported a notice kind for an EC2 instance, so the
-- timeline can say which came first and by how much.
CREATE TABLE notice_arrivals (
  ec2_instance_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  source TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (ec2_instance_id, kind, source)
);
`,
  },
  {
    version: 5,
    name: "kept resources of deleted instances",
    sql: `
-- What a delete kept (volume, network-interface, snapshot, image), by EC2 id. expires_at null: kept
-- until deleted by hand. The TTL sweep sets sweep_started_at before it calls EC2 and deleted_at
-- after, so a crash in between is finished by the next pass. instance is the deleted instance's
-- archived name (NAME~<deletedAt>) once its delete finished.
CREATE TABLE kept_resources (
  resource_id TEXT PRIMARY KEY,
  instance TEXT NOT NULL,
  kind TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  kept_at INTEGER NOT NULL,
  expires_at INTEGER,
  sweep_started_at INTEGER,
  deleted_at INTEGER
);
CREATE INDEX kept_resources_instance ON kept_resources(instance);
CREATE INDEX kept_resources_due ON kept_resources(expires_at) WHERE deleted_at IS NULL AND expires_at IS NOT NULL;
`,
  },
  {
    version: 6,
    name: "scheduled task runs",
    sql: `
-- One row per scheduled task (spec.schedule entry, keyed by "ACTION CRON") of a stateful instance.
-- baseline_at: when the coordinator first knew the task (due times before it never run);
-- last_due_at: the latest due time handled (run, skipped or missed), so each due time is handled
-- once, across restarts. Times are the wall clock the tasks are read on.
CREATE TABLE task_runs (
  instance TEXT NOT NULL,
  task_key TEXT NOT NULL,
  baseline_at INTEGER NOT NULL,
  last_due_at INTEGER,
  last_outcome TEXT,
  last_workflow_id TEXT,
  handled_at INTEGER,
  PRIMARY KEY (instance, task_key)
);
`,
  },
  {
    version: 7,
    name: "stateful groups",
    sql: `
-- A stateful group (spec.kind group): its spec (size, maxUnavailable, ipPool, member template) and
-- state (ready, scaling, updating, stopped, deleting; state_reason says where a roll-out stopped).
CREATE TABLE stateful_groups (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  state_reason TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
-- One row per member: its ordinal, its stateful instance and the pool address it owns (with the
-- subnet and AZ the address lives in). The address is the member's for its whole life: the row is
-- removed, and the address returns to the pool, only when the member's delete has finished.
-- status: active | removing (a scale-down or group delete is deleting it).
CREATE TABLE stateful_group_members (
  group_name TEXT NOT NULL,
  ordinal INTEGER NOT NULL,
  instance TEXT NOT NULL,
  private_ip TEXT NOT NULL,
  subnet_id TEXT NOT NULL,
  availability_zone TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (group_name, ordinal)
);
CREATE UNIQUE INDEX stateful_group_members_address ON stateful_group_members(group_name, private_ip);
CREATE UNIQUE INDEX stateful_group_members_instance ON stateful_group_members(instance);
`,
  },
  {
    version: 8,
    name: "kept resources adopted by another instance",
    sql: `
-- A kept resource an import took over explicitly (adoptKept): from adopted_at it belongs to the
-- stateful instance adopted_by, and the TTL sweep no longer touches it.
ALTER TABLE kept_resources ADD COLUMN adopted_by TEXT;
ALTER TABLE kept_resources ADD COLUMN adopted_at INTEGER;
`,
  },
  {
    version: 9,
    name: "session secrets carried on persisted roots",
    sql: `
-- The session secret a generation's root disk carries, recorded at launch: the hash registered by
-- the generation whose root the boot image was made from (carried_secret_generation). While set, the
-- generation's first hello must prove that secret before its agent's own secret is registered.
-- NULL for a fresh root: the spec's image, an imported instance's root, or a source generation
-- whose agent never registered a secret.
ALTER TABLE generations ADD COLUMN carried_secret_hash TEXT;
ALTER TABLE generations ADD COLUMN carried_secret_generation INTEGER;
`,
  },
  {
    version: 10,
    name: "agent inventories",
    sql: `
-- The latest inventory each generation's agent sent (validated, at most one frame of JSON): what
-- describe shows and the usage/attachment checks compare the next one with. Never read to decide
-- what to attach, detach or delete. raised: JSON list of the conditions (usage past the threshold,
-- an unexpected volume, a kept volume not mounted) already on the timeline, so each is raised once.
CREATE TABLE inventories (
  instance TEXT NOT NULL REFERENCES instances(name),
  generation INTEGER NOT NULL,
  instance_id TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  body TEXT NOT NULL,
  raised TEXT NOT NULL,
  PRIMARY KEY (instance, generation)
);
`,
  },
  {
    version: 11,
    name: "artifact regions",
    sql: `
-- Disaster-recovery copies (kinds snapshot-copy, image-copy) live in another region than their
-- instance; NULL is the instance's own region.
ALTER TABLE artifacts ADD COLUMN region TEXT;
`,
  },
];

export function migrate(db: Database.Database, now: () => number = Date.now): number[] {
  db.exec("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
  const applied: number[] = [];
  const run = db.transaction(() => {
    const done = new Set((db.prepare("SELECT version FROM migrations").all() as { version: number }[]).map((r) => r.version));
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      db.exec(m.sql);
      db.prepare("INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)").run(m.version, m.name, now());
      applied.push(m.version);
    }
  });
  run.immediate();
  return applied;
}
