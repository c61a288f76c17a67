/**
 * Publishing a staged import: one switch on the directory, then bounded steps that may span invocations.
 *
 *   switch       ONE batch on the directory (partition 0): `imports.status` publishing → finalizing (compare-and-set),
 *                the partition's changes to existing products (chunks of CHUNK_LINES lines, chunkLines), and the import's row in
 *                `import_visibility`, with `rolling` = 1 when another partition has changes to existing products to
 *                roll forward. From its commit on, the import is published: nothing can take it back, and every
 *                later step only rolls forward. Before it, a failure aborts the import and prunes it.
 *   roll-forward each other partition, one batch: its `import_visibility` row first (a primary key, so two
 *                invocations cannot both apply it) and its changes to existing products. Once every partition's
 *                has committed, one directory write clears `rolling`: readers, which do not read while it is set,
 *                see every partition's changes at once (published-view.ts).
 *   finalize     per partition, per chunk of new products: `pending_import` cleared (facet counts follow by trigger),
 *                feeds' change_seq, in_stock, promotion targets, events; then the staging rows are deleted.
 *   complete     once no partition holds a staging row: category events, status completed, visibility rows deleted.
 *   prune        an aborted import: its pending products (and their rows) and staging rows, chunk by chunk.
 *
 * Every step is idempotent and checks where the import is before it acts, so the commit request, a retried
 * commit and the cron can all drive the same import; a crash between any two steps leaves a state that the next
 * one continues from. Each invocation spends at most a budget of D1 statements (production allows 1,000 queries
 * per invocation, every statement of a batch counted).
 */
import { productChangedOutboxSql, type OutboxIds } from "../events/outbox";
import { retargetStatements } from "../promotions/targets";
import { allCatalogDbs } from "../db/partitions";
import { SETTLE_MS } from "./published-view";
import { isOccGuardError, isUniqueError, occGuard } from "../db/guards";
import { chunkLines, type ChunkEnv } from "./receive";
import { releaseImportClaims } from "../catalog/sku-claims";
import { importBatch, insertAttributes, insertPrices, insertTranslations, insertVariants, PRODUCT_COLUMNS, PRODUCT_VALUES, stagedPriceKeys, stagedRows, stagedVariants } from "./row-sql";
import { CHANGE_SEQ_BASE_SQL, DERIVED_IN_STOCK_SQL } from "../feeds/change-seq";

type PartitionEnv = Pick<Env, "DB" | "IMPORT_TRACE"> & { CATALOG_PARTITIONS?: string } & ChunkEnv;

/**
 * D1 statements one invocation may still spend. `reserve`: what a caller with other work (the cron) can add for
 * one indivisible batch that needs more than `left`; `drewReserve` tells it the reserve was spent on that batch.
 */
export type Budget = { left: number; reserve?: number; drewReserve?: boolean };

/** Takes `need` statements, drawing on the reserve when `left` alone cannot hold them; false when even that cannot. */
function take(budget: Budget, need: number): boolean {
  if (budget.left < need && budget.reserve && budget.left + budget.reserve >= need) {
    budget.left += budget.reserve;
    budget.reserve = 0;
    budget.drewReserve = true;
  }
  if (budget.left < need) return false;
  budget.left -= need;
  return true;
}

/** Statements of one chunk of changes to existing products (the switch's and the roll-forward's unit). */
const UPDATE_STATEMENTS = 14;
/** Largest switch or roll-forward batch: under the 1,000 queries an invocation may make. */
export const MAX_SWITCH_STATEMENTS = 900;
/**
 * Chunks of changes to existing products one partition's switch can carry: 64 × 2,000 = 128,000 products. The 4
 * other statements: the switch's status update, guard and visibility row, and the batch's taken-slug read.
 */
export const MAX_UPDATE_CHUNKS = Math.floor((MAX_SWITCH_STATEMENTS - 4) / UPDATE_STATEMENTS);
/** Statements of one finalize or prune chunk (and the read that bounds it). */
const FINALIZE_STATEMENTS = 7;

export type Outbox = OutboxIds;

export class ImportTooManyUpdates extends Error {
  constructor(readonly partition: number, readonly chunks: number) {
    super(`partition ${partition} holds ${chunks} chunks of changes to existing products; one switch carries at most ${MAX_UPDATE_CHUNKS}`);
  }
}

const STAGED = stagedRows(0);
const STAGED_VARIANTS = stagedVariants(0);
/** The staged variant's SKU belongs to the staged product: a SKU another product took meanwhile keeps its prices. */
const OWNED_SKU = "EXISTS (SELECT 1 FROM variants o WHERE o.sku = json_extract(v.value, '$.sku') AND o.product_id = r.product_id)";

/**
 * A change's new slug, unless another product of the partition took it after the checks before the switch (an admin
 * write meanwhile): the product then keeps its slug, so that a published roll-forward cannot fail on the unique slug
 * (it must not: readers wait for it). TAKEN_SLUGS, read in the same batch, finds those lines for the report.
 */
const KEEP_SLUG_IF_TAKEN = "CASE WHEN EXISTS (SELECT 1 FROM products o WHERE o.slug = excluded.slug AND o.id <> excluded.id) THEN products.slug ELSE excluded.slug END";

/** The staged changes whose new slug another product holds now; in the batch before the changes, so it sees what they see. */
const TAKEN_SLUGS = `SELECT r.line, r.product_id, json_extract(r.document, '$.slug') AS slug, o.id AS owner, p.slug AS kept
  FROM import_rows r JOIN products o ON o.slug = json_extract(r.document, '$.slug') AND o.id <> r.product_id JOIN products p ON p.id = r.product_id
  WHERE r.import_id = ?1 AND r.is_new = 0`;

/** Most lines an import reports in each of its JSON lists (`imports.errors`, `imports.slugs_kept`). */
export const MAX_REPORTED_ERRORS = 1_000;
/** The JSON list `column` of `imports` with the entries of JSON parameter `param` added, in line order, the first MAX_REPORTED_ERRORS kept. */
export const mergedLinesSql = (column: "errors" | "slugs_kept", param: string) => `(SELECT json_group_array(json(value)) FROM (SELECT value FROM (SELECT value FROM json_each(imports.${column}) UNION ALL SELECT value FROM json_each(${param}))
                     ORDER BY json_extract(value, '$.line') LIMIT ${MAX_REPORTED_ERRORS}))`;

/** Changes to existing products, lines lo..hi. Bind order: ?1 import, ?2 time, ?3 lo, ?4 hi. */
function updateStatements(db: D1Database, importId: string, now: number, lo: number, hi: number): D1PreparedStatement[] {
  const s = (sql: string) => db.prepare(sql).bind(importId, now, lo, hi);
  return [
    s(`INSERT INTO products (${PRODUCT_COLUMNS}, change_seq, version, import_id, created_at, updated_at)
       SELECT ${PRODUCT_VALUES}, ${CHANGE_SEQ_BASE_SQL} + r.line - ?3 + 1, 1, ?1, ?2, ?2
       ${STAGED}
       ON CONFLICT (id) DO UPDATE SET slug = ${KEEP_SLUG_IF_TAKEN}, title = excluded.title, description = excluded.description, brand = excluded.brand,
         category_id = excluded.category_id, status = excluded.status, attributes = excluded.attributes, images = excluded.images,
         markets = excluded.markets, condition = excluded.condition, min_prices = excluded.min_prices, change_seq = excluded.change_seq,
         version = products.version + 1, import_id = excluded.import_id, updated_at = excluded.updated_at`),
    s(`DELETE FROM product_translations WHERE product_id IN (SELECT r.product_id ${STAGED})`),
    s(insertTranslations(0)),
    s(`DELETE FROM product_attributes WHERE product_id IN (SELECT r.product_id ${STAGED})`),
    s(insertAttributes(0)),
    s(`UPDATE variants SET status = 'archived', version = version + 1, updated_at = ?2
       WHERE status <> 'archived' AND product_id IN (SELECT r.product_id ${STAGED})
         AND sku NOT IN (SELECT json_extract(v.value, '$.sku') ${STAGED_VARIANTS})`),
    s(`${insertVariants(0)}
       ON CONFLICT (sku) DO UPDATE SET title = excluded.title, options = excluded.options, gtin = excluded.gtin, mpn = excluded.mpn,
         position = excluded.position, status = 'active', updated_at = excluded.updated_at, version = variants.version + 1
       WHERE variants.product_id = excluded.product_id`),
    s(`DELETE FROM prices WHERE sku IN (SELECT json_extract(v.value, '$.sku') ${STAGED_VARIANTS} AND ${OWNED_SKU})
         AND (sku || ' ' || currency) NOT IN (${stagedPriceKeys(0)})`),
    s(`${insertPrices(0)} AND ${OWNED_SKU}
       ON CONFLICT (sku, currency) DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at, version = prices.version + 1
       WHERE prices.amount <> excluded.amount`),
    s(`UPDATE products SET in_stock = ${DERIVED_IN_STOCK_SQL}
       WHERE id IN (SELECT r.product_id ${STAGED})`),
    ...retargetStatements(db, { sql: "SELECT r.product_id FROM import_rows r WHERE r.import_id = ?2 AND r.line BETWEEN ?3 AND ?4 AND r.is_new = 0", params: [importId, lo, hi] }, now),
    // Products that existed before: their KV documents and cached pages are now stale.
    s(productChangedOutboxSql(`p.id IN (SELECT r.product_id ${STAGED})`, "?2")),
    s("DELETE FROM import_rows WHERE import_id = ?1 AND line BETWEEN ?3 AND ?4 AND is_new = 0"),
  ];
}

/** Finalizing new products, lines lo..hi (after the switch). Bind order: ?1 import, ?2 time, ?3 lo, ?4 hi. */
function finalizeStatements(db: D1Database, importId: string, now: number, lo: number, hi: number): D1PreparedStatement[] {
  const s = (sql: string) => db.prepare(sql).bind(importId, now, lo, hi);
  const ids = "SELECT r.product_id FROM import_rows r WHERE r.import_id = ?1 AND r.line BETWEEN ?3 AND ?4";
  return [
    // The feeds' sequence now, in line order, above everything the partition had: a delta feed sees each product once it is visible.
    s(`UPDATE products SET pending_import = NULL, updated_at = ?2,
         change_seq = ${CHANGE_SEQ_BASE_SQL} + (SELECT r.line FROM import_rows r WHERE r.import_id = ?1 AND r.product_id = products.id) - ?3 + 1
       WHERE pending_import = ?1 AND id IN (${ids})`),
    s(`UPDATE products SET in_stock = ${DERIVED_IN_STOCK_SQL}
       WHERE id IN (${ids})`),
    ...retargetStatements(db, { sql: "SELECT r.product_id FROM import_rows r WHERE r.import_id = ?2 AND r.line BETWEEN ?3 AND ?4", params: [importId, lo, hi] }, now),
    // New products have nothing cached yet; only those a promotion covers need the consumer (it folds the promotion into min_prices).
    s(productChangedOutboxSql(`p.id IN (${ids}) AND EXISTS (SELECT 1 FROM promotion_targets t WHERE t.product_id = p.id)`, "?2")),
    s("DELETE FROM import_rows WHERE import_id = ?1 AND line BETWEEN ?3 AND ?4"),
  ];
}

/** Deleting what an aborted import wrote, lines lo..hi: children first (they are reached through the pending product). */
function pruneStatements(db: D1Database, importId: string, lo: number, hi: number): D1PreparedStatement[] {
  const s = (sql: string) => db.prepare(sql).bind(importId, lo, hi);
  const pending = "SELECT p.id FROM products p WHERE p.pending_import = ?1 AND p.id IN (SELECT r.product_id FROM import_rows r WHERE r.import_id = ?1 AND r.line BETWEEN ?2 AND ?3)";
  return [
    s(`DELETE FROM prices WHERE sku IN (SELECT v.sku FROM variants v WHERE v.product_id IN (${pending}))`),
    s(`DELETE FROM variants WHERE product_id IN (${pending})`),
    s(`DELETE FROM product_translations WHERE product_id IN (${pending})`),
    s(`DELETE FROM product_attributes WHERE product_id IN (${pending})`),
    s(`DELETE FROM products WHERE pending_import = ?1 AND id IN (SELECT r.product_id FROM import_rows r WHERE r.import_id = ?1 AND r.line BETWEEN ?2 AND ?3)`),
    s("DELETE FROM import_rows WHERE import_id = ?1 AND line BETWEEN ?2 AND ?3"),
  ];
}

/** Line ranges of `lines` staged changes to existing products (chunkLines), in line order. */
async function updateChunks(db: D1Database, importId: string, lines: number): Promise<{ lo: number; hi: number }[]> {
  const { results } = await db
    .prepare(
      `SELECT min(line) AS lo, max(line) AS hi FROM (
         SELECT line, (row_number() OVER (ORDER BY line) - 1) / ${lines} AS k FROM import_rows WHERE import_id = ? AND is_new = 0)
       GROUP BY k ORDER BY k`,
    )
    .bind(importId)
    .all<{ lo: number; hi: number }>();
  return results;
}

/** The next chunk of whatever the partition still stages for the import, or null when nothing is left. */
async function nextChunk(db: D1Database, importId: string, lines: number): Promise<{ lo: number; hi: number } | null> {
  const row = await db
    .prepare(`SELECT min(line) AS lo, max(line) AS hi FROM (SELECT line FROM import_rows WHERE import_id = ? ORDER BY line LIMIT ${lines})`)
    .bind(importId)
    .first<{ lo: number | null; hi: number | null }>();
  return row?.lo == null || row.hi == null ? null : { lo: row.lo, hi: row.hi };
}

function outboxIdsOf(results: D1Result[], statements: D1PreparedStatement[], marks: Set<D1PreparedStatement>): number[] {
  return statements.flatMap((st, i) => (marks.has(st) ? (results[i]!.results as { id: number }[]).map((r) => r.id) : []));
}

/** Refuses, before the switch, an import whose switch or roll-forward would not fit one batch. */
export async function checkSwitchSize(env: PartitionEnv, importId: string): Promise<void> {
  const dbs = allCatalogDbs(env);
  const counts = await Promise.all(dbs.map((db) => updateChunks(db, importId, chunkLines(env))));
  counts.forEach((chunks, p) => {
    if (chunks.length > MAX_UPDATE_CHUNKS) throw new ImportTooManyUpdates(p, chunks.length);
  });
}

/**
 * Changes to existing products are applied at the switch, so the checks at staging could not see the slugs they
 * give: one that a later part gave to a new product (written ahead), or one that another change of the import
 * gives too, would fail the switch on the unique slug and abort the whole import. Found before the switch, in each
 * partition (one statement, a sort of the partition's staged changes): each such line, to be rejected; of several
 * changes giving one slug, the first keeps it.
 */
export async function slugClashes(env: PartitionEnv, importId: string): Promise<{ partition: number; line: number; error: string }[]> {
  const found = await Promise.all(
    allCatalogDbs(env).map((db) =>
      db
        .prepare(
          `WITH staged AS (SELECT line, product_id, json_extract(document, '$.slug') AS slug FROM import_rows WHERE import_id = ?1 AND is_new = 0),
           ranked AS (SELECT line, product_id, slug, first_value(line) OVER w AS first_line, first_value(product_id) OVER w AS first_product
                      FROM staged WINDOW w AS (PARTITION BY slug ORDER BY line))
           SELECT r.line, 'slug ' || r.slug || ' belongs to product ' || p.id AS error FROM ranked r JOIN products p ON p.slug = r.slug AND p.id <> r.product_id
           UNION ALL
           SELECT line, 'slug ' || slug || ' is also given to product ' || first_product || ' on line ' || first_line FROM ranked WHERE line <> first_line
           ORDER BY 1`,
        )
        .bind(importId)
        .all<{ line: number; error: string }>(),
    ),
  );
  const seen = new Set<number>();
  return found.flatMap((res, partition) => res.results.filter((r) => !seen.has(r.line) && seen.add(r.line)).map((r) => ({ partition, ...r })));
}

type UpdateBatch = { statements: D1PreparedStatement[]; marks: Set<D1PreparedStatement>; taken: D1PreparedStatement };

/**
 * A partition's staged changes to existing products, chunk by chunk, the statements whose RETURNING ids go to the
 * outbox, and the read of lines whose slug was taken meanwhile (first, one per batch).
 */
async function updateBatch(db: D1Database, importId: string, now: number, lines: number): Promise<UpdateBatch> {
  const taken = db.prepare(TAKEN_SLUGS).bind(importId);
  const statements: D1PreparedStatement[] = [taken];
  const marks = new Set<D1PreparedStatement>();
  for (const { lo, hi } of await updateChunks(db, importId, lines)) {
    const chunk = updateStatements(db, importId, now, lo, hi);
    marks.add(chunk[chunk.length - 2]!);
    statements.push(...chunk);
  }
  // Every caller's full budget (a commit's, the cron's with its reserve) is sized to hold the largest batch; one
  // that grew past it would be deferred by every invocation and never run. checkSwitchSize refuses such an import
  // before its switch, so this only fires when the statements per chunk grew without MAX_UPDATE_CHUNKS following.
  if (statements.length + 3 > MAX_SWITCH_STATEMENTS) throw new Error(`import batch of ${statements.length + 3} statements exceeds ${MAX_SWITCH_STATEMENTS}`);
  return { statements, marks, taken };
}

/**
 * Records the changes published without their new slug (KEEP_SLUG_IF_TAKEN) in `imports.slugs_kept`: the line is
 * published (not a rejection), but the import's report and its import.completed webhook say which slug it kept.
 */
async function reportTakenSlugs(env: PartitionEnv, importId: string, batch: UpdateBatch, statements: D1PreparedStatement[], results: D1Result[], budget: Budget): Promise<void> {
  const rows = results[statements.indexOf(batch.taken)]!.results as { line: number; product_id: string; slug: string; owner: string; kept: string }[];
  if (rows.length === 0) return;
  const kept = rows.map((r) => ({ line: r.line, product_id: r.product_id, slug: r.slug, kept: r.kept, taken_by: r.owner }));
  budget.left -= 1;
  await env.DB.prepare(`UPDATE imports SET slugs_kept = ${mergedLinesSql("slugs_kept", "?2")} WHERE id = ?1`).bind(importId, JSON.stringify(kept)).run();
}

/**
 * The switch. Returns "lost" when another invocation moved the status first (the compare-and-set lost) and
 * "deferred" when the budget cannot hold the batch; throws when the batch failed, which leaves the import
 * unpublished (the caller aborts it).
 */
/** No other import is rolling forward: checked inside the switch's transaction, so two racing switches cannot both pass. */
const NONE_ROLLING = "NOT EXISTS (SELECT 1 FROM import_visibility WHERE rolling = 1 AND import_id <> ?1)";

export async function switchImport(env: PartitionEnv, importId: string, now: number, budget: Budget, outbox: Outbox): Promise<"switched" | "lost" | "deferred"> {
  const db = env.DB;
  const updates = await updateBatch(db, importId, now, chunkLines(env));
  const rolling = await changesElsewhere(env, importId);
  const statements: D1PreparedStatement[] = [
    // Not while another import is still rolling forward (rollingImports): the guard then fails the batch as if the
    // compare-and-set had lost, and the import stays publishing until that one is rolled forward.
    db.prepare(`UPDATE imports SET status = 'finalizing', published_at = ?2, updated_at = ?2 WHERE id = ?1 AND status = 'publishing' AND ${NONE_ROLLING}`).bind(importId, now),
    occGuard(db),
    ...updates.statements,
    db.prepare("INSERT INTO import_visibility (import_id, published_at, rolling) VALUES (?1, ?2, ?3)").bind(importId, now, rolling ? 1 : 0),
  ];
  budget.left -= 1 + Math.max(0, allCatalogDbs(env).length - 1);
  // Left for the next invocation (a commit call or the cron), which starts with a full budget.
  if (!take(budget, statements.length)) return "deferred";
  try {
    const results = await importBatch(env, "switch", db, statements);
    outbox.push({ db, ids: outboxIdsOf(results, statements, updates.marks) });
    await reportTakenSlugs(env, importId, updates, statements, results, budget);
    return "switched";
  } catch (err) {
    if (isOccGuardError(err)) return "lost";
    throw err;
  }
}

/**
 * Whether a partition other than the directory holds changes to existing products of the import: they are applied
 * after the switch, in place, so readers must wait for them (`rolling`). An import that only creates products there
 * (their rows are hidden by the published list, not applied in place) switches without making readers wait.
 */
async function changesElsewhere(env: PartitionEnv, importId: string): Promise<boolean> {
  const others = allCatalogDbs(env).slice(1);
  const found = await Promise.all(others.map((db) => db.prepare("SELECT 1 AS ok FROM import_rows WHERE import_id = ? AND is_new = 0 LIMIT 1").bind(importId).first()));
  return found.some((row) => row !== null);
}

/** Rolls partition `p` (> 0) forward: its visibility row and its changes to existing products, one batch. False: out of budget. */
async function rollForward(env: PartitionEnv, db: D1Database, importId: string, now: number, budget: Budget, outbox: Outbox): Promise<boolean> {
  const updates = await updateBatch(db, importId, now, chunkLines(env));
  const statements = [db.prepare("INSERT INTO import_visibility (import_id, published_at) VALUES (?1, ?2)").bind(importId, now), ...updates.statements];
  budget.left -= 1;
  if (!take(budget, statements.length)) return false;
  try {
    const results = await importBatch(env, "roll-forward", db, statements);
    outbox.push({ db, ids: outboxIdsOf(results, statements, updates.marks) });
    await reportTakenSlugs(env, importId, updates, statements, results, budget);
  } catch (err) {
    // Another invocation rolled this partition forward first.
    if (!isUniqueError(err, "import_visibility.import_id")) throw err;
  }
  return true;
}

/**
 * After the switch: rolls every partition forward, finalizes chunk by chunk while the budget lasts, and completes
 * the import when nothing is left. Returns true once the import is completed.
 */
/**
 * Rolls every partition forward for a switched import and then clears its `rolling` flag. False when the budget ran
 * out first; throws when a roll-forward failed (the flag stays set: readers wait, the cron retries).
 */
export async function rollImportForward(env: PartitionEnv, importId: string, now: number, budget: Budget, outbox: Outbox): Promise<boolean> {
  const dbs = allCatalogDbs(env);
  const visible = await Promise.all(dbs.map((db) => db.prepare("SELECT rolling FROM import_visibility WHERE import_id = ?").bind(importId).first<{ rolling: number }>()));
  budget.left -= dbs.length;
  for (let p = 1; p < dbs.length; p++) {
    if (visible[p]) continue;
    if (!(await rollForward(env, dbs[p]!, importId, now, budget, outbox))) return false;
  }
  // Every partition's roll-forward has committed (its visibility row is in the same batch as its changes): readers
  // may read again, and see all of the import's changes (published-view.ts). Also after a crash-resumed roll-forward.
  if (visible[0]?.rolling === 1) {
    await env.DB.prepare("UPDATE import_visibility SET rolling = 0 WHERE import_id = ? AND rolling = 1").bind(importId).run();
    budget.left -= 1;
  }
  return true;
}

/**
 * The imports still rolling forward, other than `importId`, in switch order. A switch waits for them (ROLLING_GUARD):
 * two imports' roll-forwards applied out of order in a partition would leave the earlier import's values there over
 * the later one's, for good.
 */
export async function rollingImports(env: PartitionEnv, importId: string): Promise<string[]> {
  if (allCatalogDbs(env).length === 1) return [];
  const { results } = await env.DB.prepare("SELECT import_id FROM import_visibility WHERE rolling = 1 AND import_id <> ? ORDER BY published_at, import_id").bind(importId).all<{ import_id: string }>();
  return results.map((r) => r.import_id);
}

export async function finalizeImport(env: PartitionEnv, importId: string, now: number, budget: Budget, outbox: Outbox): Promise<boolean> {
  const dbs = allCatalogDbs(env);
  if (!(await rollImportForward(env, importId, now, budget, outbox))) return false;
  if (dbs.length > 1) {
    // A request that read the published list before the switch may still be reading: a cleared row would show it
    // part of the import (published-view.ts). Its rows stay pending, visible through the list, until it is done.
    const row = await env.DB.prepare("SELECT published_at FROM imports WHERE id = ?").bind(importId).first<{ published_at: number | null }>();
    budget.left -= 1;
    if (row?.published_at == null || now < row.published_at + SETTLE_MS) return false;
  }
  for (let p = 0; p < dbs.length; p++) {
    const db = dbs[p]!;
    for (;;) {
      if (budget.left < FINALIZE_STATEMENTS + 1) return false;
      const chunk = await nextChunk(db, importId, chunkLines(env));
      budget.left -= 1;
      if (!chunk) break;
      const statements = finalizeStatements(db, importId, now, chunk.lo, chunk.hi);
      budget.left -= statements.length;
      const results = await importBatch(env, "finalize", db, statements);
      outbox.push({ db, ids: outboxIdsOf(results, statements, new Set([statements[statements.length - 2]!])) });
    }
  }
  if (budget.left < dbs.length + 3) return false;
  const [, category] = await env.DB.batch([
    env.DB.prepare("UPDATE imports SET status = 'completed', finished_at = ?2, updated_at = ?2 WHERE id = ?1 AND status = 'finalizing'").bind(importId, now),
    env.DB.prepare(`INSERT INTO outbox (type, entity_id, version, occurred_at, payload)
       SELECT 'category.changed', c.id, c.version, ?2, json_object('type', 'category.changed', 'id', c.id, 'version', c.version, 'occurred_at', ?2)
       FROM categories c WHERE changes() > 0 AND c.id IN (SELECT value FROM json_each((SELECT categories FROM imports WHERE id = ?1)))
       RETURNING id`).bind(importId, now),
  ]);
  outbox.push({ db: env.DB, ids: (category!.results as { id: number }[]).map((r) => r.id) });
  // No pending row of the import is left anywhere (each was cleared with its staging row): the visibility rows are spent.
  await Promise.all(dbs.map((db) => db.prepare("DELETE FROM import_visibility WHERE import_id = ?").bind(importId).run()));
  budget.left -= dbs.length + 2;
  return true;
}

/** Deletes an aborted import's rows while the budget lasts; true once nothing is left in any partition. */
export async function pruneImport(env: PartitionEnv, importId: string, budget: Budget): Promise<boolean> {
  for (const db of allCatalogDbs(env)) {
    for (;;) {
      if (budget.left < FINALIZE_STATEMENTS + 1) return false;
      const chunk = await nextChunk(db, importId, chunkLines(env));
      budget.left -= 1;
      if (!chunk) break;
      const statements = pruneStatements(db, importId, chunk.lo, chunk.hi);
      budget.left -= statements.length;
      await importBatch(env, "prune", db, statements);
    }
  }
  for (;;) {
    if (budget.left < 1) return false;
    budget.left -= 1;
    if (await releaseImportClaims(env, importId)) return true;
  }
}
