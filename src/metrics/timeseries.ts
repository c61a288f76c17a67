/**
 * A small, bounded per-minute metrics store in D1 (`metric_points`), for the history `/admin/metrics` lacks
 * (the console's hour sparklines and SLO windows). Each isolate adds counts to an in-memory buffer and writes it
 * as one upsert statement at most about once a minute, so requests never wait on it and D1 sees one write per
 * isolate per minute. Counters add up across isolates; gauges (`g.*`) keep the minute's maximum. Latency and
 * lag are histograms over fixed buckets (`*.h<i>`), which add up too, so percentiles merge across isolates and
 * minutes. Names come from code, never from input, and rows past the retention are pruned by the cron: the table is bounded
 * by RETENTION_MINUTES × the fixed set of names.
 */
import { registerAccounted } from "../lib/isolate-memory";

export const RETENTION_MINUTES = 24 * 60;

/** Upper bounds (ms) of the request latency buckets; 120 and 200 are the read SLO thresholds. */
export const LATENCY_BOUNDS = [10, 25, 50, 100, 120, 200, 300, 500, 1000, 2000, 5000, Infinity] as const;
/** Upper bounds (ms) of the write → consume lag buckets. */
export const LAG_BOUNDS = [50, 100, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, Infinity] as const;

export function minuteOf(ms: number): number {
  return Math.floor(ms / 60_000);
}

export function bucketOf(bounds: readonly number[], value: number): number {
  const i = bounds.findIndex((b) => value <= b);
  return i === -1 ? bounds.length - 1 : i;
}

/** The upper bound of the bucket holding the p-th percentile (a conservative figure), or null when empty. */
export function histogramPercentile(bounds: readonly number[], counts: readonly number[], p: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.ceil((p / 100) * total);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i] ?? 0;
    if (seen >= rank) return bounds[i] ?? null;
  }
  return bounds.at(-1) ?? null;
}

/** Share of samples at or under `bound` (which must be one of `bounds`), or null when empty. */
export function shareWithin(bounds: readonly number[], counts: readonly number[], bound: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const last = bounds.indexOf(bound);
  const within = counts.slice(0, last + 1).reduce((a, b) => a + b, 0);
  return within / total;
}

/** Per-isolate buffer: `${minute}|${name}` → value. */
const pending = new Map<string, number>();
let lastFlushMinute = minuteOf(Date.now());
const MAX_PENDING = 2_000;
registerAccounted("metrics.pending-points", { bytes: () => pending.size * 128, entries: () => pending.size, budget: () => MAX_PENDING * 128 });

export function addPoint(name: string, value = 1, at = Date.now()): void {
  const key = `${minuteOf(at)}|${name}`;
  if (name.startsWith("g.")) pending.set(key, Math.max(pending.get(key) ?? -Infinity, value));
  else pending.set(key, (pending.get(key) ?? 0) + value);
}

/** True when the buffer should be written now: the minute turned over, or it grew large. */
export function flushDue(now = Date.now()): boolean {
  return pending.size > 0 && (minuteOf(now) !== lastFlushMinute || pending.size >= MAX_PENDING);
}

/**
 * Writes the buffer in one statement (one bound parameter: a JSON array). On failure the points are put back,
 * so a D1 hiccup delays history rather than losing it (the buffer stays bounded by MAX_PENDING × 2).
 */
export async function flushPoints(db: D1Database, now = Date.now()): Promise<void> {
  lastFlushMinute = minuteOf(now);
  if (pending.size === 0) return;
  const points = [...pending].map(([key, value]) => {
    const bar = key.indexOf("|");
    return [Number(key.slice(0, bar)), key.slice(bar + 1), value] as const;
  });
  pending.clear();
  try {
    await db
      .prepare(
        `INSERT INTO metric_points (minute, name, value)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?) WHERE true
         ON CONFLICT (minute, name) DO UPDATE SET value = CASE WHEN substr(metric_points.name, 1, 2) = 'g.'
           THEN max(metric_points.value, excluded.value) ELSE metric_points.value + excluded.value END`,
      )
      .bind(JSON.stringify(points))
      .run();
  } catch (err) {
    if (pending.size < MAX_PENDING) for (const [m, n, v] of points) addPoint(n, v, m * 60_000);
    console.error(JSON.stringify({ level: "error", message: "metric points not written; kept for the next flush", error: String(err) }));
  }
}

export async function prunePoints(db: D1Database, now = Date.now()): Promise<void> {
  await db.prepare("DELETE FROM metric_points WHERE minute < ?").bind(minuteOf(now) - RETENTION_MINUTES).run();
}

/** name → (minute → value) for every name starting with one of `prefixes`, over [fromMinute, toMinute]. */
export type SeriesTable = Map<string, Map<number, number>>;

export async function readPoints(db: D1Database, fromMinute: number, toMinute: number, prefixes: readonly string[]): Promise<SeriesTable> {
  const { results } = await db
    .prepare(
      `SELECT minute, name, value FROM metric_points
       WHERE minute BETWEEN ? AND ? AND EXISTS (SELECT 1 FROM json_each(?) p WHERE substr(name, 1, length(p.value)) = p.value)`,
    )
    .bind(fromMinute, toMinute, JSON.stringify(prefixes))
    .all<{ minute: number; name: string; value: number }>();
  const table: SeriesTable = new Map();
  for (const r of results) {
    let series = table.get(r.name);
    if (!series) table.set(r.name, (series = new Map()));
    series.set(r.minute, r.value);
  }
  return table;
}

/** One value per minute over [fromMinute, toMinute] (0 where nothing was recorded). */
export function perMinute(table: SeriesTable, name: string, fromMinute: number, toMinute: number): number[] {
  const series = table.get(name);
  const out: number[] = [];
  for (let m = fromMinute; m <= toMinute; m++) out.push(series?.get(m) ?? 0);
  return out;
}

/** Sum of a counter over the window. */
export function total(table: SeriesTable, name: string): number {
  let n = 0;
  for (const v of table.get(name)?.values() ?? []) n += v;
  return n;
}

/** Histogram bucket counts of `prefix` summed over the minutes in [fromMinute, toMinute]. */
export function histogram(table: SeriesTable, prefix: string, buckets: number, fromMinute = -Infinity, toMinute = Infinity): number[] {
  return Array.from({ length: buckets }, (_, i) => {
    let n = 0;
    for (const [m, v] of table.get(`${prefix}.h${i}`) ?? []) if (m >= fromMinute && m <= toMinute) n += v;
    return n;
  });
}
