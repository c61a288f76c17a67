/**
 * The catalog's hottest reads at their D1 origin, measured like test/read-cost.test.ts: count the rows D1 reads
 * (`meta.rows_read`) for one product miss, one filtered and price-sorted listing page (with and without facets
 * and total) and one affiliate feed page, grow the catalog around them, and require the same read to cost
 * (nearly) the same. A statement whose plan walks a category, a currency's prices or the whole catalog passes
 * every functional test on a small catalog; here it adds hundreds of rows.
 *
 * Edge cache and KV are cleared before every measured read, and each read asserts `x-cache-tier: d1`, so D1 is
 * really read.
 */
import { env } from "cloudflare:test";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AffiliateScope } from "../src/affiliates/account";
import { lastGoodKey, listingCacheKey, productCacheKey } from "../src/catalog/cache-keys";
import { productKey } from "../src/catalog/document";
import { listingParams, readListing } from "../src/catalog/listing-read";
import { runListing, type ListingPage } from "../src/catalog/listing";
import { originSession } from "../src/catalog/origin";
import type { RawListingQuery } from "../src/catalog/listing-read";
import { readProduct } from "../src/catalog/product-read";
import { selectPage } from "../src/feeds/pages";
import { forgetNextBoundary } from "../src/promotions/switcher";
import { product } from "../src/seed/generate";
import { insertProduct, seedProducts } from "./helpers/catalog-fixtures";
import { uid } from "./helpers/http";
import { rowCounting } from "./helpers/row-counting";

const CURRENCY = "USD";
const LOCALE = "en";

/**
 * The listing's price window, in USD minor units. Seed products cost 899 and up, so only this file's own
 * products fall in it: growth "elsewhere" (seed products) never matches the filter, growth in the category is
 * placed below, inside (after the first page) or above the window on purpose.
 */
const WINDOW = { min: 300, max: 500 };
const PAGE = 20;
const FEED_PAGE = 50;

let category = "";
let productId = "";
/** A category of SMALL_COUNT products that the growth steps never touch. */
let smallCategory = "";
const SMALL_COUNT = 3;
/** A brand of PAGE + 5 products, which the last growth step joins with 60 cheaper ones. */
let brand = "";

type Measured<T> = { rows: number; answer: T; statements: { sql: string; rows: number }[] };

/** Runs `read` against a row-counting D1 (waiting for its waitUntil work) and returns its rows read. */
async function counted<T>(read: (env: Env, waitUntil: (p: Promise<unknown>) => void) => Promise<T>): Promise<Measured<T>> {
  const counting = rowCounting(env.DB);
  const pending: Promise<unknown>[] = [];
  const answer = await read({ ...env, DB: counting.db }, (p) => pending.push(p));
  await Promise.all(pending);
  return { rows: counting.rows(), answer, statements: counting.statements() };
}

async function clearEdge(key: string): Promise<void> {
  await caches.default.delete(key);
  await caches.default.delete(lastGoodKey(key));
}

/** `GET /v1/products/:id` with the edge copy, the last-good copy and the KV document gone: a D1 read. */
async function productMiss(): Promise<Measured<{ variants: number; skus: string[]; bytes: number }>> {
  await clearEdge(productCacheKey(productId, CURRENCY, LOCALE));
  await env.CATALOG_KV.delete(productKey(productId));
  const m = await counted(async (e, waitUntil) => {
    const res = await readProduct({ env: e, request: new Request(`http://edgeshelf.test/v1/products/${productId}`), waitUntil, id: productId, currency: CURRENCY, locale: LOCALE });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-cache-tier")).toBe("d1");
    const text = await res.text();
    const body = JSON.parse(text) as { variants: { sku: string }[] };
    return { variants: body.variants.length, skus: body.variants.map((v) => v.sku), bytes: text.length };
  });
  // The miss wrote the document back to KV; leave no copy behind for the next measurement.
  await env.CATALOG_KV.delete(productKey(productId));
  return m;
}

/** First page of the category in the price window, cheapest first: `/v1/products` (no facets) or `/v1/search` (facets and total). */
async function listingMiss(path: "/v1/products" | "/v1/search"): Promise<Measured<ListingPage>> {
  const params = listingParams({ category, min_price: WINDOW.min, max_price: WINDOW.max, sort: "price_asc", limit: PAGE }, CURRENCY, LOCALE);
  const key = listingCacheKey(path, {
    category: params.category,
    min_price: params.min_price,
    max_price: params.max_price,
    sort: params.sort,
    limit: params.limit,
    currency: params.currency,
    locale: params.locale,
  });
  await clearEdge(key);
  // The render reads the next promotion boundary through a per-isolate cache kept for a second: forget it, so that
  // every measurement includes that (catalog-independent) read rather than some measurements and not others.
  forgetNextBoundary();
  const withFacets = path === "/v1/search";
  const m = await counted(async (e, waitUntil) => {
    const res = await readListing({ env: e, request: new Request(`http://edgeshelf.test${path}`), waitUntil, path, params, facets: withFacets, total: withFacets });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-cache-tier")).toBe("d1");
    return res.json<ListingPage>();
  });
  await clearEdge(key);
  return m;
}

/** One browse page at D1 (`runListing`, no cache tier), with the cursor of the page after it. */
async function browsePage(raw: RawListingQuery): Promise<Measured<ListingPage>> {
  const params = listingParams({ limit: PAGE, ...raw }, CURRENCY, LOCALE);
  return counted((e) => runListing(originSession(e.DB), params, { facets: false, total: false, now: Date.now() }));
}

/** Page `n` (1-based) of a browse listing: the cursor is followed uncounted, only page n itself is measured. */
async function deepPage(raw: RawListingQuery, n: number): Promise<Measured<ListingPage>> {
  let cursor: string | undefined;
  for (let i = 1; i < n; i++) {
    const page = await runListing(originSession(env.DB), listingParams({ limit: PAGE, ...raw, cursor }, CURRENCY, LOCALE), { facets: false, total: false, now: Date.now() });
    cursor = page.next_cursor ?? undefined;
    expect(cursor).toBeDefined();
  }
  return browsePage({ ...raw, cursor });
}

/** A search by a word and nothing else (facets and total): the total is counted on the FTS index, minus hidden rows. */
async function wordSearch(): Promise<Measured<ListingPage>> {
  const word = brand.split("-")[1]!.toLowerCase();
  return counted((e) => runListing(originSession(e.DB), listingParams({ q: word, limit: PAGE }, CURRENCY, LOCALE), { facets: true, total: true, now: Date.now() }));
}

/** First page of an affiliate's full feed (no cache tier: the route reads D1 on every request). */
async function feedPage(scope: AffiliateScope): Promise<Measured<{ ids: string[]; hasMore: boolean }>> {
  return counted(async (e) => {
    const page = await selectPage(e.DB, { scope, filters: {}, limit: FEED_PAGE, currency: CURRENCY, locale: LOCALE });
    return { ids: page.live.map((l) => l.doc.id), hasMore: page.has_more };
  });
}

/** `count` products in `categoryId` (of `brand`, if given), one variant each at the given price (all currencies). */
async function fill(categoryId: string, count: number, price: (i: number) => number, brand?: string): Promise<string[]> {
  const variant = product(1).variants[0]!;
  const out: string[] = [];
  for (let i = 0; i < count; i += 20) {
    const made = await Promise.all(
      Array.from({ length: Math.min(20, count - i) }, (_, k) => {
        const amount = price(i + k);
        return insertProduct(env.DB, { base: 1, categoryId, ...(brand ? { brand } : {}), variants: [{ ...variant, sku: uid("SKU-L"), prices: { USD: amount, EUR: amount, GBP: amount } }] });
      }),
    );
    out.push(...made.map((p) => p.id));
  }
  return out;
}

type Snapshot = {
  product: Awaited<ReturnType<typeof productMiss>>;
  listing: Measured<ListingPage>;
  search: Measured<ListingPage>;
  wordSearch: Measured<ListingPage>;
  feed: Awaited<ReturnType<typeof feedPage>>;
  scopedFeed: Awaited<ReturnType<typeof feedPage>>;
  /** The small category, in stock only, cheapest first and newest first; the brand, dearest first. */
  smallByPrice: Measured<ListingPage>;
  smallNewest: Measured<ListingPage>;
  brand: Measured<ListingPage>;
  /** The large category (no price window), cheapest first: page 1, and page 5 through the cursors. */
  largeFirst: Measured<ListingPage>;
  largeDeep: Measured<ListingPage>;
};

async function measure(): Promise<Snapshot> {
  return {
    product: await productMiss(),
    listing: await listingMiss("/v1/products"),
    search: await listingMiss("/v1/search"),
    wordSearch: await wordSearch(),
    feed: await feedPage({}),
    scopedFeed: await feedPage({ categories: [category] }),
    smallByPrice: await browsePage({ category: smallCategory, in_stock: "true", sort: "price_asc" }),
    smallNewest: await browsePage({ category: smallCategory, in_stock: "true", sort: "newest" }),
    brand: await browsePage({ brand, sort: "price_desc" }),
    largeFirst: await browsePage({ category, sort: "price_asc" }),
    largeDeep: await deepPage({ category, sort: "price_asc" }, 5),
  };
}

let before: Snapshot;
/** After products were added in other categories only. */
let elsewhere: Snapshot;
/** After products were also added in the measured category (outside the window, and inside it after page one). */
let after: Snapshot;

beforeAll(async () => {
  await seedProducts(env.DB, 60);
  category = uid("cat-rc");
  await env.DB.prepare("INSERT INTO categories (id, slug, name, parent_id, path, depth, position) VALUES (?, ?, 'Read cost', 'cat-electronics', ?, 1, 99)")
    .bind(category, category, `/cat-electronics/${category}/`)
    .run();
  // 100 products at 200, 204 … 596: 51 inside the window (300 … 500), the first page is 300 … 376.
  await fill(category, 100, (i) => 200 + 4 * i);
  // The product read: seed product 1's variants (several SKUs, prices in every currency), outside the window.
  productId = (await insertProduct(env.DB, { base: 1, categoryId: category, stockFor: (skus) => skus.flatMap((sku) => ["loc-us-east", "loc-eu-central"].map((locationId) => ({ sku, locationId, onHand: 7 }))) })).id;
  // The small category and brand: dearer than anything else, so a walk of the catalog's price index in either
  // direction, testing the category or brand per row, would pass every other product first.
  smallCategory = uid("cat-rc-small");
  await env.DB.prepare("INSERT INTO categories (id, slug, name, parent_id, path, depth, position) VALUES (?, ?, 'Read cost (small)', 'cat-home-kitchen', ?, 1, 99)")
    .bind(smallCategory, smallCategory, `/cat-home-kitchen/${smallCategory}/`)
    .run();
  await fill(smallCategory, SMALL_COUNT, (i) => 9_000_000 + i);
  brand = uid("Read Cost Brand");
  await fill("cat-bags", PAGE + 5, (i) => 9_100_000 + i, brand);
  // Warm-up: one-off work (first use of a statement, a cache, a KV namespace) stays out of the measurements.
  await measure();
  before = await measure();

  // Elsewhere: 240 seed products in the seed's own categories (all priced above the window).
  await seedProducts(env.DB, 240, 5_000);
  elsewhere = await measure();

  // The same category: 100 below the window, 100 above it, and 100 inside it but dearer than the whole first page.
  await fill(category, 100, (i) => 100 + i);
  await fill(category, 100, (i) => 600 + 10 * i);
  await fill(category, 100, (i) => 400 + i);
  await fill("cat-cycling", 60, (i) => 1_000 + i, brand);
  after = await measure();
}, 180_000);

/**
 * Slack: an index range scan (a product's variants, a SKU's prices…) reads the first key past its range to find
 * its end, unless the range ends the index. Products added after the measured ones can thus add one row per range
 * scan, and the product read has about ten of them. A plan that walks the category or the catalog adds hundreds
 * (each growth step below adds 240-300 products).
 */
const SLACK = 10;

describe("catalog reads cost rows in proportion to their answer, not to the catalog", () => {
  it("a product miss (GET /v1/products/:id at D1) reads the same rows after the catalog and its category grow", () => {
    expect(before.product.answer.variants).toBeGreaterThan(1);
    expect(after.product.answer).toEqual(before.product.answer);
    expect(elsewhere.product.rows).toBeLessThanOrEqual(before.product.rows + SLACK);
    expect(after.product.rows).toBeLessThanOrEqual(before.product.rows + SLACK);
    // Bound by the product's own rows: product, translations, variants, prices and stock per SKU, category, promotions.
    expect(after.product.rows).toBeLessThan(60);
  });

  it("a category page filtered and sorted by price (GET /v1/products) reads the same rows after growth outside the page", () => {
    const ids = (p: ListingPage) => p.items.map((i) => i.id);
    expect(before.listing.answer.items).toHaveLength(PAGE);
    expect(before.listing.answer.next_cursor).not.toBeNull();
    expect(ids(after.listing.answer)).toEqual(ids(before.listing.answer));
    expect(after.listing.answer.items.map((i) => i.price?.amount)).toEqual(before.listing.answer.items.map((i) => i.price?.amount));
    // The page walks products_price_usd_idx from min_price and stops after limit + 1 matches. Products outside the
    // window, or inside it but after the page, are never visited. (Other categories' products *inside* the window
    // would be visited and rejected: the walk's cost is limit ÷ the category's share of the window, a density that
    // does not grow with the catalog. The alternative, reading the whole category and sorting it, does.)
    expect(elsewhere.listing.rows).toBeLessThanOrEqual(before.listing.rows + SLACK);
    expect(after.listing.rows).toBeLessThanOrEqual(before.listing.rows + SLACK);
  });

  it("the same page with facets and total (GET /v1/search) reads the same rows when only non-matching products are added", () => {
    expect(before.search.answer.items.map((i) => i.id)).toEqual(before.listing.answer.items.map((i) => i.id));
    expect(before.search.answer.total).toBe(51);
    expect(elsewhere.search.answer.total).toBe(51);
    expect(elsewhere.search.answer.items).toEqual(before.search.answer.items);
    // Total and facets count every match, so they must grow with the matches; they read the category through
    // products_category_idx and test the price per row, so products of the category outside the window cost
    // rows too (the `after` step). Products of other categories must not: that would be a catalog scan.
    expect(elsewhere.search.rows).toBeLessThanOrEqual(before.search.rows + SLACK);
    expect(after.search.answer.total).toBe(151);
  });

  it("a search by a word alone (total on the FTS index, hidden rows subtracted) reads the same rows when only non-matching products are added", () => {
    expect(before.wordSearch.answer.total).toBe(PAGE + 5);
    expect(elsewhere.wordSearch.answer.total).toBe(PAGE + 5);
    // The probe for hidden rows (inactive products, products of an unswitched import) must seek, not walk the active ones.
    expect(elsewhere.wordSearch.rows).toBeLessThanOrEqual(before.wordSearch.rows + SLACK);
  });

  it("a search ranks its candidates on the FTS index and product row alone, and joins only its page to the rest", () => {
    // The word matches the brand's PAGE + 5 products, then 60 more (the last step): each added match is one more
    // candidate. A candidate costs its FTS entry, its bm25 and its product row (status, sort key); only the page's
    // limit + 1 rows are joined again to products and to their translation. Joining every candidate before the
    // cut read two more rows per candidate: 2,000 rows for a broad word at the cap at 1M products.
    const itemsRows = (m: Measured<ListingPage>) => m.statements.find((s) => /^\s*with cand\b/i.test(s.sql))?.rows ?? NaN;
    expect(after.wordSearch.answer.total).toBe(PAGE + 5 + 60);
    expect(after.wordSearch.answer.items).toHaveLength(PAGE);
    const perCandidate = (itemsRows(after.wordSearch) - itemsRows(elsewhere.wordSearch)) / 60;
    console.log(`search page rows per added candidate: ${perCandidate}`);
    expect(perCandidate).toBeLessThanOrEqual(4);
    // And the facets (with the total) do not read product_attributes per sampled match.
    const facets = after.wordSearch.statements.find((s) => /^\s*with m\b/i.test(s.sql));
    expect(facets?.sql).not.toMatch(/product_attributes/);
  });

  it("a small category's page (in stock only, by price or newest) reads the same rows however large the catalog", () => {
    for (const name of ["smallByPrice", "smallNewest"] as const) {
      expect(before[name].answer.items).toHaveLength(SMALL_COUNT);
      expect(after[name].answer.items.map((i) => i.id)).toEqual(before[name].answer.items.map((i) => i.id));
      expect(elsewhere[name].rows).toBeLessThanOrEqual(before[name].rows + SLACK);
      expect(after[name].rows).toBeLessThanOrEqual(before[name].rows + SLACK);
      // A few index ranges (category × in_stock) of at most limit + 1 entries each, then the page's own rows.
      expect(after[name].rows).toBeLessThan(4 * (PAGE + 1));
    }
    expect(before.smallByPrice.answer.items.map((i) => i.price?.amount)).toEqual([9_000_000, 9_000_001, 9_000_002]);
  });

  it("a brand's page (dearest first) reads the same rows after the brand and the catalog grow", () => {
    expect(before.brand.answer.items).toHaveLength(PAGE);
    expect(before.brand.answer.items.every((i) => i.brand === brand)).toBe(true);
    expect(before.brand.answer.items[0]!.price?.amount).toBe(9_100_000 + PAGE + 4);
    expect(after.brand.answer.items.map((i) => i.id)).toEqual(before.brand.answer.items.map((i) => i.id));
    expect(elsewhere.brand.rows).toBeLessThanOrEqual(before.brand.rows + SLACK);
    // The brand gained 60 products (all cheaper than the page): reading the brand and sorting it would see them.
    expect(after.brand.rows).toBeLessThanOrEqual(before.brand.rows + SLACK);
  });

  it("a deep page of a large category (page 5 by price, through the cursors) reads what page 1 reads", () => {
    expect(after.largeDeep.answer.items).toHaveLength(PAGE);
    const firstIds = new Set(after.largeFirst.answer.items.map((i) => i.id));
    expect(after.largeDeep.answer.items.some((i) => firstIds.has(i.id))).toBe(false);
    const prices = after.largeDeep.answer.items.map((i) => i.price!.amount);
    expect(prices).toEqual([...prices].sort((a, b) => a - b));
    expect(prices[0]).toBeGreaterThanOrEqual(after.largeFirst.answer.items.at(-1)!.price!.amount);
    // Page 5 seeks to its cursor: no more rows than page 1 (the old OR-form keyset read every row after the cursor).
    expect(after.largeDeep.rows).toBeLessThanOrEqual(after.largeFirst.rows + SLACK);
    expect(elsewhere.largeDeep.rows).toBeLessThanOrEqual(elsewhere.largeFirst.rows + SLACK);
  });

  /** A full first feed page, the same products after both growth steps, and no more rows read. */
  function expectSameFeedPage(name: "feed" | "scopedFeed") {
    expect(before[name].answer.ids).toHaveLength(FEED_PAGE);
    expect(before[name].answer.hasMore).toBe(true);
    expect(after[name].answer).toEqual(before[name].answer);
    expect(elsewhere[name].rows).toBeLessThanOrEqual(before[name].rows + SLACK);
    expect(after[name].rows).toBeLessThanOrEqual(before[name].rows + SLACK);
  }

  it("an affiliate feed page of fixed size reads the same rows after the catalog grows", () => {
    // Seed ids p-000001… sort before the added ones (p-005000…, p-t…): the first page is the same products.
    expectSameFeedPage("feed");
  });

  it("a category-scoped affiliate's feed page reads neither other categories nor the rest of its scope", () => {
    // The category's first products by id (p-t…) sort before every one added later.
    // With a scope, pages.ts disables products_status_idx so the scope's index (category_id, id) finds the rows.
    // The page is then sorted by id, but SQLite stops each category's range once `limit` rows are sorted: the
    // page reads about limit rows per scoped category, not the scope (which the `after` step quadruples).
    expectSameFeedPage("scopedFeed");
  });
});

// The measurements, for reading a failure (or a change in cost) without a debugger.
afterAll(() => {
  const row = (name: keyof Snapshot) => `${name}: ${before[name].rows} → ${elsewhere[name].rows} (elsewhere) → ${after[name].rows} (same category)`;
  console.log(["rows read", ...(["product", "listing", "search", "wordSearch", "feed", "scopedFeed", "smallByPrice", "smallNewest", "brand", "largeFirst", "largeDeep"] as const).map(row)].join("\n  "));
});
