/** Overview tiles: the figures of /admin/metrics plus their last hour from the per-minute store. */
import { collectMetrics } from "../events/metrics";
import { recordGauges } from "../metrics/gauges";
import { ROUTE_CLASSES } from "../metrics/request-metrics";
import { sloReport, type SloReport } from "../metrics/slo";
import { histogram, histogramPercentile, LAG_BOUNDS, LATENCY_BOUNDS, minuteOf, perMinute, readPoints, total, type SeriesTable } from "../metrics/timeseries";
import { recommendationMetrics } from "../recommendations/jobs";
import { fmt, ms, pct, Sparkline, Tile, when } from "./ui";

const HOUR = 60;
const TIERS = ["edge", "kv", "d1", "stale"] as const;
const LATENCY_CLASSES = ROUTE_CLASSES.filter((c) => c !== "other");

function percentileSeries(table: SeriesTable, prefix: string, bounds: readonly number[], from: number, to: number, p: number): number[] {
  const out: number[] = [];
  for (let m = from; m <= to; m++) {
    const v = histogramPercentile(bounds, histogram(table, prefix, bounds.length, m, m), p);
    out.push(v === null ? 0 : Number.isFinite(v) ? v : bounds.at(-2)! * 2);
  }
  return out;
}

export async function overviewData(env: Env, now = Date.now()) {
  const to = minuteOf(now);
  const from = to - HOUR + 1;
  const metrics = await collectMetrics(env, now);
  // Sampling the gauges also writes this isolate's buffered counts, so the tiles include the current minute.
  await recordGauges(env, now, { outboxBacklog: metrics.outbox.backlog, deadLettersPending: metrics.dead_letters.pending, hotSkus: 0 }).catch(() => undefined);
  const [table, slo, recs, promos] = await Promise.all([
    readPoints(env.DB, from, to, ["req.", "tier.", "rsv.", "lag.", "g."]),
    sloReport(env, now),
    recommendationMetrics(env.DB),
    env.DB.batch([
      env.DB.prepare("SELECT id, name, starts_at, ends_at FROM promotions WHERE deleted_at IS NULL AND starts_at <= ?1 AND (ends_at IS NULL OR ends_at > ?1) ORDER BY coalesce(ends_at, 9e15) LIMIT 5").bind(now),
      env.DB.prepare("SELECT count(*) AS n FROM promotions WHERE deleted_at IS NULL AND starts_at <= ?1 AND (ends_at IS NULL OR ends_at > ?1)").bind(now),
      env.DB.prepare("SELECT id, name, starts_at, ends_at FROM promotions WHERE deleted_at IS NULL AND starts_at > ? ORDER BY starts_at LIMIT 3").bind(now),
      env.DB.prepare("SELECT sku, sub_shards, state FROM hot_skus ORDER BY sku LIMIT 20"),
    ]),
  ]);
  type Promo = { id: string; name: string; starts_at: number; ends_at: number | null };
  return {
    now,
    from,
    to,
    metrics,
    table,
    slo,
    recs,
    active: promos[0]!.results as Promo[],
    activeCount: (promos[1]!.results[0] as { n: number }).n,
    next: promos[2]!.results as Promo[],
    hot: promos[3]!.results as { sku: string; sub_shards: number; state: string }[],
  };
}

export type OverviewData = Awaited<ReturnType<typeof overviewData>>;

export function OverviewTiles({ d }: { d: OverviewData }) {
  const { table, from, to } = d;
  const reads = TIERS.map((t) => total(table, `tier.${t}`));
  const readsTotal = reads.reduce((a, b) => a + b, 0);
  const tierSeries = TIERS.map((t) => perMinute(table, `tier.${t}`, from, to));
  const readsPerMinute = tierSeries[0]!.map((_, i) => tierSeries.reduce((n, s) => n + s[i]!, 0));
  const lagHist = histogram(table, "lag", LAG_BOUNDS.length);
  const rsv = (s: string) => total(table, `rsv.${s}`);
  const rsvPerMinute = perMinute(table, "req.reserve.n", from, to);
  const burning = d.slo.burning;
  return (
    <div class="tiles" id="tiles" data-refresh="/console/tiles" data-interval="10">
      {burning.length ? (
        <p class="burn" role="alert">
          Error budget burning: {burning.map((o) => `${o.scope} ${o.name} (${o.status === "breached" ? "overspent" : `${pct(o.budget_left, 0)} left`})`).join("; ")}.{" "}
          <a href="/console/slo">See SLOs</a>
        </p>
      ) : null}
      <Tile title="Reads by tier (last hour)" id="reads">
        <table class="kv">
          <tbody>
            {TIERS.map((t, i) => (
              <tr>
                <th scope="row">{t}</th>
                <td data-figure={`reads-${t}`}>{fmt(reads[i])}</td>
                <td>{readsTotal ? pct(reads[i]! / readsTotal, 1) : "–"}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <p>
          Cache hit ratio: <strong data-figure="hit-ratio">{readsTotal ? pct((reads[0]! + reads[1]!) / readsTotal, 1) : "–"}</strong> of {fmt(readsTotal)} reads
        </p>
        <Sparkline values={readsPerMinute} label="Reads per minute" />
      </Tile>
      <Tile title="Latency per route class (last hour)" id="latency">
        <table>
          <thead>
            <tr>
              <th scope="col">class</th>
              <th scope="col">requests</th>
              <th scope="col">p50</th>
              <th scope="col">p99</th>
              <th scope="col">p99 per minute</th>
            </tr>
          </thead>
          <tbody>
            {LATENCY_CLASSES.map((cls) => {
              const h = histogram(table, `req.${cls}`, LATENCY_BOUNDS.length);
              return (
                <tr>
                  <th scope="row">{cls}</th>
                  <td data-figure={`requests-${cls}`}>{fmt(total(table, `req.${cls}.n`))}</td>
                  <td>≤ {ms(histogramPercentile(LATENCY_BOUNDS, h, 50))}</td>
                  <td>≤ {ms(histogramPercentile(LATENCY_BOUNDS, h, 99))}</td>
                  <td>
                    <Sparkline values={percentileSeries(table, `req.${cls}`, LATENCY_BOUNDS, from, to, 99)} label={`${cls} p99 per minute`} unit=" ms" />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </Tile>
      <Tile title="Propagation" id="propagation" tone={d.metrics.dead_letters.pending > 0 ? "warn" : undefined}>
        <table class="kv">
          <tbody>
            <tr>
              <th scope="row">write → fresh read p50 / p99 (15 min)</th>
              <td data-figure="lag">
                {ms(d.metrics.propagation_lag_ms.p50)} / {ms(d.metrics.propagation_lag_ms.p99)}
              </td>
            </tr>
            <tr>
              <th scope="row">events consumed (hour), p99 bucket</th>
              <td>
                {fmt(total(table, "lag.n"))}, ≤ {ms(histogramPercentile(LAG_BOUNDS, lagHist, 99))}
              </td>
            </tr>
            <tr>
              <th scope="row">outbox backlog</th>
              <td data-figure="outbox">{fmt(d.metrics.outbox.backlog)}</td>
            </tr>
            <tr>
              <th scope="row">dead letters pending</th>
              <td data-figure="dead-letters">
                <a href="/console/events">{fmt(d.metrics.dead_letters.pending)}</a>
              </td>
            </tr>
          </tbody>
        </table>
        <Sparkline values={percentileSeries(table, "lag", LAG_BOUNDS, from, to, 99)} label="Lag p99 per minute" unit=" ms" />
        <Sparkline values={perMinute(table, "g.outbox", from, to)} label="Outbox backlog per minute" />
      </Tile>
      <Tile title="Reservations (last hour)" id="reservations" tone={rsv("503") > 0 ? "bad" : undefined}>
        <p>
          <strong data-figure="reservations-per-minute">{fmt(rsvPerMinute.reduce((a, b) => a + b, 0) / HOUR, 1)}</strong> attempts per minute
        </p>
        <table class="kv">
          <tbody>
            {(["201", "409", "429", "503"] as const).map((s) => (
              <tr>
                <th scope="row">{s === "201" ? "201 held" : s === "409" ? "409 sold out" : s === "429" ? "429 limited" : "503 unavailable"}</th>
                <td data-figure={`rsv-${s}`}>{fmt(rsv(s))}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <Sparkline values={rsvPerMinute} label="Reservation attempts per minute" />
      </Tile>
      <Tile title="Hot SKUs" id="hot">
        {d.hot.length ? (
          <ul>
            {d.hot.map((h) => (
              <li>
                <a href={`/console/stock?sku=${encodeURIComponent(h.sku)}`}>{h.sku}</a> · {h.sub_shards} sub-shards{h.state !== "hot" ? ` (${h.state})` : ""}
              </li>
            ))}
          </ul>
        ) : (
          <p>No hot SKUs.</p>
        )}
        <Sparkline values={perMinute(table, "g.hot", from, to)} label="Hot SKUs per minute" />
      </Tile>
      <Tile title="Promotions" id="promotions">
        <p>
          <strong data-figure="promotions-active">{fmt(d.activeCount)}</strong> active now
        </p>
        <ul>
          {d.active.map((p) => (
            <li>
              {p.name} · ends {p.ends_at ? when(p.ends_at) : "never"}
            </li>
          ))}
        </ul>
        <h3>Starting next</h3>
        {d.next.length ? (
          <ul>
            {d.next.map((p) => (
              <li>
                {p.name} · starts {when(p.starts_at)}
              </li>
            ))}
          </ul>
        ) : (
          <p>Nothing scheduled.</p>
        )}
      </Tile>
      <Tile title="Recommendations" id="recommendations">
        {d.recs.rebuild_running ? (
          <p>
            Rebuild running: {fmt(d.recs.rebuild_running.processed)} / {fmt(d.recs.rebuild_running.total)}{" "}
            <progress max={d.recs.rebuild_running.total || 1} value={d.recs.rebuild_running.processed} aria-label="Rebuild progress"></progress>
          </p>
        ) : null}
        <p data-figure="last-rebuild">
          Last rebuild:{" "}
          {d.recs.last_rebuild ? `${when(d.recs.last_rebuild.finished_at)} (${fmt(d.recs.last_rebuild.total)} products in ${ms(d.recs.last_rebuild.duration_ms)})` : "never"}
        </p>
        <p>Waiting for the incremental run: {fmt(d.recs.dirty_products)} products</p>
      </Tile>
      <SloSummary slo={d.slo} />
    </div>
  );
}

export function SloSummary({ slo }: { slo: SloReport }) {
  return (
    <Tile title={`SLOs (rolling ${slo.config.window_minutes} min)`} id="slo" tone={slo.burning.some((o) => o.status === "breached") ? "bad" : slo.burning.length ? "warn" : "ok"}>
      <SloTable slo={slo} compact />
    </Tile>
  );
}

export function SloTable({ slo, compact = false }: { slo: SloReport; compact?: boolean }) {
  const rows = compact ? slo.objectives.filter((o) => o.status !== "no_data" || o.id === "freshness" || o.id.startsWith("latency_p99")) : slo.objectives;
  return (
    <table class="slo">
      <caption class={compact ? "sr-only" : undefined}>
        Window {when(slo.window.from)} – {when(slo.window.to)}
      </caption>
      <thead>
        <tr>
          <th scope="col">objective</th>
          <th scope="col">scope</th>
          <th scope="col">target</th>
          <th scope="col">actual</th>
          <th scope="col">events (bad)</th>
          <th scope="col">error budget left</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((o) => (
          <tr class={`slo-${o.status}`} data-objective={o.id}>
            <th scope="row">{o.name}</th>
            <td>{o.scope}</td>
            <td>{pct(o.target, 2)}</td>
            <td>{pct(o.actual, 3)}</td>
            <td>
              {fmt(o.events)} ({fmt(o.bad)})
            </td>
            <td>
              {o.budget_left === null ? (
                "no data"
              ) : (
                <>
                  <meter min={-1} max={1} low={0} high={0.25} optimum={1} value={Math.max(-1, o.budget_left)} aria-label={`${o.scope} ${o.name} budget`}></meter>{" "}
                  <span class="budget">{o.budget_left < 0 ? "overspent" : pct(o.budget_left, 0)}</span>
                  {o.budget_events_left !== null && o.budget_events_left >= 0 ? ` (${fmt(o.budget_events_left)} more bad events allowed)` : ""}
                </>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
