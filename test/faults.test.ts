import { createExecutionContext, env, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { buildApp } from "../src/app";
import { productCacheUrls } from "../src/catalog/cache-keys";
import { resendUnsent } from "../src/events/outbox";
import { guardEnv } from "../src/lib/guarded-env";
import { stockSaturation } from "../src/lib/load-shed";
import { coordinatorForScope, shardName, shardNameForSku } from "../src/stock/routing";
import { seedApiKeys } from "./helpers/api-keys";
import { insertProduct, seedCategories } from "./helpers/catalog-fixtures";
import { admin, BASE, call, expectProblem, json, storefront, uid } from "./helpers/http";
import { injectShardFault } from "./helpers/shard-faults";
import { makeSkus } from "./helpers/stock-fixtures";

beforeAll(async () => {
  await seedApiKeys(env.DB);
  await seedCategories(env.DB);
});

/** Calls the app exactly as production does, but with some bindings swapped for faulty ones. */
async function callWith(e: Env, path: string, init: RequestInit = {}): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await buildApp().fetch(new Request(BASE + path, init), e, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** A STOCK namespace whose every call waits for `open()`: shards that are busy serving a flash sale. */
function busyStock() {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const stub = new Proxy({}, { get: (_t, prop) => (prop === "then" ? undefined : () => gate.then(() => ({ ok: true }))) });
  const ns = { getByName: () => stub, get: () => stub, idFromName: (n: string) => ({ name: n, toString: () => n }) } as unknown as Env["STOCK"];
  return { ns, open };
}

describe("load shedding by priority", () => {
  it("with the shards saturated, browse is served from the cache tiers only (x-degraded: shed), and recovers after", async () => {
    const cached = await insertProduct(env.DB);
    const uncached = await insertProduct(env.DB);
    const path = `/v1/products/${cached.id}?currency=USD&locale=en`;
    expect((await call(path)).status).toBe(200);
    await vi.waitFor(async () => expect((await call(path)).headers.get("x-cache-tier")).toBe("edge"));

    const busy = busyStock();
    const e = { ...env, STOCK: busy.ns } as Env;
    const inflight = Array.from({ length: 64 }, (_, i) => (guardEnv(e).STOCK.getByName(`stock:${i % 4}`) as unknown as { reserve(): Promise<unknown> }).reserve());
    expect(stockSaturation(e)).toMatchObject({ saturated: true, inflight: 64 });

    const hit = await callWith(e, path);
    expect(hit.status).toBe(200);
    expect(hit.headers.get("x-degraded")).toBe("shed");
    // Not cached anywhere: the origin is off limits while shedding, so the answer is a fast 503, never a D1 read.
    const miss = await callWith(e, `/v1/products/${uncached.id}?currency=USD&locale=en`);
    const p = await expectProblem(miss, 503);
    expect(miss.headers.get("Retry-After")).toBeTruthy();
    expect(p.detail).toBeDefined();

    busy.open();
    await Promise.all(inflight);
    expect(stockSaturation(e).saturated).toBe(false);
    const after = await callWith(e, `/v1/products/${uncached.id}?currency=USD&locale=en`);
    expect(after.status).toBe(200);
    expect(after.headers.get("x-degraded")).toBeNull();
  });
});

/** A D1 binding that is down: every query rejects. Counts the queries that reached it. */
function downD1() {
  const calls = { n: 0 };
  const fail = () => {
    calls.n++;
    return Promise.reject(new Error("D1_ERROR: network connection lost (injected)"));
  };
  const stmt: Record<string, unknown> = { first: fail, all: fail, run: fail, raw: fail };
  stmt.bind = () => stmt;
  const db: Record<string, unknown> = { prepare: () => stmt, batch: fail, exec: fail, getBookmark: () => null };
  db.withSession = () => db;
  return { db: db as unknown as D1Database, calls };
}
const downKv = { get: () => Promise.reject(new Error("KV down (injected)")), getWithMetadata: () => Promise.reject(new Error("KV down (injected)")), put: () => Promise.reject(new Error("KV down (injected)")) } as unknown as KVNamespace;

describe("fault injection through the bindings", () => {
  it("D1 failing: product reads are served stale, the D1 breaker opens and stops calling it, writes fail fast with 503", async () => {
    const p = await insertProduct(env.DB);
    const path = `/v1/products/${p.id}?currency=USD&locale=en`;
    expect((await callWith(env, path)).status).toBe(200);
    // Drop the fresh edge copies; only the long-lived last-good copy remains, as after a purge.
    await vi.waitFor(async () => expect(await caches.default.match(productCacheUrls(p.id, env)[0]!)).toBeTruthy());
    await Promise.all(productCacheUrls(p.id, env).map((u) => caches.default.delete(u)));

    const down = downD1();
    const e = { ...env, DB: down.db, CATALOG_KV: downKv } as Env;
    for (let i = 0; i < 8; i++) {
      const res = await callWith(e, path);
      expect(res.status).toBe(200);
      expect(res.headers.get("x-stale")).toBe("true");
      await res.body?.cancel();
    }
    const reached = down.calls.n;
    expect(reached).toBeGreaterThanOrEqual(5);
    expect(reached).toBeLessThan(8);
    const started = Date.now();
    const write = await callWith(e, `/admin/products/${p.id}`, { method: "DELETE", headers: admin() });
    await expectProblem(write, 503);
    expect(Number(write.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(down.calls.n).toBe(reached);
  });

  it("the queue send failing: the write succeeds, its event waits in the outbox, and the cron re-send delivers it", async () => {
    const failingQueue = { send: () => Promise.reject(new Error("queue down (injected)")), sendBatch: () => Promise.reject(new Error("queue down (injected)")) } as unknown as Queue;
    const id = uid("p-q");
    const body = {
      slug: id.toLowerCase(),
      title: `Fault ${id}`,
      brand: "Kestrel",
      category_id: "cat-running",
      variants: [{ sku: `${id}-S`, title: "S", options: { size: "S" }, prices: { USD: 1000 } }],
    };
    const res = await callWith({ ...env, EVENTS: failingQueue } as Env, `/admin/products/${id}`, {
      method: "PUT",
      headers: admin({ "content-type": "application/json" }),
      body: JSON.stringify(body),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const unsent = await env.DB.prepare("SELECT id FROM outbox WHERE entity_id = ? AND sent_at IS NULL").bind(id).all();
    expect(unsent.results.length).toBe(1);
    const sent: unknown[] = [];
    const recordingQueue = { send: async (b: unknown) => void sent.push(b), sendBatch: async (msgs: { body: unknown }[]) => void sent.push(...msgs.map((m) => m.body)) } as unknown as Queue;
    await resendUnsent(guardEnv({ ...env, EVENTS: recordingQueue } as Env), Date.now() + 60_000);
    expect(sent).toContainEqual(expect.objectContaining({ type: "product.changed", id, version: 1 }));
    const left = await env.DB.prepare("SELECT id FROM outbox WHERE entity_id = ? AND sent_at IS NULL").bind(id).all();
    expect(left.results.length).toBe(0);
  });

  it.each([
    ["another shard than the coordinator", false],
    ["the coordinator itself", true],
  ])("a shard throwing mid-saga (%s): 503, the lines already held are released, nothing stays held, and a retry succeeds", async (_, coordinatorBroken) => {
    let a = "";
    let b = "";
    while (!a || shardNameForSku(env, a) === shardNameForSku(env, b)) [a, b] = (await makeSkus([5, 5])) as [string, string];
    const broken = shardNameForSku(env, b);
    // The hold reaches the shard from the coordinator, object to object: the fault sits in the shard itself.
    const undo = injectShardFault({ method: "hold", when: "before", matches: (name) => name === broken });
    // The Idempotency-Key decides which shard keeps the reservation record: make it the failing one, or not.
    let key = uid("saga");
    while ((shardName(coordinatorForScope(env, `key-dev-storefront\u0000${key}`)) === broken) !== coordinatorBroken) key = uid("saga");
    const items = [{ sku: a, quantity: 2 }, { sku: b, quantity: 1 }];
    const res = await json("POST", "/v1/reservations", { items }, storefront({ "idempotency-key": key })).finally(undo);
    await expectProblem(res, 503);
    for (const sku of [a, b]) {
      const held = await runInDurableObject(env.STOCK.getByName(shardNameForSku(env, sku)), (_, state) =>
        state.storage.sql.exec<{ n: number }>("SELECT COALESCE(SUM(reserved), 0) AS n FROM stock WHERE sku = ?", sku).one().n,
      );
      expect(held).toBe(0);
    }
    const retry = await json("POST", "/v1/reservations", { items }, storefront({ "idempotency-key": key }));
    expect(retry.status).toBe(201);
  });

  it("an alarm firing late: the hold reads expired at its deadline, and the late alarm releases it exactly once", async () => {
    const [sku] = await makeSkus([3]);
    const res = await json("POST", "/v1/reservations", { items: [{ sku, quantity: 2 }], ttl_seconds: 1 }, storefront({ "idempotency-key": uid("late") }));
    expect(res.status).toBe(201);
    const { id } = await res.json<{ id: string }>();
    const shard = env.STOCK.getByName(shardNameForSku(env, sku!));
    // The platform delivers the alarm late: push it a minute past the deadline.
    await runInDurableObject(shard, (_, state) => state.storage.setAlarm(Date.now() + 60_000));
    await new Promise((r) => setTimeout(r, 1300));
    const read = await call(`/v1/reservations/${id}`, { headers: storefront() });
    expect((await read.json<{ status: string }>()).status).toBe("expired");
    await expectProblem(await json("POST", `/v1/reservations/${id}/commit`, {}, storefront()), 409);
    await runDurableObjectAlarm(shard);
    await runInDurableObject(shard, (_, state) => state.storage.setAlarm(Date.now() + 10));
    await runDurableObjectAlarm(shard); // at-least-once: a repeated alarm changes nothing
    const { expires, reserved } = await runInDurableObject(shard, (_, state) => ({
      expires: state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM ledger WHERE reservation_id = ? AND kind = 'expire'", id).one().n,
      reserved: state.storage.sql.exec<{ n: number }>("SELECT COALESCE(SUM(reserved), 0) AS n FROM stock WHERE sku = ?", sku).one().n,
    }));
    expect(expires).toBe(1);
    expect(reserved).toBe(0);
    const avail = await (await call(`/v1/availability?skus=${sku}`)).json<{ items: { available: number }[] }>();
    expect(avail.items[0]!.available).toBe(3);
  });
});
