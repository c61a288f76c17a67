import { createExecutionContext, createMessageBatch, createScheduledController, env, runDurableObjectAlarm, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { handleScheduled } from "../src/cron";
import { consumeRecommendationMessages } from "../src/recommendations/events";
import { CHUNKS_PER_STEP, handleRebuildMessage, recommendationsTick, startRebuild, type RebuildMessage } from "../src/recommendations/jobs";
import { shardCount, shardName } from "../src/stock/routing";
import { bundleMembers, bundleOf, familyOf, FAMILY_SIZE, orders, product, productId } from "../src/seed/generate";
import { seedApiKeys } from "./helpers/api-keys";
import { insertProduct, seedProducts } from "./helpers/catalog-fixtures";
import { admin, call, expectProblem, json, storefront, uid } from "./helpers/http";

const TOTAL = 200;
const ORDERS = 100;

type Card = { id: string; title: string; image: { url: string } | null; price: { amount: number; currency: string } | null; availability: { status: string; in_stock: boolean } };
type Answer = { product_id: string | null; intent: string; personalised: boolean; currency: string; locale: string; version: number | null; items: { product: Card; reason: string; score: number }[] };

async function recs(path: string, headers: Record<string, string> = {}): Promise<{ res: Response; body: Answer }> {
  const res = await call(path, { headers });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${text}`);
  return { res, body: JSON.parse(text) as Answer };
}
const ids = (a: Answer) => a.items.map((i) => i.product.id);

async function commitOrder(skus: string[]): Promise<string> {
  const created = await json("POST", "/v1/reservations", { items: skus.map((sku) => ({ sku, quantity: 1 })) }, storefront({ "idempotency-key": uid("idem") }));
  if (created.status !== 201) throw new Error(`reserve ${skus.join(",")}: ${created.status} ${await created.text()}`);
  const { id } = await created.json<{ id: string }>();
  const committed = await call(`/v1/reservations/${id}/commit`, { method: "POST", headers: storefront() });
  if (committed.status !== 200) throw new Error(`commit ${id}: ${committed.status} ${await committed.text()}`);
  return id;
}

async function countedOrders(): Promise<number> {
  return (await env.DB.prepare("SELECT count(*) AS n FROM counted_orders").first<{ n: number }>())!.n;
}

async function cronTick(): Promise<void> {
  const ctx = createExecutionContext();
  await handleScheduled(createScheduledController({ scheduledTime: Date.now(), cron: "* * * * *" }), env, ctx);
  await waitOnExecutionContext(ctx);
}

async function storedList(id: string, intent: string): Promise<string[]> {
  const row = await env.DB.prepare("SELECT items FROM recommendations WHERE product_id = ? AND intent = ?").bind(id, intent).first<{ items: string }>();
  return row ? (JSON.parse(row.items) as { id: string }[]).map((i) => i.id) : [];
}

/** A product like seed product `base` (same brand, category, line) with its own id, SKUs and stock. */
async function lookalike(base: number, opts: { onHand?: number; markets?: string[] } = {}) {
  const p = await insertProduct(env.DB, {
    base,
    markets: opts.markets ?? [],
    variants: [{ ...product(base).variants[0]!, sku: uid("SKU-R") }],
    stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-us-east", onHand: opts.onHand ?? 10 })),
  });
  return { id: p.id, sku: p.variants[0]!.sku };
}

let rebuildMs = 0;

beforeAll(async () => {
  await seedApiKeys(env.DB);
  await seedProducts(env.DB, TOTAL);
  // The planted orders buy each product's first variant: give those plenty of stock everywhere, so every
  // generated order can be committed (the seed sells some variants out on purpose).
  await env.DB.batch([
    env.DB.prepare("UPDATE stock_baseline SET on_hand = 1000, safety_stock = 0 WHERE sku LIKE 'SKU-______-1'"),
    env.DB.prepare("UPDATE availability SET on_hand = 1000, available = 1000, status = 'in_stock' WHERE sku LIKE 'SKU-______-1'"),
    env.DB.prepare("UPDATE products SET in_stock = 1 WHERE id IN (SELECT product_id FROM variants WHERE sku LIKE 'SKU-______-1')"),
  ]);

  // Order history through the reservation API: hold, then commit. Only commits count.
  const planted = orders(TOTAL, ORDERS);
  const t0 = Date.now();
  for (let i = 0; i < planted.length; i += 20) await Promise.all(planted.slice(i, i + 20).map((o) => commitOrder(o.skus)));
  console.log(`REC ${planted.length} orders committed in ${Date.now() - t0} ms`);
  // The consumer also works through every hold's and commit's stock events: slow on a busy 2-core machine.
  let polls = 0;
  await vi.waitFor(
    async () => {
      const n = await countedOrders();
      if (++polls % 20 === 0) {
        console.log(`REC ${n}/${planted.length} orders counted after ${Date.now() - t0} ms`);
        // Alarms deliver at least once and may run late on a loaded machine: nudge every shard's outbox flush.
        for (let s = 0; s < shardCount(env); s++) await runDurableObjectAlarm(env.STOCK.getByName(shardName(s)));
      }
      expect(n).toBe(planted.length);
    },
    { timeout: 240_000, interval: 500 },
  );
  console.log(`REC orders counted after ${Date.now() - t0} ms`);

  const started = Date.now();
  const res = await call("/admin/recommendations/rebuild", { method: "POST", headers: admin() });
  expect(res.status).toBe(202);
  const { job } = await res.json<{ job: { id: string } }>();
  await vi.waitFor(
    async () => {
      const m = await (await call("/admin/metrics", { headers: admin() })).json<{ recommendations: { last_rebuild: { id: string; processed: number; total: number } | null } }>();
      expect(m.recommendations.last_rebuild?.id).toBe(job.id);
      expect(m.recommendations.last_rebuild!.processed).toBe(m.recommendations.last_rebuild!.total);
    },
    { timeout: 60_000, interval: 200 },
  );
  rebuildMs = Date.now() - started;
}, 420_000);

describe("quality on the planted structure", () => {
  it("complementary: recall@5 ≥ 0.9 against the planted bundles, learned from orders committed through the reservation API", async () => {
    let sum = 0;
    let n = 0;
    for (let k = 1; k <= TOTAL; k++) {
      const bundle = bundleOf(familyOf(k));
      if (bundle === null) continue;
      const planted = bundleMembers(bundle, (k - 1) % FAMILY_SIZE, TOTAL).filter((id) => id !== productId(k));
      if (!planted.length) continue;
      const top5 = (await storedList(productId(k), "complementary")).slice(0, 5);
      sum += planted.filter((id) => top5.includes(id)).length / planted.length;
      n += 1;
    }
    expect(n).toBeGreaterThan(40);
    const recall = sum / n;
    console.log(`complementary recall@5 = ${recall.toFixed(3)} over ${n} products; rebuild of ${TOTAL} products took ${rebuildMs} ms`);
    expect(recall).toBeGreaterThanOrEqual(0.9);
  });

  it("related: recall@5 ≥ 0.8 against the planted families", async () => {
    let sum = 0;
    for (let k = 1; k <= TOTAL; k++) {
      const family = familyOf(k);
      const planted = Array.from({ length: FAMILY_SIZE }, (_, i) => family * FAMILY_SIZE + i + 1).filter((m) => m !== k).map(productId);
      const top5 = (await storedList(productId(k), "related")).slice(0, 5);
      sum += planted.filter((id) => top5.includes(id)).length / planted.length;
    }
    const recall = sum / TOTAL;
    console.log(`related recall@5 = ${recall.toFixed(3)} over ${TOTAL} products`);
    expect(recall).toBeGreaterThanOrEqual(0.8);
  });

  it("the rebuild reports progress and its last finished run in /admin/metrics", async () => {
    const m = await (await call("/admin/metrics", { headers: admin() })).json<{ recommendations: { last_rebuild: { status: string; total: number; duration_ms: number }; rebuild_running: unknown } }>();
    expect(m.recommendations.last_rebuild.status).toBe("completed");
    expect(m.recommendations.last_rebuild.total).toBe(TOTAL);
    expect(m.recommendations.last_rebuild.duration_ms).toBeGreaterThanOrEqual(0);
    expect(m.recommendations.rebuild_running).toBeNull();
  });
});

describe("a full rebuild as production runs it: a chain of small steps", () => {
  it("each queue message runs at most CHUNKS_PER_STEP chunks and sends the next; two copies of a message delivered at once advance it once; the cron continues a chain whose message was lost", async () => {
    const sent: RebuildMessage[] = [];
    const queue = { send: async (body: RebuildMessage) => void sent.push(body) } as unknown as Queue;
    const prod = { ...env, ENVIRONMENT: "production", EVENTS: queue } as Env;
    const jobRow = (id: string) => env.DB.prepare("SELECT status, processed, total, cursor FROM jobs WHERE id = ?").bind(id).first<{ status: string; processed: number; total: number; cursor: string }>();
    const before = await env.DB.prepare("SELECT count(*) AS n, coalesce(sum(version), 0) AS v FROM recommendations").first<{ n: number; v: number }>();

    const { job, started } = await startRebuild(prod);
    expect(started).toBe(true);
    const chunks = (JSON.parse(job.cursor!) as { cats: string[] }).cats.length; // the test catalog has < 400 products per category
    expect(chunks).toBeGreaterThan(2 * CHUNKS_PER_STEP);
    expect(sent).toHaveLength(1);

    // Step 1, delivered twice at once: the cursor's compare-and-set lets one of them advance.
    const first = sent.shift()!;
    await Promise.all([handleRebuildMessage(prod, first), handleRebuildMessage(prod, first)]);
    let row = await jobRow(job.id);
    expect(row!.processed).toBeGreaterThan(0);
    expect((JSON.parse(row!.cursor) as { ci: number }).ci).toBe(CHUNKS_PER_STEP);
    expect(sent).toHaveLength(1);

    // The next message is lost. The cron leaves a chain alone while it is fresh, and continues it once stalled.
    sent.length = 0;
    await recommendationsTick(prod);
    expect((await jobRow(job.id))!.processed).toBe(row!.processed);
    await recommendationsTick(prod, { now: () => Date.now() + 3 * 60_000 });
    row = await jobRow(job.id);
    expect((JSON.parse(row!.cursor) as { ci: number }).ci).toBe(2 * CHUNKS_PER_STEP);
    expect(sent).toHaveLength(1);

    // The rest of the chain, one message at a time.
    let steps = 2;
    let ci = 2 * CHUNKS_PER_STEP;
    while (sent.length) {
      await handleRebuildMessage(prod, sent.shift()!);
      steps += 1;
      const next = await jobRow(job.id);
      const nextCi = next!.status === "completed" ? chunks : (JSON.parse(next!.cursor) as { ci: number }).ci;
      expect(nextCi - ci).toBeLessThanOrEqual(CHUNKS_PER_STEP);
      ci = nextCi;
      expect(steps).toBeLessThan(100);
    }
    row = await jobRow(job.id);
    expect(row).toMatchObject({ status: "completed", processed: TOTAL, total: TOTAL });
    expect(steps).toBeGreaterThanOrEqual(Math.ceil(chunks / CHUNKS_PER_STEP));
    // Same inputs as the rebuild before it: no list changed, so nothing was rewritten.
    expect(await env.DB.prepare("SELECT count(*) AS n, coalesce(sum(version), 0) AS v FROM recommendations").first()).toEqual(before);
  });
});

describe("GET /v1/products/:id/recommendations", () => {
  it("related: similar products as cards (title, image, price in the requested currency, availability), localised, cached at the edge", async () => {
    const { res, body } = await recs("/v1/products/p-000001/recommendations?intent=related&currency=EUR&locale=de&limit=4&include_out_of_stock=true");
    expect(body.intent).toBe("related");
    expect(body.currency).toBe("EUR");
    expect(body.version).toBeGreaterThanOrEqual(1);
    expect(body.items).toHaveLength(4);
    expect(ids(body)).not.toContain("p-000001");
    // The family shares brand, category and model line: it fills the top.
    expect(ids(body).every((id) => familyOf(Number(id.slice(2))) === 0)).toBe(true);
    const first = body.items[0]!;
    expect(first.reason).toBe("similar");
    expect(first.score).toBeGreaterThan(0);
    expect(first.product.price?.currency).toBe("EUR");
    expect(first.product.image?.url).toMatch(/^https:/);
    const seed = product(Number(first.product.id.slice(2)));
    expect(first.product.price?.amount).toBe(Math.min(...seed.variants.map((v) => v.prices.EUR!)));
    expect(first.product.title).toBe(seed.translations.de!.title);
    expect(res.headers.get("etag")).toBeTruthy();
    const again = await recs("/v1/products/p-000001/recommendations?intent=related&currency=EUR&locale=de&limit=4&include_out_of_stock=true");
    expect(again.res.headers.get("x-cache-tier")).toBe("edge");
    expect(again.body).toEqual(body);
    const notModified = await call("/v1/products/p-000001/recommendations?intent=related&currency=EUR&locale=de&limit=4&include_out_of_stock=true", { headers: { "if-none-match": res.headers.get("etag")! } });
    expect(notModified.status).toBe(304);
  });

  it("edge hits of one cached answer still filter per request: limit, exclude and market each change the answer", async () => {
    const base = "/v1/products/p-000003/recommendations?intent=related&currency=USD&locale=en&include_out_of_stock=true";
    const full = (await recs(`${base}&limit=6`)).body;
    expect(full.items.length).toBeGreaterThanOrEqual(4);
    const [hit, fewer] = [await recs(`${base}&limit=6`), await recs(`${base}&limit=2`)];
    expect(hit.res.headers.get("x-cache-tier")).toBe("edge");
    expect(fewer.res.headers.get("x-cache-tier")).toBe("edge");
    expect(hit.body).toEqual(full);
    expect(ids(fewer.body)).toEqual(ids(full).slice(0, 2));
    const skipped = ids(full)[0]!;
    const without = (await recs(`${base}&limit=6&exclude=${skipped}`)).body;
    expect(ids(without)).not.toContain(skipped);
    expect(ids(without).slice(0, 3)).toEqual(ids(full).slice(1, 4));
    // The same request again after those: still the unfiltered answer, not a neighbour's.
    expect((await recs(`${base}&limit=6`)).body).toEqual(full);
  });

  it("defaults: intent related, limit 8", async () => {
    const { body } = await recs("/v1/products/p-000002/recommendations?include_out_of_stock=true");
    expect(body.intent).toBe("related");
    expect(body.items.length).toBeLessThanOrEqual(8);
    expect(body.items.length).toBeGreaterThanOrEqual(4);
  });

  it("complementary: the planted bundle partners, reason bought_together", async () => {
    // p-000001 is in bundle 0 with p-000006 and p-000011 (same position in families 1 and 2).
    const { body } = await recs("/v1/products/p-000001/recommendations?intent=complementary&include_out_of_stock=true&limit=5");
    expect(ids(body).slice(0, 2).sort()).toEqual(["p-000006", "p-000011"]);
    expect(body.items[0]!.reason).toBe("bought_together");
  });

  it("substitutes: in stock only, never the product itself, same category, even with include_out_of_stock=true", async () => {
    const soldOut = await lookalike(1, { onHand: 0 });
    const other = await lookalike(1, { onHand: 7 });
    const { body } = await recs(`/v1/products/p-000001/recommendations?intent=substitutes&limit=20&include_out_of_stock=true`);
    expect(body.items.length).toBeGreaterThan(0);
    expect(ids(body)).not.toContain("p-000001");
    expect(ids(body)).not.toContain(soldOut.id);
    expect(ids(body)).toContain(other.id);
    expect(body.items.every((i) => i.product.availability.in_stock && i.reason === "substitute")).toBe(true);
    const { results } = await env.DB.prepare("SELECT DISTINCT category_id AS c FROM products WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(ids(body))).all<{ c: string }>();
    expect(results.map((r) => r.c)).toEqual([product(1).categoryId]);
    // Substitutes of a sold-out product: the point of the intent.
    const s2 = await recs(`/v1/products/${soldOut.id}/recommendations?intent=substitutes&limit=5`);
    expect(s2.body.items.length).toBe(5);
    expect(ids(s2.body)).not.toContain(soldOut.id);
  });

  it("substitutes: the nearest prices on both sides of the product in a category larger than one band of candidates; a product with no price in the currency still gets substitutes", async () => {
    const category = uid("cat-band");
    await env.DB.prepare("INSERT INTO categories (id, slug, name, parent_id, path, depth, position) VALUES (?, ?, 'Band', NULL, ?, 0, 0)").bind(category, category, `/${category}/`).run();
    const seedVariant = product(1).variants[0]!;
    // 150 equally similar products 100 apart (1,000 … 15,900 USD cents): the ranking is by price closeness alone.
    const make = (usd: number | null, onHand = 10) =>
      insertProduct(env.DB, {
        base: 1,
        categoryId: category,
        variants: [{ ...seedVariant, sku: uid("SKU-B"), prices: usd === null ? { GBP: 5000 } : { USD: usd, EUR: usd } }],
        stockFor: (skus) => skus.map((sku) => ({ sku, locationId: "loc-us-east", onHand })),
      });
    const priced: { id: string; usd: number }[] = [];
    for (let i = 0; i < 150; i += 15) {
      priced.push(...(await Promise.all(Array.from({ length: 15 }, (_, k) => 1000 + 100 * (i + k)).map(async (usd) => ({ id: (await make(usd)).id, usd })))));
    }
    const owner = priced[70]!; // 8,000: 70 cheaper, 79 dearer
    const soldOutNear = await make(8050, 0);
    const { body } = await recs(`/v1/products/${owner.id}/recommendations?intent=substitutes&limit=20&currency=USD`);
    const closeness = (usd: number) => Math.min(usd, owner.usd) / Math.max(usd, owner.usd);
    const expected = priced
      .filter((p) => p.id !== owner.id)
      .sort((a, b) => closeness(b.usd) - closeness(a.usd))
      .slice(0, 20)
      .map((p) => p.id);
    expect(new Set(ids(body))).toEqual(new Set(expected));
    expect(ids(body)).not.toContain(soldOutNear.id);
    const prices = body.items.map((i) => i.product.price!.amount);
    expect(prices.some((p) => p < owner.usd) && prices.some((p) => p > owner.usd)).toBe(true);
    // No USD price: compared with nothing, it is offered from the category's 60 cheapest in-stock products instead.
    const unpriced = await make(null);
    const fallback = await recs(`/v1/products/${unpriced.id}/recommendations?intent=substitutes&limit=20&currency=USD`);
    expect(fallback.body.items).toHaveLength(20);
    expect(fallback.body.items.every((i) => i.product.price!.amount <= 1000 + 59 * 100)).toBe(true);
  });

  it("bad input gets 400 problem+json; unknown products 404", async () => {
    for (const q of ["intent=trending", "limit=0", "limit=1000", "limit=abc", "currency=XYZ", "exclude=bad%20id", "market=12345"]) {
      await expectProblem(await call(`/v1/products/p-000001/recommendations?${q}`), 400);
    }
    await expectProblem(await call("/v1/products/%24bad%21/recommendations"), 400);
    await expectProblem(await call("/v1/products/p-999999/recommendations"), 404);
  });
});

describe("filtering, pins and freshness", () => {
  it("market and stock filtering: items not sold in the shopper's market and sold-out items are left out", async () => {
    const owner = await lookalike(16);
    const usOnly = await lookalike(16, { markets: ["US"] });
    const euOnly = await lookalike(16, { markets: ["EU"] });
    const soldOut = await lookalike(16, { onHand: 0 });
    const put = await json("PUT", `/admin/products/${owner.id}/recommendations`, { related: [usOnly.id, euOnly.id, soldOut.id] }, admin());
    expect(put.status).toBe(200);
    const base = `/v1/products/${owner.id}/recommendations?intent=related&limit=20`;
    const us = ids((await recs(base, { "x-shopper-country": "US" })).body);
    expect(us).toContain(usOnly.id);
    expect(us).not.toContain(euOnly.id);
    expect(us).not.toContain(soldOut.id);
    const de = ids((await recs(`${base}&market=DE`)).body);
    expect(de).toContain(euOnly.id);
    expect(de).not.toContain(usOnly.id);
    const unknown = ids((await recs(base)).body);
    expect(unknown).not.toContain(usOnly.id);
    expect(unknown).not.toContain(euOnly.id);
    const withOos = (await recs(`${base}&include_out_of_stock=true`, { "x-shopper-country": "US" })).body;
    const oos = withOos.items.find((i) => i.product.id === soldOut.id);
    expect(oos?.product.availability).toEqual({ status: "out_of_stock", in_stock: false });
  });

  it("cards show the effective price: a promotion that starts on a recommended item purges the cached answer and lowers the card's price in the requested currency", async () => {
    const owner = await lookalike(31);
    const item = await lookalike(31);
    expect((await json("PUT", `/admin/products/${owner.id}/recommendations`, { related: [item.id] }, admin())).status).toBe(200);
    const url = `/v1/products/${owner.id}/recommendations?intent=related&currency=GBP&limit=1`;
    const before = (await recs(url)).body.items[0]!;
    expect(before.product.id).toBe(item.id);
    expect(before.product.price!.amount).toBe(product(31).variants[0]!.prices.GBP);
    const promo = await json("POST", "/admin/promotions", { name: "Card price", starts_at: new Date(Date.now() - 1_000).toISOString(), target: { type: "products", values: [item.id] }, value: { type: "percent_off", bps: 2000 } }, admin());
    expect(promo.status).toBe(201);
    expect((await recs(url)).res.headers.get("x-cache-tier")).toBe("edge");
    // The promotion's product.changed event purges the cached answer that shows the item.
    await vi.waitFor(
      async () => {
        const after = (await recs(url)).body.items[0]!;
        expect(after.product.price).toMatchObject({ currency: "GBP", amount: Math.round(before.product.price!.amount * 0.8) });
      },
      { timeout: 60_000, interval: 250 },
    );
  }, 90_000);

  it("pins: pinned items first (reason pinned), excluded ids never, If-Match guards concurrent edits", async () => {
    const target = "p-000021";
    const before = ids((await recs(`/v1/products/${target}/recommendations?intent=related&include_out_of_stock=true&limit=20`)).body);
    const victim = before[0]!;
    const put = await json("PUT", `/admin/products/${target}/recommendations`, { complementary: ["p-000200", "p-000150"], exclude: [victim] }, admin());
    expect(put.status).toBe(200);
    expect(put.headers.get("etag")).toBe('"1"');
    // Purged at once: the cached answers are not served any more.
    const comp = (await recs(`/v1/products/${target}/recommendations?intent=complementary&include_out_of_stock=true&market=US`)).body;
    expect(ids(comp).slice(0, 2)).toEqual(["p-000200", "p-000150"].filter((id) => product(Number(id.slice(2))).markets.every((m) => m === "US")));
    expect(comp.items[0]!.reason).toBe("pinned");
    const related = ids((await recs(`/v1/products/${target}/recommendations?intent=related&include_out_of_stock=true&limit=20`)).body);
    expect(related).not.toContain(victim);

    await expectProblem(await json("PUT", `/admin/products/${target}/recommendations`, { complementary: [] }, admin()), 428);
    await expectProblem(await json("PUT", `/admin/products/${target}/recommendations`, { complementary: [] }, admin({ "if-match": '"7"' })), 412);
    const racers = await Promise.all([1, 2, 3].map(() => json("PUT", `/admin/products/${target}/recommendations`, { complementary: ["p-000100"] }, admin({ "if-match": '"1"' }))));
    expect(racers.map((r) => r.status).sort()).toEqual([200, 412, 412]);
    await expectProblem(await json("PUT", `/admin/products/${target}/recommendations`, { related: ["p-nope"] }, admin({ "if-match": '"2"' })), 422);
    await expectProblem(await json("PUT", `/admin/products/${target}/recommendations`, { related: ["bad id"] }, admin({ "if-match": '"2"' })), 400);
    await expectProblem(await json("PUT", "/admin/products/p-nope/recommendations", { related: [] }, admin()), 404);
    await expectProblem(await json("PUT", `/admin/products/${target}/recommendations`, { related: [] }), 401);
  });

  it("incremental recompute after an order: a new co-purchase shows up after the next cron tick, replacing the cached answer", async () => {
    const a = await lookalike(31);
    const b = await lookalike(62);
    const path = `/v1/products/${a.id}/recommendations?intent=complementary`;
    expect(ids((await recs(path)).body)).toEqual([]);
    expect((await recs(path)).res.headers.get("x-cache-tier")).toBe("edge");
    const before = await countedOrders();
    await commitOrder([a.sku, b.sku]);
    await vi.waitFor(async () => expect(await countedOrders()).toBe(before + 1), { timeout: 90_000, interval: 250 });
    expect(await storedList(a.id, "complementary")).toEqual([]);
    await cronTick();
    expect(await storedList(a.id, "complementary")).toEqual([b.id]);
    const after = await recs(path);
    expect(after.res.headers.get("x-cache-tier")).not.toBe("edge");
    expect(ids(after.body)).toEqual([b.id]);
    expect(after.body.items[0]!.reason).toBe("bought_together");
    // The same order delivered again is not counted twice.
    const pairs = await env.DB.prepare("SELECT count FROM co_purchases WHERE product_a = ? AND product_b = ?").bind(a.id, b.id).first<{ count: number }>();
    expect(pairs!.count).toBe(1);
  }, 120_000);

  it("a reservation.committed event delivered several times, even concurrently, is counted once", async () => {
    const a = await lookalike(71);
    const b = await lookalike(76);
    const event = {
      type: "reservation.committed",
      id: uid("rsv"),
      items: [
        { sku: a.sku, quantity: 2, location: "loc-us-east", unit_price: 100, currency: "EUR" },
        { sku: b.sku, quantity: 1, location: "loc-us-east", unit_price: 100, currency: "EUR" },
      ],
      occurred_at: Date.now(),
    };
    const batch = createMessageBatch("edgeshelf-events", [1, 2, 3, 4].map((n) => ({ id: `dup-${event.id}-${n}`, timestamp: new Date(), attempts: 1, body: event })));
    await Promise.all([1, 2, 3].map(() => consumeRecommendationMessages(batch, env)));
    const pair = await env.DB.prepare("SELECT count FROM co_purchases WHERE product_a = ? AND product_b = ?").bind(b.id, a.id).first<{ count: number }>();
    expect(pair!.count).toBe(1);
    const units = await env.DB.prepare("SELECT sum(units) AS u FROM sales_daily WHERE product_id = ? AND currency = 'EUR'").bind(a.id).first<{ u: number }>();
    expect(units!.u).toBe(2);
  });

  it("purge after a sell-out: a cached answer stops showing an item once it sells out", async () => {
    const owner = await lookalike(41);
    const item = await lookalike(41, { onHand: 1 });
    await json("PUT", `/admin/products/${owner.id}/recommendations`, { related: [item.id] }, admin());
    const path = `/v1/products/${owner.id}/recommendations?intent=related&limit=20`;
    expect(ids((await recs(path)).body)).toContain(item.id);
    expect((await recs(path)).res.headers.get("x-cache-tier")).toBe("edge");
    await commitOrder([item.sku]);
    await vi.waitFor(
      async () => {
        const r = await recs(path);
        expect(ids(r.body)).not.toContain(item.id);
      },
      { timeout: 90_000, interval: 250 },
    );
    const withOos = (await recs(`${path}&include_out_of_stock=true`)).body.items.find((i) => i.product.id === item.id);
    expect(withOos?.product.availability.status).toBe("out_of_stock");
  }, 120_000);
});

describe("GET /v1/recommendations (session context, privacy)", () => {
  it("blends related and complementary across the context, leaving out the context and excluded ids; private, never stored", async () => {
    const context = ["p-000001", "p-000051"];
    const { res, body } = await recs(`/v1/recommendations?context=${context.join(",")}&limit=20&include_out_of_stock=true`);
    expect(body.personalised).toBe(true);
    expect(res.headers.get("cache-control")).toBe("private, no-store");
    const got = ids(body);
    for (const c of context) expect(got).not.toContain(c);
    // Both context products contribute: family members of each.
    expect(got.some((id) => familyOf(Number(id.slice(2))) === familyOf(1))).toBe(true);
    expect(got.some((id) => familyOf(Number(id.slice(2))) === familyOf(51))).toBe(true);
    // Bundle partners of the most recent product rank high.
    expect(got.slice(0, 6)).toEqual(expect.arrayContaining(["p-000006", "p-000011"]));
    const excluded = ids((await recs(`/v1/recommendations?context=${context.join(",")}&limit=20&include_out_of_stock=true&exclude=p-000006,${got[1]}`)).body);
    expect(excluded).not.toContain("p-000006");
    expect(excluded).not.toContain(got[1]);
    const tables = await env.DB.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND (name LIKE '%session%' OR name LIKE '%history%' OR name LIKE '%profile%')").first<{ n: number }>();
    expect(tables!.n).toBe(0);
  });

  it("consent switch: Sec-GPC: 1 or consent=none gives non-personalised best sellers and ignores the context", async () => {
    const best = (await recs("/v1/recommendations?limit=10&include_out_of_stock=true&market=US")).body;
    expect(best.intent).toBe("best_sellers");
    expect(best.personalised).toBe(false);
    expect(best.items.length).toBe(10);
    expect(best.items[0]!.reason).toBe("best_seller");
    const { results } = await env.DB.prepare("SELECT product_id FROM sales_daily WHERE currency = 'USD' GROUP BY product_id ORDER BY sum(units) DESC, product_id LIMIT 1").all<{ product_id: string }>();
    expect(best.items[0]!.product.id).toBe(results[0]!.product_id);
    const gpc = (await recs("/v1/recommendations?context=p-000001&limit=10&include_out_of_stock=true&market=US", { "sec-gpc": "1" })).body;
    expect(gpc.personalised).toBe(false);
    expect(gpc.items).toEqual(best.items);
    const none = (await recs("/v1/recommendations?context=p-000001&consent=none&limit=10&include_out_of_stock=true&market=US")).body;
    expect(none.items).toEqual(best.items);
    const withConsent = (await recs("/v1/recommendations?context=p-000001&limit=10&include_out_of_stock=true&market=US")).body;
    expect(withConsent.personalised).toBe(true);
    expect(withConsent.items).not.toEqual(best.items);
  });

  it("bad input: more than 20 context ids, malformed ids, bad limit → 400 problem+json", async () => {
    const many = Array.from({ length: 21 }, (_, i) => productId(i + 1)).join(",");
    await expectProblem(await call(`/v1/recommendations?context=${many}`), 400);
    await expectProblem(await call("/v1/recommendations?context=p-000001,bad%20id"), 400);
    await expectProblem(await call("/v1/recommendations?context=p-000001,%3Cscript%3E"), 400);
    await expectProblem(await call("/v1/recommendations?limit=0"), 400);
    await expectProblem(await call("/v1/recommendations?limit=1000"), 400);
    await expectProblem(await call("/v1/recommendations?consent=maybe"), 400);
    const ok = Array.from({ length: 20 }, (_, i) => productId(i + 1)).join(",");
    expect((await call(`/v1/recommendations?context=${ok}`)).status).toBe(200);
  });
});

describe("documentation", () => {
  it("the OpenAPI document describes every recommendations endpoint", async () => {
    const doc = await (await call("/openapi.json")).json<{ paths: Record<string, Record<string, unknown>> }>();
    expect(Object.keys(doc.paths["/v1/products/{id}/recommendations"] ?? {})).toContain("get");
    expect(Object.keys(doc.paths["/v1/recommendations"] ?? {})).toContain("get");
    expect(Object.keys(doc.paths["/admin/products/{id}/recommendations"] ?? {})).toEqual(expect.arrayContaining(["put", "get"]));
    expect(Object.keys(doc.paths["/admin/recommendations/rebuild"] ?? {})).toContain("post");
  });
});
