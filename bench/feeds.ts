/**
 * Affiliate feed throughput and latency against a real `wrangler dev` (own port, own --persist-to).
 *   npx tsx bench/feeds.ts --products 2000 --seconds 6 --connections 8
 * Reports p50/p95/p99 and requests/s per route, and each as a ratio to GET /health measured in the same run.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { freshDatabase, startDevServer } from "./lib/dev-server";
import { autocannon } from "./lib/stats";
import { benchArgs } from "./lib/args";

const args = benchArgs({
  products: 2000,
  seconds: 6,
  connections: 8,
  port: 8797,
});
const ORIGIN = `http://127.0.0.1:${args.port}`;
const PERSIST = path.resolve(".wrangler/bench-feeds");
const KEY = "demo-affiliate-key";

type Result = { name: string; path: string; p50: number; p95: number; p99: number; rps: number; non2xx: number };

async function measure(name: string, urlPath: string, headers: Record<string, string> = {}, connections = args.connections, seconds = args.seconds): Promise<Result> {
  const r = await autocannon({
    url: ORIGIN + urlPath,
    connections,
    duration: seconds,
    timeout: 30,
    headers: { authorization: `Bearer ${KEY}`, ...headers },
  });
  const lat = r.latency;
  return { name, path: urlPath, p50: lat.p50!, p95: lat.p97_5 ?? lat.p95!, p99: lat.p99!, rps: r.requests.average, non2xx: r.non2xx };
}

async function main() {
  freshDatabase(PERSIST, args.products);
  // Serves src/ (no prebuilt bundle), as this bench always has.
  const { stop } = await startDevServer({ port: args.port, persist: PERSIST, healthTries: 360, exitOnSigint: false });
  const first = await fetch(`${ORIGIN}/v1/feeds/products?limit=100`, { headers: { authorization: `Bearer ${KEY}` } });
  const etag = first.headers.get("etag")!;
  const since = ((await first.json()) as { next_since: string }).next_since;

  const loadBefore = loadavg()[0]!.toFixed(1);
  const results: Result[] = [];
  results.push(await measure("baseline GET /health", "/health"));
  results.push(await measure("reference: catalog read GET /v1/products/:id", "/v1/products/p-000042?currency=EUR"));
  results.push(await measure("one item (json)", "/v1/feeds/products/p-000042?currency=EUR"));
  results.push(await measure("page of 100 (json)", "/v1/feeds/products?limit=100"));
  results.push(await measure("page of 100 (google)", "/v1/feeds/products?limit=100&format=google"));
  results.push(await measure("page of 100, If-None-Match → 304", "/v1/feeds/products?limit=100", { "if-none-match": etag }));
  results.push(await measure("page of 1000 (json), 1 connection, 2× duration", "/v1/feeds/products?limit=1000", {}, 1, 2 * args.seconds));
  results.push(await measure("empty delta (since = now)", `/v1/feeds/products?since=${since}`));
  const loadAfter = loadavg()[0]!.toFixed(1);
  stop();

  const base = results[0]!;
  const rows = results.map(
    (r) =>
      `| ${r.name} | ${r.p50} | ${r.p95} | ${r.p99} | ${r.rps.toFixed(0)} | ${(r.p99 / Math.max(1, base.p99)).toFixed(1)}× | ${(r.rps / base.rps).toFixed(2)} | ${r.non2xx} |`,
  );
  const report = `# Affiliate feeds benchmark

Command: \`npx tsx bench/feeds.ts --products ${args.products} --seconds ${args.seconds} --connections ${args.connections}\`
(wrangler dev on ${ORIGIN}, local D1 seeded with ${args.products} products, ${args.connections} connections, ${args.seconds} s per route, ${new Date().toISOString()}).
Shared 2-core machine (1-minute load average ${loadBefore} before, ${loadAfter} after): absolute numbers are noisy; the ratios to the
baseline measured in the same run are the figures to compare.

| route | p50 ms | p97.5 ms | p99 ms | req/s | p99 ÷ baseline | req/s ÷ baseline | non-2xx |
|---|---|---|---|---|---|---|---|
${rows.join("\n")}

"non-2xx" counts 304s on the conditional row (expected there).
`;
  mkdirSync("bench/results", { recursive: true });
  writeFileSync("bench/results/feeds.md", report);
  console.log(report);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
