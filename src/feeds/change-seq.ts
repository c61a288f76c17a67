/**
 * Stock changes in delta feeds. A product's change_seq is bumped by every catalog write
 * (src/catalog/product-writes.ts) and, through this statement, when one of its variants flips between sellable and sold
 * out. Count changes that do not flip anything stay out of deltas: they would flood affiliates on every
 * reservation. Full pages, single items and the widget always show the live counts anyway.
 *
 * Usage (queue consumer, applying a `stock.changed` event): put this statement in the SAME D1 batch,
 * immediately BEFORE the availability upsert. It compares the SKU's summed `available` before the event
 * with what it will be after, and only counts an event the upsert will actually apply (newer seq), so
 * duplicate and out-of-order deliveries bump nothing.
 */
import type { D1Database, D1PreparedStatement } from "@cloudflare/workers-types";

/**
 * `meta` key of a partition's sequence floor: the lowest value its sequence may continue from. Growing N → 2N sets it
 * (src/db/grow.ts): a new partition takes over positions that clients' `since` tokens hold for the old one, and the
 * old one drops its moved products, so neither may number a change at or below a position already handed out.
 */
export const CHANGE_SEQ_FLOOR_KEY = "change_seq:floor";

/**
 * `meta` key of a partition a growth split off: the last change_seq of the partition it came from when the growth
 * flipped. Its copied products carry numbers up to it, its own changes number above it (the floor starts there).
 * Set by the replay before the flip, never changed after it.
 */
export const CHANGE_SEQ_SPLIT_KEY = "change_seq:split";

/** The partition's split mark, or null for a partition no growth made. */
export async function splitMark(db: D1Database): Promise<number | null> {
  const row = await db.prepare("SELECT CAST(value AS INTEGER) AS seq FROM meta WHERE key = ?").bind(CHANGE_SEQ_SPLIT_KEY).first<{ seq: number }>();
  return row ? row.seq : null;
}

/**
 * The partition's last change_seq: its products' highest, or the floor if that is higher. Every writer numbers from
 * this (an index seek and a key look-up), never from `max(change_seq)` alone.
 */
export const CHANGE_SEQ_BASE_SQL = `(max((SELECT coalesce(max(change_seq), 0) FROM products), coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = '${CHANGE_SEQ_FLOOR_KEY}'), 0)))`;

export const NEXT_CHANGE_SEQ_SQL = `(${CHANGE_SEQ_BASE_SQL} + 1)`;

/** `products.in_stock` as the stock projection says it is now: some active variant has units available somewhere. */
export const DERIVED_IN_STOCK_SQL = `(SELECT EXISTS (SELECT 1 FROM availability a JOIN variants v ON v.sku = a.sku
  WHERE v.product_id = products.id AND v.status = 'active' AND a.available > 0))`;

export type StockChangeForFeeds = { sku: string; location: string; available: number; seq: number };

export function availabilityFlipStatement(db: D1Database, event: StockChangeForFeeds): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE products SET change_seq = ${NEXT_CHANGE_SEQ_SQL}
       WHERE id = (SELECT product_id FROM variants WHERE sku = ?1)
         AND coalesce((SELECT seq FROM availability WHERE sku = ?1 AND location_id = ?2), -1) < ?4
         AND ((SELECT coalesce(sum(available), 0) FROM availability WHERE sku = ?1) > 0)
          != ((SELECT coalesce(sum(available), 0) FROM availability WHERE sku = ?1 AND location_id != ?2) + ?3 > 0)`,
    )
    .bind(event.sku, event.location, event.available, event.seq);
}
