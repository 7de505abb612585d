/** The savings page: per instance and in total, hours on spot and on-demand and what spot saved, with a bar chart. */
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.js";
import type { Savings as SavingsData } from "./types.js";

const usd = (n: number) => `$${n.toFixed(n !== 0 && Math.abs(n) < 1 ? 4 : 2)}`;
const hrs = (n: number) => (n < 1 ? `${(n * 60).toFixed(1)} min` : `${n.toFixed(1)} h`);

function Chart({ data }: { data: SavingsData }) {
  const rows = data.instances.filter((l) => l.onDemandEquivalent > 0);
  if (rows.length === 0) return null;
  const max = Math.max(...rows.map((l) => l.onDemandEquivalent));
  const W = 640;
  const L = 150;
  const ROW = 34;
  const x = (v: number) => ((W - L - 90) * v) / max;
  return html`<svg class="savings-chart" data-testid="savings-chart" viewBox="0 0 ${W} ${rows.length * ROW + 10}" width=${W} height=${rows.length * ROW + 10}
    role="img" aria-label="cost on spot against the on-demand equivalent">
    ${rows.map((l, i) => {
      const y = 6 + i * ROW;
      const paid = l.spotCost + l.onDemandCost;
      return html`<g>
        <text class="step-label" x=${L - 6} y=${y + 15} text-anchor="end">${l.name}</text>
        <rect class="od" x=${L} y=${y} width=${Math.max(1, x(l.onDemandEquivalent))} height="11">
          <title>on-demand equivalent ${usd(l.onDemandEquivalent)}</title>
        </rect>
        <rect class="paid" x=${L} y=${y + 13} width=${Math.max(1, x(paid))} height="11"><title>paid ${usd(paid)}</title></rect>
        <text class="step-label" x=${L + x(l.onDemandEquivalent) + 6} y=${y + 15}>saved ${usd(l.saved)}</text>
      </g>`;
    })}
  </svg>`;
}

export function Savings() {
  const [data, setData] = useState<SavingsData | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    const load = async () => {
      try {
        const d = await api<SavingsData>("/savings");
        if (stop) return;
        setData(d);
        setError(null);
      } catch (e) {
        if (!stop) setError((e as Error).message);
      }
    };
    void load();
    const t = setInterval(load, 30_000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, []);
  if (error && !data) return html`<p class="error" role="alert">${error}</p>`;
  if (!data) return html`<p>Loading…</p>`;
  const t = data.total;
  return html`<section data-testid="savings">
    <h2>Savings</h2>
    <div class="cards">
      <div class="card"><div class="big" data-testid="total-saved">${usd(t.saved)}</div>saved by spot</div>
      <div class="card"><div class="big">${hrs(t.spotHours)}</div>on spot</div>
      <div class="card"><div class="big">${hrs(t.onDemandHours)}</div>on on-demand</div>
      <div class="card"><div class="big">${usd(t.spotCost + t.onDemandCost)}</div>paid, against ${usd(t.onDemandEquivalent)} on-demand</div>
    </div>
    <${Chart} data=${data} />
    <p class="legend"><span class="key od"></span> on-demand equivalent <span class="key paid"></span> paid</p>
    <table class="small" data-testid="savings-table">
      <thead><tr>
        <th>Instance</th><th>Spot hours</th><th>On-demand hours</th><th>Spot cost</th><th>On-demand cost</th>
        <th>On-demand equivalent</th><th>Saved</th><th>Not priced</th>
      </tr></thead>
      <tbody>${data.instances.map(
        (l) => html`<tr data-testid="savings-row" data-name=${l.name}>
          <td><a href=${`#/instances/${encodeURIComponent(l.name)}`}>${l.name}</a></td><td>${hrs(l.spotHours)}</td><td>${hrs(l.onDemandHours)}</td>
          <td>${usd(l.spotCost)}</td><td>${usd(l.onDemandCost)}</td><td>${usd(l.onDemandEquivalent)}</td><td><strong>${usd(l.saved)}</strong></td>
          <td class="reason">${l.unpriced.join("; ")}</td>
        </tr>`,
      )}</tbody>
    </table>
    <p class="hint">Spot hours are priced with EC2's spot price history for each generation's type and AZ; on-demand prices come from the coordinator's
      price table (config <code>onDemandPrices</code>). As of ${new Date(data.at).toLocaleString()}.</p>
  </section>`;
}
