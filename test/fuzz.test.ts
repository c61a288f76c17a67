import { createExecutionContext, env, listDurableObjectIds, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { BoundedMap, ISOLATE_ACCOUNTED_BUDGET_BYTES, isolateMemory } from "../src/lib/isolate-memory";
import { shardNameForSku } from "../src/stock/routing";
import { AFFILIATE_TEST_KEY, seedApiKeys } from "./helpers/api-keys";
import { ADMIN_TOKEN, BASE, call, STOREFRONT_KEY } from "./helpers/http";
import { makeSkus } from "./helpers/stock-fixtures";

/**
 * Thousands of malformed requests across every route of the app: random JSON, huge, negative and fractional
 * quantities, unicode, SQL and FTS5 syntax in `q`, overlong ids, wrong content types, bogus keys. No answer
 * may be a 5xx; every write-shaped request must be refused with a 4xx (body-less admin actions with the real admin
 * token excepted); stock and catalog must not move. The operator console is fuzzed again signed in as an admin,
 * so its pages and forms are reached past the sign-in redirect. Runs in ~20 s on an idle 2-core machine.
 */

const RUNS = 2000;
const CONCURRENCY = 24;

let skus: string[] = [];
let productIds: string[] = [];

beforeAll(async () => {
  await seedApiKeys(env.DB);
  skus = await makeSkus([5, { "loc-us-east": 3, "loc-eu-central": 4 }]);
  const rows = await env.DB.prepare("SELECT DISTINCT product_id FROM variants WHERE sku IN (?, ?)").bind(skus[0], skus[1]).all<{ product_id: string }>();
  productIds = rows.results.map((r) => r.product_id);
});

const ROUTES = buildApp()
  .routes.filter((r) => r.method !== "ALL" && !r.path.includes("*"))
  .map((r) => ({ method: r.method, path: r.path }))
  .filter((r, i, all) => all.findIndex((o) => o.method === r.method && o.path === r.path) === i);

const SQLISH = [
  "' OR 1=1 --",
  "\"; DROP TABLE products; --",
  "shoe\" OR \"1\"=\"1",
  "NEAR(a b, 2)",
  "title:shoe*",
  "^start AND OR NOT",
  "\"unterminated",
  "(((",
  "*",
  "a\u0000b",
  "%00",
  "SELECT * FROM api_keys",
  "💥🧨 ünïcödé ΩΣ 漢字",
  "\u202e\u200b",
  "x".repeat(3000),
];

const weirdString = fc.oneof(
  fc.constantFrom(...SQLISH),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.string({ minLength: 200, maxLength: 600 }),
);

const weirdNumber = fc.oneof(
  fc.constantFrom(-1, 0, 0.5, 1.5, -0.0001, 1e21, 9007199254740993, Number.MAX_SAFE_INTEGER, 1001, 100000),
  fc.double({ noNaN: true }),
  fc.integer({ min: -1_000_000, max: -1 }),
);

const pathId = fc.oneof(
  weirdString.map((s) => encodeURIComponent(s).slice(0, 2000)),
  fc.constantFrom("rsv_0_" + "0".repeat(32), "rsv_99999_zz", "p-000001", "..", "%2e%2e", "SKU-does-not-exist", "a".repeat(1500)),
);

/** A reservation body that is wrong in at least one way. */
const badReservation = fc.record({
  items: fc.oneof(
    fc.array(
      fc.record(
        {
          sku: fc.oneof(fc.constantFrom("__real__"), weirdString),
          quantity: fc.oneof(weirdNumber, fc.constant("1"), fc.constant(null)),
          location: weirdString,
        },
        { requiredKeys: ["sku", "quantity"] },
      ),
      { maxLength: 120 },
    ),
    fc.constant([]),
    weirdString,
  ),
  ttl_seconds: fc.oneof(weirdNumber, fc.constant(-5), fc.constant(99999)),
  currency: weirdString,
});

const rawBody = fc.oneof(
  fc.json({ maxDepth: 4 }),
  badReservation.map((b) => JSON.stringify(b)),
  fc.constantFrom("{", "[]", "null", "{\"items\":", "1e999", "\"str\"", "[".repeat(3000) + "]".repeat(3000), "{\"__proto__\":{\"admin\":true}}", ""),
  fc.string({ maxLength: 100 }),
);

const auth = fc.constantFrom<Record<string, string>>(
  {},
  { authorization: `Bearer ${STOREFRONT_KEY}` },
  { authorization: `Bearer ${AFFILIATE_TEST_KEY}` },
  { authorization: `Bearer ${ADMIN_TOKEN}` },
  { authorization: "Bearer ' OR 1=1 --" },
  { authorization: "Basic Zm9vOmJhcg==" },
  { authorization: `Bearer ${"k".repeat(300)}` },
);

const query = fc.dictionary(
  fc.constantFrom("q", "limit", "cursor", "currency", "locale", "sort", "category", "brand", "min_price", "max_price", "in_stock", "skus", "since", "format", "intent", "context", "key", "by_location"),
  fc.oneof(weirdString, weirdNumber.map(String)),
  { maxKeys: 4 },
);

const request = fc.record({
  route: fc.constantFrom(...ROUTES),
  id: pathId,
  realId: fc.boolean(),
  auth,
  query,
  body: rawBody,
  contentType: fc.constantFrom("application/json", "application/json", "application/json", "text/plain", "application/x-www-form-urlencoded", ""),
  ip: fc.ipV4(),
  // Header values must be ASCII on the wire (fetch refuses others), so unicode goes in paths, queries and bodies.
  idem: fc.oneof(fc.constant(undefined), fc.string({ unit: "binary-ascii", maxLength: 60 }).map((s) => s.replace(/[\x00-\x1f\x7f]/g, "")), fc.constant("k".repeat(400))),
});

type Req = typeof request extends fc.Arbitrary<infer T> ? T : never;

function build(r: Req): { url: string; init: RequestInit; write: boolean } {
  const write = r.route.method !== "GET" && r.route.method !== "HEAD";
  const isAdmin = r.route.path.startsWith("/admin");
  // Real ids only where the request is harmless with them: reads, or writes with a body that cannot be valid.
  const real = r.realId && !write ? (r.route.path.includes("products") ? productIds[0]! : skus[0]!) : undefined;
  const path = r.route.path.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, () => real ?? r.id);
  const qs = new URLSearchParams(Object.entries(r.query).map(([k, v]): [string, string] => [k, String(v)])).toString();
  const headers: Record<string, string> = { ...r.auth, "cf-connecting-ip": r.ip };
  if (r.idem !== undefined) headers["idempotency-key"] = String(r.idem).slice(0, 2000);
  let body: string | undefined;
  if (write) {
    body = r.body.replace(/__real__/g, skus[0]!);
    // An admin token with an object body could describe a valid write; keep admin bodies non-objects.
    if (isAdmin && r.auth.authorization === `Bearer ${ADMIN_TOKEN}` && body.trim().startsWith("{")) body = `[${body}]`;
    if (r.contentType) headers["content-type"] = r.contentType;
  }
  return { url: `${path}${qs ? `?${qs}` : ""}`, init: { method: r.route.method, headers, body }, write };
}

async function snapshot() {
  const catalog = await env.DB.batch([
    env.DB.prepare("SELECT id, version, status, in_stock FROM products ORDER BY id"),
    env.DB.prepare("SELECT sku, version, status FROM variants ORDER BY sku"),
    env.DB.prepare("SELECT sku, currency, amount FROM prices ORDER BY sku, currency"),
    env.DB.prepare("SELECT id, status FROM affiliates ORDER BY id"),
    env.DB.prepare("SELECT id, revoked_at FROM api_keys ORDER BY id"),
    env.DB.prepare("SELECT COUNT(*) AS n FROM promotions"),
    env.DB.prepare("SELECT COUNT(*) AS n FROM hot_skus"),
  ]);
  const stock = [];
  for (const sku of skus) {
    stock.push(
      await runInDurableObject(env.STOCK.getByName(shardNameForSku(env, sku)), (_, state) => ({
        rows: state.storage.sql.exec("SELECT location, on_hand, reserved FROM stock WHERE sku = ? ORDER BY location", sku).toArray(),
        holds: state.storage.sql.exec("SELECT COUNT(*) AS n FROM holds WHERE sku = ? AND state = 'held'", sku).one().n,
      })),
    );
  }
  return { catalog: catalog.map((r) => r.results), stock };
}

describe("fuzzing every route with malformed requests", () => {
  it(`${RUNS} malformed requests: never a 5xx, writes always 4xx, stock and catalog unchanged`, async () => {
    expect(ROUTES.length).toBeGreaterThan(20);
    // Warm every shard that owns a test SKU, so the "before" snapshot is the adopted baseline.
    await call(`/v1/availability?skus=${skus.join(",")}`);
    const before = await snapshot();
    const samples = fc.sample(request, { numRuns: RUNS, seed: 7 });
    const failures: string[] = [];
    const statusCounts = new Map<number, number>();
    // The app's own fetch (every middleware, route and binding guard), without the loopback hop of SELF.
    const app = buildApp();
    const started = Date.now();
    for (let i = 0; i < samples.length; i += CONCURRENCY) {
      const ctx = createExecutionContext();
      await Promise.all(
        samples.slice(i, i + CONCURRENCY).map(async (r) => {
          const { url, init, write } = build(r);
          const res = await app.fetch(new Request(BASE + url, init), env, ctx);
          const text = await res.text();
          statusCounts.set(res.status, (statusCounts.get(res.status) ?? 0) + 1);
          // Body-less admin actions (rebuild, bench) legitimately accept the real admin token; they must still not
          // touch stock or catalog, which the snapshot checks. Every other write must be refused.
          const trusted = (init.headers as Record<string, string>).authorization === `Bearer ${ADMIN_TOKEN}`;
          const bad = res.status >= 500 || (write && !trusted && res.status < 400);
          if (bad && failures.length < 10) failures.push(`${init.method} ${url.slice(0, 200)} -> ${res.status} ${text.slice(0, 300)}`);
          if (/\bat \S+ \(|\.ts:\d+:\d+/.test(text) && failures.length < 10) failures.push(`stack trace leaked: ${url.slice(0, 100)}`);
        }),
      );
      await waitOnExecutionContext(ctx);
    }
    console.log("fuzz", samples.length, "requests in", Date.now() - started, "ms; status counts", JSON.stringify(Object.fromEntries([...statusCounts].sort((a, b) => a[0] - b[0]))));
    expect(failures).toEqual([]);
    expect(await snapshot()).toEqual(before);
  }, 300_000);
});

/** Console pages and forms, fuzzed with a signed-in admin session (without one every answer is a redirect). */
const CONSOLE_ROUTES = ROUTES.filter(
  // Sign-in and sign-out would end the session; a rebuild is a body-less action with nothing to fuzz.
  (r) => r.path.startsWith("/console") && !/\/console\/(sign-in|sign-out|assets|recommendations\/rebuild)/.test(r.path),
);
const CONSOLE_FIELDS = [
  "if_match", "seen", "name", "status", "priority", "location", "intent", "ends_at", "ends_at_shown", "starts_at", "campaign", "allowed_origins",
  "value_type", "tracking_id", "title", "target_values", "target_type", "sub_shards", "skus", "sku", "seen_safety_stock", "seen_reserved",
  "seen_on_hand", "safety_stock", "reservation_id", "reason", "product", "percent", "on_hand", "label", "key_id", "grace_seconds",
  "event_id", "delta", "categories", "brands", "amounts",
];
/** Values a datetime-local field can carry that look like a date and time but are none. */
const notAnInstant = fc.constantFrom("2026-13-01T00:00", "2026-02-30T10:00", "2026-01-01T25:00", "2026-04-31T23:59:59", "2026-06-01T10:60", "0000-00-00T00:00", "9999-99-99T99:99:99.999");
const consoleRequest = fc.record({
  route: fc.constantFrom(...CONSOLE_ROUTES),
  id: pathId,
  realId: fc.boolean(),
  query: fc.dictionary(fc.constantFrom("sku", "ledger", "cursor", "q", "status", "next", "page"), weirdString, { maxKeys: 2 }),
  form: fc.record(Object.fromEntries(CONSOLE_FIELDS.map((f) => [f, fc.oneof(weirdString, weirdNumber.map(String), notAnInstant, fc.constant("1"))])), { requiredKeys: [] }),
  csrf: fc.oneof({ weight: 9, arbitrary: fc.constant("valid") }, { weight: 1, arbitrary: fc.constantFrom("", "forged") }),
  contentType: fc.constantFrom("application/x-www-form-urlencoded", "application/x-www-form-urlencoded", "multipart/form-data", "application/json"),
});

/** Signs in through the app as a browser does: the session cookie, and the CSRF token its pages carry. */
async function consoleSession(app: ReturnType<typeof buildApp>, ip: string): Promise<{ cookie: string; csrf: string }> {
  const cookies = new Map<string, string>();
  const send = async (path: string, init: RequestInit = {}) => {
    const ctx = createExecutionContext();
    const headers = { ...(init.headers as Record<string, string>), "cf-connecting-ip": ip, cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join("; ") };
    const res = await app.fetch(new Request(BASE + path, { ...init, headers, redirect: "manual" }), env, ctx);
    await waitOnExecutionContext(ctx);
    for (const line of res.headers.getAll("set-cookie")) {
      const [name, value] = line.split(";")[0]!.split("=") as [string, string];
      if (value) cookies.set(name.trim(), value.trim());
    }
    return res;
  };
  const csrfIn = async (res: Response) => /name="_csrf" value="([^"]*)"/.exec(await res.text())![1]!;
  const form = new URLSearchParams({ token: ADMIN_TOKEN, _csrf: await csrfIn(await send("/console/sign-in")) });
  const signed = await send("/console/sign-in", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form });
  expect(signed.status).toBe(303);
  const csrf = await csrfIn(await send("/console/stock"));
  return { cookie: `es_console=${cookies.get("es_console")}`, csrf };
}

describe("fuzzing the operator console, signed in as an admin", () => {
  it("malformed ids in console URLs, impossible dates and junk in every form field: never a 5xx, stock and products unchanged", async () => {
    expect(CONSOLE_ROUTES.length).toBeGreaterThan(25);
    await call(`/v1/availability?skus=${skus.join(",")}`);
    const before = await snapshot();
    const app = buildApp();
    const ip = "198.51.100.230";
    const session = await consoleSession(app, ip);
    const samples = fc.sample(consoleRequest, { numRuns: 600, seed: 11 });
    const failures: string[] = [];
    const statusCounts = new Map<number, number>();
    for (let i = 0; i < samples.length; i += CONCURRENCY) {
      const ctx = createExecutionContext();
      await Promise.all(
        samples.slice(i, i + CONCURRENCY).map(async (r) => {
          const write = r.route.method !== "GET";
          const real = r.realId && !write ? (r.route.path.includes("products") || r.route.path.includes("recommendations") ? productIds[0]! : skus[0]!) : undefined;
          const path = r.route.path.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, () => real ?? r.id);
          const qs = new URLSearchParams(r.query).toString();
          const url = `${path}${qs ? `?${qs}` : ""}`;
          const fields = { ...r.form, _csrf: r.csrf === "valid" ? session.csrf : r.csrf };
          let body: BodyInit | undefined;
          const headers: Record<string, string> = { cookie: session.cookie, "cf-connecting-ip": ip };
          if (write && r.contentType === "multipart/form-data") {
            const fd = new FormData();
            for (const [k, v] of Object.entries(fields)) fd.append(k, String(v));
            body = fd;
          } else if (write) {
            body = r.contentType === "application/json" ? JSON.stringify(fields) : new URLSearchParams(Object.entries(fields).map(([k, v]): [string, string] => [k, String(v)]));
            headers["content-type"] = r.contentType;
          }
          const res = await app.fetch(new Request(BASE + url, { method: r.route.method, headers, body, redirect: "manual" }), env, ctx);
          const text = await res.text();
          statusCounts.set(res.status, (statusCounts.get(res.status) ?? 0) + 1);
          if (res.status >= 500 && failures.length < 10) failures.push(`${r.route.method} ${url.slice(0, 160)} ${JSON.stringify(fields).slice(0, 200)} -> ${res.status}`);
          if (/\bat \S+ \(|\.tsx?:\d+:\d+/.test(text) && failures.length < 10) failures.push(`stack trace leaked: ${url.slice(0, 100)}`);
        }),
      );
      await waitOnExecutionContext(ctx);
    }
    console.log("console fuzz", samples.length, "requests; status counts", JSON.stringify(Object.fromEntries([...statusCounts].sort((a, b) => a[0] - b[0]))));
    expect(failures).toEqual([]);
    // Junk never reaches a write the session could make: well-formed writes (an affiliate named by the fuzzer) may.
    const after = await snapshot();
    expect(after.stock).toEqual(before.stock);
    expect(after.catalog.slice(0, 3)).toEqual(before.catalog.slice(0, 3));
  }, 120_000);
});

const ECHO_ROUTES = new Set(["/v1/products", "/v1/products/:id", "/v1/search", "/v1/reservations", "/v1/feeds/products", "/v1/availability"]);

/** Every route, reached with values that are wrong in their bytes rather than their meaning. */
function hostileRequests(): { url: string; init: RequestInit }[] {
  const big = "v".repeat(8 * 1024);
  const brands = (n: number) => Array.from({ length: n }, (_, i) => `B${i}`).join(",");
  const queries = [
    "category=a%0Ab",
    "category=a%00b",
    "brand=a%00b",
    "q=a%00b",
    "brand=x%7F",
    "category=%FF%FE",
    "q=%C3%28",
    "cursor=%",
    "locale=%E0%80%80",
    "category=%E6%BC%A2%E5%AD%97",
    `q=${big}`,
    `category=${"c".repeat(3000)}`,
    `brand=${brands(200)}`,
    `brand=${brands(50)}`,
    `skus=${Array.from({ length: 200 }, (_, i) => `SKU-${i}`).join(",")}`,
    `${"k".repeat(200)}=1`,
    "key=%00",
  ];
  const headerSets: Record<string, string>[] = [
    { authorization: `Bearer ${crypto.randomUUID()}` },
    { authorization: `Bearer ${"z".repeat(8000)}` },
    { "x-d1-bookmark": "first-primary" },
    { "x-d1-bookmark": "caf\u00e9" },
    { "accept-language": "\u00ff\u00fe" },
    { "idempotency-key": "\u00e9t\u00e9" },
    { "x-shopper-country": "\u00c4\u00d6" },
    { "if-none-match": "\"\u00ff\"" },
    { referer: "https://a.example/\u00e9" },
  ];
  const out: { url: string; init: RequestInit }[] = [];
  for (const route of ROUTES) {
    const path = route.path.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, "p%00x");
    const write = route.method !== "GET" && route.method !== "HEAD";
    const plain = route.path.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, "x-hostile");
    for (const q of queries) {
      out.push({ url: `${plain}?${q}`, init: { method: route.method, headers: { "cf-connecting-ip": "198.51.100.200", ...(write ? { "content-type": "application/json" } : {}) }, body: write ? "{}" : undefined } });
    }
    for (const h of headerSets) {
      // Non-ASCII header values make the runtime print a warning per request: one route per class is enough.
      if (!ECHO_ROUTES.has(route.path) && Object.values(h).some((v) => /[^\x20-\x7e]/.test(v))) continue;
      out.push({ url: plain, init: { method: route.method, headers: { "cf-connecting-ip": "198.51.100.201", ...h, ...(write ? { "content-type": "application/json" } : {}) }, body: write ? "{}" : undefined } });
    }
    out.push({ url: path, init: { method: route.method } });
  }
  return out;
}

describe("hostile bytes on every route", () => {
  it("control characters, NUL, invalid UTF-8, 8 KB values, 200 brands and random bearers: no 5xx, a 4xx problem for bad bytes, nothing changes", async () => {
    await call(`/v1/availability?skus=${skus.join(",")}`);
    const before = await snapshot();
    const guardsBefore = (await listDurableObjectIds(env.CLIENT_GUARD)).length;
    const app = buildApp();
    const failures: string[] = [];
    const reqs = hostileRequests();
    const byUrl = new Map<string, number>();
    for (let i = 0; i < reqs.length; i += CONCURRENCY) {
      const ctx = createExecutionContext();
      await Promise.all(
        reqs.slice(i, i + CONCURRENCY).map(async ({ url, init }) => {
          const res = await app.fetch(new Request(BASE + url, init), env, ctx);
          const text = await res.text();
          byUrl.set(`${init.method ?? "GET"} ${url}`, res.status);
          if (res.status >= 500 && failures.length < 10) failures.push(`${init.method ?? "GET"} ${url.slice(0, 120)} ${JSON.stringify(init.headers ?? {}).slice(0, 120)} -> ${res.status} ${text.slice(0, 200)}`);
          // The operator console answers its forms with HTML pages; every API route answers with a problem.
          const api = !url.startsWith("/console");
          if (api && res.status >= 400 && !(res.headers.get("content-type") ?? "").startsWith("application/problem+json") && failures.length < 10) failures.push(`not a problem: ${url.slice(0, 120)} -> ${res.status}`);
        }),
      );
      await waitOnExecutionContext(ctx);
    }
    expect(failures).toEqual([]);
    expect(reqs.length).toBeGreaterThan(ROUTES.length * 20);
    // The cases from the field, one by one.
    expect(byUrl.get("GET /v1/products?category=a%0Ab")).toBe(400);
    expect(byUrl.get("GET /v1/products?category=a%00b")).toBe(400);
    expect(byUrl.get("GET /v1/search?brand=a%00b")).toBe(400);
    expect(byUrl.get("GET /v1/search?category=%FF%FE")).toBe(400);
    expect(byUrl.get(`GET /v1/search?q=${"v".repeat(8 * 1024)}`)).toBe(414);
    // Unicode that is valid stays valid: it is encoded in Cache-Tag rather than refused.
    expect(byUrl.get("GET /v1/products?category=%E6%BC%A2%E5%AD%97")).toBe(200);
    // 50 brands reach SQL as one bound parameter (production D1 refuses more than 100).
    expect(byUrl.get(`GET /v1/search?brand=${Array.from({ length: 50 }, (_, i) => `B${i}`).join(",")}`)).toBe(200);
    expect(await snapshot()).toEqual(before);
    expect((await listDurableObjectIds(env.CLIENT_GUARD)).length).toBe(guardsBefore);
  }, 120_000);
});

describe("memory under hostile traffic", () => {
  it("20,000 distinct hostile requests keep every per-isolate structure within its byte budget, and make no ClientGuard object", async () => {
    // Every Durable Object name the app asks for: a ClientGuard must only ever be named after a verified key.
    const guardNames: string[] = [];
    const guards = env.CLIENT_GUARD;
    const counted = {
      ...env,
      CLIENT_GUARD: new Proxy(guards, {
        get: (t, p) => (p === "getByName" ? (name: string) => (guardNames.push(name), t.getByName(name)) : Reflect.get(t, p, t)),
      }),
    } as Env;
    const app = buildApp();
    const junk = (i: number) => `${i}-${"j".repeat(1500)}`;
    // What a scraper or a broken client sends: one address, a fresh token, id or query string every time.
    const ip = { "cf-connecting-ip": "198.51.100.250" };
    const make = (i: number): Request => {
      const bearer = { ...ip, authorization: `Bearer ${crypto.randomUUID()}-${"t".repeat(200)}` };
      // Per hundred: a few that reach D1 or the shards, the edge-cached product with junk, and many bad-bytes ones.
      const kind = i % 100;
      switch (kind < 17 ? kind : 5 + (kind % 5)) {
        case 0:
        case 10:
        case 11:
        case 12:
        case 13:
          return new Request(`${BASE}/v1/products/${productIds[0]}?pad=${junk(i)}`, { headers: { "cf-connecting-ip": `10.9.${(i >> 8) & 255}.${i & 255}` } });
        case 1:
        case 14:
          return new Request(`${BASE}/v1/feeds/products?since=${i}`, { headers: bearer });
        case 2:
        case 15:
          return new Request(`${BASE}/v1/reservations`, { method: "POST", headers: { ...bearer, "content-type": "application/json" }, body: JSON.stringify({ items: [{ sku: `SKU-H-${i}`, quantity: 1 }] }) });
        case 3:
          return new Request(`${BASE}/v1/search?q=w${i}&brand=b${i}`, { headers: bearer });
        case 4:
        case 16:
          return new Request(`${BASE}/v1/products/p-hostile-${i}-${"x".repeat(80)}`, { headers: bearer });
        case 5:
          return new Request(`${BASE}/v1/products?category=a%0A${i}`, { headers: ip });
        case 6:
          return new Request(`${BASE}/v1/search?brand=%FF${i}`, { headers: ip });
        case 7:
          return new Request(`${BASE}/v1/products/p%00${i}`, { headers: ip });
        case 8:
          return new Request(`${BASE}/v1/products?q=${i}${"q".repeat(8200)}`, { headers: ip });
        default:
          return new Request(`${BASE}/v1/availability?skus=SKU-H-${i}`, { headers: bearer });
      }
    };
    const statuses = new Map<number, number>();
    const started = Date.now();
    for (let i = 0; i < 20_000; i += 20) {
      const ctx = createExecutionContext();
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const res = await app.fetch(make(i + j), counted, ctx);
          await res.body?.cancel();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }),
      );
      await waitOnExecutionContext(ctx);
    }
    console.log("memory test: 20,000 requests in", Date.now() - started, "ms; status counts", JSON.stringify(Object.fromEntries(statuses)));
    expect([...statuses.keys()].filter((s) => s >= 500)).toEqual([]);
    const mem = isolateMemory();
    console.log("accounted isolate memory", JSON.stringify(mem));
    expect(mem.budget).toBeLessThanOrEqual(ISOLATE_ACCOUNTED_BUDGET_BYTES);
    expect(mem.bytes).toBeLessThanOrEqual(mem.budget);
    for (const [name, part] of Object.entries(mem.parts)) expect(part.bytes, name).toBeLessThanOrEqual(part.budget);
    expect(mem.parts["read-path.served-floor"]).toBeDefined();
    expect(guardNames).toEqual([]);
  }, 240_000);

  it("a bounded map stays within its bytes whatever the keys: long keys are hashed, the oldest go first", () => {
    const m = new BoundedMap<number>("test.bounded", { maxBytes: 64 * 1024, maxKeyLength: 64, sizeOf: () => 8 });
    for (let i = 0; i < 20_000; i++) m.set(`${i}-${"k".repeat(1500)}`, i);
    expect(m.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(m.get(`19999-${"k".repeat(1500)}`)).toBe(19_999);
    expect(m.get(`0-${"k".repeat(1500)}`)).toBeUndefined();
    expect(isolateMemory().parts["test.bounded"]!.bytes).toBe(m.bytes);
  });
});
