import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { buildApp } from "../src/app";
import { guardEnv } from "../src/lib/guarded-env";
import { stockSaturation } from "../src/lib/load-shed";
import { insertProduct } from "./helpers/catalog-fixtures";
import { BASE, call, expectProblem } from "./helpers/http";

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
