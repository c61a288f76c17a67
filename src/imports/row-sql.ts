/**
 * SQL shared by the statements that write staged rows into the live tables: ahead of the switch for new products
 * (stage.ts) and in the switch for existing ones (publish.ts). Each reads `import_rows r` of one chunk:
 * ?1 the import, ?2 the time, ?3..?4 the chunk's line range; `isNew` picks which of the chunk's rows.
 */
const doc = (path: string) => `json_extract(r.document, '$.${path}')`;

export const PRODUCT_COLUMNS = "id, slug, title, description, brand, category_id, status, attributes, images, markets, condition, min_prices";
/** The values of PRODUCT_COLUMNS, from the staged document. */
export const PRODUCT_VALUES = `r.product_id, ${doc("slug")}, ${doc("title")}, ${doc("description")}, ${doc("brand")}, ${doc("category_id")}, ${doc("status")},
  ${doc("attributes")}, ${doc("images")}, ${doc("markets")}, ${doc("condition")}, ${doc("min_prices")}`;

const chunk = (isNew: 0 | 1) => `r.import_id = ?1 AND r.line BETWEEN ?3 AND ?4 AND r.is_new = ${isNew}`;

/** The chunk's staged rows. */
export const stagedRows = (isNew: 0 | 1) => `FROM import_rows r WHERE ${chunk(isNew)}`;
/** The chunk's staged variants (`v`). */
export const stagedVariants = (isNew: 0 | 1) => `FROM import_rows r, json_each(r.document, '$.variants') v WHERE ${chunk(isNew)}`;

export const insertTranslations = (isNew: 0 | 1) => `INSERT INTO product_translations (product_id, locale, title, description)
  SELECT r.product_id, t.key, json_extract(t.value, '$.title'), coalesce(json_extract(t.value, '$.description'), '')
  FROM import_rows r, json_each(r.document, '$.translations') t WHERE ${chunk(isNew)}`;

export const insertAttributes = (isNew: 0 | 1) => `INSERT INTO product_attributes (product_id, name, value)
  SELECT r.product_id, a.key, a.value FROM import_rows r, json_each(r.document, '$.attributes') a WHERE ${chunk(isNew)}`;

export const insertVariants = (isNew: 0 | 1) => `INSERT INTO variants (sku, product_id, title, options, gtin, mpn, position, status, updated_at)
  SELECT json_extract(v.value, '$.sku'), r.product_id, json_extract(v.value, '$.title'), json_extract(v.value, '$.options'),
    json_extract(v.value, '$.gtin'), json_extract(v.value, '$.mpn'), v.key, 'active', ?2
  ${stagedVariants(isNew)}`;

export const insertPrices = (isNew: 0 | 1) => `INSERT INTO prices (sku, currency, amount, updated_at)
  SELECT json_extract(v.value, '$.sku'), p.key, p.value, ?2
  FROM import_rows r, json_each(r.document, '$.variants') v, json_each(v.value, '$.prices') p WHERE ${chunk(isNew)}`;

/** The chunk's (variant sku, currency) pairs, as `sku || ' ' || currency`. */
export const stagedPriceKeys = (isNew: 0 | 1) => `SELECT json_extract(v.value, '$.sku') || ' ' || p.key
  FROM import_rows r, json_each(r.document, '$.variants') v, json_each(v.value, '$.prices') p WHERE ${chunk(isNew)}`;

/**
 * A batch of an import's, logged with its wall time and its slowest statement (`meta.duration`) when the
 * IMPORT_TRACE variable is set (bench/import.ts reads these lines).
 */
export async function importBatch(env: Pick<Env, "IMPORT_TRACE">, kind: string, db: D1Database, statements: D1PreparedStatement[]): Promise<D1Result[]> {
  if (!env.IMPORT_TRACE) return db.batch(statements);
  const t0 = Date.now();
  const results = await db.batch(statements);
  const slowest = results.reduce((m, r) => Math.max(m, Number((r.meta as { duration?: number } | undefined)?.duration ?? 0)), 0);
  console.log(JSON.stringify({ import_batch: kind, ms: Date.now() - t0, statements: statements.length, max_statement_ms: Math.round(slowest * 10) / 10 }));
  return results;
}
