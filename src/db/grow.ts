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
 *    re-price writes one in the same batch) are copied again, whole; repeat until the backlog is small. Each replay
 *    also raises `to`'s change_seq floor to `from`'s last change_seq (see below).
 * 4. Flip (an operator step): pause admin writes and imports, replay once more, deploy with CATALOG_PARTITIONS = 2N.
 * 5. `refreshAvailability` (stock projections that moved meanwhile: they are written by stock events, not the outbox;
 *    the copy keeps the higher `seq`, and re-derives the moved products' `in_stock` and feed position from them),
 *    then `deleteMoved` until it returns no cursor.
 *
 * Feeds' `since` tokens hold a change_seq position per partition, and a token made before the flip gives `from`'s
 * position to both `from` and `to` (src/feeds/token.ts). Moved products keep their change_seq, but the sequences
 * themselves must not step back: `to` would otherwise number its first changes from its copied products' highest
 * change_seq, and `from`, once its moved products are deleted, from its remaining ones' highest; both can be below a
 * position a client already holds, and such changes would never be delivered. So the replay (last run in the flip's
 * pause) records `from`'s last change_seq as `to`'s split mark and floor, and `deleteMoved` gives `from` a floor at
 * its own before deleting (`CHANGE_SEQ_FLOOR_KEY`, honoured by every writer through `CHANGE_SEQ_BASE_SQL`). Stock
 * flips go on numbering in `from` until no instance with N is left, so a token may hold more for `from` than the
 * mark: readers clamp an inherited position to the mark (`CHANGE_SEQ_SPLIT_KEY`).
 *
 * Every step is idempotent: a chunk copied twice replaces the same rows, so a crashed run resumes from its cursor.
 * FTS rows and facet counts follow by the tables' own triggers, in `to` on insert and in `from` on delete. Between the
 * flip and the last deletion `from` also holds the moved rows' facet counts (`grow_moved_facets`, written by the
 * replay, lowered with each deletion) for readers to subtract: no-filter facets stay exact through the clean-up.
 */
import type { D1Database, D1PreparedStatement } from "@cloudflare/workers-types";
import { partitionIndex } from "./buckets";
import { GROW_CLEANUP_KEY } from "./ownership";
import { priceBucketCase } from "../catalog/facets";
import { CHANGE_SEQ_BASE_SQL, CHANGE_SEQ_FLOOR_KEY, CHANGE_SEQ_SPLIT_KEY, DERIVED_IN_STOCK_SQL, NEXT_CHANGE_SEQ_SQL } from "../feeds/change-seq";

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

/** What facet_counts' triggers count a product row for (migrations/0015_import_switch.sql). */
const COUNTED = "products.status = 'active' AND products.pending_import IS NULL";

/**
 * The facet counts the products `?1` add to facet_counts in a database (brand, category, attr:<name>, price:<CUR>),
 * as rows (facet, value, n): the same rules as the triggers, so a deletion of those products lowers facet_counts by
 * exactly this.
 */
const PRODUCTS_FACETS = `SELECT facet, value, count(*) AS n FROM (
    SELECT 'brand' AS facet, brand AS value FROM products WHERE id IN ${IDS} AND ${COUNTED}
    UNION ALL SELECT 'category', category_id FROM products WHERE id IN ${IDS} AND ${COUNTED}
    UNION ALL SELECT 'attr:' || a.name, a.value FROM product_attributes a JOIN products ON products.id = a.product_id WHERE a.product_id IN ${IDS} AND ${COUNTED}
    UNION ALL SELECT 'price:' || j.key, ${priceBucketCase("j.value")} FROM products, json_each(products.min_prices) j WHERE products.id IN ${IDS} AND ${COUNTED} AND j.type = 'integer')
  WHERE true GROUP BY facet, value`;

/** Rows of `grow_moved_facets` per statement when the ledger is written (one JSON parameter each). */
const LEDGER_ROWS = 500;

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
  const writes = SHARED.map((t, i) => insertRows(to, t, read[i]!.results as Row[], "OR REPLACE")).filter(present);
  // D1 refuses an empty batch: a source with no categories yet (an empty catalog) has nothing to copy.
  if (writes.length) await to.batch(writes);
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
async function nextIds(
  from: D1Database,
  after: string,
  limit: number,
  newCount: number,
  toIndex: number,
): Promise<{ ids: string[]; moving: string[]; pending: Set<string> }> {
  const { results } = await from
    .prepare("SELECT id, pending_import IS NOT NULL AS pending FROM products WHERE id > ? ORDER BY id LIMIT ?")
    .bind(after, limit)
    .all<{ id: string; pending: number }>();
  const ids = results.map((r) => r.id);
  return { ids, moving: ids.filter((id) => partitionIndex(id, newCount) === toIndex), pending: new Set(results.filter((r) => r.pending).map((r) => r.id)) };
}

/**
 * Copies the moving products among the next `limit` ids after `after`. Returns the cursor for the next chunk (null
 * at the end) and the ids copied. A product an unfinished import staged (`pending_import`) is left out: if the import
 * finalizes, it writes the product's outbox row and the replay copies it; if it fails, its abort deletes the rows in
 * `from` with no outbox row, and a copy would stay in `to` for good, holding the id and its SKUs.
 */
export async function copyChunk(
  from: D1Database,
  to: D1Database,
  opts: { newCount: number; toIndex: number; after: string; limit?: number },
): Promise<{ copied: string[]; next: string | null }> {
  const limit = opts.limit ?? GROW_CHUNK;
  const { ids, moving, pending } = await nextIds(from, opts.after, limit, opts.newCount, opts.toIndex);
  const copied = moving.filter((id) => !pending.has(id));
  await copyProducts(from, to, copied);
  return { copied, next: ids.length < limit ? null : ids.at(-1)! };
}

/**
 * Raises `db`'s change_seq floor or split mark (`key`) to `valueSql` (a bound number, or SQL evaluated in `db`);
 * never lowers it, so a step run twice or resumed cannot undo it.
 */
function raiseMark(db: D1Database, key: string, valueSql: string, ...binds: number[]): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO meta (key, value) SELECT '${key}', ${valueSql} WHERE true
       ON CONFLICT (key) DO UPDATE SET value = max(CAST(meta.value AS INTEGER), CAST(excluded.value AS INTEGER)), updated_at = unixepoch() * 1000`,
    )
    .bind(...binds);
}

/**
 * Re-copies the moving products with outbox rows after `mark`; returns them, the new mark and `to`'s split mark: the
 * last change_seq `from` had given (read in the same snapshot as the outbox), which also becomes `to`'s floor. Run in
 * the flip's pause, `to` then numbers its own changes above every copied one, and a `since` token made before the
 * flip reads `to` from no further than the mark (src/feeds/token.ts).
 */
export async function replaySince(
  from: D1Database,
  to: D1Database,
  opts: { newCount: number; toIndex: number; mark: number },
): Promise<{ replayed: string[]; mark: number; split: number }> {
  const [outbox, last] = await from.batch([
    from.prepare("SELECT entity_id, max(id) AS id FROM outbox WHERE id > ? AND type = 'product.changed' GROUP BY entity_id").bind(opts.mark),
    from.prepare(`SELECT ${CHANGE_SEQ_BASE_SQL} AS seq`),
  ]);
  const results = outbox!.results as { entity_id: string; id: number }[];
  const moving = results.map((r) => r.entity_id).filter((id) => partitionIndex(id, opts.newCount) === opts.toIndex);
  for (let i = 0; i < moving.length; i += GROW_CHUNK) await copyProducts(from, to, moving.slice(i, i + GROW_CHUNK));
  const split = (last!.results[0] as { seq: number }).seq;
  await to.batch([raiseMark(to, CHANGE_SEQ_SPLIT_KEY, "?", split), raiseMark(to, CHANGE_SEQ_FLOOR_KEY, "?", split)]);
  // From the flip on, `from` holds rows it no longer owns until `deleteMoved` ends: listings check ownership there
  // meanwhile. Set by every replay (the flip's is the last one), so it is in place before any reader routes by 2N.
  // With it, the moved rows' facet counts (the ledger no-filter facets subtract): `to` is a new database that only
  // this copy has written, so its facet_counts are the copies', and after the flip's replay (writes paused) the
  // copies are the rows `from` holds of them. An earlier replay's ledger is replaced; readers still routing by N
  // ignore it (the flag's value is 2N).
  const { results: ledger } = await to.prepare("SELECT facet, value, count FROM facet_counts WHERE count <> 0").all<Row>();
  const writes = [from.prepare("DELETE FROM grow_moved_facets")];
  for (let i = 0; i < ledger.length; i += LEDGER_ROWS) writes.push(insertRows(from, "grow_moved_facets", ledger.slice(i, i + LEDGER_ROWS))!);
  writes.push(from.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value").bind(GROW_CLEANUP_KEY, String(opts.newCount)));
  await from.batch(writes);
  return { replayed: moving, mark: results.reduce((m, r) => Math.max(m, r.id), opts.mark), split };
}

type AvailabilityRow = { sku: string; location_id: string; seq: number; product_id: string } & Row;

/**
 * After the flip: stock projections of moved SKUs that `from` saw later than `to` (higher `seq`) are copied over, and
 * what stock derives on a product is re-derived in `to`. Stock events change `from`'s `in_stock` and bump its
 * change_seq (a variant flipping between sellable and sold out) without an outbox row, so the replay never carried
 * them: a moved product whose availability was newer in `from`, or whose change_seq is, gets `in_stock` recomputed
 * from `to`'s rows and a new change_seq (above the floor, so every token sees it) when `in_stock` flips or `from`
 * had numbered a change `to` never saw. Returns the products so changed.
 */
export async function refreshAvailability(
  from: D1Database,
  to: D1Database,
  opts: { newCount: number; toIndex: number; after: string; limit?: number },
): Promise<{ next: string | null; rederived: string[] }> {
  const limit = opts.limit ?? GROW_CHUNK;
  const { ids, moving } = await nextIds(from, opts.after, limit, opts.newCount, opts.toIndex);
  const rederived: string[] = [];
  if (moving.length) {
    const arg = JSON.stringify(moving);
    const read = (db: D1Database) =>
      db.batch([
        db.prepare(`SELECT a.*, v.product_id FROM availability a JOIN variants v ON v.sku = a.sku WHERE v.product_id IN ${IDS}`).bind(arg),
        db.prepare(`SELECT id, change_seq FROM products WHERE id IN ${IDS}`).bind(arg),
      ]);
    const [[fromRows, fromSeqs], [toRows, toSeqs]] = await Promise.all([read(from), read(to)]);
    const key = (r: AvailabilityRow) => `${r.sku}\n${r.location_id}`;
    const seen = new Map((toRows!.results as AvailabilityRow[]).map((r) => [key(r), r.seq]));
    const newer = (fromRows!.results as AvailabilityRow[]).filter((r) => (seen.get(key(r)) ?? -1) < r.seq);
    const toSeq = new Map((toSeqs!.results as { id: string; change_seq: number }[]).map((r) => [r.id, r.change_seq]));
    const withNewer = new Set(newer.map((a) => a.product_id));
    const stale = (fromSeqs!.results as { id: string; change_seq: number }[]).filter(
      (r) => toSeq.has(r.id) && (r.change_seq > toSeq.get(r.id)! || withNewer.has(r.id)),
    );
    const upsert = newer.length
      ? to
          .prepare(
            `INSERT INTO availability (sku, location_id, on_hand, reserved, available, status, seq, updated_at)
             SELECT json_extract(value, '$.sku'), json_extract(value, '$.location_id'), json_extract(value, '$.on_hand'), json_extract(value, '$.reserved'),
               json_extract(value, '$.available'), json_extract(value, '$.status'), json_extract(value, '$.seq'), json_extract(value, '$.updated_at')
             FROM json_each(?) WHERE true
             ON CONFLICT (sku, location_id) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, available = excluded.available,
               status = excluded.status, seq = excluded.seq, updated_at = excluded.updated_at WHERE excluded.seq > availability.seq`,
          )
          .bind(JSON.stringify(newer))
      : null;
    // One statement per product, so each gets its own change_seq (a delta page must never split equal positions).
    const derive = stale.map((r) =>
      to
        .prepare(
          `UPDATE products SET in_stock = ${DERIVED_IN_STOCK_SQL}, change_seq = ${NEXT_CHANGE_SEQ_SQL}
           WHERE id = ?1 AND (in_stock <> ${DERIVED_IN_STOCK_SQL} OR change_seq < ?2)`,
        )
        .bind(r.id, r.change_seq),
    );
    const statements = [upsert, ...derive].filter(present);
    if (statements.length) {
      const results = await to.batch(statements);
      const offset = upsert ? 1 : 0;
      stale.forEach((r, i) => {
        if (results[offset + i]!.meta.changes > 0) rederived.push(r.id);
      });
    }
  }
  return { next: ids.length < limit ? null : ids.at(-1)!, rederived };
}

/** After the flip: deletes the next chunk of moved products (and every row they own) from `from`. */
export async function deleteMoved(from: D1Database, opts: { newCount: number; toIndex: number; after: string; limit?: number }): Promise<{ deleted: string[]; next: string | null }> {
  const limit = opts.limit ?? GROW_CHUNK;
  const { ids, moving } = await nextIds(from, opts.after, limit, opts.newCount, opts.toIndex);
  const next = ids.length < limit ? null : ids.at(-1)!;
  // The last chunk ends the clean-up: `from` owns every row it holds again, and listings stop checking.
  const done = next === null ? [from.prepare("DELETE FROM meta WHERE key = ?").bind(GROW_CLEANUP_KEY), from.prepare("DELETE FROM grow_moved_facets")] : [];
  if (moving.length) {
    const arg = JSON.stringify(moving);
    // The floor first, in the same transaction: the deleted products may hold `from`'s highest change_seq, which
    // tokens already carry, and its next change must still number above it. Then the ledger loses what facet_counts
    // is about to lose, so no-filter facets stay exact chunk after chunk. Then rows found through `variants` first,
    // `products` last.
    await from.batch([
      raiseMark(from, CHANGE_SEQ_FLOOR_KEY, CHANGE_SEQ_BASE_SQL),
      from
        .prepare(`INSERT INTO grow_moved_facets (facet, value, count) SELECT facet, value, -n FROM (${PRODUCTS_FACETS}) WHERE true
          ON CONFLICT (facet, value) DO UPDATE SET count = count + excluded.count`)
        .bind(arg),
      ...[...PRODUCT_ROWS].reverse().map(({ table, where }) => from.prepare(`DELETE FROM ${table} WHERE ${where}`).bind(arg)),
      ...done,
    ]);
  } else if (done.length) await from.batch(done);
  return { deleted: moving, next };
}
