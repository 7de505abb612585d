/**
 * The spotkeep web console: sign-in with the admin token, the fleet, one instance (spec,
 * resources, generations, timelines as Gantt charts, events) and its actions. Hash routes:
 * `#/` the fleet, `#/instances/<name>` an instance, `#/savings` what spot saved.
 */
import { render } from "preact";
import { html } from "htm/preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, api, follow, storeToken, storedToken, whenUnauthorized } from "./api.js";
import { Gantt, seconds } from "./gantt.js";
import { Savings } from "./savings.js";
import type { EventsResponse, InstanceAction, InstanceDetail, InstanceState, InstanceSummary, InventoryView, Workflow } from "./types.js";
import "./style.css";

function useHash(): string {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const f = () => setHash(location.hash || "#/");
    addEventListener("hashchange", f);
    return () => removeEventListener("hashchange", f);
  }, []);
  return hash;
}

function age(iso: string | null, now: number): string {
  if (!iso) return "—";
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86_400).toFixed(1)} d`;
}

function useNow(every = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), every);
    return () => clearInterval(t);
  }, [every]);
  return now;
}

function SignIn({ message, onSignedIn }: { message: string | null; onSignedIn: () => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(message);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api("/instances", { token: token.trim() });
      storeToken(token.trim());
      onSignedIn();
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? `The coordinator refused this token: ${err.message}.`
          : `Cannot reach the coordinator: ${(err as Error).message}`,
      );
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <h1>spotkeep</h1>
    <form onSubmit=${submit} data-testid="signin">
      <label for="token">Admin token</label>
      <input id="token" name="token" type="password" autocomplete="off" value=${token}
        onInput=${(e: Event) => setToken((e.target as HTMLInputElement).value)} />
      <p class="hint">The token is in the coordinator's data directory (admin-token). It is kept for this tab only.</p>
      <button type="submit" disabled=${busy || !token.trim()}>Sign in</button>
      ${error && html`<p class="error" role="alert" data-testid="signin-error">${error}</p>`}
    </form>
  </main>`;
}

/** The fleet's sort order of states: what needs attention first; every state has a place. */
const STATE_RANK: Record<InstanceState, number> = {
  failed: 0,
  replacing: 1,
  recycling: 2,
  relocating: 3,
  creating: 4,
  importing: 5,
  resuming: 6,
  pausing: 7,
  deleting: 8,
  paused: 9,
  running: 10,
  deleted: 11,
};
type SortKey = "name" | "state" | "generation" | "type" | "downtime";

function Fleet({ instances, mode }: { instances: InstanceSummary[] | null; mode: string }) {
  const now = useNow(5000);
  const [filter, setFilter] = useState("");
  const [state, setState] = useState("");
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: "name", desc: false });
  const counts = useMemo(() => {
    const c = new Map<InstanceState, number>();
    for (const i of instances ?? []) c.set(i.state, (c.get(i.state) ?? 0) + 1);
    return [...c.entries()].sort((a, b) => STATE_RANK[a[0]] - STATE_RANK[b[0]]);
  }, [instances]);
  if (!instances) return html`<p>Loading…</p>`;
  const f = filter.trim().toLowerCase();
  const rows = instances
    .filter((i) => !state || i.state === state)
    .filter((i) => !f || [i.name, i.instanceId, i.instanceType, i.availabilityZone, i.privateIp].some((v) => v?.toLowerCase().includes(f)));
  const key = (i: InstanceSummary): string | number =>
    sort.key === "name"
      ? i.name
      : sort.key === "state"
        ? STATE_RANK[i.state]
        : sort.key === "generation"
          ? i.generation
          : sort.key === "type"
            ? (i.instanceType ?? "")
            : (i.lastDowntimeSeconds ?? -1);
  rows.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    const c = ka < kb ? -1 : ka > kb ? 1 : a.name.localeCompare(b.name);
    return sort.desc ? -c : c;
  });
  const th = (k: SortKey, label: string) =>
    html`<th><button class="sort" data-testid=${`sort-${k}`} onClick=${() => setSort({ key: k, desc: sort.key === k ? !sort.desc : false })}>
      ${label}${sort.key === k ? (sort.desc ? " ▼" : " ▲") : ""}</button></th>`;
  return html`<section>
    <h2>Fleet</h2>
    <div class="counts" data-testid="counts">
      <span>${instances.length} instance${instances.length === 1 ? "" : "s"}</span>
      ${counts.map(([s, n]) => html`<span class=${`pill state-${s}`} data-testid=${`count-${s}`}>${s}: ${n}</span>`)}
      <span class="live" data-testid="live-mode">${mode === "stream" ? "live" : "polling"}</span>
    </div>
    <div class="filters">
      <input placeholder="Filter by name, instance, type, AZ, IP" data-testid="filter" value=${filter}
        onInput=${(e: Event) => setFilter((e.target as HTMLInputElement).value)} />
      <select data-testid="state-filter" value=${state} onChange=${(e: Event) => setState((e.target as HTMLSelectElement).value)}>
        <option value="">every state</option>
        ${counts.map(([s]) => html`<option value=${s}>${s}</option>`)}
      </select>
    </div>
    <table class="fleet" data-testid="fleet">
      <thead><tr>${th("name", "Name")}${th("state", "State")}<th>Health</th>${th("generation", "Gen")}<th>Market</th>${th("type", "Type")}<th>AZ</th>
        <th>Private IP</th><th>EC2 instance</th><th>Up</th>${th("downtime", "Last interruption")}</tr></thead>
      <tbody>
        ${rows.map(
          (i) => html`<tr data-testid="fleet-row" data-name=${i.name} data-state=${i.state}>
            <td><a href=${`#/instances/${encodeURIComponent(i.name)}`}>${i.name}</a></td>
            <td><span class=${`pill state-${i.state}`} data-testid="state">${i.state}</span>
              ${i.stateReason && html`<div class="reason">${i.stateReason}</div>`}</td>
            <td data-testid="health">${
              i.health
                ? html`<span
                    class=${`pill health-${i.health.status}`}
                    title=${[i.health.reason, i.health.since && `since ${i.health.since}`].filter(Boolean).join(", ")}
                  >${i.health.status}</span>`
                : html`<span class="muted" title="the spec sets no health checks">—</span>`
            }</td>
            <td>${i.generation}</td>
            <td>${i.lifecycle ?? "—"}</td>
            <td>${i.instanceType ?? "—"}</td>
            <td>${i.availabilityZone ?? "—"}</td>
            <td>${i.privateIp ?? "—"}</td>
            <td class="mono">${i.instanceId ?? "—"}</td>
            <td title=${i.liveSince ?? ""}>${i.liveSince ? `${age(i.liveSince, now)}${i.lifecycle ? ` on ${i.lifecycle}` : ""}` : "—"}</td>
            <td data-testid="last-interruption">${
              i.lastInterruptionAt ? `${age(i.lastInterruptionAt, now)} ago, down ${seconds(i.lastDowntimeSeconds)}` : "none"
            }</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${rows.length === 0 && html`<p class="empty">No instance matches.</p>`}
  </section>`;
}

/** The actions the console offers, in the order of its buttons (a spec update is the CLI's: it takes a spec file). */
type Action = Exclude<InstanceAction, "update">;
const ACTION_TEXT: Record<Action, string> = {
  snapshot: "Snapshot every data volume (and the root disk) now.",
  recycle: "Move the instance to a fresh EC2 instance now, keeping its disks and private IP (a short downtime).",
  pause: "Stop the workload and terminate the EC2 instance; the disks and the private IP are kept for a resume.",
  resume: "Launch a new generation from the kept disks and private IP.",
  delete: "Delete the stateful instance and every resource not kept below.",
};
const KEEP = ["volumes", "network", "snapshots", "images"] as const;

function ActionDialog({
  name,
  action,
  onClose,
  onStarted,
}: {
  name: string;
  action: Action;
  onClose: () => void;
  onStarted: (id: string) => void;
}) {
  const [keep, setKeep] = useState<string[]>([]);
  const [ttl, setTtl] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    setError(null);
    try {
      const path = `/instances/${encodeURIComponent(name)}`;
      const out =
        action === "delete"
          ? await api<{ workflowId: string }>(path, { method: "DELETE", body: { keep, ...(ttl.trim() ? { ttlHours: Number(ttl) } : {}) } })
          : await api<{ workflowId: string }>(`${path}/${action}`, { method: "POST" });
      onStarted(out.workflowId);
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };
  return html`<div class="modal-back">
    <div class="modal" role="dialog" aria-modal="true" data-testid="confirm">
      <h3>${action} ${name}?</h3>
      <p>${ACTION_TEXT[action]}</p>
      ${
        action === "delete" &&
        html`<fieldset><legend>Keep</legend>
          ${KEEP.map(
            (k) => html`<label><input type="checkbox" data-testid=${`keep-${k}`} checked=${keep.includes(k)}
              onChange=${(e: Event) => setKeep((e.target as HTMLInputElement).checked ? [...keep, k] : keep.filter((x) => x !== k))} /> ${k}</label>`,
          )}
          <label>Delete what is kept after <input class="ttl" value=${ttl} placeholder="never"
            onInput=${(e: Event) => setTtl((e.target as HTMLInputElement).value)} /> hours</label>
        </fieldset>`
      }
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <div class="buttons">
        <button onClick=${onClose} disabled=${busy}>Cancel</button>
        <button class=${action === "delete" ? "danger" : "primary"} data-testid="confirm-go" onClick=${go} disabled=${busy}>${action}</button>
      </div>
    </div>
  </div>`;
}

function WorkflowProgress({ id, onDone }: { id: string; onDone: () => void }) {
  const [wf, setWf] = useState<Workflow | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout>;
    const tick = async () => {
      try {
        const w = await api<Workflow>(`/workflows/${encodeURIComponent(id)}`);
        if (stop) return;
        setWf(w);
        if (w.status !== "running") return onDone();
      } catch (err) {
        setError((err as Error).message);
      }
      if (!stop) timer = setTimeout(tick, 1000);
    };
    void tick();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [id]);
  return html`<div class="workflow" data-testid="workflow" data-status=${wf?.status ?? "starting"}>
    <strong>${wf?.kind ?? "workflow"} <span class="mono">${id}</span>: <span data-testid="workflow-status">${wf?.status ?? "starting"}</span></strong>
    ${wf && html`<ol class="steps">${wf.steps.map((s) => html`<li class=${`status-${s.status}`}>${s.name} (${s.status})</li>`)}</ol>`}
    ${wf?.error && html`<p class="error">${wf.error}</p>`}
    ${error && html`<p class="error">${error}</p>`}
  </div>`;
}

function kv(rows: Array<[string, unknown]>) {
  return html`<dl class="kv">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v === null || v === undefined || v === "" ? "—" : String(v)}</dd>`)}</dl>`;
}

/** Bytes in binary units, one decimal. */
function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** The latest inventory the agent reported: filesystems with their use, network interfaces (a claim of the instance). */
function Inventory({ inv, now }: { inv: InventoryView | null; now: number }) {
  if (!inv)
    return html`<h3>Inventory</h3><p class="empty" data-testid="inventory-none">The agent has not reported one for this generation.</p>`;
  return html`<h3>Inventory</h3>
    <p class="hint" data-testid="inventory">Generation ${inv.generation} (<span class="mono">${inv.instanceId}</span>), reported by its agent
      <span title=${inv.receivedAt}>${age(inv.receivedAt, now)} ago</span>.</p>
    <div class="grid">
      <div>
        <h4>Filesystems</h4>
        ${
          inv.filesystems.length === 0
            ? html`<p class="empty">None reported.</p>`
            : html`<table class="small" data-testid="inventory-filesystems">
            <thead><tr><th>Mount</th><th>Device</th><th>Volume</th><th>Type</th><th>Size</th><th>Used</th><th>Available</th><th>Use</th></tr></thead>
            <tbody>${inv.filesystems.map(
              (
                f,
              ) => html`<tr><td>${f.mountPoint}</td><td class="mono">${f.device}</td><td class="mono">${f.volumeId ?? "—"}</td><td>${f.fsType}</td>
                <td>${bytes(f.sizeBytes)}</td><td>${bytes(f.usedBytes)}</td><td>${bytes(f.availableBytes)}</td>
                <td>${f.usedRatio === null ? "—" : `${Math.round(f.usedRatio * 100)}%`}</td></tr>`,
            )}</tbody>
          </table>`
        }
      </div>
      <div>
        <h4>Network interfaces</h4>
        ${
          inv.networkInterfaces.length === 0
            ? html`<p class="empty">None reported.</p>`
            : html`<table class="small" data-testid="inventory-interfaces">
            <thead><tr><th>Name</th><th>MAC</th><th>Addresses</th></tr></thead>
            <tbody>${inv.networkInterfaces.map(
              (n) => html`<tr><td>${n.name}</td><td class="mono">${n.mac}</td><td class="mono">${n.addresses.join(", ")}</td></tr>`,
            )}</tbody>
          </table>`
        }
      </div>
    </div>`;
}

function Instance({ name, summary }: { name: string; summary: InstanceSummary | undefined }) {
  const [detail, setDetail] = useState<InstanceDetail | null>(null);
  const [events, setEvents] = useState<EventsResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [action, setAction] = useState<Action | null>(null);
  const [started, setStarted] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [gone, setGone] = useState(false);
  // Once a delete is under way the page stops reloading: the name is about to stop existing.
  const deleting = useRef(false);
  const now = useNow();
  const load = async () => {
    if (deleting.current) return;
    try {
      const p = `/instances/${encodeURIComponent(name)}`;
      const [d, e] = await Promise.all([api<InstanceDetail>(p), api<EventsResponse>(`${p}/events`)]);
      setDetail(d);
      setEvents(e);
      setError(null);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) setGone(true);
      setError((err as Error).message);
    }
  };
  // Reload whenever the live summary moves (state, generation, instance): the stream says when.
  const key = summary ? `${summary.state}/${summary.generation}/${summary.instanceId}/${summary.lastDowntimeSeconds}` : "";
  useEffect(() => {
    void load();
  }, [name, key]);
  // While a workflow runs, its timeline grows: refresh every 2 s.
  const running = (events?.timelines.some((t) => t.outcome === "running") ?? false) && !gone;
  useEffect(() => {
    if (!running) return;
    const t = setInterval(load, 2000);
    return () => clearInterval(t);
  }, [running, name]);
  if (gone)
    return html`<section><p><a href="#/">← Fleet</a></p><p class="error" role="alert" data-testid="gone">${name} no longer exists: ${error}</p></section>`;
  if (error && !detail) return html`<p class="error" role="alert">${error}</p>`;
  if (!detail || !events) return html`<p>Loading…</p>`;
  const spec = (detail.spec ?? {}) as {
    region?: string;
    snapshots?: { copyToRegions?: Array<{ region: string }> };
    launch?: { instanceTypes?: string[]; market?: { type?: string; fallbackToOnDemand?: boolean }; subnetIds?: string[]; imageId?: string };
    persistence?: { root?: boolean; dataMethod?: string; network?: { privateIp?: string } };
  };
  const timelines = [...events.timelines].reverse();
  // Durations are model time, as in the timelines (real ÷ timeScale; 1 outside time-scaled tests).
  const scale = events.timelines[0]?.timeScale ?? 1;
  const shown = timelines.find((t) => t.workflowId === selected) ?? timelines[0];
  // Exactly what the coordinator would start now (its lifecycle table); none while a workflow moves it.
  const actions = (Object.keys(ACTION_TEXT) as Action[]).filter((a) => detail.allowedActions.includes(a));
  return html`<section data-testid="instance" data-name=${detail.name}>
    <p><a href="#/">← Fleet</a></p>
    <h2>${detail.name} <span class=${`pill state-${detail.state}`} data-testid="instance-state">${detail.state}</span></h2>
    ${detail.stateReason && html`<p class="reason">${detail.stateReason}</p>`}
    <div class="actions" data-testid="actions">
      ${actions.length === 0 && html`<span class="hint">No action while it is ${detail.state}.</span>`}
      ${actions.map((a) => html`<button data-testid=${`action-${a}`} class=${a === "delete" ? "danger" : ""} onClick=${() => setAction(a)}>${a}</button>`)}
    </div>
    ${
      action &&
      html`<${ActionDialog} name=${detail.name} action=${action} onClose=${() => setAction(null)}
      onStarted=${(id: string) => {
        if (action === "delete") deleting.current = true;
        setAction(null);
        setStarted(id);
        void load();
      }} />`
    }
    ${started && html`<${WorkflowProgress} id=${started} onDone=${load} />`}
    ${
      deleting.current &&
      html`<p data-testid="deleted-note">Deleting ${detail.name}: once the workflow above is done it is listed under its archived name
        (<code>GET /api/v1/instances?all=true</code>). <a href="#/">Back to the fleet</a></p>`
    }
    <div class="grid">
      <div>
        <h3>Spec</h3>
        ${kv([
          ["region", spec.region],
          ["market", `${spec.launch?.market?.type ?? "—"}${spec.launch?.market?.fallbackToOnDemand ? " (on-demand fallback)" : ""}`],
          ["instance types", spec.launch?.instanceTypes?.join(", ")],
          ["subnets", spec.launch?.subnetIds?.join(", ")],
          ["image", spec.launch?.imageId],
          ["root disk kept", spec.persistence?.root ? "yes" : "no"],
          ["data method", spec.persistence?.dataMethod],
          ["private IP", spec.persistence?.network?.privateIp],
          ["copies to", (spec.snapshots?.copyToRegions ?? []).map((c) => c.region).join(", ") || "—"],
        ])}
      </div>
      <div>
        <h3>Resources</h3>
        ${kv([
          ["ENI", detail.resources.network.eniId],
          ["private IP", detail.resources.network.privateIp],
          ["root image", detail.resources.root.imageId],
          ["root snapshot", detail.resources.root.snapshotId],
        ])}
        <table class="small">
          <thead><tr><th>Device</th><th>Mount</th><th>Volume</th><th>Latest snapshot</th><th>AZ</th></tr></thead>
          <tbody>${detail.resources.volumes.map(
            (v) =>
              html`<tr><td>${v.device}</td><td>${v.mountPoint ?? "(not mounted)"}</td><td class="mono">${v.volumeId ?? "—"}</td>
                <td class="mono">${v.latestSnapshotId ?? "—"}</td><td>${v.availabilityZone ?? "—"}</td></tr>`,
          )}</tbody>
        </table>
      </div>
    </div>
    <h3>Snapshots and images</h3>
    ${
      (detail.resources.artifacts ?? []).length === 0
        ? html`<p class="empty">None held.</p>`
        : html`<table class="small" data-testid="artifacts">
          <thead><tr><th>Id</th><th>Kind</th><th>Region</th><th>Copy of</th><th>Device</th><th>Generation</th><th>Age</th></tr></thead>
          <tbody>${(detail.resources.artifacts ?? []).map(
            (a) => html`<tr><td class="mono">${a.id}</td><td>${a.kind}</td><td>${a.region ?? spec.region ?? "—"}</td>
              <td class="mono">${a.region ? (a.sourceId ?? "—") : "—"}</td><td>${a.device ?? "—"}</td><td>${a.generation ?? "—"}</td>
              <td title=${a.createdAt}>${age(a.createdAt, now)}</td></tr>`,
          )}</tbody>
        </table>`
    }
    <${Inventory} inv=${detail.inventory ?? null} now=${now} />
    <h3>Generations</h3>
    <table class="small" data-testid="generations">
      <thead><tr>
        <th>#</th><th>EC2 instance</th><th>Market</th><th>Type</th><th>AZ</th><th>Launched</th><th>Ended</th><th>Ran</th><th>Why it ended</th>
      </tr></thead>
      <tbody>${[...detail.generations].reverse().map(
        (g) => html`<tr>
          <td>${g.generation}</td><td class="mono">${g.instanceId ?? "—"}</td><td>${g.lifecycle ?? "—"}</td><td>${g.instanceType ?? "—"}</td>
          <td>${g.availabilityZone ?? "—"}</td><td title=${g.launchedAt ?? ""}>${g.launchedAt ? `${age(g.launchedAt, now)} ago` : "—"}</td>
          <td title=${g.endedAt ?? ""}>${g.endedAt ? `${age(g.endedAt, now)} ago` : "running"}</td>
          <td>${g.launchedAt ? seconds(((g.endedAt ? Date.parse(g.endedAt) : now) - Date.parse(g.launchedAt)) / 1000 / scale) : "—"}</td>
          <td>${g.endReason ?? ""}</td>
        </tr>`,
      )}</tbody>
    </table>
    <h3>Timeline</h3>
    ${
      timelines.length === 0
        ? html`<p class="empty">No workflow yet.</p>`
        : html`<div>
          <select data-testid="timeline-select" value=${shown?.workflowId} onChange=${(e: Event) => setSelected((e.target as HTMLSelectElement).value)}>
            ${timelines.map((t) => {
              const label = [t.kind, t.trigger ?? "operator", new Date(t.startedAt).toLocaleString(), t.outcome].join(" · ");
              return html`<option value=${t.workflowId}>${label}</option>`;
            })}
          </select>
          ${
            shown &&
            html`<div class="timeline" data-testid="timeline" data-kind=${shown.kind}>
              <p>${shown.kind} <span class="mono">${shown.workflowId}</span>: ${shown.outcome};
                downtime <strong data-testid="downtime">${seconds(shown.downtimeSeconds)}</strong>,
                recovery <strong>${seconds(shown.recoverySeconds)}</strong>.
                Critical path: <span data-testid="critical-path">${shown.criticalPath.join(" → ") || "—"}</span></p>
              <${Gantt} t=${shown} now=${now} />
              <p class="legend"><span class="key critical"></span> critical path <span class="key bar"></span> other steps
                <span class="key band-downtime"></span> downtime <span class="key band-recovery"></span> recovery</p>
            </div>`
          }
        </div>`
    }
    <h3>Events</h3>
    <table class="small" data-testid="events">
      <thead><tr><th>When</th><th>Kind</th><th>Message</th></tr></thead>
      <tbody>${[...events.events]
        .reverse()
        .map(
          (e) => html`<tr><td title=${e.at}>${new Date(e.at).toLocaleTimeString()}</td><td>${e.kind}</td><td>${e.message}</td></tr>`,
        )}</tbody>
    </table>
  </section>`;
}

function App() {
  const [signedIn, setSignedIn] = useState(storedToken() !== null);
  const [signOutReason, setSignOutReason] = useState<string | null>(null);
  const [instances, setInstances] = useState<InstanceSummary[] | null>(null);
  const [mode, setMode] = useState("polling");
  const hash = useHash();
  useEffect(
    () =>
      whenUnauthorized((message) => {
        storeToken(null);
        setSignOutReason(`Signed out: the coordinator refused the token (${message}).`);
        setSignedIn(false);
      }),
    [],
  );
  useEffect(() => {
    if (!signedIn) return;
    return follow<InstanceSummary[]>(
      "instances",
      setInstances,
      async () => (await api<{ instances: InstanceSummary[] }>("/instances")).instances,
      setMode,
    );
  }, [signedIn]);
  if (!signedIn)
    return html`<${SignIn} message=${signOutReason} onSignedIn=${() => {
      setSignOutReason(null);
      setSignedIn(true);
    }} />`;
  const m = /^#\/instances\/(.+)$/.exec(hash);
  const name = m ? decodeURIComponent(m[1]!) : null;
  return html`<div>
    <header>
      <a class="brand" href="#/">spotkeep</a>
      <nav>
        <a href="#/" class=${name || hash === "#/savings" ? "" : "active"}>Fleet</a>
        <a href="#/savings" data-testid="nav-savings" class=${hash === "#/savings" ? "active" : ""}>Savings</a>
      </nav>
      <button class="signout" data-testid="signout" onClick=${() => {
        storeToken(null);
        setInstances(null);
        setSignedIn(false);
      }}>Sign out</button>
    </header>
    <main>
      ${
        name
          ? html`<${Instance} name=${name} summary=${instances?.find((i) => i.name === name)} />`
          : hash === "#/savings"
            ? html`<${Savings} />`
            : html`<${Fleet} instances=${instances} mode=${mode} />`
      }
    </main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app")!);
