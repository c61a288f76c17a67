/**
 * Click counts per affiliate, from the D1 `clicks` table that the click redirect writes (every click outside
 * production; in production only the clicks whose Analytics Engine write failed: the full production count lives
 * in the `edgeshelf_clicks` dataset, read through Cloudflare's SQL API outside the Worker).
 *
 * Every count walks `clicks_affiliate_idx` (affiliate_id, at) from the window's start and stops at
 * CLICK_COUNT_CAP rows, so a page of affiliates costs a bounded read however many clicks the shop has.
 */
export const CLICK_COUNT_CAP = 100_000;
const DAY_MS = 86_400_000;

export type ClickCounts = { last_24h: number; last_7d: number; last_30d: number; capped: boolean; source: "d1" };
export type ClickDetail = ClickCounts & { per_day: { day: string; clicks: number }[]; top_products: { product_id: string; clicks: number }[] };

const ZERO: ClickCounts = { last_24h: 0, last_7d: 0, last_30d: 0, capped: false, source: "d1" };

/** Counts over the last 24 h, 7 and 30 days for each affiliate id, in one statement. */
export async function clickCounts(db: D1Database, ids: string[], now = Date.now()): Promise<Map<string, ClickCounts>> {
  const out = new Map<string, ClickCounts>(ids.map((id) => [id, { ...ZERO }]));
  if (!ids.length) return out;
  const window = (n: number) => `(SELECT count(*) FROM (SELECT 1 FROM clicks WHERE affiliate_id = j.value AND at >= ${n} LIMIT ?2))`;
  const { results } = await db
    .prepare(`SELECT j.value AS id, ${window(now - DAY_MS)} AS d1, ${window(now - 7 * DAY_MS)} AS d7, ${window(now - 30 * DAY_MS)} AS d30 FROM json_each(?1) j`)
    .bind(JSON.stringify(ids), CLICK_COUNT_CAP)
    .all<{ id: string; d1: number; d7: number; d30: number }>();
  for (const r of results) out.set(r.id, { last_24h: r.d1, last_7d: r.d7, last_30d: r.d30, capped: r.d30 >= CLICK_COUNT_CAP, source: "d1" });
  return out;
}

/** One affiliate's counts, clicks per UTC day over the last 14 days, and its most clicked products over 7 days. */
export async function clickDetail(db: D1Database, id: string, now = Date.now()): Promise<ClickDetail> {
  const since14 = now - 14 * DAY_MS;
  const [counts, days, top] = await Promise.all([
    clickCounts(db, [id], now),
    db
      .prepare(`SELECT day, count(*) AS clicks FROM (SELECT at / ${DAY_MS} AS day FROM clicks WHERE affiliate_id = ? AND at >= ? ORDER BY at DESC LIMIT ?) GROUP BY day`)
      .bind(id, since14, CLICK_COUNT_CAP)
      .all<{ day: number; clicks: number }>(),
    db
      .prepare(
        `SELECT product_id, count(*) AS clicks FROM (SELECT product_id FROM clicks WHERE affiliate_id = ? AND at >= ? ORDER BY at DESC LIMIT ?)
         GROUP BY product_id ORDER BY clicks DESC, product_id LIMIT 10`,
      )
      .bind(id, now - 7 * DAY_MS, CLICK_COUNT_CAP)
      .all<{ product_id: string; clicks: number }>(),
  ]);
  const byDay = new Map(days.results.map((d) => [d.day, d.clicks]));
  const today = Math.floor(now / DAY_MS);
  const per_day = Array.from({ length: 14 }, (_, i) => today - 13 + i).map((d) => ({ day: new Date(d * DAY_MS).toISOString().slice(0, 10), clicks: byDay.get(d) ?? 0 }));
  return { ...counts.get(id)!, per_day, top_products: top.results };
}
