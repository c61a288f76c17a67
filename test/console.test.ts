import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { parseSloConfig, sloReport } from "../src/metrics/slo";
import { addPoint, bucketOf, flushPoints, histogram, histogramPercentile, LATENCY_BOUNDS, minuteOf, prunePoints, readPoints, RETENTION_MINUTES, total } from "../src/metrics/timeseries";
import { admin, call, expectProblem, json } from "./helpers/http";
import { makeSkus } from "./helpers/stock-fixtures";
import { seedApiKeys } from "./helpers/api-keys";
import { insertProduct } from "./helpers/catalog-fixtures";

beforeAll(() => seedApiKeys(env.DB));

const VIEWER_TOKEN = "test-viewer-token";
const ADMIN_TOKEN = "test-admin-token";

type Browser = { cookies: Map<string, string>; ip: string };

function cookieHeader(b: Browser): string {
  return [...b.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
}

function keepCookies(b: Browser, res: Response): void {
  for (const line of res.headers.getAll("set-cookie")) {
    const [pair, ...attrs] = line.split(";");
    const eq = pair!.indexOf("=");
    const name = pair!.slice(0, eq).trim();
    const value = pair!.slice(eq + 1).trim();
    if (attrs.some((a) => /max-age=0/i.test(a)) || value === "") b.cookies.delete(name);
    else b.cookies.set(name, value);
  }
}

async function get(b: Browser, path: string): Promise<Response> {
  const res = await call(path, { headers: { cookie: cookieHeader(b), "cf-connecting-ip": b.ip }, redirect: "manual" });
  keepCookies(b, res);
  return res;
}

async function post(b: Browser, path: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  const res = await call(path, {
    method: "POST",
    redirect: "manual",
    headers: { cookie: cookieHeader(b), "cf-connecting-ip": b.ip, "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(form),
  });
  keepCookies(b, res);
  return res;
}

/** The post/redirect/get message the last answer left (its cookie value is URI-encoded twice: by the console, then by the cookie writer). */
const flashOf = (b: Browser) => decodeURIComponent(decodeURIComponent(b.cookies.get("es_console_flash") ?? ""));

const hidden = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];

let ipCounter = 0;
async function signIn(token: string): Promise<{ b: Browser; res: Response }> {
  const b: Browser = { cookies: new Map(), ip: `198.51.100.${100 + ipCounter++}` };
  const page = await get(b, "/console/sign-in");
  const res = await post(b, "/console/sign-in", { token, _csrf: hidden(await page.text(), "_csrf")! });
  return { b, res };
}

async function csrfOf(b: Browser, path = "/console/stock"): Promise<string> {
  const res = await get(b, path);
  expect(res.status).toBe(200);
  return hidden(await res.text(), "_csrf")!;
}

describe("console sign-in and sessions", () => {
  it("redirects to sign-in without a session, and signs in with the admin token into a Secure, HttpOnly, SameSite=Strict cookie", async () => {
    const anon: Browser = { cookies: new Map(), ip: "198.51.100.50" };
    const res = await get(anon, "/console");
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/console/sign-in?next=%2Fconsole");

    const { b, res: signed } = await signIn(ADMIN_TOKEN);
    expect(signed.status).toBe(303);
    const cookie = signed.headers.getAll("set-cookie").find((c) => c.startsWith("es_console="))!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/Secure/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).toMatch(/Max-Age=28800/);
    const overview = await get(b, "/console");
    expect(overview.status).toBe(200);
    expect(await overview.text()).toContain('data-tile="slo"');
  });

  it("refuses a tampered cookie (role swapped to admin, or expiry pushed out) and a revoked one after sign-out", async () => {
    const { b } = await signIn(VIEWER_TOKEN);
    const real = b.cookies.get("es_console")!;
    const [id, role, exp, sig] = real.split(".");
    expect(role).toBe("viewer");
    for (const forged of [`${id}.admin.${exp}.${sig}`, `${id}.viewer.${Number(exp) + 86_400_000}.${sig}`, `${id}.viewer.${exp}.${sig!.slice(0, 10)}${sig![10] === "A" ? "B" : "A"}${sig!.slice(11)}`]) {
      const res = await get({ cookies: new Map([["es_console", forged]]), ip: b.ip }, "/console");
      expect(res.status).toBe(303);
    }
    // base64url's unused trailing bits: another spelling of the same signature bytes is not a valid cookie either.
    const last = sig!.at(-1)!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const twin = alphabet[(alphabet.indexOf(last) & ~3) | ((alphabet.indexOf(last) + 1) & 3)]!;
    expect((await get({ cookies: new Map([["es_console", `${id}.viewer.${exp}.${sig!.slice(0, -1)}${twin}`]]), ip: b.ip }, "/console")).status).toBe(303);
    const csrf = await csrfOf(b);
    const out = await post(b, "/console/sign-out", { _csrf: csrf });
    expect(out.status).toBe(303);
    const reused = await get({ cookies: new Map([["es_console", real]]), ip: b.ip }, "/console");
    expect(reused.status).toBe(303);
    expect(reused.headers.get("location")).toMatch(/^\/console\/sign-in/);
  });

  it("refuses a sign-in whose form token does not match its cookie (login CSRF)", async () => {
    const b: Browser = { cookies: new Map(), ip: "198.51.100.60" };
    await get(b, "/console/sign-in");
    const res = await post(b, "/console/sign-in", { token: ADMIN_TOKEN, _csrf: "something-else" });
    expect(res.status).toBe(403);
    expect(b.cookies.has("es_console")).toBe(false);
  });

  it("throttles wrong tokens per client: five get 401, then 429 with Retry-After even for the right token", async () => {
    const b: Browser = { cookies: new Map(), ip: "198.51.100.61" };
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const page = await get(b, "/console/sign-in");
      statuses.push((await post(b, "/console/sign-in", { token: `wrong-${i}`, _csrf: hidden(await page.text(), "_csrf")! })).status);
    }
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
    const page = await get(b, "/console/sign-in");
    const right = await post(b, "/console/sign-in", { token: ADMIN_TOKEN, _csrf: hidden(await page.text(), "_csrf")! });
    expect(right.status).toBe(429);
    expect(Number(right.headers.get("retry-after"))).toBeGreaterThan(0);
    // Another client is not affected.
    expect((await signIn(ADMIN_TOKEN)).res.status).toBe(303);
  });
});

describe("console writes: CSRF, origin and roles", () => {
  it("refuses a write without the CSRF token, with another session's token, and from another origin", async () => {
    const [sku] = await makeSkus([10]);
    const { b } = await signIn(ADMIN_TOKEN);
    const { b: other } = await signIn(ADMIN_TOKEN);
    const otherCsrf = await csrfOf(other);
    const csrf = await csrfOf(b);
    const page = await (await get(b, `/console/stock?sku=${sku}`)).text();
    const form = { location: "loc-us-east", delta: "5", reason: "recount", event_id: hidden(page, "event_id")!, if_match: hidden(page, "if_match")!, seen: hidden(page, "seen")!.replace(/&quot;/g, '"') };
    expect((await post(b, `/console/stock/${sku}/adjust`, form)).status).toBe(403);
    expect((await post(b, `/console/stock/${sku}/adjust`, { ...form, _csrf: otherCsrf })).status).toBe(403);
    expect((await post(b, `/console/stock/${sku}/adjust`, { ...form, _csrf: csrf }, { origin: "https://evil.example" })).status).toBe(403);
    const avail = await call(`/v1/availability?skus=${sku}`);
    expect(((await avail.json()) as { items: { on_hand: number }[] }).items[0]!.on_hand).toBe(10);
    // The same form with the token applies once; a resubmission is recognised by its event id.
    expect((await post(b, `/console/stock/${sku}/adjust`, { ...form, _csrf: csrf })).status).toBe(303);
    expect((await post(b, `/console/stock/${sku}/adjust`, { ...form, _csrf: csrf })).status).toBe(303);
    const after = await call(`/v1/availability?skus=${sku}`);
    expect(((await after.json()) as { items: { on_hand: number }[] }).items[0]!.on_hand).toBe(15);
  });

  it("a viewer sees pages but every write is 403, even with its own valid CSRF token", async () => {
    const [sku] = await makeSkus([10]);
    const { b } = await signIn(VIEWER_TOKEN);
    const page = await get(b, `/console/stock?sku=${sku}`);
    const html = await page.text();
    expect(html).toContain("Viewer (read-only)");
    expect(html).toMatch(/<fieldset disabled/);
    const csrf = hidden(html, "_csrf")!;
    const seq = hidden(html, "if_match")!;
    const set = await post(b, `/console/stock/${sku}/set`, { _csrf: csrf, location: "loc-us-east", on_hand: "999", if_match: seq, seen_on_hand: "10", seen_reserved: "0", seen_safety_stock: "0" });
    expect(set.status).toBe(403);
    expect((await post(b, "/console/events/replay", { _csrf: csrf })).status).toBe(403);
    const avail = await call(`/v1/availability?skus=${sku}`);
    expect(((await avail.json()) as { items: { on_hand: number }[] }).items[0]!.on_hand).toBe(10);
    // Sign-out is the one post a viewer may make.
    expect((await post(b, "/console/sign-out", { _csrf: csrf })).status).toBe(303);
  });

  it("set with a stale If-Match writes nothing and shows what changed (412); the current one applies", async () => {
    const [sku] = await makeSkus([10]);
    const { b } = await signIn(ADMIN_TOKEN);
    const html = await (await get(b, `/console/stock?sku=${sku}`)).text();
    const csrf = hidden(html, "_csrf")!;
    const seq = hidden(html, "if_match")!;
    // Someone else sets the count after the page was read.
    expect((await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 40 }, admin())).status).toBe(200);
    const form = { _csrf: csrf, location: "loc-us-east", on_hand: "3", if_match: seq, seen_on_hand: "10", seen_reserved: "0", seen_safety_stock: "0" };
    const stale = await post(b, `/console/stock/${sku}/set`, form);
    expect(stale.status).toBe(412);
    const body = await stale.text();
    expect(body).toContain('id="stale"');
    expect(body).toMatch(/<td class="num">10<\/td><td class="num">40<\/td>/);
    const avail = async () => ((await (await call(`/v1/availability?skus=${sku}`)).json()) as { items: { on_hand: number }[] }).items[0]!.on_hand;
    expect(await avail()).toBe(40);
    const fresh = hidden(await (await get(b, `/console/stock?sku=${sku}`)).text(), "if_match")!;
    expect((await post(b, `/console/stock/${sku}/set`, { ...form, if_match: fresh })).status).toBe(303);
    expect(await avail()).toBe(3);
  });
});

describe("the merged, paged ledger", () => {
  type Row = { id: number; shard: string; kind: string; at: number };
  const key = (r: Row) => `${r.shard}#${r.id}`;

  it("pages newest first over the home shard and hot sub-shards with no row skipped or repeated, in the API and on the SKU page", async () => {
    const [sku] = await makeSkus([200]);
    // A sub-shard that answers late (a loaded machine) makes the mark 503; it is resumable, so mark again.
    await vi.waitFor(async () => expect((await json("POST", `/admin/stock/${sku}/hot`, { sub_shards: 2 }, admin())).status).toBe(200), { timeout: 15_000, interval: 500 });
    const lines = Array.from({ length: 60 }, (_, i) => ({ sku, location: "loc-us-east", delta: i % 2 ? -1 : 2, reason: `count ${i}`, event_id: `led-${crypto.randomUUID()}` }));
    // Every decrease on a hot SKU asks the sub-shards; on a loaded machine 60 of them can pass the 5 s binding
    // timeout (503). Lines are idempotent per event_id, so the retry a warehouse feed would make completes the rest.
    await vi.waitFor(async () => expect((await json("POST", "/admin/stock/adjustments", lines, admin())).status).toBe(200), { timeout: 30_000, interval: 500 });
    const asc = ((await (await call(`/admin/stock/${sku}/ledger?limit=1000`, { headers: admin() })).json()) as { items: Row[] }).items;
    expect(new Set(asc.map((r) => r.shard)).size).toBeGreaterThan(1);
    expect(asc.length).toBeGreaterThan(60);

    const desc: Row[] = [];
    let cursor: string | null = null;
    do {
      const page = (await (await call(`/admin/stock/${sku}/ledger?order=desc&limit=7${cursor ? `&cursor=${cursor}` : ""}`, { headers: admin() })).json()) as { items: Row[]; next_cursor: string | null };
      desc.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    expect(desc.map(key)).toEqual([...asc].reverse().map(key));

    // The console walks the same pages, 50 rows at a time, naming the shard of each row.
    const { b } = await signIn(VIEWER_TOKEN);
    const seen: string[] = [];
    let url: string | undefined = `/console/stock?sku=${sku}`;
    while (url) {
      const html = await (await get(b, url)).text();
      const ledger = html.slice(html.indexOf('<table id="ledger"'), html.indexOf("</table>", html.indexOf('<table id="ledger"')));
      const rows = [...ledger.matchAll(/<tr data-row="([^"]+)">/g)].map((m) => m[1]!);
      expect(rows.length).toBeLessThanOrEqual(50);
      seen.push(...rows);
      url = /href="([^"]*ledger=[\d.]+)#ledger-h" rel="next"/.exec(html)?.[1]?.replace(/&amp;/g, "&");
    }
    expect(seen).toEqual([...asc].reverse().map(key));
    expect(seen.some((k) => k.startsWith("stock:hot:"))).toBe(true);
  }, 90_000);
});

describe("stock lists", () => {
  it("lists a SKU sold out at every location as recently sold out, and not one with units left at another location", async () => {
    const tag = `SO-${Date.now().toString(36)}`;
    const gone = `${tag}-GONE`;
    const partly = `${tag}-PART`;
    const at = Date.now() + 60_000; // newer than anything else in this file's database
    await env.DB.batch([
      env.DB.prepare(`INSERT INTO availability (sku, location_id, on_hand, reserved, available, status, updated_at) VALUES (?1, 'loc-us-east', 0, 0, 0, 'out_of_stock', ?2), (?1, 'loc-eu-west', 0, 0, 0, 'out_of_stock', ?2)`).bind(gone, at),
      env.DB.prepare(`INSERT INTO availability (sku, location_id, on_hand, reserved, available, status, updated_at) VALUES (?1, 'loc-us-east', 0, 0, 0, 'out_of_stock', ?2), (?1, 'loc-eu-west', 4, 0, 4, 'in_stock', ?2)`).bind(partly, at),
    ]);
    const { b } = await signIn(VIEWER_TOKEN);
    const res = await get(b, "/console/stock");
    expect(res.status).toBe(200);
    const soldOut = /<ul id="sold-out">([\s\S]*?)<\/ul>/.exec(await res.text())?.[1] ?? "";
    expect(soldOut).toContain(gone);
    expect(soldOut).not.toContain(partly);
  });
});

describe("adjustments with If-Match", () => {
  it("the console's adjust form with a stale If-Match writes nothing and shows what changed (412); a fresh one applies once", async () => {
    const [sku] = await makeSkus([10]);
    const { b } = await signIn(ADMIN_TOKEN);
    const html = await (await get(b, `/console/stock?sku=${sku}`)).text();
    const form = { _csrf: hidden(html, "_csrf")!, location: "loc-us-east", delta: "-3", reason: "damaged", event_id: hidden(html, "event_id")!, if_match: hidden(html, "if_match")!, seen: hidden(html, "seen")!.replace(/&quot;/g, '"') };
    // A warehouse feed moves the SKU after the page was read.
    const feed = await json("POST", "/admin/stock/adjustments", [{ sku, location: "loc-us-east", delta: 20, reason: "delivery", event_id: `wh-${crypto.randomUUID()}` }], admin());
    expect(feed.status).toBe(200);
    const stale = await post(b, `/console/stock/${sku}/adjust`, form);
    expect(stale.status).toBe(412);
    expect(await stale.text()).toMatch(/<td class="num">10<\/td><td class="num">30<\/td>/);
    const avail = async () => ((await (await call(`/v1/availability?skus=${sku}`)).json()) as { items: { on_hand: number }[] }).items[0]!.on_hand;
    expect(await avail()).toBe(30);
    const fresh = await (await get(b, `/console/stock?sku=${sku}`)).text();
    const again = { ...form, event_id: hidden(fresh, "event_id")!, if_match: hidden(fresh, "if_match")!, seen: hidden(fresh, "seen")!.replace(/&quot;/g, '"') };
    expect((await post(b, `/console/stock/${sku}/adjust`, again)).status).toBe(303);
    expect(await avail()).toBe(27);
    // Submitting the same form again (a double click) is the same event: applied once.
    expect((await post(b, `/console/stock/${sku}/adjust`, again)).status).toBe(303);
    expect(flashOf(b)).toContain("Already applied");
    expect(await avail()).toBe(27);
  });

  it("POST /admin/stock/{sku}/adjustments applies with the current seq, refuses a stale one with 412 and the rows, and keeps event ids idempotent", async () => {
    const [sku] = await makeSkus([10]);
    const seqOf = async () => Number((await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: await onHand() }, admin())).headers.get("etag")!.replace(/"/g, ""));
    const onHand = async () => ((await (await call(`/v1/availability?skus=${sku}`)).json()) as { items: { on_hand: number }[] }).items[0]!.on_hand;
    const seq = await seqOf();
    const line = { location: "loc-us-east", delta: 4, reason: "found", event_id: `op-${crypto.randomUUID()}` };
    const ok = await json("POST", `/admin/stock/${sku}/adjustments`, line, admin({ "if-match": `"${seq}"` }));
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ status: "applied", on_hand: 14 });
    // The same event again, with the now-stale seq: a retry, so `duplicate`, not 412, and nothing moves.
    const retry = await json("POST", `/admin/stock/${sku}/adjustments`, line, admin({ "if-match": `"${seq}"` }));
    expect(retry.status).toBe(200);
    expect(((await retry.json()) as { status: string }).status).toBe("duplicate");
    const stale = await json("POST", `/admin/stock/${sku}/adjustments`, { ...line, event_id: `op-${crypto.randomUUID()}` }, admin({ "if-match": `"${seq}"` }));
    const problem = await expectProblem(stale, 412);
    expect(problem.current_version).toBeGreaterThan(seq);
    expect((problem.rows as { on_hand: number }[])[0]!.on_hand).toBe(14);
    expect(stale.headers.get("etag")).toBe(`"${problem.current_version}"`);
    expect(await onHand()).toBe(14);
    // Without If-Match it is the batch route's movement for one SKU; below zero is rejected.
    const under = await json("POST", `/admin/stock/${sku}/adjustments`, { ...line, delta: -100, event_id: `op-${crypto.randomUUID()}` }, admin());
    expect(((await under.json()) as { status: string }).status).toBe("rejected");
    await expectProblem(await json("POST", `/admin/stock/NOPE-${crypto.randomUUID()}/adjustments`, line, admin()), 422);
    await expectProblem(await json("POST", `/admin/stock/${sku}/adjustments`, { ...line, location: "loc-nowhere" }, admin()), 422);
    await expectProblem(await json("POST", `/admin/stock/${sku}/adjustments`, { ...line, delta: 0 }, admin()), 400);
    await expectProblem(await json("POST", `/admin/stock/${sku}/adjustments`, line), 401);
  });
});

describe("PUT /admin/stock/{sku} with If-Match", () => {
  it("applies with the current seq, refuses a stale one with 412 and the current rows, and answers ETag", async () => {
    const [sku] = await makeSkus([10]);
    const first = await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 12 }, admin());
    const etag = first.headers.get("etag")!;
    expect(etag).toMatch(/^"\d+"$/);
    const ok = await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 13 }, admin({ "if-match": etag }));
    expect(ok.status).toBe(200);
    const stale = await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 99 }, admin({ "if-match": etag }));
    const problem = await expectProblem(stale, 412);
    expect(problem.current_version).toBe(Number(ok.headers.get("etag")!.replace(/"/g, "")));
    expect((problem.rows as { on_hand: number }[])[0]!.on_hand).toBe(13);
    await expectProblem(await json("PUT", `/admin/stock/${sku}`, { location: "loc-us-east", on_hand: 1 }, admin({ "if-match": "not-a-seq" })), 412);
  });
});

describe("per-minute metrics store", () => {
  it("adds counters across flushes, keeps the maximum of gauges, and prunes past the retention", async () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 30);
    const m = minuteOf(now);
    addPoint("test.count", 2, now);
    addPoint("g.test", 5, now);
    await flushPoints(env.DB, now);
    addPoint("test.count", 3, now);
    addPoint("g.test", 4, now);
    await flushPoints(env.DB, now);
    const old = now - (RETENTION_MINUTES + 5) * 60_000;
    addPoint("test.count", 7, old);
    await flushPoints(env.DB, now);
    let t = await readPoints(env.DB, m - RETENTION_MINUTES - 10, m, ["test.", "g.test"]);
    expect(t.get("test.count")?.get(m)).toBe(5);
    expect(t.get("g.test")?.get(m)).toBe(5);
    expect(total(t, "test.count")).toBe(12);
    await prunePoints(env.DB, now);
    t = await readPoints(env.DB, m - RETENTION_MINUTES - 10, m, ["test."]);
    expect(total(t, "test.count")).toBe(5);
  });

  it("percentiles come from bucket bounds and merge across minutes", () => {
    const counts = new Array(LATENCY_BOUNDS.length).fill(0);
    counts[bucketOf(LATENCY_BOUNDS, 8)] += 98;
    counts[bucketOf(LATENCY_BOUNDS, 150)] += 2;
    expect(histogramPercentile(LATENCY_BOUNDS, counts, 50)).toBe(10);
    expect(histogramPercentile(LATENCY_BOUNDS, counts, 99)).toBe(200);
    expect(histogramPercentile(LATENCY_BOUNDS, counts.map(() => 0), 99)).toBeNull();
    expect(bucketOf(LATENCY_BOUNDS, 120)).toBe(LATENCY_BOUNDS.indexOf(120));
    expect(bucketOf(LATENCY_BOUNDS, 10_000)).toBe(LATENCY_BOUNDS.length - 1);
  });

  it("requests through the Worker land in the store by route class, tier and reservation status", async () => {
    const before = Date.now();
    await call("/v1/categories");
    await call("/v1/categories");
    await json("POST", "/v1/reservations", { items: [{ sku: "NOPE-1", quantity: 1 }] }, { authorization: "Bearer dev-storefront-key" });
    await flushPoints(env.DB);
    const t = await readPoints(env.DB, minuteOf(before), minuteOf(Date.now()), ["req.browse.", "req.reserve.", "rsv."]);
    expect(total(t, "req.browse.n")).toBeGreaterThanOrEqual(2);
    expect(histogram(t, "req.browse", LATENCY_BOUNDS.length).reduce((a, b) => a + b, 0)).toBe(total(t, "req.browse.n"));
    expect(total(t, "req.reserve.n")).toBeGreaterThanOrEqual(1);
  });
});

describe("SLOs", () => {
  it("reads targets from configuration and ignores nonsense", () => {
    const cfg = parseSloConfig("read_p95_ms=150, availability=99.9, window_minutes=99999, bogus=1, correctness=abc");
    expect(cfg.read_p95_ms).toBe(150);
    expect(cfg.availability).toBe(99.9);
    expect(cfg.window_minutes).toBe(24 * 60);
    expect(cfg.correctness).toBe(99.99);
  });

  it("spends the availability budget with 5xx answers and flags it as breached once overspent", async () => {
    const now = Date.now();
    // 10,000 feed requests, 3 of them 5xx, with a 99.95% target: 5 allowed, 3 spent → 40% left, at risk below 25%.
    addPoint("req.feed.n", 10_000, now);
    addPoint("req.feed.err", 3, now);
    addPoint(`req.feed.h${bucketOf(LATENCY_BOUNDS, 20)}`, 10_000, now);
    await flushPoints(env.DB, now);
    const cfg = { ...env, SLO_TARGETS: "availability=99.95" };
    let report = await sloReport(cfg, now);
    let feed = report.objectives.find((o) => o.id === "availability.feed")!;
    expect(feed.events).toBe(10_000);
    expect(feed.bad).toBe(3);
    expect(feed.budget_left).toBeCloseTo(0.4, 5);
    expect(feed.status).toBe("met");
    addPoint("req.feed.err", 3, now);
    await flushPoints(env.DB, now);
    report = await sloReport(cfg, now);
    feed = report.objectives.find((o) => o.id === "availability.feed")!;
    expect(feed.status).toBe("breached");
    expect(report.burning.map((o) => o.id)).toContain("availability.feed");
    // Latency: every feed request was fast, so its latency budget is untouched.
    expect(report.objectives.find((o) => o.id === "latency_p99.feed")!.budget_left).toBe(1);
  });
});

describe("admin holds, force-release and metric history APIs", () => {
  it("lists a SKU's live holds with their storefront key, and force-releases a reservation whoever holds it", async () => {
    const [sku] = await makeSkus([10]);
    const res = await json("POST", "/v1/reservations", { items: [{ sku, quantity: 3 }] }, { authorization: "Bearer dev-storefront-key", "idempotency-key": `k-${crypto.randomUUID()}` });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const holds = (await (await call(`/admin/stock/${sku}/holds`, { headers: admin() })).json()) as { items: { reservation_id: string; quantity: number; holder: string | null; shard: string }[] };
    expect(holds.items).toHaveLength(1);
    expect(holds.items[0]).toMatchObject({ reservation_id: id, quantity: 3 });
    expect(holds.items[0]!.holder).toBeTruthy();
    const released = await call(`/admin/reservations/${id}/release`, { method: "POST", headers: admin() });
    expect(released.status).toBe(200);
    expect(((await released.json()) as { status: string }).status).toBe("released");
    expect(((await (await call(`/admin/stock/${sku}/holds`, { headers: admin() })).json()) as { items: unknown[] }).items).toHaveLength(0);
    const avail = (await (await call(`/v1/availability?skus=${sku}`)).json()) as { items: { reserved: number; available: number }[] };
    expect(avail.items[0]).toMatchObject({ reserved: 0, available: 10 });
    // The storefront sees it released; a second force-release is a no-op answer, not an error.
    const seen = await call(`/v1/reservations/${id}`, { headers: { authorization: "Bearer dev-storefront-key" } });
    expect(((await seen.json()) as { status: string }).status).toBe("released");
    expect((await call(`/admin/reservations/${id}/release`, { method: "POST", headers: admin() })).status).toBe(200);
  });

  it("refuses to force-release a committed reservation (409), an unknown one (404), and without the admin token (401)", async () => {
    const [sku] = await makeSkus([5]);
    const res = await json("POST", "/v1/reservations", { items: [{ sku, quantity: 1 }] }, { authorization: "Bearer dev-storefront-key", "idempotency-key": `k-${crypto.randomUUID()}` });
    const { id } = (await res.json()) as { id: string };
    expect((await call(`/v1/reservations/${id}/commit`, { method: "POST", headers: { authorization: "Bearer dev-storefront-key" } })).status).toBe(200);
    await expectProblem(await call(`/admin/reservations/${id}/release`, { method: "POST", headers: admin() }), 409);
    await expectProblem(await call(`/admin/reservations/rsv_1_${"0".repeat(32)}/release`, { method: "POST", headers: admin() }), 404);
    await expectProblem(await call(`/admin/reservations/${id}/release`, { method: "POST" }), 401);
    const avail = (await (await call(`/v1/availability?skus=${sku}`)).json()) as { items: { on_hand: number }[] };
    expect(avail.items[0]!.on_hand).toBe(4);
  });

  it("serves the per-minute series and the SLO report", async () => {
    await call("/v1/categories");
    const series = (await (await call("/admin/metrics/series?prefix=req.browse.&minutes=5", { headers: admin() })).json()) as { series: Record<string, number[]>; latency_bounds_ms: (number | null)[] };
    expect(series.series["req.browse.n"]).toHaveLength(5);
    expect(series.series["req.browse.n"]!.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(series.latency_bounds_ms.at(-1)).toBeNull();
    await expectProblem(await call("/admin/metrics/series?prefix=DROP%20TABLE", { headers: admin() }), 400);
    const slo = (await (await call("/admin/slo", { headers: admin() })).json()) as { objectives: { id: string }[] };
    expect(slo.objectives.map((o) => o.id)).toContain("availability.browse");
  });
});

describe("console affiliates", () => {
  const feed = (key: string) => call("/v1/feeds/products?limit=1", { headers: { authorization: `Bearer ${key}` } });
  const newKeyOf = (html: string) => /id="new-key" readonly="" value="([^"]+)"/.exec(html)?.[1];

  it("creates an affiliate with its key shown once; rotating at once refuses the old key; revoking refuses the new one", async () => {
    const { b } = await signIn(ADMIN_TOKEN);
    const csrf = await csrfOf(b, "/console/affiliates");
    const tracking = `cons${crypto.randomUUID().slice(0, 8)}`;
    const created = await post(b, "/console/affiliates", { _csrf: csrf, name: "Console Reviews", tracking_id: tracking, campaign: "", allowed_origins: "https://reviews.example", categories: "", brands: "Acme, Zenith", skus: "" });
    expect(created.status).toBe(200);
    const html = await created.text();
    const first = newKeyOf(html)!;
    expect(first).toMatch(/^aff_/);
    expect(created.headers.get("cache-control")).toBe("no-store");
    expect((await feed(first)).status).toBe(200);
    // The key is never shown again: not on the affiliate's page, not in the list.
    const id = `aff-${tracking}`;
    const detail = await (await get(b, `/console/affiliates/${id}`)).text();
    expect(detail).not.toContain(first);
    expect(detail).toContain(first.slice(0, 8));
    expect(await (await get(b, "/console/affiliates")).text()).not.toContain(first);
    const stored = await env.DB.prepare("SELECT count(*) AS n FROM api_keys WHERE affiliate_id = ? AND key_hash = ?").bind(id, first).first<{ n: number }>();
    expect(stored!.n).toBe(0);

    const rotated = await post(b, `/console/affiliates/${id}/rotate`, { _csrf: csrf, grace_seconds: "0", label: "" });
    expect(rotated.status).toBe(200);
    const second = newKeyOf(await rotated.text())!;
    expect(second).toMatch(/^aff_/);
    expect(second).not.toBe(first);
    await expectProblem(await feed(first), 401);
    expect((await feed(second)).status).toBe(200);

    const keys = (await (await call(`/admin/affiliates/${id}`, { headers: admin() })).json()) as { keys: { id: string; prefix: string; state: string }[] };
    const live = keys.keys.find((k) => second.startsWith(k.prefix) && k.state === "active")!;
    expect((await post(b, `/console/affiliates/${id}/revoke`, { _csrf: csrf, key_id: live.id })).status).toBe(303);
    await expectProblem(await feed(second), 401);
    const after = await (await get(b, `/console/affiliates/${id}`)).text();
    expect(after).toMatch(new RegExp(`data-key="${live.id}" data-state="revoked"`));
  });

  it("lists affiliates with scope, usable keys and real click counts from the click redirect (API and page)", async () => {
    const p = await insertProduct(env.DB, { base: 71 });
    const tracking = `clk${crypto.randomUUID().slice(0, 8)}`;
    const res = await json("POST", "/admin/affiliates", { name: "Clicker", tracking_id: tracking, scope: { categories: [p.categoryId] } }, admin());
    expect(res.status).toBe(201);
    const { affiliate } = (await res.json()) as { affiliate: { id: string } };
    for (let i = 0; i < 3; i++) expect((await call(`/r/${tracking}/${p.id}`, { redirect: "manual" })).status).toBe(302);
    // A click older than a day counts in 7 and 30 days only.
    await env.DB.prepare("INSERT INTO clicks (affiliate_id, product_id, at, country) VALUES (?, ?, ?, NULL)").bind(affiliate.id, p.id, Date.now() - 3 * 86_400_000).run();

    type Page = { items: { affiliate: { id: string; scope: { categories?: string[] } }; keys: { state: string }[]; retired_keys: number; clicks: { last_24h: number; last_7d: number; last_30d: number } }[]; next_cursor: string | null };
    const all: Page["items"] = [];
    let cursor: string | null = null;
    do {
      const page = (await (await call(`/admin/affiliates?limit=2${cursor ? `&cursor=${cursor}` : ""}`, { headers: admin() })).json()) as Page;
      expect(page.items.length).toBeLessThanOrEqual(2);
      all.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    expect(new Set(all.map((i) => i.affiliate.id)).size).toBe(all.length);
    const mine = all.find((i) => i.affiliate.id === affiliate.id)!;
    expect(mine.clicks).toMatchObject({ last_24h: 3, last_7d: 4, last_30d: 4 });
    expect(mine.affiliate.scope.categories).toEqual([p.categoryId]);
    expect(mine.keys.map((k) => k.state)).toEqual(["active"]);

    const clicks = (await (await call(`/admin/affiliates/${affiliate.id}/clicks`, { headers: admin() })).json()) as { per_day: { clicks: number }[]; top_products: { product_id: string; clicks: number }[] };
    expect(clicks.per_day).toHaveLength(14);
    expect(clicks.per_day.at(-1)!.clicks).toBe(3);
    expect(clicks.per_day.reduce((n, d) => n + d.clicks, 0)).toBe(4);
    expect(clicks.top_products).toEqual([{ product_id: p.id, clicks: 4 }]);
    await expectProblem(await call("/admin/affiliates/nobody-here/clicks", { headers: admin() }), 404);
    await expectProblem(await call("/admin/affiliates?limit=0", { headers: admin() }), 400);
    await expectProblem(await call("/admin/affiliates"), 401);

    const { b } = await signIn(VIEWER_TOKEN);
    const html = await (await get(b, "/console/affiliates?cursor=" + encodeURIComponent(affiliate.id.slice(0, -1)))).text();
    expect(html).toMatch(new RegExp(`data-affiliate="${affiliate.id}"[\\s\\S]*?data-field="clicks_24h">3<`));
    // A viewer cannot create, rotate or revoke.
    const csrf = hidden(html, "_csrf")!;
    expect((await post(b, `/console/affiliates/${affiliate.id}/rotate`, { _csrf: csrf, grace_seconds: "0" })).status).toBe(403);
    expect((await post(b, "/console/affiliates", { _csrf: csrf, name: "x", tracking_id: "viewerattempt" })).status).toBe(403);
  });

  it("an edit with a stale If-Match is refused with 412 and shows what changed", async () => {
    const tracking = `edt${crypto.randomUUID().slice(0, 8)}`;
    const res = await json("POST", "/admin/affiliates", { name: "Before", tracking_id: tracking }, admin());
    const { affiliate } = (await res.json()) as { affiliate: { id: string } };
    const { b } = await signIn(ADMIN_TOKEN);
    const html = await (await get(b, `/console/affiliates/${affiliate.id}`)).text();
    const form = { _csrf: hidden(html, "_csrf")!, if_match: hidden(html, "if_match")!, seen: hidden(html, "seen")!.replace(/&quot;/g, '"'), name: "Mine", status: "active", campaign: "", allowed_origins: "", categories: "", brands: "", skus: "" };
    expect((await json("PATCH", `/admin/affiliates/${affiliate.id}`, { status: "suspended" }, admin())).status).toBe(200);
    const stale = await post(b, `/console/affiliates/${affiliate.id}/edit`, form);
    expect(stale.status).toBe(412);
    expect(await stale.text()).toMatch(/status: &quot;active&quot; → &quot;suspended&quot;/);
    const now = (await (await call(`/admin/affiliates/${affiliate.id}`, { headers: admin() })).json()) as { affiliate: { name: string; status: string } };
    expect(now.affiliate).toMatchObject({ name: "Before", status: "suspended" });
  });
});

describe("console recommendations", () => {
  it("edits pins with If-Match: the pinned product leads the stored list; a stale form is 412 with what changed", async () => {
    const [a, b1, b2] = [await insertProduct(env.DB, { base: 81 }), await insertProduct(env.DB, { base: 82 }), await insertProduct(env.DB, { base: 83 })];
    const { b } = await signIn(ADMIN_TOKEN);
    const html = await (await get(b, `/console/recommendations?product=${a.id}`)).text();
    expect(html).toContain("no pins yet");
    const form = { _csrf: hidden(html, "_csrf")!, if_match: hidden(html, "if_match")!, seen: hidden(html, "seen")!.replace(/&quot;/g, '"'), complementary: `${b1.id}\n`, related: "", exclude: b2.id };
    expect(form.if_match).toBe("");
    expect((await post(b, `/console/recommendations/${a.id}/pins`, form)).status).toBe(303);
    const view = (await (await call(`/admin/products/${a.id}/recommendations`, { headers: admin() })).json()) as { pins: { complementary: string[]; exclude: string[]; version: number }; lists: { complementary: { items: { id: string; reason: string }[] } } };
    expect(view.pins).toMatchObject({ complementary: [b1.id], exclude: [b2.id], version: 1 });
    expect(view.lists.complementary.items[0]).toMatchObject({ id: b1.id, reason: "pinned" });
    expect(view.lists.complementary.items.map((i) => i.id)).not.toContain(b2.id);

    // The page now carries version 1; another operator saves version 2 first.
    const fresh = await (await get(b, `/console/recommendations?product=${a.id}`)).text();
    expect(fresh).toMatch(new RegExp(`data-item="${b1.id}"`));
    const form1 = { ...form, if_match: hidden(fresh, "if_match")!, seen: hidden(fresh, "seen")!.replace(/&quot;/g, '"'), complementary: b2.id, exclude: "" };
    expect(form1.if_match).toBe("1");
    expect((await json("PUT", `/admin/products/${a.id}/recommendations`, { complementary: [], related: [b1.id], exclude: [] }, admin({ "if-match": '"1"' }))).status).toBe(200);
    const stale = await post(b, `/console/recommendations/${a.id}/pins`, form1);
    expect(stale.status).toBe(412);
    const text = await stale.text();
    expect(text).toContain(`complementary: ${b1.id} → none`);
    expect(text).toContain(`related: none → ${b1.id}`);
    // The stale form wrote nothing; the old form without If-Match (made when no pins existed) is refused too.
    expect((await post(b, `/console/recommendations/${a.id}/pins`, form)).status).toBe(412);
    const now = (await (await call(`/admin/products/${a.id}/recommendations`, { headers: admin() })).json()) as { pins: { related: string[]; complementary: string[]; version: number } };
    expect(now.pins).toMatchObject({ complementary: [], related: [b1.id], version: 2 });
    // Unknown ids are refused with the API's message.
    const bad = await post(b, `/console/recommendations/${a.id}/pins`, { ...form1, if_match: "2", complementary: "p-does-not-exist" });
    expect(bad.status).toBe(303);
    expect(flashOf(b)).toContain("Unknown product ids: p-does-not-exist");
  });

  it("starts a rebuild from the console and its progress panel reaches completion; a viewer cannot start one", async () => {
    await insertProduct(env.DB, { base: 84 });
    const { b } = await signIn(ADMIN_TOKEN);
    const csrf = await csrfOf(b, "/console/recommendations");
    const started = await post(b, "/console/recommendations/rebuild", { _csrf: csrf });
    expect(started.status).toBe(303);
    const jobId = /Rebuild (rebuild-[\w-]+) started/.exec(flashOf(b))?.[1];
    expect(jobId).toBeTruthy();
    await vi.waitFor(
      async () => {
        const panel = await (await get(b, "/console/recommendations/progress")).text();
        expect(panel).toContain('data-state="idle"');
        expect(panel).toContain(`Last rebuild ${jobId} finished`);
      },
      { timeout: 10_000, interval: 100 },
    );
    const status = (await (await call("/admin/recommendations/rebuild", { headers: admin() })).json()) as { rebuild_running: unknown; last_rebuild: { id: string; processed: number; total: number; status: string } };
    expect(status.rebuild_running).toBeNull();
    expect(status.last_rebuild).toMatchObject({ id: jobId, status: "completed" });
    expect(status.last_rebuild.processed).toBe(status.last_rebuild.total);
    expect(status.last_rebuild.total).toBeGreaterThan(0);

    const { b: viewer } = await signIn(VIEWER_TOKEN);
    const vcsrf = await csrfOf(viewer, "/console/recommendations");
    expect((await post(viewer, "/console/recommendations/rebuild", { _csrf: vcsrf })).status).toBe(403);
  });
});

describe("console promotions", () => {
  type Promo = { id: string; version: number; name: string; starts_at: string; ends_at: string | null };
  async function apiPromotion(startsAt: string, endsAt: string): Promise<Promo> {
    const p = await insertProduct(env.DB);
    const res = await json("POST", "/admin/promotions", { name: "Seconds", starts_at: startsAt, ends_at: endsAt, target: { type: "products", values: [p.id] }, value: { type: "percent_off", bps: 1000 } }, admin());
    expect(res.status).toBe(201);
    return res.json<Promo>();
  }
  const stored = async (id: string) => (await call(`/admin/promotions/${id}`, { headers: admin() })).json<Promo>();
  /** The edit form as the page renders it, submitted with `changes`. */
  async function submitEdit(b: Browser, id: string, changes: Record<string, string>, omit: string[] = []): Promise<Response> {
    const html = await (await get(b, `/console/promotions/${id}`)).text();
    const form = /<form[^>]*action="\/console\/promotions\/[^"]*\/edit"[\s\S]*?<\/form>/.exec(html)![0];
    const fields = Object.fromEntries([...form.matchAll(/<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    for (const name of omit) delete fields[name];
    return post(b, `/console/promotions/${id}/edit`, { ...fields, ...changes });
  }

  it("a rename keeps starts_at and ends_at to the millisecond; an edited end keeps the seconds it is given", async () => {
    const t = Math.ceil(Date.now() / 60_000) * 60_000 + 3_600_000;
    const startsAt = new Date(t + 30_500).toISOString();
    const endsAt = new Date(t + 86_400_000 + 45_250).toISOString(); // 23:59:59-style ends: seconds and milliseconds
    const promo = await apiPromotion(startsAt, endsAt);
    const { b } = await signIn(ADMIN_TOKEN);

    expect((await submitEdit(b, promo.id, { name: "Renamed" })).status).toBe(303);
    expect(await stored(promo.id)).toMatchObject({ name: "Renamed", starts_at: startsAt, ends_at: endsAt, version: promo.version + 1 });
    // The page shows the end to the millisecond, with a step the browser accepts it at.
    const html = await (await get(b, `/console/promotions/${promo.id}`)).text();
    expect(html).toContain(`name="ends_at" type="datetime-local" value="${endsAt.slice(0, 23)}" step="0.001"`);

    // A page of an older console (no ends_at_shown) still saves the end it shows, now to the millisecond.
    expect((await submitEdit(b, promo.id, { name: "Older page" }, ["ends_at_shown"])).status).toBe(303);
    expect(await stored(promo.id)).toMatchObject({ name: "Older page", ends_at: endsAt });

    const newEnd = new Date(t + 2 * 86_400_000 + 59_000).toISOString().slice(0, 19);
    expect((await submitEdit(b, promo.id, { ends_at: newEnd })).status).toBe(303);
    expect(await stored(promo.id)).toMatchObject({ starts_at: startsAt, ends_at: `${newEnd}.000Z` });
    expect((await submitEdit(b, promo.id, { ends_at: "" })).status).toBe(303);
    expect((await stored(promo.id)).ends_at).toBeNull();
  });

  it("an impossible date in the create or edit form is a 400 page naming the field, and nothing is written", async () => {
    const t = Math.ceil(Date.now() / 60_000) * 60_000 + 3_600_000;
    const promo = await apiPromotion(new Date(t).toISOString(), new Date(t + 86_400_000).toISOString());
    const { b } = await signIn(ADMIN_TOKEN);
    for (const bad of ["2026-13-01T00:00", "2026-02-30T10:00", "2026-06-01T25:00", "2026-06-01T10:00:60"]) {
      const edit = await submitEdit(b, promo.id, { ends_at: bad });
      expect(edit.status, bad).toBe(400);
      expect(await edit.text()).toMatch(/ends_at: must be a date and time that exists/);
      const csrf = await csrfOf(b, "/console/promotions");
      const form = { _csrf: csrf, name: "Impossible", starts_at: bad, ends_at: "", target_type: "products", target_values: "p-x", value_type: "percent_off", percent: "10", intent: "create" };
      const created = await post(b, "/console/promotions", form);
      expect(created.status, bad).toBe(400);
      expect(await created.text()).toMatch(/starts_at: must be a date and time that exists/);
    }
    expect(await stored(promo.id)).toMatchObject({ version: promo.version, ends_at: new Date(t + 86_400_000).toISOString() });
  });
});

describe("console URLs with ids no record can have", () => {
  it("an over-long id in any console page or form URL is a 400 page, never a 500", async () => {
    const { b } = await signIn(ADMIN_TOKEN);
    const csrf = await csrfOf(b);
    const long = "a".repeat(1000);
    const statuses: Record<string, number> = {};
    for (const path of [`/console/products/${long}`, `/console/promotions/${long}`, `/console/affiliates/${long}`]) {
      const res = await get(b, path);
      statuses[`GET ${path.slice(0, 30)}`] = res.status;
      if (res.status === 400) expect(await res.text()).toMatch(/Invalid input/);
    }
    const writes = [
      ...["edit", "archive"].map((a) => `/console/products/${long}/${a}`),
      ...["edit", "end"].map((a) => `/console/promotions/${long}/${a}`),
      ...["rotate", "revoke", "edit"].map((a) => `/console/affiliates/${long}/${a}`),
      ...["set", "adjust", "hot", "unhot", "release"].map((a) => `/console/stock/${"S".repeat(200)}/${a}`),
      `/console/recommendations/${long}/pins`,
    ];
    for (const path of writes) statuses[`POST ${path.replace(/(a{8}|S{8})\1+/, "…")}`] = (await post(b, path, { _csrf: csrf, if_match: "1" })).status;
    expect(Object.entries(statuses).filter(([, s]) => s !== 400)).toEqual([]);
  });
});
