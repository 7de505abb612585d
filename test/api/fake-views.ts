import type { EventsResponse, InstanceDetail, InstanceSummary, Savings, Workflow } from "../../shared/api.js";
import type { KeepSet } from "../../shared/deletion.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";
import type { CoordinatorViews } from "../../coordinator/api/types.js";
import { Refusal } from "../../coordinator/refusal.js";

/** An in-memory CoordinatorViews for API and CLI tests: behaves like the service's views. */
export class FakeViews implements CoordinatorViews {
  instances = new Map<string, InstanceDetail>();
  workflows = new Map<string, Workflow>();
  created: StatefulInstanceSpec[] = [];
  private seq = 0;

  listInstances(): InstanceSummary[] {
    return [...this.instances.values()].map(({ spec: _s, resources: _r, generations: _g, maintenance: _m, ...summary }) => summary);
  }
  getInstance(name: string): InstanceDetail | null {
    return this.instances.get(name) ?? null;
  }
  getEvents(name: string): EventsResponse | null {
    if (!this.instances.has(name)) return null;
    const wfs = [...this.workflows.values()].filter((w) => w.instance === name);
    return {
      name,
      timelines: wfs.map((w) => ({
        workflowId: w.id,
        kind: w.kind,
        trigger: w.kind === "replace" ? "spot-interruption" : null,
        startedAt: w.startedAt,
        finishedAt: w.finishedAt,
        outcome: w.status,
        downtimeSeconds: w.kind === "replace" ? 41.5 : null,
        recoverySeconds: w.kind === "replace" ? 47.25 : null,
        steps: w.steps,
        criticalPath: w.steps.map((s) => s.name),
        timeScale: 1,
      })),
      events: [
        {
          at: "2026-11-25T10:00:00.000Z",
          kind: "notice",
          message: "spot-interruption (terminate) for i-0aaaaaaaaaaaaaaa1",
          workflowId: null,
        },
      ],
    };
  }
  getWorkflow(id: string): Workflow | null {
    return this.workflows.get(id) ?? null;
  }
  async checkCreate(spec: StatefulInstanceSpec): Promise<void> {
    if (this.instances.has(spec.name))
      throw new Refusal("conflict", `a stateful instance named ${JSON.stringify(spec.name)} already exists`);
  }
  async createInstance(spec: StatefulInstanceSpec): Promise<{ workflowId: string }> {
    if (this.instances.has(spec.name))
      throw new Refusal("conflict", `a stateful instance named ${JSON.stringify(spec.name)} already exists`);
    this.created.push(spec);
    const workflowId = `wf-${++this.seq}`;
    this.instances.set(spec.name, {
      name: spec.name,
      state: "creating",
      stateReason: null,
      allowedActions: ["update"],
      generation: 0,
      instanceId: null,
      instanceType: null,
      availabilityZone: null,
      lifecycle: null,
      privateIp: null,
      lastDowntimeSeconds: null,
      spec,
      resources: { volumes: [], root: { imageId: null, snapshotId: null }, network: { eniId: null, privateIp: null } },
      generations: [],
      schedule: [],
    });
    this.workflows.set(workflowId, {
      id: workflowId,
      kind: "create",
      instance: spec.name,
      status: "running",
      startedAt: new Date(0).toISOString(),
      finishedAt: null,
      error: null,
      steps: [],
    });
    return { workflowId };
  }
  async runOperation(name: string, op: "pause" | "resume" | "recycle" | "snapshot"): Promise<{ workflowId: string }> {
    const running = [...this.workflows.values()].find((w) => w.instance === name && w.status === "running");
    if (running) throw new Refusal("conflict", `${name} is busy with workflow ${running.id} (${running.kind})`);
    const workflowId = `wf-${++this.seq}`;
    this.workflows.set(workflowId, {
      id: workflowId,
      kind: op,
      instance: name,
      status: "running",
      startedAt: new Date(0).toISOString(),
      finishedAt: null,
      error: null,
      steps: [],
    });
    return { workflowId };
  }
  // The operations below are not faked: a test that needs one overrides it in a subclass.
  async updateInstance(_name: string, _spec: StatefulInstanceSpec, _o: { recycle: boolean }): Promise<{ workflowId: string | null }> {
    throw new Error("views.updateInstance: not used by this test");
  }
  async importInstance(_req: Parameters<CoordinatorViews["importInstance"]>[0]): ReturnType<CoordinatorViews["importInstance"]> {
    throw new Error("views.importInstance: not used by this test");
  }
  async relocateInstance(_name: string, _req: { region: string; overrides?: unknown }): Promise<{ workflowId: string }> {
    throw new Error("views.relocateInstance: not used by this test");
  }
  async deleteInstance(_name: string, _o: { keep: KeepSet; ttlHours: number | null }): Promise<{ workflowId: string; archivedAs: string }> {
    throw new Error("views.deleteInstance: not used by this test");
  }
  async savings(): Promise<Savings> {
    throw new Error("views.savings: not used by this test");
  }

  /** Seed a running instance with one finished replacement. */
  seedRunning(name = "orders-db"): void {
    const steps = [
      {
        seq: 0,
        name: "quiesce",
        status: "done" as const,
        attempts: 1,
        startedAt: "2026-11-25T10:00:01.000Z",
        endedAt: "2026-11-25T10:00:03.000Z",
        durationMs: 2000,
        error: null,
      },
      {
        seq: 1,
        name: "terminate-old",
        status: "done" as const,
        attempts: 1,
        startedAt: "2026-11-25T10:00:03.000Z",
        endedAt: "2026-11-25T10:00:33.500Z",
        durationMs: 30500,
        error: null,
      },
      {
        seq: 2,
        name: "launch",
        status: "done" as const,
        attempts: 2,
        startedAt: "2026-11-25T10:00:33.500Z",
        endedAt: "2026-11-25T10:00:50.000Z",
        durationMs: 16500,
        error: null,
      },
    ];
    this.instances.set(name, {
      name,
      state: "running",
      stateReason: null,
      allowedActions: ["pause", "recycle", "snapshot", "delete", "update"],
      generation: 2,
      instanceId: "i-0bbbbbbbbbbbbbbb2",
      instanceType: "m6i.large",
      availabilityZone: "us-east-1a",
      lifecycle: "spot",
      privateIp: "172.31.0.10",
      lastDowntimeSeconds: 41.5,
      health: {
        type: "http",
        status: "failing",
        since: "2026-11-25T10:05:00.000Z",
        reason: "http://127.0.0.1:8080/healthz failed (HTTP 503)",
      },
      maintenance: [
        {
          eventId: "instance-event-0123456789abcdef0",
          code: "instance-retirement",
          notBefore: "2026-11-30T09:00:00.000Z",
          recycleAt: "2026-11-30T08:45:00.000Z",
        },
      ],
      spec: { name },
      resources: {
        volumes: [
          {
            device: "/dev/sdf",
            mountPoint: "/data",
            volumeId: "vol-0ccccccccccccccc3",
            latestSnapshotId: null,
            availabilityZone: "us-east-1a",
          },
        ],
        root: { imageId: "ami-0ddddddddddddddd4", snapshotId: "snap-0eeeeeeeeeeeeeee5" },
        network: { eniId: "eni-0fffffffffffffff6", privateIp: "172.31.0.10" },
      },
      generations: [
        {
          generation: 1,
          instanceId: "i-0aaaaaaaaaaaaaaa1",
          instanceType: "m6i.large",
          availabilityZone: "us-east-1a",
          lifecycle: "spot",
          launchedAt: "2026-11-25T09:00:00.000Z",
          endedAt: "2026-11-25T10:00:33.500Z",
          endReason: "spot-interruption",
        },
        {
          generation: 2,
          instanceId: "i-0bbbbbbbbbbbbbbb2",
          instanceType: "m6i.large",
          availabilityZone: "us-east-1a",
          lifecycle: "spot",
          launchedAt: "2026-11-25T10:00:35.000Z",
          endedAt: null,
          endReason: null,
        },
      ],
      schedule: [
        {
          action: "pause",
          cron: "0 20 * * 1-5",
          nextRunAt: "2026-11-25T20:00:00.000Z",
          lastDueAt: "2026-11-24T20:00:00.000Z",
          lastOutcome: "skipped: orders-db is replacing; a scheduled pause applies when it is running",
          lastWorkflowId: null,
        },
      ],
    });
    this.workflows.set("wf-r1", {
      id: "wf-r1",
      kind: "replace",
      instance: name,
      status: "succeeded",
      startedAt: "2026-11-25T10:00:00.500Z",
      finishedAt: "2026-11-25T10:00:50.000Z",
      error: null,
      steps,
    });
  }
}
