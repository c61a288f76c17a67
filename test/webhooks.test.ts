/**
 * Outbound webhooks end to end: real changes (reservations through the API, admin writes, an import, a promotion
 * boundary) travel the real queue to a real HTTP receiver in Node (test/node/webhook-receiver.ts), which verifies
 * each delivery with the `standardwebhooks` package.
 */
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { buildApp } from "../src/app";
import { refuseTarget } from "../src/webhooks/target-policy";
import { signatureHeader } from "../src/webhooks/signing";
import { seedApiKeys } from "./helpers/api-keys";
import { BASE, admin, call, expectProblem, json, storefront, uid } from "./helpers/http";
import { makeSkus } from "./helpers/stock-fixtures";

type Received = { endpoint: string; id: string; verified: boolean; error?: string; status: number; at: number; payload: { type: string; timestamp: string; data: Record<string, unknown> } };
type Endpoint = { id: string; url: string; events: string[]; status: string; disabled_reason: string | null; consecutive_failures: number; secret?: string };
type Log = { pending: number; failed: number; attempts: { event_id: string; event_type: string; ok: boolean; status_code: number | null; error: string | null }[] };

const RECEIVER = env.WEBHOOK_RECEIVER_URL;

function newSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return `whsec_${btoa(String.fromCharCode(...bytes))}`;
}

/** Registers an endpoint at the receiver's /hook/<mode>/<name>, and tells the receiver its secret. */
async function register(mode: "ok" | "fail" | "fail-first" | "slow", events: string[]): Promise<{ name: string; endpoint: Endpoint }> {
  const name = uid("ep").replace(/[^A-Za-z0-9-]/g, "");
  const secret = newSecret();
  await fetch(`${RECEIVER}/__secret/${name}`, { method: "PUT", body: secret });
  const res = await json("POST", "/admin/webhooks", { url: `${RECEIVER}/hook/${mode}/${name}`, events, secret }, admin());
  expect(res.status, await res.clone().text()).toBe(201);
  return { name, endpoint: await res.json<Endpoint>() };
}

async function received(name: string): Promise<Received[]> {
  return (await fetch(`${RECEIVER}/__received?endpoint=${name}`)).json<Received[]>();
}

/** Waits until `name` has received deliveries that satisfy `check`, and returns them. */
async function waitForDeliveries(name: string, check: (r: Received[]) => boolean, timeout = 15_000): Promise<Received[]> {
  return vi.waitFor(
    async () => {
      const got = await received(name);
      if (!check(got)) throw new Error(`not yet: ${JSON.stringify(got.map((r) => [r.payload?.type, r.status]))}`);
      return got;
    },
    { timeout, interval: 100 },
  );
}

const reserve = (items: { sku: string; quantity: number; location?: string }[]) =>
  json("POST", "/v1/reservations", { items }, storefront({ "idempotency-key": uid("idem") }));

const types = (r: Received[]) => r.filter((x) => x.status < 300).map((x) => x.payload.type);

beforeAll(async () => {
  await seedApiKeys(env.DB);
});

describe("webhook endpoints registry", () => {
  it("admin only; validates url, events and secret; a generated secret is returned once; list, disable, re-enable, delete", async () => {
    await expectProblem(await json("POST", "/admin/webhooks", { url: "https://hooks.example.com/x", events: ["stock.low"] }), 401);
    await expectProblem(await json("POST", "/admin/webhooks", { url: "https://hooks.example.com/x", events: [] }, admin()), 400);
    await expectProblem(await json("POST", "/admin/webhooks", { url: "https://hooks.example.com/x", events: ["stock.nope"] }, admin()), 400);
    await expectProblem(await json("POST", "/admin/webhooks", { url: "https://hooks.example.com/x", events: ["stock.low", "stock.low"] }, admin()), 400);
    await expectProblem(await json("POST", "/admin/webhooks", { url: "https://hooks.example.com/x", events: ["stock.low"], secret: "hunter2" }, admin()), 400);
    const refused = await expectProblem(await json("POST", "/admin/webhooks", { url: "ftp://hooks.example.com/x", events: ["stock.low"] }, admin()), 422);
    expect(refused.detail).toMatch(/https/);

    const res = await json("POST", "/admin/webhooks", { url: "https://hooks.example.com/erp", events: ["stock.low", "price.changed"], description: "ERP" }, admin());
    expect(res.status).toBe(201);
    const created = await res.json<Endpoint>();
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(created).toMatchObject({ status: "active", events: ["stock.low", "price.changed"], consecutive_failures: 0 });

    const list = await (await call("/admin/webhooks", { headers: admin() })).json<{ items: Endpoint[] }>();
    const listed = list.items.find((e) => e.id === created.id)!;
    expect(listed.url).toBe("https://hooks.example.com/erp");
    expect(JSON.stringify(list)).not.toContain(created.secret!);

    const disabled = await (await json("PATCH", `/admin/webhooks/${created.id}`, { status: "disabled" }, admin())).json<Endpoint>();
    expect(disabled).toMatchObject({ status: "disabled", disabled_reason: "disabled by an operator" });
    const enabled = await (await json("PATCH", `/admin/webhooks/${created.id}`, { status: "active" }, admin())).json<Endpoint>();
    expect(enabled).toMatchObject({ status: "active", disabled_reason: null });

    expect((await call(`/admin/webhooks/${created.id}`, { method: "DELETE", headers: admin() })).status).toBe(204);
    await expectProblem(await call(`/admin/webhooks/${created.id}`, { headers: admin() }), 404);
    await expectProblem(await call(`/admin/webhooks/${created.id}`, { method: "DELETE", headers: admin() }), 404);
    await expectProblem(await call("/admin/webhooks/not-an-id", { headers: admin() }), 400);
  });

  it("production accepts only https to public hosts: private, loopback, link-local and local names are refused, and the local exception is off", () => {
    const prod = { ENVIRONMENT: "production", WEBHOOK_ALLOW_LOCAL: "true" };
    expect(refuseTarget("https://hooks.example.com/in", prod)).toBeNull();
    expect(refuseTarget("https://93.184.216.34/in", prod)).toBeNull();
    expect(refuseTarget("https://hooks.example.com./in", prod)).toBeNull();
    for (const url of [
      "http://hooks.example.com/in", "https://127.0.0.1/x", "https://localhost/x", "https://10.1.2.3/x", "https://172.20.0.1/x",
      "https://192.168.1.10/x", "https://169.254.169.254/latest/meta-data", "https://[::1]/x", "https://[fe80::1]/x", "https://[fd00::1]/x",
      "https://[::ffff:127.0.0.1]/x", "https://2130706433/x", "https://0x7f.1/x", "https://100.64.0.1/x", "https://0.0.0.0/x",
      "https://printer.local/x", "https://metadata.google.internal/x", "https://intranet/x", "https://user:pw@hooks.example.com/x", "not a url",
      // The same names fully qualified (a trailing dot resolves to the same host), and IPv4 with one.
      "https://localhost./x", "https://localhost../x", "https://printer.local./x", "https://metadata.google.internal./computeMetadata/v1/",
      "https://intranet./x", "https://app.localhost./x", "https://127.0.0.1./x", "https://./x",
    ]) {
      expect(refuseTarget(url, prod), url).not.toBeNull();
    }
    // Development allows a local receiver only when asked to.
    expect(refuseTarget("http://127.0.0.1:9/x", { ENVIRONMENT: "development", WEBHOOK_ALLOW_LOCAL: "true" })).toBeNull();
    expect(refuseTarget("http://127.0.0.1:9/x", { ENVIRONMENT: "development", WEBHOOK_ALLOW_LOCAL: "false" })).not.toBeNull();
  });

  it("registration in production refuses a local name written with a trailing dot (422), as without one", async () => {
    const prod = { ...env, ENVIRONMENT: "production", WEBHOOK_ALLOW_LOCAL: "false" } as Env;
    const register = async (url: string) => {
      const ctx = createExecutionContext();
      const init = { method: "POST", headers: admin({ "content-type": "application/json" }), body: JSON.stringify({ url, events: ["price.changed"] }) };
      const res = await buildApp().fetch(new Request(`${BASE}/admin/webhooks`, init), prod, ctx);
      await waitOnExecutionContext(ctx);
      return res;
    };
    for (const url of ["https://localhost./hook", "https://metadata.google.internal./computeMetadata/v1/", "https://x.local./"]) {
      expect((await expectProblem(await register(url), 422)).detail, url).toMatch(/not a public name/);
    }
  });

  it("signatures follow Standard Webhooks: v1, base64 HMAC-SHA256 of id.timestamp.body (known vector)", async () => {
    // The example of the Standard Webhooks specification's reference libraries.
    const sig = await signatureHeader("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}');
    expect(sig).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  });
});

describe("stock events", () => {
  it("a stock drop across the threshold fires stock.low once, not once per sale; then stock.out and stock.back_in, each verified", async () => {
    // 8 at loc-us-east with the fixtures' low-stock threshold of 5.
    const [sku] = await makeSkus([8]);
    const { name } = await register("ok", ["stock.low", "stock.out", "stock.back_in"]);
    const sales: string[] = [];
    for (const quantity of [1, 2, 1, 1]) {
      const res = await reserve([{ sku: sku!, quantity, location: "loc-us-east" }]);
      expect(res.status, await res.clone().text()).toBe(201);
      sales.push((await res.json<{ id: string }>()).id);
    }
    await waitForDeliveries(name, (r) => r.length >= 1);
    const last = await reserve([{ sku: sku!, quantity: 3, location: "loc-us-east" }]);
    expect(last.status).toBe(201);
    await waitForDeliveries(name, (r) => types(r).includes("stock.out"));
    // Releasing the last hold brings 3 units back.
    const released = await call(`/v1/reservations/${(await last.json<{ id: string }>()).id}`, { method: "DELETE", headers: storefront() });
    expect(released.status).toBe(200);
    const got = await waitForDeliveries(name, (r) => types(r).includes("stock.back_in"));
    // Let any duplicate arrive before counting.
    await new Promise((r) => setTimeout(r, 1_000));
    const all = await received(name);
    expect(all.every((r) => r.verified), JSON.stringify(all.map((r) => r.error))).toBe(true);
    expect(types(all)).toEqual(["stock.low", "stock.out", "stock.back_in"]);
    const low = got.find((r) => r.payload.type === "stock.low")!;
    expect(low.payload.data).toMatchObject({ sku, location: "loc-us-east", status: "low_stock", previous_status: "in_stock" });
    // The projection may fold several sales into one write, so the crossing reports the first count it saw under the
    // threshold: 5 after the second sale at the earliest, 3 after the fourth at the latest.
    expect(low.payload.data.available).toBeGreaterThanOrEqual(3);
    expect(low.payload.data.available).toBeLessThanOrEqual(5);
    expect(all.find((r) => r.payload.type === "stock.back_in")!.payload.data).toMatchObject({ status: "low_stock", previous_status: "out_of_stock", available: 3 });
    expect(new Set(all.map((r) => r.id)).size).toBe(3);
  });
});

describe("catalog, order and import events", () => {
  it("price.changed reaches two endpoints independently: one fails first and gets the retry with the same webhook-id, the other gets it once", async () => {
    const flaky = await register("fail-first", ["price.changed"]);
    const steady = await register("ok", ["price.changed"]);
    const id = uid("p-wh").toLowerCase();
    const sku = uid("SKU-WH");
    const put = await json("PUT", `/admin/products/${id}`, {
      slug: id, title: "Webhook lamp", brand: "Lumen", category_id: "cat-electronics",
      variants: [{ sku, options: { color: "red" }, prices: { USD: 1000, EUR: 900 } }],
    }, admin());
    expect(put.status, await put.clone().text()).toBe(201);
    const patch = await json("PATCH", `/admin/products/${id}`, { variants: [{ sku, prices: { USD: 1200 } }] }, admin({ "if-match": put.headers.get("etag")! }));
    expect(patch.status, await patch.clone().text()).toBe(200);

    const flakyGot = await waitForDeliveries(flaky.name, (r) => r.some((x) => x.status === 204));
    expect(flakyGot.map((r) => r.status)).toEqual([503, 204]);
    expect(flakyGot[0]!.id).toBe(flakyGot[1]!.id);
    expect(flakyGot.every((r) => r.verified)).toBe(true);
    expect(flakyGot[1]!.payload.data).toMatchObject({ sku, currency: "USD", previous_amount: 1000, amount: 1200, product_id: id });
    const steadyGot = await waitForDeliveries(steady.name, (r) => r.length >= 1);
    expect(steadyGot.map((r) => [r.status, r.id])).toEqual([[204, flakyGot[0]!.id]]);

    const log = await (await call(`/admin/webhooks/${flaky.endpoint.id}/deliveries`, { headers: admin() })).json<Log>();
    expect(log.attempts.map((a) => [a.ok, a.status_code])).toEqual([[true, 204], [false, 503]]);
    expect(log.pending).toBe(0);
  });

  it("reservation.committed, import.completed and stock.oversold arrive once each, signed", async () => {
    const { name } = await register("ok", ["reservation.committed", "import.completed", "stock.oversold"]);
    const [sku] = await makeSkus([10]);
    const held = await reserve([{ sku: sku!, quantity: 2 }]);
    const rid = (await held.json<{ id: string }>()).id;
    expect((await call(`/v1/reservations/${rid}/commit`, { method: "POST", headers: storefront() })).status).toBe(200);
    expect((await call(`/v1/reservations/${rid}/commit`, { method: "POST", headers: storefront() })).status).toBe(200);

    const pid = uid("p-imp").toLowerCase();
    const line = JSON.stringify({ id: pid, slug: pid, title: "Imported", brand: "Imp", category_id: "cat-electronics", variants: [{ sku: uid("SKU-IMP"), prices: { USD: 500 } }] });
    const imported = await call("/admin/import", { method: "POST", headers: admin({ "content-type": "application/x-ndjson" }), body: `${line}\n` });
    expect(imported.status, await imported.clone().text()).toBe(201);
    const importId = (await imported.json<{ import_id: string }>()).import_id;

    // stock.oversold comes from the stock shards as a queue message; a replayed copy must not be delivered twice.
    const oversold = { type: "stock.oversold", sku, location: "loc-us-east", units: 1, on_hand: 1, reserved: 2, cause: "recount", event_id: uid("wms"), seq: 41, occurred_at: Date.now() };
    await env.EVENTS.send(oversold);
    await env.EVENTS.send(oversold);

    const got = await waitForDeliveries(name, (r) => ["reservation.committed", "import.completed", "stock.oversold"].every((t) => types(r).includes(t)));
    await new Promise((r) => setTimeout(r, 1_000));
    const all = await received(name);
    expect(types(all).sort()).toEqual(["import.completed", "reservation.committed", "stock.oversold"]);
    expect(all.every((r) => r.verified)).toBe(true);
    expect(got.find((r) => r.payload.type === "reservation.committed")!.payload.data).toMatchObject({ reservation_id: rid, items: [expect.objectContaining({ sku, quantity: 2 })] });
    expect(got.find((r) => r.payload.type === "import.completed")!.payload.data).toMatchObject({ import_id: importId, accepted: 1, rejected: 0 });
    expect(got.find((r) => r.payload.type === "stock.oversold")!.payload.data).toMatchObject({ sku, location: "loc-us-east", units: 1, cause: "recount", seq: 41 });
  });

  it("promotion.started and promotion.ended at the boundaries, from the promotion clock", async () => {
    const { name } = await register("ok", ["promotion.started", "promotion.ended"]);
    const [sku] = await makeSkus([10]);
    const start = Date.now() + 1_500;
    const promoId = uid("promo-wh").toLowerCase();
    const res = await json("POST", "/admin/promotions", {
      id: promoId, name: "Flash", starts_at: new Date(start).toISOString(), ends_at: new Date(start + 1_500).toISOString(),
      target: { type: "skus", values: [sku] }, value: { type: "percent_off", bps: 1000 },
    }, admin());
    expect(res.status, await res.clone().text()).toBe(201);
    const got = await waitForDeliveries(name, (r) => types(r).includes("promotion.ended"), 20_000);
    expect(types(got)).toEqual(["promotion.started", "promotion.ended"]);
    expect(got[0]!.payload.data).toMatchObject({ id: promoId, name: "Flash" });
    expect(Date.parse(got[0]!.payload.timestamp)).toBe(start);
  });
});

describe("delivery failures", () => {
  it("a failing endpoint exhausts its retries into the dead-letter queue, is disabled with a reason, and a replay after the fix delivers the same webhook-id", async () => {
    const failing = await register("fail", ["import.completed"]);
    const healthy = await register("ok", ["import.completed"]);
    const importOnce = async () => {
      const pid = uid("p-dl").toLowerCase();
      const line = JSON.stringify({ id: pid, slug: pid, title: "DL", brand: "Imp", category_id: "cat-electronics", variants: [{ sku: uid("SKU-DL"), prices: { USD: 500 } }] });
      const res = await call("/admin/import", { method: "POST", headers: admin({ "content-type": "application/x-ndjson" }), body: `${line}\n` });
      expect(res.status).toBe(201);
    };
    await importOnce();
    // The healthy endpoint is not held back by the failing one.
    await waitForDeliveries(healthy.name, (r) => r.length === 1);
    // 6 attempts (the queue's max_retries + 1), then the dead-letter queue.
    const failed = await waitForDeliveries(failing.name, (r) => r.length >= 6);
    expect(new Set(failed.map((r) => r.id)).size).toBe(1);
    const letter = await vi.waitFor(async () => {
      const dl = await (await call("/admin/events/dead-letters", { headers: admin() })).json<{ items: { id: string; body: { type: string; endpoint_id: string } }[] }>();
      const mine = dl.items.find((d) => d.body.type === "webhook.deliver" && d.body.endpoint_id === failing.endpoint.id);
      if (!mine) throw new Error("no dead letter yet");
      return mine;
    }, { timeout: 15_000, interval: 200 });
    let log = await (await call(`/admin/webhooks/${failing.endpoint.id}/deliveries`, { headers: admin() })).json<Log>();
    expect(log.failed).toBe(1);
    expect(log.attempts.length).toBe(6);

    // Two more failures (a second event) reach WEBHOOK_DISABLE_AFTER = 8 consecutive failures.
    await importOnce();
    const endpoint = await vi.waitFor(async () => {
      const e = await (await call(`/admin/webhooks/${failing.endpoint.id}`, { headers: admin() })).json<Endpoint>();
      if (e.status !== "disabled") throw new Error(`still ${e.status}`);
      return e;
    }, { timeout: 15_000, interval: 200 });
    expect(endpoint.disabled_reason).toBe("8 consecutive failed deliveries; last: HTTP 500");
    expect(endpoint.consecutive_failures).toBe(8);

    // The operator fixes the receiver, re-enables the endpoint and replays the dead letter: same webhook-id.
    const fixed = await json("PATCH", `/admin/webhooks/${failing.endpoint.id}`, { url: `${RECEIVER}/hook/ok/${failing.name}`, status: "active" }, admin());
    expect(fixed.status).toBe(200);
    const replay = await json("POST", "/admin/events/dead-letters/replay", { ids: [letter.id] }, admin());
    expect(replay.status).toBe(200);
    const after = await waitForDeliveries(failing.name, (r) => r.some((x) => x.status === 204));
    expect(after.find((x) => x.status === 204)!.id).toBe(failed[0]!.id);
    log = await (await call(`/admin/webhooks/${failing.endpoint.id}/deliveries`, { headers: admin() })).json<Log>();
    expect(log.attempts[0]).toMatchObject({ ok: true, status_code: 204 });
  });

  it("a slow endpoint does not delay another endpoint's delivery of the same event", async () => {
    const slow = await register("slow", ["import.completed"]);
    const fast = await register("ok", ["import.completed"]);
    const pid = uid("p-slow").toLowerCase();
    const line = JSON.stringify({ id: pid, slug: pid, title: "Slow", brand: "Imp", category_id: "cat-electronics", variants: [{ sku: uid("SKU-SL"), prices: { USD: 500 } }] });
    const res = await call("/admin/import", { method: "POST", headers: admin({ "content-type": "application/x-ndjson" }), body: `${line}\n` });
    expect(res.status).toBe(201);
    const [first] = await waitForDeliveries(slow.name, (r) => r.length >= 1);
    const [quick] = await waitForDeliveries(fast.name, (r) => r.length >= 1);
    // The slow receiver holds its request 5 s (the timeout is 1.5 s); the fast one got the event meanwhile.
    expect(Math.abs(quick!.at - first!.at)).toBeLessThan(1_000);
    const log = await vi.waitFor(async () => {
      const l = await (await call(`/admin/webhooks/${slow.endpoint.id}/deliveries`, { headers: admin() })).json<Log>();
      if (l.attempts.length === 0) throw new Error("no attempt logged yet");
      return l;
    }, { timeout: 10_000 });
    expect(log.attempts.at(-1)!.error).toMatch(/no answer within 1500 ms/);
  });
});
