/**
 * Reads during a growth's clean-up window (docs/storage.md, "Growing N → 2N"): the same no-filter pages with facets
 * and total, and browse pages, served at N = 2 while the old partition still holds the moved products' rows
 * (window: its pages read on past them, its facets subtract grow_moved_facets), then after `--finish` deleted them.
 *   npx tsx bench/grow-window.ts --prepare --products 20000   # seed at N = 1, copy and flip to 2 (run under heavy)
 *   npx tsx bench/grow-window.ts                              # measure window, finish, measure after (under quiet)
 * Each phase serves the prepared database with `wrangler dev` (CATALOG_PARTITIONS=2) with an empty cache, so every
 * URL (each used once per phase) is answered from D1. The bare route (/health) is measured in each phase as the
 * baseline. Latencies are p50/p95/p99 over every request; the report gives ratios to the bare route and window ÷ after.
 */
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { benchArgs } from "./lib/args";
import { env as quietEnv, freshDatabase, startDevServer } from "./lib/dev-server";
import { connectInspector } from "./lib/inspector";
import { fmt, percentile } from "./lib/stats";

const values = benchArgs({
  prepare: false,
  products: 20_000,
  persist: ".wrangler/bench-grow-window",
  port: 8851,
  "inspector-port": 9351,
  connections: 2,
  each: 300,
  out: "bench/results/grow-window.md",
});
const persist = path.resolve(values.persist);
const grow = (...flags: string[]) =>
  execFileSync("npx", ["--no-install", "tsx", "scripts/grow-partitions.ts", "--from", "1", "--persist", persist, ...flags], { env: quietEnv, stdio: ["ignore", "inherit", "inherit"] });

type Sample = { times: number[]; non2xx: number; tiers: Record<string, number> };
type Phase = { name: string; cases: Record<string, Sample> };

async function timed(origin: string, urls: string[]): Promise<Sample> {
  const sample: Sample = { times: [], non2xx: 0, tiers: {} };
  let next = 0;
  const worker = async () => {
    while (next < urls.length) {
      const url = urls[next++]!;
      const t = performance.now();
      const res = await fetch(origin + url, { headers: { authorization: `Bearer bench-${next % 4096}` } });
      await res.arrayBuffer();
      sample.times.push(performance.now() - t);
      if (res.status >= 300) sample.non2xx += 1;
      const tier = res.headers.get("x-cache-tier") ?? "-";
      sample.tiers[tier] = (sample.tiers[tier] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: values.connections }, worker));
  return sample;
}

/** `count` distinct query strings: every cache key once (limit × currency × locale). */
function variants(count: number): string[] {
  const out: string[] = [];
  for (let limit = 1; out.length < count && limit <= 100; limit++)
    for (const currency of ["USD", "EUR", "GBP"]) for (const locale of ["en", "de", "fr"]) out.push(`currency=${currency}&locale=${locale}&limit=${limit}`);
  return out.slice(0, count);
}

async function measure(name: string): Promise<Phase> {
  // A phase starts from an empty edge cache and KV: every listing URL is a D1 read.
  for (const tier of ["cache", "kv"]) rmSync(path.join(persist, "v3", tier), { recursive: true, force: true });
  const server = await startDevServer({ port: values.port, inspectorPort: values["inspector-port"], persist, vars: { CATALOG_PARTITIONS: "2" } });
  try {
    const inspector = await connectInspector(values["inspector-port"]).catch(() => undefined);
    await inspector?.call("Network.disable").catch(() => undefined);
    await fetch(`${server.origin}/v1/search?q=prime&currency=GBP&locale=fr`).then((r) => r.arrayBuffer());
    const v = variants(values.each);
    const cases: Record<string, Sample> = {};
    cases["bare route (/health)"] = await timed(server.origin, v.map(() => "/health"));
    cases["no-filter search page, facets + total"] = await timed(server.origin, v.map((q) => `/v1/search?${q}`));
    cases["browse page, newest"] = await timed(server.origin, v.map((q) => `/v1/products?sort=newest&${q}`));
    cases["browse page, price_asc, in stock"] = await timed(server.origin, v.map((q) => `/v1/products?sort=price_asc&in_stock=true&${q}`));
    return { name, cases };
  } finally {
    server.stop();
  }
}

function report(phases: Phase[], loadStart: number[], loadEnd: number[]): string {
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(", ");
  const stat = (s: Sample) => {
    const t = [...s.times].sort((a, b) => a - b);
    return { p50: percentile(t, 50), p95: percentile(t, 95), p99: percentile(t, 99) };
  };
  const lines = [
    "# Reads during a growth's clean-up window (N = 1 → 2)",
    "",
    `Command: \`npx tsx bench/grow-window.ts --prepare --products ${values.products}\` (under /work/wt/heavy), then \`npx tsx bench/grow-window.ts\` (under /work/wt/quiet).`,
    `Run ${new Date().toISOString()} on a 2-core machine; load average (1, 5, 15 min) ${load(loadStart)} when measuring began, ${load(loadEnd)} at the end.`,
    `${values.products} seeded products grown 1 → 2: during the window partition 0 still holds the moved half's rows; after, \`--finish\` deleted them.`,
    `${values.each} requests per case and phase, every URL once (distinct limit × currency × locale), ${values.connections} connections, empty cache at each phase's start.`,
    "",
    "| phase | case | p50 ms | p95 ms | p99 ms | p50 ÷ bare | p99 ÷ bare | non-2xx | tiers |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const phase of phases) {
    const bare = stat(phase.cases["bare route (/health)"]!);
    for (const [name, s] of Object.entries(phase.cases)) {
      const st = stat(s);
      lines.push(`| ${phase.name} | ${name} | ${fmt(st.p50)} | ${fmt(st.p95)} | ${fmt(st.p99)} | ${fmt(st.p50 / bare.p50, 2)} | ${fmt(st.p99 / bare.p99, 2)} | ${s.non2xx} | ${JSON.stringify(s.tiers)} |`);
    }
  }
  const [during, after] = phases;
  if (during && after) {
    lines.push("", "| case | window ÷ after, p50 | window ÷ after, p99 |", "|---|---|---|");
    for (const name of Object.keys(during.cases)) {
      const d = stat(during.cases[name]!);
      const a = stat(after.cases[name]!);
      lines.push(`| ${name} | ${fmt(d.p50 / a.p50, 2)} | ${fmt(d.p99 / a.p99, 2)} |`);
    }
  }
  return lines.join("\n") + "\n";
}

async function main() {
  if (values.prepare) {
    freshDatabase(persist, values.products);
    grow();
    grow("--flip");
    console.log(`bench: ${persist} seeded with ${values.products} products and grown 1 → 2 up to the flip`);
    return;
  }
  const loadStart = loadavg();
  const during = await measure("window");
  grow("--finish");
  const after = await measure("after clean-up");
  const text = report([during, after], loadStart, loadavg());
  writeFileSync(values.out, text);
  console.log(text);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
