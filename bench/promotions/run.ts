/**
 * Promotions benchmark against a real `wrangler dev` (its own port and --persist-to):
 *   npx tsx bench/promotions/run.ts --products 10000 --promotions 10000 --lag-promotions 50 --rounds 3
 *
 * 1. Product read cost with 0 vs 10,000 active promotions. The two states alternate over several rounds
 *    (none, many, many, none, none, many…), each on a fresh `wrangler dev` start over the same database (the
 *    10,000 promotions are inserted or deleted in between), and the samples of each state are pooled: drift of
 *    the machine's load hits both states alike. Every round reads products never read before (a shuffled
 *    catalog is dealt out), so the D1 case really loads documents (where promotions are looked up), and a KV
 *    case re-reads warmed documents in other currency/locale variants.
 * 2. Boundary lag: N promotions created through the admin API with starts_at staggered ahead, each on its own
 *    product whose page is cached at the edge beforehand, while the 10,000 others are active (they started an
 *    hour ago and were switched then). A poller per promotion reads the public product page from just before
 *    starts_at until it shows the new price; the lag is the time the first new-price response arrived minus
 *    starts_at (it includes the request's own latency). It also counts requests SENT after starts_at that
 *    still got the old price (must be 0), and measures the same for the listing
 *    (`GET /v1/products?brand=…&min_price=…&max_price=…`), whose price comes from products.min_prices and so
 *    depends on the PromotionClock alarm switching it.
 */
import { mkdirSync, rmSync, writeFileSync, cpSync, existsSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { mulberry32, product } from "../../src/seed/generate";
import { buildOnce, sh, startDevServer } from "../lib/dev-server";
import { fmt, percentile } from "../lib/stats";
import { benchArgs } from "../lib/args";

const args = benchArgs({
  products: 10000,
  promotions: 10000,
  "lag-promotions": 50,
  "d1-reads": 150,
  "kv-products": 30,
  rounds: 3,
  concurrency: 4,
  port: 8799,
  phases: "reads,lag",
  spacing: 1000,
});
const PORT = args.port;
const ORIGIN = `http://127.0.0.1:${PORT}`;
const N = args.products;
const PROMOS = args.promotions;
const LAG_N = args["lag-promotions"];
const CONC = args.concurrency;
const ROUNDS = args.rounds;
/** Gap between consecutive promotion starts. */
const SPACING = args.spacing;
const PHASES = new Set(args.phases.split(","));
const ADMIN = "bench-admin-token";
const PERSIST = path.resolve(".wrangler/bench-promotions");
const pid = (n: number) => `p-${String(n).padStart(6, "0")}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
};

let token = 0;
/** Each request its own bearer token: the per-client rate limiter must not throttle the benchmark itself. */
const get = (p: string) => fetch(ORIGIN + p, { headers: { authorization: `Bearer bench-${(token++ % 4096).toString(36)}` } });

// ---- wrangler dev -----------------------------------------------------------------------------------------

/**
 * The Worker is bundled once per run and served with --no-bundle: `wrangler dev` on the sources would restart
 * the Worker whenever anyone edits a file in this shared tree (a 503 mid-request, and a cold isolate).
 */
const BUILD = path.resolve(".wrangler/bench-promotions-build");
let ENTRY = "";

async function withDev<T>(work: () => Promise<T>): Promise<T> {
  const dev = await startDevServer({ port: PORT, persist: PERSIST, entry: ENTRY, vars: { ADMIN_TOKEN: ADMIN }, healthTries: 720 });
  try {
    return await work();
  } finally {
    dev.stop();
    await sleep(1500);
  }
}

// ---- setup ------------------------------------------------------------------------------------------------

function prepare() {
  const shared = path.resolve(".wrangler/bench-catalog-10000/v3/d1");
  if (!existsSync(path.join(PERSIST, "v3/d1"))) {
    mkdirSync(path.join(PERSIST, "v3"), { recursive: true });
    if (N === 10_000 && existsSync(shared)) cpSync(shared, path.join(PERSIST, "v3/d1"), { recursive: true });
  }
  ENTRY = buildOnce(BUILD);
  sh(["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", PERSIST]);
  sh(["tsx", "scripts/seed.ts", "--products", String(N), "--persist", PERSIST, "--if-empty"]);
  // Every run starts cold and without promotions: no KV documents or cached pages from a previous run.
  rmSync(path.join(PERSIST, "v3/kv"), { recursive: true, force: true });
  rmSync(path.join(PERSIST, "v3/cache"), { recursive: true, force: true });
  rmSync(path.join(PERSIST, "v3/do"), { recursive: true, force: true });
  removePromotions();
}

function execSql(sqlText: string) {
  const file = path.resolve(`.wrangler/tmp/bench-promotions-${process.pid}.sql`);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, sqlText);
  sh(["wrangler", "d1", "execute", "DB", "--local", "--yes", "--persist-to", PERSIST, "--file", file]);
  rmSync(file, { force: true });
}

function removePromotions() {
  execSql("DELETE FROM promotion_targets; DELETE FROM promotions; DELETE FROM meta WHERE key = 'promotions:switched_through';");
}

/**
 * `count` active promotions: promotion i covers every variant of product i (all products of the catalog).
 * They started an hour ago and the switch watermark says so, as it would had the PromotionClock switched them
 * then: the lag phase must measure its own boundaries, not a first switch of every product in the catalog.
 */
function insertPromotions(count: number, now: number) {
  const q = (s: string) => `'${s.replace(/'/g, "''")}'`;
  const lines: string[] = [];
  const promoRows: string[] = [];
  const targetRows: string[] = [];
  const startedAt = now - 3_600_000;
  for (let i = 1; i <= count; i++) {
    const n = ((i - 1) % N) + 1;
    const id = `bench-active-${i}`;
    promoRows.push(
      `(${q(id)}, ${q(`Bench ${i}`)}, ${startedAt}, ${now + 86_400_000}, 'products', ${q(JSON.stringify([pid(n)]))}, 'percent_off', '{"bps":${500 + (i % 20) * 100}}', ${i % 7}, '[]', '[]', ${startedAt}, ${startedAt}, 1)`,
    );
    for (const v of product(n).variants) targetRows.push(`(${q(id)}, ${q(v.sku)}, ${q(pid(n))})`);
  }
  for (let i = 0; i < promoRows.length; i += 400) {
    lines.push(
      `INSERT INTO promotions (id, name, starts_at, ends_at, target_type, target_values, value_type, value, priority, currencies, markets, created_at, updated_at, version) VALUES ${promoRows.slice(i, i + 400).join(",\n")};`,
    );
  }
  for (let i = 0; i < targetRows.length; i += 400) lines.push(`INSERT INTO promotion_targets (promotion_id, sku, product_id) VALUES ${targetRows.slice(i, i + 400).join(",\n")};`);
  lines.push(
    `INSERT INTO meta (key, value, updated_at) VALUES ('promotions:switched_through', '${now}', ${now}) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at;`,
  );
  execSql(lines.join("\n"));
}

// ---- phase 1: read cost -----------------------------------------------------------------------------------

/** Runs `paths` with CONC concurrent workers, each path once; returns latencies and the tiers that answered. */
async function readAll(paths: string[]): Promise<{ ms: number[]; tiers: Record<string, number> }> {
  const ms: number[] = [];
  const tiers: Record<string, number> = {};
  let i = 0;
  await Promise.all(
    Array.from({ length: CONC }, async () => {
      while (i < paths.length) {
        const p = paths[i++]!;
        const t = performance.now();
        const res = await get(p);
        await res.arrayBuffer();
        ms.push(performance.now() - t);
        const tier = res.headers.get("x-cache-tier") ?? String(res.status);
        tiers[tier] = (tiers[tier] ?? 0) + 1;
      }
    }),
  );
  return { ms, tiers };
}

/** The catalog in a fixed shuffled order, dealt out so that no product is read cold twice in a run. */
const deck = (() => {
  const rng = mulberry32(20261125);
  const a = Array.from({ length: N }, (_, i) => i + 1);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
})();
let dealt = 0;
function deal(count: number): number[] {
  if (dealt + count > deck.length) throw new Error(`the catalog (${N}) is too small for this many cold reads`);
  dealt += count;
  return deck.slice(dealt - count, dealt);
}

type Samples = { d1: number[]; kv: number[]; d1Tiers: Record<string, number>; kvTiers: Record<string, number> };
const emptySamples = (): Samples => ({ d1: [], kv: [], d1Tiers: {}, kvTiers: {} });
const addTiers = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};

async function readRound(into: Samples): Promise<void> {
  const d1Count = args["d1-reads"];
  const kvCount = args["kv-products"];
  await readAll(deal(20).map((n) => `/v1/products/${pid(n)}?currency=EUR&locale=de`)); // isolate warm-up
  const d1 = await readAll(deal(d1Count).map((n) => `/v1/products/${pid(n)}?currency=USD&locale=en`));
  const kvIds = deal(kvCount);
  await readAll(kvIds.map((n) => `/v1/products/${pid(n)}?currency=USD&locale=en`));
  await sleep(2000); // KV write-backs run after the responses
  const kvPaths: string[] = [];
  for (const cur of ["EUR", "GBP"]) for (const loc of ["en", "de", "fr"]) for (const n of kvIds) kvPaths.push(`/v1/products/${pid(n)}?currency=${cur}&locale=${loc}`);
  const kv = await readAll(kvPaths);
  into.d1.push(...d1.ms);
  into.kv.push(...kv.ms);
  addTiers(into.d1Tiers, d1.tiers);
  addTiers(into.kvTiers, kv.tiers);
}

// ---- phase 2: boundary lag --------------------------------------------------------------------------------

type Lag = { product: number; lagMs: number; sentLagMs: number; staleAfterStart: number; listingLagMs: number; listingSentLagMs: number; listingStale: number };

async function boundaryLag(): Promise<Lag[]> {
  // Promotion writes are slow on a loaded 2-core machine (~1 s each): create them 5 at a time, well ahead.
  const lead = 30_000 + LAG_N * 300;
  const t0 = Date.now() + lead;
  const targets = Array.from({ length: LAG_N }, (_, i) => 1 + ((i * 197 + 4_321) % N));
  // Cache every page at the edge first: the copy must not outlive the boundary.
  await readAll(targets.map((n) => `/v1/products/${pid(n)}?currency=USD&locale=en`));
  const plans: { n: number; startsAt: number; expected: number; brand: string }[] = [];
  let next = 0;
  const create = async () => {
    while (next < targets.length) {
      const i = next++;
      const n = targets[i]!;
      const startsAt = t0 + i * SPACING;
      const send = () => fetch(`${ORIGIN}/admin/promotions`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        body: JSON.stringify({
          id: `bench-lag-${t0}-${i}`,
          name: `Lag ${i}`,
          starts_at: new Date(startsAt).toISOString(),
          ends_at: new Date(startsAt + 600_000).toISOString(),
          target: { type: "products", values: [pid(n)] },
          value: { type: "fixed_price", amounts: { USD: 100 + i } },
          priority: 1_000_000,
        }),
      });
      let res = await send();
      // A 503 (overloaded local runtime) is retried; the explicit id makes a retry of a committed write a 409.
      for (let attempt = 0; res.status === 503 && attempt < 3; attempt++) res = await send();
      if (res.status !== 201 && res.status !== 409) throw new Error(`create promotion: ${res.status} ${await res.text()}`);
      plans.push({ n, startsAt, expected: 100 + i, brand: product(n).brand });
    }
  };
  await Promise.all(Array.from({ length: 5 }, create));
  if (Date.now() > t0 - 1_000) throw new Error("promotions were created too slowly for their start times; raise the lead");
  await readAll(targets.map((n) => `/v1/products/${pid(n)}?currency=USD&locale=en`)); // re-cache (the writes purged)

  // Pollers pause between requests so that they measure the switch, not a queue they build themselves.
  const poll = async (url: string, startsAt: number, isNew: (body: string) => boolean, pauseMs: number) => {
    await sleep(Math.max(0, startsAt - 300 - Date.now()));
    let stale = 0;
    for (;;) {
      const sent = Date.now();
      const body = await (await get(url)).text();
      const received = Date.now();
      // sentLag: when the first read that saw the new price was issued (0 if issued before starts_at).
      if (isNew(body)) return { lag: received - startsAt, sentLag: Math.max(0, sent - startsAt), stale };
      if (sent >= startsAt) stale++;
      await sleep(pauseMs);
      if (received - startsAt > 30_000) return { lag: Infinity, sentLag: Infinity, stale };
    }
  };
  return Promise.all(
    plans.map(async (p) => {
      const page = poll(`/v1/products/${pid(p.n)}?currency=USD&locale=en`, p.startsAt, (b) => b.includes(`"amount":${p.expected},`), 20);
      const listingUrl = `/v1/products?currency=USD&locale=en&brand=${encodeURIComponent(p.brand)}&min_price=${p.expected}&max_price=${p.expected}&limit=100`;
      const listing = poll(listingUrl, p.startsAt, (b) => b.includes(`"id":"${pid(p.n)}"`), 100);
      const [a, b] = await Promise.all([page, listing]);
      return { product: p.n, lagMs: a.lag, sentLagMs: a.sentLag, staleAfterStart: a.stale, listingLagMs: b.lag, listingSentLagMs: b.sentLag, listingStale: b.stale };
    }),
  );
}

// ---- main -------------------------------------------------------------------------------------------------

async function main() {
  const loadBefore = loadavg()[0]!.toFixed(1);
  console.error("bench: preparing", PERSIST);
  prepare();
  const none = emptySamples();
  const many = emptySamples();
  let hasPromotions = false;
  const setPromotions = (on: boolean) => {
    if (on === hasPromotions) return;
    if (on) insertPromotions(PROMOS, Date.now());
    else removePromotions();
    hasPromotions = on;
  };
  if (PHASES.has("reads")) {
    // ABBA order: none, many | many, none | none, many…, so neither state always runs first or last.
    for (let r = 0; r < ROUNDS; r++) {
      for (const on of r % 2 === 0 ? [false, true] : [true, false]) {
        setPromotions(on);
        console.error(`bench: round ${r + 1}/${ROUNDS}, ${on ? PROMOS : 0} promotions`);
        await withDev(() => readRound(on ? many : none));
      }
    }
  }
  let lags: Lag[] = [];
  if (PHASES.has("lag")) {
    setPromotions(true);
    console.error(`bench: boundary lag over ${LAG_N} scheduled promotions`);
    lags = await withDev(boundaryLag);
  }

  const f = (x: number) => fmt(x, 1);
  const sections: string[] = [];
  if (PHASES.has("lag")) {
    const page = stats(lags.map((l) => l.lagMs));
    const pageSent = stats(lags.map((l) => l.sentLagMs));
    const listing = stats(lags.map((l) => l.listingLagMs));
    const listingSent = stats(lags.map((l) => l.listingSentLagMs));
    const staleReads = lags.reduce((s, l) => s + l.staleAfterStart, 0);
    const staleListing = lags.reduce((s, l) => s + l.listingStale, 0);
    sections.push(`## Boundary lag (starts_at → the public API returns the new price), with ${PROMOS.toLocaleString("en")} other active promotions

${LAG_N} promotions created through \`POST /admin/promotions\`, starts staggered ${SPACING} ms apart, each on its own product whose
page was cached at the edge beforehand. A page poller pauses 20 ms between requests, a listing poller 100 ms.
- *arrival lag* = arrival of the first response with the new price − starts_at (includes that request's own latency);
- *send lag* = when that first new-price request was issued − starts_at (0 when issued before starts_at): how late the
  switch was visible, independent of response time;
- *stale* = requests issued at or after starts_at that still got the old price (must be 0 for the page; the listing
  depends on the switch).

| read | arrival p50 ms | arrival p95 | arrival p99 | arrival max | send-lag p50 ms | send-lag p99 | stale |
|---|---|---|---|---|---|---|---|
| product page \`GET /v1/products/:id\` | ${f(page.p50)} | ${f(page.p95)} | ${f(page.p99)} | ${f(page.max)} | ${f(pageSent.p50)} | ${f(pageSent.p99)} | ${staleReads} |
| listing filtered on the new price (\`min_prices\`, switched by the PromotionClock alarm) | ${f(listing.p50)} | ${f(listing.p95)} | ${f(listing.p99)} | ${f(listing.max)} | ${f(listingSent.p50)} | ${f(listingSent.p99)} | ${staleListing} |

Target: product page p99 < 1 s (arrival) → **${page.p99 < 1000 ? "met" : "NOT met"}** (p99 ${f(page.p99)} ms).
`);
  }
  if (PHASES.has("reads")) {
    const tiers = (t: Record<string, number>) => Object.entries(t).map(([k, v]) => `${k} ${v}`).join(", ");
    const row = (label: string, sm: Samples, which: "d1" | "kv") => {
      const st = stats(sm[which]);
      return `| ${label} | ${which === "d1" ? "D1 miss (document load)" : "KV hit (edge miss)"} | ${st.n} | ${f(st.p50)} | ${f(st.p95)} | ${f(st.p99)} | ${tiers(which === "d1" ? sm.d1Tiers : sm.kvTiers)} |`;
    };
    const ratio = (which: "d1" | "kv", p: 50 | 99) => {
      const a = stats(many[which]);
      const b = stats(none[which]);
      return (p === 99 ? a.p99 / b.p99 : a.p50 / b.p50).toFixed(2);
    };
    const label = `${PROMOS.toLocaleString("en")} active promotions`;
    sections.push(`## Product read cost: ${label} vs none (same run)

${ROUNDS} rounds per state, alternating (ABBA), each round on a fresh \`wrangler dev\` start; samples pooled per state.

| promotions | case | requests | p50 ms | p95 ms | p99 ms | answered by |
|---|---|---|---|---|---|---|
${row("0 promotions", none, "d1")}
${row(label, many, "d1")}
${row("0 promotions", none, "kv")}
${row(label, many, "kv")}

p99 with ${label} ÷ with none: D1 miss **${ratio("d1", 99)}**, KV hit **${ratio("kv", 99)}** (target ≤ 1.1); p50: D1 miss ${ratio("d1", 50)}, KV hit ${ratio("kv", 50)}.

- Every product of the catalog has an active promotion in the promoted state (promotion i covers all variants of product i),
  so each read in it renders a promoted price; a product read only ever touches its own promotions (\`promotion_targets\` by
  product id, embedded in the document), never the whole set.
`);
  }
  const report = `# Promotions benchmark${PHASES.has("reads") ? "" : " (boundary lag only)"}

Command: \`npx tsx bench/promotions/run.ts --products ${N} --promotions ${PROMOS} --lag-promotions ${LAG_N} --spacing ${SPACING} --phases ${args.phases} --rounds ${ROUNDS} --d1-reads ${args["d1-reads"]} --kv-products ${args["kv-products"]} --concurrency ${CONC}\`
(${new Date().toISOString()}; a bundle of the Worker served by wrangler dev on ${ORIGIN}, local D1/KV/Cache under \`.wrangler/bench-promotions\`; ${N.toLocaleString("en")} seeded products.)

2-core machine, load generator and runtime together (1-minute load average ${loadBefore} before, ${loadavg()[0]!.toFixed(1)} after):
absolute numbers are noisy; the ratios compare states measured in the same run.

${sections.join("\n")}`;
  const out = PHASES.has("reads") && PHASES.has("lag") ? "bench/results/promotions.md" : `bench/results/promotions-${[...PHASES].join("-")}.md`;
  mkdirSync("bench/results", { recursive: true });
  writeFileSync(out, report);
  console.log(report);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
