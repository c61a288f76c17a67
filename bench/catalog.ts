/**
 * Catalog read path benchmark against a real `wrangler dev` (own port, own --persist-to per catalog size).
 *   npx tsx bench/catalog.ts --sizes 10000,100000 --seconds 8 --connections 8
 *
 * For each size: seeds the catalog once (`scripts/seed.ts --persist`, reused on later runs) and starts its own
 * wrangler dev (ports --port, --port+1…); all sizes run side by side and each case is measured in alternating
 * slices, so background load hits every size alike. Cases, all in the same run:
 *   - bare:     GET /v1/bench/bare, a Hono route returning exactly the bytes of the product response, through
 *               the same middleware but with no read path (the baseline);
 *   - edge hit: one product variant already in the Cache API;
 *   - KV hit:   product variants never requested before whose document is already in KV (edge miss);
 *   - D1 miss:  products never read before (edge and KV miss: D1 + KV write-back + cache put);
 *   - search:   distinct FTS queries (miss: FTS5 match + facets over the match set), and one repeated query (edge).
 * Miss cases use each URL once (autocannon `amount` = pool size); the tier that answered is counted from
 * `x-cache-tier` so the report shows the case measured what it claims. Latency percentiles are computed from
 * every response time. Each request carries its own bearer token so the per-client rate limiter (keyed by
 * token) never rejects the benchmark itself; it still runs on every request, baseline included.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
// autocannon ships no types; only the few fields used here are declared.
// @ts-expect-error untyped module
import autocannonUntyped from "autocannon";
import { percentile } from "./lib/stats";
import { benchArgs } from "./lib/args";

type AcRequest = {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  setupRequest?: (req: AcRequest) => AcRequest;
  onResponse?: (status: number, body: string, context: unknown, headers: Record<string, string>) => void;
};
type AcOptions = { url: string; connections: number; duration?: number; amount?: number; requests: AcRequest[] };
type AcInstance = Promise<{ requests: { average: number; total: number }; duration: number; non2xx: number; errors: number; timeouts: number }> & {
  on: (event: "response", fn: (client: unknown, status: number, bytes: number, ms: number) => void) => void;
};
const autocannon = autocannonUntyped as (opts: AcOptions) => AcInstance;

const args = benchArgs({
  sizes: "10000,100000",
  seconds: 8,
  connections: 8,
  port: 8793,
  "kv-products": 150,
  "d1-products": 800,
  searches: 400,
});
const SECONDS = args.seconds;
const CONNECTIONS = args.connections;
const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
const ADMIN = "bench-admin-token";
const CURRENCIES = ["USD", "EUR", "GBP"];
const LOCALES = ["en", "de", "fr"];
const pid = (n: number) => `p-${String(n).padStart(6, "0")}`;

const sh = (args: string[]) => execFileSync("npx", ["--no-install", ...args], { env, stdio: ["ignore", "pipe", "inherit"] });

type Sample = { times: number[]; seconds: number; non2xx: number; tiers: Record<string, number> };
type Result = {
  name: string;
  requests: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  non2xx: number;
  tiers: Record<string, number>;
};

let tokenCounter = 0;
const nextToken = () => `bench-${(tokenCounter++ % 4096).toString(36)}`;

/** One autocannon run: a fixed path set for `seconds`, or each path of `paths` exactly once. */
async function run(origin: string, paths: string[], mode: { seconds: number } | "each", into: Sample): Promise<void> {
  if (paths.length === 0) return;
  let i = 0;
  const started = performance.now();
  const instance = autocannon({
    url: origin,
    connections: CONNECTIONS,
    ...(mode === "each" ? { amount: paths.length } : { duration: mode.seconds }),
    requests: [
      {
        method: "GET",
        setupRequest: (req) => ({ ...req, path: paths[i++ % paths.length], headers: { authorization: `Bearer ${nextToken()}` } }),
        onResponse: (_status, _body, _ctx, headers) => {
          const tier = headers["x-cache-tier"] ?? "none";
          into.tiers[tier] = (into.tiers[tier] ?? 0) + 1;
        },
      },
    ],
  });
  instance.on("response", (_c, _s, _b, ms) => into.times.push(ms));
  const r = await instance;
  into.seconds += (performance.now() - started) / 1000;
  into.non2xx += r.non2xx + r.errors + r.timeouts;
}

function summarise(name: string, s: Sample): Result {
  const times = [...s.times].sort((a, b) => a - b);
  return { name, requests: times.length, rps: times.length / s.seconds, p50: percentile(times, 50), p95: percentile(times, 95), p99: percentile(times, 99), non2xx: s.non2xx, tiers: s.tiers };
}

async function waitHealthy(origin: string) {
  for (let i = 0; i < 720; i++) {
    try {
      if ((await fetch(`${origin}/health`)).ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`wrangler dev on ${origin} did not become healthy`);
}

type Server = { size: number; origin: string; cases: { name: string; paths: string[]; mode: "duration" | "each" }[] };

/** Seeds (once), starts wrangler dev for one catalog size, warms it and prepares each case's URLs. */
async function startSize(size: number, port: number, stops: (() => void)[]): Promise<Server> {
  const origin = `http://127.0.0.1:${port}`;
  const persist = path.resolve(`.wrangler/bench-catalog-${size}`);
  sh(["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist]);
  console.error(`bench: seeding ${size} products into ${persist} (skipped when present)…`);
  sh(["tsx", "scripts/seed.ts", "--products", String(size), "--persist", persist, "--if-empty"]);
  // Keep the seeded D1, but start every run with an empty Cache API and KV (and no stock shard state).
  for (const tier of ["cache", "kv", "do"]) rmSync(path.join(persist, "v3", tier), { recursive: true, force: true });
  const dev = spawn("npx", ["--no-install", "wrangler", "dev", "--port", String(port), "--ip", "127.0.0.1", "--persist-to", persist, "--log-level", "error", "--var", `ADMIN_TOKEN:${ADMIN}`], {
    env,
    detached: true,
    stdio: "ignore",
  });
  stops.push(() => {
    try {
      process.kill(-dev.pid!, "SIGTERM");
    } catch {
      /* gone */
    }
  });
  await waitHealthy(origin);
  // Prime sequentially: the first queries on a freshly opened large database are slow, and a burst of them
  // would trip the D1 circuit breaker before the benchmark starts.
  for (const n of [size, Math.ceil(size / 2), 2]) await (await fetch(`${origin}/v1/products/${pid(n)}?currency=GBP&locale=fr`)).text();
  await (await fetch(`${origin}/v1/search?q=prime&currency=GBP&locale=fr`)).text();

  // Disjoint id sets spread over the whole catalog, so every size touches the same number of rows.
  const kvCount = args["kv-products"];
  const d1Count = args["d1-products"];
  const hot = 1;
  const kvIds = Array.from({ length: kvCount }, (_, i) => 2 + Math.floor((i * (size - 2)) / kvCount));
  const taken = new Set([hot, ...kvIds]);
  const d1Ids: number[] = [];
  for (let i = 0; d1Ids.length < d1Count && i < d1Count * 4; i++) {
    let n = 3 + Math.floor(((i + 0.5) * (size - 3)) / d1Count);
    while (taken.has(n) && n < size) n++;
    if (!taken.has(n) && n <= size) {
      taken.add(n);
      d1Ids.push(n);
    }
  }

  // Warm: the hot variant into the edge; KV documents for the KV set (their USD/en variant only).
  const hotPath = `/v1/products/${pid(hot)}?currency=USD&locale=en`;
  const bytes = await (await fetch(origin + hotPath)).text();
  await fetch(origin + hotPath);
  const put = await fetch(`${origin}/admin/bench/bare`, { method: "PUT", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: bytes });
  if (put.status !== 204) throw new Error(`could not store the baseline body: ${put.status} ${await put.text()}`);
  const warm: Sample = { times: [], seconds: 0, non2xx: 0, tiers: {} };
  await run(origin, kvIds.map((n) => `/v1/products/${pid(n)}?currency=USD&locale=en`), "each", warm);
  if ((warm.tiers.d1 ?? 0) < kvCount * 0.95) throw new Error(`warm-up expected D1 misses, got ${JSON.stringify(warm.tiers)}`);

  const kvPaths: string[] = [];
  for (const n of kvIds) for (const cur of CURRENCIES) for (const loc of LOCALES) if (cur !== "USD" || loc !== "en") kvPaths.push(`/v1/products/${pid(n)}?currency=${cur}&locale=${loc}`);
  const d1Paths = d1Ids.map((n) => `/v1/products/${pid(n)}?currency=USD&locale=en`);
  const terms = ["wire", "head", "camera", "tent", "shoe", "jacket", "linen", "cast", "espresso", "serum", "game", "robot", "black", "nylon", "trail", "smart", "bag", "pro", "mini", "steel"];
  const searchPaths: string[] = [];
  for (let limit = 10; searchPaths.length < args.searches; limit++)
    for (const t of terms) for (const cur of CURRENCIES) searchPaths.push(`/v1/search?q=${t}&currency=${cur}&limit=${limit}`);
  searchPaths.length = args.searches;
  return {
    size,
    origin,
    cases: [
      { name: "bare route, same bytes (baseline)", paths: ["/v1/bench/bare"], mode: "duration" },
      { name: "edge hit", paths: [hotPath], mode: "duration" },
      { name: "KV hit (edge miss)", paths: kvPaths, mode: "each" },
      { name: "D1 miss (edge + KV miss)", paths: d1Paths, mode: "each" },
      { name: "search, distinct queries (D1 FTS + facets)", paths: searchPaths, mode: "each" },
      { name: "search, repeated query (edge)", paths: ["/v1/search?q=wireless&currency=USD&limit=24"], mode: "duration" },
    ],
  };
}

const ROUNDS = 4;

/**
 * All sizes run side by side and every case is measured in ROUNDS alternating slices (size A, size B, A, B…),
 * so load from anything else on the machine falls on both sizes alike.
 */
async function measureAll(servers: Server[]): Promise<Result[][]> {
  const samples = servers.map((s) => s.cases.map(() => ({ times: [], seconds: 0, non2xx: 0, tiers: {} }) as Sample));
  const caseCount = servers[0]!.cases.length;
  for (let c = 0; c < caseCount; c++) {
    for (let r = 0; r < ROUNDS; r++) {
      for (let s = 0; s < servers.length; s++) {
        const kase = servers[s]!.cases[c]!;
        if (kase.mode === "duration") await run(servers[s]!.origin, kase.paths, { seconds: Math.max(1, Math.round(SECONDS / ROUNDS)) }, samples[s]![c]!);
        else {
          const per = Math.ceil(kase.paths.length / ROUNDS);
          await run(servers[s]!.origin, kase.paths.slice(r * per, (r + 1) * per), "each", samples[s]![c]!);
        }
      }
    }
    console.error(`bench: ${servers[0]!.cases[c]!.name} done`);
  }
  return servers.map((server, s) => server.cases.map((kase, c) => summarise(kase.name, samples[s]![c]!)));
}

function table(size: number, results: Result[]): string {
  const base = results[0]!;
  const rows = results.map((r) => {
    const tiers = Object.entries(r.tiers)
      .map(([t, n]) => `${t} ${n}`)
      .join(", ");
    return `| ${r.name} | ${r.requests} | ${r.rps.toFixed(0)} | ${(r.rps / base.rps).toFixed(2)} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.p99.toFixed(1)} | ${(r.p99 / Math.max(1, base.p99)).toFixed(1)}× | ${r.non2xx} | ${tiers} |`;
  });
  return `### ${size.toLocaleString("en")} products

| case | requests | req/s | req/s ÷ bare | p50 ms | p95 ms | p99 ms | p99 ÷ bare | errors/non-2xx | answered by (x-cache-tier) |
|---|---|---|---|---|---|---|---|---|---|
${rows.join("\n")}
`;
}

async function main() {
  const sizes = args.sizes.split(",").map(Number);
  const stops: (() => void)[] = [];
  process.on("exit", () => stops.forEach((stop) => stop()));
  const servers: Server[] = [];
  for (const [i, size] of sizes.entries()) servers.push(await startSize(size, args.port + i, stops));
  await new Promise((r) => setTimeout(r, 2000)); // KV write-backs of the warm-up run after their responses (waitUntil)
  const results = await measureAll(servers);
  stops.forEach((stop) => stop());
  const all = servers.map((s, i) => ({ size: s.size, results: results[i]! }));

  const d1 = all.map((a) => ({ size: a.size, p99: a.results.find((r) => r.name.startsWith("D1 miss"))!.p99 }));
  const flat = d1.length > 1 ? `D1-miss p99 at ${d1[d1.length - 1]!.size.toLocaleString("en")} ÷ at ${d1[0]!.size.toLocaleString("en")} products: **${(d1[d1.length - 1]!.p99 / d1[0]!.p99).toFixed(2)}×** (target ≤ 2×).` : "";
  const edge = all.map((a) => `${a.size.toLocaleString("en")}: **${(a.results[1]!.rps / a.results[0]!.rps).toFixed(2)}**`).join(", ");
  const report = `# Catalog read path benchmark

Command: \`npx tsx bench/catalog.ts --sizes ${args.sizes} --seconds ${args.seconds} --connections ${args.connections} --kv-products ${args["kv-products"]} --d1-products ${args["d1-products"]} --searches ${args.searches}\`
(${new Date().toISOString()}; one wrangler dev per catalog size, side by side on ports ${args.port}+, each with its own local D1/KV/Cache under
\`.wrangler/bench-catalog-<size>\` seeded by \`scripts/seed.ts --persist\`; ${CONNECTIONS} connections. Every case runs in ${ROUNDS} slices
alternating between the sizes; fixed-URL cases run ${SECONDS} s in total, miss cases request each URL once.)

Shared 2-core machine running the load generator and the runtimes together, with other work going on: absolute numbers
are noisy and low; compare the ratios to the bare route measured in the same run.

Edge-hit throughput ÷ bare route: ${edge} (target ≥ 0.80). ${flat}

${all.map((a) => table(a.size, a.results)).join("\n")}
Notes:
- "bare" is \`GET /v1/bench/bare\` (src/routes/bench-baseline.ts), returning the exact bytes of the edge-hit response through the same middleware.
- "answered by" counts the \`x-cache-tier\` of every response, so each case shows it measured the tier it claims.
- Local caveat: under \`wrangler dev\` the Cache API, KV and D1 are all simulated by local processes (workerd + SQLite files),
  so "KV" and "D1" latencies measure local simulation, not Cloudflare's network; the order of the tiers and the flatness with catalog size are what carry over.
`;
  mkdirSync("bench/results", { recursive: true });
  writeFileSync("bench/results/catalog.md", report);
  console.log(report);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
