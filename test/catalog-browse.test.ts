import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { categories as seedCategories, type SeedProduct } from "../src/seed/generate";
import { originSession, type OriginSession } from "../src/catalog/origin";
import { correctTerms } from "../src/catalog/search-terms";
import { insertProduct, seedProducts, touchProduct } from "./helpers/catalog-fixtures";
import { actualFacets, bruteFacets, matches, pageAll, type Page, type Search } from "./helpers/catalog-brute-force";
import { call, expectProblem } from "./helpers/http";

const SEEDED = 240;
let products: SeedProduct[] = [];

beforeAll(async () => {
  products = await seedProducts(env.DB, SEEDED);
});

describe("facets", () => {
  it("no-query facets (from facet_counts) match a brute-force count over the seed, in each currency", async () => {
    for (const currency of ["USD", "EUR"]) {
      const res = await call(`/v1/search?currency=${currency}`);
      expect(res.status).toBe(200);
      const body = await res.json<Search>();
      expect(body.total).toBe(SEEDED);
      expect(actualFacets(body)).toEqual(bruteFacets(products, currency));
      expect(body.facets.price.every((b) => b.currency === currency)).toBe(true);
    }
  });
});

describe("GET /v1/search", () => {
  it("matches title, brand, description and attributes with prefix terms; totals and facets cover the match set", async () => {
    const active = products;
    const attributeValue = Object.values(products[20]!.attributes)[1]!;
    for (const q of ["nordh", "wireless head", attributeValue, "full-frame", products[33]!.brand.toLowerCase()]) {
      const res = await call(`/v1/search?q=${encodeURIComponent(q)}&limit=100`);
      expect(res.status).toBe(200);
      const body = await res.json<Search>();
      const expected = active.filter((p) => matches(p, q));
      expect(body.items.map((i) => i.id).sort(), q).toEqual(expected.map((p) => p.id).sort().slice(0, 100));
      expect(body.total, q).toBe(expected.length);
      expect(expected.length, q).toBeGreaterThan(0);
    }
  });

  it("facets of a query are counted over its matches (brute force on the seed)", async () => {
    const q = "black";
    const body = await (await call(`/v1/search?q=${q}&category=electronics`)).json<Search>();
    const electronics = seedCategories().filter((c) => c.path.startsWith("/cat-electronics/")).map((c) => c.id);
    const expected = products.filter((p) => electronics.includes(p.categoryId) && matches(p, q));
    const got = actualFacets(body);
    const want = bruteFacets(expected, "USD");
    expect(got.brand).toEqual(want.brand);
    expect(got.price).toEqual(want.price);
    expect(got.attributes).toEqual(want.attributes);
    expect(got.category).toEqual(want.category);
    expect(body.facets_exact).toBe(true);
    expect(body.total).toBe(expected.length);
  });

  it("rejects a query without any searchable term", async () => {
    await expectProblem(await call(`/v1/search?q=${encodeURIComponent('"*()')}`), 400);
  });
});

/** One typo of the given kind at position `at` (deletion, insertion, substitution or transposition of neighbours). */
function typo(word: string, kind: number, at: number): string {
  const i = 1 + (at % (word.length - 2));
  switch (kind % 4) {
    case 0: return word.slice(0, i) + word.slice(i + 1);
    case 1: return word.slice(0, i) + "q" + word.slice(i);
    case 2: return word.slice(0, i) + (word[i] === "x" ? "z" : "x") + word.slice(i + 1);
    default: return word.slice(0, i) + word[i + 1] + word[i] + word.slice(i + 2);
  }
}

/** Whether a catalog term starts with `word` (then no correction is needed, or made). */
async function vocabularyHas(word: string): Promise<boolean> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM products_fts_vocab WHERE term >= ?1 AND term < ?1 || char(1114111)").bind(word).first<{ n: number }>();
  return (row?.n ?? 0) > 0;
}

describe("search forgives one typo in a word of five letters or more (so from four letters typed)", () => {
  it("finds the intended product in the top 5 for every planted misspelling (deletion, insertion, substitution, swap)", async () => {
    const cases: { id: string; q: string; misspelt: string }[] = [];
    for (let k = 0; cases.length < 24; k++) {
      const p = products[(k * 37) % products.length]!;
      // The product's model line and its noun's longest word: a query that names this family of products.
      const model = p.title.split(" ").find((w) => w.toLowerCase() === p.attributes.line)!;
      const words = p.title.toLowerCase().split(/[^a-z0-9]+/).filter((w) => w.length >= 5 && w !== model.toLowerCase());
      const word = [model.toLowerCase(), ...words][k % (words.length + 1)]!;
      if (word.length < 5) continue;
      const misspelt = typo(word, k, k * 3);
      // Swapping two equal letters is no typo; a misspelling that a catalog term starts with is matched as typed.
      if (misspelt === word || (await vocabularyHas(misspelt))) continue;
      const q = [...new Set([p.brand.toLowerCase(), model.toLowerCase(), ...words])].map((w) => (w === word ? misspelt : w)).join(" ");
      cases.push({ id: p.id, q, misspelt });
    }
    let found = 0;
    expect(new Set(cases.map((c) => c.id)).size).toBeGreaterThan(15);
    for (const c of cases) {
      const body = await (await call(`/v1/search?q=${encodeURIComponent(c.q)}&limit=5`)).json<Search>();
      if (body.items.some((i) => i.id === c.id)) found += 1;
      else console.log(`typo miss: ${c.q} (${c.id}) -> ${body.items.map((i) => i.id).join(",")}`);
    }
    expect(found / cases.length).toBe(1);
  });

  it("a word the catalog contains as typed is not corrected: exact matches come first (here, alone)", async () => {
    const exact = await insertProduct(env.DB, { base: 1, title: "Plainly Headphnes Misprint", description: "A misprint." });
    const body = await (await call(`/v1/search?q=headphnes&limit=5`)).json<Search>();
    expect(body.items.map((i) => i.id)).toEqual([exact.id]);
    // A misspelling the catalog does not contain still reaches the real word.
    const other = await (await call(`/v1/search?q=headphonez&limit=5`)).json<Search>();
    expect(other.items).toHaveLength(5);
    expect(other.items.every((i) => /Headphones/.test(i.title))).toBe(true);
  });

  it("a word under four letters and a word two edits away are not corrected", async () => {
    expect((await (await call(`/v1/search?q=bqg&limit=5`)).json<Search>()).items).toEqual([]);
    expect((await (await call(`/v1/search?q=hedphonez&limit=5`)).json<Search>()).items).toEqual([]);
  });
});

describe("GET /v1/products filters and sorts", () => {
  it("category includes subcategories; brand, price range and in_stock filter", async () => {
    const electronics = await (await call("/v1/products?category=electronics&limit=100")).json<Page>();
    const subtree = seedCategories().filter((c) => c.path.startsWith("/cat-electronics/")).map((c) => c.id);
    expect(electronics.items.length).toBeGreaterThan(0);
    expect(electronics.items.every((i) => subtree.includes(i.category_id))).toBe(true);
    expect(new Set(electronics.items.map((i) => i.category_id)).size).toBeGreaterThan(1);

    const brand = products[10]!.brand;
    const byBrand = await (await call(`/v1/products?brand=${encodeURIComponent(brand)}&limit=100`)).json<Page>();
    expect(byBrand.items.length).toBeGreaterThan(0);
    expect(byBrand.items.every((i) => i.brand === brand)).toBe(true);

    const ranged = await (await call("/v1/products?currency=EUR&min_price=5000&max_price=15000&limit=100")).json<Page>();
    expect(ranged.items.length).toBeGreaterThan(0);
    for (const i of ranged.items) {
      expect(i.price!.currency).toBe("EUR");
      expect(i.price!.amount).toBeGreaterThanOrEqual(5000);
      expect(i.price!.amount).toBeLessThanOrEqual(15000);
    }
    const inStock = await pageAll("/v1/products?in_stock=true", 100);
    const rows = await env.DB.prepare("SELECT id FROM products WHERE status = 'active' AND in_stock = 1").all<{ id: string }>();
    expect(inStock.sort()).toEqual(rows.results.map((r) => r.id).sort());
  });

  it("a category page with many brands, a price range and a cursor stays within D1's 100 bound parameters", async () => {
    // electronics is 5 categories × in_stock 1/0 = 10 index ranges, each repeating the brand, price and cursor
    // filters: with one parameter per brand this was 102 parameters (9 brands), refused by the production limit (503).
    const subtree = seedCategories().filter((c) => c.path.startsWith("/cat-electronics/")).map((c) => c.id);
    // Brute force over the database as it is (earlier tests of this file add products).
    const { results: rows } = await env.DB.prepare("SELECT id, brand, category_id, min_prices FROM products WHERE status = 'active'").all<{ id: string; brand: string; category_id: string; min_prices: string }>();
    const usd = (r: (typeof rows)[number]) => (JSON.parse(r.min_prices) as Record<string, number>).USD!;
    const inTree = rows.filter((r) => subtree.includes(r.category_id));
    const real = [...new Set(inTree.map((r) => r.brand))].slice(0, 4);
    const brands = [...real, ...Array.from({ length: 9 }, (_, i) => `No Such Brand ${i}`)];
    const [lo, hi] = [1, 100_000_000];
    const want = inTree
      .filter((r) => real.includes(r.brand) && usd(r) >= lo && usd(r) <= hi)
      .sort((a, b) => usd(a) - usd(b) || (a.id < b.id ? -1 : 1))
      .map((r) => r.id);
    expect(want.length).toBeGreaterThan(4);
    const got = await pageAll(`/v1/products?category=electronics&brand=${encodeURIComponent(brands.join(","))}&min_price=${lo}&max_price=${hi}&sort=price_asc`, 2);
    expect(got).toEqual(want);
  });

  it("sorts by price ascending/descending in the requested currency and by newest", async () => {
    const asc = await (await call("/v1/products?sort=price_asc&currency=GBP&limit=50")).json<Page>();
    const amounts = asc.items.map((i) => i.price!.amount);
    expect(amounts).toEqual([...amounts].sort((a, b) => a - b));
    const desc = await (await call("/v1/products?sort=price_desc&currency=GBP&limit=50")).json<Page>();
    const d = desc.items.map((i) => i.price!.amount);
    expect(d).toEqual([...d].sort((a, b) => b - a));
    expect(d[0]).toBeGreaterThanOrEqual(amounts[amounts.length - 1]!);
    const newest = await (await call("/v1/products?sort=newest&limit=50")).json<Page>();
    const times = newest.items.map((i) => Date.parse(i.created_at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  it("localises listing titles", async () => {
    const de = await (await call("/v1/products?sort=newest&limit=5", { headers: { "accept-language": "de" } })).json<Page>();
    for (const item of de.items) {
      const seed = products.find((p) => p.id === item.id);
      if (seed) expect(item.title).toBe(seed.translations.de!.title);
    }
  });

  it("serves a repeated listing from the edge, whatever the parameter order or unknown parameters", async () => {
    const first = await call("/v1/products?sort=price_asc&limit=7&currency=USD&category=cookware");
    expect(first.headers.get("x-cache-tier")).toBe("d1");
    expect(first.headers.get("cache-tag")).toContain("listings");
    await vi.waitFor(async () => {
      const res = await call("/v1/products?category=cookware&utm_campaign=x&limit=7&currency=usd&sort=price_asc");
      expect(res.headers.get("x-cache-tier")).toBe("edge");
    });
    const etag = first.headers.get("etag")!;
    const again = await call("/v1/products?sort=price_asc&limit=7&currency=USD&category=cookware", { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
  });
});

describe("bad parameters get 400 problem+json", () => {
  it.each([
    ["negative limit", "/v1/products?limit=-1"],
    ["limit of 10,000", "/v1/products?limit=10000"],
    ["limit of zero", "/v1/products?limit=0"],
    ["non-numeric limit", "/v1/products?limit=ten"],
    ["malformed cursor", "/v1/products?cursor=not-a-cursor"],
    ["tampered cursor", `/v1/products?cursor=${btoa(JSON.stringify({ v: 1, s: "relevance", f: "x", k: ["a", 1] }))}`],
    ["min_price > max_price", "/v1/products?min_price=5000&max_price=100"],
    ["negative price", "/v1/products?min_price=-5"],
    ["unknown sort", "/v1/products?sort=cheapest"],
    ["unknown in_stock value", "/v1/products?in_stock=maybe"],
    ["unsupported currency", "/v1/products?currency=JPY"],
    ["search: unknown sort", "/v1/search?q=x&sort=popular"],
    ["search: limit too large", "/v1/search?q=x&limit=101"],
  ])("%s", async (_name, path) => {
    const problem = await expectProblem(await call(path), 400);
    expect(problem.detail).toBeTruthy();
  });
});

describe("categories", () => {
  it("returns the localised tree with rolled-up product counts", async () => {
    const res = await call("/v1/categories");
    expect(res.status).toBe(200);
    const { items } = await res.json<{ items: { id: string; name: string; product_count: number; children: { id: string; product_count: number }[] }[] }>();
    expect(items.map((c) => c.id)).toContain("cat-electronics");
    for (const root of items) expect(root.product_count).toBe(root.children.reduce((s, c) => s + c.product_count, 0));
    const de = await (await call("/v1/categories?locale=de")).json<{ items: { id: string; name: string }[] }>();
    expect(de.items.find((c) => c.id === "cat-electronics")!.name).toBe("Elektronik");
  });

  it("returns one category with breadcrumbs, by slug; unknown is 404", async () => {
    const res = await call("/v1/categories/headphones?locale=fr");
    expect(res.status).toBe(200);
    const body = await res.json<{ id: string; name: string; breadcrumbs: { slug: string; name: string }[] }>();
    expect(body.id).toBe("cat-headphones");
    expect(body.name).toBe("Casques");
    expect(body.breadcrumbs.map((b) => b.slug)).toEqual(["electronics", "headphones"]);
    await expectProblem(await call("/v1/categories/no-such-category"), 404);
  });
});

describe("keyset pagination", () => {
  it("pages through the whole catalog exactly once while products are concurrently updated", async () => {
    const all = await env.DB.prepare("SELECT id FROM products WHERE status = 'active'").all<{ id: string }>();
    const expected = all.results.map((r) => r.id).sort();
    let n = 0;
    const writer = async () => {
      // Each page races a burst of writes: titles, prices, stock flags, versions.
      const ids = expected.slice(n * 5, n * 5 + 12);
      n += 1;
      await Promise.all(
        ids.map((id, i) =>
          touchProduct(env.DB, id, { title: `Edited ${n}-${i}`, in_stock: i % 2, min_prices: { USD: 100 + ((n * 37 + i * 101) % 90000), EUR: 999, GBP: 888 } }),
        ),
      );
    };
    for (const path of ["/v1/products", "/v1/products?sort=newest", "/v1/products?in_stock=false"]) {
      const seen = await pageAll(path, 13, () => writer());
      expect(seen.length, path).toBe(expected.length);
      expect(new Set(seen).size, path).toBe(seen.length);
      expect([...seen].sort(), path).toEqual(expected);
    }
  });

  it("a cursor only continues the query it came from", async () => {
    const page = await (await call("/v1/products?sort=price_asc&limit=3")).json<Page>();
    expect(page.next_cursor).toBeTruthy();
    const next = await (await call(`/v1/products?sort=price_asc&limit=3&cursor=${page.next_cursor}`)).json<Page>();
    expect(next.items.map((i) => i.id)).not.toEqual(page.items.map((i) => i.id));
    await expectProblem(await call(`/v1/products?sort=newest&limit=3&cursor=${page.next_cursor}`), 400);
    await expectProblem(await call(`/v1/products?sort=price_asc&brand=Kestrel&limit=3&cursor=${page.next_cursor}`), 400);
  });
});

describe("writes keep search and facets exact", () => {
  it("facet_counts equals a GROUP BY over the tables after inserts, edits, archiving and attribute changes", async () => {
    const db = env.DB;
    await touchProduct(db, "p-000003", { status: "archived" });
    await touchProduct(db, "p-000004", { brand: "Brand New Brand", min_prices: { USD: 1, EUR: 99999 } });
    await db.prepare("DELETE FROM product_attributes WHERE product_id = 'p-000005' AND name = 'line'").run();
    await db.prepare("UPDATE product_attributes SET value = 'plaid' WHERE product_id = 'p-000006' AND name = 'color'").run();
    await touchProduct(db, "p-000003", { status: "active" });
    await touchProduct(db, "p-000007", { status: "draft" });
    await db.prepare("DELETE FROM products WHERE id = 'p-000008'").run();

    const materialised = await db.prepare("SELECT facet, value, count FROM facet_counts WHERE count != 0 ORDER BY 1, 2").all<{ facet: string; value: string; count: number }>();
    const brute = await db
      .prepare(
        `SELECT facet, value, count(*) AS count FROM (
           SELECT 'brand' AS facet, brand AS value FROM products WHERE status = 'active'
           UNION ALL SELECT 'category', category_id FROM products WHERE status = 'active'
           UNION ALL SELECT 'attr:' || a.name, a.value FROM product_attributes a JOIN products p ON p.id = a.product_id WHERE p.status = 'active'
           UNION ALL SELECT 'price:' || j.key, CASE WHEN j.value < 2500 THEN '0-2500' WHEN j.value < 5000 THEN '2500-5000' WHEN j.value < 10000 THEN '5000-10000'
             WHEN j.value < 25000 THEN '10000-25000' WHEN j.value < 50000 THEN '25000-50000' ELSE '50000+' END
             FROM products p, json_each(p.min_prices) j WHERE p.status = 'active'
         ) GROUP BY 1, 2 ORDER BY 1, 2`,
      )
      .all<{ facet: string; value: string; count: number }>();
    expect(materialised.results).toEqual(brute.results);
    expect(materialised.results.find((r) => r.facet === "brand" && r.value === "Brand New Brand")?.count).toBe(1);
    // Put the seed back for the other tests' brute-force expectations.
    await touchProduct(db, "p-000007", { status: "active" });
  });

  it("ranks a title hit above a description-only hit", async () => {
    await insertProduct(env.DB, { title: "Plain Lamp", description: "Goes well with any zyzzyva decor." });
    const inTitle = await insertProduct(env.DB, { title: "Zyzzyva Lamp", description: "A lamp." });
    const body = await (await call("/v1/search?q=zyzz")).json<Search>();
    expect(body.total).toBe(2);
    expect(body.items[0]!.id).toBe(inTitle.id);
  });

  it("a search total counts active matches only, with or without other filters, drafts and archived products left out", async () => {
    const made = [];
    for (let i = 0; i < 6; i++) made.push(await insertProduct(env.DB, { title: `Quokkafrond Lamp ${i}`, description: "A lamp." }));
    await touchProduct(env.DB, made[0]!.id, { status: "archived" });
    await touchProduct(env.DB, made[1]!.id, { status: "draft" });
    const only = await (await call("/v1/search?q=quokkafrond")).json<Search>();
    expect(only.total).toBe(4);
    expect(only.total_exact).toBe(true);
    expect(only.items.map((i) => i.id).sort()).toEqual(made.slice(2).map((p) => p.id).sort());
    // The same query with a filter (counted through the join) and sorted by price (only products with a price): same answer.
    const filtered = await (await call(`/v1/search?q=quokkafrond&brand=${encodeURIComponent(made[2]!.brand)}`)).json<Search>();
    expect(filtered.total).toBe(4);
    const byPrice = await (await call("/v1/search?q=quokkafrond&sort=price_asc")).json<Search>();
    expect(byPrice.total).toBe(4);
    // A product that stops matching is no longer counted, and an inactive one that matches is still left out
    // (a new URL: the answers above may be cached).
    await touchProduct(env.DB, made[0]!.id, { status: "active", title: "Plain Lamp" });
    expect((await (await call("/v1/search?q=quokkafrond&limit=7")).json<Search>()).total).toBe(4);
  });

  it("a word's catalog terms are read once per 30 seconds: a term added meanwhile is found by prefix once the entry expires", async () => {
    let reads = 0;
    const origin = originSession(env.DB);
    const counting: OriginSession = { ...origin, batch: ((queries: never) => ((reads += 1), origin.batch(queries))) as OriginSession["batch"] };
    const word = `vocab${Date.now().toString(36)}`;
    await insertProduct(env.DB, { title: `Lamp ${word}a`, description: "A lamp." });
    const t0 = Date.now() + 3_600_000;
    expect(await correctTerms(counting, word, { now: t0 })).toEqual([{ term: word, corrections: [`${word}a`] }]);
    expect(reads).toBe(1);
    await insertProduct(env.DB, { title: `Lamp ${word}b`, description: "A lamp." });
    expect(await correctTerms(counting, word, { now: t0 + 29_000 })).toEqual([{ term: word, corrections: [`${word}a`] }]);
    expect(reads).toBe(1);
    // Another scope (another catalog partition's vocabulary) has its own entry.
    expect(await correctTerms(counting, word, { scope: "1", now: t0 + 29_000 })).toEqual([{ term: word, corrections: [`${word}a`, `${word}b`] }]);
    expect(reads).toBe(2);
    expect(await correctTerms(counting, word, { now: t0 + 31_000 })).toEqual([{ term: word, corrections: [`${word}a`, `${word}b`] }]);
    expect(reads).toBe(3);
  });
});

