/**
 * Which product rows readers may see while an import is in flight.
 *
 * An import writes the products it creates into the live tables ahead of its switch, each carrying the import's id
 * in `products.pending_import`. A reader shows such a row only once the import is published: listed in the
 * directory's `import_visibility` (partition 0), which the switch inserts in the same transaction that marks the
 * import published. With one partition the predicate reads that table itself; with more, a request reads the
 * directory's list once and every partition's SQL uses it (published-view.ts). The finalization clears
 * `pending_import` chunk by chunk, and the row is then an ordinary one. Rows of a failed import are deleted.
 *
 * Only the products row carries the tag: a product's translations, variants and prices are reached through it.
 * So this predicate belongs in every read that returns products to someone outside the import (product
 * documents, listings, search, feeds, checkout prices); writes and admin reads see pending rows as rows.
 */

/**
 * The published imports, as this database knows them. With more than one partition a request reads every
 * partition with the directory's list instead (published-view.ts replaces this text), so all partitions agree.
 */
export const PUBLISHED_SUBQUERY = "(SELECT import_id FROM import_visibility)";

/** True (SQL) when the products row `alias` may be shown. Cheap when no import is in flight: the first test holds. */
export function visibleProductSql(alias: string): string {
  return `(${alias}.pending_import IS NULL OR ${alias}.pending_import IN ${PUBLISHED_SUBQUERY})`;
}
