/**
 * One catalog write = one D1 batch (one transaction): the product row, its variants, prices, translations and
 * attributes, the version bump, the global change_seq, and the outbox row of the change event. Either all of
 * it commits or none of it does, so an event is never recorded for a write that did not happen, and a write
 * never happens without its event.
 *
 * Written with prepared statements rather than drizzle because the batch relies on SQLite specifics:
 * `changes()` for the optimistic-concurrency guard, `json_each` to bind whole row sets as one parameter
 * (D1 allows 100 bound parameters per statement), and `RETURNING` for the outbox id.
 */
import { occGuard } from "../db/guards";
import { retargetStatements } from "../promotions/targets";
import { minPrices, type ProductInput } from "./product-input";
import { DERIVED_IN_STOCK_SQL, NEXT_CHANGE_SEQ_SQL } from "../feeds/change-seq";

export type WriteMode = { kind: "create" } | { kind: "update"; expectedVersion: number };

export type ProductChanged = { type: "product.changed"; id: string; version: number; occurred_at: number };

export type PreparedWrite = {
  statements: D1PreparedStatement[];
  /** Index of the outbox INSERT … RETURNING id in `statements`. */
  outboxIndex: number;
  event: ProductChanged;
};

export function prepareProductWrite(db: D1Database, id: string, input: ProductInput, mode: WriteMode, now: number): PreparedWrite {
  const version = mode.kind === "create" ? 1 : mode.expectedVersion + 1;
  const event: ProductChanged = { type: "product.changed", id, version, occurred_at: now };
  const common = [
    input.slug,
    input.title,
    input.description,
    input.brand,
    input.category_id,
    input.status,
    JSON.stringify(input.attributes),
    JSON.stringify(input.images),
    JSON.stringify(input.markets),
    input.condition,
    JSON.stringify(minPrices(input)),
  ];
  const statements: D1PreparedStatement[] = [];
  if (mode.kind === "create") {
    // A plain INSERT: a concurrent creator of the same id makes this fail on the primary key.
    statements.push(
      db
        .prepare(
          `INSERT INTO products (slug, title, description, brand, category_id, status, attributes, images, markets, condition, min_prices,
             id, version, change_seq, created_at, updated_at)
           SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ${NEXT_CHANGE_SEQ_SQL}, ?, ?`,
        )
        .bind(...common, id, now, now),
    );
  } else {
    statements.push(
      db
        .prepare(
          `UPDATE products SET slug = ?, title = ?, description = ?, brand = ?, category_id = ?, status = ?, attributes = ?, images = ?,
             markets = ?, condition = ?, min_prices = ?, version = version + 1, change_seq = ${NEXT_CHANGE_SEQ_SQL}, updated_at = ?, import_id = NULL
           WHERE id = ? AND version = ?`,
        )
        .bind(...common, now, id, mode.expectedVersion),
      occGuard(db),
    );
  }

  statements.push(
    db.prepare("DELETE FROM product_translations WHERE product_id = ?").bind(id),
    db
      .prepare(
        `INSERT INTO product_translations (product_id, locale, title, description, version)
         SELECT ?, j.key, json_extract(j.value, '$.title'), coalesce(json_extract(j.value, '$.description'), ''), ? FROM json_each(?) j`,
      )
      .bind(id, version, JSON.stringify(input.translations)),
    db.prepare("DELETE FROM product_attributes WHERE product_id = ?").bind(id),
    db
      .prepare("INSERT INTO product_attributes (product_id, name, value) SELECT ?, j.key, j.value FROM json_each(?) j")
      .bind(id, JSON.stringify(input.attributes)),
  );

  const variantRows = input.variants.map((v, position) => ({ sku: v.sku, title: v.title, options: v.options, gtin: v.gtin, mpn: v.mpn, position }));
  const priceRows = input.variants.flatMap((v) => Object.entries(v.prices).map(([currency, amount]) => ({ sku: v.sku, currency, amount })));
  const skus = JSON.stringify(input.variants.map((v) => v.sku));
  statements.push(
    // Variants dropped from the product are archived, not deleted: stock and past orders still refer to them.
    db
      .prepare(
        `UPDATE variants SET status = 'archived', version = version + 1, updated_at = ?
         WHERE product_id = ? AND status <> 'archived' AND sku NOT IN (SELECT value FROM json_each(?))`,
      )
      .bind(now, id, skus),
    // `WHERE true` disambiguates INSERT … SELECT … ON CONFLICT for SQLite's parser. A SKU owned by another
    // product is left alone (the handler rejects that case with 409 before getting here).
    db
      .prepare(
        `INSERT INTO variants (sku, product_id, title, options, gtin, mpn, position, status, updated_at)
         SELECT json_extract(j.value, '$.sku'), ?, json_extract(j.value, '$.title'), json(json_extract(j.value, '$.options')),
                json_extract(j.value, '$.gtin'), json_extract(j.value, '$.mpn'), json_extract(j.value, '$.position'), 'active', ?
         FROM json_each(?) j WHERE true
         ON CONFLICT (sku) DO UPDATE SET title = excluded.title, options = excluded.options, gtin = excluded.gtin, mpn = excluded.mpn,
           position = excluded.position, status = 'active', updated_at = excluded.updated_at, version = variants.version + 1
         WHERE variants.product_id = excluded.product_id`,
      )
      .bind(id, now, JSON.stringify(variantRows)),
    db
      .prepare(
        `DELETE FROM prices WHERE sku IN (SELECT value FROM json_each(?))
           AND (sku || ' ' || currency) NOT IN (SELECT json_extract(value, '$.sku') || ' ' || json_extract(value, '$.currency') FROM json_each(?))`,
      )
      .bind(skus, JSON.stringify(priceRows)),
    db
      .prepare(
        `INSERT INTO prices (sku, currency, amount, updated_at)
         SELECT json_extract(j.value, '$.sku'), json_extract(j.value, '$.currency'), json_extract(j.value, '$.amount'), ?
         FROM json_each(?) j
         WHERE EXISTS (SELECT 1 FROM variants v WHERE v.sku = json_extract(j.value, '$.sku') AND v.product_id = ?)
         ON CONFLICT (sku, currency) DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at, version = prices.version + 1
         WHERE prices.amount <> excluded.amount`,
      )
      .bind(now, JSON.stringify(priceRows), id),
    // in_stock follows the availability projection over the product's active variants.
    db
      .prepare(
        `UPDATE products SET in_stock = ${DERIVED_IN_STOCK_SQL} WHERE id = ?`,
      )
      .bind(id),
    // A product created in, or moved into or out of, a promoted category or brand: its targets follow.
    ...retargetStatements(db, { sql: "SELECT ?2", params: [id] }, now),
  );

  const outboxIndex = statements.length;
  statements.push(
    db
      .prepare("INSERT INTO outbox (type, entity_id, version, occurred_at, payload) VALUES (?, ?, ?, ?, ?) RETURNING id")
      .bind(event.type, id, version, now, JSON.stringify(event)),
  );
  return { statements, outboxIndex, event };
}

/** Archives a product (DELETE). Conditional on the version when the caller sent If-Match. */
export function prepareArchive(db: D1Database, id: string, currentVersion: number, now: number): PreparedWrite {
  const version = currentVersion + 1;
  const event: ProductChanged = { type: "product.changed", id, version, occurred_at: now };
  const statements = [
    db
      .prepare(
        `UPDATE products SET status = 'archived', version = version + 1, change_seq = ${NEXT_CHANGE_SEQ_SQL}, updated_at = ?
         WHERE id = ? AND version = ?`,
      )
      .bind(now, id, currentVersion),
    occGuard(db),
    db
      .prepare("INSERT INTO outbox (type, entity_id, version, occurred_at, payload) VALUES (?, ?, ?, ?, ?) RETURNING id")
      .bind(event.type, id, version, now, JSON.stringify(event)),
  ];
  return { statements, outboxIndex: 2, event };
}
