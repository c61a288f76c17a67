/**
 * Promotions: effective prices at every tier around every boundary, priority, capped cache lifetimes, the
 * reservation price snapshot, feed deltas, and the admin API's 422/412/428 rules with nothing half-written.
 *
 * Time is injected with `setClock` (src/lib/clock.ts), never slept. Requests go through the real app
 * (`buildApp().fetch`) with `waitOnExecutionContext`, so background cache/KV writes are finished before the
 * next step; EVENTS is a recording fake unless a test wants the real consumer.
 */
import { createExecutionContext, env, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { productCacheUrls } from "../src/catalog/cache-keys";
import { productKey } from "../src/catalog/document";
import { setClock } from "../src/lib/clock";
import { effectivePrice, type DocPromotion } from "../src/promotions/effective-price";
import { switchDue } from "../src/promotions/switcher";
import { resolveUnitPrices } from "../src/pricing/unit-prices";
import { seedApiKeys } from "./helpers/api-keys";
import { insertProduct, type FixtureProduct } from "./helpers/catalog-fixtures";
import { BASE, admin, expectProblem, storefront, uid } from "./helpers/http";

type Price = { amount: number; currency: string; compare_at?: number; promotion?: { id: string; name: string; ends_at: string | null } };
type ProductView = { id: string; variants: { sku: string; price: Price | null }[] };
type Promotion = { id: string; version: number; status: string; target: { matched_skus: number; matched_products: number } };

const sent: unknown[] = [];
const recordingQueue = {
  send: async (body: unknown) => void sent.push(body),
  sendBatch: async (msgs: { body: unknown }[]) => void sent.push(...msgs.map((m) => m.body)),
} as unknown as Queue;

const app = buildApp();

async function request(path: string, init: RequestInit = {}, bindings: Partial<Env> = {}): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await app.fetch(new Request(BASE + path, init), { ...env, EVENTS: recordingQueue, ...bindings } as Env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const adminJson = (method: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  request(path, { method, headers: admin({ "content-type": "application/json", ...headers }), body: JSON.stringify(body) });

/** A whole second an hour from now: far from the real clock, so real alarms and TTLs never interfere. */
const BASE_TIME = Math.ceil(Date.now() / 1000) * 1000 + 3_600_000;
const at = (offsetMs: number) => BASE_TIME + offsetMs;
const iso = (ms: number) => new Date(ms).toISOString();

async function createPromotion(body: Record<string, unknown>): Promise<Promotion> {
  const res = await adminJson("POST", "/admin/promotions", { name: "Test promotion", ...body });
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${await res.text()}`);
  return res.json<Promotion>();
}

async function purgeEdge(id: string) {
  await Promise.all(productCacheUrls(id, env).map((u) => caches.default.delete(u)));
}

/** Reads a product at instant `t` from the given tier (prepared by clearing the tiers above it). */
async function readAt(t: number, id: string, tier: "d1" | "kv" | "edge", headers: Record<string, string> = {}) {
  setClock(t);
  if (tier === "d1") {
    await purgeEdge(id);
    await env.CATALOG_KV.delete(productKey(id));
  } else if (tier === "kv") {
    await purgeEdge(id);
  }
  const res = await request(`/v1/products/${id}?currency=USD&locale=en`, { headers });
  expect(res.headers.get("x-cache-tier")).toBe(tier);
  return { res, body: res.status === 200 ? await res.json<ProductView>() : null };
}

const priceOf = (view: ProductView | null, sku: string) => view!.variants.find((v) => v.sku === sku)!.price!;

async function counts() {
  const row = await env.DB.prepare(
    `SELECT (SELECT count(*) FROM promotions) AS promotions, (SELECT count(*) FROM promotion_targets) AS targets,
            (SELECT coalesce(sum(version), 0) FROM products) AS versions, (SELECT count(*) FROM outbox) AS outbox,
            (SELECT coalesce(max(change_seq), 0) FROM products) AS seq`,
  ).first();
  return row;
}

beforeAll(async () => {
  await seedApiKeys(env.DB);
});

afterAll(() => setClock(null));

describe("effective price around starts_at and ends_at, on every tier", () => {
  let p: FixtureProduct;
  let sku: string;
  let regular: number;
  let promo: Promotion;

  beforeAll(async () => {
    p = await insertProduct(env.DB);
    sku = p.variants[0]!.sku;
    regular = p.variants[0]!.prices.USD!;
    setClock(at(0));
    promo = await createPromotion({
      name: "Quarter off",
      starts_at: iso(at(10_000)),
      ends_at: iso(at(20_000)),
      target: { type: "skus", values: [sku] },
      value: { type: "percent_off", bps: 2500 },
    });
  });

  const discounted = () => regular - Math.round(regular * 0.25);

  it("D1, KV and edge all show the regular price before the start, with s-maxage capped to the start", async () => {
    const d1 = await readAt(at(5_000), p.id, "d1");
    expect(priceOf(d1.body, sku)).toEqual({ amount: regular, currency: "USD" });
    // 5 s to the boundary: no tier may keep this rendering longer, and no stale window across it.
    expect(d1.res.headers.get("cache-control")).toContain("s-maxage=5,");
    expect(d1.res.headers.get("cache-control")).toContain("stale-while-revalidate=0");
    const kv = await readAt(at(5_000), p.id, "kv");
    expect(priceOf(kv.body, sku)).toEqual({ amount: regular, currency: "USD" });
    const edge = await readAt(at(6_000), p.id, "edge");
    expect(priceOf(edge.body, sku).amount).toBe(regular);
    // Served later from the edge, the remaining lifetime shrinks with the time left.
    expect(edge.res.headers.get("cache-control")).toContain("s-maxage=4,");
    expect((await readAt(at(9_999), p.id, "d1")).body!.variants[0]!.price!.amount).toBe(regular);
    expect(priceOf((await readAt(at(9_999), p.id, "kv")).body, sku).amount).toBe(regular);
  });

  it("at starts_at the edge copy is not served; KV and D1 render the promoted price with compare_at and promotion", async () => {
    setClock(at(5_000));
    const before = await readAt(at(5_000), p.id, "kv");
    const oldEtag = before.res.headers.get("etag")!;
    // The copy cached at +5 s is still in the Cache API (wall-clock TTL) but expired by the promotion clock.
    setClock(at(10_000));
    const res = await request(`/v1/products/${p.id}?currency=USD&locale=en`, { headers: { "if-none-match": oldEtag } });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-cache-tier")).toBe("kv");
    expect(res.headers.get("etag")).not.toBe(oldEtag);
    const expected = { amount: discounted(), currency: "USD", compare_at: regular, promotion: { id: promo.id, name: "Quarter off", ends_at: iso(at(20_000)) } };
    expect(priceOf(await res.json<ProductView>(), sku)).toEqual(expected);
    expect(res.headers.get("cache-control")).toContain("s-maxage=10,");
    expect(priceOf((await readAt(at(10_000), p.id, "d1")).body, sku)).toEqual(expected);
    expect(priceOf((await readAt(at(10_000), p.id, "kv")).body, sku)).toEqual(expected);
    expect(priceOf((await readAt(at(10_500), p.id, "edge")).body, sku)).toEqual(expected);
    expect(priceOf((await readAt(at(19_999), p.id, "d1")).body, sku)).toEqual(expected);
    expect(priceOf((await readAt(at(19_999), p.id, "kv")).body, sku)).toEqual(expected);
  });

  it("at ends_at every tier is back to the regular price, and stays there with no cap", async () => {
    await readAt(at(15_000), p.id, "kv"); // an edge copy of the promoted price, valid until the end
    setClock(at(20_000));
    const res = await request(`/v1/products/${p.id}?currency=USD&locale=en`);
    expect(res.headers.get("x-cache-tier")).toBe("kv");
    expect(priceOf(await res.json<ProductView>(), sku)).toEqual({ amount: regular, currency: "USD" });
    for (const tier of ["d1", "kv"] as const) expect(priceOf((await readAt(at(20_000), p.id, tier)).body, sku)).toEqual({ amount: regular, currency: "USD" });
    const edge = await readAt(at(21_000), p.id, "edge");
    expect(priceOf(edge.body, sku)).toEqual({ amount: regular, currency: "USD" });
    const late = await readAt(at(25_000), p.id, "d1");
    expect(late.res.headers.get("cache-control")).toContain("s-maxage=60,");
  });

  it("other variants of the product keep their regular price", async () => {
    const other = p.variants[1];
    if (!other) return;
    const { body } = await readAt(at(12_000), p.id, "d1");
    expect(priceOf(body, other.sku)).toEqual({ amount: other.prices.USD, currency: "USD" });
  });
});

describe("priority between overlapping promotions", () => {
  it("the highest priority applies, with no stacking; the lower one resumes when the higher one ends", async () => {
    const p = await insertProduct(env.DB);
    const sku = p.variants[0]!.sku;
    const regular = p.variants[0]!.prices.USD!;
    setClock(at(30_000));
    const low = await createPromotion({ name: "Low", priority: 1, starts_at: iso(at(31_000)), ends_at: iso(at(60_000)), target: { type: "products", values: [p.id] }, value: { type: "percent_off", bps: 1000 } });
    const high = await createPromotion({ name: "High", priority: 5, starts_at: iso(at(40_000)), ends_at: iso(at(50_000)), target: { type: "skus", values: [sku] }, value: { type: "fixed_price", amounts: { USD: 100 } } });
    const tenOff = regular - Math.round(regular * 0.1);
    const first = priceOf((await readAt(at(35_000), p.id, "d1")).body, sku);
    expect(first).toMatchObject({ amount: tenOff, compare_at: regular, promotion: { id: low.id } });
    const both = priceOf((await readAt(at(45_000), p.id, "d1")).body, sku);
    expect(both).toMatchObject({ amount: 100, compare_at: regular, promotion: { id: high.id } });
    const after = priceOf((await readAt(at(50_000), p.id, "kv")).body, sku);
    expect(after).toMatchObject({ amount: tenOff, promotion: { id: low.id } });
    // The reservation price lookup is the same function.
    const units = await resolveUnitPrices(env, [sku], "USD", at(45_000));
    expect(units.get(sku)).toEqual({ sku, currency: "USD", unit_price: 100, regular_price: regular, promotion_id: high.id });
  });

  it("ties break by the later start, then by id; a promotion that would not lower the price is ignored", () => {
    const base: DocPromotion = { id: "a", name: "A", starts_at: 0, ends_at: null, priority: 0, value_type: "percent_off", value: { bps: 1000 }, currencies: [], skus: ["S"] };
    const later: DocPromotion = { ...base, id: "b", name: "B", starts_at: 10, value: { bps: 2000 } };
    expect(effectivePrice(1000, "USD", "S", [base, later], 20).promotion?.id).toBe("b");
    expect(effectivePrice(1000, "USD", "S", [base, { ...later, starts_at: 0 }], 20).promotion?.id).toBe("a");
    const dearer: DocPromotion = { ...base, id: "c", priority: 9, value_type: "fixed_price", value: { amounts: { USD: 5000 } } };
    expect(effectivePrice(1000, "USD", "S", [dearer], 20)).toEqual({ amount: 1000, compare_at: null, promotion: null });
    const eurOnly: DocPromotion = { ...base, id: "d", priority: 9, currencies: ["EUR"] };
    expect(effectivePrice(1000, "USD", "S", [eurOnly], 20).promotion).toBeNull();
  });
});

describe("price snapshot in a reservation", () => {
  it("a reservation keeps the promoted unit price after the promotion ends early", async () => {
    setClock(null);
    const p = await insertProduct(env.DB);
    const sku = p.variants[0]!.sku;
    const regular = p.variants[0]!.prices.USD!;
    const promo = await createPromotion({ starts_at: iso(Date.now()), target: { type: "skus", values: [sku] }, value: { type: "amount_off", amounts: { USD: 500 } } });
    const res = await request("/v1/reservations", {
      method: "POST",
      headers: storefront({ "content-type": "application/json", "idempotency-key": uid("idem") }),
      body: JSON.stringify({ items: [{ sku, quantity: 1 }], currency: "USD" }),
    });
    expect(res.status).toBe(201);
    const reservation = await res.json<{ id: string; items: { sku: string; unit_price: number }[] }>();
    expect(reservation.items[0]!.unit_price).toBe(regular - 500);

    // End it early: prices go back at once, the hold keeps its price.
    const end = await adminJson("PATCH", `/admin/promotions/${promo.id}`, { ends_at: iso(Date.now()) }, { "if-match": `"${promo.version}"` });
    expect(end.status).toBe(200);
    expect((await end.json<Promotion>()).status).toBe("ended");
    const page = await readAt(Date.now(), p.id, "d1");
    expect(priceOf(page.body, sku)).toEqual({ amount: regular, currency: "USD" });
    const got = await request(`/v1/reservations/${reservation.id}`, { headers: storefront() });
    expect(got.status).toBe(200);
    expect((await got.json<{ items: { unit_price: number }[] }>()).items[0]!.unit_price).toBe(regular - 500);
  });
});

describe("switching on time", () => {
  it("the switch at a boundary updates min_prices and price_badges, bumps change_seq and emits product.changed", async () => {
    const p = await insertProduct(env.DB);
    const skus = p.variants.map((v) => v.sku);
    const minUsd = Math.min(...p.variants.map((v) => v.prices.USD!));
    setClock(at(70_000));
    await switchDue({ ...env, EVENTS: recordingQueue }, at(70_000));
    const promo = await createPromotion({ name: "All variants", starts_at: iso(at(80_000)), ends_at: iso(at(90_000)), target: { type: "skus", values: skus }, value: { type: "percent_off", bps: 5000 } });
    const before = await env.DB.prepare("SELECT min_prices, price_badges, change_seq, version FROM products WHERE id = ?").bind(p.id).first<{ min_prices: string; price_badges: string; change_seq: number; version: number }>();
    expect(JSON.parse(before!.min_prices).USD).toBe(minUsd);
    sent.length = 0;

    setClock(at(80_000));
    const result = await switchDue({ ...env, EVENTS: recordingQueue }, at(80_000));
    expect(result.products).toBeGreaterThanOrEqual(1);
    const after = await env.DB.prepare("SELECT min_prices, price_badges, change_seq, version FROM products WHERE id = ?").bind(p.id).first<{ min_prices: string; price_badges: string; change_seq: number; version: number }>();
    expect(JSON.parse(after!.min_prices).USD).toBe(minUsd - Math.round(minUsd * 0.5));
    expect(JSON.parse(after!.price_badges).USD).toEqual({ compare_at: minUsd, promotion: { id: promo.id, name: "All variants", ends_at: iso(at(90_000)) } });
    expect(after!.change_seq).toBeGreaterThan(before!.change_seq);
    expect(after!.version).toBe(before!.version); // the document (schedule) did not change, only the price in force
    expect(sent).toContainEqual({ type: "product.changed", id: p.id, version: after!.version, occurred_at: at(80_000) });

    // Listings filter and show the effective price.
    const listing = await request(`/v1/products?currency=USD&brand=${encodeURIComponent(p.brand)}&max_price=${minUsd - 1}&limit=100`);
    expect(listing.status).toBe(200);
    const item = (await listing.json<{ items: { id: string; price: Price }[] }>()).items.find((i) => i.id === p.id);
    expect(item?.price).toMatchObject({ amount: minUsd - Math.round(minUsd * 0.5), compare_at: minUsd, promotion: { id: promo.id } });

    // A second run over the same instant finds nothing new; the end switches back.
    expect((await switchDue({ ...env, EVENTS: recordingQueue }, at(80_000))).products).toBe(0);
    setClock(at(90_000));
    await switchDue({ ...env, EVENTS: recordingQueue }, at(90_000));
    const ended = await env.DB.prepare("SELECT min_prices, price_badges FROM products WHERE id = ?").bind(p.id).first<{ min_prices: string; price_badges: string }>();
    expect(JSON.parse(ended!.min_prices).USD).toBe(minUsd);
    expect(JSON.parse(ended!.price_badges)).toEqual({});
  });
});

describe("admin API: 422 business rules, nothing half-written", () => {
  let p: FixtureProduct;
  let sku: string;
  beforeAll(async () => {
    p = await insertProduct(env.DB);
    sku = p.variants[0]!.sku;
  });

  const valid = () => ({
    name: "Rule check",
    starts_at: iso(at(200_000)),
    ends_at: iso(at(300_000)),
    target: { type: "skus", values: [sku] },
    value: { type: "percent_off", bps: 1000 },
  });

  it.each([
    ["ends_before_start", { ends_at: iso(at(150_000)) }],
    ["ends_before_start", { ends_at: iso(at(200_000)) }],
    ["more_than_100_percent", { value: { type: "percent_off", bps: 10_001 } }],
    ["price_not_positive", { value: { type: "percent_off", bps: 10_000 } }],
    ["price_not_positive", { value: { type: "fixed_price", amounts: { USD: 0 } } }],
    ["price_not_positive", { value: { type: "amount_off", amounts: { USD: 1_000_000 } } }],
    ["empty_target", { target: { type: "skus", values: ["NO-SUCH-SKU"] } }],
    ["empty_target", { target: { type: "brand", values: ["No Such Brand"] } }],
    ["empty_target", { target: { type: "category", values: ["cat-no-such"] } }],
    ["start_in_past", { starts_at: iso(at(100_000 - 61_000)) }],
  ])("POST 422 %s %j", async (rule, override) => {
    setClock(at(100_000));
    const before = await counts();
    const res = await adminJson("POST", "/admin/promotions", { ...valid(), ...override });
    const problem = await expectProblem(res, 422);
    expect(problem.rule).toBe(rule);
    expect(await counts()).toEqual(before);
  });

  it("a start up to a minute in the past is accepted", async () => {
    setClock(at(100_000));
    const res = await adminJson("POST", "/admin/promotions", { ...valid(), starts_at: iso(at(100_000 - 59_000)) });
    expect(res.status).toBe(201);
  });

  it("PATCH 422 leaves the promotion, its targets and the products untouched", async () => {
    setClock(at(100_000));
    const promo = await createPromotion(valid());
    const before = await counts();
    for (const patch of [{ ends_at: iso(at(150_000)) }, { value: { type: "percent_off", bps: 20_000 } }, { target: { type: "skus", values: ["NOPE"] } }, { starts_at: iso(at(0)) }]) {
      await expectProblem(await adminJson("PATCH", `/admin/promotions/${promo.id}`, patch, { "if-match": `"${promo.version}"` }), 422);
    }
    expect(await counts()).toEqual(before);
    const got = await request(`/admin/promotions/${promo.id}`, { headers: admin() });
    expect((await got.json<Promotion>()).version).toBe(promo.version);
  });
});

describe("admin API: If-Match (428, 412) and lists", () => {
  it("PATCH and DELETE need If-Match (428) and the current version (412); nothing changes on either", async () => {
    setClock(at(400_000));
    const p = await insertProduct(env.DB);
    const promo = await createPromotion({ starts_at: iso(at(410_000)), target: { type: "products", values: [p.id] }, value: { type: "amount_off", amounts: { USD: 100 } } });
    expect(promo.target.matched_products).toBe(1);
    expect(promo.target.matched_skus).toBe(p.variants.length);
    const before = await counts();
    await expectProblem(await adminJson("PATCH", `/admin/promotions/${promo.id}`, { name: "x" }), 428);
    await expectProblem(await adminJson("PATCH", `/admin/promotions/${promo.id}`, { name: "x" }, { "if-match": `"${promo.version + 1}"` }), 412);
    await expectProblem(await adminJson("PATCH", `/admin/promotions/${promo.id}`, { name: "x" }, { "if-match": "garbage" }), 412);
    await expectProblem(await request(`/admin/promotions/${promo.id}`, { method: "DELETE", headers: admin() }), 428);
    await expectProblem(await request(`/admin/promotions/${promo.id}`, { method: "DELETE", headers: admin({ "if-match": '"99"' }) }), 412);
    expect(await counts()).toEqual(before);
  });

  it("racing PATCHes with the same If-Match: exactly one wins, the others get 412, and the version moves by one", async () => {
    setClock(at(400_000));
    const p = await insertProduct(env.DB);
    const promo = await createPromotion({ starts_at: iso(at(420_000)), target: { type: "products", values: [p.id] }, value: { type: "percent_off", bps: 500 } });
    const statuses = await Promise.all(
      Array.from({ length: 6 }, (_, i) => adminJson("PATCH", `/admin/promotions/${promo.id}`, { name: `racer ${i}`, priority: i }, { "if-match": `"${promo.version}"` }).then((r) => r.status)),
    );
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 412)).toHaveLength(5);
    const got = await (await request(`/admin/promotions/${promo.id}`, { headers: admin() })).json<Promotion & { name: string; priority: number }>();
    expect(got.version).toBe(promo.version + 1);
    expect(got.name).toBe(`racer ${got.priority}`);
    expect(got.target.matched_skus).toBe(p.variants.length);
  });

  it("DELETE with the current version removes the promotion and its price at once; lists filter by status", async () => {
    setClock(at(500_000));
    const p = await insertProduct(env.DB);
    const sku = p.variants[0]!.sku;
    const regular = p.variants[0]!.prices.USD!;
    const active = await createPromotion({ name: "Now", starts_at: iso(at(500_000)), target: { type: "skus", values: [sku] }, value: { type: "percent_off", bps: 1000 } });
    const scheduled = await createPromotion({ name: "Later", starts_at: iso(at(600_000)), target: { type: "skus", values: [sku] }, value: { type: "percent_off", bps: 1000 } });
    const ended = await createPromotion({ name: "Short", starts_at: iso(at(500_000)), ends_at: iso(at(500_500)), target: { type: "skus", values: [sku] }, value: { type: "percent_off", bps: 1000 } });
    setClock(at(501_000));
    const ids = async (status: string) => {
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const res = await request(`/admin/promotions?status=${status}&limit=2${cursor ? `&cursor=${cursor}` : ""}`, { headers: admin() });
        const page = await res.json<{ items: Promotion[]; next_cursor: string | null }>();
        ids.push(...page.items.map((i) => i.id));
        cursor = page.next_cursor;
      } while (cursor);
      return ids;
    };
    expect(await ids("active")).toContain(active.id);
    expect(await ids("active")).not.toContain(scheduled.id);
    expect(await ids("scheduled")).toContain(scheduled.id);
    expect(await ids("ended")).toContain(ended.id);
    expect(priceOf((await readAt(at(501_000), p.id, "d1")).body, sku).amount).toBe(regular - Math.round(regular * 0.1));

    const del = await request(`/admin/promotions/${active.id}`, { method: "DELETE", headers: admin({ "if-match": `"${active.version}"` }) });
    expect(del.status).toBe(204);
    expect((await request(`/admin/promotions/${active.id}`, { headers: admin() })).status).toBe(404);
    expect(priceOf((await readAt(at(501_000), p.id, "d1")).body, sku)).toEqual({ amount: regular, currency: "USD" });
    const targets = await env.DB.prepare("SELECT count(*) AS n FROM promotion_targets WHERE promotion_id = ?").bind(active.id).first<{ n: number }>();
    expect(targets!.n).toBe(0);
  });
});

describe("affiliate feeds", () => {
  type GoogleItem = { id: string; price: string; sale_price?: string; sale_price_effective_date?: string };
  type GooglePage = { items: GoogleItem[]; next_since: string; has_more: boolean };

  it("a delta taken before a start lists the product after the switch, with sale_price and sale_price_effective_date", async () => {
    setClock(at(700_000));
    const res = await adminJson("POST", "/admin/affiliates", { name: "Promo publisher", tracking_id: uid("promo").toLowerCase().replace(/[^a-z0-9-]/g, ""), allowed_origins: [] });
    expect(res.status).toBe(201);
    const key = (await res.json<{ key: { key: string } }>()).key.key;
    const feed = async (query: string) => {
      const r = await request(`/v1/feeds/products?format=google&currency=USD&${query}`, { headers: { authorization: `Bearer ${key}` } });
      expect(r.status, await r.clone().text()).toBe(200);
      return { page: await r.json<GooglePage>(), cacheControl: r.headers.get("cache-control")! };
    };
    const drainSince = async (since: string) => {
      const items: GoogleItem[] = [];
      let token = since;
      for (;;) {
        const { page } = await feed(`limit=100&since=${encodeURIComponent(token)}`);
        items.push(...page.items);
        token = page.next_since;
        if (!page.has_more) return { items, token };
      }
    };

    const p = await insertProduct(env.DB);
    const sku = p.variants[0]!.sku;
    const regular = p.variants[0]!.prices.USD!;
    const promo = await createPromotion({ name: "Feed sale", starts_at: iso(at(710_000)), ends_at: iso(at(720_000)), target: { type: "skus", values: [sku] }, value: { type: "amount_off", amounts: { USD: 1000 } } });
    await switchDue({ ...env, EVENTS: recordingQueue }, at(700_000));
    // Catch up: the promotion write itself is a change (the product's schedule), the start is another.
    const { token } = await drainSince((await feed("limit=1")).page.next_since);
    const single = await request(`/v1/feeds/products/${p.id}?format=google&currency=USD`, { headers: { authorization: `Bearer ${key}` } });
    expect(single.headers.get("cache-control")).toMatch(/max-age=(\d+)/);
    expect(Number(/max-age=(\d+)/.exec(single.headers.get("cache-control")!)![1])).toBeLessThanOrEqual(10);
    const beforeItem = ((await single.json<{ items: GoogleItem[] }>()).items).find((i) => i.id === sku)!;
    expect(beforeItem.sale_price).toBeUndefined();

    setClock(at(710_000));
    await switchDue({ ...env, EVENTS: recordingQueue }, at(710_000));
    const delta = await drainSince(token);
    const item = delta.items.find((i) => i.id === sku);
    expect(item).toBeDefined();
    const money = (minor: number) => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, "0")} USD`;
    expect(item!.price).toBe(money(regular));
    expect(item!.sale_price).toBe(money(regular - 1000));
    expect(item!.sale_price_effective_date).toBe(`${iso(at(710_000)).replace(".000Z", "Z")}/${iso(at(720_000)).replace(".000Z", "Z")}`);
    void promo;
  });
});

describe("PromotionClock alarm", () => {
  it("a write arms the alarm for the next boundary; the alarm switches the product and re-arms for the end", async () => {
    setClock(at(800_000));
    const p = await insertProduct(env.DB);
    const minUsd = Math.min(...p.variants.map((v) => v.prices.USD!));
    await switchDue({ ...env, EVENTS: recordingQueue }, at(800_000));
    await createPromotion({ name: "Alarmed", starts_at: iso(at(805_000)), ends_at: iso(at(806_000)), target: { type: "products", values: [p.id] }, value: { type: "fixed_price", amounts: { USD: 99 } } });
    const clock = env.PROMO_CLOCK.getByName("promotions");
    const armed = await runInDurableObject(clock, (_, state) => state.storage.getAlarm());
    expect(armed).not.toBeNull();
    expect(armed!).toBeLessThanOrEqual(at(805_000));

    setClock(at(805_000));
    expect(await runDurableObjectAlarm(clock)).toBe(true);
    const row = await env.DB.prepare("SELECT min_prices FROM products WHERE id = ?").bind(p.id).first<{ min_prices: string }>();
    expect(JSON.parse(row!.min_prices).USD).toBe(Math.min(99, minUsd));
    expect(await runInDurableObject(clock, (_, state) => state.storage.getAlarm())).toBe(at(806_000));
  });
});

describe("targets follow the catalog after the promotion was written", () => {
  const productBody = (id: string, brand: string, category: string, skus: string[]) => ({
    slug: id.toLowerCase(),
    title: `Lantern ${id}`,
    description: "Bright.",
    brand,
    category_id: category,
    attributes: { color: "green" },
    variants: skus.map((sku, i) => ({ sku, title: `V${i}`, options: { finish: `F${i}` }, prices: { USD: 10_000 + i * 1_000, EUR: 9_000 } })),
  });
  const targetsOf = async (id: string) =>
    (await env.DB.prepare("SELECT promotion_id, sku FROM promotion_targets WHERE product_id = ? ORDER BY promotion_id, sku").bind(id).all<{ promotion_id: string; sku: string }>()).results;
  const put = async (id: string, body: unknown, version?: number) => {
    const res = await adminJson("PUT", `/admin/products/${id}`, body, version ? { "if-match": `"${version}"` } : {});
    expect([200, 201], await res.clone().text()).toContain(res.status);
    return Number(JSON.parse(res.headers.get("etag")!));
  };

  it("a product created in a promoted brand later is covered, and leaves the promotion when it changes brand", async () => {
    const brand = `Glowco ${uid("b")}`;
    const seedProduct = await insertProduct(env.DB, { brand });
    setClock(at(100_000));
    const promo = await createPromotion({ starts_at: iso(at(100_000)), target: { type: "brand", values: [brand] }, value: { type: "percent_off", bps: 1000 } });
    expect(promo.target.matched_products).toBe(1);

    const id = uid("p-late");
    const version = await put(id, productBody(id, brand, "cat-camping", [`${id}-A`, `${id}-B`]));
    expect(await targetsOf(id)).toEqual([
      { promotion_id: promo.id, sku: `${id}-A` },
      { promotion_id: promo.id, sku: `${id}-B` },
    ]);
    const { body } = await readAt(at(100_500), id, "d1");
    expect(priceOf(body, `${id}-A`)).toMatchObject({ amount: 9_000, compare_at: 10_000, promotion: { id: promo.id } });
    // The consumer folds the promotion into the listing price.
    const { reconcileProductPrices } = await import("../src/promotions/price-refresh");
    await reconcileProductPrices(env.DB, id, at(100_500));
    const row = await env.DB.prepare("SELECT min_prices FROM products WHERE id = ?").bind(id).first<{ min_prices: string }>();
    expect(JSON.parse(row!.min_prices).USD).toBe(9_000);
    const view = await (await request(`/admin/promotions/${promo.id}`, { headers: admin() })).json<Promotion>();
    expect(view.target.matched_products).toBe(2);

    // Another brand: the rows go, the regular price is back; the promotion keeps its other product.
    await put(id, productBody(id, `Other ${uid("b")}`, "cat-camping", [`${id}-A`, `${id}-B`]), version);
    expect(await targetsOf(id)).toEqual([]);
    const after = await readAt(at(101_000), id, "d1");
    expect(priceOf(after.body, `${id}-A`)).toMatchObject({ amount: 10_000 });
    expect(priceOf(after.body, `${id}-A`).promotion ?? null).toBeNull();
    expect((await targetsOf(seedProduct.id)).length).toBe(seedProduct.variants.length);
  });

  it("a category promotion covers products later created or imported in a subcategory; ended promotions are not revived", async () => {
    const leaf = "cat-camping";
    const anchor = await insertProduct(env.DB, { categoryId: leaf });
    const { parent_id: parent } = (await env.DB.prepare("SELECT parent_id FROM categories WHERE id = ?").bind(leaf).first<{ parent_id: string }>())!;
    setClock(at(110_000));
    const live = await createPromotion({ starts_at: iso(at(110_000)), priority: 5, target: { type: "category", values: [parent] }, value: { type: "amount_off", amounts: { USD: 500 } } });
    const ended = await createPromotion({ starts_at: iso(at(110_000)), ends_at: iso(at(110_500)), priority: 9, target: { type: "category", values: [leaf] }, value: { type: "percent_off", bps: 9000 } });
    expect((await targetsOf(anchor.id)).map((t) => t.promotion_id)).toContain(ended.id);

    setClock(at(111_000));
    const id = uid("p-cat");
    await put(id, productBody(id, "Campco", leaf, [`${id}-A`]));
    expect(await targetsOf(id)).toEqual([{ promotion_id: live.id, sku: `${id}-A` }]);

    const imported = uid("p-imp");
    const ndjson = JSON.stringify({ id: imported, ...productBody(imported, "Campco", leaf, [`${imported}-1`]) }) + "\n";
    sent.length = 0;
    const res = await request("/admin/import", { method: "POST", headers: admin({ "content-type": "application/x-ndjson" }), body: ndjson });
    expect(res.status, await res.clone().text()).toBe(201);
    expect(await targetsOf(imported)).toEqual([{ promotion_id: live.id, sku: `${imported}-1` }]);
    // A new product normally emits no event on import; a promoted one does, so the consumer prices its listing.
    const outbox = await env.DB.prepare("SELECT count(*) AS n FROM outbox WHERE entity_id = ? AND type = 'product.changed'").bind(imported).first<{ n: number }>();
    expect(outbox!.n).toBe(1);
    const { body } = await readAt(at(111_500), imported, "d1");
    expect(priceOf(body, `${imported}-1`)).toMatchObject({ amount: 9_500, compare_at: 10_000, promotion: { id: live.id } });
  });

  it("a product created under an id a promotion already lists is covered when it appears", async () => {
    const existing = uid("p-now");
    const future = uid("p-future");
    setClock(at(130_000));
    await put(existing, productBody(existing, "Futureco", "cat-coffee", [`${existing}-A`]));
    const promo = await createPromotion({ starts_at: iso(at(130_000)), target: { type: "products", values: [existing, future] }, value: { type: "percent_off", bps: 5000 } });
    expect(promo.target.matched_products).toBe(1);
    await put(future, productBody(future, "Futureco", "cat-coffee", [`${future}-A`]));
    expect((await targetsOf(future)).filter((t) => t.promotion_id === promo.id)).toEqual([{ promotion_id: promo.id, sku: `${future}-A` }]);
    const { body } = await readAt(at(130_500), future, "d1");
    expect(priceOf(body, `${future}-A`)).toMatchObject({ amount: 5_000, compare_at: 10_000, promotion: { id: promo.id } });
  });

  it("a variant added to a product targeted by id gets the promotion too", async () => {
    const id = uid("p-var");
    setClock(at(120_000));
    // A leaf no other test of this file promotes as a category.
    const version = await put(id, productBody(id, "Varico", "cat-coffee", [`${id}-A`]));
    const promo = await createPromotion({ starts_at: iso(at(120_000)), target: { type: "products", values: [id] }, value: { type: "fixed_price", amounts: { USD: 4_000 } } });
    // The promotion write moved the product's version (its document embeds the schedule).
    const current = await env.DB.prepare("SELECT version FROM products WHERE id = ?").bind(id).first<{ version: number }>();
    expect(current!.version).toBe(version + 1);
    await put(id, productBody(id, "Varico", "cat-coffee", [`${id}-A`, `${id}-B`]), current!.version);
    expect((await targetsOf(id)).filter((t) => t.promotion_id === promo.id)).toEqual([
      { promotion_id: promo.id, sku: `${id}-A` },
      { promotion_id: promo.id, sku: `${id}-B` },
    ]);
    const { body } = await readAt(at(120_500), id, "d1");
    expect(priceOf(body, `${id}-B`)).toMatchObject({ amount: 4_000, compare_at: 11_000 });
  });
});

describe("market-limited promotions", () => {
  it("apply only where the read names a listed market: product page (cached per market), reservation snapshot; never in market-less listings", async () => {
    setClock(null);
    const p = await insertProduct(env.DB);
    const sku = p.variants[0]!.sku;
    const regular = p.variants[0]!.prices.USD!;
    const promo = await createPromotion({ starts_at: iso(Date.now()), markets: ["EU"], target: { type: "skus", values: [sku] }, value: { type: "amount_off", amounts: { USD: 700 } } });
    const page = async (query: string) => {
      const res = await request(`/v1/products/${p.id}?currency=USD&locale=en${query}`);
      expect(res.status).toBe(200);
      return { etag: res.headers.get("etag"), tier: res.headers.get("x-cache-tier"), price: priceOf(await res.json<ProductView>(), sku) };
    };

    expect((await page("")).price).toEqual({ amount: regular, currency: "USD" });
    const de = await page("&market=de");
    expect(de.price).toMatchObject({ amount: regular - 700, compare_at: regular, promotion: { id: promo.id } });
    expect((await page("&market=EU")).price.amount).toBe(regular - 700);
    expect((await page("&market=US")).price).toEqual({ amount: regular, currency: "USD" });
    // Each market has its own cached copy and validator: the market-less copy never serves the discount.
    const again = await page("&market=DE");
    expect(again).toMatchObject({ tier: "edge", etag: de.etag, price: { amount: regular - 700 } });
    expect((await page("")).price.amount).toBe(regular);
    await expectProblem(await request(`/v1/products/${p.id}?market=not-a-market`), 400);

    // Listings carry no market: min_prices keep the regular price.
    const { computePriceRows } = await import("../src/promotions/price-refresh");
    const [row] = await computePriceRows(env.DB, [p.id], Date.now());
    expect(row!.min.USD).toBe(Math.min(...p.variants.map((v) => v.prices.USD!)));

    const reserve = (market?: string) =>
      request("/v1/reservations", {
        method: "POST",
        headers: storefront({ "content-type": "application/json", "idempotency-key": uid("idem") }),
        body: JSON.stringify({ items: [{ sku, quantity: 1 }], currency: "USD", ...(market ? { market } : {}) }),
      });
    const inEu = await reserve("DE");
    expect(inEu.status).toBe(201);
    expect((await inEu.json<{ items: { unit_price: number; promotion_id: string | null }[] }>()).items[0]).toMatchObject({ unit_price: regular - 700, promotion_id: promo.id });
    const nowhere = await reserve();
    expect(nowhere.status).toBe(201);
    expect((await nowhere.json<{ items: { unit_price: number; promotion_id: string | null }[] }>()).items[0]).toMatchObject({ unit_price: regular, promotion_id: null });
  });
});

describe("promotion.started / promotion.ended webhooks: one event per change a shopper could see", () => {
  const tick = async (t: number) => {
    setClock(t);
    await switchDue({ ...env, EVENTS: recordingQueue }, t);
  };
  /** The promotion's recorded events as the subscriber's timeline: [type, timestamp offset from `t0`]. */
  const timeline = async (id: string, t0: number) =>
    (
      await env.DB.prepare(
        "SELECT type, json_extract(payload, '$.timestamp') AS at FROM webhook_events WHERE type LIKE 'promotion.%' AND json_extract(payload, '$.data.id') = ?",
      )
        .bind(id)
        .all<{ type: string; at: string }>()
    ).results
      .map((r) => [r.type, Date.parse(r.at) - t0] as const)
      .sort((a, b) => a[1] - b[1]);
  const promo = (id: string, p: FixtureProduct, starts: number, ends?: number) =>
    createPromotion({ id, starts_at: iso(starts), ...(ends ? { ends_at: iso(ends) } : {}), target: { type: "products", values: [p.id] }, value: { type: "percent_off", bps: 1000 } });
  const patch = (id: string, version: number, body: Record<string, unknown>) => adminJson("PATCH", `/admin/promotions/${id}`, body, { "if-match": `"${version}"` });

  beforeAll(async () => {
    // A receiver that accepts: stock events of other tests reach the real queue, whose consumer delivers these
    // events too, and an endpoint that kept failing would be disabled (and then nothing is recorded for it).
    const url = `${env.WEBHOOK_RECEIVER_URL}/hook/ok/promotions-test`;
    const hook = await adminJson("POST", "/admin/webhooks", { url, events: ["promotion.started", "promotion.ended"] });
    expect(hook.status).toBe(201);
  });

  it("a promotion created with a start already past is announced once, at its creation, however the switcher's runs fall", async () => {
    const T = at(10_000_000);
    const p = await insertProduct(env.DB);
    await tick(T);
    setClock(T + 20_000);
    // Its start is below the switcher's watermark (T): no later run of the switcher reaches it.
    await promo("promo-wh-retro", p, T - 10_000);
    // Its start is above the watermark but already in force when written: the switcher must not announce it again.
    await promo("promo-wh-retro-gap", p, T + 5_000);
    for (const t of [T + 60_000, T + 120_000, T + 120_000]) await tick(t);
    expect(await timeline("promo-wh-retro", T)).toEqual([["promotion.started", 20_000]]);
    expect(await timeline("promo-wh-retro-gap", T)).toEqual([["promotion.started", 20_000]]);
  });

  it("an active promotion whose ends_at is moved to an instant the switcher already passed is announced ended at the write", async () => {
    const T = at(11_000_000);
    const p = await insertProduct(env.DB);
    setClock(T);
    const created = await promo("promo-wh-end-past", p, T + 1_000);
    await tick(T + 60_000);
    await tick(T + 120_000);
    setClock(T + 130_000);
    expect((await patch(created.id, created.version, { ends_at: iso(T + 100_000) })).status).toBe(200);
    await tick(T + 180_000);
    await tick(T + 180_000);
    expect(await timeline(created.id, T)).toEqual([
      ["promotion.started", 1_000],
      ["promotion.ended", 130_000],
    ]);
  });

  it("DELETE of an active promotion announces its end; DELETE of a scheduled or ended one announces nothing", async () => {
    const T = at(12_000_000);
    const p = await insertProduct(env.DB);
    setClock(T);
    const active = await promo("promo-wh-del-active", p, T + 1_000, T + 86_400_000);
    const scheduled = await promo("promo-wh-del-later", p, T + 3_600_000);
    const ended = await promo("promo-wh-del-ended", p, T + 1_000, T + 2_000);
    await tick(T + 60_000);
    setClock(T + 70_000);
    for (const x of [active, scheduled, ended]) {
      expect((await request(`/admin/promotions/${x.id}`, { method: "DELETE", headers: admin({ "if-match": `"${x.version}"` }) })).status).toBe(204);
    }
    await tick(T + 120_000);
    await tick(T + 7_200_000);
    expect(await timeline(active.id, T)).toEqual([
      ["promotion.started", 1_000],
      ["promotion.ended", 70_000],
    ]);
    expect(await timeline(scheduled.id, T)).toEqual([]);
    expect(await timeline(ended.id, T)).toEqual([
      ["promotion.started", 1_000],
      ["promotion.ended", 2_000],
    ]);
  });

  it("across a gap in the switcher's runs, edits in the gap keep every boundary the clock passed and add their own changes once", async () => {
    const T = at(20_000_000);
    const p = await insertProduct(env.DB);
    await tick(T);
    const brief = await promo("promo-wh-gap-brief", p, T + 10_000, T + 20_000);
    const renamed = await promo("promo-wh-gap-renamed", p, T + 10_000);
    const revived = await promo("promo-wh-gap-revived", p, T + 10_000, T + 20_000);
    const postponed = await promo("promo-wh-gap-postponed", p, T + 10_000);
    // No switcher run from T to T + 300 s (missed alarm, cron outage); operators edit meanwhile.
    setClock(T + 30_000);
    expect((await patch(renamed.id, renamed.version, { name: "renamed while running" })).status).toBe(200);
    setClock(T + 40_000);
    expect((await patch(revived.id, revived.version, { ends_at: iso(T + 3_600_000) })).status).toBe(200);
    setClock(T + 50_000);
    expect((await patch(postponed.id, postponed.version, { starts_at: iso(T + 100_000) })).status).toBe(200);
    await tick(T + 300_000);
    await tick(T + 300_000);
    expect(await timeline(brief.id, T)).toEqual([
      ["promotion.started", 10_000],
      ["promotion.ended", 20_000],
    ]);
    expect(await timeline(renamed.id, T)).toEqual([["promotion.started", 10_000]]);
    expect(await timeline(revived.id, T)).toEqual([
      ["promotion.started", 10_000],
      ["promotion.ended", 20_000],
      ["promotion.started", 40_000],
    ]);
    expect(await timeline(postponed.id, T)).toEqual([
      ["promotion.started", 10_000],
      ["promotion.ended", 50_000],
      ["promotion.started", 100_000],
    ]);
  });
});
