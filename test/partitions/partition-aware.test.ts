/**
 * The paths that follow a product into its partition beyond reads, listings and feeds (catalog-partitions.test.ts):
 * promotions (mirrored into every partition, priced in the product's own), webhooks recorded in partition 1,
 * recommendations, the console's stock lists and the hot-SKU mark. Each test puts a product in partition 1 next to
 * one in partition 0 and expects the same outcome for both.
 */
import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { allCatalogDbs, catalogDb, partitionOf } from "../../src/db/partitions";
import { applyStockEvents } from "../../src/events/consumer";
import { repairPromotionMirrors } from "../../src/promotions/mirror-repair";
import { switchDue } from "../../src/promotions/switcher";
import { dispatchWebhooks } from "../../src/webhooks/dispatch";
import { mirrorEndpoints } from "../../src/webhooks/partition-events";
import { buildApp } from "../../src/app";
import { countCommittedOrder } from "../../src/recommendations/orders";
import { advanceRebuild, recompute, startRebuild } from "../../src/recommendations/jobs";
import { seedCategories } from "../helpers/catalog-fixtures";
import { ADMIN_TOKEN, BASE, admin, call, expectProblem, json, uid } from "../helpers/http";

/** Two ids, one hashing to each partition: [partition 0, partition 1]. */
function idsInBothPartitions(prefix: string): [string, string] {
  const found: string[] = [];
  for (let i = 0; found.length < 2 && i < 1000; i++) {
    const id = uid(prefix).toLowerCase();
    if (partitionOf(env, id) === found.length) found.push(id);
  }
  return found as [string, string];
}

const productBody = (id: string, brand: string, usd = 12900) => ({
  slug: id,
  title: `Partitioned ${id}`,
  description: "Sharded.",
  brand,
  category_id: "cat-running",
  attributes: { color: "orange" },
  variants: [{ sku: `${id}-S`.toUpperCase(), title: "S", options: { size: "S" }, prices: { USD: usd, EUR: 11900 } }],
});

async function putProducts(ids: readonly string[], brand: string, usd = 12900): Promise<void> {
  for (const id of ids) {
    const res = await json("PUT", `/admin/products/${id}`, productBody(id, brand, usd), admin());
    expect(res.status, await res.clone().text()).toBe(201);
  }
}

type Price = { amount: number; currency: string; compare_at?: number; promotion?: { id: string } };
type Promotion = { id: string; version: number; target: { matched_skus: number; matched_products: number } };

const minUsd = async (id: string) =>
  JSON.parse((await catalogDb(env, id).prepare("SELECT min_prices FROM products WHERE id = ?").bind(id).first<{ min_prices: string }>())!.min_prices).USD as number;

/** The product page's price (whatever tier answers), once the consumer has caught up. */
async function expectProductPrice(id: string, amount: number): Promise<void> {
  await vi.waitFor(
    async () => {
      const res = await call(`/v1/products/${id}?currency=USD&locale=en`);
      expect(res.status).toBe(200);
      const body = await res.json<{ variants: { price: Price | null }[] }>();
      expect(body.variants[0]!.price!.amount).toBe(amount);
    },
    { timeout: 8_000, interval: 100 },
  );
}

async function affiliateKey(): Promise<string> {
  const tracking = uid("trk").toLowerCase().replace(/[^a-z0-9]/g, "");
  const res = await json("POST", "/admin/affiliates", { name: "Partitioned publisher", tracking_id: tracking, allowed_origins: [] }, admin());
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json<{ key: { key: string } }>()).key.key;
}

beforeAll(async () => {
  for (const db of allCatalogDbs(env)) await seedCategories(db);
});

describe("promotions over two partitions", () => {
  it("a brand promotion prices the products of both partitions in product reads, listings and feeds; PATCH and DELETE follow", async () => {
    const ids = idsInBothPartitions("pp");
    const brand = uid("Promo").replace(/[^A-Za-z0-9]/g, "");
    await putProducts(ids, brand);
    const now = Date.now();
    const created = await json("POST", "/admin/promotions", {
      name: "Partitioned sale", starts_at: new Date(now).toISOString(), ends_at: new Date(now + 3_600_000).toISOString(),
      target: { type: "brand", values: [brand] }, value: { type: "percent_off", bps: 2000 },
    }, admin());
    expect(created.status, await created.clone().text()).toBe(201);
    const promo = await created.json<Promotion>();
    // Match counts add up both partitions' targets.
    expect(promo.target).toMatchObject({ matched_skus: 2, matched_products: 2 });
    // Partition 1 mirrors the promotion row (same version) and holds its own product's target.
    expect(await env.CATALOG_1!.prepare("SELECT version, deleted_at FROM promotions WHERE id = ?").bind(promo.id).first()).toEqual({ version: 1, deleted_at: null });
    expect(await env.CATALOG_1!.prepare("SELECT product_id FROM promotion_targets WHERE promotion_id = ?").bind(promo.id).all()).toMatchObject({ results: [{ product_id: ids[1] }] });
    expect(await env.DB.prepare("SELECT product_id FROM promotion_targets WHERE promotion_id = ?").bind(promo.id).all()).toMatchObject({ results: [{ product_id: ids[0] }] });

    for (const id of ids) {
      expect(await minUsd(id)).toBe(10320);
      await expectProductPrice(id, 10320);
    }
    const listing = async (sort: string) => {
      const res = await call(`/v1/products?brand=${brand}&currency=USD&sort=${sort}`);
      expect(res.status).toBe(200);
      return (await res.json<{ items: { id: string; price: Price }[] }>()).items;
    };
    const listed = await listing("price_asc");
    expect(listed.map((i) => i.id).sort()).toEqual([...ids].sort());
    for (const item of listed) expect(item.price).toMatchObject({ amount: 10320, compare_at: 12900, promotion: { id: promo.id } });

    const key = await affiliateKey();
    for (const id of ids) {
      const res = await call(`/v1/feeds/products/${id}?format=google&currency=USD`, { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      const item = (await res.json<{ items: { price: string; sale_price?: string }[] }>()).items[0]!;
      expect(item).toMatchObject({ price: "129.00 USD", sale_price: "103.20 USD" });
    }

    // PATCH: half off, in both partitions; the mirror takes version 2.
    const patched = await json("PATCH", `/admin/promotions/${promo.id}`, { value: { type: "percent_off", bps: 5000 } }, admin({ "if-match": '"1"' }));
    expect(patched.status, await patched.clone().text()).toBe(200);
    expect(await env.CATALOG_1!.prepare("SELECT version FROM promotions WHERE id = ?").bind(promo.id).first()).toEqual({ version: 2 });
    for (const id of ids) {
      expect(await minUsd(id)).toBe(6450);
      await expectProductPrice(id, 6450);
    }
    expect((await listing("price_desc")).map((i) => i.price.amount)).toEqual([6450, 6450]);

    // DELETE: regular prices everywhere at once; the mirror is soft-deleted with its targets gone.
    expect((await call(`/admin/promotions/${promo.id}`, { method: "DELETE", headers: admin({ "if-match": '"2"' }) })).status).toBe(204);
    expect(await env.CATALOG_1!.prepare("SELECT version, deleted_at IS NOT NULL AS deleted FROM promotions WHERE id = ?").bind(promo.id).first()).toEqual({ version: 3, deleted: 1 });
    expect(await env.CATALOG_1!.prepare("SELECT count(*) AS n FROM promotion_targets WHERE promotion_id = ?").bind(promo.id).first()).toEqual({ n: 0 });
    for (const id of ids) {
      expect(await minUsd(id)).toBe(12900);
      await expectProductPrice(id, 12900);
    }
    expect((await listing("newest")).map((i) => i.price.compare_at)).toEqual([undefined, undefined]);
  });

  it("a product created in partition 1 after the promotion is covered by it (its write joins the local mirror)", async () => {
    const brand = uid("Late").replace(/[^A-Za-z0-9]/g, "");
    const [first] = idsInBothPartitions("pl");
    await putProducts([first], brand);
    const now = Date.now();
    const res = await json("POST", "/admin/promotions", {
      name: "Late joiners", starts_at: new Date(now).toISOString(), ends_at: new Date(now + 3_600_000).toISOString(),
      target: { type: "brand", values: [brand] }, value: { type: "amount_off", amounts: { USD: 900 } },
    }, admin());
    expect(res.status, await res.clone().text()).toBe(201);
    const [, late] = idsInBothPartitions("pl");
    await putProducts([late], brand);
    expect(await catalogDb(env, late).prepare("SELECT promotion_id FROM promotion_targets WHERE product_id = ?").bind(late).first()).toEqual({ promotion_id: (await res.json<Promotion>()).id });
    // The listing price follows when the consumer reconciles the product's prices after its product.changed.
    await vi.waitFor(async () => expect(await minUsd(late)).toBe(12000), { timeout: 8_000, interval: 100 });
    await expectProductPrice(late, 12000);
  });

  it("a mirror batch that failed is repaired by the cron: the directory commits, partition 1 catches up", async () => {
    const ids = idsInBothPartitions("pr");
    const brand = uid("Repair").replace(/[^A-Za-z0-9]/g, "");
    await putProducts(ids, brand);
    // Partition 1 refuses every batch during the write (an outage of that database).
    const broken = new Proxy(env.CATALOG_1!, {
      get: (target, prop) => (prop === "batch" ? () => Promise.reject(new Error("D1 unavailable")) : Reflect.get(target, prop).bind(target)),
    });
    const now = Date.now();
    const res = await buildApp().fetch(
      new Request(`${BASE}/admin/promotions`, {
        method: "POST",
        headers: admin({ "content-type": "application/json" }),
        body: JSON.stringify({
          name: "Repaired", starts_at: new Date(now).toISOString(), ends_at: new Date(now + 3_600_000).toISOString(),
          target: { type: "brand", values: [brand] }, value: { type: "fixed_price", amounts: { USD: 5000 } },
        }),
      }),
      { ...env, CATALOG_1: broken } as Env,
      { waitUntil: () => undefined, passThroughOnException: () => undefined, props: {} } as unknown as ExecutionContext,
    );
    expect(res.status, await res.clone().text()).toBe(201);
    const { id } = await res.json<Promotion>();
    expect(await minUsd(ids[0])).toBe(5000);
    expect(await minUsd(ids[1])).toBe(12900);
    expect(await env.CATALOG_1!.prepare("SELECT id FROM promotions WHERE id = ?").bind(id).first()).toBeNull();

    expect(await repairPromotionMirrors(env, Date.now())).toBeGreaterThanOrEqual(1);
    expect(await env.CATALOG_1!.prepare("SELECT version FROM promotions WHERE id = ?").bind(id).first()).toEqual({ version: 1 });
    expect(await minUsd(ids[1])).toBe(5000);
    await expectProductPrice(ids[1], 5000);
    // In step now: a second run finds nothing to do.
    expect(await repairPromotionMirrors(env, Date.now())).toBe(0);
  });

  it("the boundary switch updates min_prices in each partition at the start and at the end", async () => {
    const ids = idsInBothPartitions("ps");
    const brand = uid("Switch").replace(/[^A-Za-z0-9]/g, "");
    await putProducts(ids, brand);
    const start = Date.now() + 120_000;
    const res = await json("POST", "/admin/promotions", {
      name: "Later", starts_at: new Date(start).toISOString(), ends_at: new Date(start + 60_000).toISOString(),
      target: { type: "brand", values: [brand] }, value: { type: "amount_off", amounts: { USD: 2900 } },
    }, admin());
    expect(res.status, await res.clone().text()).toBe(201);
    for (const id of ids) expect(await minUsd(id)).toBe(12900);
    await switchDue(env, start + 1);
    for (const id of ids) expect(await minUsd(id)).toBe(10000);
    await switchDue(env, start + 60_001);
    for (const id of ids) expect(await minUsd(id)).toBe(12900);
  });
});

describe("webhooks from partition 1", () => {
  type Received = { endpoint: string; id: string; verified: boolean; status: number; payload: { type: string; data: Record<string, unknown> } };
  const RECEIVER = env.WEBHOOK_RECEIVER_URL;

  it("price.changed and stock.out of a product in partition 1 are delivered, signed, exactly like partition 0's", async () => {
    const name = uid("ep").replace(/[^A-Za-z0-9-]/g, "");
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    const secret = `whsec_${btoa(String.fromCharCode(...bytes))}`;
    await fetch(`${RECEIVER}/__secret/${name}`, { method: "PUT", body: secret });
    const reg = await json("POST", "/admin/webhooks", { url: `${RECEIVER}/hook/ok/${name}`, events: ["price.changed", "stock.out"], secret }, admin());
    expect(reg.status, await reg.clone().text()).toBe(201);
    // The subscription is mirrored into partition 1 (no url, no secret), so its triggers record events.
    expect(await env.CATALOG_1!.prepare("SELECT url, secret FROM webhook_endpoints WHERE id = ?").bind((await reg.json<{ id: string }>()).id).first()).toEqual({ url: "", secret: "" });

    const ids = idsInBothPartitions("pwh");
    const brand = uid("Hook").replace(/[^A-Za-z0-9]/g, "");
    await putProducts(ids, brand, 1000);
    for (const id of ids) {
      const sku = `${id}-S`.toUpperCase();
      const res = await json("PATCH", `/admin/products/${id}`, { variants: [{ sku, prices: { USD: 1200 } }] }, admin({ "if-match": '"1"' }));
      expect(res.status, await res.clone().text()).toBe(200);
    }
    const now = Date.now();
    await applyStockEvents(
      allCatalogDbs(env),
      ids.flatMap((id) => {
        const sku = `${id}-S`.toUpperCase();
        const base = { type: "stock.changed" as const, sku, location: "loc-us-east", safety_stock: 0, low_stock: 5, occurred_at: now };
        return [
          { ...base, on_hand: 9, reserved: 0, available: 9, status: "in_stock" as const, seq: 1 },
          { ...base, on_hand: 0, reserved: 0, available: 0, status: "out_of_stock" as const, seq: 2 },
        ];
      }),
      now,
    );
    await dispatchWebhooks(env);
    const got = await vi.waitFor(
      async () => {
        const r = await (await fetch(`${RECEIVER}/__received?endpoint=${name}`)).json<Received[]>();
        if (r.filter((x) => x.status < 300).length < 4) throw new Error(`not yet: ${r.length}`);
        return r;
      },
      { timeout: 15_000, interval: 100 },
    );
    expect(got.every((r) => r.verified)).toBe(true);
    for (const id of ids) {
      const sku = `${id}-S`.toUpperCase();
      const mine = got.filter((r) => r.payload.data.sku === sku).map((r) => [r.payload.type, r.payload.data.product_id]);
      expect(mine.sort()).toEqual([["price.changed", id], ["stock.out", id]]);
    }
    const priced = got.filter((r) => r.payload.type === "price.changed").map((r) => r.payload.data);
    for (const d of priced) expect(d).toMatchObject({ currency: "USD", previous_amount: 1000, amount: 1200 });
    // Moved, not copied: partition 1 keeps no event behind, the directory holds all four once.
    expect(await env.CATALOG_1!.prepare("SELECT count(*) AS n FROM webhook_events").first()).toEqual({ n: 0 });
    expect(new Set(got.map((r) => r.id)).size).toBe(4);
  });

  it("deleting the endpoint removes it from partition 1's mirror: that partition records nothing more", async () => {
    const reg = await json("POST", "/admin/webhooks", { url: `${RECEIVER}/hook/ok/${uid("gone")}`, events: ["price.changed"] }, admin());
    const { id } = await reg.json<{ id: string }>();
    expect(await env.CATALOG_1!.prepare("SELECT id FROM webhook_endpoints WHERE id = ?").bind(id).first()).toEqual({ id });
    expect((await call(`/admin/webhooks/${id}`, { method: "DELETE", headers: admin() })).status).toBe(204);
    expect(await env.CATALOG_1!.prepare("SELECT id FROM webhook_endpoints WHERE id = ?").bind(id).first()).toBeNull();
  });
});

describe("webhook endpoint mirror", () => {
  /** `env` whose CATALOG_1 adds up the rows each batch changed there. */
  function countingWrites(): { env: Env; changed: () => number } {
    let changed = 0;
    const db = env.CATALOG_1!;
    const wrapped = {
      prepare: (query: string) => db.prepare(query),
      batch: async (stmts: D1PreparedStatement[]) => {
        const out = await db.batch(stmts);
        for (const r of out) changed += r.meta.changes ?? 0;
        return out;
      },
    } as unknown as D1Database;
    return { env: { ...env, CATALOG_1: wrapped }, changed: () => changed };
  }

  it("the cron's mirror run writes nothing to partition 1 when no endpoint changed, and only the endpoint that did", async () => {
    const reg = await json("POST", "/admin/webhooks", { url: `${env.WEBHOOK_RECEIVER_URL}/hook/ok/${uid("mir")}`, events: ["price.changed"] }, admin());
    const { id } = await reg.json<{ id: string }>();
    await mirrorEndpoints(env);
    const idle = countingWrites();
    await mirrorEndpoints(idle.env);
    expect(idle.changed()).toBe(0);
    // A subscription changed in the directory (as an endpoint write does before its own mirror call).
    await env.DB.prepare("UPDATE webhook_endpoints SET events = ?, updated_at = updated_at + 1 WHERE id = ?").bind(JSON.stringify(["stock.out"]), id).run();
    const one = countingWrites();
    await mirrorEndpoints(one.env);
    expect(one.changed()).toBe(1);
    expect(await env.CATALOG_1!.prepare("SELECT events FROM webhook_endpoints WHERE id = ?").bind(id).first()).toEqual({ events: JSON.stringify(["stock.out"]) });
  });
});

describe("hot-SKU mark", () => {
  it("a SKU of a product in partition 1 can be marked hot; an unknown SKU is 404", async () => {
    const [, id] = idsInBothPartitions("phot");
    await putProducts([id], "Hotbrand");
    const sku = `${id}-S`.toUpperCase();
    const res = await json("POST", `/admin/stock/${sku}/hot`, { sub_shards: 2 }, admin());
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toMatchObject({ hot: true, state: "hot" });
    await expectProblem(await json("POST", `/admin/stock/${uid("NOPE")}/hot`, { sub_shards: 2 }, admin()), 404);
  });
});

describe("recommendations over two partitions", () => {
  type Answer = { items: { product: { id: string; price: { amount: number } | null }; reason: string }[] };
  const recs = async (path: string) => {
    const res = await call(path);
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json<Answer>()).items.map((i) => i.product.id);
  };
  /** A family of four lookalikes (two per partition: brand, model line and title words in common), all in stock. */
  async function family(prefix: string): Promise<string[]> {
    const brand = uid("Fam").replace(/[^A-Za-z0-9]/g, "");
    const line = uid("line").toLowerCase();
    const ids = [...idsInBothPartitions(prefix), ...idsInBothPartitions(prefix)];
    for (const [i, id] of ids.entries()) {
      const body = { ...productBody(id, brand, 10000 + i * 100), title: `Trail ${brand} racer ${i}`, attributes: { color: "orange", line } };
      const res = await json("PUT", `/admin/products/${id}`, body, admin());
      expect(res.status, await res.clone().text()).toBe(201);
    }
    const now = Date.now();
    await applyStockEvents(
      allCatalogDbs(env),
      ids.map((id) => ({ type: "stock.changed" as const, sku: `${id}-S`.toUpperCase(), location: "loc-us-east", on_hand: 50, reserved: 0, available: 50, safety_stock: 0, low_stock: 5, status: "in_stock" as const, seq: 1, occurred_at: now })),
      now,
    );
    return ids;
  }

  it("related and substitutes of a product list its lookalikes from both partitions", async () => {
    const ids = await family("prel");
    for (const id of ids) {
      const others = ids.filter((x) => x !== id);
      const related = await recs(`/v1/products/${id}/recommendations?intent=related&currency=USD&limit=20&include_out_of_stock=true`);
      expect(related.slice(0, 3).sort(), id).toEqual([...others].sort());
      const substitutes = await recs(`/v1/products/${id}/recommendations?intent=substitutes&currency=USD&limit=20`);
      expect(substitutes, id).toEqual(expect.arrayContaining(others));
      expect(substitutes).not.toContain(id);
    }
  });

  it("an order across partitions makes each product the other's complement, and both best sellers", async () => {
    const [a, b] = idsInBothPartitions("pco");
    await putProducts([a, b], "Combo");
    const now = Date.now();
    const event = {
      type: "reservation.committed" as const, id: uid("rsv"), occurred_at: now,
      items: [a, b].map((id) => ({ sku: `${id}-S`.toUpperCase(), quantity: 3, currency: "USD" })),
    };
    expect(await countCommittedOrder(env.DB, event, now, allCatalogDbs(env))).toEqual({ counted: true, products: [a, b].sort() });
    await recompute(env, [a, b], new Map(), undefined, now);
    expect(await recs(`/v1/products/${a}/recommendations?intent=complementary&currency=USD&include_out_of_stock=true`)).toEqual([b]);
    expect(await recs(`/v1/products/${b}/recommendations?intent=complementary&currency=USD&include_out_of_stock=true`)).toEqual([a]);
    expect(await recs("/v1/recommendations?currency=USD&include_out_of_stock=true&limit=20")).toEqual(expect.arrayContaining([a, b]));
  });

  it("a full rebuild walks the active products of both partitions, category by category", async () => {
    const ids = await family("preb");
    const { job } = await startRebuild(env);
    await advanceRebuild(env, job.id, { budgetMs: 60_000, maxChunks: Number.POSITIVE_INFINITY });
    const active = (await Promise.all(allCatalogDbs(env).map((db) => db.prepare("SELECT count(*) AS n FROM products WHERE status = 'active'").first<{ n: number }>()))).reduce((n, r) => n + r!.n, 0);
    await vi.waitFor(async () => {
      const row = await env.DB.prepare("SELECT status, processed, total FROM jobs WHERE id = ?").bind(job.id).first();
      expect(row).toEqual({ status: "completed", processed: active, total: active });
    }, { timeout: 10_000, interval: 100 });
    const stored = await env.DB.prepare("SELECT items FROM recommendations WHERE product_id = ? AND intent = 'related'").bind(ids[1]).first<{ items: string }>();
    expect((JSON.parse(stored!.items) as { id: string }[]).slice(0, 3).map((i) => i.id).sort()).toEqual(ids.filter((x) => x !== ids[1]).sort());
  });
});

describe("console lists over two partitions", () => {
  async function signedIn(): Promise<(path: string) => Promise<string>> {
    const cookies = new Map<string, string>();
    const ip = "198.51.100.201";
    const keep = (res: Response) => {
      for (const line of res.headers.getAll("set-cookie")) {
        const pair = line.split(";")[0]!;
        const eq = pair.indexOf("=");
        cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
      }
    };
    const header = () => [...cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    const form = await call("/console/sign-in", { headers: { "cf-connecting-ip": ip } });
    keep(form);
    const csrf = /name="_csrf" value="([^"]*)"/.exec(await form.text())![1]!;
    const res = await call("/console/sign-in", {
      method: "POST", redirect: "manual", body: new URLSearchParams({ token: ADMIN_TOKEN, _csrf: csrf }),
      headers: { cookie: header(), "cf-connecting-ip": ip, "content-type": "application/x-www-form-urlencoded" },
    });
    expect(res.status).toBe(303);
    keep(res);
    return async (path) => {
      const page = await call(path, { headers: { cookie: header(), "cf-connecting-ip": ip }, redirect: "manual" });
      expect(page.status).toBe(200);
      return page.text();
    };
  }

  it("low stock and recently sold out list SKUs of both partitions; the product list shows both", async () => {
    const ids = idsInBothPartitions("pcon");
    await putProducts(ids, "Consolebrand");
    const now = Date.now();
    const [low, out] = ids.map((id) => `${id}-S`.toUpperCase());
    const base = { type: "stock.changed" as const, location: "loc-us-east", reserved: 0, safety_stock: 0, low_stock: 5, occurred_at: now };
    // One SKU low (2 left) in partition 0, the other sold out in partition 1; then the reverse for a second pair.
    await applyStockEvents(allCatalogDbs(env), [
      { ...base, sku: low!, on_hand: 2, available: 2, status: "low_stock" as const, seq: 1 },
      { ...base, sku: out!, on_hand: 0, available: 0, status: "out_of_stock" as const, seq: 1 },
    ], now);
    const [low1, out0] = idsInBothPartitions("pcon2").reverse();
    await putProducts([low1!, out0!], "Consolebrand");
    await applyStockEvents(allCatalogDbs(env), [
      { ...base, sku: `${low1}-S`.toUpperCase(), on_hand: 1, available: 1, status: "low_stock" as const, seq: 1 },
      { ...base, sku: `${out0}-S`.toUpperCase(), on_hand: 0, available: 0, status: "out_of_stock" as const, seq: 1 },
    ], now);
    const get = await signedIn();
    const stock = await get("/console/stock");
    const lowList = stock.slice(stock.indexOf('id="low-h"'), stock.indexOf('id="sold-h"'));
    const soldList = stock.slice(stock.indexOf('id="sold-h"'));
    for (const sku of [low!, `${low1}-S`.toUpperCase()]) expect(lowList).toContain(sku);
    for (const sku of [out!, `${out0}-S`.toUpperCase()]) expect(soldList).toContain(sku);
    // Ordered by available across partitions: 1 left (partition 1) before 2 left (partition 0).
    expect(lowList.indexOf(`${low1}-S`.toUpperCase())).toBeLessThan(lowList.indexOf(low!));
    for (const id of ids) expect(await get(`/console/products?q=${id}`)).toContain(`Partitioned ${id}`);
  });
});

describe("affiliate clicks over two partitions", () => {
  it("the Buy link of a product in either partition redirects to its page and credits the affiliate", async () => {
    const ids = idsInBothPartitions("pa-click");
    await putProducts(ids, "ClickBrand");
    const tracking = uid("trk").toLowerCase().replace(/[^a-z0-9]/g, "");
    const created = await json("POST", "/admin/affiliates", { name: "Click publisher", tracking_id: tracking, allowed_origins: [] }, admin());
    expect(created.status, await created.clone().text()).toBe(201);
    const affiliateId = (await created.json<{ affiliate: { id: string } }>()).affiliate.id;
    for (const id of ids) {
      const res = await call(`/r/${tracking}/${id}`, { redirect: "manual" });
      expect(res.status, `${id} (partition ${partitionOf(env, id)}): ${await res.clone().text()}`).toBe(302);
      expect(res.headers.get("location")).toContain(`/p/${id}`);
    }
    const { results } = await env.DB.prepare("SELECT product_id FROM clicks WHERE affiliate_id = ? ORDER BY product_id").bind(affiliateId).all<{ product_id: string }>();
    expect(results.map((r) => r.product_id)).toEqual([...ids].sort());
  });
});
