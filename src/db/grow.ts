/**
 * Growing the catalog from N to 2N partitions without downtime (docs/storage.md, "Growing N → 2N"). With
 * `bucket % N`, partition p hands the products whose `bucket % 2N` is p + N to the new partition p + N, and keeps the
 * rest: nothing else moves. The steps here work on two databases, the old partition `from` and its new sibling `to`:
 *
 * 1. `copyShared`: the category tree, stock locations and the promotions mirror (every partition holds them).
 * 2. `outboxMark`, then `copyChunk` until it returns no cursor: each chunk is one read batch of every row the moving
 *    products own, and one write batch (a transaction) into `to`, so a product is never half-copied there. Reads and
 *    writes go on in `from` meanwhile; `to` is written by this copy only until the flip.
 * 3. `replaySince(mark)`: products whose outbox rows are newer than the mark (any admin write, import or promotion
 *    re-price writes one in the same batch) are copied again, whole; repeat until the backlog is small.
 * 4. Flip (an operator step): pause admin writes and imports, replay once more, deploy with CATALOG_PARTITIONS = 2N.
 * 5. `refreshAvailability` (stock projections that moved meanwhile: they are written by stock events, not the outbox;
 *    the copy keeps the higher `seq`), then `deleteMoved` until it returns no cursor.
 *
 * Every step is idempotent: a chunk copied twice replaces the same rows, so a crashed run resumes from its cursor.
 * FTS rows and facet counts follow by the tables' own triggers, in `to` on insert and in `from` on delete.
 */
import type { D1Database, D1PreparedStatement } from "@cloudflare/workers-types";
import { partitionIndex } from "./buckets";

/** Products per chunk: their rows travel as one JSON parameter per table, so only the statement size limits this. */
export const GROW_CHUNK = 200;

const IDS = "(SELECT value FROM json_each(?1))";
const SKUS = `(SELECT sku FROM variants WHERE product_id IN ${IDS})`;

/** Every table holding a product's rows, and how to select the rows of the products `?1` (a JSON array of ids). */
const PRODUCT_ROWS: { table: string; where: string }[] = [
  { table: "products", where: `id IN ${IDS}` },
  { table: "product_translations", where: `product_id IN ${IDS}` },
  { table: "product_attributes", where: `product_id IN ${IDS}` },
  { table: "variants", where: `product_id IN ${IDS}` },
  { table: "prices", where: `sku IN ${SKUS}` },
  { table: "stock_baseline", where: `sku IN ${SKUS}` },
  { table: "availability", where: `sku IN ${SKUS}` },
  { table: "promotion_targets", where: `product_id IN ${IDS}` },
];

/** Tables every partition holds whole: copied as they are (the directory's promotions are the mirror's source). */
const SHARED = ["categories", "category_translations", "stock_locations", "promotions"];

type Row = Record<string, unknown>;

/** INSERT of `rows` (all with the same columns, read from the database) into `table`, as one JSON parameter. */
function insertRows(db: D1Database, table: string, rows: Row[], conflict = ""): D1PreparedStatement | null {
  if (rows.length === 0) return null;
  const columns = Object.keys(rows[0]!);
  const quoted = columns.map((c) => `"${c.replace(/"/g, '""')}"`);
  const values = columns.map((c) => `json_extract(value, '$.${c.replace(/'/g, "''")}')`);
  return db.prepare(`INSERT ${conflict} INTO ${table} (${quoted.join(", ")}) SELECT ${values.join(", ")} FROM json_each(?) WHERE true`).bind(JSON.stringify(rows));
}

const present = (s: D1PreparedStatement | null): s is D1PreparedStatement => s !== null;

export async function copyShared(from: D1Database, to: D1Database): Promise<void> {
  const read = await from.batch(SHARED.map((t) => from.prepare(`SELECT * FROM ${t}`)));
  await to.batch(SHARED.map((t, i) => insertRows(to, t, read[i]!.results as Row[], "OR REPLACE")).filter(present));
}

/** The highest outbox id of `from` when the copy starts: `replaySince` re-copies whatever changed after it. */
export async function outboxMark(from: D1Database): Promise<number> {
  return (await from.prepare("SELECT coalesce(max(id), 0) AS id FROM outbox").first<{ id: number }>())!.id;
}

/** Copies the products `ids` (all of which move) from `from` to `to`, replacing whatever `to` holds of them. */
export async function copyProducts(from: D1Database, to: D1Database, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const arg = JSON.stringify(ids);
  const read = await from.batch(PRODUCT_ROWS.map(({ table, where }) => from.prepare(`SELECT * FROM ${table} WHERE ${where}`).bind(arg)));
  // Children first (they are found through `variants`, which goes last), then the product row by upsert so its
  // UPDATE triggers keep FTS and facet counts right, then the rows as read.
  const clear = [...PRODUCT_ROWS.slice(1)].reverse().map(({ table, where }) => to.prepare(`DELETE FROM ${table} WHERE ${where}`).bind(arg));
  const products = read[0]!.results as Row[];
  const columns = products.length ? Object.keys(products[0]!).filter((c) => c !== "id") : [];
  const upsertSql = products.length
    ? to
        .prepare(
          `INSERT INTO products ("id", ${columns.map((c) => `"${c}"`).join(", ")})
           SELECT json_extract(value, '$.id'), ${columns.map((c) => `json_extract(value, '$.${c}')`).join(", ")} FROM json_each(?) WHERE true
           ON CONFLICT (id) DO UPDATE SET ${columns.map((c) => `"${c}" = excluded."${c}"`).join(", ")}`,
        )
        .bind(JSON.stringify(products))
    : null;
  await to.batch(
    [...clear, upsertSql, ...PRODUCT_ROWS.slice(1).map(({ table }, i) => insertRows(to, table, read[i + 1]!.results as Row[]))].filter(present),
  );
}

/** Ids after `after` in `from`, in id order, `limit` at most, and which of them move to partition `toIndex` of `newCount`. */
async function nextIds(from: D1Database, after: string, limit: number, newCount: number, toIndex: number): Promise<{ ids: string[]; moving: string[] }> {
  const { results } = await from.prepare("SELECT id FROM products WHERE id > ? ORDER BY id LIMIT ?").bind(after, limit).all<{ id: string }>();
  const ids = results.map((r) => r.id);
  return { ids, moving: ids.filter((id) => partitionIndex(id, newCount) === toIndex) };
}

/**
 * Copies the moving products among the next `limit` ids after `after`. Returns the cursor for the next chunk (null
 * at the end) and the ids copied.
 */
export async function copyChunk(
  from: D1Database,
  to: D1Database,
  opts: { newCount: number; toIndex: number; after: string; limit?: number },
): Promise<{ copied: string[]; next: string | null }> {
  const limit = opts.limit ?? GROW_CHUNK;
  const { ids, moving } = await nextIds(from, opts.after, limit, opts.newCount, opts.toIndex);
  await copyProducts(from, to, moving);
  return { copied: moving, next: ids.length < limit ? null : ids.at(-1)! };
}

/** Re-copies the moving products with outbox rows after `mark`; returns them and the new mark. */
export async function replaySince(from: D1Database, to: D1Database, opts: { newCount: number; toIndex: number; mark: number }): Promise<{ replayed: string[]; mark: number }> {
  const { results } = await from
    .prepare("SELECT entity_id, max(id) AS id FROM outbox WHERE id > ? AND type = 'product.changed' GROUP BY entity_id")
    .bind(opts.mark)
    .all<{ entity_id: string; id: number }>();
  const moving = results.map((r) => r.entity_id).filter((id) => partitionIndex(id, opts.newCount) === opts.toIndex);
  for (let i = 0; i < moving.length; i += GROW_CHUNK) await copyProducts(from, to, moving.slice(i, i + GROW_CHUNK));
  return { replayed: moving, mark: results.reduce((m, r) => Math.max(m, r.id), opts.mark) };
}

/** After the flip: stock projections of moved SKUs that `from` saw later than `to` (higher `seq`) are copied over. */
export async function refreshAvailability(from: D1Database, to: D1Database, opts: { newCount: number; toIndex: number; after: string; limit?: number }): Promise<{ next: string | null }> {
  const limit = opts.limit ?? GROW_CHUNK;
  const { ids, moving } = await nextIds(from, opts.after, limit, opts.newCount, opts.toIndex);
  if (moving.length) {
    const rows = (await from.prepare(`SELECT * FROM availability WHERE sku IN ${SKUS}`).bind(JSON.stringify(moving)).all<Row>()).results;
    const insert = rows.length
      ? to
          .prepare(
            `INSERT INTO availability (sku, location_id, on_hand, reserved, available, status, seq, updated_at)
             SELECT json_extract(value, '$.sku'), json_extract(value, '$.location_id'), json_extract(value, '$.on_hand'), json_extract(value, '$.reserved'),
               json_extract(value, '$.available'), json_extract(value, '$.status'), json_extract(value, '$.seq'), json_extract(value, '$.updated_at')
             FROM json_each(?) WHERE true
             ON CONFLICT (sku, location_id) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, available = excluded.available,
               status = excluded.status, seq = excluded.seq, updated_at = excluded.updated_at WHERE excluded.seq > availability.seq`,
          )
          .bind(JSON.stringify(rows))
      : null;
    if (insert) await insert.run();
  }
  return { next: ids.length < limit ? null : ids.at(-1)! };
}

/** After the flip: deletes the next chunk of moved products (and every row they own) from `from`. */
export async function deleteMoved(from: D1Database, opts: { newCount: number; toIndex: number; after: string; limit?: number }): Promise<{ deleted: string[]; next: string | null }> {
  const limit = opts.limit ?? GROW_CHUNK;
  const { ids, moving } = await nextIds(from, opts.after, limit, opts.newCount, opts.toIndex);
  if (moving.length) {
    const arg = JSON.stringify(moving);
    // Rows found through `variants` first, `products` last.
    await from.batch([...PRODUCT_ROWS].reverse().map(({ table, where }) => from.prepare(`DELETE FROM ${table} WHERE ${where}`).bind(arg)));
  }
  return { deleted: moving, next: ids.length < limit ? null : ids.at(-1)! };
}
