/**
 * Recommendations: read throughput/latency (edge hit and miss) against the product read in the same run,
 * and full-rebuild time at several catalog sizes. Runs a real `wrangler dev` (own port, own --persist-to).
 *
 *   npx tsx bench/recommendations/run.ts --sizes 10000,30000 --seconds 6 --connections 8
 *
 * For each size: fresh local D1, `scripts/seed.ts --products N`, the generated order history (seed
 * generator `orders()`) loaded as co-purchase/sales aggregates, `wrangler dev`, then
 * `POST /admin/recommendations/rebuild` timed until `/admin/metrics` reports it finished (the job's own
 * started→finished time). The read benchmark runs on the first size, after its rebuild.
 */
import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
// autocannon ships no types; only the few fields read here are declared.
// @ts-expect-error untyped module
import autocannonUntyped from "autocannon";
import { orders, productId } from "../../src/seed/generate";
import { percentile } from "../lib/stats";
import { benchArgs } from "../lib/args";

let token = 0;
type AutocannonResult = { latency: Record<string, number>; requests: { average: number; total: number }; non2xx: number; errors: number };
const autocannon = autocannonUntyped as (opts: {
  url: string;
  connections: number;
  duration: number;
  headers?: Record<string, string>;
  setupClient?: (client: Client) => void;
}) => Promise<AutocannonResult>;

const args = benchArgs({
  sizes: "10000,30000",
  seconds: 6,
  connections: 8,
  port: 8810,
  "orders-per-product": 0.5,
  /** Keep a database seeded by an earlier run of the same size (seeding dominates the run time). */
  reuse: false,
  out: "bench/results/recommendations.md",
  /**
   * Where an earlier bench left a seeded D1 database of the same size, `{size}` standing for it (e.g.
   * `.wrangler/bench-catalog-{size}`): copied instead of seeding when it exists, since seeding 100,000 products
   * through `wrangler d1 execute` takes about 35 minutes.
   */
  "seed-from": undefined,
  /** Skip the read benchmark (rebuild timing only). */
  "no-reads": false,
  /** Rounds the read rows alternate over (each row runs --seconds in total). */
  rounds: 3,
});
const ORIGIN = `http://127.0.0.1:${args.port}`;
let PERSIST = "";
const persistFor = (size: number) => path.resolve(`.wrangler/bench-recommendations-${size}`);
const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
const ADMIN_TOKEN = "bench-admin-token";
const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` };
const sizes = args.sizes.split(",").map(Number);
const connections = args.connections;
const seconds = args.seconds;
const rounds = args.rounds;

const sh = (args: string[]) => execFileSync("npx", ["--no-install", ...args], { env, stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 * 1024 * 1024 });

/** The generated order history as the aggregates the consumer would have built (API commits would take hours). */
function loadOrders(total: number): { orders: number; pairs: number } {
  const count = Math.round(total * args["orders-per-product"]);
  const pairs = new Map<string, number>();
  const units = new Map<string, number>();
  for (const o of orders(total, count)) {
    const ids = o.skus.map((s) => `p-${s.slice(4, 10)}`);
    for (const a of ids) {
      units.set(a, (units.get(a) ?? 0) + 1);
      for (const b of ids) if (a !== b) pairs.set(`${a}|${b}`, (pairs.get(`${a}|${b}`) ?? 0) + 1);
    }
  }
  const day = Math.floor(Date.now() / 86_400_000);
  const lines: string[] = [];
  const rows = [...pairs].map(([k, n]) => `('${k.split("|")[0]}','${k.split("|")[1]}',${n},0)`);
  for (let i = 0; i < rows.length; i += 500) lines.push(`INSERT INTO co_purchases (product_a, product_b, count, updated_at) VALUES ${rows.slice(i, i + 500).join(",")};`);
  const sales = [...units].map(([id, n]) => `('${id}','USD',${day},${n})`);
  for (let i = 0; i < sales.length; i += 500) lines.push(`INSERT INTO sales_daily (product_id, currency, day, units) VALUES ${sales.slice(i, i + 500).join(",")};`);
  const dir = path.resolve(".seed", `bench-rec-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "orders.sql");
  writeFileSync(file, lines.join("\n"));
  sh(["wrangler", "d1", "execute", "DB", "--local", "--yes", "--file", file, "--persist-to", PERSIST]);
  rmSync(dir, { recursive: true, force: true });
  return { orders: count, pairs: pairs.size };
}

function startDev() {
  const dev = spawn("npx", ["--no-install", "wrangler", "dev", "--port", String(args.port), "--ip", "127.0.0.1", "--persist-to", PERSIST, "--var", `ADMIN_TOKEN:${ADMIN_TOKEN}`, "--log-level", "error"], {
    env,
    detached: true,
    stdio: "ignore",
  });
  return () => {
    try {
      process.kill(-dev.pid!, "SIGTERM");
    } catch {
      /* gone */
    }
  };
}

async function waitUp() {
  for (let i = 0; i < 480; i++) {
    try {
      if ((await fetch(`${ORIGIN}/health`)).ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("wrangler dev did not start");
}

type Job = { id: string; processed: number; total: number; duration_ms: number | null };

async function rebuild(): Promise<{ job: Job; wallMs: number }> {
  const started = Date.now();
  const res = await fetch(`${ORIGIN}/admin/recommendations/rebuild`, { method: "POST", headers: ADMIN });
  const { job } = (await res.json()) as { job: Job };
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    // The local isolate is busy rebuilding and may answer late: a poll that fails is simply repeated.
    const m = (await fetch(`${ORIGIN}/admin/metrics`, { headers: ADMIN, signal: AbortSignal.timeout(60_000) })
      .then((r) => r.json())
      .catch(() => null)) as { recommendations?: { last_rebuild: Job | null; rebuild_running: Job | null } } | null;
    if (!m?.recommendations) continue;
    if (m.recommendations.last_rebuild?.id === job.id) return { job: m.recommendations.last_rebuild, wallMs: Date.now() - started };
    const r = m.recommendations.rebuild_running;
    if (r) process.stdout.write(`\r  rebuild ${r.processed}/${r.total}   `);
  }
}

type Result = { name: string; p50: number; p99: number; rps: number; non2xx: number; errors: number };
type Client = { setRequests: (r: { method: string; path: string; headers?: Record<string, string> }[]) => void; on: (event: "response", fn: (status: number, bytes: number, ms: number) => void) => void };

/** One row of the read table: a fixed URL (edge hits) or, per connection and round, URLs never read before (misses). */
type Row = { name: string; paths: (client: number) => string[] };
type Samples = { ms: number[]; requests: number; seconds: number; non2xx: number; errors: number };

/** Runs `row` for `duration` seconds and adds every response time to `into`. */
async function runRow(row: Row, duration: number, into: Samples): Promise<void> {
  let n = 0;
  const r = await autocannon({
    url: ORIGIN,
    connections,
    duration,
    setupClient: (client) => {
      const c = client as unknown as Client;
      const list = row.paths(n++);
      // Every request its own bearer token (the per-client rate limiter keys on it; 1,000 reads per 10 s per
      // client would otherwise throttle the benchmark itself): a one-URL (edge-hit) list is repeated to 4,096
      // entries; the miss lists are left as they are, since repeating them would turn misses into hits.
      const repeated = list.length === 1 ? Array.from({ length: 4096 }, () => list[0]!) : list;
      // Accept-Encoding as every browser and fetch() sends it (autocannon sends none). Without it, uncompressed
      // recommendation answers met 200-500 ms transport stalls in the local runtime that real clients never see
      // (measured: related miss p99 2.07x the product read without the header, 1.24x with it, same server).
      c.setRequests(repeated.map((p) => ({ method: "GET", path: p, headers: { authorization: `Bearer bench-${(token++).toString(36)}`, "accept-encoding": "gzip, deflate" } })));
      c.on("response", (status, _bytes, ms) => {
        into.ms.push(ms);
        if (status >= 300) into.non2xx++;
      });
    },
  });
  into.requests += r.requests.total;
  into.seconds += duration;
  into.errors += r.errors;
}

/**
 * The rows alternate over `rounds` rounds (the order reversed every other round), and each row's response
 * times are pooled: a slow stretch of the machine then hits every row alike instead of whichever ran in it.
 */
async function measureRows(rows: Row[], rounds: number): Promise<Result[]> {
  const samples = rows.map((): Samples => ({ ms: [], requests: 0, seconds: 0, non2xx: 0, errors: 0 }));
  const per = Math.max(2, Math.round(seconds / rounds));
  for (let r = 0; r < rounds; r++) {
    const order = rows.map((_, i) => i);
    if (r % 2 === 1) order.reverse();
    for (const i of order) await runRow(rows[i]!, per, samples[i]!);
  }
  return rows.map((row, i) => {
    const s = samples[i]!;
    const sorted = [...s.ms].sort((a, b) => a - b);
    return { name: row.name, p50: percentile(sorted, 50), p99: percentile(sorted, 99), rps: s.requests / s.seconds, non2xx: s.non2xx, errors: s.errors };
  });
}

/** Fresh ids for every connection of every round: each call deals the next `per` ids of the row's range. */
function distinct(from: number, per: number, make: (id: string) => string): (client: number) => string[] {
  let next = from;
  return () => {
    const start = next;
    next += per;
    return Array.from({ length: per }, (_, i) => make(productId(start + i)));
  };
}

async function main() {
  const loadBefore = loadavg()[0]!.toFixed(1);
  const rebuilds: { size: number; orders: number; pairs: number; seedS: number; job: Job; wallMs: number }[] = [];
  const reads: Result[] = [];
  for (const [i, size] of sizes.entries()) {
    PERSIST = persistFor(size);
    const t0 = Date.now();
    let o = { orders: Math.round(size * args["orders-per-product"]), pairs: 0 };
    if (!(args.reuse && existsSync(path.join(PERSIST, "seeded")))) {
      rmSync(PERSIST, { recursive: true, force: true });
      const seeded = args["seed-from"] ? path.resolve(args["seed-from"].replace("{size}", String(size)), "v3", "d1") : null;
      const copy = seeded !== null && existsSync(seeded);
      if (copy) cpSync(seeded, path.join(PERSIST, "v3", "d1"), { recursive: true });
      sh(["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", PERSIST]);
      if (!copy) sh(["tsx", "scripts/seed.ts", "--products", String(size), "--persist", PERSIST]);
      o = loadOrders(size);
      writeFileSync(path.join(PERSIST, "seeded"), JSON.stringify(o));
    } else {
      o = JSON.parse(readFileSync(path.join(PERSIST, "seeded"), "utf8")) as typeof o;
      // Migrations added since the database was seeded (indexes the read path relies on).
      sh(["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", PERSIST]);
      // A rebuild of a reused database must start from nothing, like the first one.
      sh(["wrangler", "d1", "execute", "DB", "--local", "--persist-to", PERSIST, "--command", "DELETE FROM recommendations; DELETE FROM jobs; DELETE FROM recommendation_refs;"]);
      rmSync(path.join(PERSIST, "v3", "kv"), { recursive: true, force: true });
      rmSync(path.join(PERSIST, "v3", "cache"), { recursive: true, force: true });
    }
    const seedS = (Date.now() - t0) / 1000;
    console.log(`size ${size}: seeded in ${seedS.toFixed(0)} s (${o.orders} orders, ${o.pairs} pairs)`);
    const stop = startDev();
    process.on("exit", stop);
    try {
      await waitUp();
      const r = await rebuild();
      console.log(`\n  rebuild: ${r.job.duration_ms} ms (wall ${r.wallMs} ms)`);
      rebuilds.push({ size, ...o, seedS, ...r });
      if (i === 0 && !args["no-reads"]) {
        const warm = "p-000042";
        // Warm the edge copies the hit rows read.
        for (const p of [`/v1/products/${warm}`, `/v1/products/${warm}/recommendations?intent=related`, `/v1/products/${warm}/recommendations?intent=complementary`]) await (await fetch(ORIGIN + p)).text();
        const fixed = (p: string) => () => [p];
        // Ids dealt out per connection and round: enough for a round, never read twice.
        const per = Math.floor(size / 3 / (connections * rounds));
        reads.push(
          ...(await measureRows(
            [
              { name: "product read, edge hit", paths: fixed(`/v1/products/${warm}`) },
              { name: "recommendations related, edge hit", paths: fixed(`/v1/products/${warm}/recommendations?intent=related`) },
              { name: "recommendations complementary, edge hit", paths: fixed(`/v1/products/${warm}/recommendations?intent=complementary`) },
            ],
            rounds,
          )),
          ...(await measureRows(
            [
              { name: "product read, miss (distinct ids)", paths: distinct(100, per, (id) => `/v1/products/${id}`) },
              { name: "recommendations related, miss (distinct ids)", paths: distinct(1 + Math.floor(size / 3), per, (id) => `/v1/products/${id}/recommendations?intent=related`) },
              { name: "recommendations substitutes, miss (distinct ids)", paths: distinct(1 + 2 * Math.floor(size / 3), per, (id) => `/v1/products/${id}/recommendations?intent=substitutes`) },
            ],
            rounds,
          )),
        );
      }
    } finally {
      stop();
      await new Promise((r) => setTimeout(r, 1500));
    }
  }
  const loadAfter = loadavg()[0]!.toFixed(1);

  const hitBase = reads.find((r) => r.name.startsWith("product read, edge"));
  const missBase = reads.find((r) => r.name.startsWith("product read, miss"));
  const readRows = reads.map((r) => {
    const base = r.name.includes("miss") ? missBase : hitBase;
    return `| ${r.name} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.rps.toFixed(0)} | ${base ? (r.p99 / Math.max(1, base.p99)).toFixed(2) : "–"}× | ${base ? (r.rps / base.rps).toFixed(2) : "–"} | ${r.non2xx + r.errors} |`;
  });
  const rebuildRows = rebuilds.map(
    (r) => `| ${r.size.toLocaleString("en")} | ${r.orders.toLocaleString("en")} | ${r.pairs.toLocaleString("en")} | ${((r.job.duration_ms ?? 0) / 1000).toFixed(1)} | ${((r.job.duration_ms ?? 0) / r.size).toFixed(2)} | ${r.seedS.toFixed(0)} |`,
  );
  const readsSection = reads.length
    ? `## Reads (catalog of ${sizes[0]!.toLocaleString("en")} products, after a full rebuild)

Edge-hit rows repeat one URL (served from the Cache API after the first request). Miss rows give every
connection, in every round, product ids never read before, so every request misses the edge. The rows of each
group alternate over ${rounds} rounds (order reversed every other round), ${seconds} s per row in all, and each
row's response times are pooled. On a miss the product read goes to D1 (the seed does not fill KV); related reads its list from KV, then
one D1 batch (cards); substitutes read one D1 batch (candidates: the price band and the related list), then one for cards.
Every miss also records the answer's refs in D1 (waitUntil). Ratios: hit rows ÷ product read edge hit, miss rows ÷ product read miss.

| route | p50 ms | p99 ms | req/s | p99 ÷ product read | req/s ÷ product read | non-2xx/errors |
|---|---|---|---|---|---|---|
${readRows.join("\n")}

`
    : "";
  const report = `# Recommendations benchmark

Command: \`npx tsx bench/recommendations/run.ts --sizes ${args.sizes} --seconds ${seconds} --connections ${connections} --rounds ${rounds}${args.reuse ? " --reuse" : ""}${args["no-reads"] ? " --no-reads" : ""}${args["seed-from"] ? ` --seed-from ${args["seed-from"]}` : ""} --out ${args.out}\`
(wrangler dev on ${ORIGIN}, ${new Date().toISOString()}; 2-core machine, nothing else running, 1-minute load average ${loadBefore} before, ${loadAfter} after:
absolute numbers are noisy, the ratios to the product read measured in the same run are the figures to compare).

${readsSection}## Full rebuild

Time from \`POST /admin/recommendations/rebuild\` to the job's \`finished_at\` (its own \`duration_ms\`), chunks of
400 products (in production two per queue message; under \`wrangler dev\` one queue invocation runs them all, see
src/recommendations/jobs.ts). Order history: \`orders(N, ${args["orders-per-product"]}·N)\` from the seed
generator, loaded as aggregates.

| products | orders | co-purchase pairs | rebuild s | ms per product | seed + load s |
|---|---|---|---|---|---|
${rebuildRows.join("\n")}
`;
  mkdirSync("bench/results", { recursive: true });
  writeFileSync(args.out, report);
  console.log(report);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
