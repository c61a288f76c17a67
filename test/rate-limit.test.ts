import { createExecutionContext, env, listDurableObjectIds, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { parseLimits, parseOverrides, routeClass, UNVERIFIED_LIMIT } from "../src/lib/rate-limit";
import { seedApiKeys } from "./helpers/api-keys";
import { call, expectProblem, json, STOREFRONT_KEY, uid } from "./helpers/http";

beforeAll(async () => {
  await seedApiKeys(env.DB);
});

const q = (s = "") => new URLSearchParams(s);

describe("rate-limit configuration", () => {
  it("classifies routes: browse, search, reserve (creating holds only), feed; admin and health are never limited", () => {
    expect(routeClass("GET", "/v1/products/p-1", q())).toBe("browse");
    expect(routeClass("GET", "/v1/products", q("q=shoe"))).toBe("search");
    expect(routeClass("POST", "/v1/reservations", q())).toBe("reserve");
    expect(routeClass("POST", "/v1/reservations/r-1/commit", q())).toBeUndefined();
    expect(routeClass("DELETE", "/v1/reservations/r-1", q())).toBeUndefined();
    expect(routeClass("GET", "/v1/feeds/products", q())).toBe("feed");
    expect(routeClass("PUT", "/admin/products/p-1", q())).toBeUndefined();
    expect(routeClass("GET", "/health", q())).toBeUndefined();
    expect(routeClass("GET", "/v1/availability", q("skus=a,b"))).toBe("strong");
    expect(routeClass("GET", "/v1/products/p-1", q(), new Headers({ "x-d1-bookmark": "first-primary" }))).toBe("strong");
  });

  it("parses limits and per-client overrides, ignoring malformed parts", () => {
    const l = parseLimits("browse=7/10, search=oops, reserve=3/60");
    expect(l.browse).toEqual({ limit: 7, period: 10 });
    expect(l.search).toEqual({ limit: 500, period: 10 });
    expect(l.reserve).toEqual({ limit: 3, period: 60 });
    const o = parseOverrides("ip:1.2.3.4 browse=5/10 bogus=1/1; key:abc reserve=2/60;;");
    expect(o.get("ip:1.2.3.4")).toEqual({ browse: { limit: 5, period: 10 } });
    expect(o.get("key:abc")).toEqual({ reserve: { limit: 2, period: 60 } });
  });
});

describe("per-client rate limits", () => {
  it("an exact token bucket admits exactly the limit under a concurrent burst, then 429 with Retry-After and RateLimit-*", async () => {
    const ip = { "cf-connecting-ip": "198.51.100.7" };
    const responses = await Promise.all(Array.from({ length: 12 }, () => call("/v1/products/p-rl-missing", { headers: ip })));
    const limited = responses.filter((r) => r.status === 429);
    expect(limited.length).toBe(7);
    const admitted = responses.find((r) => r.status !== 429)!;
    expect(admitted.headers.get("RateLimit-Limit")).toBe("5");
    expect(admitted.headers.get("RateLimit-Policy")).toBe("5;w=10");
    const res = limited[0]!;
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect(res.headers.get("RateLimit-Limit")).toBe("5");
    expect(res.headers.get("RateLimit-Remaining")).toBe("0");
    expect(Number(res.headers.get("RateLimit-Reset"))).toBeGreaterThan(0);
    await Promise.all(responses.filter((r) => r !== res).map((r) => r.body?.cancel()));
    const p = await expectProblem(res, 429);
    expect(p.route_class).toBe("browse");
  });

  it("limits one client without touching others: another IP, and the same IP on an unlimited route", async () => {
    const other = await call("/v1/products/p-rl-missing", { headers: { "cf-connecting-ip": "203.0.113.99" } });
    expect(other.status).not.toBe(429);
    const health = await call("/health", { headers: { "cf-connecting-ip": "198.51.100.7" } });
    expect(health.status).toBe(200);
    const commit = await json("POST", "/v1/reservations/r-missing/commit", {}, { "cf-connecting-ip": "198.51.100.7" });
    expect(commit.status).not.toBe(429);
    await Promise.all([other.body?.cancel(), health.body?.cancel(), commit.body?.cancel()]);
  });

  it("counts a verified key by its key, not its IP; an unknown key counts against its IP", async () => {
    const ip = { "cf-connecting-ip": "198.51.100.7" };
    const unknownKey = await call("/v1/products/p-rl-missing", { headers: { ...ip, authorization: `Bearer ${uid("made-up")}` } });
    await expectProblem(unknownKey, 429);
    const withKey = await call("/v1/products/p-rl-missing", { headers: { ...ip, authorization: `Bearer ${STOREFRONT_KEY}` } });
    expect(withKey.status).not.toBe(429);
    await withKey.body?.cancel();
  });

  it("1,000 requests, each with a new random bearer, are limited as one client, and no ClientGuard object is made for them", async () => {
    const ip = { "cf-connecting-ip": "203.0.113.77" };
    const app = buildApp();
    const reserve = (key: string) =>
      new Request("http://x/v1/reservations", { method: "POST", headers: { ...ip, "content-type": "application/json", authorization: `Bearer ${key}` }, body: "{}" });
    // An empty body gets the storefront a 400 once its key is through the limiter: nothing is reserved.
    const storefront = () => app.fetch(reserve(STOREFRONT_KEY), env, createExecutionContext());
    const first = await storefront();
    expect(first.status).toBe(400);
    await first.body?.cancel();
    const guardsBefore = (await listDurableObjectIds(env.CLIENT_GUARD)).length;
    const statuses: number[] = [];
    for (let i = 0; i < 1000; i += 50) {
      const ctx = createExecutionContext();
      const batch = await Promise.all(
        Array.from({ length: 50 }, async () => {
          const res = await app.fetch(reserve(crypto.randomUUID()), env, ctx);
          await res.body?.cancel();
          return res.status;
        }),
      );
      await waitOnExecutionContext(ctx);
      statuses.push(...batch);
    }
    const admitted = statuses.filter((s) => s !== 429);
    // Admitted ones reach the handler and are refused there (401): no key means nothing to serve.
    expect(admitted.every((s) => s === 401)).toBe(true);
    expect(admitted.length).toBeGreaterThan(0);
    // The binding counts in fixed windows: a run that straddles a window boundary gets the limit twice at most.
    expect(admitted.length).toBeLessThanOrEqual(2 * UNVERIFIED_LIMIT.limit);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(1000 - 2 * UNVERIFIED_LIMIT.limit);
    expect((await listDurableObjectIds(env.CLIENT_GUARD)).length).toBe(guardsBefore);
    // The IP's budget is spent, yet the storefront key already verified from that address keeps its own budget.
    const real = await storefront();
    expect(real.status).toBe(400);
    await real.body?.cancel();
  });

  it("an answer given before the body mattered (401 unknown key, 429, 404) still reads the request body, so the connection stays usable", async () => {
    const app = buildApp();
    // With its length declared, as a client sends it (the body limit then checks the header and leaves the body be).
    const post = (path: string, headers: Record<string, string>) => {
      const body = JSON.stringify({ items: [{ sku: uid("SKU"), quantity: 1 }] });
      return new Request(`http://x${path}`, { method: "POST", headers: { "content-type": "application/json", "content-length": String(body.length), "cf-connecting-ip": "203.0.113.91", ...headers }, body });
    };
    const outcomes: { status: number; bodyUsed: boolean }[] = [];
    for (const req of [
      post("/v1/reservations", { authorization: `Bearer ${crypto.randomUUID()}` }),
      post("/v1/no-such-route", {}),
      ...Array.from({ length: UNVERIFIED_LIMIT.limit + 5 }, () => post("/v1/reservations", { authorization: `Bearer ${crypto.randomUUID()}` })),
    ]) {
      const res = await app.fetch(req, env, createExecutionContext());
      await res.body?.cancel();
      outcomes.push({ status: res.status, bodyUsed: req.bodyUsed });
    }
    expect(outcomes[0]!.status).toBe(401);
    expect(outcomes[1]!.status).toBe(404);
    expect(outcomes.some((o) => o.status === 429)).toBe(true);
    expect(outcomes.filter((o) => !o.bodyUsed)).toEqual([]);
  });

  it("strong reads (availability) have their own, tighter class, enforced by RL_STRONG", async () => {
    const refusing = { ...env, RL_STRONG: { limit: async () => ({ success: false }) } } as unknown as Env;
    const res = await viaApp(new Request("http://x/v1/availability?skus=SKU-RL", { headers: { "cf-connecting-ip": "203.0.113.62" } }), refusing);
    expect(res.headers.get("RateLimit-Policy")).toBe("100;w=10");
    const p = await expectProblem(res, 429);
    expect(p.route_class).toBe("strong");
  });

  it("limits hold creation per client (reserve class) before any stock is touched", async () => {
    const ip = { "cf-connecting-ip": "198.51.100.8" };
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await json("POST", "/v1/reservations", { items: [{ sku: "SKU-RL", quantity: 1 }] }, ip);
      statuses.push(res.status);
      await res.body?.cancel();
    }
    expect(statuses.slice(0, 3).every((s) => s !== 429)).toBe(true);
    expect(statuses.slice(3)).toEqual([429, 429]);
  });

  it("the Workers Rate Limiting binding enforces its configured search limit (500 per 10 s) per key", async () => {
    const key = `search:ip:${uid("rl")}`;
    const outcomes = [];
    for (let i = 0; i < 510; i++) outcomes.push((await env.RL_SEARCH.limit({ key })).success);
    expect(outcomes.slice(0, 500).every(Boolean)).toBe(true);
    expect(outcomes.slice(500).some((ok) => !ok)).toBe(true);
    expect((await env.RL_SEARCH.limit({ key: `${key}-other` })).success).toBe(true);
  });

  it("a binding refusal becomes 429 with Retry-After = period and RateLimit-* headers", async () => {
    const refusing = { ...env, RL_SEARCH: { limit: async () => ({ success: false }) } } as unknown as Env;
    const res = await viaApp(new Request("http://x/v1/products?q=flash", { headers: { "cf-connecting-ip": "203.0.113.60" } }), refusing);
    expect(res.headers.get("Retry-After")).toBe("10");
    expect(res.headers.get("RateLimit-Limit")).toBe("500");
    expect(res.headers.get("RateLimit-Policy")).toBe("500;w=10");
    expect(res.headers.get("RateLimit-Remaining")).toBe("0");
    const p = await expectProblem(res, 429);
    expect(p.route_class).toBe("search");
  });

  it("a failing limiter lets traffic through rather than taking the API down", async () => {
    const broken = { ...env, RL_BROWSE: { limit: async () => Promise.reject(new Error("limiter down")) } } as unknown as Env;
    const res = await viaApp(new Request("http://x/v1/products/p-none", { headers: { "cf-connecting-ip": "203.0.113.61" } }), broken);
    expect(res.status).not.toBe(429);
    expect(res.status).toBeLessThan(500);
    await res.body?.cancel();
  });
});

async function viaApp(req: Request, e: Env): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await buildApp().fetch(req, e, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}
