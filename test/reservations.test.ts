import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { coordinatorOfReservation } from "../src/stock/routing";
import { applyRetention, DEFAULT_RETENTION } from "../src/stock/retention";
import { AFFILIATE_TEST_KEY, addStorefrontKey, seedApiKeys } from "./helpers/api-keys";
import { admin, call, expectProblem, json, storefront, uid } from "./helpers/http";
import { ledgerOf, makeSkus, reconcile, shardStub } from "./helpers/stock-fixtures";

type Reservation = { id: string; status: string; expires_at: string; currency: string; items: { sku: string; quantity: number; location: string; unit_price: number; currency: string }[] };
type Avail = { items: { sku: string; on_hand: number; reserved: number; available: number; status: string; locations?: { location: string; available: number }[] }[] };
type Line = { sku: string; quantity: number; location?: string };

beforeAll(async () => {
  await seedApiKeys(env.DB);
});

function reserve(items: Line[], opts: { key?: string; ttl?: number; headers?: Record<string, string>; currency?: string } = {}) {
  const body: Record<string, unknown> = { items };
  if (opts.ttl !== undefined) body.ttl_seconds = opts.ttl;
  if (opts.currency) body.currency = opts.currency;
  return json("POST", "/v1/reservations", body, storefront({ "idempotency-key": opts.key ?? uid("idem"), ...opts.headers }));
}

async function availability(skus: string[], byLocation = false): Promise<Avail["items"]> {
  const res = await call(`/v1/availability?skus=${skus.join(",")}${byLocation ? "&by_location=true" : ""}`);
  expect(res.status).toBe(200);
  return (await res.json<Avail>()).items;
}

const post = (path: string, body?: unknown) => (body === undefined ? call(path, { method: "POST", headers: storefront() }) : json("POST", path, body, storefront()));

describe("auth and validation", () => {
  it("401 without a key or with an unknown key, 403 for an affiliate key", async () => {
    const sku = (await makeSkus([5]))[0]!;
    const body = { items: [{ sku, quantity: 1 }] };
    await expectProblem(await json("POST", "/v1/reservations", body, { "idempotency-key": "k" }), 401);
    await expectProblem(await json("POST", "/v1/reservations", body, { authorization: "Bearer nope", "idempotency-key": "k" }), 401);
    const p = await expectProblem(await json("POST", "/v1/reservations", body, { authorization: `Bearer ${AFFILIATE_TEST_KEY}`, "idempotency-key": "k" }), 403);
    expect(p.detail).toMatch(/storefront/);
    await expectProblem(await call("/v1/reservations/rsv_0_" + "0".repeat(32), { headers: { authorization: `Bearer ${AFFILIATE_TEST_KEY}` } }), 403);
    expect((await availability([sku]))[0]!.reserved).toBe(0);
  });

  it("400 without Idempotency-Key and for quantities or lines outside the limits", async () => {
    const sku = (await makeSkus([5]))[0]!;
    const p = await expectProblem(await json("POST", "/v1/reservations", { items: [{ sku, quantity: 1 }] }, storefront()), 400);
    expect(JSON.stringify(p.errors)).toContain("idempotency-key");
    for (const items of [[], [{ sku, quantity: 0 }], [{ sku, quantity: -1 }], [{ sku, quantity: 1.5 }], [{ sku, quantity: 1001 }], Array.from({ length: 101 }, () => ({ sku, quantity: 1 }))]) {
      await expectProblem(await reserve(items as Line[]), 400);
    }
    await expectProblem(await reserve([{ sku, quantity: 1 }], { ttl: 3601 }), 400);
    await expectProblem(await reserve([{ sku, quantity: 1 }], { ttl: 0 }), 400);
    expect((await availability([sku]))[0]!.reserved).toBe(0);
  });

  it("422 for SKUs of draft or archived products (and archived variants): nothing is held", async () => {
    const [draftSku, archivedSku, retiredVariant, liveSku] = [(await makeSkus([5]))[0]!, (await makeSkus([5]))[0]!, (await makeSkus([5]))[0]!, (await makeSkus([5]))[0]!];
    const productOf = async (sku: string) => (await env.DB.prepare("SELECT product_id FROM variants WHERE sku = ?").bind(sku).first<{ product_id: string }>())!.product_id;
    await env.DB.batch([
      env.DB.prepare("UPDATE products SET status = 'draft' WHERE id = ?").bind(await productOf(draftSku)),
      env.DB.prepare("UPDATE products SET status = 'archived' WHERE id = ?").bind(await productOf(archivedSku)),
      env.DB.prepare("UPDATE variants SET status = 'archived' WHERE sku = ?").bind(retiredVariant),
    ]);
    for (const sku of [draftSku, archivedSku, retiredVariant]) {
      const p = await expectProblem(await reserve([{ sku: liveSku, quantity: 1 }, { sku, quantity: 1 }]), 422);
      expect(p.inactive_skus).toEqual([sku]);
    }
    const live = await reserve([{ sku: liveSku, quantity: 1 }]);
    expect(live.status).toBe(201);
    await live.body?.cancel();
    const [liveRow, ...others] = await availability([liveSku, draftSku, archivedSku, retiredVariant]);
    expect(liveRow!.reserved).toBe(1);
    expect(others.map((o) => o.reserved)).toEqual([0, 0, 0]);
  });

  it("422 lists unknown SKUs and unknown locations, and refuses unsupported currencies", async () => {
    const sku = (await makeSkus([5]))[0]!;
    const p = await expectProblem(await reserve([{ sku, quantity: 1 }, { sku: "NOPE-1", quantity: 1 }, { sku: "NOPE-2", quantity: 1 }]), 422);
    expect(p.unknown_skus).toEqual(["NOPE-1", "NOPE-2"]);
    const loc = await expectProblem(await reserve([{ sku, quantity: 1, location: "loc-mars" }]), 422);
    expect(loc.unknown_locations).toEqual(["loc-mars"]);
    await expectProblem(await reserve([{ sku, quantity: 1 }], { currency: "JPY" }), 422);
    expect((await availability([sku]))[0]!.reserved).toBe(0);
  });
});

describe("creating a reservation", () => {
  it("holds stock, snapshots the unit price and shows up in availability and the ledger", async () => {
    const [a, b] = await makeSkus([10, 4], { prices: { USD: 1299, EUR: 1199 } });
    const res = await reserve([{ sku: a!, quantity: 3 }, { sku: b!, quantity: 4 }], { currency: "EUR", ttl: 120 });
    expect(res.status).toBe(201);
    const r = await res.json<Reservation>();
    expect(r.status).toBe("held");
    expect(res.headers.get("location")).toBe(`/v1/reservations/${r.id}`);
    expect(Date.parse(r.expires_at) - Date.now()).toBeGreaterThan(100_000);
    expect(r.items).toEqual(
      expect.arrayContaining([
        { sku: a, quantity: 3, location: "loc-us-east", unit_price: 1199, currency: "EUR", regular_price: 1199, promotion_id: null },
        { sku: b, quantity: 4, location: "loc-us-east", unit_price: 1199, currency: "EUR", regular_price: 1199, promotion_id: null },
      ]),
    );
    const got = await (await call(`/v1/reservations/${r.id}`, { headers: storefront() })).json<Reservation>();
    expect(got).toMatchObject({ id: r.id, status: "held", currency: "EUR" });
    const av = await availability([a!, b!]);
    expect(av[0]).toMatchObject({ sku: a, on_hand: 10, reserved: 3, available: 7, status: "in_stock" });
    expect(av[1]).toMatchObject({ sku: b, on_hand: 4, reserved: 4, available: 0, status: "out_of_stock" });
    const ledger = await ledgerOf(a!);
    expect(ledger.map((l) => l.kind)).toEqual(["baseline", "reserve"]);
    expect(ledger[1]).toMatchObject({ reservation_id: r.id, delta_reserved: 3, actor: "storefront:key-dev-storefront" });
  });

  it("picks the shopper's regional location, else the one with the most stock, unless a location is named", async () => {
    const [sku] = await makeSkus([{ "loc-us-east": 3, "loc-eu-central": 5, "loc-ap-south": 8 }]);
    const eu = await (await reserve([{ sku: sku!, quantity: 2 }], { headers: { "x-shopper-region": "EU" } })).json<Reservation>();
    expect(eu.items[0]!.location).toBe("loc-eu-central");
    const most = await (await reserve([{ sku: sku!, quantity: 2 }])).json<Reservation>();
    expect(most.items[0]!.location).toBe("loc-ap-south");
    // The EU location has 3 left; asking for 4 there falls back to the location with the most stock.
    const fallback = await (await reserve([{ sku: sku!, quantity: 4 }], { headers: { "x-shopper-region": "EU" } })).json<Reservation>();
    expect(fallback.items[0]!.location).toBe("loc-ap-south");
    const named = await (await reserve([{ sku: sku!, quantity: 1, location: "loc-us-east" }])).json<Reservation>();
    expect(named.items[0]!.location).toBe("loc-us-east");
    const short = await expectProblem(await reserve([{ sku: sku!, quantity: 4, location: "loc-us-east" }]), 409);
    expect(short.shortfalls).toEqual([{ sku, requested: 4, available: 2, location: "loc-us-east" }]);
  });

  it("a SKU in the catalog without baseline stock has none: 409", async () => {
    const [sku] = await makeSkus([{}]);
    const p = await expectProblem(await reserve([{ sku: sku!, quantity: 1 }]), 409);
    expect(p.shortfalls).toEqual([{ sku, requested: 1, available: 0 }]);
  });

  it("two lines of one cart on the same SKU are checked together", async () => {
    const [sku] = await makeSkus([5]);
    const p = await expectProblem(await reserve([{ sku: sku!, quantity: 3 }, { sku: sku!, quantity: 3 }]), 409);
    expect(p.shortfalls).toEqual([{ sku, requested: 6, available: 5 }]);
    expect((await availability([sku!]))[0]!.reserved).toBe(0);
    const ok = await reserve([{ sku: sku!, quantity: 2 }, { sku: sku!, quantity: 3 }]);
    expect(ok.status).toBe(201);
    expect((await ok.json<Reservation>()).items).toEqual([{ sku, quantity: 5, location: "loc-us-east", unit_price: expect.any(Number), currency: "USD", regular_price: expect.any(Number), promotion_id: null }]);
    expect((await availability([sku!]))[0]).toMatchObject({ reserved: 5, available: 0 });
  });

  it("safety stock is never reserved", async () => {
    const [sku] = await makeSkus([10], { safetyStock: 4 });
    const p = await expectProblem(await reserve([{ sku: sku!, quantity: 7 }]), 409);
    expect(p.shortfalls).toEqual([{ sku, requested: 7, available: 6 }]);
    expect((await reserve([{ sku: sku!, quantity: 6 }])).status).toBe(201);
  });
});

// Hundreds of requests through one single-threaded runtime on a shared machine: generous timeouts.
describe("racing", { timeout: 120_000 }, () => {
  it("200 concurrent single-unit reservations against 50 in stock: exactly 50 succeed, 150 get 409", async () => {
    const [sku] = await makeSkus([50]);
    const responses = await Promise.all(Array.from({ length: 200 }, () => reserve([{ sku: sku!, quantity: 1 }])));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(50);
    expect(statuses.filter((s) => s === 409)).toHaveLength(150);
    const conflict = responses.find((r) => r.status === 409)!;
    expect((await expectProblem(conflict, 409)).shortfalls).toEqual([{ sku, requested: 1, available: 0 }]);
    const ids = new Set(await Promise.all(responses.filter((r) => r.status === 201).map(async (r) => (await r.json<Reservation>()).id)));
    expect(ids.size).toBe(50);
    expect((await availability([sku!]))[0]).toMatchObject({ on_hand: 50, reserved: 50, available: 0, status: "out_of_stock" });
    const rec = await reconcile(sku!);
    expect(rec).toMatchObject({ mismatches: [], oversold: 0, reserved: 50 });
    expect((await ledgerOf(sku!)).filter((l) => l.kind === "reserve")).toHaveLength(50);
  });

  it("concurrent multi-SKU carts that overlap on SKUs leave no partial holds", async () => {
    const skus = await makeSkus([7, 7, 7, 7, 7, 7]);
    const shards = new Set(skus.map((s) => coordinatorOfReservationShard(s)));
    expect(shards.size).toBeGreaterThan(1);
    // Each cart takes 2–3 SKUs in a rotating order; 60 carts want far more than there is.
    const carts: Line[][] = Array.from({ length: 60 }, (_, i) => {
      const n = 2 + (i % 2);
      return Array.from({ length: n }, (_, j) => ({ sku: skus[(i + j * 2) % skus.length]!, quantity: 1 + ((i + j) % 2) }));
    });
    const responses = await Promise.all(carts.map((items) => reserve(items)));
    const expected = new Map<string, number>(skus.map((s) => [s, 0]));
    let ok = 0;
    for (const [i, res] of responses.entries()) {
      if (res.status === 201) {
        ok++;
        for (const l of carts[i]!) expected.set(l.sku, expected.get(l.sku)! + l.quantity);
      } else expect(res.status).toBe(409);
    }
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThan(60);
    const av = await availability(skus);
    for (const item of av) {
      // Reserved units are exactly those of the carts that succeeded: a failed cart left nothing behind.
      expect(item.reserved).toBe(expected.get(item.sku));
      expect(item.reserved).toBeLessThanOrEqual(7);
    }
    for (const sku of skus) expect(await reconcile(sku)).toMatchObject({ mismatches: [], oversold: 0 });
  });

  it("20 concurrent requests with the same Idempotency-Key create one reservation", async () => {
    const [sku] = await makeSkus([100]);
    const key = uid("idem");
    const responses = await Promise.all(Array.from({ length: 20 }, () => reserve([{ sku: sku!, quantity: 3 }], { key })));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(201));
    const bodies = await Promise.all(responses.map((r) => r.json<Reservation>()));
    expect(new Set(bodies.map((b) => b.id)).size).toBe(1);
    expect(responses.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(19);
    expect((await availability([sku!]))[0]!.reserved).toBe(3);
    expect((await ledgerOf(sku!)).filter((l) => l.kind === "reserve")).toHaveLength(1);
  });
});

function coordinatorOfReservationShard(sku: string): string {
  return shardStub(sku).id.toString();
}

describe("idempotency", () => {
  it("the same key with the same body replays the original answer, with another body it is 422", async () => {
    const [sku] = await makeSkus([10]);
    const key = uid("idem");
    const first = await (await reserve([{ sku: sku!, quantity: 2 }], { key })).json<Reservation>();
    const again = await reserve([{ sku: sku!, quantity: 2 }], { key });
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.json()).toEqual(first);
    await expectProblem(await reserve([{ sku: sku!, quantity: 3 }], { key }), 422);
    expect((await availability([sku!]))[0]!.reserved).toBe(2);
  });

  it("a failed create is replayed as the same 409, even after stock arrives", async () => {
    const [sku] = await makeSkus([1]);
    const key = uid("idem");
    await expectProblem(await reserve([{ sku: sku!, quantity: 2 }], { key }), 409);
    await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 10 }, admin());
    const replay = await expectProblem(await reserve([{ sku: sku!, quantity: 2 }], { key }), 409);
    expect(replay.shortfalls).toEqual([{ sku, requested: 2, available: 1 }]);
    expect((await reserve([{ sku: sku!, quantity: 2 }])).status).toBe(201);
  });

  it("keys are scoped per storefront key", async () => {
    await addStorefrontKey(env.DB, "key-second-store", "second-store-key");
    const [sku] = await makeSkus([10]);
    const key = uid("idem");
    const a = await (await reserve([{ sku: sku!, quantity: 1 }], { key })).json<Reservation>();
    const res = await json("POST", "/v1/reservations", { items: [{ sku, quantity: 1 }] }, { authorization: "Bearer second-store-key", "idempotency-key": key });
    expect(res.status).toBe(201);
    const b = await res.json<Reservation>();
    expect(b.id).not.toBe(a.id);
    expect((await availability([sku!]))[0]!.reserved).toBe(2);
    // A reservation belongs to the storefront key that made it: to any other key it does not exist.
    const other = { authorization: "Bearer second-store-key" };
    await expectProblem(await call(`/v1/reservations/${a.id}`, { headers: other }), 404);
    await expectProblem(await call(`/v1/reservations/${a.id}/commit`, { method: "POST", headers: other }), 404);
    await expectProblem(await call(`/v1/reservations/${a.id}`, { method: "DELETE", headers: other }), 404);
    expect((await (await call(`/v1/reservations/${b.id}`, { headers: other })).json<Reservation>()).status).toBe("held");
  });
});

describe("lifecycle", () => {
  it("extend, commit and their repeats; a committed reservation cannot be released", async () => {
    const [sku] = await makeSkus([10]);
    const r = await (await reserve([{ sku: sku!, quantity: 4 }], { ttl: 60 })).json<Reservation>();
    const ext = await post(`/v1/reservations/${r.id}/extend`, { ttl_seconds: 1800 });
    expect(ext.status).toBe(200);
    const extended = await ext.json<Reservation>();
    expect(Date.parse(extended.expires_at)).toBeGreaterThan(Date.parse(r.expires_at) + 1_000_000);
    const holds = await runInDurableObject(shardStub(sku!), (_, s) => s.storage.sql.exec<{ expires_at: number }>("SELECT expires_at FROM holds WHERE reservation_id = ?", r.id).toArray());
    expect(holds[0]!.expires_at).toBe(Date.parse(extended.expires_at));

    const c1 = await post(`/v1/reservations/${r.id}/commit`);
    expect(c1.status).toBe(200);
    expect((await c1.json<Reservation>()).status).toBe("committed");
    const c2 = await post(`/v1/reservations/${r.id}/commit`);
    expect(c2.status).toBe(200);
    expect((await c2.json<Reservation>()).status).toBe("committed");
    expect((await availability([sku!]))[0]).toMatchObject({ on_hand: 6, reserved: 0, available: 6 });
    await expectProblem(await call(`/v1/reservations/${r.id}`, { method: "DELETE", headers: storefront() }), 409);
    await expectProblem(await post(`/v1/reservations/${r.id}/extend`, { ttl_seconds: 60 }), 409);
    const ledger = await ledgerOf(sku!);
    expect(ledger.filter((l) => l.kind === "commit")).toHaveLength(1);
    expect(await reconcile(sku!)).toMatchObject({ mismatches: [], oversold: 0, onHand: 6, reserved: 0 });
  });

  it("release and its repeats; a released reservation cannot be committed or extended", async () => {
    const [sku] = await makeSkus([10]);
    const r = await (await reserve([{ sku: sku!, quantity: 4 }])).json<Reservation>();
    const d1 = await call(`/v1/reservations/${r.id}`, { method: "DELETE", headers: storefront() });
    expect(d1.status).toBe(200);
    expect((await d1.json<Reservation>()).status).toBe("released");
    const d2 = await call(`/v1/reservations/${r.id}`, { method: "DELETE", headers: storefront() });
    expect(d2.status).toBe(200);
    expect((await d2.json<Reservation>()).status).toBe("released");
    await expectProblem(await post(`/v1/reservations/${r.id}/commit`), 409);
    await expectProblem(await post(`/v1/reservations/${r.id}/extend`, { ttl_seconds: 60 }), 409);
    expect((await availability([sku!]))[0]).toMatchObject({ on_hand: 10, reserved: 0, available: 10 });
    expect((await ledgerOf(sku!)).filter((l) => l.kind === "release")).toHaveLength(1);
  });

  it("unknown reservation ids are 404", async () => {
    await expectProblem(await call("/v1/reservations/rsv_1_" + "a".repeat(32), { headers: storefront() }), 404);
    await expectProblem(await call("/v1/reservations/not-an-id", { headers: storefront() }), 404);
    await expectProblem(await post("/v1/reservations/rsv_99999_" + "a".repeat(32) + "/commit"), 404);
  });

  it("expiry: reads `expired` at the deadline before any alarm, the alarm frees the stock, commit is 409", async () => {
    const [sku] = await makeSkus([5]);
    const r = await (await reserve([{ sku: sku!, quantity: 5 }], { ttl: 1 })).json<Reservation>();
    const coordinator = env.STOCK.getByName(coordinatorOfReservation(env, r.id)!);
    await new Promise((resolve) => setTimeout(resolve, Date.parse(r.expires_at) - Date.now() + 20));
    // The header has no alarm of its own: `expired` here is the lazy read.
    expect(await runInDurableObject(coordinator, (_, s) => s.storage.sql.exec<{ status: string }>("SELECT status FROM reservations WHERE id = ?", r.id).one().status)).toBe("held");
    const got = await (await call(`/v1/reservations/${r.id}`, { headers: storefront() })).json<Reservation>();
    expect(got.status).toBe("expired");
    await runDurableObjectAlarm(shardStub(sku!));
    const hold = await runInDurableObject(shardStub(sku!), (_, s) => s.storage.sql.exec<{ state: string }>("SELECT state FROM holds WHERE reservation_id = ?", r.id).one());
    expect(hold.state).toBe("expired");
    expect((await availability([sku!]))[0]).toMatchObject({ reserved: 0, available: 5 });
    await expectProblem(await post(`/v1/reservations/${r.id}/commit`), 409);
    await expectProblem(await post(`/v1/reservations/${r.id}/extend`, { ttl_seconds: 60 }), 409);
    expect((await ledgerOf(sku!)).map((l) => l.kind)).toEqual(["baseline", "reserve", "expire"]);
    expect(await reconcile(sku!)).toMatchObject({ mismatches: [], oversold: 0 });
  });

  it("the shard alarm is armed for the earliest hold deadline", async () => {
    const [sku] = await makeSkus([5]);
    const r = await (await reserve([{ sku: sku!, quantity: 1 }], { ttl: 900 })).json<Reservation>();
    // The shard's own alarm flushes the outbox; running it by hand as well raced that run under load. Once the
    // outbox is empty only the hold deadline is left, so the alarm must be the hold's, not an outbox retry's.
    const alarm = await vi.waitFor(
      async () => {
        const state = await runInDurableObject(shardStub(sku!), async (_, s) => ({
          pending: s.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox").one().n,
          at: await s.storage.getAlarm(),
        }));
        const { at } = state;
        if (state.pending > 0 || at === null || at < Date.now() + 60_000) throw new Error(`outbox ${state.pending}, alarm ${at}`);
        return at;
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(alarm).toBeLessThanOrEqual(Date.parse(r.expires_at));
  });

  it("state survives the objects being restarted", async () => {
    const [sku] = await makeSkus([10]);
    const r = await (await reserve([{ sku: sku!, quantity: 3 }])).json<Reservation>();
    expect(coordinatorOfReservation(env, r.id)).toBeTruthy();
    // Evicts every object (the line's shard and the reservation's coordinator); each is rebuilt from its
    // SQLite storage on the next request. ctx.abort() inside runInDurableObject crashed workerd here.
    await abortAllDurableObjects();
    const got = await (await call(`/v1/reservations/${r.id}`, { headers: storefront() })).json<Reservation>();
    expect(got.status).toBe("held");
    expect((await availability([sku!]))[0]).toMatchObject({ reserved: 3, available: 7 });
    expect((await post(`/v1/reservations/${r.id}/commit`)).status).toBe(200);
    expect((await availability([sku!]))[0]).toMatchObject({ on_hand: 7, reserved: 0 });
  });
});

describe("availability", () => {
  it("sums over locations, splits with by_location, and validates input", async () => {
    const [a, b] = await makeSkus([{ "loc-us-east": 3, "loc-eu-central": 4 }, 2]);
    const [sa, sb] = await availability([a!, b!], true);
    expect(sa).toMatchObject({ sku: a, on_hand: 7, available: 7, status: "in_stock" });
    expect(sa!.locations!.map((l) => [l.location, l.available])).toEqual([["loc-eu-central", 4], ["loc-us-east", 3]]);
    expect(sb).toMatchObject({ on_hand: 2, available: 2, status: "low_stock" });
    expect((await availability([a!]))[0]!.locations).toBeUndefined();
    const p = await expectProblem(await call(`/v1/availability?skus=${a},NOPE-9`), 422);
    expect(p.unknown_skus).toEqual(["NOPE-9"]);
    await expectProblem(await call("/v1/availability"), 400);
    await expectProblem(await call(`/v1/availability?skus=${Array.from({ length: 101 }, (_, i) => `S${i}`).join(",")}`), 400);
  });
});

describe("retention", () => {
  it("folds old ledger rows into snapshot rows and prunes finished reservations: the ledger still replays to the counts, live holds stay", async () => {
    const [sku] = await makeSkus([{ "loc-us-east": 40, "loc-eu-central": 10 }]);
    const ids: { id: string; action: "commit" | "release" | "keep" }[] = [];
    for (let i = 0; i < 9; i++) {
      const res = await reserve([{ sku: sku!, quantity: 1 + (i % 3), location: i % 2 ? "loc-eu-central" : "loc-us-east" }]);
      expect(res.status).toBe(201);
      ids.push({ id: (await res.json<Reservation>()).id, action: i < 4 ? "commit" : i < 8 ? "release" : "keep" });
    }
    for (const r of ids) {
      if (r.action === "commit") expect((await post(`/v1/reservations/${r.id}/commit`)).status).toBe(200);
      if (r.action === "release") expect((await call(`/v1/reservations/${r.id}`, { method: "DELETE", headers: storefront() })).status).toBe(200);
    }
    const before = await ledgerOf(sku!);
    const counts = await reconcile(sku!);
    expect(counts.mismatches).toEqual([]);
    // Forty days later, with the default windows (ledger 30 days, idempotency 1 day).
    const later = Date.now() + 40 * 86_400_000;
    const result = await runInDurableObject(shardStub(sku!), (_, state) => state.storage.transactionSync(() => applyRetention(state.storage.sql, later, DEFAULT_RETENTION, [])));
    expect(result.ledgerRowsFolded).toBeGreaterThan(0);
    const after = await ledgerOf(sku!);
    expect(after.length).toBeLessThan(before.length);
    // At most one row per (location, kind, reason) is left, and the replay still gives the live counts.
    const groups = new Set(after.map((l) => `${l.location}|${l.kind}|${l.reason}`));
    expect(after.length).toBe(groups.size);
    expect(await reconcile(sku!)).toEqual(counts);
    // Finished reservations are gone with their holds; the live one keeps both.
    const rows = await runInDurableObject(shardStub(sku!), (_, state) => ({
      reservations: state.storage.sql.exec<{ id: string; status: string }>("SELECT id, status FROM reservations").toArray(),
      holds: state.storage.sql.exec<{ reservation_id: string; state: string }>("SELECT reservation_id, state FROM holds WHERE sku = ?", sku!).toArray(),
    }));
    const live = ids.find((r) => r.action === "keep")!.id;
    expect(rows.reservations.filter((r) => ids.some((x) => x.id === r.id)).map((r) => r.id)).toEqual(
      rows.reservations.some((r) => r.id === live) ? [live] : [],
    );
    expect(rows.holds).toEqual([{ reservation_id: live, state: "held" }]);
    // The live reservation can still be committed after the sweep, and the ledger keeps replaying.
    expect((await post(`/v1/reservations/${live}/commit`)).status).toBe(200);
    expect((await reconcile(sku!)).mismatches).toEqual([]);
    // Within the windows nothing is touched.
    const again = await runInDurableObject(shardStub(sku!), (_, state) => state.storage.transactionSync(() => applyRetention(state.storage.sql, Date.now(), DEFAULT_RETENTION, [])));
    expect(again).toEqual({ ledgerRowsFolded: 0, reservations: 0, holds: 0, adjustments: 0, tallyRows: 0 });
  });
});

describe("retention storage", () => {
  it("finished reservations stop costing storage: bytes per reservation before and after retention (printed for bench/results/retention.md)", async () => {
    const [sku] = await makeSkus([{ "loc-us-east": 100_000 }]);
    // One real checkout (reserve, commit) gives the row shapes; it is then cloned N times on its shard.
    const res = await reserve([{ sku: sku!, quantity: 1 }]);
    const { id } = await res.json<Reservation>();
    expect((await post(`/v1/reservations/${id}/commit`)).status).toBe(200);
    const N = 5_000;
    const figures = await runInDurableObject(shardStub(sku!), (_, state) => {
      const sql = state.storage.sql;
      const size = () => sql.databaseSize;
      const free = () => {
        try {
          return (sql.exec<{ freelist_count: number }>("PRAGMA freelist_count").one().freelist_count ?? 0) * (sql.exec<{ page_size: number }>("PRAGMA page_size").one().page_size ?? 4096);
        } catch {
          return 0;
        }
      };
      const live = () => size() - free();
      const start = live();
      state.storage.transactionSync(() => {
        for (let i = 0; i < N; i++) {
          const rid = `${id.slice(0, -8)}${String(i).padStart(8, "0")}`;
          sql.exec(
            `INSERT INTO holds (reservation_id, sku, location, quantity, expires_at, state, created_at)
             SELECT ?, sku, location, quantity, expires_at, state, created_at FROM holds WHERE reservation_id = ?`,
            rid,
            id,
          );
          sql.exec(
            `INSERT INTO ledger (sku, location, seq, kind, delta_on_hand, delta_reserved, on_hand_after, reserved_after, reason, reservation_id, actor, event_id, at)
             SELECT sku, location, seq, kind, 0, 0, on_hand_after, reserved_after, reason, ?, actor, event_id, at FROM ledger WHERE reservation_id = ?`,
            rid,
            id,
          );
          sql.exec(
            `INSERT OR IGNORE INTO reservations (id, scope_key, owner, body_hash, status, items, currency, expires_at, lease_until, outcome, created_at, updated_at, committed_at, released_at)
             SELECT ?, scope_key || ?, owner, body_hash, status, items, currency, expires_at, lease_until, outcome, created_at, updated_at, committed_at, released_at FROM reservations WHERE id = ?`,
            rid,
            rid,
            id,
          );
        }
      });
      const filled = live();
      const later = Date.now() + 40 * 86_400_000;
      let pass = 0;
      while (pass++ < 100) {
        const r = state.storage.transactionSync(() => applyRetention(sql, later, { ...DEFAULT_RETENTION, batch: 5_000 }, []));
        if (!r.ledgerRowsFolded && !r.reservations && !r.holds && !r.adjustments) break;
      }
      // Other tests of this file share the shard: count this SKU's rows only.
      const rows = (t: string) => sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t} WHERE sku = ?`, sku!).one().n;
      return { start, filled, after: live(), freeAfter: free(), ledger: rows("ledger"), holds: rows("holds") };
    });
    const perReservation = (figures.filled - figures.start) / N;
    const perMillionBefore = (perReservation * 1e6) / 2 ** 20;
    const perMillionAfter = (Math.max(0, figures.after - figures.start) / N) * 1e6 / 2 ** 20;
    console.log(
      "retention storage",
      JSON.stringify({ N, bytes_per_reservation_before: Math.round(perReservation), mib_per_million_before: Math.round(perMillionBefore), mib_per_million_after: Math.round(perMillionAfter), ...figures }),
    );
    expect(perReservation).toBeGreaterThan(100);
    expect(figures.ledger).toBeLessThan(10);
    expect(figures.holds).toBe(0);
  }, 120_000);
});
