/**
 * The PostgreSQL store's migrations: the same numbered history as the SQLite store's
 * (coordinator/db/migrations.ts: same versions, names, tables and columns), in PostgreSQL's dialect.
 * Times are BIGINT epoch milliseconds of the coordinator's clock (never the server's), JSON is kept
 * as TEXT exactly as the SQLite store keeps it. Two additions SQLite gets from its implicit rowid:
 * `artifacts.row_seq` and `agent_reports.row_seq` (insertion order, the tie-break of "newest
 * first"). Foreign keys are DEFERRABLE so archiving a deleted instance can rename it and every row
 * that refers to it in one transaction, checked at commit.
 *
 * `migratePostgres` runs under a session advisory lock, so coordinators starting together on one
 * database migrate once; each migration is its own transaction with its row in `migrations`.
 */
import type pg from "pg";
import { MIGRATIONS } from "../migrations.js";

/** pg_advisory_lock key held while migrating ("spkm"). */
export const MIGRATION_LOCK_KEY = 0x73706b6d;

const FK = "REFERENCES instances(name) DEFERRABLE INITIALLY IMMEDIATE";

export const PG_MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
CREATE TABLE instances (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  state_reason TEXT,
  generation INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE generations (
  instance TEXT NOT NULL ${FK},
  generation INTEGER NOT NULL,
  instance_id TEXT,
  instance_type TEXT,
  availability_zone TEXT,
  lifecycle TEXT,
  private_ip TEXT,
  status TEXT NOT NULL,
  launched_at BIGINT,
  ready_at BIGINT,
  ended_at BIGINT,
  end_reason TEXT,
  workflow_id TEXT,
  PRIMARY KEY (instance, generation)
);
CREATE UNIQUE INDEX generations_instance_id ON generations(instance_id) WHERE instance_id IS NOT NULL;
CREATE TABLE volumes (
  instance TEXT NOT NULL ${FK},
  device TEXT NOT NULL,
  mount_point TEXT NOT NULL,
  fs_type TEXT NOT NULL,
  volume_id TEXT,
  availability_zone TEXT,
  latest_snapshot_id TEXT,
  PRIMARY KEY (instance, device)
);
CREATE TABLE artifacts (
  id TEXT PRIMARY KEY,
  instance TEXT NOT NULL,
  kind TEXT NOT NULL,
  device TEXT,
  source_id TEXT,
  generation INTEGER,
  created_at BIGINT NOT NULL,
  deleted_at BIGINT,
  row_seq BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX artifacts_instance ON artifacts(instance, kind, created_at);
CREATE TABLE network (
  instance TEXT PRIMARY KEY ${FK},
  eni_id TEXT,
  private_ip TEXT,
  subnet_id TEXT,
  availability_zone TEXT
);
CREATE TABLE root_lineage (
  instance TEXT PRIMARY KEY ${FK},
  image_id TEXT,
  snapshot_id TEXT,
  root_device_name TEXT,
  architecture TEXT
);
CREATE TABLE workflows (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  instance TEXT NOT NULL,
  status TEXT NOT NULL,
  input TEXT NOT NULL,
  trigger TEXT,
  result TEXT,
  error TEXT,
  started_at BIGINT NOT NULL,
  finished_at BIGINT
);
CREATE INDEX workflows_instance ON workflows(instance, started_at);
CREATE INDEX workflows_status ON workflows(status);
CREATE TABLE steps (
  workflow_id TEXT NOT NULL REFERENCES workflows(id) DEFERRABLE INITIALLY IMMEDIATE,
  seq INTEGER NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at BIGINT,
  result TEXT,
  error TEXT,
  started_at BIGINT,
  ended_at BIGINT,
  PRIMARY KEY (workflow_id, seq)
);
CREATE TABLE events (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at BIGINT NOT NULL,
  instance TEXT NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  workflow_id TEXT
);
CREATE INDEX events_instance ON events(instance, id);
CREATE TABLE agent_reports (
  instance_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  ref TEXT NOT NULL DEFAULT '',
  data TEXT NOT NULL,
  at BIGINT NOT NULL,
  row_seq BIGINT GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (instance_id, kind, ref)
);
`,
  },
  {
    version: 2,
    sql: `
ALTER TABLE steps ADD COLUMN error_kind TEXT;
ALTER TABLE steps ADD COLUMN error_code TEXT;
ALTER TABLE generations ADD COLUMN session_secret_hash TEXT;
`,
  },
  {
    version: 3,
    sql: `
CREATE TABLE store_meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  store_id TEXT NOT NULL,
  generation INTEGER NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
`,
  },
  {
    version: 4,
    sql: `
CREATE TABLE queue_events (
  event_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  ec2_instance_id TEXT,
  instance TEXT,
  data TEXT NOT NULL,
  received_at BIGINT NOT NULL,
  handled_at BIGINT,
  outcome TEXT
);
CREATE TABLE notice_arrivals (
  ec2_instance_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  source TEXT NOT NULL,
  at BIGINT NOT NULL,
  PRIMARY KEY (ec2_instance_id, kind, source)
);
`,
  },
  {
    version: 5,
    sql: `
CREATE TABLE kept_resources (
  resource_id TEXT PRIMARY KEY,
  instance TEXT NOT NULL,
  kind TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  kept_at BIGINT NOT NULL,
  expires_at BIGINT,
  sweep_started_at BIGINT,
  deleted_at BIGINT
);
CREATE INDEX kept_resources_instance ON kept_resources(instance);
CREATE INDEX kept_resources_due ON kept_resources(expires_at) WHERE deleted_at IS NULL AND expires_at IS NOT NULL;
`,
  },
  {
    version: 6,
    sql: `
CREATE TABLE task_runs (
  instance TEXT NOT NULL,
  task_key TEXT NOT NULL,
  baseline_at BIGINT NOT NULL,
  last_due_at BIGINT,
  last_outcome TEXT,
  last_workflow_id TEXT,
  handled_at BIGINT,
  PRIMARY KEY (instance, task_key)
);
`,
  },
  {
    version: 7,
    sql: `
CREATE TABLE stateful_groups (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  state_reason TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE stateful_group_members (
  group_name TEXT NOT NULL,
  ordinal INTEGER NOT NULL,
  instance TEXT NOT NULL,
  private_ip TEXT NOT NULL,
  subnet_id TEXT NOT NULL,
  availability_zone TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (group_name, ordinal)
);
CREATE UNIQUE INDEX stateful_group_members_address ON stateful_group_members(group_name, private_ip);
CREATE UNIQUE INDEX stateful_group_members_instance ON stateful_group_members(instance);
`,
  },
  {
    version: 8,
    sql: `
ALTER TABLE kept_resources ADD COLUMN adopted_by TEXT;
ALTER TABLE kept_resources ADD COLUMN adopted_at BIGINT;
`,
  },
  {
    version: 9,
    sql: `
ALTER TABLE generations ADD COLUMN carried_secret_hash TEXT;
ALTER TABLE generations ADD COLUMN carried_secret_generation INTEGER;
`,
  },
  {
    version: 10,
    sql: `
CREATE TABLE inventories (
  instance TEXT NOT NULL ${FK},
  generation INTEGER NOT NULL,
  instance_id TEXT NOT NULL,
  received_at BIGINT NOT NULL,
  body TEXT NOT NULL,
  raised TEXT NOT NULL,
  PRIMARY KEY (instance, generation)
);
`,
  },
  {
    version: 11,
    sql: `
ALTER TABLE artifacts ADD COLUMN region TEXT;
`,
  },
];

/** Applies the migrations not yet applied; returns their versions. `client` is a dedicated connection. */
export async function migratePostgres(client: pg.PoolClient, now: () => number): Promise<number[]> {
  const applied: number[] = [];
  await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
  try {
    await client.query(
      "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    );
    const done = new Set((await client.query<{ version: number }>("SELECT version FROM migrations")).rows.map((r) => r.version));
    for (const m of PG_MIGRATIONS) {
      if (done.has(m.version)) continue;
      const name = MIGRATIONS.find((s) => s.version === m.version)?.name;
      if (name === undefined) throw new Error(`PostgreSQL migration ${m.version} has no SQLite counterpart`);
      await client.query("BEGIN");
      try {
        await client.query(m.sql);
        await client.query("INSERT INTO migrations (version, name, applied_at) VALUES ($1, $2, $3)", [m.version, name, now()]);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw new Error(`PostgreSQL store: migration ${m.version} (${name}) failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.version);
    }
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => undefined);
  }
  return applied;
}
