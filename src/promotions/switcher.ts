/**
 * Switching on time. Product pages need no switch (their documents carry the schedule and render the price
 * in force), but the denormalised copies do: `products.min_prices`/`price_badges` (listing price filters,
 * sorts and badges), change_seq (feeds' `since` deltas) and the cached responses. At every start and end,
 * `switchDue` refreshes the affected products through the normal pipeline (price-refresh.ts): KV documents
 * are re-put by the consumer (warmed, not just evicted) and caches purged.
 *
 * Who calls it: the PromotionClock Durable Object's alarm, armed for the exact next boundary (sub-second
 * lag), and the every-minute cron as a safety net. Both may run for the same boundary; a run is
 * idempotent apart from duplicate events, which the pipeline tolerates.
 */
import { allCatalogDbs } from "../db/partitions";
import { repairPromotionMirrors } from "./mirror-repair";
import { refreshProductPrices } from "./price-refresh";
import { ownedBy } from "./write";
import { promotionBoundaryStatements } from "../webhooks/promotion-events";
import { FIRST_RUN_LOOKBACK_MS, SWITCHED_THROUGH as WATERMARK } from "./watermark";
import { registerAccounted } from "../lib/isolate-memory";

export async function switchDue(env: Pick<Env, "DB" | "EVENTS" | "CATALOG_PARTITIONS">, now: number): Promise<{ from: number; products: number }> {
  const row = await env.DB.prepare("SELECT value FROM meta WHERE key = ?").bind(WATERMARK).first<{ value: string }>();
  const from = row ? Number(row.value) : now - FIRST_RUN_LOOKBACK_MS;
  if (!(from < now)) return { from, products: 0 };
  // Each catalog partition switches its own products: it mirrors the promotions and holds their targets. An old
  // partition still holding moved products' rows (a growth's clean-up) leaves them to their owner (ownedBy).
  const dbs = allCatalogDbs(env);
  const counts = await Promise.all(
    dbs.map(async (db, partition) => {
      const { results } = await db
        .prepare(
          `SELECT DISTINCT t.product_id FROM promotions p JOIN promotion_targets t ON t.promotion_id = p.id
           WHERE p.deleted_at IS NULL AND ((p.starts_at > ?1 AND p.starts_at <= ?2) OR (p.ends_at > ?1 AND p.ends_at <= ?2))`,
        )
        .bind(from, now)
        .all<{ product_id: string }>();
      const owned = results.map((r) => r.product_id).filter(ownedBy(dbs.length, partition));
      return refreshProductPrices(env, owned, now, db);
    }),
  );
  const products = counts.reduce((a, b) => a + b, 0);
  // Before the watermark moves: a run that dies here is redone by the next, and the events' ids make that harmless.
  await env.DB.batch(promotionBoundaryStatements(env.DB, from, now));
  // Only forwards: a slow run must not move the watermark back over boundaries a later run already handled.
  await env.DB.prepare(
    `INSERT INTO meta (key, value, updated_at) VALUES (?1, ?2, ?2)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at WHERE CAST(meta.value AS INTEGER) < ?2`,
  )
    .bind(WATERMARK, String(now))
    .run();
  return { from, products: products };
}

/** The first start or end after `now` of any live promotion (null: nothing scheduled). */
export async function nextScheduledBoundary(db: D1Database, now: number): Promise<number | null> {
  const row = await db
    .prepare(
      `SELECT min(t) AS next FROM (
         SELECT min(starts_at) AS t FROM promotions WHERE starts_at > ?1 AND deleted_at IS NULL
         UNION ALL SELECT min(ends_at) FROM promotions WHERE ends_at > ?1 AND deleted_at IS NULL)`,
    )
    .bind(now)
    .first<{ next: number | null }>();
  return row?.next ?? null;
}

// Per-isolate copy of the surrounding boundaries, for readers that cannot know which promotions affect them
// (listings: a price filter's result set changes with any product's price). Re-read at most every second.
let cached: { next: number | null; last: number | null; fetchedAt: number } | null = null;
const CACHE_MS = 1_000;
registerAccounted("promotions.boundaries", { bytes: () => (cached ? 96 : 0), entries: () => (cached ? 1 : 0), budget: () => 96 });
/** After a boundary, the switch (min_prices) takes a moment: listings rendered meanwhile are not cached. */
const SWITCH_GRACE_MS = 2_000;

async function boundaries(db: D1Database, now: number): Promise<{ next: number | null; last: number | null }> {
  if (cached && now >= cached.fetchedAt && now - cached.fetchedAt < CACHE_MS && (cached.next === null || cached.next > now)) return cached;
  const row = await db
    .prepare(
      `SELECT (SELECT min(starts_at) FROM promotions WHERE starts_at > ?1 AND deleted_at IS NULL) AS next_start,
              (SELECT min(ends_at) FROM promotions WHERE ends_at > ?1 AND deleted_at IS NULL) AS next_end,
              (SELECT max(starts_at) FROM promotions WHERE starts_at <= ?1 AND deleted_at IS NULL) AS last_start,
              (SELECT max(ends_at) FROM promotions WHERE ends_at <= ?1 AND deleted_at IS NULL) AS last_end`,
    )
    .bind(now)
    .first<{ next_start: number | null; next_end: number | null; last_start: number | null; last_end: number | null }>();
  const pick = (a: number | null | undefined, b: number | null | undefined, f: (x: number, y: number) => number) =>
    a == null ? (b ?? null) : b == null ? a : f(a, b);
  cached = { next: pick(row?.next_start, row?.next_end, Math.min), last: pick(row?.last_start, row?.last_end, Math.max), fetchedAt: now };
  return cached;
}

/**
 * Seconds a listing rendered at `now` may be cached: never past the next boundary of any promotion, and
 * not at all right after one (until the switch has updated min_prices). undefined = no cap.
 */
export async function listingPriceCap(db: D1Database, now: number): Promise<number | undefined> {
  const { next, last } = await boundaries(db, now);
  if (last !== null && now - last < SWITCH_GRACE_MS) return 0;
  return next === null ? undefined : Math.max(0, (next - now) / 1000);
}

/** A promotion write in this isolate changes the schedule: forget the cached boundary. */
export function forgetNextBoundary(): void {
  cached = null;
}

/** Arms the PromotionClock alarm for `at` (kept if an earlier alarm is already set). */
export async function armClock(env: Pick<Env, "PROMO_CLOCK">, at: number | null): Promise<void> {
  if (at === null) return;
  await env.PROMO_CLOCK.getByName("promotions").arm(at);
}

/** Cron tick: switch whatever is due (a missed or failed alarm) and make sure the alarm is armed. */
export async function promotionsTick(env: Pick<Env, "DB" | "EVENTS" | "PROMO_CLOCK" | "CATALOG_PARTITIONS">, now: number): Promise<void> {
  // Mirrors first: a partition that missed a promotion write must have it before its boundary is switched.
  await repairPromotionMirrors(env, now);
  await switchDue(env, now);
  await armClock(env, await nextScheduledBoundary(env.DB, now));
}
