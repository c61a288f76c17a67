import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { buildApp } from "../src/app";
import { productCacheUrls } from "../src/catalog/cache-keys";
import { loadProductDocument, productKey, type ProductDocument } from "../src/catalog/document";
import { signBookmark, verifyBookmark } from "../src/catalog/bookmark";
import { tieredRead } from "../src/catalog/read-path";
import { ApiError } from "../src/lib/errors";
import { insertProduct, touchProduct } from "./helpers/catalog-fixtures";
import { BASE, call, expectProblem } from "./helpers/http";

type ProductView = {
  id: string;
  version: number;
  title: string;
  currency: string;
  locale: string;
  variants: { sku: string; options: Record<string, string>; price: { amount: number; currency: string } | null; availability: { status: string; quantity: string } }[];
};

async function purgeEdge(id: string) {
  await Promise.all(productCacheUrls(id, env).map((u) => caches.default.delete(u)));
}

async function kvDoc(id: string) {
  return env.CATALOG_KV.get<ProductDocument>(productKey(id), "json");
}

/** Calls the app with swapped bindings (a failing origin), sharing this colo's Cache API with SELF. */
async function callWith(bindings: Partial<Env>, path: string, init: RequestInit = {}) {
  const ctx = createExecutionContext();
  const res = await buildApp().fetch(new Request(BASE + path, init), { ...env, ...bindings } as Env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const throwingD1 = new Proxy({} as D1Database, {
  get() {
    throw new Error("D1 is down");
  },
});
const throwingKv = { get: () => Promise.reject(new Error("KV is down")) } as unknown as KVNamespace;
const hangingKv = { get: () => new Promise(() => {}) } as unknown as KVNamespace;
const hangingD1 = { withSession: () => ({ batch: () => new Promise(() => {}), prepare: () => ({ bind: () => ({}) }), getBookmark: () => null }) } as unknown as D1Database;

describe("GET /v1/products/:id through the tiers", () => {
  it("answers from d1 first, then from the edge, then (after an edge purge) from kv", async () => {
    const p = await insertProduct(env.DB);
    const first = await call(`/v1/products/${p.id}?currency=USD&locale=en`);
    expect(first.status).toBe(200);
    expect(first.headers.get("x-cache-tier")).toBe("d1");
    expect(first.headers.get("server-timing")).toMatch(/d1;dur=/);
    const body = await first.json<ProductView>();
    expect(body.id).toBe(p.id);
    expect(body.variants.map((v) => v.sku)).toEqual(p.variants.map((v) => v.sku));
    expect(body.variants[0]!.options).toEqual(p.variants[0]!.options);

    await vi.waitFor(async () => expect((await call(`/v1/products/${p.id}?currency=USD&locale=en`)).headers.get("x-cache-tier")).toBe("edge"));
    const edge = await call(`/v1/products/${p.id}?locale=en&currency=USD&utm_source=junk`);
    expect(edge.headers.get("x-cache-tier")).toBe("edge");
    expect(edge.headers.get("server-timing")).toMatch(/edge;dur=/);
    expect(await edge.json()).toEqual(body);

    await vi.waitFor(async () => expect(await kvDoc(p.id)).not.toBeNull());
    await purgeEdge(p.id);
    const kv = await call(`/v1/products/${p.id}?currency=USD&locale=en`);
    expect(kv.headers.get("x-cache-tier")).toBe("kv");
    expect(await kv.json()).toEqual(body);
  });

  it("sets ETag, Cache-Control with s-maxage and stale-while-revalidate, Cache-Tag with product and categories", async () => {
    const p = await insertProduct(env.DB, { categoryId: "cat-headphones" });
    const res = await call(`/v1/products/${p.id}`);
    expect(res.headers.get("etag")).toMatch(/^".+v1\.s0\.USD\.en"$/);
    const cc = res.headers.get("cache-control")!;
    expect(cc).toMatch(/s-maxage=\d+/);
    expect(cc).toMatch(/stale-while-revalidate=\d+/);
    expect(res.headers.get("cache-tag")!.split(",")).toEqual([p.id, "cat-electronics", "cat-headphones"]);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
  });

  it("answers 304 to a matching If-None-Match on every tier, 200 to a stale one", async () => {
    const p = await insertProduct(env.DB);
    const first = await call(`/v1/products/${p.id}`);
    const etag = first.headers.get("etag")!;
    const fromD1 = await call(`/v1/products/${p.id}?currency=GBP`, { headers: { "if-none-match": etag } });
    expect(fromD1.status).toBe(200); // another variant, another validator
    await vi.waitFor(async () => {
      const res = await call(`/v1/products/${p.id}`, { headers: { "if-none-match": etag } });
      expect(res.status).toBe(304);
      expect(res.headers.get("x-cache-tier")).toBe("edge");
      expect(res.headers.get("etag")).toBe(etag);
      expect(await res.text()).toBe("");
    });
    const weak = await call(`/v1/products/${p.id}`, { headers: { "if-none-match": `"other", W/${etag}` } });
    expect(weak.status).toBe(304);
    const other = await call(`/v1/products/${p.id}`, { headers: { "if-none-match": '"nope"' } });
    expect(other.status).toBe(200);
  });

  it("a changed document gets a new ETag once the edge copy is purged", async () => {
    const p = await insertProduct(env.DB);
    const before = await call(`/v1/products/${p.id}`);
    const etag = before.headers.get("etag")!;
    await touchProduct(env.DB, p.id, { title: "Renamed" });
    await env.CATALOG_KV.delete(productKey(p.id));
    await purgeEdge(p.id);
    const after = await call(`/v1/products/${p.id}`, { headers: { "if-none-match": etag } });
    expect(after.status).toBe(200);
    expect(after.headers.get("etag")).not.toBe(etag);
    expect((await after.json<ProductView>()).title).toBe("Renamed");
  });

  it("never serves a KV copy older than a version already shown", async () => {
    const p = await insertProduct(env.DB);
    const v1 = await loadProductDocument(env.DB, p.id);
    await touchProduct(env.DB, p.id, { title: "Version two" });
    const shown = await call(`/v1/products/${p.id}`);
    expect((await shown.json<ProductView>()).version).toBe(2);
    // A lagging KV replica still holds version 1, and the edge copy is gone.
    await vi.waitFor(async () => expect((await kvDoc(p.id))?.version).toBe(2));
    await env.CATALOG_KV.put(productKey(p.id), JSON.stringify(v1));
    await purgeEdge(p.id);
    const res = await call(`/v1/products/${p.id}`);
    expect(res.headers.get("x-cache-tier")).toBe("d1");
    expect((await res.json<ProductView>()).version).toBe(2);
  });

  it("reads through to D1 when the client sends a D1 bookmark the API signed (read-your-writes)", async () => {
    const p = await insertProduct(env.DB);
    await call(`/v1/products/${p.id}`);
    const session = env.DB.withSession("first-primary");
    await session.prepare("UPDATE products SET title = 'Fresh', version = version + 1 WHERE id = ?").bind(p.id).run();
    const expires = Date.now() + 30_000;
    const bookmark = await signBookmark(env, session.getBookmark()!, p.id, expires);
    const res = await call(`/v1/products/${p.id}`, { headers: { "x-d1-bookmark": bookmark } });
    expect(res.headers.get("x-cache-tier")).toBe("d1");
    expect((await res.json<ProductView>()).title).toBe("Fresh");
    // The bookmark handed back keeps the expiry it was read with: chained reads cannot extend the bypass.
    const back = res.headers.get("x-d1-bookmark")!;
    expect(back.split("~")[2]).toBe(String(expires));
    expect(await verifyBookmark(env, back, p.id, Date.now())).toBeTruthy();
  });

  it("ignores a bookmark the API did not sign, signed for another product, or expired: the cache tiers answer", async () => {
    const p = await insertProduct(env.DB);
    const other = await insertProduct(env.DB);
    await call(`/v1/products/${p.id}`);
    await vi.waitFor(async () => expect((await call(`/v1/products/${p.id}`)).headers.get("x-cache-tier")).toBe("edge"));
    const raw = env.DB.withSession("first-primary").getBookmark() ?? "00000001-00000001-00000001-0123456789abcdef0123456789abcdef";
    const signed = await signBookmark(env, raw, p.id, Date.now() + 30_000);
    const [, , expires, mac] = signed.split("~");
    const forged = [
      raw, // a plain D1 bookmark, as any client could send
      "x",
      `${raw}~${p.id}~${expires}~${mac!.slice(0, -2)}AA`, // tampered signature
      `${raw}~${p.id}~${Number(expires) + 1}~${mac}`, // expiry pushed out
      await signBookmark(env, raw, other.id, Date.now() + 30_000), // another product's
      await signBookmark(env, raw, p.id, Date.now() - 1), // expired
      "~".repeat(600),
    ];
    for (const bookmark of forged) {
      const res = await call(`/v1/products/${p.id}`, { headers: { "x-d1-bookmark": bookmark } });
      expect(res.status, bookmark).toBe(200);
      expect(res.headers.get("x-cache-tier"), bookmark).toBe("edge");
    }
  });

  it("a signed bookmark D1 refuses is read from the primary, never a 503", async () => {
    const p = await insertProduct(env.DB);
    const bogus = await signBookmark(env, "not-a-real-d1-bookmark", p.id, Date.now() + 30_000);
    // Local D1 takes any bookmark; production D1 refuses one it never issued, as this wrapper does.
    const refusing = (statement: string) => () => {
      throw new Error(`D1_ERROR: ${statement}: invalid bookmark`);
    };
    const strictD1 = new Proxy(env.DB, {
      get(target, key) {
        if (key === "withSession") {
          return (constraint: string) =>
            constraint.startsWith("first-") ? target.withSession(constraint) : ({ prepare: refusing("prepare"), batch: refusing("batch"), getBookmark: () => null } as unknown as D1DatabaseSession);
        }
        const value = Reflect.get(target, key) as unknown;
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const res = await callWith({ DB: strictD1 }, `/v1/products/${p.id}`, { headers: { "x-d1-bookmark": bogus } });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get("x-cache-tier")).toBe("d1");
    expect((await res.json<ProductView>()).id).toBe(p.id);
  });

  it("unknown id is a 404 problem, an archived product is 410, a draft is 404", async () => {
    await expectProblem(await call("/v1/products/p-does-not-exist"), 404);
    const archived = await insertProduct(env.DB, { status: "archived" });
    await expectProblem(await call(`/v1/products/${archived.id}`), 410);
    const draft = await insertProduct(env.DB, { status: "draft" });
    await expectProblem(await call(`/v1/products/${draft.id}`), 404);
  });

  it("reports availability per variant with a status and a quantity bucket", async () => {
    const p = await insertProduct(env.DB, {
      base: 3,
      stockFor: (skus) => [
        { sku: skus[0]!, locationId: "loc-us-east", onHand: 30 },
        { sku: skus[0]!, locationId: "loc-eu-central", onHand: 12 },
        ...(skus[1] ? [{ sku: skus[1], locationId: "loc-eu-central", onHand: 3 }] : []),
      ],
    });
    expect(p.variants.length).toBeGreaterThan(1);
    const body = await (await call(`/v1/products/${p.id}`)).json<ProductView>();
    expect(body.variants[0]!.availability).toEqual({ status: "in_stock", quantity: "21+" });
    if (p.variants.length > 1) expect(body.variants[1]!.availability).toEqual({ status: "low_stock", quantity: "1-5" });
    if (p.variants.length > 2) expect(body.variants[2]!.availability).toEqual({ status: "out_of_stock", quantity: "0" });
  });
});

describe("currency and locale selection", () => {
  it("uses ?currency=, else x-shopper-country, else Accept-Language, else the default; prices are never converted", async () => {
    const p = await insertProduct(env.DB);
    const price = (b: ProductView) => b.variants[0]!.price;
    const eur = await (await call(`/v1/products/${p.id}?currency=eur`)).json<ProductView>();
    expect(price(eur)).toEqual({ amount: p.variants[0]!.prices.EUR, currency: "EUR" });
    const gb = await (await call(`/v1/products/${p.id}`, { headers: { "x-shopper-country": "GB" } })).json<ProductView>();
    expect(price(gb)).toEqual({ amount: p.variants[0]!.prices.GBP, currency: "GBP" });
    const de = await call(`/v1/products/${p.id}`, { headers: { "accept-language": "de-AT,de;q=0.9,en;q=0.5" } });
    const deBody = await de.json<ProductView>();
    expect(deBody.currency).toBe("EUR");
    expect(deBody.locale).toBe("de");
    expect(deBody.title).toBe(p.translations.de!.title);
    expect(de.headers.get("content-language")).toBe("de");
    expect(de.headers.get("vary")).toMatch(/Accept-Language/);
    const plain = await (await call(`/v1/products/${p.id}`)).json<ProductView>();
    expect(plain.currency).toBe("USD");
    expect(plain.locale).toBe("en");
    // Explicit beats headers.
    const explicit = await (await call(`/v1/products/${p.id}?currency=USD&locale=fr`, { headers: { "accept-language": "de-DE", "x-shopper-country": "GB" } })).json<ProductView>();
    expect(explicit.currency).toBe("USD");
    expect(explicit.title).toBe(p.translations.fr!.title);
  });

  it("falls back to the default locale for unknown locales and to the default text without a translation", async () => {
    const p = await insertProduct(env.DB, { translations: { de: { title: "Nur Deutsch", description: "d" } } });
    const xx = await (await call(`/v1/products/${p.id}?locale=xx`)).json<ProductView>();
    expect(xx.locale).toBe("en");
    const fr = await call(`/v1/products/${p.id}?locale=fr`);
    expect(fr.headers.get("content-language")).toBe("en");
    expect((await fr.json<ProductView>()).title).toBe(p.title);
  });

  it("rejects an unsupported currency with a 400 problem", async () => {
    const p = await insertProduct(env.DB);
    const problem = await expectProblem(await call(`/v1/products/${p.id}?currency=JPY`), 400);
    expect(problem.detail).toContain("JPY");
    await expectProblem(await call(`/v1/products/${p.id}?currency=dollars`), 400);
  });
});

describe("a read in flight while its product changes", () => {
  it("does not put its older copy back into the edge cache after the consumer's KV write and purge", async () => {
    type Doc = { v: number };
    const cache = await caches.open(`race-${crypto.randomUUID()}`);
    const key = "https://cache.edgeshelf.internal/v1/products/p-race?currency=USD&locale=en";
    let kvNow: Doc = { v: 1 };
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const background: Promise<unknown>[] = [];
    const read = (stallKv: boolean) =>
      tieredRead<Doc>({
        request: new Request("http://x/v1/products/p-race"),
        cacheKey: key,
        waitUntil: (p) => background.push(p),
        // Another isolate for each read: no shared monotonic floor hides the stale copy.
        versionKey: `race-${crypto.randomUUID()}`,
        versionOf: (d) => ({ version: d.v, stock_seq: 0 }),
        kv: {
          read: async () => {
            const d = kvNow;
            if (stallKv) await gate;
            return d;
          },
          write: async () => undefined,
        },
        origin: async () => kvNow,
        render: (d) => ({ body: JSON.stringify(d), etag: `v${d.v}`, tags: [], version: { version: d.v, stock_seq: 0 } }),
        notFound: () => ApiError.notFound("x"),
        cache,
      });
    const inflight = read(true); // has read v1 from KV, then stalls
    await new Promise((r) => setTimeout(r, 20));
    kvNow = { v: 2 }; // the consumer: KV gets v2, then the product's URLs are purged
    await cache.delete(key);
    release();
    expect(await (await inflight).json()).toEqual({ v: 1 });
    await Promise.all(background);
    const after = await read(false);
    expect(await after.json()).toEqual({ v: 2 });
    expect(after.headers.get("x-cache-tier")).toBe("kv");
    // Still correct when nothing raced: the v2 copy stays and is served from the edge.
    await Promise.all(background);
    const hit = await read(false);
    expect(hit.headers.get("x-cache-tier")).toBe("edge");
    expect(await hit.json()).toEqual({ v: 2 });
  });
});

describe("stale-if-error", () => {
  it("serves the last cached copy with x-stale when KV and D1 throw, even after an edge purge", async () => {
    const p = await insertProduct(env.DB);
    const good = await call(`/v1/products/${p.id}`);
    const goodBody = await good.text();
    await vi.waitFor(async () => expect((await call(`/v1/products/${p.id}`)).headers.get("x-cache-tier")).toBe("edge"));
    await purgeEdge(p.id);

    const res = await callWith({ DB: throwingD1, CATALOG_KV: throwingKv }, `/v1/products/${p.id}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-stale")).toBe("true");
    expect(res.headers.get("warning")).toMatch(/^110 /);
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(await res.text()).toBe(goodBody);
  });

  it("bounds a hanging KV and D1 with timeouts and still serves the stale copy", async () => {
    const p = await insertProduct(env.DB);
    await call(`/v1/products/${p.id}`);
    await vi.waitFor(async () => expect((await call(`/v1/products/${p.id}`)).headers.get("x-cache-tier")).toBe("edge"));
    await purgeEdge(p.id);
    const started = Date.now();
    const res = await callWith({ DB: hangingD1, CATALOG_KV: hangingKv }, `/v1/products/${p.id}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-stale")).toBe("true");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("answers 503 when the origin fails and nothing was ever cached", async () => {
    const p = await insertProduct(env.DB);
    const res = await callWith({ DB: throwingD1, CATALOG_KV: throwingKv }, `/v1/products/${p.id}`);
    expect(res.status).toBe(503);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
    expect(res.headers.get("retry-after")).toBeTruthy();
  });

  it("still answers from KV when only D1 is down", async () => {
    const p = await insertProduct(env.DB);
    await call(`/v1/products/${p.id}`);
    await vi.waitFor(async () => expect(await kvDoc(p.id)).not.toBeNull());
    await purgeEdge(p.id);
    const res = await callWith({ DB: throwingD1 }, `/v1/products/${p.id}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-cache-tier")).toBe("kv");
    expect(res.headers.get("x-stale")).toBeNull();
  });
});
