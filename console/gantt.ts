/**
 * A workflow's timeline as a Gantt chart (SVG): one bar per step from its start to its end, the
 * critical-path steps highlighted, and for a replacement the downtime (quiesce start → restore
 * done) and the recovery (notice → restore done) drawn as bands under the axis. Timestamps are
 * real time; the axis is in model seconds (real ÷ timeScale), the unit the durations use.
 */
import { html } from "htm/preact";
import { STEP } from "../shared/steps.js";
import type { Timeline } from "./types.js";

const ROW = 22;
const LABEL = 150;
const WIDTH = 760;
const PLOT = WIDTH - LABEL - 20;

function ms(iso: string | null): number | null {
  return iso ? Date.parse(iso) : null;
}

export function seconds(s: number | null): string {
  if (s === null) return "—";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    return `${m} min ${Math.round(s - m * 60)} s`;
  }
  if (s < 172_800) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${(s / 86_400).toFixed(1)} d`;
}

export function Gantt({ t, now }: { t: Timeline; now: number }) {
  const start = Date.parse(t.startedAt);
  const steps = t.steps.filter((s) => s.startedAt);
  const ends = steps.map((s) => ms(s.endedAt) ?? now);
  const end = Math.max(ms(t.finishedAt) ?? now, ...ends, start + 1);
  const span = end - start;
  const x = (at: number) => LABEL + ((at - start) / span) * PLOT;
  const critical = new Set(t.criticalPath);
  const byName = (n: string) => t.steps.find((s) => s.name === n);
  const ready = ms(byName(STEP.restore)?.endedAt ?? null);
  // The coordinator says where the downtime began (a make-before-break's is its cutover quiesce).
  const quiesce = ms(t.downtimeFrom ?? byName(STEP.quiesce)?.startedAt ?? null);
  const bands: Array<{ label: string; from: number; to: number; cls: string }> = [];
  if (t.kind === "replace" && ready !== null) {
    bands.push({ label: `downtime ${seconds(t.downtimeSeconds)}`, from: quiesce ?? start, to: ready, cls: "band-downtime" });
    bands.push({ label: `recovery ${seconds(t.recoverySeconds)}`, from: start, to: ready, cls: "band-recovery" });
  }
  const height = 30 + steps.length * ROW + bands.length * ROW + 10;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => ({ at: start + f * span, label: seconds((f * span) / 1000 / t.timeScale) }));
  return html`<svg class="gantt" data-testid="gantt" viewBox="0 0 ${WIDTH} ${height}" width=${WIDTH} height=${height} role="img"
    aria-label=${`timeline of ${t.kind} ${t.workflowId}`}>
    ${ticks.map(
      (k) => html`<g>
        <line class="tick" x1=${x(k.at)} x2=${x(k.at)} y1="18" y2=${height - 4} />
        <text class="tick-label" x=${x(k.at)} y="12" text-anchor="middle">${k.label}</text>
      </g>`,
    )}
    ${steps.map((s, i) => {
      const y = 24 + i * ROW;
      const from = Date.parse(s.startedAt!);
      const to = ms(s.endedAt) ?? now;
      const cls = `bar ${critical.has(s.name) ? "critical" : ""} status-${s.status}`;
      const attempts = s.attempts > 1 ? `, ${s.attempts} attempts` : "";
      return html`<g data-testid="gantt-step" data-step=${s.name} data-critical=${critical.has(s.name) ? "true" : "false"}>
        <text class="step-label" x=${LABEL - 6} y=${y + 14} text-anchor="end">${s.name}</text>
        <rect class=${cls} x=${x(from)} y=${y + 3} width=${Math.max(2, x(to) - x(from))} height=${ROW - 6} rx="2">
          <title>${s.name}: ${seconds(s.durationMs === null ? null : s.durationMs / 1000)} (${s.status}${attempts})</title>
        </rect>
      </g>`;
    })}
    ${bands.map((b, i) => {
      const y = 24 + steps.length * ROW + i * ROW;
      return html`<g data-testid=${b.cls}>
        <text class="step-label" x=${LABEL - 6} y=${y + 14} text-anchor="end">${b.label}</text>
        <rect class=${`band ${b.cls}`} x=${x(b.from)} y=${y + 5} width=${Math.max(2, x(b.to) - x(b.from))} height=${ROW - 10} />
      </g>`;
    })}
  </svg>`;
}
