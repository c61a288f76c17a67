import { env, runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import type { HotStatus } from "../src/stock/hot";
import { clearSoldOut, markSoldOut, soldOutSkus } from "../src/stock/flash-gate";
import { hotSubShardName, shardNameForSku } from "../src/stock/routing";
import { AFFILIATE_TEST_KEY, addStorefrontKey, seedApiKeys } from "./helpers/api-keys";
import { admin, call, expectProblem, json, storefront, uid } from "./helpers/http";
import { makeSkus } from "./helpers/stock-fixtures";

beforeAll(async () => {
  await seedApiKeys(env.DB);
  await addStorefrontKey(env.DB, "key-hoarder", "hoarder-storefront-key");
});

type Reservation = { id: string; status: string; items: { sku: string; quantity: number; location: string }[] };

function reserve(items: { sku: string; quantity: number }[], key = uid("idem"), auth = storefront()) {
  return json("POST", "/v1/reservations", { items }, { ...auth, "idempotency-key": key });
}

async function status(sku: string): Promise<HotStatus> {
  const res = await call(`/admin/stock/${sku}/hot`, { headers: admin() });
  expect(res.status).toBe(200);
  return res.json<HotStatus>();
}

async function markHot(sku: string, k: number): Promise<HotStatus> {
  const res = await json("POST", `/admin/stock/${sku}/hot`, { sub_shards: k }, admin());
  if (res.status !== 200) throw new Error(`mark hot: ${res.status} ${await res.text()}`);
  return res.json<HotStatus>();
}

/** Every object's ledger replays to its counts, and no ledger row ever shows more reserved than on hand. */
async function ledgersReconcile(sku: string, k: number) {
  const names = [shardNameForSku(env, sku), ...Array.from({ length: k }, (_, i) => hotSubShardName(sku, i))];
  for (const name of names) {
    const check = await runInDurableObject(env.STOCK.getByName(name), (_, state) => {
      const sql = state.storage.sql;
      const rows = sql.exec<{ location: string; on_hand: number; reserved: number }>("SELECT location, on_hand, reserved FROM stock WHERE sku = ?", sku).toArray();
      const ledger = sql.exec<{ location: string; delta_on_hand: number; delta_reserved: number; on_hand_after: number; reserved_after: number }>(
        // Its own rows only: `transit` rows count units on their way to or from another object of the SKU.
        "SELECT * FROM ledger WHERE sku = ? AND kind <> 'transit' ORDER BY id", sku).toArray();
      const bad: string[] = [];
      for (const r of rows) {
        const mine = ledger.filter((l) => l.location === r.location);
        if (mine.reduce((n, l) => n + l.delta_on_hand, 0) !== r.on_hand) bad.push(`${name} ${r.location} on_hand`);
        if (mine.reduce((n, l) => n + l.delta_reserved, 0) !== r.reserved) bad.push(`${name} ${r.location} reserved`);
        if (mine.some((l) => l.reserved_after > l.on_hand_after || l.on_hand_after < 0)) bad.push(`${name} ${r.location} oversold`);
      }
      return bad;
    });
    expect(check).toEqual([]);
  }
}

async function settle(responses: Response[]) {
  const statuses = responses.map((r) => r.status);
  const bodies = await Promise.all(responses.map((r) => r.json<Reservation>()));
  return { created: bodies.filter((_, i) => statuses[i] === 201), statuses };
}

describe("hot-SKU escrow", () => {
  it("marking splits free stock into K quotas; quotas + reserved + committed = stock", async () => {
    const [sku] = await makeSkus([{ "loc-us-east": 10, "loc-eu-central": 3 }]);
    const s = await markHot(sku!, 4);
    expect(s.hot).toBe(true);
    expect(s.sub_shard_totals.map((t) => t.on_hand)).toEqual([4, 3, 3, 3]);
    expect(s.home.on_hand).toBe(0);
    expect(s.totals).toMatchObject({ on_hand: 13, reserved: 0, committed: 0, quotas: 13 });
    expect(s.in_transit).toBe(0);
    // Marking again with the same K is a no-op; another K is a conflict.
    expect((await markHot(sku!, 4)).totals.on_hand).toBe(13);
    await expectProblem(await json("POST", `/admin/stock/${sku}/hot`, { sub_shards: 2 }, admin()), 409);
  });

  it("a race of single-unit reservations on a hot SKU with K=8 never oversells", async () => {
    const [sku] = await makeSkus([24]);
    await markHot(sku!, 8);
    const { created, statuses } = await settle(await Promise.all(Array.from({ length: 72 }, () => reserve([{ sku: sku!, quantity: 1 }]))));
    expect(created.length).toBe(24);
    expect(statuses.filter((s) => s === 409).length).toBe(48);
    const s = await status(sku!);
    expect(s.totals).toMatchObject({ on_hand: 24, reserved: 24, available: 0, quotas: 0 });
    expect(s.in_transit).toBe(0);
    expect(new Set(created.flatMap((r) => r.items.map((i) => i.sku)))).toEqual(new Set([sku]));
    await ledgersReconcile(sku!, 8);
  });

  it("a dry sub-shard borrows from its siblings when quotas are skewed", async () => {
    const [sku] = await makeSkus([10]);
    await markHot(sku!, 4); // quotas 3,3,2,2: no single sub-shard can serve 5 units alone
    const a = await reserve([{ sku: sku!, quantity: 5 }]);
    expect(a.status).toBe(201);
    const skewed = await status(sku!);
    expect(skewed.totals).toMatchObject({ reserved: 5, quotas: 5 });
    expect(Math.max(...skewed.sub_shard_totals.map((t) => t.reserved))).toBe(5);
    const b = await reserve([{ sku: sku!, quantity: 5 }]);
    expect(b.status).toBe(201);
    const c = await reserve([{ sku: sku!, quantity: 1 }]);
    expect((await expectProblem(c, 409)).shortfalls).toBeDefined();
    const s = await status(sku!);
    expect(s.totals).toMatchObject({ on_hand: 10, reserved: 10, quotas: 0 });
    expect(s.in_transit).toBe(0);
    await ledgersReconcile(sku!, 4);
  });

  it("the last units sell out exactly, even with fewer units than sub-shards", async () => {
    const [sku] = await makeSkus([7]);
    await markHot(sku!, 8);
    const { created } = await settle(await Promise.all(Array.from({ length: 30 }, () => reserve([{ sku: sku!, quantity: 1 }]))));
    expect(created.length).toBe(7);
    const s = await status(sku!);
    expect(s.totals).toMatchObject({ on_hand: 7, reserved: 7, available: 0 });
    await ledgersReconcile(sku!, 8);
  });

  it("commit and release reach the sub-shard that holds the units; un-marking folds the quotas back", async () => {
    const [sku] = await makeSkus([12]);
    await markHot(sku!, 3);
    const r1 = await (await reserve([{ sku: sku!, quantity: 2 }])).json<Reservation>();
    const r2 = await (await reserve([{ sku: sku!, quantity: 3 }])).json<Reservation>();
    const r3 = await (await reserve([{ sku: sku!, quantity: 1 }])).json<Reservation>();
    expect((await json("POST", `/v1/reservations/${r1.id}/commit`, {}, storefront())).status).toBe(200);
    expect((await call(`/v1/reservations/${r2.id}`, { method: "DELETE", headers: storefront() })).status).toBe(200);
    let s = await status(sku!);
    expect(s.totals).toMatchObject({ on_hand: 10, reserved: 1, committed: 2, quotas: 9 });

    const folded = await (await call(`/admin/stock/${sku}/hot`, { method: "DELETE", headers: admin() })).json<HotStatus>();
    expect(folded.home.available).toBe(9);
    expect(folded.totals).toMatchObject({ on_hand: 10, reserved: 1, committed: 2 });
    expect(folded.state).toBe("folding"); // r3 is still held in its sub-shard
    // Routing is back home: a new reservation is served there.
    const r4 = await reserve([{ sku: sku!, quantity: 9 }]);
    expect(r4.status).toBe(201);
    expect((await r4.json<{ items: { shard?: string }[] }>()).items[0]!.shard).toBeUndefined();
    // The held units are still found where they are: release them, sweep again, and the SKU is fully home.
    expect((await call(`/v1/reservations/${r3.id}`, { method: "DELETE", headers: storefront() })).status).toBe(200);
    s = await (await call(`/admin/stock/${sku}/hot`, { method: "DELETE", headers: admin() })).json<HotStatus>();
    expect(s.state).toBeNull();
    expect(s.home).toMatchObject({ on_hand: 10, reserved: 9 });
    expect(s.sub_shard_totals.every((t) => t.on_hand === 0)).toBe(true);
    await ledgersReconcile(sku!, 3);
  });
});

describe("hoarding caps and the sold-out marker", () => {
  it("one storefront client cannot hold more than its caps, per SKU and in total; releasing frees room", async () => {
    const hoarder = { authorization: "Bearer hoarder-storefront-key" };
    const [a, b, c] = await makeSkus([10, 10, 10]);
    const first = await reserve([{ sku: a!, quantity: 2 }], uid("h"), hoarder);
    expect(first.status).toBe(201);
    const overSku = await reserve([{ sku: a!, quantity: 1 }], uid("h"), hoarder);
    const p = await expectProblem(overSku, 429);
    expect(p).toMatchObject({ scope: "sku", limit: 2, held: 2 });
    expect(Number(overSku.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await reserve([{ sku: b!, quantity: 1 }], uid("h"), hoarder)).status).toBe(201);
    expect(await expectProblem(await reserve([{ sku: c!, quantity: 1 }], uid("h"), hoarder), 429)).toMatchObject({ scope: "total", limit: 3 });
    // Another client is unaffected.
    expect((await reserve([{ sku: a!, quantity: 3 }])).status).toBe(201);
    const { id } = await first.json<Reservation>();
    expect((await call(`/v1/reservations/${id}`, { method: "DELETE", headers: hoarder })).status).toBe(200);
    expect((await reserve([{ sku: a!, quantity: 2 }], uid("h"), hoarder)).status).toBe(201);
  });

  it("a sold-out SKU answers 409 from the edge marker; a release clears it", async () => {
    const [sku] = await makeSkus([1]);
    const held = await (await reserve([{ sku: sku!, quantity: 1 }])).json<Reservation>();
    const fromShard = await reserve([{ sku: sku!, quantity: 1 }]);
    expect(fromShard.headers.get("x-sold-out")).toBeNull();
    await expectProblem(fromShard, 409);
    const fromEdge = await reserve([{ sku: sku!, quantity: 1 }]);
    expect(fromEdge.headers.get("x-sold-out")).toBe("edge");
    expect((await expectProblem(fromEdge, 409)).shortfalls).toEqual([{ sku, requested: 1, available: 0 }]);
    expect((await call(`/v1/reservations/${held.id}`, { method: "DELETE", headers: storefront() })).status).toBe(200);
    expect((await reserve([{ sku: sku!, quantity: 1 }])).status).toBe(201);
  });
});

describe("the sold-out marker seen from another isolate", () => {
  it("a marker another isolate of the colo set is honoured once this isolate's last look at the SKU is a moment old", async () => {
    const [sku] = await makeSkus([5]);
    expect((await reserve([{ sku: sku!, quantity: 1 }])).status).toBe(201);
    // Written straight into the colo's cache, as another isolate's sold-out answer would: this isolate did not see it happen.
    await caches.default.put(`https://sold-out.edgeshelf.internal/${encodeURIComponent(sku!)}`, new Response("sold out", { headers: { "cache-control": "max-age=5" } }));
    await new Promise((r) => setTimeout(r, 300));
    const fromEdge = await reserve([{ sku: sku!, quantity: 1 }]);
    expect(fromEdge.headers.get("x-sold-out")).toBe("edge");
    await expectProblem(fromEdge, 409);
    await caches.default.delete(`https://sold-out.edgeshelf.internal/${encodeURIComponent(sku!)}`);
  });

  it("a release's clear is not undone by a marker look-up that was already waiting on the cache when it ran", async () => {
    const [sku] = await makeSkus([5]);
    await markSoldOut([sku!]);
    // This isolate's last look has lapsed; the colo marker (5 s) is still there, so the next look-up asks the cache.
    await new Promise((r) => setTimeout(r, 300));
    const inflight = soldOutSkus([{ sku: sku!, quantity: 1 }]);
    await clearSoldOut([sku!]);
    await inflight;
    const res = await reserve([{ sku: sku!, quantity: 1 }]);
    expect(res.headers.get("x-sold-out")).toBeNull();
    expect(res.status).toBe(201);
  });
});

describe("scope checks", () => {
  it("an affiliate key cannot reserve (403) and a storefront key cannot call admin (401)", async () => {
    const [sku] = await makeSkus([5]);
    await expectProblem(await reserve([{ sku: sku!, quantity: 1 }], uid("scope"), { authorization: `Bearer ${AFFILIATE_TEST_KEY}` }), 403);
    await expectProblem(await json("POST", `/admin/stock/${sku}/hot`, { sub_shards: 2 }, storefront()), 401);
    await expectProblem(await call(`/admin/stock/${sku}/hot`, { method: "DELETE", headers: storefront() }), 401);
  });
});
