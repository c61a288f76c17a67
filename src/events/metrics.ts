/**
 * Operational metrics of change propagation: lag samples (D1 `lag_samples`, pruned by the cron), outbox
 * backlog, dead letters, and the read path's per-tier hit counters (tier-stats.ts).
 */
import { tierStats } from "../lib/tier-stats";
import { addPoint, bucketOf, flushPoints, LAG_BOUNDS } from "../metrics/timeseries";

/** Samples older than this are pruned; /admin/metrics reports over the same window. */
export const LAG_WINDOW_MS = 15 * 60_000;

export async function recordLagSamples(d1: D1Database, samples: { type: string; lagMs: number }[], at: number): Promise<void> {
  if (samples.length === 0) return;
  await d1
    .prepare(
      `INSERT INTO lag_samples (event_type, lag_ms, recorded_at)
       SELECT json_extract(value, '$.type'), json_extract(value, '$.lagMs'), ? FROM json_each(?)`,
    )
    .bind(at, JSON.stringify(samples))
    .run();
  // The same samples feed the per-minute history (hour sparklines, lag histogram, freshness SLO) in one more write.
  for (const s of samples) {
    addPoint("lag.n", 1, at);
    addPoint(`lag.h${bucketOf(LAG_BOUNDS, s.lagMs)}`, 1, at);
  }
  await flushPoints(d1, at);
}

export async function pruneLagSamples(d1: D1Database, now = Date.now()): Promise<void> {
  await d1.prepare("DELETE FROM lag_samples WHERE recorded_at < ?").bind(now - LAG_WINDOW_MS).run();
}

export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

type LagSummary = { samples: number; p50: number | null; p95: number | null; p99: number | null; max: number | null };

function summarise(values: number[]): LagSummary {
  const sorted = [...values].sort((a, b) => a - b);
  return { samples: sorted.length, p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), max: sorted.at(-1) ?? null };
}

/** Shortfalls reported in the last day (each report is the shortfall of one location after one recount). */
const OVERSOLD_WINDOW_MS = 24 * 3600_000;

export async function collectMetrics(env: Pick<Env, "DB">, now = Date.now()) {
  const [lag, outbox, dead, oversold] = await env.DB.batch([
    env.DB.prepare("SELECT event_type, lag_ms FROM lag_samples WHERE recorded_at >= ? ORDER BY recorded_at DESC LIMIT 20000").bind(now - LAG_WINDOW_MS),
    env.DB.prepare("SELECT count(*) AS backlog, min(occurred_at) AS oldest FROM outbox WHERE sent_at IS NULL"),
    env.DB.prepare("SELECT count(*) AS total, coalesce(sum(replayed_at IS NULL), 0) AS pending FROM dead_letters"),
    env.DB.prepare("SELECT count(*) AS reports, coalesce(sum(units), 0) AS units, max(occurred_at) AS last FROM stock_oversold WHERE occurred_at >= ?").bind(now - OVERSOLD_WINDOW_MS),
  ]);
  const ov = oversold.results[0] as { reports: number; units: number; last: number | null };
  const lagRows = lag.results as { event_type: string; lag_ms: number }[];
  const byType = new Map<string, number[]>();
  for (const r of lagRows) byType.set(r.event_type, [...(byType.get(r.event_type) ?? []), r.lag_ms]);
  const o = outbox.results[0] as { backlog: number; oldest: number | null };
  const d = dead.results[0] as { total: number; pending: number };
  return {
    generated_at: new Date(now).toISOString(),
    propagation_lag_ms: {
      window_ms: LAG_WINDOW_MS,
      ...summarise(lagRows.map((r) => r.lag_ms)),
      by_type: Object.fromEntries([...byType].map(([type, values]) => [type, summarise(values)])),
    },
    outbox: { backlog: o.backlog, oldest_unsent_age_ms: o.oldest === null ? null : Math.max(0, now - o.oldest) },
    dead_letters: { pending: d.pending, total: d.total },
    cache: tierStats(),
    stock_oversold: { window_ms: OVERSOLD_WINDOW_MS, reports: ov.reports, units: ov.units, last_at: ov.last === null ? null : new Date(ov.last).toISOString() },
  };
}
