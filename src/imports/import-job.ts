/**
 * Bulk product import (NDJSON or CSV, one product per line), in three stages:
 *   1. receive: the body is streamed line by line; each line is validated (same zod schema as the admin PUT)
 *      and accepted rows are staged in `import_rows`, several hundred per statement (bound as one JSON array);
 *   2. check: rows that clash with the live catalog (a SKU or slug owned by another product) are rejected;
 *   3. publish: ONE D1 batch (one transaction) copies the staged rows into the live tables, writes the outbox
 *      events and marks the import completed. Readers see the catalog before or after the import, never half.
 * The SHA-256 of the body makes re-running the same file a no-op that answers the first run's result.
 */
import { z } from "zod";
import { productChangedOutboxSql } from "../events/outbox";
import { retargetStatements } from "../promotions/targets";
import { ProductIdParam, ProductInput, minPrices } from "../catalog/product-input";
import { supportedCurrencies } from "../catalog/locale";
import { parseCsvLine, csvRecordToObject } from "./csv";
import { readLines } from "./lines";
import { rawEnv } from "../lib/guarded-env";
import { ApiError } from "../lib/errors";
import { partitionCount } from "../db/partitions";
import { now as clockNow } from "../lib/clock";

export type ImportFormat = "ndjson" | "csv";
export type Rejection = { line: number; error: string };

export type ImportResult = {
  import_id: string;
  status: string;
  format: ImportFormat;
  total_lines: number;
  accepted: number;
  rejected_count: number;
  /** The first MAX_REPORTED_ERRORS rejections, by line number. */
  rejected: Rejection[];
  /** Set when this file was imported before: nothing was written again. */
  duplicate_of?: string;
  created_at: number;
  finished_at: number | null;
  outbox_ids?: number[];
};

const MAX_REPORTED_ERRORS = 1_000;
/** Staging flush thresholds: the JSON array bound to one statement stays well under D1's 2 MB value limit. */
const STAGE_ROWS = 500;
const STAGE_BYTES = 900_000;

const LineId = z.object({ id: ProductIdParam });

function describe(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.map(String).join(".") || "(line)"}: ${i.message}`)
    .join("; ");
}

class ImportTooLarge extends Error {}

type Staged = { line: number; id: string; doc: Record<string, unknown> };

export async function runImport(env: Pick<Env, "DB" | "SUPPORTED_CURRENCIES" | "CATALOG_PARTITIONS">, body: ReadableStream<Uint8Array>, format: ImportFormat, now = Date.now()): Promise<ImportResult> {
  // The switch is one batch on one database; over several partitions it could not be all-or-nothing (and would
  // write products to DB whatever their partition), so it is refused there until the catalog-version switch exists.
  if (partitionCount(env) > 1) {
    throw new ApiError(503, "unavailable", "Service Unavailable", "Bulk imports are not available while the catalog is split over several D1 databases (CATALOG_PARTITIONS > 1); see docs/storage.md, \"Imports at scale\".");
  }
  const db = env.DB;
  const importId = crypto.randomUUID();
  await db.prepare("INSERT INTO imports (id, content_hash, format, status, created_at) VALUES (?, '', ?, 'receiving', ?)").bind(importId, format, now).run();

  const digest = new crypto.DigestStream("SHA-256");
  const [forLines, forHash] = body.tee();
  const hashed = forHash.pipeTo(digest);

  const categoryRows = await db.prepare("SELECT id FROM categories").all<{ id: string }>();
  const categoryIds = new Set(categoryRows.results.map((r) => r.id));
  const currencies = new Set(supportedCurrencies(env));
  const seenIds = new Map<string, number>();
  const seenSkus = new Map<string, number>();
  const seenSlugs = new Map<string, number>();
  const touchedCategories = new Set<string>();

  const rejected: Rejection[] = [];
  let rejectedCount = 0;
  let accepted = 0;
  let totalLines = 0;
  const reject = (line: number, error: string) => {
    rejectedCount += 1;
    if (rejected.length < MAX_REPORTED_ERRORS) rejected.push({ line, error });
  };

  let buffer: Staged[] = [];
  let bufferBytes = 0;
  const stageStmt = db.prepare(
    `INSERT INTO import_rows (import_id, line, product_id, document)
     SELECT ?, json_extract(value, '$.line'), json_extract(value, '$.id'), json_extract(value, '$.doc') FROM json_each(?)`,
  );
  const progressStmt = db.prepare("UPDATE imports SET total_lines = ?, accepted = ?, rejected = ? WHERE id = ?");
  const flush = async () => {
    if (buffer.length === 0) return;
    const rows = buffer;
    buffer = [];
    bufferBytes = 0;
    await db.batch([stageStmt.bind(importId, JSON.stringify(rows)), progressStmt.bind(totalLines, accepted, rejectedCount, importId)]);
  };

  let header: string[] | undefined;
  try {
    for await (const { line, text } of readLines(forLines)) {
      totalLines = line;
      if (line > MAX_IMPORT_LINES) throw new ImportTooLarge();
      if (text.trim() === "") continue;
      let raw: unknown;
      try {
        if (format === "csv") {
          if (!header) {
            header = parseCsvLine(text).map((h) => h.trim());
            continue;
          }
          raw = csvRecordToObject(header, parseCsvLine(text));
        } else {
          raw = JSON.parse(text) as unknown;
        }
      } catch (err) {
        reject(line, `unparseable ${format === "csv" ? "CSV" : "JSON"}: ${(err as Error).message}`);
        continue;
      }
      const id = LineId.safeParse(raw);
      const product = ProductInput.safeParse(raw);
      if (!id.success || !product.success) {
        reject(line, [id.success ? "" : describe(id.error), product.success ? "" : describe(product.error)].filter(Boolean).join("; "));
        continue;
      }
      const p = product.data;
      const productId = id.data.id;
      if (!categoryIds.has(p.category_id)) {
        reject(line, `unknown category_id ${p.category_id}`);
        continue;
      }
      const badCurrency = p.variants.flatMap((v) => Object.keys(v.prices)).find((c) => !currencies.has(c));
      if (badCurrency) {
        reject(line, `unsupported currency ${badCurrency}`);
        continue;
      }
      const dupId = seenIds.get(productId);
      if (dupId !== undefined) {
        reject(line, `duplicate product id ${productId} (first on line ${dupId})`);
        continue;
      }
      const dupSlug = seenSlugs.get(p.slug);
      if (dupSlug !== undefined) {
        reject(line, `duplicate slug ${p.slug} (first on line ${dupSlug})`);
        continue;
      }
      const dupSku = p.variants.map((v) => [v.sku, seenSkus.get(v.sku)] as const).find(([, l]) => l !== undefined);
      if (dupSku) {
        reject(line, `sku ${dupSku[0]} already used on line ${dupSku[1]}`);
        continue;
      }
      seenIds.set(productId, line);
      seenSlugs.set(p.slug, line);
      for (const v of p.variants) seenSkus.set(v.sku, line);
      touchedCategories.add(p.category_id);

      const doc = { ...p, min_prices: minPrices(p) };
      const size = JSON.stringify(doc).length + 64;
      buffer.push({ line, id: productId, doc });
      bufferBytes += size;
      accepted += 1;
      if (buffer.length >= STAGE_ROWS || bufferBytes >= STAGE_BYTES) await flush();
    }
    await flush();
    await hashed;
  } catch (err) {
    await failImport(db, importId, String((err as Error)?.message ?? err), { totalLines, accepted, rejectedCount, rejected });
    if (err instanceof ImportTooLarge) {
      throw new ApiError(413, "payload-too-large", "Payload Too Large", `An import holds at most ${MAX_IMPORT_LINES} lines, published all-or-nothing in one switch: split the file.`, {
        limit_lines: MAX_IMPORT_LINES,
      });
    }
    throw err;
  }
  const contentHash = [...new Uint8Array(await digest.digest)].map((b) => b.toString(16).padStart(2, "0")).join("");

  // Idempotent re-run: the same bytes were imported before, so the catalog already holds them.
  const previous = await db.prepare("SELECT id FROM imports WHERE content_hash = ? AND status = 'completed' ORDER BY created_at LIMIT 1").bind(contentHash).first<{ id: string }>();
  if (previous) {
    await db.batch([db.prepare("DELETE FROM import_rows WHERE import_id = ?").bind(importId), db.prepare("DELETE FROM imports WHERE id = ?").bind(importId)]);
    const original = await getImport(env, previous.id);
    return { ...original!, duplicate_of: previous.id };
  }

  await db.prepare("UPDATE imports SET status = 'validating', content_hash = ?, total_lines = ?, accepted = ?, rejected = ? WHERE id = ?")
    .bind(contentHash, totalLines, accepted, rejectedCount, importId)
    .run();

  // Clashes with the live catalog, checked after staging so each is one indexed join instead of a query per line,
  // one chunk of lines at a time so that no read runs long.
  const clashes = new Map<number, string>();
  for (let lo = 1; lo <= totalLines; lo += PUBLISH_CHUNK_LINES) {
    const hi = lo + PUBLISH_CHUNK_LINES - 1;
    const [skuClash, slugClash] = await db.batch([
      db
        .prepare(
          `SELECT r.line, json_extract(v.value, '$.sku') AS sku, x.product_id FROM import_rows r, json_each(r.document, '$.variants') v
           JOIN variants x ON x.sku = json_extract(v.value, '$.sku')
           WHERE r.import_id = ?1 AND r.line BETWEEN ?2 AND ?3 AND x.product_id <> r.product_id`,
        )
        .bind(importId, lo, hi),
      db
        .prepare(
          `SELECT r.line, p.id AS product_id FROM import_rows r JOIN products p ON p.slug = json_extract(r.document, '$.slug')
           WHERE r.import_id = ?1 AND r.line BETWEEN ?2 AND ?3 AND p.id <> r.product_id`,
        )
        .bind(importId, lo, hi),
    ]);
    for (const r of skuClash.results as { line: number; sku: string; product_id: string }[]) clashes.set(r.line, `sku ${r.sku} belongs to product ${r.product_id}`);
    for (const r of slugClash.results as { line: number; product_id: string }[]) if (!clashes.has(r.line)) clashes.set(r.line, `slug belongs to product ${r.product_id}`);
  }
  if (clashes.size > 0) {
    await db.prepare("DELETE FROM import_rows WHERE import_id = ? AND line IN (SELECT value FROM json_each(?))").bind(importId, JSON.stringify([...clashes.keys()])).run();
    for (const [line, error] of clashes) reject(line, error);
    accepted -= clashes.size;
    rejected.sort((a, b) => a.line - b.line);
  }

  await db.prepare("UPDATE imports SET status = 'publishing', accepted = ?, rejected = ?, errors = ? WHERE id = ?")
    .bind(accepted, rejectedCount, JSON.stringify(rejected), importId)
    .run();
  let outboxIds: number[];
  try {
    // The switch is one long transaction by design (100,000 rows take seconds): it bypasses the request-path
    // binding timeout, which could not cancel the transaction anyway and would only misreport it as failed.
    // The clock, not Date.now(): which promotions are live (retargeting) is decided at this instant.
    outboxIds = await publish(rawEnv(env as Env).DB, importId, clockNow(), totalLines, [...touchedCategories]);
  } catch (err) {
    await failImport(db, importId, `publish failed: ${String((err as Error)?.message ?? err)}`, { totalLines, accepted, rejectedCount, rejected });
    throw err;
  }
  const result = await getImport(env, importId);
  return { ...result!, outbox_ids: outboxIds };
}

async function failImport(db: D1Database, importId: string, error: string, s: { totalLines: number; accepted: number; rejectedCount: number; rejected: Rejection[] }) {
  await db
    .batch([
      db.prepare("UPDATE imports SET status = 'failed', total_lines = ?, accepted = ?, rejected = ?, errors = ?, finished_at = ? WHERE id = ?")
        .bind(s.totalLines, s.accepted, s.rejectedCount, JSON.stringify([...s.rejected, { line: 0, error }].slice(-MAX_REPORTED_ERRORS)), Date.now(), importId),
      db.prepare("DELETE FROM import_rows WHERE import_id = ?").bind(importId),
    ])
    .catch(() => {});
}

const doc = (path: string) => `json_extract(r.document, '$.${path}')`;
/** The chunk's staged rows: ?1 the import, ?3..?4 its line range (?2 is the time). */
const STAGED = "FROM import_rows r WHERE r.import_id = ?1 AND r.line BETWEEN ?3 AND ?4";
const STAGED_VARIANTS = "FROM import_rows r, json_each(r.document, '$.variants') v WHERE r.import_id = ?1 AND r.line BETWEEN ?3 AND ?4";

/**
 * Lines per publish chunk: every statement of the switch reads and writes the rows of one chunk only (about
 * 2,000 products: 5,000 variants, 15,000 prices), so none runs long however big the import is.
 */
export const PUBLISH_CHUNK_LINES = 2_000;
/**
 * Statements per chunk (the switch's writes) and the batch's ceiling: production counts every statement of a
 * batch against the 1,000 queries a Worker invocation may make.
 */
const STATEMENTS_PER_CHUNK = 14;
const MAX_BATCH_STATEMENTS = 990;
/** The largest import one switch can publish: 70 chunks of 2,000 lines. */
export const MAX_IMPORT_LINES = Math.floor((MAX_BATCH_STATEMENTS - 2) / STATEMENTS_PER_CHUNK) * PUBLISH_CHUNK_LINES;

/** The statements that publish one chunk (lines lo..hi). Bind order: ?1 import, ?2 time, ?3 lo, ?4 hi. */
function chunkStatements(db: D1Database, importId: string, now: number, lo: number, hi: number): D1PreparedStatement[] {
  const s = (sql: string) => db.prepare(sql).bind(importId, now, lo, hi);
  return [
    s(`INSERT INTO products (id, slug, title, description, brand, category_id, status, attributes, images, markets, condition, min_prices,
         change_seq, version, import_id, created_at, updated_at)
       SELECT r.product_id, ${doc("slug")}, ${doc("title")}, ${doc("description")}, ${doc("brand")}, ${doc("category_id")}, ${doc("status")},
         ${doc("attributes")}, ${doc("images")}, ${doc("markets")}, ${doc("condition")}, ${doc("min_prices")},
         (SELECT coalesce(max(change_seq), 0) FROM products) + r.line - ?3 + 1, 1, ?1, ?2, ?2
       ${STAGED}
       ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, title = excluded.title, description = excluded.description, brand = excluded.brand,
         category_id = excluded.category_id, status = excluded.status, attributes = excluded.attributes, images = excluded.images,
         markets = excluded.markets, condition = excluded.condition, min_prices = excluded.min_prices, change_seq = excluded.change_seq,
         version = products.version + 1, import_id = excluded.import_id, updated_at = excluded.updated_at`),
    s(`DELETE FROM product_translations WHERE product_id IN (SELECT r.product_id ${STAGED})`),
    s(`INSERT INTO product_translations (product_id, locale, title, description)
       SELECT r.product_id, t.key, json_extract(t.value, '$.title'), coalesce(json_extract(t.value, '$.description'), '')
       FROM import_rows r, json_each(r.document, '$.translations') t WHERE r.import_id = ?1 AND r.line BETWEEN ?3 AND ?4`),
    s(`DELETE FROM product_attributes WHERE product_id IN (SELECT r.product_id ${STAGED})`),
    s(`INSERT INTO product_attributes (product_id, name, value)
       SELECT r.product_id, a.key, a.value FROM import_rows r, json_each(r.document, '$.attributes') a WHERE r.import_id = ?1 AND r.line BETWEEN ?3 AND ?4`),
    s(`UPDATE variants SET status = 'archived', version = version + 1, updated_at = ?2
       WHERE status <> 'archived' AND product_id IN (SELECT r.product_id ${STAGED})
         AND sku NOT IN (SELECT json_extract(v.value, '$.sku') ${STAGED_VARIANTS})`),
    s(`INSERT INTO variants (sku, product_id, title, options, gtin, mpn, position, status, updated_at)
       SELECT json_extract(v.value, '$.sku'), r.product_id, json_extract(v.value, '$.title'), json_extract(v.value, '$.options'),
         json_extract(v.value, '$.gtin'), json_extract(v.value, '$.mpn'), v.key, 'active', ?2
       ${STAGED_VARIANTS}
       ON CONFLICT (sku) DO UPDATE SET title = excluded.title, options = excluded.options, gtin = excluded.gtin, mpn = excluded.mpn,
         position = excluded.position, status = 'active', updated_at = excluded.updated_at, version = variants.version + 1
       WHERE variants.product_id = excluded.product_id`),
    s(`DELETE FROM prices WHERE sku IN (SELECT json_extract(v.value, '$.sku') ${STAGED_VARIANTS})
         AND (sku || ' ' || currency) NOT IN (
           SELECT json_extract(v.value, '$.sku') || ' ' || p.key FROM import_rows r, json_each(r.document, '$.variants') v, json_each(v.value, '$.prices') p
           WHERE r.import_id = ?1 AND r.line BETWEEN ?3 AND ?4)`),
    s(`INSERT INTO prices (sku, currency, amount, updated_at)
       SELECT json_extract(v.value, '$.sku'), p.key, p.value, ?2
       FROM import_rows r, json_each(r.document, '$.variants') v, json_each(v.value, '$.prices') p WHERE r.import_id = ?1 AND r.line BETWEEN ?3 AND ?4
       ON CONFLICT (sku, currency) DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at, version = prices.version + 1
       WHERE prices.amount <> excluded.amount`),
    s(`UPDATE products SET in_stock = (SELECT EXISTS (SELECT 1 FROM availability a JOIN variants v ON v.sku = a.sku
         WHERE v.product_id = products.id AND v.status = 'active' AND a.available > 0))
       WHERE id IN (SELECT r.product_id ${STAGED})`),
    ...retargetStatements(db, { sql: "SELECT r.product_id FROM import_rows r WHERE r.import_id = ?2 AND r.line BETWEEN ?3 AND ?4", params: [importId, lo, hi] }, now),
    // Events: products that existed before (their KV documents and cached pages are now stale), and new products
    // a promotion covers (the consumer folds the promotion into min_prices). Other new products have nothing cached yet.
    s(
      productChangedOutboxSql(
        `p.id IN (SELECT r.product_id ${STAGED}) AND (p.version > 1 OR EXISTS (SELECT 1 FROM promotion_targets t WHERE t.product_id = p.id))`,
        "?2",
      ),
    ),
    s("DELETE FROM import_rows WHERE import_id = ?1 AND line BETWEEN ?3 AND ?4"),
  ];
}

/**
 * The switch: ONE batch (D1 runs a batch as one transaction), so the staged rows become visible all at once and a
 * failure anywhere leaves nothing of the import visible (a retry of the same file publishes it whole). The batch
 * is cut into chunks of PUBLISH_CHUNK_LINES lines, each statement touching one chunk, so no statement runs long
 * (D1 cancels a query after 30 s) whatever the size of the import. Categories that gained or changed products
 * (listings) get one event each, from the set collected while receiving. Returns the ids of the outbox rows written.
 */
async function publish(db: D1Database, importId: string, now: number, lastLine: number, categoryIds: string[]): Promise<number[]> {
  const statements: D1PreparedStatement[] = [];
  const outboxAt: number[] = [];
  for (let lo = 1; lo <= Math.max(lastLine, 1); lo += PUBLISH_CHUNK_LINES) {
    const chunk = chunkStatements(db, importId, now, lo, lo + PUBLISH_CHUNK_LINES - 1);
    outboxAt.push(statements.length + chunk.length - 2);
    statements.push(...chunk);
  }
  outboxAt.push(statements.length);
  statements.push(
    db.prepare(`INSERT INTO outbox (type, entity_id, version, occurred_at, payload)
       SELECT 'category.changed', c.id, c.version, ?2, json_object('type', 'category.changed', 'id', c.id, 'version', c.version, 'occurred_at', ?2)
       FROM categories c WHERE c.id IN (SELECT value FROM json_each(?1))
       RETURNING id`).bind(JSON.stringify(categoryIds), now),
    db.prepare("UPDATE imports SET status = 'completed', finished_at = ?2 WHERE id = ?1").bind(importId, now),
  );
  if (statements.length > MAX_BATCH_STATEMENTS) throw new Error(`import too large for one switch: ${statements.length} statements`);
  const results = await db.batch(statements);
  return outboxAt.flatMap((i) => (results[i]!.results as { id: number }[]).map((row) => row.id));
}

type ImportRow = {
  id: string;
  format: ImportFormat;
  status: string;
  total_lines: number;
  accepted: number;
  rejected: number;
  errors: string;
  created_at: number;
  finished_at: number | null;
};

export async function getImport(env: Pick<Env, "DB">, id: string): Promise<(ImportResult & { staged: number }) | null> {
  const [rows, staged] = await env.DB.batch([
    env.DB.prepare("SELECT id, format, status, total_lines, accepted, rejected, errors, created_at, finished_at FROM imports WHERE id = ?").bind(id),
    env.DB.prepare("SELECT count(*) AS n FROM import_rows WHERE import_id = ?").bind(id),
  ]);
  const row = rows.results[0] as ImportRow | undefined;
  if (!row) return null;
  return {
    import_id: row.id,
    status: row.status,
    format: row.format,
    total_lines: row.total_lines,
    accepted: row.accepted,
    rejected_count: row.rejected,
    rejected: JSON.parse(row.errors) as Rejection[],
    created_at: row.created_at,
    finished_at: row.finished_at,
    staged: (staged.results[0] as { n: number }).n,
  };
}
