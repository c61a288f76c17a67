/**
 * Browse and search over D1: filters, sorts, keyset pagination and facets, as one SQL builder shared by
 * `GET /v1/products` and `GET /v1/search`.
 *
 * Keyset pagination: every sort ends with `id` as a tie-breaker and the cursor carries the last row's sort
 * value and id, so a page is an index range scan and never an OFFSET. For `newest` (and `relevance`
 * without a query) the sort key is immutable (created_at), so paging the whole catalog yields every
 * product exactly once even while products are updated. Price and relevance keys are mutable: a product
 * whose price changes while a client pages may move across the cursor (documented in the README).
 */
import { sql, type SQL } from "drizzle-orm";
import type { OriginSession } from "./origin";
import { ApiError } from "../lib/errors";
import { categoriesQuery, materialisedFacetsQuery, priceBucketCase, priceBucketLabel, shapeFacets, type CategoryRow, type FacetRow, type Facets } from "./facets";
import { renderPrice, type RenderContext } from "./render";
import { correctTerms, ftsQuery } from "./search-terms";
import { visibleProductSql } from "../imports/visibility";
import { GROW_CLEANUP_KEY, owns } from "../db/ownership";

export const SORTS = ["relevance", "price_asc", "price_desc", "newest"] as const;
export type Sort = (typeof SORTS)[number];

export type ListingParams = {
  q?: string;
  category?: string;
  brand?: string[];
  min_price?: number;
  max_price?: number;
  in_stock?: boolean;
  sort: Sort;
  limit: number;
  cursor?: string;
  currency: string;
  locale: string;
};

export type ListingItem = {
  id: string;
  slug: string;
  title: string;
  brand: string;
  category_id: string;
  image: { url: string; alt?: string } | null;
  price: ({ amount: number; currency: string } & Record<string, unknown>) | null;
  in_stock: boolean;
  created_at: string;
};

export type ListingPage = { items: ListingItem[]; next_cursor: string | null; total?: number; total_exact?: boolean; facets?: Facets; facets_exact?: boolean };

/** Largest match set whose facets are counted in full; beyond it they describe the first FACET_SAMPLE matches. */
export const FACET_SAMPLE = 5000;
/** Matches counted for `total` with filters; past it the answer is "TOTAL_CAP or more" (`total_exact: false`). */
export const TOTAL_CAP = 10_000;
/**
 * Most index ranges one browse page unions (filter values × in_stock values). A filter with more values (dozens
 * of brands) walks the sort's own index instead, testing the filter per row.
 */
export const MAX_BRANCHES = 16;
/**
 * Matches a query ranks and counts facets over: the newest SEARCH_CANDIDATES matching products (FTS5 reads its
 * doclist in descending rowid order and stops there), scored with bm25. A specific query (most multi-word ones)
 * matches fewer and is ranked in full; a broad one ("black") is ranked among its newest matches, so its cost
 * stays flat as the catalog grows instead of scoring and sorting every match (docs/search.md).
 */
export const SEARCH_CANDIDATES = 1000;
/** SQLITE_LIMIT_COMPOUND_SELECT as D1 sets it. */
const COMPOUND_TERMS = 5;

// ---- query text ---------------------------------------------------------------------------------------

/** Normalised query text (also the cache-key form): lower-case, single spaces. */
export function normaliseQuery(q: string | undefined): string | undefined {
  const n = q?.normalize("NFKC").toLowerCase().replace(/\s+/g, " ").trim();
  return n ? n : undefined;
}

// ---- cursor -------------------------------------------------------------------------------------------

type CursorKey = [number, string];
type CursorBody = { v: 1; s: Sort; f: string; k: CursorKey };

/** Short stable fingerprint of the filters, so a cursor cannot be replayed against another result set. */
export function filterFingerprint(p: ListingParams): string {
  const text = JSON.stringify([p.q ?? "", p.category ?? "", p.brand ?? [], p.min_price ?? "", p.max_price ?? "", p.in_stock ?? "", p.currency, p.sort]);
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(36);
}

const b64url = (s: string) => btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const unb64url = (s: string) => atob(s.replace(/-/g, "+").replace(/_/g, "/"));

export function encodeCursor(p: ListingParams, key: CursorKey): string {
  const body: CursorBody = { v: 1, s: p.sort, f: filterFingerprint(p), k: key };
  return b64url(JSON.stringify(body));
}

const badCursor = (why: string) => ApiError.badRequest(`Invalid cursor: ${why}.`, { errors: [{ location: "query", path: "cursor", message: why }] });

export function decodeCursor(p: ListingParams): CursorKey | undefined {
  if (p.cursor === undefined) return undefined;
  let body: CursorBody;
  try {
    body = JSON.parse(unb64url(p.cursor)) as CursorBody;
  } catch {
    throw badCursor("not a cursor returned by this API");
  }
  if (!body || body.v !== 1 || !Array.isArray(body.k) || body.k.length !== 2 || typeof body.k[0] !== "number" || !Number.isFinite(body.k[0]) || typeof body.k[1] !== "string") {
    throw badCursor("not a cursor returned by this API");
  }
  if (body.s !== p.sort || body.f !== filterFingerprint(p)) throw badCursor("it belongs to a different query, filter or sort");
  return body.k;
}

// ---- SQL ----------------------------------------------------------------------------------------------

/**
 * The currency's minimum-price expression over products alias `alias`. The currency comes from the allow-list,
 * so it is safe to inline; inlining is what lets SQLite match products_price_<cur>_idx and products_band_<cur>_idx.
 */
export function minPriceSql(alias: string, currency: string): string {
  if (!/^[A-Z]{3}$/.test(currency)) throw new Error(`bad currency ${currency}`);
  return `json_extract(${alias}.min_prices, '$.${currency}')`;
}

function priceExpr(currency: string): SQL {
  return sql.raw(minPriceSql("p", currency));
}

const RELEVANCE = sql.raw(`bm25(products_fts, 10.0, 5.0, 1.0, 2.0)`);
/** Products of an unfinished import stay out of every page, total and count until its switch (imports/visibility.ts). */
const VISIBLE = sql.raw(visibleProductSql("p"));

/**
 * `where` filters the page query; `matchWhere` is the same filter for the facets and total, which have no sort
 * to protect and so may let SQLite pick the filter's own index. `sampleOrder` fixes which matches make up the
 * facet sample when that index would otherwise decide it.
 */
type Plan = { from: SQL; where: SQL[]; matchWhere: SQL[]; sampleOrder: SQL; sortExpr: SQL; dir: "ASC" | "DESC"; withQuery: boolean; queryOnly?: string };

function plan(p: ListingParams, q: string | undefined): Plan {
  const price = priceExpr(p.currency);
  const where: SQL[] = [sql`+p.status = 'active'`, VISIBLE];
  const matchWhere: SQL[] = [sql`+p.status = 'active'`, VISIBLE];
  const both = (cond: SQL) => {
    where.push(cond);
    matchWhere.push(cond);
  };
  let sampleOrder = sql``;
  if (q) {
    both(sql`products_fts MATCH ${q}`);
    sampleOrder = sql` ORDER BY products_fts.rowid DESC`;
  }
  if (p.category) {
    const subtree = sql`(SELECT c.id FROM categories root JOIN categories c ON substr(c.path, 1, length(root.path)) = root.path
      WHERE root.slug = ${p.category} OR root.id = ${p.category})`;
    // `+` keeps SQLite on the sort's index (stop after `limit` rows) instead of collecting and sorting the whole subtree.
    where.push(sql`+p.category_id IN ${subtree}`);
    if (q) {
      // With a query the FTS match must stay the driver: `+` stops SQLite probing products_fts once per category row.
      matchWhere.push(sql`+p.category_id IN ${subtree}`);
    } else {
      // Facets/total have no sort to protect: without `+` they read the subtree through products_category_idx instead of
      // scanning every product; ORDER BY rowid keeps the facet sample the same first-in-rowid-order matches as that scan.
      matchWhere.push(sql`p.category_id IN ${subtree}`);
      sampleOrder = sql` ORDER BY p.rowid`;
    }
  }
  // One bound parameter whatever the number of brands (D1 refuses statements with more than 100).
  if (p.brand?.length) both(sql`p.brand IN (SELECT value FROM json_each(${JSON.stringify(p.brand)}))`);
  if (p.in_stock) both(sql`p.in_stock = 1`);
  if (p.min_price !== undefined) both(sql`${price} >= ${p.min_price}`);
  if (p.max_price !== undefined) both(sql`${price} <= ${p.max_price}`);
  const from = q ? sql`products_fts JOIN products p ON p.rowid = products_fts.rowid` : sql`products p`;
  // A query and nothing else (a price sort adds "has a price"): the total can be counted on the FTS index alone.
  const queryOnly = q && matchWhere.length === 3 && p.sort !== "price_asc" && p.sort !== "price_desc" ? q : undefined;
  const common = { from, matchWhere, sampleOrder, queryOnly };
  switch (p.sort) {
    case "price_asc":
      return { ...common, where: [...where, sql`${price} IS NOT NULL`], matchWhere: [...matchWhere, sql`${price} IS NOT NULL`], sortExpr: price, dir: "ASC", withQuery: !!q };
    case "price_desc":
      return { ...common, where: [...where, sql`${price} IS NOT NULL`], matchWhere: [...matchWhere, sql`${price} IS NOT NULL`], sortExpr: price, dir: "DESC", withQuery: !!q };
    case "relevance":
      if (q) return { ...common, where, sortExpr: RELEVANCE, dir: "ASC", withQuery: true };
      return { ...common, where, sortExpr: sql`p.created_at`, dir: "DESC", withQuery: false };
    case "newest":
      return { ...common, where, sortExpr: sql`p.created_at`, dir: "DESC", withQuery: !!q };
  }
}

/**
 * Rows after the cursor in sort order. Written as a range on the sort key plus a tie-break test, because SQLite
 * turns `(k > K OR (k = K AND id > I))` into a MULTI-INDEX OR that reads every row after the cursor and sorts
 * them (a deep page then read most of the catalog), and does not use row values over an expression index.
 */
function keysetSql(pl: Pick<Plan, "sortExpr" | "dir">, after: CursorKey, idExpr: SQL = sql`p.id`): SQL {
  const [key, id] = after;
  // The key inline (a finite number, decodeCursor checks): a browse page repeats this in each of up to 16 ranges,
  // and D1 refuses a statement with more than 100 bound parameters.
  const k = numberLiteral(key);
  return pl.dir === "ASC"
    ? sql`${pl.sortExpr} >= ${k} AND (${pl.sortExpr} > ${k} OR ${idExpr} > ${id})`
    : sql`${pl.sortExpr} <= ${k} AND (${pl.sortExpr} < ${k} OR ${idExpr} < ${id})`;
}

/** A number as an SQL literal: for values validated as finite numbers, repeated in many branches of one statement. */
function numberLiteral(n: number): SQL {
  if (!Number.isFinite(n)) throw new Error(`not a finite number: ${n}`);
  return sql.raw(String(n));
}

/**
 * A browse page (no query) as a UNION ALL of index ranges, one per (driver value, in_stock value), each read in
 * sort order and cut at limit + 1 rows, then merged: the rows read are bounded by the page size times the
 * branches, however large the catalog or the category (products_list_* indexes, migrations/0010). The driver
 * is the category subtree's ids, else the brands, else nothing. Undefined when there would be more than
 * MAX_BRANCHES ranges, or the sort cannot use those indexes.
 */
function browseItemsQuery(p: ListingParams, pl: Plan, after: CursorKey | undefined, subtree: string[] | undefined, take: number): SQL | undefined {
  if (pl.withQuery) return undefined;
  const drivers: SQL[] = subtree
    ? subtree.map((id) => sql`p.category_id = ${id}`)
    : p.brand?.length
      ? p.brand.map((b) => sql`p.brand = ${b}`)
      : [sql`1`];
  // An unknown category: no range at all, and not a walk of the whole catalog looking for it.
  if (drivers.length === 0) drivers.push(sql`0`);
  const stock = p.in_stock ? [1] : [1, 0];
  if (drivers.length * stock.length > MAX_BRANCHES) return undefined;
  const price = priceExpr(p.currency);
  // Every range repeats these filters, so each may bind at most one parameter (D1 allows 100 per statement: 16
  // ranges × (driver, brands, cursor id) = 48): brands as one JSON list, prices and the cursor's key inline.
  const residual: SQL[] = [VISIBLE];
  if (subtree && p.brand?.length) residual.push(sql`p.brand IN (SELECT value FROM json_each(${JSON.stringify(p.brand)}))`);
  if (p.min_price !== undefined) residual.push(sql`${price} >= ${numberLiteral(p.min_price)}`);
  if (p.max_price !== undefined) residual.push(sql`${price} <= ${numberLiteral(p.max_price)}`);
  if (p.sort === "price_asc" || p.sort === "price_desc") residual.push(sql`${price} IS NOT NULL`);
  if (after) residual.push(keysetSql(pl, after));
  const dir = sql.raw(pl.dir);
  const branches = drivers.flatMap((driver) =>
    stock.map((inStock) => {
      // `status = 'active'` verbatim: it is what lets SQLite use the partial products_list_* indexes.
      const where = sql.join([driver, sql.raw(`p.in_stock = ${inStock}`), sql.raw(`p.status = 'active'`), ...residual], sql` AND `);
      return sql`SELECT * FROM (SELECT p.rowid AS rid, p.id AS id, ${pl.sortExpr} AS sort_key FROM products p WHERE ${where}
        ORDER BY ${pl.sortExpr} ${dir}, p.id ${dir} LIMIT ${sql.raw(String(take))})`;
    }),
  );
  // D1 allows 5 terms per compound SELECT: branches are unioned in groups of 5, and the groups unioned in turn.
  const groups: SQL[] = [];
  for (let i = 0; i < branches.length; i += COMPOUND_TERMS) groups.push(sql`SELECT * FROM (${sql.join(branches.slice(i, i + COMPOUND_TERMS), sql` UNION ALL `)})`);
  return sql`WITH page AS (${sql.join(groups, sql` UNION ALL `)} ORDER BY sort_key ${dir}, id ${dir} LIMIT ${take})
    SELECT p.id, p.slug, p.title, t.title AS t_title, p.brand, p.category_id, p.images, p.in_stock,
      p.min_prices, p.price_badges, p.created_at, page.sort_key AS sort_key
    FROM page JOIN products p ON p.rowid = page.rid LEFT JOIN product_translations t ON t.product_id = p.id AND t.locale = ${p.locale}
    ORDER BY page.sort_key ${dir}, page.id ${dir}`;
}

/**
 * A search page: the `candidates` newest matches that pass the filters, each scored once with bm25, then sorted (by
 * score, price or date) and cut at the cursor. Rows read are bounded by the candidates, not the matches. The
 * candidates carry their sort key and id (the product row is read anyway, for `status`), so only the page's
 * limit + 1 rows are joined to products again and to their translation: joining every candidate before the cut
 * read two more rows per candidate, 2,000 of them for a broad word at 1M products.
 */
function searchItemsQuery(p: ListingParams, pl: Plan, after: CursorKey | undefined, candidates: number, take: number): SQL {
  const key = sql`sort_key`;
  const dir = sql.raw(pl.dir);
  const keyset = after ? sql`WHERE ${keysetSql({ sortExpr: key, dir: pl.dir }, after, sql`id`)}` : sql``;
  return sql`WITH cand AS MATERIALIZED (SELECT products_fts.rowid AS rid, p.id AS id, ${pl.sortExpr} AS sort_key FROM ${pl.from}
      WHERE ${sql.join(pl.where, sql` AND `)} ORDER BY products_fts.rowid DESC LIMIT ${sql.raw(String(candidates))}),
    page AS MATERIALIZED (SELECT rid, id, sort_key FROM cand ${keyset} ORDER BY sort_key ${dir}, id ${dir} LIMIT ${take})
    SELECT p.id, p.slug, p.title, t.title AS t_title, p.brand, p.category_id, p.images, p.in_stock,
      p.min_prices, p.price_badges, p.created_at, page.sort_key AS sort_key
    FROM page JOIN products p ON p.rowid = page.rid LEFT JOIN product_translations t ON t.product_id = p.id AND t.locale = ${p.locale}
    ORDER BY page.sort_key ${dir}, page.id ${dir}`;
}

/** Products that are not active, probed one by one by the query-only total; past this many it joins every match instead. */
const INACTIVE_PROBES = 2_000;

/**
 * Active matches, counted up to TOTAL_CAP + 1 (a larger answer means "more than TOTAL_CAP"). Joining each match to
 * its product row to test `status` costs one random read per match, 10,000 of them at the cap: for a broad query
 * at 1M products that was most of a search's time. With a query and no other filter, the FTS index counts the
 * matches by itself (FTS reads no product row) and the inactive products that match are subtracted: there are
 * few (read through products_status_idx), and each is one FTS lookup by rowid. Counting up to TOTAL_CAP + 1 +
 * (inactive products) keeps the answer exact below the cap: reaching that limit means at least TOTAL_CAP + 1
 * active matches. A catalog with more inactive products than INACTIVE_PROBES falls back to the join.
 */
function totalSql(pl: Plan, whereMatch: SQL): SQL {
  const joined = sql`(SELECT count(*) FROM (SELECT 1 FROM ${pl.from} WHERE ${whereMatch} LIMIT ${TOTAL_CAP + 1}))`;
  if (!pl.queryOnly) return joined;
  const q = pl.queryOnly;
  // `+status`: the second probe must seek the partial index of pending rows; on `status = 'active'` SQLite walked
  // every active product (0.34 s at 1M, every search by words alone).
  return sql`(WITH inactive AS MATERIALIZED (SELECT rid FROM (SELECT rowid AS rid FROM products WHERE status < 'active' OR status > 'active'
        UNION ALL SELECT rowid FROM products WHERE pending_import IS NOT NULL AND +status = 'active' AND NOT ${sql.raw(visibleProductSql("products"))}) LIMIT ${INACTIVE_PROBES + 1})
    SELECT CASE WHEN (SELECT count(*) FROM inactive) > ${INACTIVE_PROBES} THEN ${joined}
      ELSE (SELECT count(*) FROM (SELECT 1 FROM products_fts WHERE products_fts MATCH ${q} LIMIT ${TOTAL_CAP + 1} + (SELECT count(*) FROM inactive)))
        - (SELECT count(*) FROM inactive x WHERE EXISTS (SELECT 1 FROM products_fts f WHERE f.rowid = x.rid AND f.products_fts MATCH ${q})) END)`;
}

/** The category's own id (`root`) and every descendant's (`ids`, empty for an unknown category). */
async function subtreeIds(origin: OriginSession, category: string): Promise<{ root?: string; ids: string[] }> {
  const [rows] = await origin.batch<[{ id: string; root: number }[]]>([
    sql`SELECT c.id, c.id = root.id AS root FROM categories root JOIN categories c ON substr(c.path, 1, length(root.path)) = root.path
      WHERE root.slug = ${category} OR root.id = ${category}`,
  ]);
  return { root: rows.find((r) => r.root)?.id, ids: rows.map((r) => r.id) };
}

type ItemRow = {
  id: string; slug: string; title: string; t_title: string | null; brand: string; category_id: string; images: string;
  in_stock: number; min_prices: string; price_badges: string; created_at: number; sort_key: number;
};

export function hasFilters(p: ListingParams): boolean {
  return !!(p.q || p.category || p.brand?.length || p.in_stock || p.min_price !== undefined || p.max_price !== undefined);
}

/**
 * `sampled`: the facets were counted over a full sample where they are otherwise exact (a clean-up is pending).
 * `frontier`: the last row read when the partition stopped reading on (CLEANUP_PAGE_ROWS) before it had a page of
 * its own rows: it offered every own row up to there, none after.
 */
type PartitionResult = { rows: ItemRow[]; facetRows?: FacetRow[]; categoryRows?: CategoryRow[]; dir: "ASC" | "DESC"; sampled?: boolean; frontier?: ItemRow };

/** One partition's page (plus, when asked, total and facet rows) in a single D1 round trip (one batch). */
async function queryPartition(
  origin: OriginSession,
  p: ListingParams,
  opts: { facets: boolean; total: boolean },
  partition: number,
  share: { candidates: number; sample: number },
  categoryIds: () => Promise<string[]>,
  /** Set when partitions are several: the rows this one does not own of `n` are left out during a clean-up. */
  ownership?: { n: number },
): Promise<PartitionResult> {
  // The category tree is read from the directory (partition 0) only.
  const withCategories = partition === 0;
  // Each partition corrects typos against its own FTS vocabulary.
  const pl = plan(p, p.q ? ftsQuery(await correctTerms(origin, p.q, { scope: String(partition) })) : undefined);
  const after = decodeCursor(p);
  const dir = sql.raw(pl.dir);
  const subtree = p.category && !pl.withQuery ? await categoryIds() : undefined;
  /** Up to `take` rows after `from` in sort order (a page's limit + 1; more for a read on during a clean-up). */
  const items = (from: CursorKey | undefined, take = p.limit + 1) => {
    const keyset: SQL[] = from ? [keysetSql(pl, from)] : [];
    const whereAll = sql.join([...pl.where, ...keyset], sql` AND `);
    return (pl.withQuery ? searchItemsQuery(p, pl, from, share.candidates, take) : browseItemsQuery(p, pl, from, subtree, take)) ?? sql`SELECT p.id, p.slug, p.title, t.title AS t_title, p.brand, p.category_id, p.images, p.in_stock,
      p.min_prices, p.price_badges, p.created_at, ${pl.sortExpr} AS sort_key
    FROM ${pl.from} LEFT JOIN product_translations t ON t.product_id = p.id AND t.locale = ${p.locale}
    WHERE ${whereAll}
    ORDER BY ${pl.sortExpr} ${dir}, p.id ${dir}
    LIMIT ${take}`;
  };
  const itemsQuery = items(after);

  const filtered = hasFilters(p);
  const wantFacets = opts.facets || opts.total;
  const price = priceExpr(p.currency);
  const whereMatch = sql.join(pl.matchWhere, sql` AND `);
  // Facets are counted over at most FACET_SAMPLE matches (the first in index order, or in rowid order with a
  // category filter; no scoring), so a query matching half the catalog costs the same as one matching 5,000;
  // `total` is exact up to TOTAL_CAP matches.
  const sampleSql = sql`SELECT p.id, p.brand, p.category_id, p.attributes, ${price} AS price FROM ${pl.from} WHERE ${whereMatch}${pl.sampleOrder} LIMIT ${share.sample}`;
  let facetQuery: SQL | undefined;
  if (wantFacets && filtered) {
    // Attributes are read from the sampled rows' own `attributes` JSON (product_attributes mirrors it row by row):
    // joining product_attributes cost an index seek plus a row per attribute, about 4,000 random reads for a
    // search's 1,000 candidates (41 ms with cold pages at 1M products, against under 1 ms for json_each).
    facetQuery = sql`WITH m AS MATERIALIZED (${sampleSql})
      SELECT 'total' AS facet, '' AS value, ${totalSql(pl, whereMatch)} AS count
      UNION ALL SELECT 'brand', brand, count(*) FROM m GROUP BY brand
      UNION ALL SELECT 'category', category_id, count(*) FROM m GROUP BY category_id
      UNION ALL SELECT 'attr:' || a.key, a.value, count(*) FROM m, json_each(CASE WHEN json_valid(m.attributes) THEN m.attributes ELSE '{}' END) a GROUP BY a.key, a.value
      UNION ALL SELECT 'price', ${sql.raw(priceBucketCase("price"))}, count(*) FROM m WHERE price IS NOT NULL GROUP BY 2`;
  } else if (wantFacets) {
    facetQuery = materialisedFacetsQuery(p.currency, ownership && { key: GROW_CLEANUP_KEY, value: String(ownership.n) });
  }
  // Over several partitions, each also says (one primary-key read) whether a growth's clean-up is pending in it.
  const statements: SQL[] = [itemsQuery];
  if (facetQuery) statements.push(facetQuery);
  if (facetQuery && withCategories) statements.push(categoriesQuery(p.locale));
  if (ownership) statements.push(sql`SELECT value FROM meta WHERE key = ${GROW_CLEANUP_KEY}`);
  const got = await origin.batch<unknown[][]>(statements);
  const out: PartitionResult = {
    rows: got[0] as ItemRow[],
    facetRows: facetQuery ? (got[1] as FacetRow[]) : undefined,
    categoryRows: facetQuery && withCategories ? (got[2] as CategoryRow[]) : undefined,
    dir: pl.dir,
  };
  if (!ownership || (got.at(-1) as unknown[]).length === 0) return out;

  // A growth's clean-up is pending here: rows of products another partition now owns (older copies) are left out.
  const mine = (id: string) => owns(ownership.n, partition, id);
  // The page: a keyset read on past the rows left out, until limit + 1 rows of its own, the end of the range, or
  // CLEANUP_PAGE_ROWS rows read in all (each read on twice the last). Past that budget the partition stops at
  // the last row it read (`frontier`): the merged page ends there, possibly short, and its cursor resumes after it.
  let raw = out.rows;
  let take = p.limit + 1;
  let budget = CLEANUP_PAGE_ROWS - take;
  out.rows = raw.filter((r) => mine(r.id));
  while (raw.length === take && out.rows.length <= p.limit) {
    const last = raw.at(-1)!;
    if (budget <= 0) {
      out.frontier = last;
      break;
    }
    take = Math.min(Math.max(take * 2, 32), budget);
    budget -= take;
    [raw] = await origin.batch<[ItemRow[]]>([items([Number(last.sort_key), last.id], take)]);
    out.rows.push(...raw.filter((r) => mine(r.id)));
  }
  out.rows.length = Math.min(out.rows.length, p.limit + 1);
  // Without a filter the facet query already subtracted the moved rows' counts: exact. With one, they and the total
  // are counted here over the sample's own rows (and the matches' ids, up to the cap), bounded as a filter's are.
  if (!facetQuery || !filtered) return out;
  const [sample, matched] = await origin.batch<[SampleRow[], { id: string }[]]>([sampleSql, sql`SELECT p.id FROM ${pl.from} WHERE ${whereMatch} LIMIT ${TOTAL_CAP + 1}`]);
  out.facetRows = countFacets(sample.filter((r) => mine(r.id)), "price");
  // Past the cap, "more than TOTAL_CAP" is the answer, as it would be without the moved rows in most cases.
  out.facetRows.push({ facet: "total", value: "", count: matched.length > TOTAL_CAP ? TOTAL_CAP + 1 : matched.filter((r) => mine(r.id)).length });
  out.sampled = sample.length >= share.sample;
  return out;
}

/**
 * Rows a partition's page may ask for in all while a clean-up is pending (per index range of a browse page): a
 * stretch of moved rows longer than this costs the pages that meet it one request each per CLEANUP_PAGE_ROWS rows
 * (short pages with a cursor), never a read of the whole stretch.
 */
const CLEANUP_PAGE_ROWS = 800;

type SampleRow = { id: string; brand: string; category_id: string; attributes: string | null; price: number | null };

/** The facet rows the SQL facet query gives (brand, category, attr:<key>, price bucket), counted over `rows`. */
function countFacets(rows: SampleRow[], priceFacet: string): FacetRow[] {
  const counts = new Map<string, FacetRow>();
  const add = (facet: string, value: string) => {
    const key = `${facet}\u0000${value}`;
    const seen = counts.get(key);
    if (seen) seen.count++;
    else counts.set(key, { facet, value, count: 1 });
  };
  for (const r of rows) {
    add("brand", r.brand);
    add("category", r.category_id);
    let attributes: Record<string, unknown> = {};
    try {
      attributes = r.attributes ? (JSON.parse(r.attributes) as Record<string, unknown>) : {};
    } catch {
      // Unreadable attributes count for nothing, as json_valid makes the SQL count them.
    }
    for (const [k, v] of Object.entries(attributes ?? {})) add(`attr:${k}`, String(v));
    if (r.price !== null && r.price !== undefined) add(priceFacet, priceBucketLabel(Number(r.price)));
  }
  return [...counts.values()];
}

/**
 * Each partition's part of the candidates a search ranks and of the matches facets sample: 1/N of each. Products
 * are spread over the partitions by a hash of their id, so the N shares of newest matches make up about the
 * catalog's newest SEARCH_CANDIDATES, and a scatter costs the rows one database would read, not N times them.
 * (Totals are not divided: a partition cannot know how the matches split, and counting runs on the FTS index.)
 */
export function partitionShare(p: Pick<ListingParams, "q">, partitions: number, searchCandidates = SEARCH_CANDIDATES): { candidates: number; sample: number } {
  const candidates = Math.ceil(searchCandidates / partitions);
  return { candidates, sample: p.q ? candidates : Math.ceil(FACET_SAMPLE / partitions) };
}

/** (sort key, id) order of a page: the total order every partition's range is read in, so merging keeps it. */
function rowOrder(dir: "ASC" | "DESC"): (a: ItemRow, b: ItemRow) => number {
  const sign = dir === "ASC" ? 1 : -1;
  return (a, b) => sign * (Number(a.sort_key) - Number(b.sort_key) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * k-way merge of partitions' pages, each already in `order` and cut at limit + 1: the first `take` rows overall.
 * Each partition applied the same cursor to its range, so every product appears exactly once across pages.
 */
function mergePages(pages: ItemRow[][], order: (a: ItemRow, b: ItemRow) => number, take: number): ItemRow[] {
  const heads = pages.map(() => 0);
  const out: ItemRow[] = [];
  while (out.length < take) {
    let best = -1;
    for (let i = 0; i < pages.length; i++) {
      const row = pages[i]![heads[i]!];
      if (row && (best < 0 || order(row, pages[best]![heads[best]!]!) < 0)) best = i;
    }
    if (best < 0) break;
    out.push(pages[best]![heads[best]!++]!);
  }
  return out;
}

/** Facet rows of several partitions summed per (facet, value); `total` rows add up too (each capped at TOTAL_CAP + 1). */
function sumFacetRows(parts: FacetRow[][]): FacetRow[] {
  const sums = new Map<string, FacetRow>();
  for (const rows of parts) {
    for (const r of rows) {
      const key = `${r.facet}\u0000${r.value}`;
      const seen = sums.get(key);
      if (seen) seen.count = Number(seen.count) + Number(r.count);
      else sums.set(key, { facet: r.facet, value: r.value, count: Number(r.count) });
    }
  }
  return [...sums.values()];
}

/**
 * Runs one page (plus, when asked, total and facets). `origin` is one database, or every catalog partition
 * (src/db/partitions.ts), the first being the directory: then each partition answers the same query (one batch
 * each, in parallel), the pages are k-way merged by (sort key, id), facet counts and totals summed. Each partition
 * ranks and samples its 1/N share of SEARCH_CANDIDATES and FACET_SAMPLE (partitionShare).
 * `priceContext.now` is passed to renderPrice so effective prices can be time-dependent.
 */
export async function runListing(
  origin: OriginSession | readonly OriginSession[],
  p: ListingParams,
  /**
   * `candidates`: SEARCH_CANDIDATES unless a test needs the cap reached with a small catalog. `resolved` receives
   * the id of the `category` parameter (given as a slug or an id): product purges name categories by id, so that
   * is the tag a page filtered by category must carry.
   */
  opts: { facets: boolean; total: boolean; now: number; candidates?: number; resolved?: { categoryId?: string } },
): Promise<ListingPage> {
  const origins = Array.isArray(origin) ? (origin as readonly OriginSession[]) : [origin as OriginSession];
  // The category subtree is read once (categories are the same in every partition): by a browse page for its
  // ranges, and by any page that reports the category's id.
  let subtree: Promise<{ root?: string; ids: string[] }> | undefined;
  const readSubtree = () => (subtree ??= subtreeIds(origins[0]!, p.category!));
  const categoryIds = async () => (await readSubtree()).ids;
  const share = partitionShare(p, origins.length, opts.candidates);
  const [parts, root] = await Promise.all([
    Promise.all(origins.map((o, i) => queryPartition(o, p, opts, i, share, categoryIds, origins.length > 1 ? { n: origins.length } : undefined))),
    p.category && opts.resolved ? readSubtree().then((s) => s.root) : undefined,
  ]);
  if (opts.resolved) opts.resolved.categoryId = root;
  const order = rowOrder(parts[0]!.dir);
  let rows = parts.length === 1 ? parts[0]!.rows : mergePages(parts.map((r) => r.rows), order, p.limit + 1);
  // A partition that stopped reading on at its frontier may hold own rows past it: the page ends at the earliest
  // frontier (short, maybe empty) and the cursor resumes there, so no row is skipped or given twice.
  const cut = parts.reduce<ItemRow | undefined>((c, part) => (part.frontier && (!c || order(part.frontier, c) < 0) ? part.frontier : c), undefined);
  if (cut) rows = rows.filter((r) => order(r, cut) <= 0);
  const facetRows = parts[0]!.facetRows && (parts.length === 1 ? parts[0]!.facetRows : sumFacetRows(parts.map((r) => r.facetRows ?? [])));
  const categoryRows = parts[0]!.categoryRows;
  const filtered = hasFilters(p);

  const more = rows.length > p.limit;
  const page = more ? rows.slice(0, p.limit) : rows;
  const ctx: RenderContext = { currency: p.currency, locale: p.locale, now: opts.now };
  const items = page.map((r): ListingItem => {
    const images = JSON.parse(r.images) as { url: string; alt?: string }[];
    const minPrices = JSON.parse(r.min_prices) as Record<string, number>;
    return {
      id: r.id,
      slug: r.slug,
      title: r.t_title ?? r.title,
      brand: r.brand,
      category_id: r.category_id,
      image: images[0] ?? null,
      price: renderPrice(minPrices[p.currency], ctx, { sku: null, productId: r.id, badge: JSON.parse(r.price_badges || "{}")[p.currency] }),
      in_stock: r.in_stock === 1,
      created_at: new Date(r.created_at).toISOString(),
    };
  });
  const last = page[page.length - 1];
  const resume = more ? last : cut;
  const out: ListingPage = { items, next_cursor: resume ? encodeCursor(p, [Number(resume.sort_key), resume.id]) : null };
  if (facetRows && categoryRows) {
    const facets = shapeFacets(facetRows, categoryRows, p.currency);
    if (opts.total) {
      const counted = filtered
        ? Number(facetRows.find((r) => r.facet === "total")?.count ?? 0)
        : facetRows.filter((r) => r.facet === "category").reduce((n, r) => n + Number(r.count), 0);
      out.total = filtered ? Math.min(counted, TOTAL_CAP) : counted;
      out.total_exact = (!filtered || counted <= TOTAL_CAP) && !parts.some((part) => part.sampled);
    }
    if (opts.facets) {
      out.facets = facets;
      // Exact when no partition had more matches than it samples.
      out.facets_exact = !parts.some((part) => part.sampled) && (!filtered || parts.every((part) => Number(part.facetRows?.find((r) => r.facet === "total")?.count ?? 0) <= share.sample));
    }
  }
  return out;
}
