import { createExecutionContext, createMessageBatch, createScheduledController, env, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { handleQueue } from "../src/events/queue";
import { handleScheduled } from "../src/cron";
import { fillProductDoc, putProductDocIfNewer, readProductDoc } from "../src/catalog/projection-store";
import { loadProductDocument, productKey, type ProductDocument } from "../src/catalog/document";
import { productCacheUrls } from "../src/catalog/cache-keys";
import { EVENTS_MAX_RETRIES, retryDelaySeconds, settleDeadLetterNotes } from "../src/events/retry";
import { REDRIVE_AFTER_MS } from "../src/events/redrive";
import { dispatch, dispatchTable, type EventHandler } from "../src/events/dispatch";
import { catalogEventHandler } from "../src/events/consumer";
import { CloudflareTagPurger, LocalCachePurger, purgerFor, type Purger } from "../src/events/purger";
import { admin, BASE, call, expectProblem, json, uid } from "./helpers/http";
import { insertProduct, seedCategories } from "./helpers/catalog-fixtures";

type Doc = ProductDocument;

function productBody(id: string, overrides: Record<string, unknown> = {}) {
  return {
    slug: id.toLowerCase(),
    title: `Trail Shoe ${id}`,
    description: "Grippy.",
    brand: "Kestrel",
    category_id: "cat-running",
    attributes: { color: "orange", terrain: "trail" },
    translations: { de: { title: `Trailschuh ${id}` } },
    variants: [
      { sku: `${id}-S`, title: "S", options: { size: "S" }, prices: { USD: 12900, EUR: 11900 } },
      { sku: `${id}-M`, title: "M", options: { size: "M" }, prices: { USD: 13900, EUR: 12900 } },
    ],
    ...overrides,
  };
}

async function createProduct(id = uid("p")): Promise<{ id: string; version: number }> {
  const res = await json("PUT", `/admin/products/${id}`, productBody(id), admin());
  expect(res.status, await res.clone().text()).toBe(201);
  return { id, version: Number(JSON.parse(res.headers.get("etag")!)) };
}

const patchPrice = (id: string, version: number, usd: number) =>
  json("PATCH", `/admin/products/${id}`, { variants: [{ sku: `${id}-S`, prices: { USD: usd } }] }, admin({ "if-match": `"${version}"` }));

/** Consumes one product.changed event through the catalog handler; returns every id and tag it purged. */
async function consumeRecordingPurges(id: string, version: number): Promise<string[]> {
  const purged: string[] = [];
  const recording: Purger = {
    purgeProduct: async (p, tags) => void purged.push(p.id, ...tags),
    purgeTags: async (tags) => void purged.push(...tags),
  };
  const batch = createMessageBatch("edgeshelf-events", [{ id: uid("changed"), timestamp: new Date(), attempts: 1, body: { type: "product.changed", id, version, occurred_at: Date.now() } }]);
  await dispatch(batch, env, dispatchTable([catalogEventHandler()]), { purger: recording });
  return purged;
}

async function outboxRows(id: string) {
  const { results } = await env.DB.prepare("SELECT id, type, version, sent_at, payload FROM outbox WHERE entity_id = ? ORDER BY id").bind(id).all<{
    id: number;
    type: string;
    version: number;
    sent_at: number | null;
    payload: string;
  }>();
  return results;
}

/** Runs a request through the Worker's real fetch handler with some bindings swapped (fault injection). */
async function fetchWithEnv(overrides: Partial<Env>, path: string, init: RequestInit): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(BASE + path, init), { ...env, ...overrides } as Env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const failingQueue = (): Queue => ({
  send: async () => {
    throw new Error("queue unavailable (injected)");
  },
  sendBatch: async () => {
    throw new Error("queue unavailable (injected)");
  },
}) as unknown as Queue;

beforeAll(async () => {
  await seedCategories(env.DB);
});

describe("admin product writes", () => {
  it("needs the admin token", async () => {
    await expectProblem(await json("PUT", "/admin/products/p-x", productBody("p-x")), 401);
    await expectProblem(await json("PATCH", "/admin/products/p-x", { title: "x" }, { authorization: "Bearer wrong" }), 401);
    await expectProblem(await call("/admin/products/p-x", { method: "DELETE" }), 401);
  });

  it("PUT creates (201, ETag 1) and records a product.changed event in the outbox in the same write", async () => {
    const id = uid("p");
    const res = await json("PUT", `/admin/products/${id}`, productBody(id), admin());
    expect(res.status).toBe(201);
    expect(res.headers.get("etag")).toBe('"1"');
    const doc = await res.json<Doc>();
    expect(doc.variants.map((v) => v.prices.USD)).toEqual([12900, 13900]);
    expect(doc.translations.de?.title).toBe(`Trailschuh ${id}`);
    const row = await env.DB.prepare("SELECT min_prices, change_seq, version FROM products WHERE id = ?").bind(id).first<{ min_prices: string; change_seq: number; version: number }>();
    expect(JSON.parse(row!.min_prices)).toEqual({ USD: 12900, EUR: 11900 });
    expect(row!.change_seq).toBeGreaterThan(0);
    const events = await outboxRows(id);
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0]!.payload)).toMatchObject({ type: "product.changed", id, version: 1 });
  });

  it("update without If-Match is 428, stale If-Match is 412, current If-Match bumps the version", async () => {
    const { id } = await createProduct();
    const missing = await expectProblem(await json("PUT", `/admin/products/${id}`, productBody(id, { title: "New" }), admin()), 428);
    expect(missing.current_version).toBe(1);
    await expectProblem(await json("PUT", `/admin/products/${id}`, productBody(id, { title: "New" }), admin({ "if-match": '"7"' })), 412);
    await expectProblem(await patchPrice(id, 0, 100), 412);

    const ok = await json("PUT", `/admin/products/${id}`, productBody(id, { title: "New" }), admin({ "if-match": '"1"' }));
    expect(ok.status).toBe(200);
    expect(ok.headers.get("etag")).toBe('"2"');
    const patched = await patchPrice(id, 2, 9900);
    expect(patched.status).toBe(200);
    expect(patched.headers.get("etag")).toBe('"3"');
    const doc = await patched.json<Doc>();
    expect(doc.title).toBe("New");
    expect(doc.variants.find((v) => v.sku === `${id}-S`)!.prices).toEqual({ USD: 9900, EUR: 11900 });
    // The replaced write is not repeatable with the old version.
    await expectProblem(await patchPrice(id, 2, 9800), 412);
    expect((await outboxRows(id)).map((r) => r.version)).toEqual([1, 2, 3]);
  });

  it("two (and ten) concurrent writers with the same version: exactly one wins, the rest get 412", async () => {
    const { id } = await createProduct();
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => patchPrice(id, 1, 10_000 + i)));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 412)).toHaveLength(9);
    const winner = results[statuses.indexOf(200)]!;
    const winnerPrice = (await winner.json<Doc>()).variants[0]!.prices.USD;
    const row = await env.DB.prepare("SELECT p.version, pr.amount FROM products p JOIN prices pr ON pr.sku = ? AND pr.currency = 'USD' WHERE p.id = ?")
      .bind(`${id}-S`, id)
      .first<{ version: number; amount: number }>();
    expect(row).toEqual({ version: 2, amount: winnerPrice });
    // Losers left no trace: one event per committed version.
    expect((await outboxRows(id)).map((r) => r.version)).toEqual([1, 2]);

    // Two concurrent creators of the same new id: one 201, one 412.
    const fresh = uid("p");
    const creators = await Promise.all([0, 1].map(() => json("PUT", `/admin/products/${fresh}`, productBody(fresh), admin())));
    const codes = creators.map((r) => r.status).sort();
    // The loser gets 412 if it raced the INSERT itself, 428 if it saw the product already created.
    expect(codes[0]).toBe(201);
    expect([412, 428]).toContain(codes[1]);
  });

  it("rejects business-rule violations with 409/422 and malformed bodies with 400", async () => {
    const { id } = await createProduct();
    const other = uid("p");
    const stolen = productBody(other, { variants: [{ sku: `${id}-S`, prices: { USD: 1 } }] });
    await expectProblem(await json("PUT", `/admin/products/${other}`, stolen, admin()), 409);
    await expectProblem(await json("PUT", `/admin/products/${other}`, productBody(other, { category_id: "cat-nope" }), admin()), 422);
    await expectProblem(await json("PUT", `/admin/products/${other}`, productBody(other, { variants: [{ sku: "X-1", prices: { JPY: 100 } }] }), admin()), 422);
    await expectProblem(await json("PUT", `/admin/products/${other}`, productBody(other, { slug: id.toLowerCase() }), admin()), 409);
    await expectProblem(await json("PUT", `/admin/products/${other}`, { title: "" }, admin()), 400);
    await expectProblem(await json("PATCH", `/admin/products/${id}`, { bogus: 1 }, admin({ "if-match": '"1"' })), 400);
  });

  it("DELETE archives (status archived, new version, event)", async () => {
    const { id } = await createProduct();
    await expectProblem(await call(`/admin/products/${id}`, { method: "DELETE", headers: admin({ "if-match": '"5"' }) }), 412);
    const res = await call(`/admin/products/${id}`, { method: "DELETE", headers: admin() });
    expect(res.status).toBe(200);
    expect(res.headers.get("etag")).toBe('"2"');
    expect((await res.json<Doc>()).status).toBe("archived");
    expect((await outboxRows(id)).map((r) => r.version)).toEqual([1, 2]);
  });
});

describe("propagation through the EVENTS queue", () => {
  it("a price change is visible as a fresh version within 2 s of the write (real queue, consumer, KV, cache purge)", async () => {
    const { id } = await createProduct();
    await vi.waitFor(async () => expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(1), { timeout: 2_000, interval: 20 });
    // Warm the colo cache with the old response, so the purge is what makes the new price visible.
    const warm = await call(`/v1/products/${id}?currency=USD`);
    const readable = warm.status === 200;

    const started = Date.now();
    const res = await patchPrice(id, 1, 4242);
    expect(res.status).toBe(200);
    await vi.waitFor(
      async () => {
        const doc = await readProductDoc(env.CATALOG_KV, id);
        expect(doc?.version).toBe(2);
        expect(doc?.variants[0]!.prices.USD).toBe(4242);
        if (readable) {
          const read = await call(`/v1/products/${id}?currency=USD`);
          expect(read.headers.get("etag")).toContain("2");
        }
      },
      { timeout: 2_000, interval: 10 },
    );
    const lag = Date.now() - started;
    console.log(`[propagation] write → fresh ${readable ? "GET /v1/products/:id" : "KV document"}: ${lag} ms`);
    expect(lag).toBeLessThan(2_000);
    // The outbox row was marked sent, and the consumer recorded a lag sample.
    expect((await outboxRows(id)).every((r) => r.sent_at !== null)).toBe(true);
    const metrics = await (await call("/admin/metrics", { headers: admin() })).json<{
      propagation_lag_ms: { samples: number; p50: number; p99: number };
      cache: { reads: number; hit_ratio: Record<string, number | null> };
    }>();
    expect(metrics.propagation_lag_ms.samples).toBeGreaterThan(0);
    expect(metrics.propagation_lag_ms.p99).toBeGreaterThanOrEqual(metrics.propagation_lag_ms.p50);
    if (readable) {
      expect(metrics.cache.reads).toBeGreaterThan(0);
      expect(Object.values(metrics.cache.hit_ratio).reduce((a, b) => a! + (b ?? 0), 0)).toBeCloseTo(1, 3);
    }
  });

  it("the consumer purges the product's cached responses", async () => {
    const { id } = await createProduct();
    const cache = caches.default;
    const urls = productCacheUrls(id, env);
    for (const url of urls) await cache.put(url, new Response("old", { headers: { "cache-control": "s-maxage=600" } }));
    expect(await cache.match(urls[0]!)).toBeDefined();
    const batch = createMessageBatch("edgeshelf-events", [{ id: uid("m"), timestamp: new Date(), attempts: 1, body: { type: "product.changed", id, version: 1, occurred_at: Date.now() } }]);
    const ctx = createExecutionContext();
    await handleQueue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toHaveLength(1);
    for (const url of urls) expect(await cache.match(url)).toBeUndefined();
  });

  it("a category change purges the category page cached under its id as well as under its slug", async () => {
    const urls = (segment: string) => ["en", "de"].map((locale) => `${BASE}/v1/categories/${segment}?locale=${locale}`);
    // Both spellings of the page get cached by reading them twice.
    for (const url of [...urls("cat-running"), ...urls("running")]) {
      await call(url.slice(BASE.length));
      await vi.waitFor(async () => expect((await call(url.slice(BASE.length))).headers.get("x-cache-tier")).toBe("edge"));
    }
    await env.DB.prepare("UPDATE categories SET name = 'Trail running' WHERE id = 'cat-running'").run();
    const batch = createMessageBatch("edgeshelf-events", [{ id: uid("m"), timestamp: new Date(), attempts: 1, body: { type: "category.changed", id: "cat-running", version: 2, occurred_at: Date.now() } }]);
    const ctx = createExecutionContext();
    await handleQueue(batch, env, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toHaveLength(1);
    for (const url of urls("cat-running")) {
      const res = await call(`${url.slice(BASE.length)}`);
      expect(res.headers.get("x-cache-tier"), url).not.toBe("edge");
    }
    const byId = await (await call("/v1/categories/cat-running?locale=en")).json<{ name: string }>();
    expect(byId.name).toBe("Trail running");
  });

  it("a product moved to another category purges the old category's tags as well as the new one's", async () => {
    const { id } = await createProduct();
    await vi.waitFor(async () => expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(1), { timeout: 2_000 });
    const oldPath = (await readProductDoc(env.CATALOG_KV, id))!.category_path;
    expect(oldPath).toContain("cat-running");
    await env.DB.prepare("UPDATE products SET category_id = 'cat-outerwear', version = 2 WHERE id = ?").bind(id).run();
    const purged = await consumeRecordingPurges(id, 2);
    expect((await readProductDoc(env.CATALOG_KV, id))?.category_path).toContain("cat-outerwear");
    expect(purged).toEqual(expect.arrayContaining([id, "cat-outerwear", ...oldPath]));
  });

  it("a listing asked for by category slug carries the category's id, so the purge of a product entering it reaches it", async () => {
    // A page under the slug, and one under a search: both name the category by slug only in their URL.
    const tagsOf = async (path: string) => {
      const res = await call(path);
      expect(res.status).toBe(200);
      return res.headers.get("cache-tag")!.split(",");
    };
    const browse = await tagsOf(`/v1/products?category=running&limit=3&sort=newest`);
    const search = await tagsOf(`/v1/search?q=shoe&category=sports-outdoors&limit=3`);
    expect(browse).toEqual(expect.arrayContaining(["listings", "running", "cat-running"]));
    expect(search).toEqual(expect.arrayContaining(["sports-outdoors", "cat-sports-outdoors"]));
    // A product created afterwards in that category: its consumer purge names the category by id.
    const { id } = await createProduct();
    const purged = await consumeRecordingPurges(id, 1);
    expect(browse.filter((t) => purged.includes(t) && t !== "listings")).toContain("cat-running");
    expect(search.filter((t) => purged.includes(t) && t !== "listings")).toContain("cat-sports-outdoors");
  });

  it("out-of-order and duplicate deliveries never regress KV", async () => {
    const { id } = await createProduct();
    for (let v = 1; v <= 3; v++) expect((await patchPrice(id, v, 5000 + v)).status).toBe(200);
    await vi.waitFor(async () => expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(4), { timeout: 2_000 });

    // A KV document newer than D1 (say, from a write whose event is still in flight) must survive old events.
    const current = (await readProductDoc(env.CATALOG_KV, id))!;
    await env.CATALOG_KV.put(productKey(id), JSON.stringify({ ...current, version: 99, title: "newest" }));
    const bodies = [3, 1, 4, 2, 4, 4].map((version) => ({ type: "product.changed", id, version, occurred_at: Date.now() - 1000 }));
    const batch = createMessageBatch("edgeshelf-events", bodies.map((body, i) => ({ id: `m-${id}-${i}`, timestamp: new Date(), attempts: 1, body })));
    const ctx = createExecutionContext();
    await handleQueue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toHaveLength(bodies.length);
    expect((await readProductDoc(env.CATALOG_KV, id))).toMatchObject({ version: 99, title: "newest" });

    // Stock events: seq 5 then a late seq 3 and a duplicate seq 5: the projection keeps seq 5's figures.
    const sku = `${id}-S`;
    const stock = (seq: number, available: number) => ({
      type: "stock.changed", sku, location: "loc-us-east", on_hand: available, reserved: 0, available, safety_stock: 0, low_stock: 5,
      status: available > 5 ? "in_stock" : available > 0 ? "low_stock" : "out_of_stock", seq, occurred_at: Date.now(),
    });
    for (const events of [[stock(5, 0)], [stock(3, 40), stock(5, 0)]]) {
      const b = createMessageBatch("edgeshelf-events", events.map((body, i) => ({ id: `s-${id}-${body.seq}-${i}-${events.length}`, timestamp: new Date(), attempts: 1, body })));
      const c = createExecutionContext();
      await handleQueue(b, env, c);
      expect((await getQueueResult(b, c)).explicitAcks).toHaveLength(events.length);
    }
    const row = await env.DB.prepare("SELECT available, seq, status FROM availability WHERE sku = ? AND location_id = 'loc-us-east'").bind(sku).first();
    expect(row).toEqual({ available: 0, seq: 5, status: "out_of_stock" });
  });

  it("stock events update the availability projection, products.in_stock and the KV document", async () => {
    const { id } = await createProduct();
    await vi.waitFor(async () => expect(await readProductDoc(env.CATALOG_KV, id)).not.toBeNull(), { timeout: 2_000 });
    const before = await env.DB.prepare("SELECT in_stock, change_seq FROM products WHERE id = ?").bind(id).first<{ in_stock: number; change_seq: number }>();
    expect(before!.in_stock).toBe(0);
    await env.EVENTS.send({
      type: "stock.changed", sku: `${id}-M`, location: "loc-eu-central", on_hand: 12, reserved: 2, available: 10, safety_stock: 0,
      low_stock: 5, status: "in_stock", seq: 1, occurred_at: Date.now(),
    });
    await vi.waitFor(
      async () => {
        const doc = await readProductDoc(env.CATALOG_KV, id);
        expect(doc?.variants.find((v) => v.sku === `${id}-M`)?.availability).toMatchObject({ available: 10, status: "in_stock" });
      },
      { timeout: 2_000, interval: 20 },
    );
    const after = await env.DB.prepare("SELECT in_stock, change_seq FROM products WHERE id = ?").bind(id).first<{ in_stock: number; change_seq: number }>();
    expect(after!.in_stock).toBe(1);
    expect(after!.change_seq).toBeGreaterThan(before!.change_seq);
  });

  it("a consumer that throws retries with exponential backoff", async () => {
    const { id } = await createProduct();
    const brokenKv = { ...env.CATALOG_KV, get: env.CATALOG_KV.get.bind(env.CATALOG_KV), put: async () => { throw new Error("KV down (injected)"); } } as unknown as KVNamespace;
    const batch = createMessageBatch("edgeshelf-events", [1, 3].map((attempts) => ({ id: `r-${id}-${attempts}`, timestamp: new Date(), attempts, body: { type: "product.changed", id, version: 1, occurred_at: Date.now() } })));
    // getQueueResult does not report delays, so watch the retry calls themselves.
    const spies = batch.messages.map((m) => vi.spyOn(m, "retry"));
    const ctx = createExecutionContext();
    await handleQueue(batch, { ...env, CATALOG_KV: brokenKv, QUEUE_RETRY_BASE_SECONDS: "1" }, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((m: { msgId: string }) => m.msgId)).toEqual([`r-${id}-1`, `r-${id}-3`]);
    expect(spies.map((s) => s.mock.calls[0]?.[0])).toEqual([{ delaySeconds: 1 }, { delaySeconds: 4 }]);
    expect([1, 2, 3, 4, 5, 12].map((a) => retryDelaySeconds(a, { QUEUE_RETRY_BASE_SECONDS: "1" }))).toEqual([1, 2, 4, 8, 16, 600]);
  });

  it("the dispatch table hands each handler only its types, acks unclaimed and malformed messages, and refuses a type claimed twice", async () => {
    const seen: Record<string, string[]> = { a: [], b: [] };
    const handler = (name: "a" | "b", types: string[]): EventHandler => ({
      name,
      types,
      consume: async (batch) => {
        for (const m of batch.messages) {
          seen[name]!.push(m.id);
          m.ack();
        }
      },
    });
    const table = dispatchTable([handler("a", ["t.one", "t.two"]), handler("b", ["t.three"])]);
    const bodies = [{ type: "t.one" }, { type: "t.three" }, { type: "t.two" }, { type: "nobody.owns" }, "not an object", null];
    const batch = createMessageBatch("edgeshelf-events", bodies.map((body, i) => ({ id: `d-${i}`, timestamp: new Date(), attempts: 1, body })));
    const ctx = createExecutionContext();
    await dispatch(batch, env, table);
    await settleDeadLetterNotes();
    const result = await getQueueResult(batch, ctx);
    expect(seen).toEqual({ a: ["d-0", "d-2"], b: ["d-1"] });
    expect([...result.explicitAcks].sort()).toEqual(["d-0", "d-1", "d-2", "d-3", "d-4", "d-5"]);
    expect(() => dispatchTable([handler("a", ["t.one"]), handler("b", ["t.one"])])).toThrow(/claimed by both a and b/);

    // The real table: a product.changed without an id is the catalog's, can never succeed, and is acked, not retried.
    const malformed = createMessageBatch("edgeshelf-events", [{ id: "m-1", timestamp: new Date(), attempts: 1, body: { type: "product.changed", version: 1 } }]);
    const ctx2 = createExecutionContext();
    await handleQueue(malformed, env, ctx2);
    const r2 = await getQueueResult(malformed, ctx2);
    expect(r2.explicitAcks).toEqual(["m-1"]);
    expect(r2.retryMessages).toEqual([]);
    // Acked, but never dropped: each is a dead letter with the reason it can never succeed.
    const letters = await env.DB.prepare("SELECT id, error FROM dead_letters WHERE id IN ('d-3', 'd-4', 'd-5', 'm-1') ORDER BY id").all<{ id: string; error: string }>();
    expect(letters.results.map((l) => l.id)).toEqual(["d-3", "d-4", "d-5", "m-1"]);
    expect(letters.results[0]!.error).toMatch(/no handler for message type "nobody.owns"/);
    expect(letters.results[3]!.error).toMatch(/malformed event: id/);
  });

  it("a poison message ends in dead_letters with its error, even when the dead-letter batch holds an unstorable body", async () => {
    // The last attempt of a message whose handling keeps throwing: its error is stored with the letter.
    const poison = createMessageBatch("edgeshelf-events", [{ id: uid("poison"), timestamp: new Date(), attempts: 6, body: { type: "product.changed", id: uid("P-POISON"), version: 1, occurred_at: Date.now() } }]);
    // Every catalog query fails (the handler's error); only the dead-letter table still takes writes.
    const down = () => Promise.reject(new Error("D1_ERROR: catalog tables unavailable"));
    const broken: Record<string, unknown> = { first: down, all: down, run: down, raw: down };
    broken.bind = () => broken;
    const failingDb = new Proxy(env.DB, {
      get: (t, p) =>
        p === "prepare" ? (q: string) => (q.includes("dead_letters") ? t.prepare(q) : broken) : p === "batch" ? down : p === "withSession" ? () => failingDb : Reflect.get(t, p, t),
    });
    const ctx = createExecutionContext();
    await handleQueue(poison, { ...env, DB: failingDb } as Env, ctx);
    const first = await getQueueResult(poison, ctx);
    expect(first.retryMessages.map((m: { msgId: string }) => m.msgId)).toEqual([poison.messages[0]!.id]);
    const id = poison.messages[0]!.id;
    // The queue then delivers it to the dead-letter queue, together with a letter whose body cannot be stored whole.
    const huge = { type: "product.changed", pad: "x".repeat(300 * 1024) };
    const dlq = createMessageBatch("edgeshelf-events-dlq", [
      { id, timestamp: new Date(), attempts: 1, body: poison.messages[0]!.body },
      { id: uid("huge"), timestamp: new Date(), attempts: 1, body: huge },
    ]);
    const ctx2 = createExecutionContext();
    await handleQueue(dlq, env, ctx2);
    const r = await getQueueResult(dlq, ctx2);
    expect(r.retryMessages).toEqual([]);
    const rows = await env.DB.prepare("SELECT id, error, length(body) AS n FROM dead_letters WHERE id IN (?, ?)").bind(id, dlq.messages[1]!.id).all<{ id: string; error: string | null; n: number }>();
    const byId = new Map(rows.results.map((row) => [row.id, row]));
    expect(byId.get(id)?.error).toMatch(/catalog tables unavailable/);
    expect(byId.get(dlq.messages[1]!.id)?.error).toMatch(/truncated/);
  });

  it("a message that keeps failing ends in the dead-letter queue, is listed, and replays once fixed", async () => {
    const { id } = await createProduct();
    await vi.waitFor(async () => expect(await readProductDoc(env.CATALOG_KV, id)).not.toBeNull(), { timeout: 2_000 });
    // Poison the row: its JSON column no longer parses, so every rebuild of the document throws.
    await env.DB.prepare("UPDATE products SET attributes = '{broken', version = version + 1 WHERE id = ?").bind(id).run();
    await env.EVENTS.send({ type: "product.changed", id, version: 2, occurred_at: Date.now() });

    let letter: { id: string; body: { id: string }; attempts: number } | undefined;
    await vi.waitFor(
      async () => {
        const list = await (await call("/admin/events/dead-letters", { headers: admin() })).json<{ items: { id: string; body: { id: string }; attempts: number }[] }>();
        letter = list.items.find((i) => i.body.id === id);
        expect(letter).toBeDefined();
      },
      { timeout: 10_000, interval: 50 },
    );
    expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(1);
    const metrics = await (await call("/admin/metrics", { headers: admin() })).json<{ dead_letters: { pending: number } }>();
    expect(metrics.dead_letters.pending).toBeGreaterThan(0);

    // Fix the cause, replay: the event goes through and the letter is marked replayed.
    await env.DB.prepare("UPDATE products SET attributes = '{}' WHERE id = ?").bind(id).run();
    const replay = await json("POST", "/admin/events/dead-letters/replay", { ids: [letter!.id] }, admin());
    expect(await replay.json()).toEqual({ replayed: 1, ids: [letter!.id] });
    await vi.waitFor(async () => expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(2), { timeout: 2_000 });
    const pending = await (await call("/admin/events/dead-letters", { headers: admin() })).json<{ items: { id: string }[] }>();
    expect(pending.items.map((i) => i.id)).not.toContain(letter!.id);
  });

  it("an outage longer than the retries dead-letters a product's events; the cron re-drives them, KV gets the newer version and an older letter never replaces it", async () => {
    const { id } = await createProduct();
    await vi.waitFor(async () => expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(1), { timeout: 2_000 });
    // The write commits in D1 (version 2) while KV is down: the event's last delivery fails and becomes a letter.
    await env.DB.prepare("UPDATE products SET title = 'After the outage', version = 2 WHERE id = ?").bind(id).run();
    const kvDown = { ...env.CATALOG_KV, get: env.CATALOG_KV.get.bind(env.CATALOG_KV), put: async () => { throw new Error("KV down (injected)"); } } as unknown as KVNamespace;
    const body = (version: number) => ({ type: "product.changed", id, version, occurred_at: Date.now() });
    const last = createMessageBatch("edgeshelf-events", [{ id: uid("outage"), timestamp: new Date(), attempts: EVENTS_MAX_RETRIES + 1, body: body(2) }]);
    const ctx = createExecutionContext();
    await handleQueue(last, { ...env, CATALOG_KV: kvDown }, ctx);
    expect((await getQueueResult(last, ctx)).retryMessages).toHaveLength(1);
    // A late duplicate of the create's event, and a body that can never be processed, are dead-lettered too.
    const older = uid("older");
    const malformed = uid("malformed");
    await env.DB.batch([
      env.DB.prepare("INSERT INTO dead_letters (id, body, attempts, received_at, error) VALUES (?, ?, 6, ?, 'KV down')").bind(older, JSON.stringify(body(1)), Date.now()),
      env.DB.prepare("INSERT INTO dead_letters (id, body, attempts, received_at, error) VALUES (?, ?, 6, ?, NULL)").bind(malformed, JSON.stringify({ type: "product.changed", version: 3 }), Date.now()),
    ]);
    const letters = [last.messages[0]!.id, older, malformed];
    // The outage is over, but nothing re-sends: KV keeps version 1, with no expiry.
    await new Promise((r) => setTimeout(r, 300));
    expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(1);

    // A cron tick soon after leaves the letters alone (the outage may still be on); one a minute later re-drives them.
    const tick = async (at: number) => {
      const c = createExecutionContext();
      await handleScheduled(createScheduledController({ scheduledTime: at, cron: "* * * * *" }), env, c);
      await waitOnExecutionContext(c);
    };
    await tick(Date.now() + 10_000);
    const pending = async () =>
      (await env.DB.prepare("SELECT id FROM dead_letters WHERE replayed_at IS NULL AND id IN (SELECT value FROM json_each(?)) ORDER BY id").bind(JSON.stringify(letters)).all<{ id: string }>()).results.map((r) => r.id);
    expect(await pending()).toEqual([...letters].sort());
    await tick(Date.now() + REDRIVE_AFTER_MS + 10_000);
    await vi.waitFor(async () => expect((await readProductDoc(env.CATALOG_KV, id))?.title).toBe("After the outage"), { timeout: 3_000 });
    expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(2);
    // Both product letters are settled (folded into one message); the malformed one waits for an admin, marked.
    expect(await pending()).toEqual([malformed]);
    const kept = await env.DB.prepare("SELECT error FROM dead_letters WHERE id = ?").bind(malformed).first<{ error: string }>();
    expect(kept!.error).toMatch(/^malformed event/);
    // The older event delivered again changes nothing: KV stays at version 2.
    const stale = createMessageBatch("edgeshelf-events", [{ id: uid("stale"), timestamp: new Date(), attempts: 1, body: body(1) }]);
    const ctx2 = createExecutionContext();
    await handleQueue(stale, env, ctx2);
    await getQueueResult(stale, ctx2);
    expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(2);
    const res = await call(`/v1/products/${id}`);
    expect((await res.json<{ title: string; version: number }>()).version).toBe(2);
  });

  it("a failed queue send loses nothing: the write commits, the row stays unsent, the cron re-sends it", async () => {
    const { id } = await createProduct();
    // Let the create's own event land first (the consumer rebuilds from D1, so a late one would show v2).
    await vi.waitFor(async () => expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(1), { timeout: 2_000 });
    const res = await fetchWithEnv({ EVENTS: failingQueue() }, `/admin/products/${id}`, {
      method: "PATCH",
      headers: admin({ "content-type": "application/json", "if-match": '"1"' }),
      body: JSON.stringify({ variants: [{ sku: `${id}-S`, prices: { USD: 777 } }] }),
    });
    expect(res.status).toBe(200);
    const unsent = (await outboxRows(id)).filter((r) => r.sent_at === null);
    expect(unsent.map((r) => r.version)).toEqual([2]);
    await new Promise((r) => setTimeout(r, 300));
    expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(1);

    // The cron leaves rows younger than a few seconds to their own request; a tick 10 s later re-sends.
    const ctx = createExecutionContext();
    await handleScheduled(createScheduledController({ scheduledTime: Date.now() + 10_000, cron: "* * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    expect((await outboxRows(id)).every((r) => r.sent_at !== null)).toBe(true);
    await vi.waitFor(async () => expect((await readProductDoc(env.CATALOG_KV, id))?.variants[0]!.prices.USD).toBe(777), { timeout: 2_000 });
  });

  it("production purges by Cache-Tag through the zone API (30 tags per call) and fails loudly so the message retries", async () => {
    const calls: { url: string; auth: string | null; tags: string[] }[] = [];
    let status = 200;
    const fetcher = (async (input: RequestInfo | URL, init?: RequestInit) => {
      calls.push({ url: String(input), auth: new Headers(init?.headers).get("authorization"), tags: JSON.parse(String(init?.body)).tags });
      return new Response(JSON.stringify({ success: status === 200 }), { status });
    }) as typeof fetch;
    const purger = new CloudflareTagPurger("zone-123", "secret-token", fetcher);
    const categories = Array.from({ length: 40 }, (_, i) => `cat-${i}`);
    await purger.purgeProduct({ id: "p-1" }, ["p-1", ...categories]);
    expect(calls.map((c) => c.tags.length)).toEqual([30, 11]);
    expect(calls[0]).toMatchObject({ url: "https://api.cloudflare.com/client/v4/zones/zone-123/purge_cache", auth: "Bearer secret-token" });
    expect(calls.flatMap((c) => c.tags)).toEqual(["p-1", ...categories]);
    status = 429;
    await expect(purger.purgeTags(["p-1"])).rejects.toThrow(/HTTP 429/);

    expect(purgerFor({ ...env, PURGE_MODE: "local" })).toBeInstanceOf(LocalCachePurger);
    expect(purgerFor({ ...env, PURGE_MODE: "cloudflare", PURGE_ZONE_ID: "z", PURGE_API_TOKEN: "t" })).toBeInstanceOf(CloudflareTagPurger);
    expect(() => purgerFor({ ...env, PURGE_MODE: "cloudflare", PURGE_ZONE_ID: "", PURGE_API_TOKEN: "" })).toThrow(/PURGE_ZONE_ID/);
  });
});

describe("KV never goes back in time", () => {
  /** KV as the read path saw it: the key looked empty, and its write lands only when `release` is called. */
  function racingKv(): { kv: KVNamespace; release: () => void } {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reads = 0;
    const kv = new Proxy(env.CATALOG_KV, {
      get(target, prop) {
        if (prop === "get") return (...args: unknown[]) => (reads++ === 0 ? Promise.resolve(null) : Reflect.apply(target.get, target, args));
        if (prop === "put") return async (...args: unknown[]) => (await gate, Reflect.apply(target.put, target, args));
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    return { kv, release };
  }

  async function olderAndNewer() {
    const p = await insertProduct(env.DB, { base: 70 });
    const db = env.DB;
    const older = (await loadProductDocument(db, p.id))!;
    await env.DB.prepare("UPDATE products SET version = version + 1, title = 'Newer title' WHERE id = ?").bind(p.id).run();
    const newer = (await loadProductDocument(db, p.id))!;
    expect(newer.version).toBeGreaterThan(older.version);
    return { id: p.id, older, newer, latest: () => loadProductDocument(db, p.id) };
  }

  it("a write-back of an older copy that lands after the consumer's newer write is replaced by the newer version", async () => {
    const { id, older, newer, latest } = await olderAndNewer();
    const { kv, release } = racingKv();
    const fill = fillProductDoc(kv, older, { latest });
    // The consumer writes the newer version while the write-back is in flight.
    expect(await putProductDocIfNewer(env.CATALOG_KV, newer, { latest })).toBe("written");
    release();
    expect(await fill).toBe("superseded");
    const final = await readProductDoc(env.CATALOG_KV, id);
    expect(final?.version).toBe(newer.version);
    expect(final?.title).toBe("Newer title");
  });

  it("the check afterwards is what saves it: trusting the replica's view, the older copy would stay", async () => {
    const { id, older, newer, latest } = await olderAndNewer();
    const { kv, release } = racingKv();
    const fill = fillProductDoc(kv, older, { latest: async () => older });
    await putProductDocIfNewer(env.CATALOG_KV, newer, { latest });
    release();
    await fill;
    expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(older.version);
  });

  it("a write-back never replaces a document that is already there", async () => {
    const { id, older, newer, latest } = await olderAndNewer();
    await putProductDocIfNewer(env.CATALOG_KV, newer, { latest });
    expect(await fillProductDoc(env.CATALOG_KV, older, { latest })).toBe("present");
    expect((await readProductDoc(env.CATALOG_KV, id))?.version).toBe(newer.version);
  });
});
