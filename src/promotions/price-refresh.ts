/**
 * Keeps the denormalised effective prices on `products` (min_prices for price filters and sorts, and
 * price_badges for the promotion shown on listings) in step with promotions, and announces the change
 * through the normal pipeline: each refreshed product gets its own new change_seq (so feeds' `since`
 * deltas list it) and a `product.changed` outbox row (so the consumer refreshes KV and purges caches).
 *
 * The statements are returned rather than run, so a promotion write can put them in the SAME D1 batch as
 * the promotion itself: the promotion, its targets, the product rows and the outbox rows commit together
 * or not at all.
 */
import { productChangedOutboxSql, sendOutboxIds } from "../events/outbox";
import { minEffectivePrices, type DocPromotion } from "./effective-price";
import { loadSchedules } from "./schedule";
import { CHANGE_SEQ_BASE_SQL } from "../feeds/change-seq";

export type PriceRow = { id: string; min: Record<string, number>; badges: Record<string, unknown> };

type Queryable = Pick<D1Database, "prepare">;

/** Products per UPDATE statement (rows travel as one JSON parameter, so only the SQL size limits this). */
const CHUNK = 500;

/**
 * Effective min prices of `productIds` at `now`. `adjust` lets a write substitute the schedule it is about
 * to commit for the stored one.
 */
export async function computePriceRows(
  db: Queryable,
  productIds: readonly string[],
  now: number,
  adjust?: (productId: string, schedule: DocPromotion[]) => DocPromotion[],
): Promise<PriceRow[]> {
  const ids = [...new Set(productIds)];
  if (ids.length === 0) return [];
  const out: PriceRow[] = [];
  for (let i = 0; i < ids.length; i += 2_000) {
    const chunk = ids.slice(i, i + 2_000);
    const [prices, schedules] = await Promise.all([
      db
        .prepare(
          `SELECT v.product_id, v.sku, p.currency, p.amount FROM variants v JOIN prices p ON p.sku = v.sku
           WHERE v.product_id IN (SELECT value FROM json_each(?)) AND v.status = 'active'`,
        )
        .bind(JSON.stringify(chunk))
        .all<{ product_id: string; sku: string; currency: string; amount: number }>(),
      loadSchedules(db, chunk, now),
    ]);
    const variants = new Map<string, Map<string, Record<string, number>>>();
    for (const r of prices.results) {
      const bySku = variants.get(r.product_id) ?? new Map<string, Record<string, number>>();
      const entry = bySku.get(r.sku) ?? {};
      entry[r.currency] = r.amount;
      bySku.set(r.sku, entry);
      variants.set(r.product_id, bySku);
    }
    for (const id of chunk) {
      const schedule = schedules.get(id) ?? [];
      const list = [...(variants.get(id) ?? new Map()).entries()].map(([sku, p]) => ({ sku, prices: p }));
      const { min, badges } = minEffectivePrices(list, adjust ? adjust(id, schedule) : schedule, now);
      out.push({ id, min, badges });
    }
  }
  return out;
}

export type RefreshStatements = { statements: D1PreparedStatement[]; outboxIndexes: number[] };

/**
 * UPDATE of min_prices/price_badges/change_seq (and version when the product's document changes, i.e. its
 * promotion schedule did) plus the outbox rows. change_seq is max+1+position, so every product gets its own
 * value: feed deltas page by change_seq and must never see two products share one across a page boundary.
 */
export function priceRefreshStatements(db: D1Database, rows: readonly PriceRow[], now: number, opts: { bumpVersion: boolean }): RefreshStatements {
  const statements: D1PreparedStatement[] = [];
  const outboxIndexes: number[] = [];
  for (let i = 0; i < rows.length; i += CHUNK) {
    const chunk = JSON.stringify(rows.slice(i, i + CHUNK).map((r) => ({ id: r.id, min: r.min, badges: r.badges })));
    statements.push(
      db
        .prepare(
          `UPDATE products SET min_prices = json_extract(j.value, '$.min'), price_badges = json_extract(j.value, '$.badges'),
             version = version + ?1, change_seq = b.m + j.key + 1, updated_at = ?2
           FROM (SELECT ${CHANGE_SEQ_BASE_SQL} AS m) AS b, json_each(?3) AS j
           WHERE products.id = json_extract(j.value, '$.id')`,
        )
        .bind(opts.bumpVersion ? 1 : 0, now, chunk),
    );
    outboxIndexes.push(statements.length);
    statements.push(
      db
        .prepare(productChangedOutboxSql("p.id IN (SELECT json_extract(value, '$.id') FROM json_each(?2))", "?1"))
        .bind(now, chunk),
    );
  }
  return { statements, outboxIndexes };
}

export function outboxIds(results: readonly D1Result[], indexes: readonly number[]): number[] {
  return indexes.flatMap((i) => (results[i]?.results ?? []).map((r) => (r as { id: number }).id));
}

/**
 * Recomputes and commits the prices of `productIds` at `now` (a boundary passed) in `db`, the catalog partition
 * holding them, then sends the events from that partition's outbox.
 */
export async function refreshProductPrices(env: Pick<Env, "DB" | "EVENTS">, productIds: readonly string[], now: number, db: D1Database = env.DB): Promise<number> {
  let done = 0;
  for (let i = 0; i < productIds.length; i += CHUNK) {
    const rows = await computePriceRows(db, productIds.slice(i, i + CHUNK), now);
    if (rows.length === 0) continue;
    const { statements, outboxIndexes } = priceRefreshStatements(db, rows, now, { bumpVersion: false });
    const results = await db.batch(statements);
    await sendOutboxIds(env, outboxIds(results, outboxIndexes), db);
    done += rows.length;
  }
  return done;
}

/**
 * Consumer-side convergence: after any product change (an admin price edit, an import, two promotion writes
 * racing), make min_prices/price_badges match the committed prices and promotions. Writes only on a
 * difference and bumps nothing: the event that got us here already did.
 */
export async function reconcileProductPrices(db: D1Database, productId: string, now: number): Promise<boolean> {
  const [row] = await computePriceRows(db, [productId], now);
  if (!row) return false;
  const res = await db
    .prepare(
      `UPDATE products SET min_prices = json(?2), price_badges = json(?3)
       WHERE id = ?1 AND (min_prices <> json(?2) OR price_badges <> json(?3))`,
    )
    .bind(productId, JSON.stringify(row.min), JSON.stringify(row.badges))
    .run();
  return (res.meta.changes ?? 0) > 0;
}
