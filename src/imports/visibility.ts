/**
 * Which product rows readers may see while an import is in flight.
 *
 * An import writes the products it creates into the live tables ahead of its switch, each carrying the import's id
 * in `products.pending_import`. A reader shows such a row only once the import is listed in `import_visibility`
 * of the row's own database: the switch inserts the directory's row (partition 0) in the same transaction that
 * marks the import published, the roll-forward then inserts it in every other partition. The finalization clears
 * `pending_import` chunk by chunk, and the row is then an ordinary one. Rows of a failed import are deleted.
 *
 * Only the products row carries the tag: a product's translations, variants and prices are reached through it.
 * So this predicate belongs in every read that returns products to someone outside the import (product
 * documents, listings, search, feeds, checkout prices); writes and admin reads see pending rows as rows.
 */

/** True (SQL) when the products row `alias` may be shown. Cheap when no import is in flight: the first test holds. */
export function visibleProductSql(alias: string): string {
  return `(${alias}.pending_import IS NULL OR ${alias}.pending_import IN (SELECT import_id FROM import_visibility))`;
}
