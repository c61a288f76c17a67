/**
 * Flash-sale benchmark against a real `wrangler dev` (own port, own --persist-to):
 *   npx tsx bench/flash-sale/run.ts --seconds 6 --connections 48 --burst 30 --port 8872 --inspector-port 9372
 *
 * 1. Hot-SKU reservations/s for K = 1, 2, 4, 8 escrow sub-shards (closed loop, single-unit reservations on one SKU),
 *    plus the per-object service rate measured in the same run (one StockShard RPC + SQLite write, the unit
 *    of work of a sub-shard), feeding the scaling model in bench/flash-sale/model.ts.
 * 2. A 30 s burst: browse at 10× its normal rate (open loop) while a storm of reservations hits one hot SKU
 *    (K = 8, finite stock so it sells out mid-storm). Reports browse p99 during vs before, reservation
 *    throughput, 429/503 counts, and the oversold count from the escrow reconciliation (must be 0).
 * 3. Recount during the storm (bench/flash-sale/recount.ts): warehouse recounts and damage while K = 8 sub-shards
 *    sell; oversold units beyond any reported "oversold by N" must be 0, and readers and ledger must reconcile.
 *    `--only recount` runs just this phase and replaces its section of the report.
 * Every reservation comes from one storefront key (the dev key: one shop), on behalf of one of `--shoppers`
 * shoppers (`x-shopper-id`), with the default rate limits and hoarding caps in force.
 * Writes bench/results/flash-sale.md.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { buildOnce, freshDatabase, startDevServer } from "../lib/dev-server";
import { fmt, percentile, statusJson } from "../lib/stats";
import { MEASURED_OBJECT_COST, project, projectWeighted } from "./model";
import { recountStorm } from "./recount";
import { benchArgs } from "../lib/args";

const args = benchArgs({
  seconds: 6,
  connections: 16,
  burst: 30,
  "browse-rate": 20,
  port: 8872,
  "inspector-port": 9372,
  shoppers: 10000,
  /** `recount`: only the "recount during the storm" phase, spliced into the existing report. */
  only: undefined,
  "recount-seconds": 20,
  "recount-stock": 300,
  /** all | prepare (build, migrate, seed: under the heavy lock) | measure (the rest: under the quiet lock) */
  phase: "all",
});
if (!["all", "prepare", "measure"].includes(args.phase)) {
  console.error(`--phase must be all, prepare or measure, got ${args.phase}`);
  process.exit(2);
}
const SECONDS = args.seconds;
const CONNECTIONS = args.connections;
const BURST = args.burst;
const BROWSE_RATE = args["browse-rate"];
const ORIGIN = `http://127.0.0.1:${args.port}`;
const PERSIST = path.resolve(".wrangler/bench-flash");
const BUILD = path.resolve(".wrangler/bench-flash-build");
const ADMIN_TOKEN = "bench-admin-token";
const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };
const SHOPPERS = args.shoppers;
const STOREFRONT = { authorization: "Bearer dev-storefront-key", "content-type": "application/json" };

/** Where the recount phase starts in the report, so `--only recount` can replace just that section. */
const RECOUNT_MARK = "<!-- recount-during-the-storm -->";

/** Most requests an open loop keeps unanswered at once. */
const MAX_OPEN = 256;

type Result = { rps: number; okRps: number; p50: number; p99: number; statuses: Map<number, number>; latencies: number[] };

function summarise(latencies: number[], statuses: Map<number, number>, seconds: number, ok: number): Result {
  latencies.sort((a, b) => a - b);
  return { rps: latencies.length / seconds, okRps: ok / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99), statuses, latencies };
}

async function send(p: string, init: RequestInit, latencies: number[], statuses: Map<number, number>): Promise<number> {
  const t0 = performance.now();
  try {
    // A client gives up after 10 s (status 0 in the tables), so an overloaded server cannot stall the run.
    const res = await fetch(ORIGIN + p, { ...init, signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    latencies.push(performance.now() - t0);
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    return res.status;
  } catch {
    statuses.set(0, (statuses.get(0) ?? 0) + 1);
    return 0;
  }
}

/** Closed loop of `connections` clients until `seconds` pass (or `stop()` says so). */
async function closedLoop(make: (i: number) => { path: string; init: RequestInit }, seconds: number, connections: number, stop = () => false): Promise<Result> {
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let ok = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async (_, c) => {
      while (performance.now() < end && !stop()) {
        const { path: p, init } = make(c);
        const s = await send(p, init, latencies, statuses);
        if (s >= 200 && s < 300) ok++;
      }
    }),
  );
  return summarise(latencies, statuses, (performance.now() - start) / 1000, ok);
}

/** Open loop: `rate` requests per second regardless of how fast they are answered (what shoppers do). */
async function openLoop(make: () => { path: string; init: RequestInit }, rate: number, seconds: number): Promise<Result> {
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let ok = 0;
  let open = 0;
  const inflight: Promise<void>[] = [];
  const start = performance.now();
  const total = Math.round(rate * seconds);
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // Past MAX_OPEN unanswered requests the client drops the request (status -1): an open loop against a server
    // slower than its rate would otherwise pile up thousands of requests that the server goes on serving long
    // after the client gave up, and every later phase of the run would wait behind them.
    if (open >= MAX_OPEN) {
      statuses.set(-1, (statuses.get(-1) ?? 0) + 1);
      continue;
    }
    const { path: p, init } = make();
    open++;
    inflight.push(send(p, init, latencies, statuses).then((s) => void (open--, s >= 200 && s < 300 && ok++)));
  }
  await Promise.all(inflight);
  return summarise(latencies, statuses, seconds, ok);
}

const reserve = (sku: string) => () => ({
  path: "/v1/reservations",
  init: {
    method: "POST",
    headers: { ...STOREFRONT, "idempotency-key": crypto.randomUUID(), "x-shopper-id": `flash-shopper-${Math.floor(Math.random() * SHOPPERS)}` },
    body: JSON.stringify({ items: [{ sku, quantity: 1 }], ttl_seconds: 3600 }),
  },
});

async function api(method: string, p: string, body?: unknown): Promise<Response> {
  // A setup or check call that gets no answer fails the run rather than hanging it.
  const res = await fetch(ORIGIN + p, { method, headers: ADMIN, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(60_000) });
  if (!res.ok) throw new Error(`${method} ${p} → ${res.status}: ${await res.text()}`);
  return res;
}

type HotStatus = { totals: { on_hand: number; reserved: number; available: number; committed: number; quotas: number }; in_transit: number; sub_shard_totals: { available: number; on_hand: number; reserved: number }[] };

async function main() {
  const entry = path.join(BUILD, "index.js");
  if (args.phase !== "measure") {
    console.log("migrating, seeding, building…");
    freshDatabase(PERSIST, 50);
    // Serve a bundle built once, so edits by others in the working tree do not restart the server mid-run.
    buildOnce(BUILD);
    if (args.phase === "prepare") {
      writeFileSync(path.join(PERSIST, "bench-ready"), new Date().toISOString());
      console.log("prepared; now run --phase measure");
      return;
    }
  } else if (!existsSync(entry) || !existsSync(path.join(PERSIST, "bench-ready"))) {
    console.error("run --phase prepare first (each measure needs a fresh one)");
    process.exit(2);
  }
  rmSync(path.join(PERSIST, "bench-ready"), { force: true });
  const loadBefore = loadavg().map((l) => l.toFixed(2)).join(" ");
  const { stop } = await startDevServer({ port: args.port, inspectorPort: args["inspector-port"], persist: PERSIST, entry, vars: { ADMIN_TOKEN } });

  const recount = () =>
    recountStorm({ origin: ORIGIN, admin: ADMIN, storefront: STOREFRONT, shoppers: SHOPPERS, seconds: args["recount-seconds"], connections: CONNECTIONS, stock: args["recount-stock"] });
  if (args.only === "recount") {
    console.log("recount during the storm…");
    const r = await recount();
    const file = "bench/results/flash-sale.md";
    const prev = existsSync(file) ? readFileSync(file, "utf8") : "";
    const at = prev.indexOf(RECOUNT_MARK);
    const section = `${RECOUNT_MARK}\nCommand: \`npx tsx bench/flash-sale/run.ts --only recount --connections ${CONNECTIONS} --recount-seconds ${args["recount-seconds"]} --recount-stock ${args["recount-stock"]} --port ${args.port} --inspector-port ${args["inspector-port"]}\`\n(run on ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC on the shared 2-core machine under the quiet lock; load average before ${loadBefore}, after ${loadavg().map((l) => l.toFixed(2)).join(" ")}).\n\n${r.markdown}`;
    writeFileSync(file, (at >= 0 ? prev.slice(0, at) : `${prev.trimEnd()}\n\n`) + section);
    console.log(r.markdown);
    stop();
    process.exit(r.beyond > 0 ? 1 : 0);
  }

  console.log("creating hot SKUs…");
  const variant = (sku: string) => ({ sku, prices: { USD: 1999, EUR: 1899, GBP: 1699 } });
  const ks = [1, 2, 4, 8];
  const hotSku = (k: number) => `FLASH-K${k}`;
  await api("PUT", "/admin/products/flash-bench", { slug: "flash-bench", title: "Flash bench", brand: "Bench", category_id: "cat-running", variants: [...ks.map((k) => variant(hotSku(k))), variant("FLASH-STORM")] });
  for (const k of ks) {
    await api("PUT", `/admin/stock/${hotSku(k)}`, { location: "loc-us-east", on_hand: 1_000_000 });
    await api("POST", `/admin/stock/${hotSku(k)}/hot`, { sub_shards: k });
  }

  console.log("warming up…");
  await closedLoop(reserve(hotSku(8)), 2, 16);
  const noop = () => ({ path: "/admin/bench/do-noop", init: { method: "POST", headers: ADMIN } });
  const objectRate = await closedLoop(noop, SECONDS, CONNECTIONS);
  const bare = await closedLoop(() => ({ path: "/health", init: {} }), SECONDS, CONNECTIONS);
  console.log(`  bare Worker route /health: ${fmt(bare.okRps, 0)}/s`);
  console.log(`  per-object service rate (DO RPC + SQLite write): ${fmt(objectRate.okRps, 0)}/s`);

  const perK = new Map<number, Result>();
  for (const k of ks) {
    const r = await closedLoop(reserve(hotSku(k)), SECONDS, CONNECTIONS);
    perK.set(k, r);
    console.log(`  K=${k}: ${fmt(r.okRps, 0)} reservations/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms ${statusJson(r.statuses)}`);
  }

  // The storm SKU gets about half of what K=8 sold in the whole burst, so it sells out mid-storm.
  const STORM_STOCK = Math.max(50, Math.round((perK.get(8)!.okRps * BURST) / 2));
  await api("PUT", "/admin/stock/FLASH-STORM", { location: "loc-us-east", on_hand: STORM_STOCK });
  await api("POST", "/admin/stock/FLASH-STORM/hot", { sub_shards: 8 });

  console.log("burst: browse before…");
  const products = Array.from({ length: 50 }, (_, i) => `p-${String(i + 1).padStart(6, "0")}`);
  const browse = () => ({ path: `/v1/products/${products[Math.floor(Math.random() * products.length)]}?currency=USD`, init: { headers: { "cf-connecting-ip": `198.18.0.${Math.floor(Math.random() * 200)}` } } });
  await openLoop(browse, BROWSE_RATE, 3);
  const before = await openLoop(browse, BROWSE_RATE, 10);
  console.log(`  browse before: p50 ${fmt(before.p50)} p99 ${fmt(before.p99)} ${statusJson(before.statuses)}`);
  console.log(`burst: ${BURST}s of browse at ${BROWSE_RATE * 10}/s + hot-SKU storm…`);
  const [during, storm] = await Promise.all([openLoop(browse, BROWSE_RATE * 10, BURST), closedLoop(reserve("FLASH-STORM"), BURST, CONNECTIONS)]);
  console.log(`  browse during: p50 ${fmt(during.p50)} p99 ${fmt(during.p99)} ${statusJson(during.statuses)}`);
  console.log(`  storm: ${statusJson(storm.statuses)}`);
  const status = (await (await api("GET", "/admin/stock/FLASH-STORM/hot")).json()) as HotStatus;
  const created = storm.statuses.get(201) ?? 0;
  const oversold = Math.max(0, created - STORM_STOCK, status.totals.reserved + status.totals.committed - STORM_STOCK) + status.sub_shard_totals.filter((t) => t.available < 0).length;

  console.log("recount during the storm…");
  const rc = await recount();

  const model = project(objectRate.okRps, ks, perK.get(1)!.okRps);
  const weighted = projectWeighted(objectRate.okRps, ks, MEASURED_OBJECT_COST);
  const count = (r: Result, s: number) => r.statuses.get(s) ?? 0;
  const report = `# Flash-sale benchmark (bench/flash-sale)

Command: \`npx tsx bench/flash-sale/run.ts --phase prepare --port ${args.port}\` (while other work may run), then
\`npx tsx bench/flash-sale/run.ts --phase measure --seconds ${SECONDS} --connections ${CONNECTIONS} --burst ${BURST} --browse-rate ${BROWSE_RATE} --shoppers ${SHOPPERS} --port ${args.port} --inspector-port ${args["inspector-port"]}\`
(with no other test or bench on the machine), run at ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC;
\`wrangler dev\` with its own \`--persist-to\`, serving a bundle built once; local workerd on 2 cores. Load average
(1/5/15 min) when the measurement began: ${loadBefore}; at the end: ${loadavg().map((l) => l.toFixed(2)).join(" ")}. Default rate limits and hoarding
caps are on. **One storefront key** (the dev key: one shop) carries every reservation, for ${SHOPPERS.toLocaleString("en")} shoppers
(\`x-shopper-id\`) chosen at random per request. A reservation is one call from the Worker to its coordinator (the
shopper's tally shard, one of the stock shards), which admits the shopper's total cap in the transaction that records
the Idempotency-Key and holds on the SKU's sub-shard object-to-object.

## Hot-SKU reservations/s by number of escrow sub-shards

Closed loop, ${CONNECTIONS} clients, ${SECONDS} s per K, single-unit reservations on one SKU (1,000,000 units, so no
sub-shard runs dry). Measured in the same run: bare Worker route \`GET /health\` = ${fmt(bare.okRps, 0)}/s (p99 ${fmt(bare.p99)} ms);
per-object service rate \`POST /admin/bench/do-noop\` (one StockShard RPC + one SQLite write) = **${fmt(objectRate.okRps, 0)}/s**
(p99 ${fmt(objectRate.p99)} ms).

| K | reservations/s | × K=1 | p50 ms | p99 ms | statuses |
|---|---|---|---|---|---|
${ks.map((k) => { const r = perK.get(k)!; return `| ${k} | ${fmt(r.okRps, 0)} | ${fmt(r.okRps / perK.get(1)!.okRps, 2)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${statusJson(r.statuses)} |`; }).join("\n")}

Locally every object lives in one workerd process on two shared cores, so K objects cannot run in parallel: the
whole reservation path (Worker, coordinators, client guards, sub-shards) competes for the same CPU, and differences
between K values reflect queueing on the single object, not parallel hardware. The table shows that splitting costs
nothing measurable here; the gain is on Cloudflare, where each object runs on its own thread — see the model below.

## Scaling model (bench/flash-sale/model.ts)

${model.text}

Weighed by what each object's part of a reservation costs (bench/flash-sale/model.ts \`MEASURED_OBJECT_COST\`, from the
cut points in bench/results/reserve.md): each object is charged a do-noop's service time (1/μ) plus the CPU its part
takes beyond a do-noop's, ${weighted.cost.coordinatorMs} ms for the coordinator and ${weighted.cost.holdMs} ms for the SKU's stock object per reservation.

| K | projected hot-SKU reservations/s on Cloudflare, counting calls | weighed by measured object cost |
|---|---|---|
${model.rows.map((r, i) => `| ${r.k} | ${fmt(r.rate, 0)} | ${fmt(weighted.rows[i]!.rate, 0)} |`).join("\n")}

| scope | projected reservations/s on Cloudflare, counting calls | weighed by measured object cost |
|---|---|---|
| one SKU, not split (its home shard) | ${fmt(model.coldSku, 0)} | ${fmt(weighted.coldSku, 0)} |
| one hot SKU, K = 8 | ${fmt(model.rows.find((r) => r.k === 8)?.rate ?? 0, 0)} | ${fmt(weighted.rows.find((r) => r.k === 8)?.rate ?? 0, 0)} |
| one shop (one storefront key) across many SKUs, every object counted | **${fmt(model.shop, 0)}** | **${fmt(weighted.shop, 0)}** |

Objects one single-line reservation touches: ${model.objectsTouched} (coordinator with the shopper's tally, stock object; one when they are the same shard), one call each;
sequential object calls from the Worker: ${model.workerCalls}.

## ${BURST} s burst: browse at 10× plus a hot-SKU storm

Browse: open loop of \`GET /v1/products/:id\` over 50 products (from 200 client IPs) at ${BROWSE_RATE}/s for 10 s before, then
${BROWSE_RATE * 10}/s for ${BURST} s while ${CONNECTIONS} clients reserve one hot SKU (K = 8, ${STORM_STOCK} units ≈ half of what K = 8 sold in ${BURST} s above, so it sells out mid-storm).

| | browse req/s | browse p50 ms | browse p99 ms | statuses |
|---|---|---|---|---|
| before | ${fmt(before.rps, 0)} | ${fmt(before.p50)} | ${fmt(before.p99)} | ${statusJson(before.statuses)} |
| during storm | ${fmt(during.rps, 0)} | ${fmt(during.p50)} | ${fmt(during.p99)} | ${statusJson(during.statuses)} |

- browse p99 during ÷ before: **${fmt(during.p99 / before.p99, 2)}×**
- reservation throughput during the storm: **${fmt(created / BURST, 1)} holds/s** (${created} × 201 until sold out), ${fmt(storm.rps, 0)} answers/s in all
- storm answers: ${statusJson(storm.statuses)} (409 = sold out, most of them from the edge marker)
- browse requests the client dropped because ${MAX_OPEN} were already unanswered (status -1): before ${count(before, -1)}, during ${count(during, -1)}
- 429s: browse ${count(during, 429)}, reserve ${count(storm, 429)}; 503s: browse ${count(during, 503)}, reserve ${count(storm, 503)}
- escrow reconciliation after the storm: on_hand ${status.totals.on_hand}, reserved ${status.totals.reserved}, committed ${status.totals.committed}, free quotas ${status.totals.quotas}, in transit ${status.in_transit}
- **oversold: ${oversold}**

${RECOUNT_MARK}
${rc.markdown}`;
  mkdirSync("bench/results", { recursive: true });
  writeFileSync("bench/results/flash-sale.md", report);
  console.log(report);
  stop();
  process.exit(oversold > 0 || rc.beyond > 0 ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
