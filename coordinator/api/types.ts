/**
 * What the HTTP API (coordinator/api/) needs from the rest of the coordinator. The service
 * (coordinator/service.ts) implements it over the store and the workflow engine; API tests
 * implement it over a fake. What the domain refuses it throws as a Refusal (coordinator/refusal.ts),
 * which the server answers by kind: not-found 404, conflict 409, invalid 400, unavailable 503.
 */
import type { Operation } from "../../shared/operations.js";
import type { ConnectionCut, ConnectionLimits } from "./connection-limits.js";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { EventsResponse, InstanceDetail, InstanceSummary, Savings, Workflow } from "../../shared/api.js";
import type { KeepSet } from "../../shared/deletion.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";
import type { GroupDetail, GroupSummary } from "../../shared/group-api.js";
import type { GroupSpec } from "../../shared/group-spec.js";
import type { OpenFiles } from "./process-limits.js";

/** A view may answer synchronously or from an async store. */
export type Awaitable<T> = T | Promise<T>;

export interface CoordinatorViews {
  /** Every stateful instance; deleted ones (under their archived names) only with includeDeleted. */
  listInstances(o?: { includeDeleted?: boolean }): Awaitable<InstanceSummary[]>;
  /** null when unknown. */
  getInstance(name: string): Awaitable<InstanceDetail | null>;
  getEvents(name: string): Awaitable<EventsResponse | null>;
  getWorkflow(id: string): Awaitable<Workflow | null>;
  /**
   * Start the create runbook; Refusal("conflict") when the name exists. Must change nothing on
   * error. A store error carrying an SQLite `code` (SQLITE_FULL, SQLITE_IOERR*, SQLITE_BUSY*,
   * SQLITE_CORRUPT*), on the error or its `cause`, is answered 507/503 instead of 500.
   */
  createInstance(spec: StatefulInstanceSpec): Promise<{ workflowId: string }>;
  /** What a create would refuse (Refusal, as createInstance throws it), without recording anything: a dry run. */
  checkCreate(spec: StatefulInstanceSpec): Promise<void>;
  /** pause | resume | recycle | snapshot; Refusal for unknown names or conflicting operations. */
  runOperation(name: string, op: Operation): Promise<{ workflowId: string }>;
  /**
   * Bring a paused or failed instance back in another region from its copies there (a relocate).
   * Refusal: not-found, conflict (state, running workflow), invalid naming the field; a
   * ValidationError names a bad override. Changes nothing on error.
   */
  relocateInstance(name: string, req: { region: string; overrides?: unknown }): Promise<{ workflowId: string }>;
  /** Store a new spec (applied at the next generation; `recycle` applies it now). Refusal("invalid") names an immutable field. */
  updateInstance(name: string, spec: StatefulInstanceSpec, o: { recycle: boolean }): Promise<{ workflowId: string | null }>;
  /**
   * Import an existing EC2 instance (`dryRun`: only plan it). Refusal: not-found for an unknown
   * instance, conflict for a name in use or an instance already managed, invalid with the reason it
   * cannot be imported; ValidationError names a
   * bad override field. Changes nothing on error or with dryRun.
   */
  importInstance(req: {
    instanceId: string;
    name: string;
    /** The region the instance is in (default the coordinator's home region). */
    region?: string;
    overrides?: unknown;
    dryRun: boolean;
    /** Take over volumes/ENI a deleted stateful instance kept (else such an import is refused, 409). */
    adoptKept?: boolean;
  }): Promise<{ workflowId: string | null; spec: StatefulInstanceSpec; steps: string[] }>;
  /**
   * Start the delete runbook: everything but the kinds in `keep` is deleted; kept resources expire
   * after `ttlHours` (null: kept until deleted by hand). `archivedAs` is the name the deleted
   * instance is listed under once the delete finished. A running instance is quiesced first
   * (preStop hook, sync) unless `force`.
   */
  deleteInstance(
    name: string,
    o: { keep: KeepSet; ttlHours: number | null; force?: boolean },
  ): Promise<{ workflowId: string; archivedAs: string }>;
  /** Hours on spot and on-demand and the money spot saved, per instance and in total. */
  savings(): Promise<Savings>;
}

export interface ApiServerDeps {
  views: CoordinatorViews;
  /** /api/v1/groups. */
  groups: GroupApi;
  /** The region a spec without `region` is in: the coordinator's. */
  specRegion?: string;
  /** Bearer token required on /api/v1/*. */
  adminToken: string;
  /** The built web console (index.html, assets/); default dist/console of this package. */
  consoleDir?: string;
  /** Serves GET /agent/v1/agent.js. */
  agentBundlePath: string;
  /** Serves GET /agent/v1/runtime/node-linux-<arch>.gz: the runtime's file for `arch`, or null. */
  agentRuntime?: { file(arch: string): { path: string; entry: { gzBytes: number; gzSha256: string } } | null };
  /**
   * POST /agent/v1/boot-report: a bootstrap that cannot start the agent says why (the body, parsed
   * JSON, and the request); throws a Refusal (or HttpError) to refuse it.
   */
  onBootReport?(body: unknown, req: IncomingMessage): Promise<void>;
  /** Handles the WebSocket upgrade at /agent/v1/ws (the agent hub); must not throw. */
  onAgentUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Caps and timeouts for connections that have not completed a request (defaults in connection-limits.ts). */
  connectionLimits?: Partial<ConnectionLimits>;
  /** A waiting connection was closed by a cap or a timeout. */
  onConnectionCut?(why: ConnectionCut, source: string): void;
  /** Prometheus text for GET /metrics. */
  metricsText(): Promise<string>;
  /**
   * For /healthz; the server adds `openFiles` (descriptors open, soft and hard limit, nearLimit) and
   * answers 503 with `degraded` when open descriptors reach 90% of the soft limit.
   */
  health(): Awaitable<{ ok: boolean; detail?: Record<string, unknown> }>;
  /**
   * With several coordinators: null while this one leads, else the leader's URL as last seen
   * (null inside when none leads just now). A standby answers every /api/v1 write 503 naming it.
   */
  standby?: () => { leader: string | null } | null;
  /** The descriptor figures /healthz reports; default this process's (/proc/self). */
  openFiles?(): OpenFiles;
}

/** The groups' part of the API (coordinator/api/groups.ts routes to it). */
export interface GroupApi {
  list(): Promise<GroupSummary[]>;
  describe(name: string): Promise<GroupDetail | null>;
  create(spec: GroupSpec): Promise<{ workflowId: string }>;
  update(name: string, spec: GroupSpec): Promise<{ workflowId: string | null }>;
  scale(name: string, size: number, o: { keep: KeepSet; ttlHours: number | null }): Promise<{ workflowId: string }>;
  delete(name: string, o: { keep: KeepSet; ttlHours: number | null }): Promise<{ workflowId: string }>;
  events(name: string): Promise<Array<{ at: string; kind: string; message: string; workflowId: string | null }>>;
}
