/**
 * What one reservation costs and whom it counts: round trips from the Worker (bindings wrapped and counted),
 * prices taken from the product document, hoarding caps and rate limits per shopper of a storefront key.
 */
import { createExecutionContext, env, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { buildApp } from "../src/app";
import { loadProductDocument, type ProductDocument } from "../src/catalog/document";
import { putProductDocIfNewer, readProductDoc } from "../src/catalog/projection-store";
import { indexSkus, skuKey } from "../src/catalog/sku-index";
import { setClock } from "../src/lib/clock";
import { coordinatorForScope, coordinatorOfReservation, holderOfReservation, shardName, shardNameForSku, tallyShardIndex } from "../src/stock/routing";
import { holderKey } from "../src/stock/shopper";
import { addStorefrontKey, seedApiKeys } from "./helpers/api-keys";
import { countingEnv, sequentialDepth, type Counter } from "./helpers/binding-counter";
import { BASE, call, expectProblem, json, storefront, uid } from "./helpers/http";
import { gateShardMethod } from "./helpers/shard-faults";
import { makeSkus } from "./helpers/stock-fixtures";

type Reservation = { id: string; items: { sku: string; quantity: number; unit_price: number; regular_price: number; promotion_id: string | null }[] };

const HOARDER = { authorization: "Bearer hoarder-storefront-key" }; // caps per_sku=2 total=3 (vitest.config.ts)

beforeAll(async () => {
  await seedApiKeys(env.DB);
  await addStorefrontKey(env.DB, "key-hoarder", "hoarder-storefront-key");
});

/** POST /v1/reservations through the app with `e` as its bindings (waiting for its background work). */
async function reserveWith(e: Env, items: { sku: string; quantity: number }[], headers: Record<string, string> = {}, body: Record<string, unknown> = {}): Promise<Response> {
  const ctx = createExecutionContext();
  const req = new Request(BASE + "/v1/reservations", {
    method: "POST",
    headers: storefront({ "content-type": "application/json", "idempotency-key": uid("idem"), ...headers }),
    body: JSON.stringify({ items, ...body }),
  });
  const res = await buildApp().fetch(req, e, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

function reserve(items: { sku: string; quantity: number }[], headers: Record<string, string> = {}, auth = storefront()) {
  return json("POST", "/v1/reservations", { items }, { ...auth, "idempotency-key": uid("idem"), ...headers });
}

async function productOf(sku: string): Promise<string> {
  return (await env.DB.prepare("SELECT product_id FROM variants WHERE sku = ?").bind(sku).first<{ product_id: string }>())!.product_id;
}

/** What the queue consumer does after a catalog write: the document in KV and its SKUs in the index. */
async function project(sku: string, edit: (doc: ProductDocument) => void = () => {}): Promise<ProductDocument> {
  const doc = (await loadProductDocument(env.DB, await productOf(sku)))!;
  edit(doc);
  await putProductDocIfNewer(env.CATALOG_KV, doc);
  await indexSkus(env.CATALOG_KV, doc.id, doc.variants.map((v) => v.sku));
  return doc;
}

/** `count` SKUs of one product whose stock lives on pairwise different shards. */
async function skusOnDistinctShards(count: number, stock = 10): Promise<string[]> {
  for (;;) {
    const skus = await makeSkus(Array.from({ length: count * 4 }, () => stock));
    const byShard = new Map<string, string>();
    for (const s of skus) if (!byShard.has(shardNameForSku(env, s))) byShard.set(shardNameForSku(env, s), s);
    if (byShard.size >= count) return [...byShard.values()].slice(0, count);
  }
}

/**
 * Caches that are warm in a running isolate (verified key, locations, hot-SKU registry) are warmed here, and the
 * clock stands still so that none of them lapses between the warm-up and the measured reservation.
 */
async function warm(counter: Counter): Promise<void> {
  setClock(Date.now());
  const [sku] = await makeSkus([5]);
  await project(sku!);
  expect((await reserveWith(counter.env, [{ sku: sku!, quantity: 1 }])).status).toBe(201);
  counter.reset();
}

afterEach(() => setClock(null));

describe("round trips per reservation", () => {
  it("a single-shard cart priced from a cached document: one object call from the Worker and no D1 query", async () => {
    const counter = countingEnv(env);
    await warm(counter);
    const [a] = await makeSkus([10]);
    await project(a!);
    const res = await reserveWith(counter.env, [{ sku: a!, quantity: 2 }], { "x-shopper-id": "shopper-rt-1" });
    expect(res.status).toBe(201);
    expect(counter.d1).toEqual([]);
    expect(sequentialDepth(counter.calls)).toBeLessThanOrEqual(2);
    // The coordinator drives the saga: the Worker's only object call is to it; the hold goes object-to-object.
    expect(counter.calls.map((c) => `${c.binding}/${c.method}`)).toEqual(["STOCK/reserve"]);
    const body = await res.json<Reservation>();
    expect(body.items).toMatchObject([{ sku: a, quantity: 2 }]);
  });

  it("a multi-shard cart: at most 1 + shards sequential object calls from the Worker, no D1 query", async () => {
    const counter = countingEnv(env);
    await warm(counter);
    const skus = await skusOnDistinctShards(3);
    for (const s of skus) await project(s);
    const res = await reserveWith(counter.env, skus.map((sku) => ({ sku, quantity: 1 })), { "x-shopper-id": "shopper-rt-2" });
    expect(res.status).toBe(201);
    expect(counter.d1).toEqual([]);
    expect(sequentialDepth(counter.calls)).toBeLessThanOrEqual(1 + 3);
    expect(counter.calls.map((c) => c.method)).toEqual(["reserve"]);
    expect((await res.json<Reservation>()).items.map((i) => i.sku).sort()).toEqual([...skus].sort());
  });

  it("a SKU without a document is priced from D1 once, and its index entry is written for the next reservation", async () => {
    const counter = countingEnv(env);
    await warm(counter);
    const [sku] = await makeSkus([10]);
    expect(await env.CATALOG_KV.get(skuKey(sku!))).toBeNull();
    expect((await reserveWith(counter.env, [{ sku: sku!, quantity: 1 }])).status).toBe(201);
    expect(counter.d1.length).toBeGreaterThan(0);
    expect(await env.CATALOG_KV.get(skuKey(sku!))).toBe(await productOf(sku!));
  });

  it("no object other than the stock shards is shared by the reservations of different shoppers of one storefront key", async () => {
    const skus = await skusOnDistinctShards(2, 50);
    for (const s of skus) await project(s);
    // Every object name asked for in this isolate (Worker and objects alike), so calls between objects count too.
    const named = vi.spyOn(Object.getPrototypeOf(env.CLIENT_GUARD) as DurableObjectNamespace, "getByName");
    try {
      const shoppers: Record<string, string>[] = [{ "x-shopper-id": "cart-a" }, { "x-shopper-id": "cart-b" }, { "cf-connecting-ip": "203.0.113.10" }, { "cf-connecting-ip": "203.0.113.11" }];
      const names: Set<string>[] = [];
      for (const headers of shoppers) {
        named.mockClear();
        const single = await (await reserve([{ sku: skus[0]!, quantity: 1 }], headers)).json<Reservation>();
        expect((await reserve(skus.map((sku) => ({ sku, quantity: 1 })), headers)).status).toBe(201);
        expect((await json("POST", `/v1/reservations/${single.id}/commit`, {}, storefront())).status).toBe(200);
        names.push(new Set(named.mock.calls.map(([name]) => name)));
      }
      const notShard = (n: string) => !n.startsWith("stock:");
      for (let i = 0; i < names.length; i++) {
        // The spy reaches calls between objects too: the shopper's tally is no object of its own any more.
        expect([...names[i]!].filter(notShard)).toEqual([]);
        for (let j = i + 1; j < names.length; j++) expect([...names[i]!].filter((n) => notShard(n) && names[j]!.has(n))).toEqual([]);
      }
    } finally {
      named.mockRestore();
    }
  });
});

describe("objects per reservation", () => {
  /** Every object name asked for (Worker and objects alike) while `fn` runs, in order, repeats included. */
  async function objectsDuring(fn: () => Promise<void>): Promise<string[]> {
    const named = vi.spyOn(Object.getPrototypeOf(env.CLIENT_GUARD) as DurableObjectNamespace, "getByName");
    try {
      await fn();
      return named.mock.calls.map(([name]) => name);
    } finally {
      named.mockRestore();
    }
  }

  /** A SKU whose stock lives on shard `name` (or on any other shard, with `other`). */
  async function skuOnShard(name: string, other = false): Promise<string> {
    for (;;) {
      for (const s of await makeSkus(Array.from({ length: 16 }, () => 20))) if ((shardNameForSku(env, s) === name) !== other) return s;
    }
  }

  it("a reservation that names its shopper touches two objects, the tally's coordinator and the SKU's shard, and one when they are the same", async () => {
    const shopper = uid("two-objects");
    const coordinator = shardName(tallyShardIndex(env, await holderKey("key-dev-storefront", `id:${shopper}`)));
    const elsewhere = await skuOnShard(coordinator, true);
    const here = await skuOnShard(coordinator);
    for (const s of [elsewhere, here]) await project(s);
    let id = "";
    const remote = await objectsDuring(async () => {
      const res = await reserve([{ sku: elsewhere, quantity: 1 }], { "x-shopper-id": shopper });
      expect(res.status).toBe(201);
      id = (await res.json<Reservation>()).id;
    });
    // The Worker asks for the coordinator, the coordinator for the SKU's shard; the tally costs no call.
    expect(remote).toEqual([coordinator, shardNameForSku(env, elsewhere)]);
    expect(coordinatorOfReservation(env, id)).toBe(coordinator);
    // The SKU's shard is the coordinator: the hold and the tally are in-process, one object and one call in all.
    const local = await objectsDuring(async () => expect((await reserve([{ sku: here, quantity: 1 }], { "x-shopper-id": shopper })).status).toBe(201));
    expect(local).toEqual([coordinator]);
  });

  it("the Idempotency-Key is scoped to the shopper: a retry replays, another body is a 422, another shopper is another reservation", async () => {
    const [sku] = await makeSkus([10]);
    const key = uid("idem-scope");
    const send = (shopper: string, quantity: number) =>
      json("POST", "/v1/reservations", { items: [{ sku, quantity }] }, storefront({ "idempotency-key": key, "x-shopper-id": shopper }));
    const first = await send("scope-a", 1);
    expect(first.status).toBe(201);
    const id = (await first.json<Reservation>()).id;
    const again = await send("scope-a", 1);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect((await again.json<Reservation>()).id).toBe(id);
    await expectProblem(await send("scope-a", 2), 422);
    const other = await send("scope-b", 1);
    expect(other.status).toBe(201);
    expect((await other.json<Reservation>()).id).not.toBe(id);
  });
});

describe("unit prices come from the product document", () => {
  it("checkout charges what the cached document says, promotions and markets applied, as the page shows it", async () => {
    const now = Date.now();
    // The documents differ from D1 on purpose; each is read before any stock event of its product rewrites it.
    const priced = async () => {
      const [sku] = await makeSkus([10]);
      const doc = await project(sku!, (d) => {
        d.variants.find((v) => v.sku === sku)!.prices.USD = 4321;
        d.promotions = [
          { id: "promo-doc-eu", name: "EU only", starts_at: now - 60_000, ends_at: null, priority: 1, value_type: "percent_off", value: { bps: 1000 }, currencies: [], markets: ["EU"], skus: [sku!] },
        ];
      });
      return { sku: sku!, doc };
    };
    const [eu, plain] = [await priced(), await priced()];
    const page = await call(`/v1/products/${eu.doc.id}?currency=USD&market=DE`);
    expect(page.headers.get("x-cache-tier")).toBe("kv");
    const view = await page.json<{ variants: { sku: string; price: { amount: number } }[] }>();
    expect(view.variants.find((v) => v.sku === eu.sku)!.price.amount).toBe(4321 - 432);
    const inEu = await json("POST", "/v1/reservations", { items: [{ sku: eu.sku, quantity: 1 }], market: "DE" }, storefront({ "idempotency-key": uid("idem") }));
    expect((await inEu.json<Reservation>()).items[0]).toMatchObject({ unit_price: 4321 - 432, regular_price: 4321, promotion_id: "promo-doc-eu" });
    const nowhere = await (await reserve([{ sku: plain.sku, quantity: 1 }])).json<Reservation>();
    expect(nowhere.items[0]).toMatchObject({ unit_price: 4321, regular_price: 4321, promotion_id: null });
  });

  it("SKUs of draft and archived products are refused with 422, from the document and from D1 alike", async () => {
    const [fromDoc] = await makeSkus([10]);
    await project(fromDoc!, (d) => (d.status = "draft"));
    expect((await expectProblem(await reserve([{ sku: fromDoc!, quantity: 1 }]), 422)).inactive_skus).toEqual([fromDoc]);
    const [fromD1] = await makeSkus([10]);
    await env.DB.prepare("UPDATE products SET status = 'archived' WHERE id = ?").bind(await productOf(fromD1!)).run();
    const [active] = await makeSkus([10]);
    const p = await expectProblem(await reserve([{ sku: fromD1!, quantity: 1 }, { sku: active!, quantity: 1 }]), 422);
    expect(p.inactive_skus).toEqual([fromD1]);
    const unknown = uid("SKU-none");
    expect((await expectProblem(await reserve([{ sku: unknown, quantity: 1 }]), 422)).unknown_skus).toEqual([unknown]);
  });

  it("the queue consumer indexes a product's SKUs when it projects a catalog change", async () => {
    const id = uid("p-idx");
    const sku = uid("SKU-idx");
    const res = await json(
      "PUT",
      `/admin/products/${id}`,
      { slug: id.toLowerCase(), title: "Indexed", brand: "Nordhaven", category_id: "cat-electronics", variants: [{ sku, prices: { USD: 1999 } }] },
      { authorization: "Bearer test-admin-token" },
    );
    expect(res.status).toBe(201);
    await vi.waitFor(async () => expect(await env.CATALOG_KV.get(skuKey(sku))).toBe(id), { timeout: 5_000, interval: 25 });
    expect((await readProductDoc(env.CATALOG_KV, id))?.variants.map((v) => v.sku)).toEqual([sku]);
  });
});

describe("hoarding caps per shopper", () => {
  it("the per-SKU cap is checked inside the shard's hold: a concurrent burst of one shopper gets exactly the cap", async () => {
    const [sku] = await makeSkus([50]);
    const burst = await Promise.all(Array.from({ length: 8 }, () => reserve([{ sku: sku!, quantity: 1 }], { "x-shopper-id": "greedy" }, HOARDER)));
    // The total cap (3) lets a third request through to the shard, whose hold refuses it: exactly 2 are held.
    expect(burst.map((r) => r.status).sort()).toEqual([201, 201, 429, 429, 429, 429, 429, 429]);
    const refusals = await Promise.all(burst.filter((r) => r.status === 429).map((r) => expectProblem(r, 429)));
    expect(refusals.filter((p) => p.scope === "sku")[0]).toMatchObject({ scope: "sku", sku, limit: 2, held: 2, requested: 1 });
    // Another shopper of the same storefront key has caps of its own.
    expect((await reserve([{ sku: sku!, quantity: 2 }], { "x-shopper-id": "modest" }, HOARDER)).status).toBe(201);
  });

  it("the total cap counts one shopper across SKUs; releasing frees room even when the release names no shopper", async () => {
    const [a, b, c] = await makeSkus([10, 10, 10]);
    const shopper = { "x-shopper-id": uid("shopper") };
    const first = await (await reserve([{ sku: a!, quantity: 2 }], shopper, HOARDER)).json<Reservation>();
    expect((await reserve([{ sku: b!, quantity: 1 }], shopper, HOARDER)).status).toBe(201);
    const over = await reserve([{ sku: c!, quantity: 1 }], shopper, HOARDER);
    expect(await expectProblem(over, 429)).toMatchObject({ scope: "total", limit: 3, held: 3, requested: 1 });
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await reserve([{ sku: c!, quantity: 2 }], { "x-shopper-id": uid("other") }, HOARDER)).status).toBe(201);
    expect((await call(`/v1/reservations/${first.id}`, { method: "DELETE", headers: HOARDER })).status).toBe(200);
    expect((await reserve([{ sku: c!, quantity: 2 }], shopper, HOARDER)).status).toBe(201);
  });

  it("on a hot SKU all of a shopper's holds meet in one sub-shard, so the per-SKU cap stays exact", async () => {
    const [sku] = await makeSkus([40]);
    expect((await json("POST", `/admin/stock/${sku}/hot`, { sub_shards: 4 }, { authorization: "Bearer test-admin-token" })).status).toBe(200);
    const shopper = { "x-shopper-id": uid("hot-shopper") };
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await reserve([{ sku: sku!, quantity: 1 }], shopper, HOARDER);
      statuses.push(res.status);
      await res.body?.cancel();
    }
    expect(statuses).toEqual([201, 201, 429, 429]);
  });

  it("a shopper's tally rows live in the coordinator and go with the reservation: release, commit, extend and lapse", async () => {
    const [sku, other] = await makeSkus([20, 20]);
    const shopper = { "x-shopper-id": uid("tally") };
    const rows = (id: string) =>
      runInDurableObject(env.STOCK.getByName(coordinatorOfReservation(env, id)!), async (_o: unknown, state: DurableObjectState) =>
        state.storage.sql
          .exec<{ reservation_id: string; units: number; expires_at: number }>("SELECT reservation_id, units, expires_at FROM shopper_holds WHERE holder = ? ORDER BY expires_at", holderOfReservation(id)!)
          .toArray(),
      );
    const t0 = Date.now();
    setClock(t0);
    const hold = async (quantity: number, onSku = sku!) =>
      json("POST", "/v1/reservations", { items: [{ sku: onSku, quantity }], ttl_seconds: 60 }, { ...HOARDER, ...shopper, "idempotency-key": uid("idem") });
    const a = await (await hold(1)).json<Reservation>();
    const b = await (await hold(1)).json<Reservation>();
    expect(coordinatorOfReservation(env, a.id)).toBe(coordinatorOfReservation(env, b.id));
    expect((await rows(a.id)).map((r) => [r.reservation_id, r.units]).sort()).toEqual([[a.id, 1], [b.id, 1]].sort());
    // Release and commit take their rows in the coordinator's own transaction: room for two units again.
    expect((await call(`/v1/reservations/${a.id}`, { method: "DELETE", headers: HOARDER })).status).toBe(200);
    expect((await json("POST", `/v1/reservations/${b.id}/commit`, {}, HOARDER)).status).toBe(200);
    expect(await rows(a.id)).toEqual([]);
    // An extend keeps the units counted until the new deadline.
    const c = await (await hold(2)).json<Reservation>();
    expect((await json("POST", `/v1/reservations/${c.id}/extend`, { ttl_seconds: 600 }, HOARDER)).status).toBe(200);
    setClock(t0 + 120_000);
    expect(await expectProblem(await hold(2), 429)).toMatchObject({ scope: "total", limit: 3, held: 2, requested: 2 });
    // Lapsed: no longer counted, and swept (here by the next admission) rather than kept. (Another SKU: the
    // shard keeps a lapsed hold counted for its per-SKU cap until the coordinator's verdict.)
    setClock(t0 + 700_000);
    const d = await (await hold(2, other!)).json<Reservation>();
    expect((await rows(d.id)).map((r) => r.reservation_id)).toEqual([d.id]);
  });

  it("without x-shopper-id the IP's tally is kept by another shard than the key's coordinator when they differ, and still caps", async () => {
    const [a, b] = await makeSkus([10, 10]);
    const ip = { "cf-connecting-ip": "198.51.100.77" };
    const tally = shardName(tallyShardIndex(env, await holderKey("key-hoarder", "ip:198.51.100.77")));
    // Idempotency-Keys whose coordinator (their own hash, with no shopper id) is not the IP's tally shard.
    const remoteKey = () => {
      for (;;) {
        const key = uid("idem-ip");
        if (shardName(coordinatorForScope(env, `key-hoarder\u0000${key}`)) !== tally) return key;
      }
    };
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await json("POST", "/v1/reservations", { items: [{ sku: a, quantity: 1 }] }, { ...HOARDER, ...ip, "idempotency-key": remoteKey() });
      expect(res.status).toBe(201);
      ids.push((await res.json<Reservation>()).id);
    }
    const over = await json("POST", "/v1/reservations", { items: [{ sku: b, quantity: 2 }] }, { ...HOARDER, ...ip, "idempotency-key": remoteKey() });
    expect(await expectProblem(over, 429)).toMatchObject({ scope: "total", limit: 3, held: 2, requested: 2 });
    const held = await runInDurableObject(env.STOCK.getByName(tally), async (_o: unknown, state: DurableObjectState) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM shopper_holds WHERE reservation_id IN (SELECT value FROM json_each(?))", JSON.stringify(ids)).one().n,
    );
    expect(held).toBe(2);
    // Releasing one frees room, whichever shard coordinates it.
    expect((await call(`/v1/reservations/${ids[0]}`, { method: "DELETE", headers: HOARDER })).status).toBe(200);
    expect((await json("POST", "/v1/reservations", { items: [{ sku: b, quantity: 2 }] }, { ...HOARDER, ...ip, "idempotency-key": uid("idem-ip") })).status).toBe(201);
  });

  it("without x-shopper-id, a saga attempt that a retry took over cannot end the retry's row in the IP's tally: the total cap still counts it", async () => {
    const ip = { "cf-connecting-ip": "198.51.100.199" };
    const tally = shardName(tallyShardIndex(env, await holderKey("key-hoarder", `ip:${ip["cf-connecting-ip"]}`)));
    let sku = "";
    let other = "";
    while (!sku || shardNameForSku(env, sku) === tally) [sku, other] = (await makeSkus([10, 10])) as [string, string];
    const S = shardNameForSku(env, sku);
    // A key whose coordinator is neither the tally shard nor the SKU's: the tally is reached object-to-object.
    let key = "";
    while (!key || [tally, S].includes(shardName(coordinatorForScope(env, `key-hoarder\u0000${key}`)))) key = uid("idem-ip");
    // Attempt 1's hold on S stalls past its lease, then fails: its compensation runs after the retry has held.
    const gate = gateShardMethod("hold", S, "fail");
    const t0 = Date.now();
    setClock(() => t0);
    try {
      const body = { items: [{ sku, quantity: 1 }], ttl_seconds: 600 };
      const first = json("POST", "/v1/reservations", body, { ...HOARDER, ...ip, "idempotency-key": key });
      await gate.entered();
      setClock(() => t0 + 31_000);
      const retry = await json("POST", "/v1/reservations", body, { ...HOARDER, ...ip, "idempotency-key": key });
      expect(retry.status).toBe(201);
      const id = (await retry.json<{ id: string }>()).id;
      gate.open();
      await first;
      const rows = await runInDurableObject(env.STOCK.getByName(tally), (_, state) =>
        state.storage.sql.exec<{ units: number }>("SELECT units FROM shopper_holds WHERE reservation_id = ?", id).toArray(),
      );
      expect(rows).toEqual([{ units: 1 }]);
      // Total cap 3 with 1 unit held: 3 more units are refused.
      const over = await json("POST", "/v1/reservations", { items: [{ sku: other, quantity: 2 }, { sku, quantity: 1 }] }, { ...HOARDER, ...ip, "idempotency-key": uid("idem-ip") });
      expect(over.status).toBe(429);
    } finally {
      gate.undo();
      setClock(null);
    }
  });

  it("without x-shopper-id each client IP is its own shopper; a malformed x-shopper-id is a 400", async () => {
    const [sku] = await makeSkus([20]);
    for (const ip of ["198.51.100.20", "198.51.100.21"]) {
      expect((await reserve([{ sku: sku!, quantity: 2 }], { "cf-connecting-ip": ip }, HOARDER)).status).toBe(201);
      await expectProblem(await reserve([{ sku: sku!, quantity: 1 }], { "cf-connecting-ip": ip }, HOARDER), 429);
    }
    await expectProblem(await reserve([{ sku: sku!, quantity: 1 }], { "x-shopper-id": "has space" }), 400);
  });
});

describe("reservation rate limits on the Rate Limiting binding", () => {
  it("counts each shopper of a storefront key separately, with no object call for the limit", async () => {
    const keys: string[] = [];
    const counter = countingEnv({ ...env, RL_RESERVE: { limit: async ({ key }: { key: string }) => (keys.push(key), { success: keys.length < 3 }) } } as unknown as Env);
    const [sku] = await makeSkus([10]);
    expect((await reserveWith(counter.env, [{ sku: sku!, quantity: 1 }], { "x-shopper-id": "rl-a" })).status).toBe(201);
    expect((await reserveWith(counter.env, [{ sku: sku!, quantity: 1 }], { "x-shopper-id": "rl-b" })).status).toBe(201);
    expect(keys[0]).not.toBe(keys[1]);
    counter.reset();
    const refused = await reserveWith(counter.env, [{ sku: sku!, quantity: 1 }], { "x-shopper-id": "rl-a" });
    expect(await expectProblem(refused, 429)).toMatchObject({ route_class: "reserve" });
    expect(keys[2]).toBe(keys[0]);
    expect(counter.calls).toEqual([]);
  });
});
