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
export const NEXT_CHANGE_SEQ_SQL = "(SELECT coalesce(max(change_seq), 0) + 1 FROM products)";

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
