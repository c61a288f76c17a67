import { createExecutionContext, createMessageBatch, env, getQueueResult } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { handleQueue } from "../src/events/queue";
import { availabilityFlipStatement } from "../src/feeds/change-seq";
import { insertProduct, type FixtureProduct } from "./helpers/catalog-fixtures";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { googleFeedErrors } from "./helpers/google-merchant";
import { admin, call, expectProblem, json, uid } from "./helpers/http";

type NewAffiliate = { affiliate: { id: string; tracking_id: string; version: number }; key: { id: string; key: string; prefix: string } };
type JsonItem = {
  id: string; title: string; link: string; click_url: string; image: string | null;
  price: { amount: number; currency: string; decimal: string; formatted: string } | null;
  availability: { status: string; available: number };
  variants: { sku: string; price: { amount: number } | null; availability: { status: string; available: number } }[];
};
type JsonPage = { format: string; mode: string; currency: string; items: JsonItem[]; removed: { id: string; removed: true; status: string }[]; next_cursor: string | null; next_since: string; has_more: boolean };

async function createAffiliate(overrides: Record<string, unknown> = {}): Promise<NewAffiliate> {
  const tracking = uid("t").toLowerCase().replace(/[^a-z0-9-]/g, "");
  const res = await json("POST", "/admin/affiliates", { name: "Test publisher", tracking_id: tracking, campaign: "spring", allowed_origins: ["https://publisher.example"], ...overrides }, admin());
  expect(res.status, await res.clone().text()).toBe(201);
  return res.json<NewAffiliate>();
}

const bearer = (key: string, headers: Record<string, string> = {}) => ({ authorization: `Bearer ${key}`, ...headers });

async function feed(path: string, key: string, headers: Record<string, string> = {}): Promise<Response> {
  return call(path, { headers: bearer(key, headers) });
}

async function page(path: string, key: string, headers: Record<string, string> = {}): Promise<JsonPage> {
  const res = await feed(path, key, headers);
  expect(res.status, await res.clone().text()).toBe(200);
  return res.json<JsonPage>();
}

/** A catalog write as product-writes.ts makes it: version bump and the next global change_seq. */
async function write(id: string, fields: Record<string, unknown> = {}): Promise<void> {
  const sets = Object.keys(fields).map((k) => `${k} = ?`);
  await env.DB.prepare(
    `UPDATE products SET ${[...sets, "version = version + 1", "updated_at = ?", "change_seq = (SELECT coalesce(max(change_seq), 0) + 1 FROM products)"].join(", ")} WHERE id = ?`,
  )
    .bind(...Object.values(fields), Date.now(), id)
    .run();
}

async function setAvailable(sku: string, available: number, location = "loc-us-east"): Promise<void> {
  await env.DB.prepare("UPDATE availability SET available = ?, on_hand = ?, status = ?, updated_at = ? WHERE sku = ? AND location_id = ?")
    .bind(available, available, available > 5 ? "in_stock" : available > 0 ? "low_stock" : "out_of_stock", Date.now(), sku, location)
    .run();
}

/** Waits for the start of the next wall-clock second. */
async function nextSecond(): Promise<void> {
  await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));
}

/** Reads every page of a full listing or a delta, following next_cursor / next_since while has_more. */
async function drain(path: string, key: string, mode: "cursor" | "since"): Promise<{ pages: JsonPage[]; last: JsonPage }> {
  const pages: JsonPage[] = [];
  let url = path;
  for (let i = 0; i < 100; i++) {
    const p = await page(url, key);
    pages.push(p);
    if (!p.has_more) return { pages, last: p };
    const u = new URL(url, "http://x");
    u.searchParams.delete("cursor");
    u.searchParams.delete("since");
    u.searchParams.set(mode, mode === "cursor" ? p.next_cursor! : p.next_since);
    url = u.pathname + u.search;
  }
  throw new Error("too many pages");
}

describe("affiliate accounts and keys", () => {
  it("creating an affiliate needs the admin token and returns the key once; only its hash is stored", async () => {
    await expectProblem(await json("POST", "/admin/affiliates", { name: "x", tracking_id: "nope" }), 401);
    const created = await createAffiliate();
    expect(created.key.key).toMatch(/^aff_[A-Za-z0-9_-]{40,}$/);
    const stored = await env.DB.prepare("SELECT key_hash, prefix FROM api_keys WHERE id = ?").bind(created.key.id).first<{ key_hash: string; prefix: string }>();
    expect(stored!.key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored!.key_hash).not.toContain(created.key.key);
    const got = await call(`/admin/affiliates/${created.affiliate.id}`, { headers: admin() });
    const text = await got.text();
    expect(got.status).toBe(200);
    expect(text).not.toContain(created.key.key);
    expect(text).not.toContain(stored!.key_hash);
    const body = JSON.parse(text) as { keys: { id: string; prefix: string; state: string }[] };
    expect(body.keys).toEqual([expect.objectContaining({ id: created.key.id, prefix: created.key.key.slice(0, 8), state: "active" })]);
  });

  it("rejects a taken tracking id (409) and malformed origins (400)", async () => {
    const first = await createAffiliate();
    const dup = await json("POST", "/admin/affiliates", { name: "dup", tracking_id: first.affiliate.tracking_id, id: uid("aff").toLowerCase() }, admin());
    await expectProblem(dup, 409);
    const bad = await json("POST", "/admin/affiliates", { name: "x", tracking_id: "okid", allowed_origins: ["https://a.example/path"] }, admin());
    const problem = await expectProblem(bad, 400);
    expect(JSON.stringify(problem.errors)).toContain("allowed_origins");
  });

  it("missing, unknown and non-affiliate keys get 401/403; a revoked key gets 401 at once", async () => {
    await expectProblem(await call("/v1/feeds/products"), 401);
    await expectProblem(await feed("/v1/feeds/products", "aff_not-a-real-key"), 401);
    await env.DB.prepare("INSERT INTO api_keys (id, kind, key_hash, prefix) VALUES ('key-sf-test', 'storefront', ?, 'sf-test')")
      .bind([...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("sf-test-key")))].map((b) => b.toString(16).padStart(2, "0")).join(""))
      .run();
    await expectProblem(await feed("/v1/feeds/products", "sf-test-key"), 403);

    const { affiliate, key } = await createAffiliate();
    expect((await feed("/v1/feeds/products", key.key)).status).toBe(200);
    const revoke = await call(`/admin/affiliates/${affiliate.id}/keys/${key.id}`, { method: "DELETE", headers: admin() });
    expect(revoke.status).toBe(204);
    await expectProblem(await feed("/v1/feeds/products", key.key), 401);
    await expectProblem(await call(`/admin/affiliates/${affiliate.id}/keys/key-unknown`, { method: "DELETE", headers: admin() }), 404);
  });

  it("rotation issues a new key and keeps the old one valid until its grace period ends", async () => {
    const { affiliate, key: oldKey } = await createAffiliate();
    const res = await json("POST", `/admin/affiliates/${affiliate.id}/keys`, { grace_seconds: 3600 }, admin());
    expect(res.status).toBe(201);
    const rotated = await res.json<{ key: { id: string; key: string }; rotated: { id: string; expires_at: number }[] }>();
    expect(rotated.rotated.map((r) => r.id)).toEqual([oldKey.id]);
    expect(rotated.rotated[0]!.expires_at).toBeGreaterThan(Date.now() + 3500_000);
    // Both work during the grace period.
    expect((await feed("/v1/feeds/products", oldKey.key)).status).toBe(200);
    expect((await feed("/v1/feeds/products", rotated.key.key)).status).toBe(200);
    const listed = await (await call(`/admin/affiliates/${affiliate.id}`, { headers: admin() })).json<{ keys: { id: string; state: string }[] }>();
    expect(Object.fromEntries(listed.keys.map((k) => [k.id, k.state]))).toEqual({ [oldKey.id]: "expiring", [rotated.key.id]: "active" });
    // When the grace period is over the old key is refused; the new one is not.
    await env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?").bind(Date.now() - 1, oldKey.id).run();
    await expectProblem(await feed("/v1/feeds/products", oldKey.key), 401);
    expect((await feed("/v1/feeds/products", rotated.key.key)).status).toBe(200);
    // A second rotation with no grace expires the previous key immediately and never revives the expired one.
    const again = await (await json("POST", `/admin/affiliates/${affiliate.id}/keys`, { grace_seconds: 0 }, admin())).json<{ key: { key: string }; rotated: { id: string }[] }>();
    expect(again.rotated.map((r) => r.id)).toEqual([rotated.key.id]);
    await expectProblem(await feed("/v1/feeds/products", rotated.key.key), 401);
    await expectProblem(await feed("/v1/feeds/products", oldKey.key), 401);
    expect((await feed("/v1/feeds/products", again.key.key)).status).toBe(200);
  });

  it("?key= only counts from an allowed Origin/Referer, and CORS is narrowed to that origin", async () => {
    const { key } = await createAffiliate({ allowed_origins: ["https://publisher.example", "http://localhost:8787"] });
    const url = `/v1/feeds/products?key=${encodeURIComponent(key.key)}`;
    const fromOrigin = await call(url, { headers: { origin: "https://publisher.example" } });
    expect(fromOrigin.status).toBe(200);
    expect(fromOrigin.headers.get("access-control-allow-origin")).toBe("https://publisher.example");
    expect(fromOrigin.headers.get("vary")).toContain("Origin");
    const fromReferer = await call(url, { headers: { referer: "http://localhost:8787/embed/demo?x=1" } });
    expect(fromReferer.status).toBe(200);
    await expectProblem(await call(url, { headers: { origin: "https://thief.example" } }), 403);
    await expectProblem(await call(url), 403);
    await expectProblem(await call(`/v1/feeds/products?key=wrong`, { headers: { origin: "https://publisher.example" } }), 401);
    // A bearer key works server-side, but a browser on another origin may not read the answer.
    const elsewhere = await feed("/v1/feeds/products", key.key, { origin: "https://thief.example" });
    expect(elsewhere.status).toBe(200);
    expect(elsewhere.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("suspending an affiliate (PATCH with If-Match) shuts its keys out", async () => {
    const { affiliate, key } = await createAffiliate();
    await expectProblem(await json("PATCH", `/admin/affiliates/${affiliate.id}`, { status: "suspended" }, admin({ "if-match": '"99"' })), 412);
    const ok = await json("PATCH", `/admin/affiliates/${affiliate.id}`, { status: "suspended" }, admin({ "if-match": `"${affiliate.version}"` }));
    expect(ok.status).toBe(200);
    await expectProblem(await feed("/v1/feeds/products", key.key), 401);
  });
});

describe("feed contents, scope and formats", () => {
  const brand = `Feedbrand ${Date.now()}`;
  let headphones: FixtureProduct;
  let camera: FixtureProduct;
  let key: string;
  let tracking: string;

  beforeAll(async () => {
    // Seed product 1 is in cat-headphones (under cat-electronics); product 3's family is in another leaf.
    headphones = await insertProduct(env.DB, { base: 1, brand, stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-us-east", onHand: 12 })) });
    camera = await insertProduct(env.DB, { base: 6, brand, stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-eu-central", onHand: 0 })) });
    const created = await createAffiliate({ scope: { brands: [brand] } });
    key = created.key.key;
    tracking = created.affiliate.tracking_id;
  });

  it("json: tracked links, live availability from the projection, prices in the asked currency", async () => {
    const body = await page("/v1/feeds/products?currency=EUR&locale=de", key);
    expect(body.items.map((i) => i.id).sort()).toEqual([headphones.id, camera.id].sort());
    const item = body.items.find((i) => i.id === headphones.id)!;
    const url = new URL(item.link);
    expect(`${url.origin}${url.pathname}`).toBe(`https://shop.edgeshelf.dev/p/${headphones.slug}`);
    expect(url.searchParams.get("aff")).toBe(tracking);
    expect(url.searchParams.get("utm_source")).toBe(tracking);
    expect(url.searchParams.get("utm_medium")).toBe("affiliate");
    expect(url.searchParams.get("utm_campaign")).toBe("spring");
    expect(item.click_url).toBe(`http://edgeshelf.test/r/${tracking}/${headphones.id}`);
    expect(item.title).toBe(headphones.translations.de!.title);
    const cheapest = Math.min(...headphones.variants.map((v) => v.prices.EUR!));
    expect(item.price).toMatchObject({ amount: cheapest, currency: "EUR", decimal: (cheapest / 100).toFixed(2) });
    expect(item.price!.formatted).toContain("€");
    expect(item.availability).toEqual({ status: "in_stock", available: 12 * headphones.variants.length });
    expect(body.items.find((i) => i.id === camera.id)!.availability.status).toBe("out_of_stock");

    // Live: a projection change shows on the next read with no catalog write.
    await setAvailable(headphones.variants[0]!.sku, 0);
    const after = await page("/v1/feeds/products?currency=EUR", key);
    const variant = after.items.find((i) => i.id === headphones.id)!.variants.find((v) => v.sku === headphones.variants[0]!.sku)!;
    expect(variant.availability).toEqual({ status: "out_of_stock", available: 0 });
    await setAvailable(headphones.variants[0]!.sku, 12);
  });

  it("visitor currency comes from Accept-Language when not given; unsupported currency and bad limits are 400", async () => {
    expect((await page("/v1/feeds/products", key, { "accept-language": "en-GB,en;q=0.8" })).currency).toBe("GBP");
    expect((await page("/v1/feeds/products", key, { "accept-language": "de-DE" })).currency).toBe("EUR");
    expect((await page("/v1/feeds/products", key)).currency).toBe("USD");
    await expectProblem(await feed("/v1/feeds/products?currency=JPY", key), 400);
    await expectProblem(await feed("/v1/feeds/products?limit=1001", key), 400);
    await expectProblem(await feed("/v1/feeds/products?limit=0", key), 400);
    await expectProblem(await feed("/v1/feeds/products?format=csv", key), 400);
    await expectProblem(await feed("/v1/feeds/products?since=garbage", key), 400);
    const tok = (await page("/v1/feeds/products", key)).next_since;
    await expectProblem(await feed(`/v1/feeds/products?since=${tok}&cursor=${tok}`, key), 400);
  });

  it("google: one valid Merchant Center item per variant, grouped by product, availability mapped", async () => {
    const res = await feed("/v1/feeds/products?format=google&currency=EUR", key);
    expect(res.status).toBe(200);
    const body = await res.json<{ items: Record<string, unknown>[] }>();
    expect(googleFeedErrors(body.items)).toEqual([]);
    const skus = [...headphones.variants, ...camera.variants].map((v) => v.sku).sort();
    expect(body.items.map((i) => i.id).sort()).toEqual(skus);
    const first = body.items.find((i) => i.id === headphones.variants[0]!.sku)!;
    expect(first.price).toBe(`${(headphones.variants[0]!.prices.EUR! / 100).toFixed(2)} EUR`);
    expect(first.brand).toBe(brand);
    expect(first.condition).toBe("new");
    expect(first.availability).toBe("in_stock");
    expect(new URL(first.link as string).searchParams.get("aff")).toBe(tracking);
    if (headphones.variants.length > 1) expect(first.item_group_id).toBe(headphones.id);
    for (const v of camera.variants) expect(body.items.find((i) => i.id === v.sku)!.availability).toBe("out_of_stock");
  });

  it("google: preorder/backorder products, invalid GTINs and long titles still produce valid items", async () => {
    const odd = await insertProduct(env.DB, {
      base: 11,
      brand,
      title: "X".repeat(400),
      attributes: { availability: "backorder" },
      variants: [{ sku: `SKU-odd-${Date.now()}`, title: "", options: {}, gtin: "4000000000123", mpn: "", position: 0, prices: { USD: 1299, EUR: 1199 } }],
      stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-us-east", onHand: 0 })),
    });
    const body = await (await feed(`/v1/feeds/products/${odd.id}?format=google&currency=EUR`, key)).json<{ items: Record<string, unknown>[] }>();
    expect(googleFeedErrors(body.items)).toEqual([]);
    expect(body.items[0]).toMatchObject({ availability: "backorder", price: "11.99 EUR", identifier_exists: "no" });
    expect(body.items[0]!.gtin).toBeUndefined();
    expect((body.items[0]!.title as string).length).toBeLessThanOrEqual(150);
  });

  it("jsonfeed: a JSON Feed 1.1 document with tracked item urls", async () => {
    const res = await feed("/v1/feeds/products?format=jsonfeed&limit=1", key);
    expect(res.headers.get("content-type")).toContain("application/feed+json");
    const body = await res.json<{ version: string; title: string; items: { id: string; url: string; title: string; content_text: string; _edgeshelf: { price: unknown } }[]; next_url?: string }>();
    expect(body.version).toBe("https://jsonfeed.org/version/1.1");
    expect(body.items).toHaveLength(1);
    expect(body.items[0]!.url).toContain(`aff=${tracking}`);
    expect(body.items[0]!._edgeshelf.price).toBeTruthy();
    expect(body.next_url).toContain("cursor=");
    expect(body.next_url).not.toContain("key=");
  });

  it("scope: categories include subcategories, SKU allow-lists hide other variants, out-of-scope items are 404", async () => {
    const byCategory = await createAffiliate({ scope: { categories: ["cat-electronics"], brands: [brand] } });
    const items = (await page("/v1/feeds/products", byCategory.key.key)).items.map((i) => i.id);
    expect(items).toContain(headphones.id); // cat-headphones is under cat-electronics
    const leaf = headphones.categoryId;
    const otherLeaf = await createAffiliate({ scope: { categories: ["cat-bedding"], brands: [brand] } });
    expect(leaf).not.toBe("cat-bedding");
    expect((await page("/v1/feeds/products", otherLeaf.key.key)).items.map((i) => i.id)).not.toContain(headphones.id);
    await expectProblem(await feed(`/v1/feeds/products/${headphones.id}`, otherLeaf.key.key), 404);

    const sku = headphones.variants[0]!.sku;
    const bySku = await createAffiliate({ scope: { skus: [sku] } });
    const list = await page("/v1/feeds/products", bySku.key.key);
    expect(list.items.map((i) => i.id)).toEqual([headphones.id]);
    expect(list.items[0]!.variants.map((v) => v.sku)).toEqual([sku]);
    await expectProblem(await feed(`/v1/feeds/products/${camera.id}`, bySku.key.key), 404);
    await expectProblem(await feed(`/v1/feeds/products/p-does-not-exist`, bySku.key.key), 404);
    // The grid filter narrows within the scope, never widens it.
    expect((await page(`/v1/feeds/products?category=${camera.categoryId}`, bySku.key.key)).items).toEqual([]);
    expect((await page(`/v1/feeds/products?category=${headphones.categoryId}`, key)).items.map((i) => i.id)).toEqual([headphones.id]);
  });

  it("responses carry ETag, Last-Modified and poller Cache-Control, and answer 304 until something changes", async () => {
    const res = await feed("/v1/feeds/products", key);
    const etag = res.headers.get("etag")!;
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(res.headers.get("last-modified")).toBeTruthy();
    expect(res.headers.get("cache-control")).toMatch(/private, max-age=\d+/);
    const again = await feed("/v1/feeds/products", key, { "if-none-match": etag });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
    expect(again.headers.get("etag")).toBe(etag);
    // A different rendering (currency) is a different ETag.
    expect((await feed("/v1/feeds/products?currency=GBP", key, { "if-none-match": etag })).status).toBe(200);
    // A stock change alters the body and so the ETag.
    await setAvailable(headphones.variants[0]!.sku, 3);
    const changed = await feed("/v1/feeds/products", key, { "if-none-match": etag });
    expect(changed.status).toBe(200);
    expect(changed.headers.get("etag")).not.toBe(etag);

    // Last-Modified validates once its second is over (see the same-second test below).
    await nextSecond();
    const one = await feed(`/v1/feeds/products/${headphones.id}`, key);
    const lastModified = one.headers.get("last-modified")!;
    expect((await feed(`/v1/feeds/products/${headphones.id}`, key, { "if-none-match": one.headers.get("etag")! })).status).toBe(304);
    expect((await feed(`/v1/feeds/products/${headphones.id}`, key, { "if-modified-since": lastModified })).status).toBe(304);
    expect((await feed(`/v1/feeds/products/${headphones.id}`, key, { "if-modified-since": new Date(Date.parse(lastModified) - 10_000).toUTCString() })).status).toBe(200);
  });

  it("a stock change in the same second as the Last-Modified a poller holds is not answered 304 on If-Modified-Since", async () => {
    const sku = headphones.variants[0]!.sku;
    // Both changes and the poll between them inside one wall-clock second (HTTP dates have no finer unit).
    await nextSecond();
    await setAvailable(sku, 4);
    const polled = await feed(`/v1/feeds/products/${headphones.id}`, key);
    await setAvailable(sku, 0);
    const sameSecond = Math.floor(Date.now() / 1000);
    const ims = polled.headers.get("last-modified")!;
    const next = await feed(`/v1/feeds/products/${headphones.id}`, key, { "if-modified-since": ims });
    expect(Math.floor(Date.now() / 1000), "the steps above ran past one second: no same-second case").toBe(sameSecond);
    expect(next.status).toBe(200);
    expect(await next.text()).not.toBe(await polled.text());
    // Once that second is over, the date sent validates: the unchanged item is a 304.
    await nextSecond();
    const settled = await feed(`/v1/feeds/products/${headphones.id}`, key);
    expect((await feed(`/v1/feeds/products/${headphones.id}`, key, { "if-modified-since": settled.headers.get("last-modified")! })).status).toBe(304);
    await setAvailable(sku, 12);
  });
});

describe("delta sync", () => {
  it("full listing pages once each; later changes and removals appear exactly once in the delta", async () => {
    const brand = `Deltabrand ${Date.now()}`;
    const products: FixtureProduct[] = [];
    for (let i = 0; i < 5; i++) {
      const p = await insertProduct(env.DB, { base: 20 + i, brand });
      await write(p.id);
      products.push(p);
    }
    const { key: k } = await createAffiliate({ scope: { brands: [brand] } });
    const key = k.key;
    const full = await drain("/v1/feeds/products?limit=2", key, "cursor");
    expect(full.pages).toHaveLength(3);
    const listed = full.pages.flatMap((p) => p.items.map((i) => i.id));
    expect(listed.sort()).toEqual(products.map((p) => p.id).sort());
    const since = full.last.next_since;
    // Nothing changed: the delta is empty and hands back the same position.
    const empty = await page(`/v1/feeds/products?since=${since}`, key);
    expect(empty).toMatchObject({ mode: "delta", items: [], removed: [], has_more: false });

    const [a, b, c, d] = products as [FixtureProduct, FixtureProduct, FixtureProduct, FixtureProduct];
    await write(a.id, { title: "First edit" });
    await write(b.id, { status: "archived" });
    await write(a.id, { title: "Second edit" });
    await write(c.id);
    const e = await insertProduct(env.DB, { base: 30, brand });
    await write(e.id);
    await write(d.id, { brand: "Some other brand" }); // leaves the scope: the affiliate must drop it

    const delta = await drain(`/v1/feeds/products?since=${since}&limit=1`, key, "since");
    const items = delta.pages.flatMap((p) => p.items);
    const removed = delta.pages.flatMap((p) => p.removed);
    expect(items.map((i) => i.id)).toEqual([a.id, c.id, e.id]); // change order, each once, a in its latest state
    expect(items[0]!.title).toBe("Second edit");
    expect(removed.map((r) => r.id)).toEqual([b.id, d.id]);
    expect(removed).toEqual([
      expect.objectContaining({ id: b.id, removed: true, status: "archived" }),
      expect.objectContaining({ id: d.id, removed: true, status: "out_of_scope" }),
    ]);
    // Syncing again from the token the delta ended with: nothing new.
    const next = await page(`/v1/feeds/products?since=${delta.last.next_since}`, key);
    expect(next.items).toEqual([]);
    expect(next.removed).toEqual([]);

    // Google tombstones name the item ids (SKUs) to delete.
    const g = await (await feed(`/v1/feeds/products?format=google&since=${since}`, key)).json<{ removed: { id: string; item_ids: string[] }[] }>();
    expect(g.removed[0]).toEqual(expect.objectContaining({ id: b.id, item_ids: b.variants.map((v) => v.sku) }));
  });

  it("deltas never name drafts, archived products outside the scope, or SKUs outside the allow-list", async () => {
    const brand = `Leak ${Date.now()}`;
    const mine = await insertProduct(env.DB, { base: 60, brand });
    const other = await insertProduct(env.DB, { base: 61, brand: `${brand} other` });
    const unreleased = await insertProduct(env.DB, { base: 62, brand });
    const allowedSku = mine.variants[0]!.sku;
    const { key: byBrand } = await createAffiliate({ scope: { brands: [brand] } });
    const { key: bySku } = await createAffiliate({ scope: { skus: [allowedSku] } });
    const sinces = await Promise.all([byBrand.key, bySku.key].map(async (k) => (await page("/v1/feeds/products", k)).next_since));
    await write(unreleased.id, { status: "draft" });
    await write(other.id, { status: "archived" });
    await write(mine.id, { status: "archived" });
    const [brandDelta, skuDelta] = await Promise.all(
      [byBrand.key, bySku.key].map((k, i) => page(`/v1/feeds/products?since=${sinces[i]}`, k)),
    );
    expect(brandDelta.items).toEqual([]);
    expect(brandDelta.removed).toEqual([expect.objectContaining({ id: mine.id, status: "archived" })]);
    expect(skuDelta.removed).toEqual([expect.objectContaining({ id: mine.id, status: "archived" })]);
    // Google tombstones list item ids (SKUs): only the allowed one.
    const google = await (await feed(`/v1/feeds/products?format=google&since=${sinces[1]}`, bySku.key)).json<{ removed: { id: string; item_ids: string[] }[] }>();
    expect(google.removed).toEqual([expect.objectContaining({ id: mine.id, item_ids: [allowedSku] })]);
    const text = JSON.stringify([brandDelta, skuDelta, google]);
    expect(text).not.toContain(unreleased.id);
    expect(text).not.toContain(other.id);
    if (mine.variants.length > 1) expect(text).not.toContain(mine.variants[1]!.sku);
  });

  it("a product changed during a multi-page full sync is left to the delta, so it is delivered exactly once", async () => {
    const brand = `Midsync ${Date.now()}`;
    const products: FixtureProduct[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await insertProduct(env.DB, { base: 40 + i, brand });
      await write(p.id);
      products.push(p);
    }
    const { key: k } = await createAffiliate({ scope: { brands: [brand] } });
    const first = await page("/v1/feeds/products?limit=2", k.key);
    const seen = new Set(first.items.map((i) => i.id));
    const later = products.find((p) => !seen.has(p.id))!;
    await write(later.id, { title: "Changed mid-sync" });
    const rest = await drain(`/v1/feeds/products?limit=2&cursor=${first.next_cursor}`, k.key, "cursor");
    const fullIds = [...first.items, ...rest.pages.flatMap((p) => p.items)].map((i) => i.id);
    expect(fullIds).not.toContain(later.id);
    expect(rest.last.next_since).toBe(first.next_since);
    const delta = await page(`/v1/feeds/products?since=${rest.last.next_since}`, k.key);
    expect(delta.items.map((i) => i.id)).toEqual([later.id]);
    expect(new Set([...fullIds, ...delta.items.map((i) => i.id)]).size).toBe(products.length);
  });

  it("a stock flip (sellable <-> sold out) enters the delta once; count changes and replayed events do not", async () => {
    const brand = `Stockflip ${Date.now()}`;
    const p = await insertProduct(env.DB, { base: 50, brand, stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-us-east", onHand: 4 })) });
    await write(p.id);
    const { key: k } = await createAffiliate({ scope: { brands: [brand] } });
    const since = (await page("/v1/feeds/products", k.key)).next_since;
    const sku = p.variants[0]!.sku;
    const apply = (available: number, seq: number) =>
      env.DB.batch([
        availabilityFlipStatement(env.DB, { sku, location: "loc-us-east", available, seq }),
        env.DB.prepare(
          `INSERT INTO availability (sku, location_id, on_hand, reserved, available, status, seq) VALUES (?1, 'loc-us-east', ?2, 0, ?2, 'x', ?3)
           ON CONFLICT (sku, location_id) DO UPDATE SET available = excluded.available, on_hand = excluded.on_hand, seq = excluded.seq WHERE excluded.seq > availability.seq`,
        ).bind(sku, available, seq),
      ]);
    await apply(2, 1); // 4 -> 2: still sellable
    expect((await page(`/v1/feeds/products?since=${since}`, k.key)).items).toEqual([]);
    await apply(0, 2); // sold out
    await apply(0, 2); // the same event delivered twice
    const delta = await page(`/v1/feeds/products?since=${since}`, k.key);
    expect(delta.items.map((i) => i.id)).toEqual([p.id]);
    expect(delta.items[0]!.variants.find((v) => v.sku === sku)!.availability.status).toBe("out_of_stock");
    await apply(7, 1); // an older event arriving late changes nothing
    expect((await page(`/v1/feeds/products?since=${delta.next_since}`, k.key)).items).toEqual([]);
    await apply(7, 3); // back in stock
    expect((await page(`/v1/feeds/products?since=${delta.next_since}`, k.key)).items.map((i) => i.id)).toEqual([p.id]);
  });
});

describe("stock events through the queue consumer", () => {
  it("one variant of several selling out puts its product in the delta (Google items are per variant)", async () => {
    const brand = `Consumerflip ${Date.now()}`;
    const p = await insertProduct(env.DB, { base: 2, brand, stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-us-east", onHand: 9 })) });
    expect(p.variants.length).toBeGreaterThan(1);
    await write(p.id);
    const { key: k } = await createAffiliate({ scope: { brands: [brand] } });
    const since = (await page("/v1/feeds/products", k.key)).next_since;
    const sku = p.variants[0]!.sku;
    const send = async (available: number, seq: number) => {
      const batch = createMessageBatch("edgeshelf-events", [
        {
          id: `m-${sku}-${seq}`,
          timestamp: new Date(),
          attempts: 1,
          body: { type: "stock.changed", sku, location: "loc-us-east", on_hand: available, reserved: 0, available, safety_stock: 0, low_stock: 5, status: available > 0 ? "in_stock" : "out_of_stock", seq, occurred_at: Date.now() },
        },
      ]);
      const ctx = createExecutionContext();
      await handleQueue(batch, env, ctx);
      await getQueueResult(batch, ctx);
    };
    await send(3, 1); // fewer, still sellable: not a delta entry
    expect((await page(`/v1/feeds/products?since=${since}`, k.key)).items).toEqual([]);
    await send(0, 2); // this variant sells out while the others still sell, so products.in_stock does not flip
    const delta = await page(`/v1/feeds/products?since=${since}`, k.key);
    expect(delta.items.map((i) => i.id)).toEqual([p.id]);
    expect(delta.items[0]!.variants.find((v) => v.sku === sku)!.availability.status).toBe("out_of_stock");
    const g = await (await feed(`/v1/feeds/products?format=google&since=${since}`, k.key)).json<{ items: { id: string; availability: string }[] }>();
    expect(g.items.find((i) => i.id === sku)!.availability).toBe("out_of_stock");
  });
});

describe("click redirect and embed assets", () => {
  it("GET /r/:affiliate/:product records the click and 302s to the tracked product page", async () => {
    const p = await insertProduct(env.DB, { base: 60 });
    const { affiliate } = await createAffiliate();
    const res = await call(`/r/${affiliate.tracking_id}/${p.id}`, { redirect: "manual", headers: { "x-shopper-country": "de" } });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get("location")!);
    expect(location.pathname).toBe(`/p/${p.slug}`);
    expect(location.searchParams.get("aff")).toBe(affiliate.tracking_id);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const rows = await env.DB.prepare("SELECT affiliate_id, product_id, country FROM clicks WHERE product_id = ?").bind(p.id).all();
    expect(rows.results).toEqual([{ affiliate_id: affiliate.id, product_id: p.id, country: "DE" }]);

    const untracked = await call(`/r/nobody/${p.id}`, { redirect: "manual" });
    expect(untracked.status).toBe(302);
    expect(new URL(untracked.headers.get("location")!).searchParams.get("aff")).toBeNull();
    expect((await env.DB.prepare("SELECT count(*) AS n FROM clicks WHERE product_id = ?").bind(p.id).first<{ n: number }>())!.n).toBe(1);
    await expectProblem(await call(`/r/${affiliate.tracking_id}/p-missing`, { redirect: "manual" }), 404);
    const scoped = await createAffiliate({ scope: { brands: ["No such brand"] } });
    await expectProblem(await call(`/r/${scoped.affiliate.tracking_id}/${p.id}`, { redirect: "manual" }), 404);
  });

  it("serves the embed script (a few KB of JavaScript) and the demo host page", async () => {
    const js = await call("/embed.js");
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toContain("javascript");
    const source = await js.text();
    // "A few KB": what travels is gzip, so that is what is bounded (the raw text is unminified, with comments).
    const gzipped = await new Response(new Blob([source]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer();
    expect(gzipped.byteLength).toBeLessThan(5_000);
    expect(source.length).toBeLessThan(20_000);
    expect(source).toContain("attachShadow");
    expect(source).not.toMatch(/\bimport\b|require\(/);
    expect(source).toContain('"https://shop.edgeshelf.dev"'); // the fallback link's site, from SITE_BASE_URL
    const etag = js.headers.get("etag")!;
    expect((await call("/embed.js", { headers: { "if-none-match": etag } })).status).toBe(304);
    const demo = await call("/embed/demo");
    expect(demo.status).toBe(200);
    expect(demo.headers.get("content-type")).toContain("text/html");
    const html = await demo.text();
    expect(html).toContain('data-edgeshelf-product="p-000001"');
    expect(html).toContain('src="/embed.js"');
  });

  it("the OpenAPI document describes the feed, click, embed and affiliate admin routes", async () => {
    const doc = await (await call("/openapi.json")).json<{ paths: Record<string, unknown> }>();
    for (const path of ["/v1/feeds/products", "/v1/feeds/products/{id}", "/r/{affiliate}/{product}", "/embed.js", "/embed/demo", "/admin/affiliates", "/admin/affiliates/{id}", "/admin/affiliates/{id}/keys", "/admin/affiliates/{id}/keys/{keyId}"]) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
  });
});

describe("Google Merchant files (google-xml, google-tsv)", () => {
  const brand = `Merchantbrand ${Date.now()}`;
  let multi: FixtureProduct;
  let soldOut: FixtureProduct;
  let key: string;
  let promoEnd: number;

  // parseTagValue off: GTINs keep their leading zeros and prices their text.
  const xml = new XMLParser({ ignoreAttributes: false, parseTagValue: false, isArray: (name) => ["item", "g:additional_image_link", "g:shipping"].includes(name) });
  type XmlItem = Record<string, unknown> & { "g:shipping"?: { "g:country": string; "g:service"?: string; "g:price": string }[] };

  /** The g:-prefixed XML item as the plain attribute map the rule checker reads. */
  function plain(item: XmlItem): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(item)) {
      if (k === "g:shipping") continue;
      out[k.replace(/^g:/, "")] = Array.isArray(v) ? v.map(String) : String(v);
    }
    return out;
  }

  async function fetchXml(path: string, headers: Record<string, string> = {}) {
    const res = await feed(path, key, headers);
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/rss+xml");
    expect(XMLValidator.validate(text)).toBe(true);
    const doc = xml.parse(text) as { rss: { "@_version": string; "@_xmlns:g": string; channel: { title: string; link: string; item?: XmlItem[] } } };
    return { res, text, rss: doc.rss, items: doc.rss.channel.item ?? [] };
  }

  beforeAll(async () => {
    multi = await insertProduct(env.DB, { base: 1, brand, title: `Studio <Pro> & "Friends" ${Date.now()}`, stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-us-east", onHand: 12 })) });
    soldOut = await insertProduct(env.DB, { base: 6, brand, stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-eu-central", onHand: 0 })) });
    // A GS1-valid GTIN (the seed's are not, and invalid ones are left out of Google items).
    await env.DB.prepare("UPDATE variants SET gtin = '4006381333931' WHERE sku = ?").bind(multi.variants[0]!.sku).run();
    const created = await createAffiliate({ scope: { brands: [brand] } });
    key = created.key.key;
    promoEnd = Math.ceil(Date.now() / 1000) * 1000 + 86_400_000;
    const promo = await json("POST", "/admin/promotions", {
      id: uid("promo-gx").toLowerCase(), name: "Feed sale", starts_at: new Date(Date.now() - 5_000).toISOString(), ends_at: new Date(promoEnd).toISOString(),
      target: { type: "skus", values: [multi.variants[0]!.sku] }, value: { type: "percent_off", bps: 2500 }, priority: 5,
    }, admin());
    expect(promo.status, await promo.clone().text()).toBe(201);
  });

  it("google-xml: RSS 2.0 in the g: namespace, one valid item per variant, grouped, sale window, shipping in the feed's currency", async () => {
    const { rss, items, text } = await fetchXml("/v1/feeds/products?format=google-xml&currency=EUR");
    expect(rss["@_version"]).toBe("2.0");
    expect(rss["@_xmlns:g"]).toBe("http://base.google.com/ns/1.0");
    const plainItems = items.map(plain);
    expect(googleFeedErrors(plainItems)).toEqual([]);
    expect(plainItems.map((i) => i.id).sort()).toEqual([...multi.variants, ...soldOut.variants].map((v) => v.sku).sort());
    // Escaped on the way out, the parser gives the original text back.
    expect(text).not.toContain("<Pro>");
    if (multi.variants.length === 1) expect(plainItems.find((i) => i.id === multi.variants[0]!.sku)!.title).toBe(multi.title);

    const onSale = plainItems.find((i) => i.id === multi.variants[0]!.sku)!;
    const regular = multi.variants[0]!.prices.EUR!;
    expect(onSale.price).toBe(`${(regular / 100).toFixed(2)} EUR`);
    expect(onSale.sale_price).toBe(`${(Math.round(regular * 0.75) / 100).toFixed(2)} EUR`);
    // ISO 8601 interval start/end, in UTC, ending when the promotion ends.
    expect(onSale.sale_price_effective_date).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Date.parse((onSale.sale_price_effective_date as string).split("/")[1]!)).toBe(promoEnd);
    expect(onSale.gtin).toBe("4006381333931");
    expect(onSale.mpn).toBe(multi.variants[0]!.mpn);
    expect(onSale.condition).toBe("new");
    expect(onSale.availability).toBe("in_stock");
    if (multi.variants.length > 1) {
      for (const v of multi.variants) expect(plainItems.find((i) => i.id === v.sku)!.item_group_id).toBe(multi.id);
      expect(plainItems.find((i) => i.id === multi.variants[1]!.sku)!.sale_price).toBeUndefined();
    }
    for (const v of soldOut.variants) expect(plainItems.find((i) => i.id === v.sku)!.availability).toBe("out_of_stock");
    // GOOGLE_SHIPPING (vitest.config.ts) has a USD and an EUR rule: an EUR feed carries only the EUR one.
    for (const item of items) expect(item["g:shipping"]).toEqual([{ "g:country": "DE", "g:service": "Express", "g:price": "9.90 EUR" }]);
  });

  it("google-xml streams every page of the catalog in one response, each item once, and answers 304 while nothing changed", async () => {
    const whole = await fetchXml("/v1/feeds/products?format=google-xml&currency=USD");
    const paged = await fetchXml("/v1/feeds/products?format=google-xml&currency=USD&limit=1");
    const ids = paged.items.map((i) => String(i["g:id"]));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(whole.items.map((i) => String(i["g:id"])).sort());
    expect(ids.length).toBe(multi.variants.length + soldOut.variants.length);
    for (const item of paged.items) expect(item["g:shipping"]).toEqual([{ "g:country": "US", "g:service": "Standard", "g:price": "4.99 USD" }]);

    const etag = whole.res.headers.get("etag")!;
    expect(etag).toMatch(/^W\//);
    const again = await feed("/v1/feeds/products?format=google-xml&currency=USD", key, { "if-none-match": etag });
    expect(again.status).toBe(304);
    // A catalog write moves the change_seq high-water mark: the next fetch gets the new file.
    await write(multi.id, { title: `Renamed ${Date.now()}` });
    expect((await feed("/v1/feeds/products?format=google-xml&currency=USD", key, { "if-none-match": etag })).status).toBe(200);
  });

  it("google-tsv: a header row of attribute names, one row per variant, valid by the same rules", async () => {
    const res = await feed("/v1/feeds/products?format=google-tsv&currency=EUR&limit=1", key);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/tab-separated-values");
    const lines = (await res.text()).split("\n").filter(Boolean);
    const header = lines[0]!.split("\t");
    expect(header).toEqual(expect.arrayContaining(["id", "item_group_id", "price", "sale_price", "sale_price_effective_date", "availability", "gtin", "mpn", "condition", "shipping"]));
    const rows = lines.slice(1).map((line) => {
      const cells = line.split("\t");
      expect(cells).toHaveLength(header.length);
      const row: Record<string, unknown> = {};
      header.forEach((h, i) => {
        if (cells[i] !== "") row[h] = h === "additional_image_link" ? cells[i]!.split(",") : cells[i];
      });
      return row;
    });
    expect(googleFeedErrors(rows)).toEqual([]);
    expect(rows.map((r) => r.id).sort()).toEqual([...multi.variants, ...soldOut.variants].map((v) => v.sku).sort());
    const onSale = rows.find((r) => r.id === multi.variants[0]!.sku)!;
    expect(onSale.sale_price).toMatch(/ EUR$/);
    expect(onSale.shipping).toBe("DE::Express:9.90 EUR");
  });

  it("one product as google-xml; Basic auth with the key as password works for Merchant Center fetches; cursor and since are refused", async () => {
    const one = await fetchXml(`/v1/feeds/products/${soldOut.id}?format=google-xml&currency=EUR`);
    expect(one.items.map((i) => String(i["g:id"])).sort()).toEqual(soldOut.variants.map((v) => v.sku).sort());
    const basic = await call("/v1/feeds/products?format=google-tsv", { headers: { authorization: `Basic ${btoa(`merchant:${key}`)}` } });
    expect(basic.status).toBe(200);
    await basic.text();
    await expectProblem(await call("/v1/feeds/products?format=google-tsv", { headers: { authorization: `Basic ${btoa("merchant:wrong")}` } }), 401);
    const tok = (await page("/v1/feeds/products", key)).next_since;
    await expectProblem(await feed(`/v1/feeds/products?format=google-xml&since=${tok}`, key), 400);
    await expectProblem(await feed(`/v1/feeds/products?format=google-tsv&cursor=${tok}`, key), 400);
  });
});
