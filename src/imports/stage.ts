/**
 * Staging one chunk of an import (CHUNK_LINES accepted lines) in the partitions of its products:
 *   1. clash checks in every partition: a SKU or slug owned by another product, a product another import is
 *      creating (3 statements per partition, each keyed by the chunk's own values bound as one JSON parameter);
 *   2. per partition, one batch: the staging rows (`import_rows`, with `is_new` = the product does not exist yet)
 *      and the products that are new, written to the live tables as pending (`products.pending_import`), so the
 *      switch does not have to write them (imports/visibility.ts hides them until then).
 * Every statement reads and writes one chunk only: none grows with the import.
 */
import { allCatalogDbs, partitionOf } from "../db/partitions";
import type { AcceptedLine } from "./receive";
import { claimImportSkus, releaseImportProductClaims } from "../catalog/sku-claims";
import { importBatch, insertAttributes, insertPrices, insertTranslations, insertVariants, PRODUCT_COLUMNS, PRODUCT_VALUES, stagedRows } from "./row-sql";

/** The JSON bound to one staging statement stays under D1's 2 MB per value. */
const STAGE_BYTES = 1_500_000;

type PartitionEnv = Pick<Env, "DB" | "IMPORT_TRACE"> & { CATALOG_PARTITIONS?: string };

export type StageOutcome = { staged: number; rejections: { line: number; error: string }[] };

/** The statements writing a chunk's new products as pending rows. Bind order: ?1 import, ?2 time, ?3 lo, ?4 hi. */
function pendingInsertStatements(db: D1Database, importId: string, now: number, lo: number, hi: number): D1PreparedStatement[] {
  const s = (sql: string) => db.prepare(sql).bind(importId, now, lo, hi);
  return [
    // change_seq 0: the feeds' sequence is given when the import is finalized, once readers can see the product.
    s(`INSERT INTO products (${PRODUCT_COLUMNS}, change_seq, version, import_id, pending_import, created_at, updated_at)
       SELECT ${PRODUCT_VALUES}, 0, 1, ?1, ?1, ?2, ?2 ${stagedRows(1)}`),
    s(insertTranslations(1)),
    s(insertAttributes(1)),
    s(insertVariants(1)),
    s(insertPrices(1)),
  ];
}

/**
 * Stages a piece of a chunk (?1 import, ?2 part, ?3 JSON of {line, id, doc}); returns the lines staged. The checks
 * before it race with parts and imports staging at the same time, so the same transaction skips a line:
 *   - whose product id this import staged already (the unique index on import id and product id);
 *   - whose product exists as another import's pending product;
 *   - whose product is new and whose slug or a SKU another product holds now.
 * A skipped line is rejected, never a unique-constraint failure that would abort the whole import.
 */
const STAGE_SQL = `INSERT INTO import_rows (import_id, line, part, product_id, document, is_new)
  SELECT ?1, json_extract(x.value, '$.line'), ?2, json_extract(x.value, '$.id'), json_extract(x.value, '$.doc'),
    NOT EXISTS (SELECT 1 FROM products p WHERE p.id = json_extract(x.value, '$.id'))
  FROM json_each(?3) x
  WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = json_extract(x.value, '$.id') AND p.pending_import IS NOT NULL AND p.pending_import <> ?1)
    AND (EXISTS (SELECT 1 FROM products p WHERE p.id = json_extract(x.value, '$.id'))
      OR NOT (EXISTS (SELECT 1 FROM products p WHERE p.slug = json_extract(x.value, '$.doc.slug'))
        OR EXISTS (SELECT 1 FROM json_each(x.value, '$.doc.variants') v JOIN variants o ON o.sku = json_extract(v.value, '$.sku'))))
  ON CONFLICT DO NOTHING RETURNING line`;

/** Clashes of the chunk with what the partition `db` holds (live products, and the pending ones of every import). */
async function clashesIn(env: PartitionEnv, db: D1Database, importId: string, rows: AcceptedLine[]): Promise<Map<number, string>> {
  const skus = JSON.stringify(rows.flatMap((r) => r.skus.map((sku) => [r.line, sku, r.id])));
  const slugs = JSON.stringify(rows.map((r) => [r.line, r.slug, r.id]));
  const [skuRes, slugRes, pendingRes] = await importBatch(env, "clash-check", db, [
    db
      .prepare(
        `SELECT json_extract(x.value, '$[0]') AS line, v.sku, v.product_id FROM json_each(?1) x
         JOIN variants v ON v.sku = json_extract(x.value, '$[1]') WHERE v.product_id <> json_extract(x.value, '$[2]')`,
      )
      .bind(skus),
    db
      .prepare(
        `SELECT json_extract(x.value, '$[0]') AS line, p.id AS product_id FROM json_each(?1) x
         JOIN products p ON p.slug = json_extract(x.value, '$[1]') WHERE p.id <> json_extract(x.value, '$[2]')`,
      )
      .bind(slugs),
    db
      .prepare(
        `SELECT json_extract(x.value, '$[0]') AS line, p.pending_import FROM json_each(?1) x
         JOIN products p ON p.id = json_extract(x.value, '$[2]') WHERE p.pending_import IS NOT NULL AND p.pending_import <> ?2`,
      )
      .bind(slugs, importId),
  ]);
  const out = new Map<number, string>();
  for (const r of skuRes!.results as { line: number; sku: string; product_id: string }[]) if (!out.has(r.line)) out.set(r.line, `sku ${r.sku} belongs to product ${r.product_id}`);
  for (const r of slugRes!.results as { line: number; product_id: string }[]) if (!out.has(r.line)) out.set(r.line, `slug belongs to product ${r.product_id}`);
  for (const r of pendingRes!.results as { line: number; pending_import: string }[]) if (!out.has(r.line)) out.set(r.line, `the product is being created by import ${r.pending_import}`);
  return out;
}

/** Stages one chunk (all lines of one part, ascending): see the module comment. */
export async function stageChunk(env: PartitionEnv, importId: string, part: number, rows: AcceptedLine[], now: number): Promise<StageOutcome> {
  const dbs = allCatalogDbs(env);
  const clashes = new Map<number, string>();
  for (const found of await Promise.all(dbs.map((db) => clashesIn(env, db, importId, rows)))) {
    for (const [line, error] of found) if (!clashes.has(line)) clashes.set(line, error);
  }
  // Over several partitions the checks above race with writers of other partitions: the directory claim decides.
  const claims = await claimImportSkus(env, importId, rows.filter((r) => !clashes.has(r.line)), now);
  for (const [line, error] of claims) clashes.set(line, error);
  const byPartition = new Map<number, AcceptedLine[]>();
  for (const row of rows) {
    if (clashes.has(row.line)) continue;
    const p = partitionOf(env, row.id);
    const list = byPartition.get(p);
    if (list) list.push(row);
    else byPartition.set(p, [row]);
  }
  const late = new Map<number, string>();
  await Promise.all(
    [...byPartition].map(async ([p, list]) => {
      const db = dbs[p]!;
      const stage = db.prepare(STAGE_SQL);
      const pieces: D1PreparedStatement[] = [];
      let piece: unknown[] = [];
      let bytes = 0;
      for (const r of list) {
        const json = { line: r.line, id: r.id, doc: r.doc };
        const size = JSON.stringify(json).length;
        if (piece.length > 0 && bytes + size > STAGE_BYTES) {
          pieces.push(stage.bind(importId, part, JSON.stringify(piece)));
          piece = [];
          bytes = 0;
        }
        piece.push(json);
        bytes += size;
      }
      pieces.push(stage.bind(importId, part, JSON.stringify(piece)));
      const lo = list[0]!.line;
      const hi = list[list.length - 1]!.line;
      // One transaction per partition: the staging rows and the pending products they describe exist together or not at all.
      const results = await importBatch(env, "stage", db, [...pieces, ...pendingInsertStatements(db, importId, now, lo, hi)]);
      const staged = new Set(results.slice(0, pieces.length).flatMap((r) => (r.results as { line: number }[]).map((x) => x.line)));
      const skipped = list.filter((r) => !staged.has(r.line));
      if (skipped.length === 0) return;
      // Rare: a line the staging skipped, either a product id an earlier part staged, or a slug, SKU or product a
      // concurrent part or import wrote after the checks above. Those writers have committed now: asking again names them.
      const [raced, ownIds] = await Promise.all([
        clashesIn(env, db, importId, skipped),
        db.prepare("SELECT product_id FROM import_rows WHERE import_id = ?1 AND product_id IN (SELECT value FROM json_each(?2))").bind(importId, JSON.stringify(skipped.map((r) => r.id))).all<{ product_id: string }>(),
      ]);
      const earlier = new Set(ownIds.results.map((r) => r.product_id));
      // Their SKUs were claimed above (N > 1): give them back now rather than leave them to the orphan takeover. Not
      // for a product an earlier part staged: the claims are that line's.
      await releaseImportProductClaims(env, importId, skipped.filter((r) => !earlier.has(r.id)).map((r) => r.id));
      for (const r of skipped) {
        const error = earlier.has(r.id) ? `duplicate product id ${r.id} (staged by an earlier part of this import)` : (raced.get(r.line) ?? "its product id, slug or a SKU was taken by a concurrent writer");
        late.set(r.line, error);
      }
    }),
  );
  const rejections = [...[...clashes, ...late].map(([line, error]) => ({ line, error }))].sort((a, b) => a.line - b.line);
  return { staged: rows.length - rejections.length, rejections };
}
