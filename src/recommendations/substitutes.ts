/**
 * Substitute candidates: in-stock products of the same leaf category, ranked by similarity (70 %) and price
 * closeness (30 %). Candidates are the sellable products nearest in price on either side of the product
 * (a seek on products_band_<cur>_idx, migration 0006) plus the sellable items of its precomputed related
 * list, whose precomputed similarity they keep. One D1 batch; cards are loaded by the caller for the
 * candidates kept only.
 */
import { minPriceSql } from "../catalog/listing";
import { allCatalogDbs } from "../db/partitions";
import { partitioned, productRows, type CatalogEnv } from "./catalog-reads";
import { toInput } from "./compute";
import { features, priceCloseness, similarity } from "./features";
import { LIST_SIZE, type ListItem } from "./lists";
import { round } from "./related";

/** Products read on each side of the product's price, and candidates kept from them. */
const BAND = 60;

type Row = { id: string; title: string; brand: string; attributes: string; min_prices: string };

function bandStatements(d1: D1Database, id: string, currency: string): D1PreparedStatement[] {
  const price = minPriceSql("p", currency);
  const own = `(SELECT ${minPriceSql("o", currency)} FROM products o WHERE o.id = ?1)`;
  const sellable = `p.category_id = (SELECT category_id FROM products WHERE id = ?1) AND p.status = 'active' AND p.in_stock = 1 AND p.id <> ?1`;
  const columns = "p.id, p.title, p.brand, p.attributes, p.min_prices";
  return [
    d1.prepare("SELECT id, title, brand, attributes, min_prices, status FROM products WHERE id = ?1").bind(id),
    d1
      .prepare(
        // Nearest BAND at or above the price, nearest BAND below it; a product with no price in this currency
        // compares with neither, and takes the category's cheapest instead. That branch's condition sits in its
        // LIMIT: as a WHERE term SQLite tested it on every row of the category (test/read-cost.test.ts).
        `SELECT * FROM (
           SELECT * FROM (SELECT ${columns} FROM products p WHERE ${sellable} AND ${price} >= ${own} ORDER BY ${price}, p.id LIMIT ${BAND})
           UNION ALL SELECT * FROM (SELECT ${columns} FROM products p WHERE ${sellable} AND ${price} < ${own} ORDER BY ${price} DESC, p.id LIMIT ${BAND})
           UNION ALL SELECT * FROM (SELECT ${columns} FROM products p WHERE ${sellable} ORDER BY ${price}, p.id LIMIT CASE WHEN ${own} IS NULL THEN ${BAND} ELSE 0 END)
         ) p ORDER BY abs(coalesce(${price}, 0) - coalesce(${own}, 0)), p.id LIMIT ${BAND}`,
      )
      .bind(id),
    d1
      .prepare(
        `SELECT p.id, p.min_prices, r.score FROM (
           SELECT json_extract(j.value, '$.id') AS id, json_extract(j.value, '$.score') AS score
           FROM recommendations l, json_each(l.items) j
           WHERE l.product_id = ?1 AND l.intent = 'related' AND json_extract(j.value, '$.reason') <> 'pinned'
         ) r CROSS JOIN products p ON p.id = r.id
         WHERE p.status = 'active' AND p.in_stock = 1 AND p.id <> ?1`,
      )
      .bind(id),
  ];
}

type RelatedRow = { id: string; min_prices: string; score: number };

/**
 * The band over catalog partitions: the product from its own partition, then the same two seeks in every partition
 * with its category and price as parameters, merged nearest first; the related list from the directory, its items'
 * stock and prices from their partitions. Returns the rows the one-database batch returns.
 */
async function partitionedRows(env: CatalogEnv, id: string, currency: string): Promise<{ src: Row | undefined; band: Row[]; related: RelatedRow[] }> {
  const [src] = await productRows<Row & { category_id: string; status: string }>(env, "id, title, brand, attributes, min_prices, status, category_id", [id]);
  if (!src) return { src: undefined, band: [], related: [] };
  const own = (JSON.parse(src.min_prices) as Record<string, number>)[currency] ?? null;
  const price = minPriceSql("p", currency);
  const sellable = "p.category_id = ?2 AND p.status = 'active' AND p.in_stock = 1 AND p.id <> ?1";
  const columns = "p.id, p.title, p.brand, p.attributes, p.min_prices";
  const sql = `SELECT * FROM (
      SELECT * FROM (SELECT ${columns} FROM products p WHERE ${sellable} AND ${price} >= ?3 ORDER BY ${price}, p.id LIMIT ${BAND})
      UNION ALL SELECT * FROM (SELECT ${columns} FROM products p WHERE ${sellable} AND ${price} < ?3 ORDER BY ${price} DESC, p.id LIMIT ${BAND})
      UNION ALL SELECT * FROM (SELECT ${columns} FROM products p WHERE ${sellable} ORDER BY ${price}, p.id LIMIT CASE WHEN ?3 IS NULL THEN ${BAND} ELSE 0 END)
    ) p ORDER BY abs(coalesce(${price}, 0) - coalesce(?3, 0)), p.id LIMIT ${BAND}`;
  const priceOf = (r: Row) => (JSON.parse(r.min_prices) as Record<string, number>)[currency] ?? 0;
  const [bands, listed] = await Promise.all([
    Promise.all(allCatalogDbs(env).map(async (db) => (await db.prepare(sql).bind(id, src.category_id, own).all<Row>()).results)),
    env.DB.prepare(
      `SELECT json_extract(j.value, '$.id') AS id, json_extract(j.value, '$.score') AS score FROM recommendations l, json_each(l.items) j
       WHERE l.product_id = ?1 AND l.intent = 'related' AND json_extract(j.value, '$.reason') <> 'pinned'`,
    )
      .bind(id)
      .all<{ id: string; score: number }>(),
  ]);
  const band = bands
    .flat()
    .sort((a, b) => Math.abs(priceOf(a) - (own ?? 0)) - Math.abs(priceOf(b) - (own ?? 0)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, BAND);
  const scores = new Map(listed.results.map((r) => [r.id, r.score]));
  const sellableRows = await productRows<{ id: string; min_prices: string; status: string; in_stock: number }>(env, "id, min_prices, status, in_stock", [...scores.keys()]);
  const related = sellableRows.filter((r) => r.status === "active" && r.in_stock === 1 && r.id !== id).map((r) => ({ id: r.id, min_prices: r.min_prices, score: scores.get(r.id)! }));
  return { src, band, related };
}

async function oneDatabaseRows(d1: D1Database, id: string, currency: string): Promise<{ src: Row | undefined; band: Row[]; related: RelatedRow[] }> {
  const [srcRows, bandRows, relatedRows] = await d1.batch(bandStatements(d1, id, currency));
  return { src: (srcRows!.results as Row[])[0], band: bandRows!.results as Row[], related: relatedRows!.results as RelatedRow[] };
}

/** The best LIST_SIZE candidates, or null when the product does not exist. */
export async function substituteCandidates(env: CatalogEnv, id: string, currency: string): Promise<ListItem[] | null> {
  const { src, band, related } = partitioned(env) ? await partitionedRows(env, id, currency) : await oneDatabaseRows(env.DB, id, currency);
  if (!src) return null;
  const source = toInput(src);
  const own = features(source);
  const noIdf = new Map<string, number>();
  const closeness = (minPrices: Record<string, number>) => priceCloseness(source.minPrices[currency], minPrices[currency]);
  const scored = new Map<string, ListItem>();
  for (const r of related) {
    scored.set(r.id, { id: r.id, score: round(0.7 * r.score + 0.3 * closeness(JSON.parse(r.min_prices))), reason: "substitute" });
  }
  for (const c of band.map(toInput)) {
    if (scored.has(c.id)) continue;
    scored.set(c.id, { id: c.id, score: round(0.7 * similarity(own, features(c), noIdf) + 0.3 * closeness(c.minPrices)), reason: "substitute" });
  }
  return [...scored.values()].sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1)).slice(0, LIST_SIZE);
}
