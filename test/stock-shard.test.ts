import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { setClock } from "../src/lib/clock";
import { coordinatorForScope, hotSubShardName, newReservationId, shardName, shardNameForSku } from "../src/stock/routing";
import { seedApiKeys } from "./helpers/api-keys";
import { admin, call, expectProblem, json, storefront, uid } from "./helpers/http";
import { ledgerOf, makeSkus, reconcile, shardStub } from "./helpers/stock-fixtures";

type Stub = ReturnType<typeof shardStub>;
type Event = { type: string; [k: string]: unknown };

beforeAll(async () => {
  await seedApiKeys(env.DB);
});

/**
 * Swaps the EVENTS binding the object sees for a wrapper that records what it forwards to the real queue,
 * and fails while `down` is set: the fault is injected through the binding, not through a test-only branch.
 */
async function wrapEvents(stub: Stub) {
  // `maxBatchBytes`: refuse larger batches the way the queue does, to stand for a limit stricter than the sender's.
  const state = { down: false, sent: [] as Event[], failures: 0, maxBatchBytes: Infinity, refusedForSize: 0 };
  await runInDurableObject(stub, (instance) => {
    const holder = instance as unknown as { env: Env };
    const real = holder.env.EVENTS;
    const wrapper: Queue = {
      send: async (body, opts) => {
        if (state.down) throw (state.failures++, new Error("queue unavailable (injected)"));
        state.sent.push(body as Event);
        return real.send(body, opts);
      },
      sendBatch: async (messages, opts) => {
        if (state.down) throw (state.failures++, new Error("queue unavailable (injected)"));
        const bytes = [...messages].reduce((n, m) => n + JSON.stringify(m.body).length, 0);
        if (bytes > state.maxBatchBytes) throw (state.refusedForSize++, new Error(`batch size of ${bytes} bytes exceeds limit of ${state.maxBatchBytes}`));
        for (const m of messages) state.sent.push(m.body as Event);
        return real.sendBatch(messages, opts);
      },
    } as Queue;
    holder.env = new Proxy(holder.env, { get: (t, p) => (p === "EVENTS" ? wrapper : Reflect.get(t, p)) });
  });
  return state;
}

const outboxRows = (stub: Stub) =>
  runInDurableObject(stub, (_, s) => s.storage.sql.exec<{ id: number; body: string; attempts: number; next_attempt_at: number }>("SELECT * FROM outbox").toArray());

async function drained(stub: Stub) {
  await vi.waitFor(async () => {
    await runDurableObjectAlarm(stub);
    expect(await outboxRows(stub)).toEqual([]);
  }, { timeout: 10_000, interval: 50 });
}

describe("outbox", () => {
  it("a failed flush is retried by the alarm and the event is not lost", async () => {
    const [sku] = await makeSkus([10]);
    const stub = shardStub(sku!);
    await call(`/v1/availability?skus=${sku}`); // adopts the baseline (its event goes out normally)
    await drained(stub);
    const events = await wrapEvents(stub);
    events.down = true;

    const put = await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 25 }, admin());
    expect(put.status).toBe(200);
    await vi.waitFor(async () => {
      await runDurableObjectAlarm(stub);
      expect(events.failures).toBeGreaterThan(0);
    }, { timeout: 5_000, interval: 50 });
    const pending = await outboxRows(stub);
    expect(pending).toHaveLength(1);
    expect(pending[0]!.attempts).toBeGreaterThan(0);
    expect(pending[0]!.next_attempt_at).toBeGreaterThan(Date.now() - 100);
    // The alarm stays armed for the retry.
    expect(await runInDurableObject(stub, (_, s) => s.storage.getAlarm())).not.toBeNull();

    events.down = false;
    await drained(stub);
    const changed = events.sent.filter((e) => e.type === "stock.changed" && e.sku === sku);
    expect(changed).toHaveLength(1);
    const ledger = await ledgerOf(sku!);
    expect(changed[0]).toMatchObject({
      sku, location: "loc-us-east", on_hand: 25, reserved: 0, available: 25, safety_stock: 0, low_stock: 5, status: "in_stock",
      seq: ledger.at(-1)!.seq,
    });
    expect(typeof changed[0]!.occurred_at).toBe("number");
  });

  it("a backlog larger than one queue batch drains in several sends, and a message too large for the queue is dead-lettered instead of blocking the rest", async () => {
    const stub = env.STOCK.getByName(shardName(7));
    await drained(stub);
    const events = await wrapEvents(stub);
    events.maxBatchBytes = 60_000; // a size limit the sender's own cut (200 KB) does not know about: batches are halved
    const pad = "x".repeat(5_000);
    await runInDurableObject(stub, (_, state) => {
      const add = (key: string, body: unknown) =>
        state.storage.sql.exec("INSERT INTO outbox (dedupe_key, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, 0, 0)", key, JSON.stringify(body));
      // The oldest row is one no queue accepts (over 128 KB): it used to be retried first, forever, with everything behind it.
      add("test:big", { type: "test.backlog", n: -1, pad: "y".repeat(130_000) });
      // 300 KB in 60 rows: more than one sendBatch may carry.
      for (let n = 0; n < 60; n++) add(`test:${n}`, { type: "test.backlog", n, pad });
      return state.storage.setAlarm(Date.now());
    });
    await drained(stub);
    const sent = events.sent.filter((e) => e.type === "test.backlog").map((e) => e.n as number);
    expect(sent.sort((x, y) => x - y)).toEqual(Array.from({ length: 60 }, (_, n) => n));
    expect(events.refusedForSize).toBeGreaterThan(0);
    const letters = await env.DB.prepare("SELECT id, body, error FROM dead_letters WHERE id LIKE 'stock-outbox:%'").all<{ id: string; body: string; error: string }>();
    expect(letters.results).toHaveLength(1);
    expect(letters.results[0]!.error).toContain("larger than a queue message");
    expect(JSON.parse(letters.results[0]!.body)).toMatchObject({ type: "test.backlog", n: -1 });
  });

  it("a sub-shard of a hot SKU never sends its slice as the SKU's stock event: it reports to its home, which publishes the total", async () => {
    const [sku] = await makeSkus([10]);
    expect((await json("POST", `/admin/stock/${sku}/hot`, { sub_shards: 2 }, admin())).status).toBe(200);
    const subs = [0, 1].map((i) => env.STOCK.getByName(hotSubShardName(sku!, i)));
    const fromSubs = await Promise.all(subs.map((s) => wrapEvents(s)));
    const fromHome = await wrapEvents(shardStub(sku!));
    // Shoppers hash to either sub-shard.
    for (let i = 0; i < 6; i++) {
      const res = await json("POST", "/v1/reservations", { items: [{ sku, quantity: 1 }] }, storefront({ "idempotency-key": uid("sub"), "x-shopper-id": uid("shopper") }));
      expect(res.status).toBe(201);
    }
    for (const s of subs) await drained(s);
    await drained(shardStub(sku!));
    expect(fromSubs.flatMap((s) => s.sent).filter((e) => e.type === "stock.changed")).toEqual([]);
    expect(fromHome.sent.filter((e) => e.type === "stock.changed" && e.sku === sku).at(-1)).toMatchObject({ on_hand: 10, reserved: 6 });
  });

  it("events carry a per-SKU seq that grows with every change, across locations", async () => {
    const [sku] = await makeSkus([{ "loc-us-east": 5, "loc-eu-central": 5 }]);
    const stub = shardStub(sku!);
    await call(`/v1/availability?skus=${sku}`);
    await drained(stub);
    const events = await wrapEvents(stub);
    await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 6 }, admin());
    await drained(stub);
    await json("PUT", `/admin/stock/${sku}`, { location: "loc-eu-central", on_hand: 7 }, admin());
    await drained(stub);
    const seqs = events.sent.filter((e) => e.sku === sku).map((e) => e.seq as number);
    expect(seqs).toHaveLength(2);
    expect(seqs[1]).toBeGreaterThan(seqs[0]!);
  });

  it("commit emits reservation.committed with the snapshotted unit prices", async () => {
    const [sku] = await makeSkus([10], { prices: { USD: 4200, EUR: 3900, GBP: 3500 } });
    const key = uid("idem");
    const coordinator = env.STOCK.getByName(shardName(coordinatorForScope(env, `key-dev-storefront\u0000${key}`)));
    const events = await wrapEvents(coordinator);
    const res = await json("POST", "/v1/reservations", { items: [{ sku, quantity: 2 }], currency: "GBP" }, storefront({ "idempotency-key": key }));
    const { id } = await res.json<{ id: string }>();
    expect((await json("POST", `/v1/reservations/${id}/commit`, {}, storefront())).status).toBe(200);
    expect((await json("POST", `/v1/reservations/${id}/commit`, {}, storefront())).status).toBe(200);
    await drained(coordinator);
    const committed = events.sent.filter((e) => e.type === "reservation.committed");
    expect(committed).toEqual([
      { type: "reservation.committed", id, items: [{ sku, quantity: 2, location: "loc-us-east", unit_price: 3500, currency: "GBP" }], occurred_at: expect.any(Number) },
    ]);
  });
});

describe("crash safety", () => {
  it("a saga abandoned mid-way (no Worker to finish or compensate) holds nothing past its TTL", async () => {
    const [sku] = await makeSkus([3]);
    const scope = `key-dev-storefront\u0000${uid("crash")}`;
    const n = coordinatorForScope(env, scope);
    const coordinator = env.STOCK.getByName(shardName(n));
    const begin = await coordinator.beginReservation({ scopeKey: scope, owner: "key-dev-storefront", bodyHash: "h", candidateId: newReservationId(n), currency: "USD", ttlMs: 1000 });
    if (begin.kind !== "started") throw new Error("expected a new saga");
    const held = await shardStub(sku!).hold({ reservationId: begin.id, expiresAt: begin.expiresAt, lines: [{ sku: sku!, quantity: 3 }], preferredLocations: [], actor: "test" });
    expect(held.ok).toBe(true);
    // The Worker "dies" here. Before the deadline the stock is held and the header is pending…
    expect((await (await call(`/v1/availability?skus=${sku}`)).json<{ items: { available: number }[] }>()).items[0]!.available).toBe(0);
    const pending = await (await call(`/v1/reservations/${begin.id}`, { headers: storefront() })).json<{ status: string }>();
    expect(pending.status).toBe("pending");
    // …and at the deadline both let go without anyone calling them.
    await new Promise((r) => setTimeout(r, begin.expiresAt - Date.now() + 20));
    expect((await (await call(`/v1/reservations/${begin.id}`, { headers: storefront() })).json<{ status: string }>()).status).toBe("expired");
    await runDurableObjectAlarm(shardStub(sku!));
    expect((await (await call(`/v1/availability?skus=${sku}`)).json<{ items: { available: number }[] }>()).items[0]!.available).toBe(3);
    expect(await reconcile(sku!)).toMatchObject({ mismatches: [], oversold: 0, reserved: 0 });
  });

  it("a hold due before the armed alarm brings the alarm forward, one due after leaves it, and each hold's event still goes out", async () => {
    const [sku] = await makeSkus([10]);
    // An object of its own: no other test's holds or events decide its alarm.
    const stub = env.STOCK.getByName(uid("alarm-shard"));
    const hold = async (expiresAt: number) => {
      const res = await stub.hold({ reservationId: uid("direct"), expiresAt, lines: [{ sku: sku!, quantity: 1, location: "loc-us-east" }], preferredLocations: [], actor: "test" });
      expect(res.ok).toBe(true);
    };
    // Once the hold's event is flushed, the alarm is left at the earliest hold deadline.
    const settlesAt = (deadline: number) =>
      vi.waitFor(
        async () => {
          const state = await runInDurableObject(stub, async (_, s) => ({
            pending: s.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox").one().n,
            at: await s.storage.getAlarm(),
          }));
          expect(state).toEqual({ pending: 0, at: deadline });
        },
        { timeout: 10_000, interval: 50 },
      );
    const t0 = Date.now();
    await hold(t0 + 3_600_000);
    await settlesAt(t0 + 3_600_000);
    await hold(t0 + 120_000);
    await settlesAt(t0 + 120_000);
    await hold(t0 + 1_800_000);
    await settlesAt(t0 + 120_000);
    const res = await stub.read([sku!]);
    expect(res.ok && res.rows[0]).toMatchObject({ reserved: 3 });
  });

  it("concurrent first sightings of a SKU adopt its baseline exactly once", async () => {
    const [sku] = await makeSkus([{ "loc-us-east": 4, "loc-ap-south": 6 }]);
    const reads = await Promise.all(Array.from({ length: 20 }, () => call(`/v1/availability?skus=${sku}`)));
    expect(reads.every((r) => r.status === 200)).toBe(true);
    const ledger = await ledgerOf(sku!);
    expect(ledger.filter((l) => l.kind === "baseline").map((l) => [l.location, l.delta_on_hand]).sort()).toEqual([["loc-ap-south", 6], ["loc-us-east", 4]]);
    expect(await reconcile(sku!)).toMatchObject({ mismatches: [], onHand: 10 });
  });
});

describe("admin stock API", () => {
  it("PUT sets on_hand with a ledger `set`; needs the admin token; 422 for unknown SKUs or locations", async () => {
    const [sku] = await makeSkus([10]);
    await expectProblem(await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 3 }), 401);
    await expectProblem(await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 3 }, storefront()), 401);
    await expectProblem(await json("PUT", "/admin/stock/NOPE-77", { location: "loc-us-east", on_hand: 3 }, admin()), 422);
    await expectProblem(await json("PUT", `/admin/stock/${sku}`, { location: "loc-moon", on_hand: 3 }, admin()), 422);
    await expectProblem(await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: -1 }, admin()), 400);
    const res = await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 3, safety_stock: 1, low_stock: 2 }, admin());
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ sku, location: "loc-us-east", on_hand: 3, reserved: 0, safety_stock: 1, low_stock: 2, available: 2 });
    const last = (await ledgerOf(sku!)).at(-1)!;
    expect(last).toMatchObject({ kind: "set", delta_on_hand: -7, on_hand_after: 3, actor: "admin" });
    // A new location for a known SKU starts from zero.
    const eu = await json("PUT", `/admin/stock/${sku}`, { location: "loc-eu-central", on_hand: 8 }, admin());
    expect(await eu.json()).toMatchObject({ location: "loc-eu-central", on_hand: 8 });
    expect(await reconcile(sku!)).toMatchObject({ mismatches: [], onHand: 11 });
  });

  it("adjustments are idempotent per event_id; a line that would go below zero is rejected without using up its event_id", async () => {
    const [a, b] = await makeSkus([10, 2]);
    const lines = [
      { sku: a, location: "loc-us-east", delta: 5, reason: "receipt", event_id: uid("ev") },
      { sku: b, location: "loc-us-east", delta: -3, reason: "damage", event_id: uid("ev") },
      { sku: b, location: "loc-us-east", delta: -2, reason: "damage", event_id: uid("ev") },
    ];
    const first = await (await json("POST", "/admin/stock/adjustments", lines, admin())).json<{ results: { status: string; on_hand?: number }[] }>();
    expect(first.results.map((r) => r.status)).toEqual(["applied", "rejected", "applied"]);
    const again = await (await json("POST", "/admin/stock/adjustments", lines, admin())).json<{ results: { status: string; on_hand?: number }[] }>();
    expect(again.results.map((r) => r.status)).toEqual(["duplicate", "rejected", "duplicate"]);
    // The cause is gone (stock arrived): the feed's retry of the rejected event applies it, once.
    await json("PUT", `/admin/stock/${b}`, { location: "loc-us-east", on_hand: 4 }, admin());
    const retry = await (await json("POST", "/admin/stock/adjustments", lines, admin())).json<{ results: { status: string; on_hand?: number }[] }>();
    expect(retry.results.map((r) => [r.status, r.on_hand])).toEqual([["duplicate", 15], ["applied", 1], ["duplicate", 0]]);
    expect((await (await json("POST", "/admin/stock/adjustments", lines, admin())).json<{ results: { status: string }[] }>()).results[1]!.status).toBe("duplicate");
    const av = await (await call(`/v1/availability?skus=${a},${b}`)).json<{ items: { on_hand: number }[] }>();
    expect(av.items.map((i) => i.on_hand)).toEqual([15, 1]);
    expect((await ledgerOf(a!)).filter((l) => l.kind === "adjust")).toMatchObject([{ delta_on_hand: 5, reason: "receipt", event_id: lines[0]!.event_id }]);
    await expectProblem(await json("POST", "/admin/stock/adjustments", [{ ...lines[0], delta: 0, event_id: uid("ev") }], admin()), 400);
    await expectProblem(await json("POST", "/admin/stock/adjustments", [{ ...lines[0], sku: "NOPE-5", event_id: uid("ev") }], admin()), 422);
  });

  it("a batch reusing one event_id for different movements is refused with 422 naming the lines, and applies nothing on any shard", async () => {
    let [a, b] = (await makeSkus([10, 10])) as [string, string];
    // Two SKUs on different shards: each shard alone would see a fresh event_id and apply its line.
    while (shardNameForSku(env, a) === shardNameForSku(env, b)) [a, b] = (await makeSkus([10, 10])) as [string, string];
    const ev = uid("ev");
    const other = { sku: a, location: "loc-us-east", delta: 1, reason: "receipt", event_id: uid("ev") };
    const lines = [other, { sku: a, location: "loc-us-east", delta: 4, reason: "receipt", event_id: ev }, { sku: b, location: "loc-us-east", delta: -3, reason: "damage", event_id: ev }];
    const res = await json("POST", "/admin/stock/adjustments", lines, admin());
    const body = (await expectProblem(res, 422)) as unknown as { detail: string; reused_event_ids: { event_id: string; lines: number[] }[] };
    expect(body.reused_event_ids).toEqual([{ event_id: ev, lines: [1, 2] }]);
    expect(body.detail).toContain("lines 1, 2");
    const av = await (await call(`/v1/availability?skus=${a},${b}`)).json<{ items: { on_hand: number }[] }>();
    expect(av.items.map((i) => i.on_hand)).toEqual([10, 10]);
    expect((await ledgerOf(a)).filter((l) => l.kind === "adjust")).toEqual([]);
    // The same movement sent twice in one batch is a replay, not a reuse: applied once, the repeat is a duplicate.
    const twice = await (await json("POST", "/admin/stock/adjustments", [lines[1], lines[1]], admin())).json<{ results: { status: string; on_hand?: number }[] }>();
    expect(twice.results.map((r) => [r.status, r.on_hand])).toEqual([["applied", 14], ["duplicate", 14]]);
  });

  it("the ledger pages with a cursor and reconciles with the live counts", async () => {
    const [sku] = await makeSkus([20]);
    for (let i = 0; i < 4; i++) await json("POST", "/v1/reservations", { items: [{ sku, quantity: 1 }] }, storefront({ "idempotency-key": uid("k") }));
    const seen: { id: number; kind: string }[] = [];
    let cursor: string | null = "";
    let pages = 0;
    while (cursor !== null) {
      const res = await call(`/admin/stock/${sku}/ledger?limit=2${cursor ? `&cursor=${cursor}` : ""}`, { headers: admin() });
      expect(res.status).toBe(200);
      const page = await res.json<{ items: { id: number; kind: string }[]; next_cursor: string | null }>();
      seen.push(...page.items);
      cursor = page.next_cursor;
      pages++;
    }
    expect(seen.map((l) => l.kind)).toEqual(["baseline", "reserve", "reserve", "reserve", "reserve"]);
    expect(pages).toBe(3);
    expect(await reconcile(sku!)).toMatchObject({ mismatches: [], reserved: 4, onHand: 20 });
    await expectProblem(await call(`/admin/stock/${sku}/ledger`), 401);
    await expectProblem(await call("/admin/stock/NOPE-3/ledger", { headers: admin() }), 404);
  });

  it("the benchmark baseline route increments a counter in a shard and needs the admin token", async () => {
    const one = await (await call("/admin/bench/do-noop", { method: "POST", headers: admin() })).json<{ value: number }>();
    const two = await (await call("/admin/bench/do-noop", { method: "POST", headers: admin() })).json<{ value: number }>();
    expect(two.value).toBe(one.value + 1);
    await expectProblem(await call("/admin/bench/do-noop", { method: "POST" }), 401);
  });
});

describe("a shard's own checks on extend (what it must refuse whatever its caller lets through)", () => {
  it("never revives a released or committed line, and re-holds a lapsed line only when its units are free", async () => {
    const [sku] = await makeSkus([4]);
    const stub = shardStub(sku!);
    const line = (quantity: number) => [{ sku: sku!, quantity, location: "loc-us-east" }];
    const counts = async () => {
      const res = await stub.read([sku!]);
      if (!res.ok) throw new Error("unknown SKU");
      return { on_hand: res.rows[0]!.on_hand, reserved: res.rows[0]!.reserved };
    };
    // Ids of no coordinator: their holds lapse at the deadline without a verdict.
    const hold = async (quantity: number, expiresAt: number) => {
      const id = uid("direct");
      const res = await stub.hold({ reservationId: id, expiresAt, lines: line(quantity), preferredLocations: [], actor: "test" });
      expect(res.ok).toBe(true);
      return id;
    };
    const t0 = Date.now();
    setClock(t0);
    try {
      const released = await hold(2, t0 + 60_000);
      await stub.release(released, "test");
      expect(await stub.extend(released, line(2), t0 + 120_000, "test")).toEqual({ ok: false, error: "insufficient", shortfalls: [] });
      const committed = await hold(1, t0 + 60_000);
      await stub.commit(committed, line(1), "test");
      expect(await stub.extend(committed, line(1), t0 + 120_000, "test")).toEqual({ ok: false, error: "insufficient", shortfalls: [] });
      expect(await counts()).toEqual({ on_hand: 3, reserved: 0 });

      // A line that lapsed here: 2 units wanted back while only 1 is free is refused…
      const lapsed = await hold(2, t0 + 1_000);
      setClock(t0 + 1_000);
      const other = await hold(2, t0 + 60_000);
      const refused = await stub.extend(lapsed, line(2), t0 + 120_000, "test");
      expect(refused).toMatchObject({ ok: false, shortfalls: [{ sku, requested: 2, available: 1, location: "loc-us-east" }] });
      expect(await counts()).toEqual({ on_hand: 3, reserved: 2 });
      // …and with exactly 2 free it is held again.
      await stub.release(other, "test");
      await hold(1, t0 + 60_000);
      expect(await stub.extend(lapsed, line(2), t0 + 120_000, "test")).toEqual({ ok: true });
      expect(await counts()).toEqual({ on_hand: 3, reserved: 3 });
    } finally {
      setClock(null);
    }
    expect(await reconcile(sku!)).toMatchObject({ mismatches: [], oversold: 0 });
  });

  it("re-holds a lapsed line only as a fresh hold would be placed: within the holder's per-SKU cap, counted against it after, never on a frozen location", async () => {
    const [sku] = await makeSkus([10]);
    const stub = shardStub(sku!);
    const line = (quantity: number) => [{ sku: sku!, quantity, location: "loc-us-east" }];
    const holder = "00000000000000a7";
    const guard = { holder, perSkuCap: 3 };
    const hold = async (quantity: number, expiresAt: number) => {
      const id = uid("direct");
      return { id, res: await stub.hold({ reservationId: id, expiresAt, lines: line(quantity), preferredLocations: [], actor: "test", holder, perSkuCap: 3 }) };
    };
    const reserved = async () => {
      const res = await stub.read([sku!]);
      if (!res.ok) throw new Error("unknown SKU");
      return res.rows[0]!.reserved;
    };
    const t0 = Date.now();
    setClock(t0);
    try {
      const lapsed = await hold(2, t0 + 1_000);
      expect(lapsed.res.ok).toBe(true);
      setClock(t0 + 1_000);
      const other = await hold(2, t0 + 60_000);
      expect(other.res.ok).toBe(true);
      // 2 held + 2 wanted back > cap 3: refused although the units are free, and nothing is taken.
      expect(await stub.extend(lapsed.id, line(2), t0 + 120_000, "test", guard)).toMatchObject({ ok: false, shortfalls: [{ sku, requested: 2, available: 1 }] });
      expect(await reserved()).toBe(2);
      await stub.release(other.id, "test");
      expect(await stub.extend(lapsed.id, line(2), t0 + 120_000, "test", guard)).toEqual({ ok: true });
      // The re-held units count against the holder: a fresh hold of 2 more passes the cap.
      expect(await hold(2, t0 + 60_000)).toMatchObject({ res: { ok: false, error: "hold_limit", held: 2, requested: 2 } });
      expect(await reserved()).toBe(2);

      // A location the home shard froze sells nothing here, to a re-hold either.
      const frozenLine = await hold(1, t0 + 2_000);
      expect(frozenLine.res.ok).toBe(true);
      setClock(t0 + 2_000);
      await stub.read([sku!]); // lets the hold lapse
      await runInDurableObject(stub, (_, state) => state.storage.sql.exec("INSERT INTO escrow_frozen (sku, location) VALUES (?, ?)", sku, "loc-us-east"));
      expect(await stub.extend(frozenLine.id, line(1), t0 + 120_000, "test", { holder, perSkuCap: 10 })).toMatchObject({ ok: false, shortfalls: [{ sku, requested: 1 }] });
      expect(await reserved()).toBe(2);
      await runInDurableObject(stub, (_, state) => state.storage.sql.exec("DELETE FROM escrow_frozen WHERE sku = ?", sku));
    } finally {
      setClock(null);
    }
    expect(await reconcile(sku!)).toMatchObject({ mismatches: [], oversold: 0 });
  });
});
