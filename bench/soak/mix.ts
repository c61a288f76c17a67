/**
 * The soak's request classes. Each class can be driven alone (`--only <class>`) to find which kind of traffic
 * makes the runtime grow; the full soak draws them with the weights below.
 */
export type Req = { kind: string; url: string; init?: RequestInit; shopper?: string };

const ADMIN = { authorization: "Bearer dev-admin-token" };
export const STOREFRONT = { authorization: "Bearer dev-storefront-key" };
const AFFILIATE = { authorization: "Bearer demo-affiliate-key" };
/** The shopper pool of the reservation class (each shopper has its own hoarding-cap object). */
export const SHOPPERS = 50;
const LOCATIONS = ["loc-us-east", "loc-us-west", "loc-eu-central", "loc-ap-south"];

const rand = (n: number) => Math.floor(Math.random() * n);
const junk = (n: number) => Array.from({ length: n }, () => "abcdefghijklmnopqrstuvwxyz0123456789"[rand(36)]).join("");
const ip = () => `10.${rand(256)}.${rand(256)}.${rand(256)}`;
const randomBearer = () => ({ authorization: `Bearer ${crypto.randomUUID()}${junk(rand(200))}`, "cf-connecting-ip": "198.51.100.99" });

export function makeMix(products: number) {
  const pid = (i: number) => `p-${String(1 + (i % products)).padStart(6, "0")}`;
  const sku = (i: number) => `SKU-${String(1 + (i % products)).padStart(6, "0")}-1`;

  const classes: Record<string, (i: number) => Req> = {
    /** Valid catalog reads from a few shoppers: products, listings, search, categories, affiliate feed, recommendations. */
    read: (i) => {
      const reads: Req[] = [
        { kind: "read", url: `/v1/products/${pid(rand(products))}` },
        { kind: "read", url: `/v1/products/${pid(rand(products))}?currency=EUR&locale=de` },
        { kind: "read", url: `/v1/products?category=electronics&sort=price_asc&limit=20` },
        { kind: "read", url: `/v1/search?q=${["wireless", "shoe", "lamp", "trail", "cotton"][rand(5)]}` },
        { kind: "read", url: `/v1/categories` },
        { kind: "read", url: `/v1/feeds/products?limit=50`, init: { headers: AFFILIATE } },
        { kind: "read", url: `/v1/products/${pid(rand(products))}/recommendations?intent=related` },
      ];
      return reads[i % reads.length]!;
    },
    /** Live availability of real SKUs (uncached, fans out to the stock shards). */
    availability: () => ({ kind: "availability", url: `/v1/availability?skus=${sku(rand(products))},${sku(rand(products))}` }),
    /** Hostile reads without credentials, each from a new IP: junk queries, control characters, NUL, 60 brands, overlong values, bookmarks. */
    hostile: (i) => {
      const h = { headers: { "cf-connecting-ip": ip() } };
      const hostile: Req[] = [
        { kind: "hostile", url: `/v1/products/${pid(i)}?${junk(8)}=${junk(1500)}`, init: h },
        { kind: "hostile", url: `/v1/products?category=a%0A${junk(6)}`, init: h },
        { kind: "hostile", url: `/v1/search?brand=${junk(4)}%00${junk(4)}&q=${junk(5)}`, init: h },
        { kind: "hostile", url: `/v1/search?q=${junk(8)}&brand=${Array.from({ length: 60 }, () => junk(6)).join(",")}`, init: h },
        { kind: "hostile", url: `/v1/search?q=${junk(8)}`, init: h },
        { kind: "hostile", url: `/v1/products/${junk(90)}`, init: h },
        { kind: "hostile", url: `/v1/products/${pid(i)}?q=${"x".repeat(9000)}`, init: h },
        { kind: "hostile", url: `/v1/products/${pid(i)}`, init: { headers: { "x-d1-bookmark": "first-primary", "cf-connecting-ip": ip() } } },
        { kind: "hostile", url: `/v1/availability?skus=${Array.from({ length: 20 }, () => junk(10)).join(",")}`, init: h },
      ];
      return hostile[i % hostile.length]!;
    },
    /**
     * The same hostile requests from a fixed set of 50 (same junk, same IPs): against `hostile`, it tells growth per
     * distinct key stored from growth per request.
     */
    "hostile-fixed": (i) => {
      const k = i % 50;
      const fixed = (n: number, salt: number) => Array.from({ length: n }, (_, j) => "abcdefghijklmnopqrstuvwxyz0123456789"[(k * 7 + j * 13 + salt) % 36]).join("");
      const h = { headers: { "cf-connecting-ip": `10.9.${k}.1` } };
      const reqs: Req[] = [
        { kind: "hostile-fixed", url: `/v1/products/${pid(k)}?${fixed(8, 1)}=${fixed(1500, 2)}`, init: h },
        { kind: "hostile-fixed", url: `/v1/products?category=a%0A${fixed(6, 3)}`, init: h },
        { kind: "hostile-fixed", url: `/v1/search?brand=${fixed(4, 4)}%00${fixed(4, 5)}&q=${fixed(5, 6)}`, init: h },
        { kind: "hostile-fixed", url: `/v1/search?q=${fixed(8, 7)}&brand=${Array.from({ length: 60 }, (_, b) => fixed(6, b)).join(",")}`, init: h },
        { kind: "hostile-fixed", url: `/v1/search?q=${fixed(8, 8)}`, init: h },
        { kind: "hostile-fixed", url: `/v1/products/${fixed(90, 9)}`, init: h },
        { kind: "hostile-fixed", url: `/v1/products/${pid(k)}?q=${"x".repeat(9000)}`, init: h },
        { kind: "hostile-fixed", url: `/v1/products/${pid(k)}`, init: { headers: { "x-d1-bookmark": "first-primary", "cf-connecting-ip": `10.9.${k}.2` } } },
        { kind: "hostile-fixed", url: `/v1/availability?skus=${Array.from({ length: 20 }, (_, b) => fixed(10, b)).join(",")}`, init: h },
      ];
      return reqs[i % reqs.length]!;
    },
    /**
     * Only new search terms (each a new Cache API key, fresh and last-good copies), from a new IP each: isolates what
     * storing new cache entries costs the local runtime, against `hostile-fixed`, which stores nothing new.
     */
    "search-new": () => ({ kind: "search-new", url: `/v1/search?q=${junk(8)}`, init: { headers: { "cf-connecting-ip": ip() } } }),
    /** A new random bearer token per request on every keyed route class (feed, reserve, click, recommendations, product). */
    bearer: (i) => {
      const bearer = randomBearer();
      const reqs: Req[] = [
        { kind: "bearer", url: `/v1/feeds/products?since=${i}`, init: { headers: bearer } },
        { kind: "bearer", url: `/v1/reservations`, init: { method: "POST", headers: { ...bearer, "content-type": "application/json", "idempotency-key": junk(12) }, body: `{"items":[{"sku":"${junk(20)}","quantity":1}]}` } },
        { kind: "bearer", url: `/r/${junk(10)}/${junk(10)}`, init: { headers: bearer, redirect: "manual" } },
        { kind: "bearer", url: `/v1/products/${pid(i)}/recommendations?intent=related&exclude=${junk(300)}`, init: { headers: bearer } },
        { kind: "bearer", url: `/v1/availability?skus=${sku(i)}`, init: { headers: bearer } },
      ];
      return reqs[i % reqs.length]!;
    },
    /** A reservation of one unit from a pool of shoppers; the runner then commits every other one and releases the rest. */
    reserve: (i) => {
      const shopper = `shopper-${i % SHOPPERS}`;
      return {
        kind: "reserve",
        url: "/v1/reservations",
        shopper,
        init: {
          method: "POST",
          headers: { ...STOREFRONT, "content-type": "application/json", "idempotency-key": `soak-${i}-${junk(6)}`, "x-shopper-id": shopper, "cf-connecting-ip": "198.51.100.120" },
          body: JSON.stringify({ items: [{ sku: sku(rand(products)), quantity: 1 }], ttl_seconds: 60 }),
        },
      };
    },
    /** Admin product writes (D1 batch + outbox + queue event + KV refresh + purge). */
    admin: (i) => {
      const id = `p-soak-${i}`;
      const body = { slug: id, title: `Soak product ${i}`, brand: "Soak", category_id: "cat-electronics", variants: [{ sku: `SOAK-${i}`, title: "One", prices: { USD: 1000 + (i % 500) } }] };
      return { kind: "admin", url: `/admin/products/${id}`, init: { method: "PUT", headers: { ...ADMIN, "content-type": "application/json" }, body: JSON.stringify(body) } };
    },
    /** Imports of 5 new products each. */
    import: (i) => {
      const lines = Array.from({ length: 5 }, (_, k) => JSON.stringify({ id: `p-soakimp-${i}-${k}`, slug: `p-soakimp-${i}-${k}`, title: `Imported ${i}/${k}`, brand: "SoakImport", category_id: "cat-electronics", variants: [{ sku: `SOAKIMP-${i}-${k}`, title: "One", prices: { USD: 999 } }] }));
      return { kind: "import", url: "/admin/import", init: { method: "POST", headers: { ...ADMIN, "content-type": "application/x-ndjson" }, body: lines.join("\n") } };
    },
    /** Recommendation rebuild requests. */
    rebuild: () => ({ kind: "rebuild", url: "/admin/recommendations/rebuild", init: { method: "POST", headers: ADMIN } }),
    /** Stock adjustments of 20 SKUs each: every applied line sends a stock event through the outbox and the queue. */
    queue: (i) => {
      const lines = Array.from({ length: 20 }, (_, k) => ({ sku: sku(rand(products)), location: LOCATIONS[k % 4]!, delta: 1, reason: "soak restock", event_id: `soak-${i}-${k}-${junk(6)}` }));
      return { kind: "queue", url: "/admin/stock/adjustments", init: { method: "POST", headers: { ...ADMIN, "content-type": "application/json" }, body: JSON.stringify(lines) } };
    },
  };

  /** Per 100 requests of the full soak. */
  const weights: [string, number][] = [
    ["hostile", 24], ["bearer", 16], ["read", 38], ["availability", 6], ["reserve", 10], ["admin", 2], ["queue", 1], ["import", 2], ["rebuild", 1],
  ];
  return { classes, weights };
}
