/**
 * "Never oversold" where features meet: warehouse recounts and adjustments on a hot SKU, readers of a hot SKU,
 * and the hold check on every way a location is chosen. Each case is met the way an operator or shopper meets it:
 * through the HTTP routes.
 */
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { setClock } from "../src/lib/clock";
import { setStockFault } from "../src/lib/fault-injection";
import type { HotStatus } from "../src/stock/hot";
import { ReservationStore } from "../src/stock/reservation-store";
import { coordinatorForScope, coordinatorOfReservation, hotSubShardName, newReservationId, shardName, shardNameForSku } from "../src/stock/routing";
import { seedApiKeys } from "./helpers/api-keys";
import { admin, call, expectProblem, json, storefront, uid } from "./helpers/http";
import { gateShardMethod } from "./helpers/shard-faults";
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
      // Its own rows only: `transit` rows count units on their way to or from another object of the SKU.
      const ledger = sql.exec<{ location: string; delta_on_hand: number; delta_reserved: number }>("SELECT * FROM ledger WHERE sku = ? AND kind <> 'transit'", sku).toArray();
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
    // The `stock.oversold` event reaches the metrics (the home's alarm sends it; the queue consumer stores it).
    await vi.waitFor(
      async () => {
        await runDurableObjectAlarm(env.STOCK.getByName(shardNameForSku(env, sku!)));
        const row = await env.DB.prepare("SELECT units, cause FROM stock_oversold WHERE sku = ?").bind(sku).first();
        expect(row).toEqual({ units: 8, cause: "set" });
      },
      { timeout: 30_000, interval: 200 },
    );
    const metrics = await (await call("/admin/metrics", { headers: admin() })).json<{ stock_oversold: { reports: number; units: number } }>();
    expect(metrics.stock_oversold.units).toBeGreaterThanOrEqual(8);

    // Ten shoppers give up: their units pay back the shortfall first, so only 2 can sell again.
    await Promise.all(held.slice(0, 10).map((r) => call(`/v1/reservations/${r.id}`, { method: "DELETE", headers: storefront() })));
    expect(await availability(sku!)).toMatchObject({ on_hand: 12, reserved: 10, available: 2 });
    // Right away, while the freed units are still in the sub-shards, the frozen location sells at most what exists.
    const early = (await storm(sku!, 6)).length;
    expect(early).toBeLessThanOrEqual(2);
    // The freed units go home to pay back the shortfall; then the sub-shards sell again. The sub-shards' reports
    // and the home's pay-back run from their alarms: run them here rather than wait for a loaded machine's timers.
    const objects = [...Array.from({ length: 4 }, (_, i) => hotSubShardName(sku!, i)), shardNameForSku(env, sku!)].map((n) => env.STOCK.getByName(n));
    await vi.waitFor(
      async () => {
        for (const o of objects) await runDurableObjectAlarm(o);
        expect((await hot(sku!)).totals).toMatchObject({ on_hand: 12, reserved: 10 + early, quotas: 2 - early });
      },
      { timeout: 30_000, interval: 100 },
    );
    expect((await storm(sku!, 6)).length).toBe(2 - early);
    await objectLedgersReplay(sku!, 4);
  });
});

describe("If-Match on a hot SKU, whose movements span several awaits", () => {
  /**
   * Sends two writes at once with the SKU's current ETag. Background reports of the sub-shards may move the seq
   * between the read and the writes (then both are rightly 412): such a round is tried again, at most 5 times.
   */
  async function raceWithSameEtag(sku: string, send: (etag: string, i: number) => Promise<Response>): Promise<Response[]> {
    for (let round = 0; ; round++) {
      // A stale If-Match answers 412 with the current ETag.
      const probe = await json("PUT", `/admin/stock/${sku}`, { location: EAST, on_hand: 0 }, admin({ "if-match": '"999999999"' }));
      expect(probe.status).toBe(412);
      const etag = probe.headers.get("etag")!;
      const answers = await Promise.all([0, 1].map((i) => send(etag, i)));
      if (answers.some((r) => r.status === 200) || round === 4) return answers;
    }
  }

  it("two recounts and two adjustments sent at once with the same If-Match: one applies, the other is 412 and writes nothing", async () => {
    const [sku] = await makeSkus([{ [EAST]: 20 }]);
    await markHot(sku!, 2);
    const sets = await raceWithSameEtag(sku!, (etag, i) => json("PUT", `/admin/stock/${sku}`, { location: EAST, on_hand: [15, 12][i] }, admin({ "if-match": etag })));
    expect(sets.map((r) => r.status).sort()).toEqual([200, 412]);
    const counted = (await sets.find((r) => r.status === 200)!.json<{ on_hand: number }>()).on_hand;
    expect((await availability(sku!)).on_hand).toBe(counted);

    const adjusts = await raceWithSameEtag(sku!, (etag, i) =>
      json("POST", `/admin/stock/${sku}/adjustments`, { location: EAST, delta: [-2, -3][i], reason: "damage", event_id: uid("op") }, admin({ "if-match": etag })),
    );
    expect(adjusts.map((r) => r.status).sort()).toEqual([200, 412]);
    const after = (await adjusts.find((r) => r.status === 200)!.json<{ on_hand: number }>()).on_hand;
    expect([counted - 2, counted - 3]).toContain(after);
    expect((await availability(sku!)).on_hand).toBe(after);
  });
});

describe("a warehouse adjustment on a hot SKU", () => {
  it("one unit damaged while every unit sits in the sub-shards' quotas: exactly one fewer sells", async () => {
    const [sku] = await makeSkus([10]);
    await markHot(sku!, 2);
    expect((await adjust([{ sku: sku!, location: EAST, delta: -1, event_id: uid("ev") }]))[0]).toMatchObject({ status: "applied", on_hand: 9 });
    expect((await storm(sku!, 12)).length).toBe(9);
  });

  it("a recount one unit below what is free and held freezes the location: a unit freed meanwhile does not sell", async () => {
    const [sku] = await makeSkus([30]);
    await markHot(sku!, 4);
    const held = await storm(sku!, 20, EAST);
    expect(await (await json("PUT", `/admin/stock/${sku}`, { location: EAST, on_hand: 19 }, admin())).json()).toMatchObject({ on_hand: 19, reserved: 20, oversold: 1 });
    const where = (held[0]!.items[0] as { shard?: string }).shard!;
    await call(`/v1/reservations/${held[0]!.id}`, { method: "DELETE", headers: storefront() });
    // The sub-shard that got the unit back refuses to sell it: home still owes one unit there.
    const direct = await env.STOCK.getByName(where).hold({ reservationId: uid("direct"), expiresAt: Date.now() + 60_000, lines: [{ sku: sku!, quantity: 1, location: EAST }], preferredLocations: [], actor: "test" });
    expect(direct.ok).toBe(false);
    expect((await storm(sku!, 3)).length).toBe(0);
    expect(await availability(sku!)).toMatchObject({ on_hand: 19, reserved: 19, available: 0 });
  });

  it("an adjustment to exactly zero applies; one unit more is rejected", async () => {
    const [sku] = await makeSkus([10]);
    await markHot(sku!, 2);
    expect((await adjust([{ sku: sku!, location: EAST, delta: -11, event_id: uid("ev") }]))[0]).toMatchObject({ status: "rejected" });
    expect((await adjust([{ sku: sku!, location: EAST, delta: -10, event_id: uid("ev") }]))[0]).toMatchObject({ status: "applied", on_hand: 0 });
    await expectProblem(await reserve([{ sku: sku!, quantity: 1 }]), 409);
  });

  it("safety stock stays home when a SKU is split: only the free units sell", async () => {
    const [sku] = await makeSkus([10], { safetyStock: 4 });
    const s = await markHot(sku!, 2);
    expect(s.totals.quotas).toBe(6);
    expect(s.home.on_hand).toBe(4);
    expect((await storm(sku!, 10)).length).toBe(6);
  });

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

/** Two SKUs on different home shards, 5 units each: a reservation of both spans two shards. */
async function twoShardSkus(): Promise<[string, string]> {
  let a = "";
  let b = "";
  while (!a || shardNameForSku(env, a) === shardNameForSku(env, b)) [a, b] = (await makeSkus([5, 5])) as [string, string];
  return [a, b];
}

async function coordinatorSql<T>(id: string, query: string, ...args: unknown[]): Promise<T[]> {
  return runInDurableObject(env.STOCK.getByName(coordinatorOfReservation(env, id)!), (_, state) => state.storage.sql.exec(query, ...args).toArray() as T[]);
}

async function heldOn(sku: string): Promise<{ state: string; quantity: number }[]> {
  return runInDurableObject(env.STOCK.getByName(shardNameForSku(env, sku)), (_, state) =>
    state.storage.sql.exec<{ state: string; quantity: number }>("SELECT state, quantity FROM holds WHERE sku = ?", sku).toArray(),
  );
}

describe("reservations that cannot get stuck", () => {
  afterEach(() => setStockFault(null));

  it.each([
    ["before applying", "before"],
    ["after applying, its answer lost", "after"],
  ] as const)("a commit that reaches one shard and fails on the other (%s) is accepted, keeps the hold, and rolls forward", async (_, when) => {
    const [a, b] = await twoShardSkus();
    const r = await (await reserve([{ sku: a, quantity: 2 }, { sku: b, quantity: 3 }], {})).json<Reservation>();
    const broken = shardNameForSku(env, b);
    let failures = 0;
    setStockFault(({ shard, method }) => (shard === broken && method === "commit" && failures++ < 1 ? when : undefined));

    const commit = await json("POST", `/v1/reservations/${r.id}/commit`, {}, storefront());
    expect(commit.status).toBe(202);
    expect((await commit.json<Reservation>()).status).toBe("committing");
    // The reservation cannot be released now: the commit was accepted.
    await expectProblem(await call(`/v1/reservations/${r.id}`, { method: "DELETE", headers: storefront() }), 409);
    expect(await coordinatorSql(r.id, "SELECT 1 FROM outbox WHERE dedupe_key = ?", `reservation:${r.id}`)).toEqual([]);
    // B's hold reaches its deadline while the header says committing: B asks the coordinator and keeps it (commits it).
    await runInDurableObject(env.STOCK.getByName(broken), (_, state) => state.storage.sql.exec("UPDATE holds SET expires_at = 0 WHERE reservation_id = ?", r.id));
    await runDurableObjectAlarm(env.STOCK.getByName(broken));
    expect((await heldOn(b)).map((h) => h.state)).not.toContain("expired");
    expect(await availability(b)).toMatchObject({ on_hand: 2, reserved: 0, available: 2 });

    // The coordinator's reconciler completes the commit without anyone retrying it.
    await coordinatorSql(r.id, "UPDATE reservation_sagas SET next_reconcile_at = 0 WHERE id = ?", r.id);
    await runDurableObjectAlarm(env.STOCK.getByName(coordinatorOfReservation(env, r.id)!));
    expect((await (await call(`/v1/reservations/${r.id}`, { headers: storefront() })).json<Reservation>()).status).toBe("committed");
    expect(await availability(a)).toMatchObject({ on_hand: 3, reserved: 0 });
    expect(await availability(b)).toMatchObject({ on_hand: 2, reserved: 0 });
    expect(await coordinatorSql(r.id, "SELECT next_reconcile_at FROM reservation_sagas WHERE id = ?", r.id)).toEqual([{ next_reconcile_at: null }]);
    // reservation.committed was emitted once: counted once downstream, and a repeat commit emits nothing more.
    await vi.waitFor(async () => expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM counted_orders WHERE reservation_id = ?").bind(r.id).first()).toEqual({ n: 1 }), {
      timeout: 10_000,
      interval: 200,
    });
    expect((await json("POST", `/v1/reservations/${r.id}/commit`, {}, storefront())).status).toBe(200);
    expect(await coordinatorSql(r.id, "SELECT 1 FROM outbox WHERE dedupe_key = ?", `reservation:${r.id}`)).toEqual([]);
    for (const sku of [a, b]) {
      const commits = (await (await call(`/admin/stock/${sku}/ledger`, { headers: admin() })).json<{ items: LedgerRow[] }>()).items.filter((l) => l.kind === "commit");
      expect(commits.length).toBe(1);
    }
  });

  it("retention keeps the hold rows of a reservation still committing past the idempotency window: the roll-forward takes its units once", async () => {
    // A's shard must not coordinate the reservation: its own alarm would then finish the commit (the reconciler runs
    // before retention), and there would be no unfinished commit left to keep rows for.
    let a = "";
    let b = "";
    let r: Reservation | undefined;
    while (!r || coordinatorOfReservation(env, r.id) === shardNameForSku(env, a)) {
      [a, b] = await twoShardSkus();
      r = await (await reserve([{ sku: a, quantity: 2 }, { sku: b, quantity: 1 }])).json<Reservation>();
    }
    const broken = shardNameForSku(env, b);
    let failures = 0;
    setStockFault(({ shard, method }) => (shard === broken && method === "commit" && failures++ < 1 ? "before" : undefined));
    expect((await json("POST", `/v1/reservations/${r.id}/commit`, {}, storefront())).status).toBe(202);
    setStockFault(null);
    expect(await heldOn(a)).toEqual([{ state: "committed", quantity: 2 }]);

    /** Runs a shard's alarm (expiry, reconciler, retention) at `at` on the injectable clock. */
    const housekeeping = async (sku: string, at: number) => {
      const stub = env.STOCK.getByName(shardNameForSku(env, sku));
      await runInDurableObject(stub, (_, state) => state.storage.setAlarm(Date.now() + 600_000));
      setClock(at);
      try {
        expect(await runDurableObjectAlarm(stub)).toBe(true);
      } finally {
        setClock(null);
      }
    };
    // Two days later (the idempotency window is one day) A's housekeeping runs while the commit is unfinished.
    const day = 86_400_000;
    await housekeeping(a, Date.now() + 2 * day);
    expect(await heldOn(a)).toEqual([{ state: "committed", quantity: 2 }]);
    // The retried commit finds A's lines committed already, and takes B's.
    expect((await json("POST", `/v1/reservations/${r.id}/commit`, {}, storefront())).status).toBe(200);
    expect(await availability(a)).toMatchObject({ on_hand: 3, reserved: 0, available: 3 });
    expect(await availability(b)).toMatchObject({ on_hand: 4, reserved: 0 });
    const commits = (await (await call(`/admin/stock/${a}/ledger`, { headers: admin() })).json<{ items: LedgerRow[] }>()).items.filter((l) => l.kind === "commit" || l.kind === "oversold");
    expect(commits.map((l) => [l.kind, l.delta_on_hand])).toEqual([["commit", -2]]);
    // Once the reservation is finished, the next housekeeping prunes the old rows.
    await housekeeping(a, Date.now() + 4 * day);
    expect(await heldOn(a)).toEqual([]);
  });

  it("a commit finished by two drivers at once (a retry and the reconciler) counts as the first finish only once, so reservation.committed is queued once", async () => {
    const [a, b] = await twoShardSkus();
    const r = await (await reserve([{ sku: a, quantity: 1 }, { sku: b, quantity: 1 }])).json<Reservation>();
    const broken = shardNameForSku(env, b);
    let failures = 0;
    setStockFault(({ shard, method }) => (shard === broken && method === "commit" && failures++ < 1 ? "before" : undefined));
    expect((await json("POST", `/v1/reservations/${r.id}/commit`, {}, storefront())).status).toBe(202);
    // Both drivers reach the finishing step after every shard committed; the outbox may have flushed in between.
    const firsts = await runInDurableObject(env.STOCK.getByName(coordinatorOfReservation(env, r.id)!), (_, state) => {
      const store = new ReservationStore(state.storage.sql);
      return [store.finishCommit(r.id, Date.now())?.first, store.finishCommit(r.id, Date.now())?.first];
    });
    expect(firsts).toEqual([true, false]);
  });

  it("a retry of a commit that did not reach every shard completes it (200)", async () => {
    const [a, b] = await twoShardSkus();
    const r = await (await reserve([{ sku: a, quantity: 1 }, { sku: b, quantity: 1 }])).json<Reservation>();
    const broken = shardNameForSku(env, a);
    let failures = 0;
    setStockFault(({ shard, method }) => (shard === broken && method === "commit" && failures++ < 1 ? "before" : undefined));
    expect((await json("POST", `/v1/reservations/${r.id}/commit`, {}, storefront())).status).toBe(202);
    const retry = await json("POST", `/v1/reservations/${r.id}/commit`, {}, storefront());
    expect(retry.status).toBe(200);
    expect((await retry.json<Reservation>()).status).toBe("committed");
    expect(await availability(a)).toMatchObject({ on_hand: 4, reserved: 0 });
  });

  it("an extend that a shard does not confirm leaves the old deadline in force, everywhere", async () => {
    const [a, b] = await twoShardSkus();
    const r = await (await json("POST", "/v1/reservations", { items: [{ sku: a, quantity: 1 }, { sku: b, quantity: 1 }], ttl_seconds: 60 }, storefront({ "idempotency-key": uid("ext") }))).json<Reservation & { expires_at: string }>();
    setStockFault(({ shard, method }) => (shard === shardNameForSku(env, b) && method === "extend" ? "before" : undefined));
    await expectProblem(await json("POST", `/v1/reservations/${r.id}/extend`, { ttl_seconds: 3600 }, storefront()), 503);
    setStockFault(null);
    const after = await (await call(`/v1/reservations/${r.id}`, { headers: storefront() })).json<{ expires_at: string; status: string }>();
    expect(after.expires_at).toBe(r.expires_at);
    // At the old deadline the reservation ends, and A's extended hold goes with it (A asks the coordinator).
    const deadline = Date.parse(r.expires_at);
    setClock(deadline + 1);
    try {
      expect((await (await call(`/v1/reservations/${r.id}`, { headers: storefront() })).json<{ status: string }>()).status).toBe("expired");
      for (const sku of [a, b]) await runDurableObjectAlarm(env.STOCK.getByName(shardNameForSku(env, sku)));
      for (const sku of [a, b]) expect((await heldOn(sku)).map((h) => h.state)).toEqual(["expired"]);
    } finally {
      setClock(null);
    }
    // A confirmed extend moves the header.
    const r2 = await (await reserve([{ sku: a, quantity: 1 }, { sku: b, quantity: 1 }])).json<Reservation & { expires_at: string }>();
    const ok = await json("POST", `/v1/reservations/${r2.id}/extend`, { ttl_seconds: 3600 }, storefront());
    expect(ok.status).toBe(200);
    expect(Date.parse((await ok.json<{ expires_at: string }>()).expires_at)).toBeGreaterThan(Date.parse(r2.expires_at));
  });

  it("an extend whose shard calls finish after the deadline is refused, and its holds end at the old deadline, not the new one", async () => {
    const [a] = await makeSkus([1]);
    const t0 = Date.now();
    setClock(t0);
    try {
      const r = await (await json("POST", "/v1/reservations", { items: [{ sku: a, quantity: 1 }], ttl_seconds: 60 }, storefront({ "idempotency-key": uid("late") }))).json<Reservation & { expires_at: string }>();
      const deadline = Date.parse(r.expires_at);
      setClock(deadline - 5);
      const gate = gateShardMethod("extend", shardNameForSku(env, a!));
      try {
        const extend = json("POST", `/v1/reservations/${r.id}/extend`, { ttl_seconds: 3600 }, storefront());
        await gate.entered();
        setClock(deadline + 10); // the shard moved the hold by an hour, but the header's deadline has passed
        gate.open();
        expect((await extend).status).toBe(409);
      } finally {
        gate.undo();
      }
      await runDurableObjectAlarm(env.STOCK.getByName(shardNameForSku(env, a!)));
      expect((await heldOn(a!)).map((h) => h.state)).toEqual(["expired"]);
      // The only unit sells again right away, not an hour later.
      expect((await reserve([{ sku: a!, quantity: 1 }], { "x-shopper-id": uid("next") })).status).toBe(201);
    } finally {
      setClock(null);
    }
  });

  it("an extend racing a commit never releases the lines the commit has not reached: the last unit is not sold twice", async () => {
    let a = "";
    let b = "";
    while (!a || shardNameForSku(env, a) === shardNameForSku(env, b)) [a, b] = (await makeSkus([5, 1])) as [string, string];
    const r = await (await reserve([{ sku: a, quantity: 1 }, { sku: b, quantity: 1 }])).json<Reservation>();
    // The extend's call to A waits; meanwhile the commit lands on A and waits on its way to B.
    const extendAtA = gateShardMethod("extend", shardNameForSku(env, a));
    const commitAtB = gateShardMethod("commit", shardNameForSku(env, b));
    try {
      const extend = json("POST", `/v1/reservations/${r.id}/extend`, { ttl_seconds: 900 }, storefront());
      await extendAtA.entered();
      const commit = json("POST", `/v1/reservations/${r.id}/commit`, {}, storefront());
      await commitAtB.entered();
      extendAtA.open();
      // A answers "already committed": the extend is refused, and it must not let B's hold go.
      expect((await extend).status).toBe(409);
      expect((await reserve([{ sku: b, quantity: 1 }], { "x-shopper-id": uid("other") })).status).toBe(409);
      commitAtB.open();
      expect((await commit).status).toBe(200);
    } finally {
      extendAtA.undo();
      commitAtB.undo();
    }
    expect(await availability(b)).toMatchObject({ on_hand: 0, reserved: 0 });
    const ledger = (await (await call(`/admin/stock/${b}/ledger`, { headers: admin() })).json<{ items: LedgerRow[] }>()).items;
    expect(ledger.map((l) => l.kind)).not.toContain("oversold");
    expect(ledger.filter((l) => l.kind === "release")).toEqual([]);
  });

  it("a retry routed to a sub-shard after the SKU was marked hot leaves the first attempt's home hold out of the sale: commit takes the units once", async () => {
    let a = "";
    let b = "";
    while (!a || shardNameForSku(env, a) === shardNameForSku(env, b)) [a, b] = (await makeSkus([10, 10])) as [string, string];
    const A = shardNameForSku(env, a);
    const B = shardNameForSku(env, b);
    let scope = "";
    while (!scope || [A, B].includes(shardName(coordinatorForScope(env, scope)))) scope = `key-dev-storefront\u0000${uid("flip")}`;
    const n = coordinatorForScope(env, scope);
    const coord = env.STOCK.getByName(shardName(n));
    const price = { unit_price: 100, regular_price: 100, promotion_id: null };
    const saga = {
      coordinator: shardName(n), scopeKey: scope, owner: "key-dev-storefront", bodyHash: "h", candidateId: newReservationId(n), currency: "USD", ttlMs: 60_000,
      lines: [{ sku: a, quantity: 2 }, { sku: b, quantity: 1 }], prices: { [a]: price, [b]: price }, preferredLocations: [],
      hot: [] as [string, number][], holder: "0123456789abcdef", caps: { perSku: 500, total: 5000 }, soldOut: [], now: Date.now(),
    };
    // Attempt 1: B does not answer and the compensating release to A is lost: A keeps a stray hold of 2.
    setStockFault(({ shard, method }) => ((shard === B && method === "hold") || (shard === A && method === "release") ? "before" : undefined));
    expect((await coord.reserve(saga)).kind).toBe("unavailable");
    setStockFault(null);
    // A is marked hot; the client's retry of the key now routes A's line to a sub-shard and holds 2 more there.
    await markHot(a, 2);
    const retry = await coord.reserve({ ...saga, hot: [[a, 2]], now: Date.now() });
    if (retry.kind !== "held") throw new Error(`retry: ${retry.kind}`);
    expect((await json("POST", `/v1/reservations/${retry.body.id}/commit`, {}, storefront())).status).toBe(200);
    // At the stray hold's deadline the home shard asks the coordinator, which says "committed" (an alarm of the
    // shard's own may be running at that moment: run it until the stray is settled).
    setClock(Date.now() + 120_000);
    try {
      await vi.waitFor(async () => {
        await runDurableObjectAlarm(env.STOCK.getByName(A));
        const states = await runInDurableObject(env.STOCK.getByName(A), (_, st) => st.storage.sql.exec<{ state: string }>("SELECT state FROM holds WHERE reservation_id = ?", retry.body.id).toArray());
        expect(states.map((h) => h.state)).toEqual(["expired"]);
      }, { timeout: 5_000, interval: 50 });
    } finally {
      setClock(null);
    }
    expect(await availability(a)).toMatchObject({ on_hand: 8, reserved: 0, available: 8 });
  });

  it("a saga attempt that a retry took over cannot release the retry's holds", async () => {
    const [sku] = await makeSkus([4]);
    const scope = `key-dev-storefront\u0000${uid("fence")}`;
    const n = coordinatorForScope(env, scope);
    const coord = env.STOCK.getByName(shardName(n));
    const req = { scopeKey: scope, owner: "key-dev-storefront", bodyHash: "h", candidateId: newReservationId(n), currency: "USD", ttlMs: 60_000 };
    const first = await coord.beginReservation(req);
    if (first.kind !== "started") throw new Error("expected a saga");
    const shard = env.STOCK.getByName(shardNameForSku(env, sku!));
    const hold = { reservationId: first.id, expiresAt: first.expiresAt, lines: [{ sku: sku!, quantity: 3 }], preferredLocations: [], actor: "test" };
    expect((await shard.hold({ ...hold, attempt: first.attempt })).ok).toBe(true);
    // The first saga stalls past its lease; a retry of the same key takes over and finds the hold in place.
    await runInDurableObject(coord, (_, state) => state.storage.sql.exec("UPDATE reservations SET lease_until = 0 WHERE id = ?", first.id));
    const second = await coord.beginReservation(req);
    if (second.kind !== "started") throw new Error("expected the retry to take over");
    expect(second.attempt).toBe(first.attempt + 1);
    expect((await shard.hold({ ...hold, attempt: second.attempt })).ok).toBe(true);
    // The first saga wakes up and compensates: fenced, nothing is released, and it cannot finish the header.
    expect((await shard.release(first.id, "test", first.attempt)).released).toBe(-1);
    expect(await coord.finishReservation(first.id, { status: "failed", items: [], outcome: { status: 409, problem: { slug: "x", title: "x", detail: "x", extensions: {} } } }, first.attempt)).toBe(false);
    expect(await availability(sku!)).toMatchObject({ reserved: 3, available: 1 });
    expect((await shard.release(first.id, "test", second.attempt)).released).toBe(1);
  });
});

describe("transfers between sub-shards", () => {
  afterEach(() => setStockFault(null));

  it("a borrow whose delivery fails stays in transit at the giver, un-marking refuses to finish, and the sweeper settles it", async () => {
    const [sku] = await makeSkus([8]);
    await markHot(sku!, 2); // quotas 4 + 4
    // Every delivery into sub-shard 0 fails once: a borrow by sub-shard 0 leaves its units in transit.
    const target = hotSubShardName(sku!, 0);
    let failures = 0;
    setStockFault(({ shard, method }) => (shard === target && method === "escrowGive" && failures++ < 1 ? "before" : undefined));
    // Find a shopper whose reservations land on sub-shard 0 and ask for more than its quota.
    let r: Response | undefined;
    for (let i = 0; i < 40 && !r; i++) {
      const res = await reserve([{ sku: sku!, quantity: 6 }], { "x-shopper-id": uid("shopper") });
      const body = await res.clone().json<{ items?: { shard?: string }[] }>();
      if (res.status === 201 && body.items?.[0]?.shard === hotSubShardName(sku!, 1)) {
        await call(`/v1/reservations/${(body as unknown as Reservation).id}`, { method: "DELETE", headers: storefront() });
        continue;
      }
      r = res;
    }
    expect(r!.status).toBe(409); // the borrowed units did not arrive in time: no hold, nothing lost
    setStockFault(null);
    let s = await hot(sku!);
    expect(s.in_transit).toBeGreaterThan(0);
    // The admin view counts them too, and lists them apart.
    expect(s.totals).toMatchObject({ on_hand: 8, reserved: 0, available: 8 });
    // Every reader still counts the units (at the giver) while they travel, and so does the merged ledger.
    expect(await availability(sku!)).toMatchObject({ on_hand: 8, reserved: 0 });
    const during = await (await call(`/admin/stock/${sku}/ledger?limit=1000`, { headers: admin() })).json<{ items: LedgerRow[] }>();
    expect(during.items.reduce((n, l) => n + l.delta_on_hand, 0)).toBe(8);
    expect(during.items.filter((l) => l.kind === "transit").map((l) => l.reason)).toContain("sent");
    // The giver's alarm re-delivers once the send is older than the sweep deadline.
    const giver = env.STOCK.getByName(hotSubShardName(sku!, 1));
    await runInDurableObject(giver, (_, state) => state.storage.sql.exec("UPDATE escrow_sends SET created_at = 0 WHERE state = 'pending'"));
    await runDurableObjectAlarm(giver);
    s = await hot(sku!);
    expect(s.in_transit).toBe(0);
    expect(s.totals).toMatchObject({ on_hand: 8, reserved: 0 });
    const ledger = await (await call(`/admin/stock/${sku}/ledger?limit=1000`, { headers: admin() })).json<{ items: LedgerRow[] }>();
    expect(new Set(ledger.items.map((l) => l.shard))).toEqual(new Set([shardNameForSku(env, sku!), hotSubShardName(sku!, 0), hotSubShardName(sku!, 1)]));
    expect(ledger.items.reduce((n, l) => n + l.delta_on_hand, 0)).toBe(8);
    // Every `sent` row is settled by a `received` row once the units have landed.
    const transit = ledger.items.filter((l) => l.kind === "transit");
    expect(transit.reduce((n, l) => n + l.delta_on_hand, 0)).toBe(0);
    expect(transit.filter((l) => l.reason === "received").length).toBeGreaterThan(0);
    await objectLedgersReplay(sku!, 2);
    expect((await storm(sku!, 10)).length).toBe(8);
  });

  it("un-marking while a transfer is in transit keeps the SKU folding until it lands", async () => {
    const [sku] = await makeSkus([6]);
    await markHot(sku!, 2);
    const home = shardNameForSku(env, sku!);
    setStockFault(({ shard, method, args }) => (shard === home && method === "escrowGive" && (args[1] as { id: string }[])[0]!.id.startsWith("fold:") ? "before" : undefined));
    const first = await (await call(`/admin/stock/${sku}/hot`, { method: "DELETE", headers: admin() })).json<HotStatus>();
    expect(first.state).toBe("folding");
    expect(first.in_transit).toBeGreaterThan(0);
    expect(first.totals).toMatchObject({ on_hand: 6, available: 6 });
    expect(await availability(sku!)).toMatchObject({ on_hand: 6, reserved: 0, available: 6 });
    setStockFault(null);
    const done = await (await call(`/admin/stock/${sku}/hot`, { method: "DELETE", headers: admin() })).json<HotStatus>();
    expect(done.state).toBeNull();
    expect(done.in_transit).toBe(0);
    expect(done.home).toMatchObject({ on_hand: 6 });
  });

  it("two SKUs of one home shard, each marked hot and un-marked, both keep every unit; so does a SKU marked and folded twice", async () => {
    // 17 SKUs over 16 home shards: two of them share a home, whose arrivals are deduplicated by transfer id.
    const skus = await makeSkus(Array.from({ length: 17 }, () => 3));
    const byHome = new Map<string, string[]>();
    for (const s of skus) byHome.set(shardNameForSku(env, s), [...(byHome.get(shardNameForSku(env, s)) ?? []), s]);
    const [a, b] = [...byHome.values()].find((list) => list.length >= 2)!;
    for (const sku of [a!, b!, a!]) {
      await markHot(sku, 1);
      const res = await call(`/admin/stock/${sku}/hot`, { method: "DELETE", headers: admin() });
      expect((await res.json<HotStatus>()).state).toBeNull();
      expect(await availability(sku), `${sku} after un-marking`).toMatchObject({ on_hand: 3, reserved: 0, available: 3 });
    }
    for (const sku of [a!, b!]) expect((await storm(sku, 4)).length).toBe(3);
  });
});

describe("the merged ledger of a hot SKU", () => {
  it("names the object of each row, pages without gaps, and replays to the live totals", async () => {
    const [sku] = await makeSkus([{ [EAST]: 12, "loc-eu-central": 4 }]);
    await markHot(sku!, 3);
    const sold = await storm(sku!, 5, EAST);
    await json("POST", `/v1/reservations/${sold[0]!.id}/commit`, {}, storefront());
    await adjust([{ sku: sku!, location: EAST, delta: -3, event_id: uid("ev") }]);
    const rows: LedgerRow[] = [];
    let cursor: string | null = "";
    while (cursor !== null) {
      const page: { items: LedgerRow[]; next_cursor: string | null } = await (await call(`/admin/stock/${sku}/ledger?limit=4${cursor ? `&cursor=${cursor}` : ""}`, { headers: admin() })).json();
      rows.push(...page.items);
      cursor = page.next_cursor;
    }
    const all = (await (await call(`/admin/stock/${sku}/ledger?limit=1000`, { headers: admin() })).json<{ items: (LedgerRow & { id: number })[] }>()).items;
    expect(rows.length).toBe(all.length);
    expect(all.every((l) => typeof l.shard === "string")).toBe(true);
    const live = await availability(sku!);
    for (const loc of live.locations!) {
      const mine = all.filter((l) => l.location === loc.location);
      expect([mine.reduce((n, l) => n + l.delta_on_hand, 0), mine.reduce((n, l) => n + l.delta_reserved, 0)]).toEqual([loc.on_hand, loc.reserved]);
    }
    expect(live).toMatchObject({ on_hand: 12, reserved: 4 });
  });
});
