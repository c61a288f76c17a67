/**
 * "Never oversold" where features meet: warehouse recounts and adjustments on a hot SKU, readers of a hot SKU,
 * and the hold check on every way a location is chosen. Each case is met the way an operator or shopper meets it:
 * through the HTTP routes.
 */
import { env, runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import type { HotStatus } from "../src/stock/hot";
import { hotSubShardName, shardNameForSku } from "../src/stock/routing";
import { seedApiKeys } from "./helpers/api-keys";
import { admin, call, expectProblem, json, storefront, uid } from "./helpers/http";
import { makeSkus } from "./helpers/stock-fixtures";

beforeAll(async () => {
  await seedApiKeys(env.DB);
});

type Reservation = { id: string; status: string; items: { sku: string; quantity: number; location: string }[] };
type Avail = { sku: string; on_hand: number; reserved: number; available: number; status: string; locations?: { location: string; on_hand: number; reserved: number; available: number }[] };
type LedgerRow = { shard?: string; location: string; kind: string; delta_on_hand: number; delta_reserved: number; reason: string | null };

const EAST = "loc-us-east";

function reserve(items: { sku: string; quantity: number; location?: string }[], headers: Record<string, string> = {}) {
  return json("POST", "/v1/reservations", { items }, storefront({ "idempotency-key": uid("idem"), ...headers }));
}

async function markHot(sku: string, k: number): Promise<HotStatus> {
  const res = await json("POST", `/admin/stock/${sku}/hot`, { sub_shards: k }, admin());
  if (res.status !== 200) throw new Error(`mark hot: ${res.status} ${await res.text()}`);
  return res.json<HotStatus>();
}

async function hot(sku: string): Promise<HotStatus> {
  return (await call(`/admin/stock/${sku}/hot`, { headers: admin() })).json<HotStatus>();
}

async function availability(sku: string): Promise<Avail> {
  const res = await call(`/v1/availability?skus=${sku}&by_location=true`);
  expect(res.status).toBe(200);
  return (await res.json<{ items: Avail[] }>()).items[0]!;
}

async function adjust(lines: { sku: string; location: string; delta: number; event_id: string; reason?: string }[]) {
  const res = await json("POST", "/admin/stock/adjustments", lines.map((l) => ({ reason: "damage", ...l })), admin());
  expect(res.status).toBe(200);
  return (await res.json<{ results: { status: string; on_hand?: number; detail?: string; oversold?: number }[] }>()).results;
}

/** `n` concurrent single-unit reservations at `location`: the number that got 201 (the rest must be 409). */
async function storm(sku: string, n: number, location?: string): Promise<Reservation[]> {
  const responses = await Promise.all(Array.from({ length: n }, () => reserve([{ sku, quantity: 1, ...(location ? { location } : {}) }])));
  const statuses = responses.map((r) => r.status);
  expect(statuses.every((s) => s === 201 || s === 409), statuses.join(",")).toBe(true);
  const bodies = await Promise.all(responses.map((r) => r.json<Reservation>()));
  return bodies.filter((_, i) => statuses[i] === 201);
}

/** Every object's own ledger replays to its own counts (home and sub-shards). */
async function objectLedgersReplay(sku: string, k: number) {
  const names = [shardNameForSku(env, sku), ...Array.from({ length: k }, (_, i) => hotSubShardName(sku, i))];
  for (const name of names) {
    const bad = await runInDurableObject(env.STOCK.getByName(name), (_, state) => {
      const sql = state.storage.sql;
      const rows = sql.exec<{ location: string; on_hand: number; reserved: number }>("SELECT location, on_hand, reserved FROM stock WHERE sku = ?", sku).toArray();
      const ledger = sql.exec<{ location: string; delta_on_hand: number; delta_reserved: number }>("SELECT * FROM ledger WHERE sku = ?", sku).toArray();
      return rows.flatMap((r) => {
        const mine = ledger.filter((l) => l.location === r.location);
        const on = mine.reduce((n, l) => n + l.delta_on_hand, 0);
        const res = mine.reduce((n, l) => n + l.delta_reserved, 0);
        return on === r.on_hand && res === r.reserved ? [] : [`${name} ${r.location}: ledger ${on}/${res} vs ${r.on_hand}/${r.reserved}`];
      });
    });
    expect(bad).toEqual([]);
  }
}

describe("a warehouse recount on a hot SKU", () => {
  it("PUT sets the physical count: 30 units split over 4 sub-shards, recounted to 10, sell exactly 10", async () => {
    const [sku] = await makeSkus([{ [EAST]: 30, "loc-eu-central": 0 }]);
    await markHot(sku!, 4);
    const put = await json("PUT", `/admin/stock/${sku}`, { location: EAST, on_hand: 10 }, admin());
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ location: EAST, on_hand: 10, reserved: 0, available: 10, oversold: 0 });
    expect((await availability(sku!)).locations!.find((l) => l.location === EAST)).toMatchObject({ on_hand: 10, available: 10 });

    const sold = await storm(sku!, 40, EAST);
    expect(sold.length).toBe(10);
    const s = await hot(sku!);
    expect(s.totals).toMatchObject({ on_hand: 10, reserved: 10, available: 0 });
    expect(s.in_transit).toBe(0);
    expect(await availability(sku!)).toMatchObject({ on_hand: 10, reserved: 10, available: 0, status: "out_of_stock" });
    await objectLedgersReplay(sku!, 4);
  });

  it("a recount upwards is spread over the sub-shards and sells", async () => {
    const [sku] = await makeSkus([8]);
    await markHot(sku!, 4);
    expect(await (await json("PUT", `/admin/stock/${sku}`, { location: EAST, on_hand: 20 }, admin())).json()).toMatchObject({ on_hand: 20, oversold: 0 });
    const s = await hot(sku!);
    expect(s.home.available).toBe(0); // nothing left stranded at home, where no hot reservation goes
    expect(s.totals).toMatchObject({ on_hand: 20, quotas: 20 });
    expect((await storm(sku!, 30)).length).toBe(20);
  });

  it("a recount below what is held keeps the holds, answers `oversold`, writes it to the ledger and sells nothing more", async () => {
    const [sku] = await makeSkus([30]);
    await markHot(sku!, 4);
    const held = await storm(sku!, 20, EAST);
    expect(held.length).toBe(20);
    const put = await json("PUT", `/admin/stock/${sku}`, { location: EAST, on_hand: 12 }, admin());
    expect(await put.json()).toMatchObject({ on_hand: 12, reserved: 20, oversold: 8 });
    // Every hold is still in force.
    for (const r of held.slice(0, 3)) expect((await (await call(`/v1/reservations/${r.id}`, { headers: storefront() })).json<Reservation>()).status).toBe("held");
    expect(await availability(sku!)).toMatchObject({ on_hand: 12, reserved: 20, available: 0 });
    expect((await storm(sku!, 5)).length).toBe(0);
    const ledger = await (await call(`/admin/stock/${sku}/ledger?limit=1000`, { headers: admin() })).json<{ items: LedgerRow[] }>();
    expect(ledger.items.filter((l) => l.kind === "oversold").map((l) => l.reason)).toEqual(["oversold by 8 (set)"]);
    const event = await runInDurableObject(env.STOCK.getByName(shardNameForSku(env, sku!)), (_, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM ledger WHERE sku = ? AND kind = 'oversold'", sku).one().n,
    );
    expect(event).toBe(1);
    // The `stock.oversold` event reaches the metrics.
    await vi.waitFor(
      async () => {
        const row = await env.DB.prepare("SELECT units, cause FROM stock_oversold WHERE sku = ?").bind(sku).first();
        expect(row).toEqual({ units: 8, cause: "set" });
      },
      { timeout: 10_000, interval: 200 },
    );
    const metrics = await (await call("/admin/metrics", { headers: admin() })).json<{ stock_oversold: { reports: number; units: number } }>();
    expect(metrics.stock_oversold.units).toBeGreaterThanOrEqual(8);

    // Ten shoppers give up: their units pay back the shortfall first, so only 2 can sell again.
    await Promise.all(held.slice(0, 10).map((r) => call(`/v1/reservations/${r.id}`, { method: "DELETE", headers: storefront() })));
    expect(await availability(sku!)).toMatchObject({ on_hand: 12, reserved: 10, available: 2 });
    // The freed units go home to pay back the shortfall; then the sub-shards sell again.
    await vi.waitFor(async () => expect((await hot(sku!)).totals).toMatchObject({ on_hand: 12, reserved: 10, quotas: 2 }), { timeout: 10_000, interval: 200 });
    expect((await storm(sku!, 6)).length).toBe(2);
    await objectLedgersReplay(sku!, 4);
  });
});

describe("a warehouse adjustment on a hot SKU", () => {
  it("a negative adjustment draws on the quotas: 30 units, 25 damaged, exactly 5 sell", async () => {
    const [sku] = await makeSkus([{ [EAST]: 30, "loc-eu-central": 0 }]);
    await markHot(sku!, 4);
    const event = uid("ev");
    const [r] = await adjust([{ sku: sku!, location: EAST, delta: -25, event_id: event }]);
    expect(r).toMatchObject({ status: "applied", on_hand: 5 });
    expect((await adjust([{ sku: sku!, location: EAST, delta: -25, event_id: event }]))[0]).toMatchObject({ status: "duplicate", on_hand: 5 });
    expect((await storm(sku!, 30, EAST)).length).toBe(5);
    expect((await hot(sku!)).totals).toMatchObject({ on_hand: 5, reserved: 5, available: 0 });
    await objectLedgersReplay(sku!, 4);
  });

  it("a rejected adjustment does not poison its event_id: the retry after stock arrives applies it once", async () => {
    const [sku] = await makeSkus([10]);
    await markHot(sku!, 2);
    const event = uid("ev");
    const first = await adjust([{ sku: sku!, location: EAST, delta: -15, event_id: event }]);
    expect(first[0]).toMatchObject({ status: "rejected", detail: "on_hand would go below zero (is 10)" });
    expect((await availability(sku!)).on_hand).toBe(10);
    await adjust([{ sku: sku!, location: EAST, delta: 10, event_id: uid("ev"), reason: "receipt" }]);
    expect((await adjust([{ sku: sku!, location: EAST, delta: -15, event_id: event }]))[0]).toMatchObject({ status: "applied", on_hand: 5 });
    expect((await adjust([{ sku: sku!, location: EAST, delta: -15, event_id: event }]))[0]).toMatchObject({ status: "duplicate" });
    expect((await availability(sku!)).on_hand).toBe(5);
    expect((await storm(sku!, 8)).length).toBe(5);
  });

  it("an adjustment below what is held is applied and reported as oversold, on an ordinary SKU too", async () => {
    const [sku] = await makeSkus([6]);
    expect((await reserve([{ sku: sku!, quantity: 4 }])).status).toBe(201);
    const [r] = await adjust([{ sku: sku!, location: EAST, delta: -5, event_id: uid("ev") }]);
    expect(r).toMatchObject({ status: "applied", on_hand: 1, oversold: 3 });
    expect(await availability(sku!)).toMatchObject({ on_hand: 1, reserved: 4, available: 0 });
  });
});

describe("readers of a hot SKU", () => {
  it("availability and the projection show the totals over every sub-shard; a commit lowers on_hand; un-marking folds back exactly", async () => {
    const [sku] = await makeSkus([{ [EAST]: 20, "loc-eu-central": 4 }]);
    await markHot(sku!, 4);
    const sold = await storm(sku!, 6, EAST);
    expect(sold.length).toBe(6);
    await json("POST", `/v1/reservations/${sold[0]!.id}/commit`, {}, storefront());
    await json("POST", `/v1/reservations/${sold[1]!.id}/commit`, {}, storefront());
    const live = await availability(sku!);
    expect(live).toMatchObject({ on_hand: 22, reserved: 4, available: 18, status: "in_stock" });
    expect(live.locations).toEqual([
      { location: "loc-eu-central", on_hand: 4, reserved: 0, available: 4, status: "low_stock" },
      { location: EAST, on_hand: 18, reserved: 4, available: 14, status: "in_stock" },
    ]);
    // The projection behind listings, feeds and the widget converges on the same totals.
    await vi.waitFor(
      async () => {
        const rows = await env.DB.prepare("SELECT location_id, on_hand, reserved, available FROM availability WHERE sku = ? ORDER BY location_id").bind(sku).all();
        expect(rows.results).toEqual([
          { location_id: "loc-eu-central", on_hand: 4, reserved: 0, available: 4 },
          { location_id: EAST, on_hand: 18, reserved: 4, available: 14 },
        ]);
      },
      { timeout: 10_000, interval: 200 },
    );
    const product = await env.DB.prepare("SELECT p.in_stock FROM products p JOIN variants v ON v.product_id = p.id WHERE v.sku = ?").bind(sku).first<{ in_stock: number }>();
    expect(product?.in_stock).toBe(1);

    const folded = await (await call(`/admin/stock/${sku}/hot`, { method: "DELETE", headers: admin() })).json<HotStatus>();
    expect(folded.state).toBe("folding"); // four holds are still in their sub-shards
    expect(await availability(sku!)).toMatchObject({ on_hand: 22, reserved: 4, available: 18 });
    await Promise.all(sold.slice(2).map((r) => call(`/v1/reservations/${r.id}`, { method: "DELETE", headers: storefront() })));
    const done = await (await call(`/admin/stock/${sku}/hot`, { method: "DELETE", headers: admin() })).json<HotStatus>();
    expect(done.state).toBeNull();
    expect(done.home).toMatchObject({ on_hand: 22, reserved: 0 });
    expect(await availability(sku!)).toMatchObject({ on_hand: 22, reserved: 0, available: 22 });
    expect((await storm(sku!, 25)).length).toBe(22);
  });
});

describe("the hold check on every way a location is chosen", () => {
  // One unit more than a location has must fail, exactly what it has must succeed: a check off by one either way fails.
  it("a line naming its location gets exactly what that location has, not one more", async () => {
    const [sku] = await makeSkus([{ [EAST]: 3, "loc-eu-central": 9 }]);
    const over = await expectProblem(await reserve([{ sku: sku!, quantity: 4, location: EAST }]), 409);
    expect(over.shortfalls).toEqual([{ sku, requested: 4, available: 3, location: EAST }]);
    const exact = await reserve([{ sku: sku!, quantity: 3, location: EAST }]);
    expect(exact.status).toBe(201);
    expect((await exact.json<Reservation>()).items[0]!.location).toBe(EAST);
    await expectProblem(await reserve([{ sku: sku!, quantity: 1, location: EAST }]), 409);
  });

  it("the same on a hot SKU: a named location never sells one unit beyond its count", async () => {
    const [sku] = await makeSkus([{ [EAST]: 4, "loc-eu-central": 8 }]);
    await markHot(sku!, 2);
    await expectProblem(await reserve([{ sku: sku!, quantity: 5, location: EAST }]), 409);
    expect((await reserve([{ sku: sku!, quantity: 4, location: EAST }])).status).toBe(201);
    await expectProblem(await reserve([{ sku: sku!, quantity: 1, location: EAST }]), 409);
    expect((await availability(sku!)).locations!.find((l) => l.location === EAST)).toMatchObject({ on_hand: 4, reserved: 4, available: 0 });
  });

  it("the shopper's region is used only when it has the whole quantity", async () => {
    const [sku] = await makeSkus([{ [EAST]: 6, "loc-eu-central": 3 }]);
    const over = await (await reserve([{ sku: sku!, quantity: 4 }], { "x-shopper-region": "EU" })).json<Reservation>();
    expect(over.items[0]!.location).toBe(EAST);
    const exact = await (await reserve([{ sku: sku!, quantity: 3 }], { "x-shopper-region": "EU" })).json<Reservation>();
    expect(exact.items[0]!.location).toBe("loc-eu-central");
  });

  it("the server's choice never takes more than the best location has", async () => {
    const [sku] = await makeSkus([{ [EAST]: 3, "loc-eu-central": 2 }]);
    const over = await expectProblem(await reserve([{ sku: sku!, quantity: 4 }]), 409);
    expect(over.shortfalls).toEqual([{ sku, requested: 4, available: 3 }]);
    const exact = await (await reserve([{ sku: sku!, quantity: 3 }])).json<Reservation>();
    expect(exact.items[0]!.location).toBe(EAST);
  });
});
