/**
 * Folds a committed reservation into the aggregates recommendations learn from: co-purchase pair counts
 * and units sold per product, currency and day. Only aggregates are stored, never who bought: the
 * reservation id is kept (in `counted_orders`) solely so a redelivered event is not counted twice.
 *
 * Everything happens in one D1 batch (one transaction) and every statement is guarded by "this reservation
 * is not counted yet", the last statement marking it counted: a duplicate event, even a concurrent one,
 * changes nothing.
 */
import { z } from "zod";
import { ownersOfSkus } from "../db/partitions";

export const ReservationCommittedEvent = z.object({
  type: z.literal("reservation.committed"),
  id: z.string().min(1),
  items: z.array(z.object({ sku: z.string(), quantity: z.number().int(), location: z.string().optional(), unit_price: z.number().nullable().optional(), currency: z.string() })),
  occurred_at: z.number(),
});
export type ReservationCommittedEvent = z.infer<typeof ReservationCommittedEvent>;

/** Orders with more distinct products than this count only their first ones as pairs (n² pairs). */
const MAX_PAIR_PRODUCTS = 30;
export const DAY_MS = 86_400_000;

/**
 * Counts a committed order into the directory `d1`. `catalog`: the catalog partitions, where the SKUs' products are
 * looked up (a SKU's partition is not known from the SKU alone, so each is asked; just `d1` with one partition).
 */
export async function countCommittedOrder(
  d1: D1Database,
  event: ReservationCommittedEvent,
  now: number,
  catalog: readonly D1Database[] = [d1],
): Promise<{ counted: boolean; products: string[] }> {
  const owners = await ownersOfSkus(catalog, event.items.map((i) => i.sku));
  const productOf = new Map([...owners].map(([sku, o]) => [sku, o.productId]));
  const units = new Map<string, { product: string; currency: string; units: number }>();
  for (const item of event.items) {
    const product = productOf.get(item.sku);
    if (!product) continue;
    const key = `${product}|${item.currency}`;
    const entry = units.get(key) ?? { product, currency: item.currency, units: 0 };
    entry.units += item.quantity;
    units.set(key, entry);
  }
  const products = [...new Set([...units.values()].map((u) => u.product))].sort();
  const paired = products.slice(0, MAX_PAIR_PRODUCTS);
  const pairs: [string, string][] = [];
  for (const a of paired) for (const b of paired) if (a !== b) pairs.push([a, b]);
  const day = Math.floor(event.occurred_at / DAY_MS);
  const notCounted = "NOT EXISTS (SELECT 1 FROM counted_orders WHERE reservation_id = ?)";

  const results2 = await d1.batch([
    d1
      .prepare(
        `INSERT INTO co_purchases (product_a, product_b, count, updated_at)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 1, ? FROM json_each(?) WHERE ${notCounted}
         ON CONFLICT (product_a, product_b) DO UPDATE SET count = co_purchases.count + 1, updated_at = excluded.updated_at`,
      )
      .bind(now, JSON.stringify(pairs), event.id),
    d1
      .prepare(
        `INSERT INTO sales_daily (product_id, currency, day, units)
         SELECT json_extract(value, '$.product'), json_extract(value, '$.currency'), ?, json_extract(value, '$.units') FROM json_each(?) WHERE ${notCounted}
         ON CONFLICT (product_id, currency, day) DO UPDATE SET units = sales_daily.units + excluded.units`,
      )
      .bind(day, JSON.stringify([...units.values()]), event.id),
    // The products' complementary lists change: the next incremental run recomputes them.
    d1
      .prepare(
        `INSERT INTO recommendation_dirty (product_id, marked_at) SELECT value, ? FROM json_each(?) WHERE ${notCounted}
         ON CONFLICT (product_id) DO UPDATE SET marked_at = excluded.marked_at`,
      )
      .bind(now, JSON.stringify(products), event.id),
    d1.prepare("INSERT INTO counted_orders (reservation_id, counted_at) VALUES (?, ?) ON CONFLICT DO NOTHING").bind(event.id, now),
  ]);
  const counted = (results2[3]?.meta.changes ?? 0) > 0;
  return { counted, products };
}

export async function markDirty(d1: D1Database, ids: string[], now: number): Promise<void> {
  if (!ids.length) return;
  await d1
    .prepare(
      `INSERT INTO recommendation_dirty (product_id, marked_at) SELECT value, ? FROM json_each(?) WHERE true
       ON CONFLICT (product_id) DO UPDATE SET marked_at = excluded.marked_at`,
    )
    .bind(now, JSON.stringify(ids))
    .run();
}
