/**
 * Operator console pages against a real `wrangler dev` (own port, own --persist-to per catalog size).
 *   npx tsx bench/console.ts --products 10000 --requests 60 --concurrency 2 --rounds 3
 *
 * Signs in as admin, then measures every console page (and /health as the baseline of the same run) with
 * `concurrency` parallel clients, `requests` per page per round, pages in alternating order over `rounds`, so
 * background load on this shared machine hits every page alike. Also counts the script bytes each page loads
 * (every <script src> on it, fetched). Writes bench/results/console.md.
 */
import { existsSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { benchArgs } from "./lib/args";
import { sh, startDevServer } from "./lib/dev-server";
import { fmt, percentile } from "./lib/stats";

const args = benchArgs({ products: 10000, requests: 60, concurrency: 2, rounds: 3, port: 8833, "inspector-port": 9333 });
const ADMIN = "bench-admin-token";
const persist = path.join(".wrangler", `bench-console-${args.products}`);

if (!existsSync(persist)) {
  console.log(`seeding ${args.products} products into ${persist}…`);
  const t = Date.now();
  sh(["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist]);
  sh(["tsx", "scripts/seed.ts", "--products", String(args.products), "--persist", persist]);
  console.log(`seeded in ${((Date.now() - t) / 1000).toFixed(0)} s`);
} else {
  sh(["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist]);
}

const server = await startDevServer({ port: args.port, persist, inspectorPort: args["inspector-port"], vars: { ADMIN_TOKEN: ADMIN } });
const origin = server.origin;

async function signIn(): Promise<string> {
  const page = await fetch(`${origin}/console/sign-in`);
  const nonce = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
  const pre = page.headers.get("set-cookie")!.split(";")[0]!;
  const res = await fetch(`${origin}/console/sign-in`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: pre },
    body: new URLSearchParams({ token: ADMIN, _csrf: nonce }),
  });
  const session = res.headers.getSetCookie().find((c) => c.startsWith("es_console="));
  if (!session) throw new Error(`sign-in failed: ${res.status}`);
  return session.split(";")[0]!;
}

const cookie = await signIn();
const loadBefore = loadavg();
// Some traffic so the tiles and SLO panel have figures to compute over.
for (let i = 1; i <= 50; i++) await fetch(`${origin}/v1/products/p-${String(i).padStart(6, "0")}`);

const PAGES = [
  "/health",
  "/console",
  "/console/tiles",
  "/console/slo",
  "/console/stock",
  "/console/stock?sku=SKU-000001-1",
  "/console/products",
  "/console/products?q=wireless",
  "/console/products/p-000001",
  "/console/promotions",
  "/console/events",
  "/console/imports",
  "/console/affiliates",
  "/console/affiliates/aff-demo",
  "/console/recommendations",
  "/console/recommendations?product=p-000001",
  "/console/recommendations/progress",
];

/** Parts a page's script swaps in (no page of their own, no script). */
const FRAGMENTS = new Set(["/console/tiles", "/console/recommendations/progress"]);
const times = new Map<string, number[]>(PAGES.map((p) => [p, []]));
const failures = new Map<string, number>(PAGES.map((p) => [p, 0]));

async function hit(p: string): Promise<void> {
  const t = performance.now();
  const res = await fetch(origin + p, { headers: { cookie, "accept-encoding": "gzip, br" } });
  await res.arrayBuffer();
  times.get(p)!.push(performance.now() - t);
  if (res.status !== 200) failures.set(p, failures.get(p)! + 1);
}

for (const p of PAGES) await hit(p); // warm-up, not counted
for (const p of PAGES) times.set(p, []);

for (let round = 0; round < args.rounds; round++) {
  const order = round % 2 === 0 ? PAGES : [...PAGES].reverse();
  for (const p of order) {
    let next = 0;
    await Promise.all(
      Array.from({ length: args.concurrency }, async () => {
        while (next < args.requests) {
          next++;
          await hit(p);
        }
      }),
    );
  }
}

async function scriptBytes(p: string): Promise<number> {
  if (!p.startsWith("/console") || FRAGMENTS.has(p)) return 0;
  const html = await (await fetch(origin + p, { headers: { cookie } })).text();
  let total = 0;
  for (const m of html.matchAll(/<script[^>]*src="([^"]+)"/g)) total += (await (await fetch(new URL(m[1]!, origin))).arrayBuffer()).byteLength;
  for (const m of html.matchAll(/<script(?![^>]*src=)[^>]*>([\s\S]*?)<\/script>/g)) total += m[1]!.length;
  return total;
}

const loadAfter = loadavg();
const base = [...times.get("/health")!].sort((a, b) => a - b);
const baseP99 = percentile(base, 99);
const rows: string[] = [];
let worst = 0;
for (const p of PAGES) {
  const sorted = [...times.get(p)!].sort((a, b) => a - b);
  const p99 = percentile(sorted, 99);
  if (p !== "/health") worst = Math.max(worst, p99);
  const bytes = await scriptBytes(p);
  rows.push(
    `| \`${p}\` | ${sorted.length} | ${fmt(percentile(sorted, 50))} | ${fmt(percentile(sorted, 95))} | ${fmt(p99)} | ${fmt(p99 / baseP99, 2)}× | ${p === "/health" ? "baseline" : p99 < 300 ? "yes" : "**no**"} | ${p.startsWith("/console") && !FRAGMENTS.has(p) ? `${bytes} B` : "–"} | ${failures.get(p)} |`,
  );
}
server.stop();

const command = `npx tsx bench/console.ts --products ${args.products} --requests ${args.requests} --concurrency ${args.concurrency} --rounds ${args.rounds}`;
const report = `# Console pages: latency and script weight

Command: \`${command}\`
(${new Date().toISOString()}; wrangler dev on 127.0.0.1, local D1/KV/DO; a 2-core machine shared with other
benchmarks and test runs, so absolute figures are noisy: compare each page with the \`/health\` baseline of the same run.)

Catalog: ${args.products.toLocaleString("en-US")} products (seeded by \`scripts/seed.ts\`). Every page is requested
${args.requests} times per round by ${args.concurrency} parallel clients, ${args.rounds} rounds in alternating page order
(${args.requests * args.rounds} samples per page), signed in as admin; the first request of each page is a warm-up and
not counted. Pages answer 200 with the whole HTML (server-rendered, gzip).

Target: p99 < 300 ms per page locally; < 100 KB of script per page.

Load average (1/5/15 min) when measuring started: ${loadBefore.map((l) => l.toFixed(2)).join(" / ")}; when it ended: ${loadAfter.map((l) => l.toFixed(2)).join(" / ")}.

| page | samples | p50 ms | p95 ms | p99 ms | p99 ÷ /health | p99 < 300 ms | script per page | non-200 |
|---|---|---|---|---|---|---|---|---|
${rows.join("\n")}

Worst page p99: ${fmt(worst)} ms. Script: every page loads one file, \`/console/assets/console.js\` (no framework, no
charting library: sparklines and the lag histogram are inline SVG rendered on the server). The browser test
(\`test/browser/console.e2e.mjs\`) also measures the script bytes each page really loads in chromium and fails above 100 KB.
`;
writeFileSync("bench/results/console.md", report);
console.log(report);
process.exit(0);
