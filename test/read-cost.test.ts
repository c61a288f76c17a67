/**
 * Query plans are chosen by data, and test catalogs are small: a statement that walks a whole category or
 * every price in a currency passes every functional test and only shows in a benchmark at 10,000 products.
 * These tests count the rows D1 reads (`meta.rows_read`) for a recommendation miss, grow the catalog around
 * it, and require the same read to cost (nearly) the same.
 */
import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { recommendationCacheKey, type ServedIntent } from "../src/recommendations/refs";
import { readAnswer } from "../src/recommendations/serve";
import { product } from "../src/seed/generate";
import { insertProduct, seedProducts } from "./helpers/catalog-fixtures";
import { uid } from "./helpers/http";
import { rowCounting } from "./helpers/row-counting";

const CTX = { currency: "USD", locale: "en" };

/** Rows read by one miss of `owner`'s `intent` answer (the cached unit is deleted first). */
async function missRows(owner: string, intent: ServedIntent): Promise<{ rows: number; items: number }> {
  await caches.default.delete(recommendationCacheKey(owner, intent, CTX.currency, CTX.locale));
  const counting = rowCounting(env.DB);
  const pending: Promise<unknown>[] = [];
  const { answer } = await readAnswer({ ...env, DB: counting.db }, (p) => pending.push(p), owner, intent, { ...CTX, now: Date.now() });
  await Promise.all(pending);
  return { rows: counting.rows(), items: answer.items.length };
}

let category = "";
let owner = "";

/** `count` products like seed product 1 in `category` (equally similar), one variant each at the given USD price. */
async function fill(count: number, price: (i: number) => number): Promise<string[]> {
  const variant = product(1).variants[0]!;
  const out: string[] = [];
  for (let i = 0; i < count; i += 20) {
    const made = await Promise.all(
      Array.from({ length: Math.min(20, count - i) }, (_, k) =>
        insertProduct(env.DB, { base: 1, categoryId: category, variants: [{ ...variant, sku: uid("SKU-C"), prices: { USD: price(i + k), EUR: price(i + k), GBP: price(i + k) } }] }),
      ),
    );
    out.push(...made.map((p) => p.id));
  }
  return out;
}

beforeAll(async () => {
  await seedProducts(env.DB, 60);
  category = uid("cat-cost");
  await env.DB.prepare("INSERT INTO categories (id, slug, name, parent_id, path, depth, position) VALUES (?, ?, 'Cost', NULL, ?, 0, 0)").bind(category, category, `/${category}/`).run();
  const ids = await fill(150, (i) => 1000 + 100 * i);
  owner = ids[75]!;
  // The first miss computes and stores the owner's lists (a one-off for a product no run has reached).
  await missRows(owner, "related");
}, 120_000);

describe("a recommendation miss reads rows in proportion to its answer, not to the catalog", () => {
  it("tripling the category and adding products elsewhere leaves the rows read by related and substitutes misses unchanged", async () => {
    const before = { related: await missRows(owner, "related"), substitutes: await missRows(owner, "substitutes") };
    expect(before.related.items).toBeGreaterThan(10);
    expect(before.substitutes.items).toBe(40);

    // 300 more products in the owner's category, priced far from it, and 120 in other categories.
    await fill(300, (i) => 500_000 + i);
    await seedProducts(env.DB, 120, 5_000);

    const after = { related: await missRows(owner, "related"), substitutes: await missRows(owner, "substitutes") };
    expect(after.related.items).toBe(before.related.items);
    expect(after.substitutes.items).toBe(40);
    // A statement that walked the category (or a currency's prices) would add hundreds of rows here.
    expect(after.related.rows).toBeLessThanOrEqual(before.related.rows + 10);
    expect(after.substitutes.rows).toBeLessThanOrEqual(before.substitutes.rows + 10);
    // And the answer's own size bounds it: about 25 rows per card (product, variants, prices, stock per location,
    // promotions) and 15 per candidate considered, well under one pass over this 630-product catalog.
    expect(after.related.rows).toBeLessThan(41 * 30);
    expect(after.substitutes.rows).toBeLessThan(41 * 40);
  });
});
