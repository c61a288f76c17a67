/**
 * Where a reservation's CPU goes under `wrangler dev`: serves an unminified bundle on a copy of the state that
 * `bench/reserve/run.ts --phase prepare` left, runs the closed loop of one case and samples the Worker isolate
 * (Worker and Durable Objects alike) through the inspector. Not a measurement to report: profiling slows the
 * isolate; it says which code to cut.
 *   NODE_OPTIONS=--experimental-websocket npx tsx bench/reserve/profile.ts --case spread --seconds 6
 */
import { cpSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { benchArgs } from "../lib/args";
import { sh, startDevServer } from "../lib/dev-server";
import { profileIsolate, type ProfileRow } from "../lib/cpu-profile";

const args = benchArgs({ case: "spread", seconds: 6, connections: 50, port: 8821, "inspector-port": 9321, skus: 1000, shoppers: 1000 });
const ORIGIN = `http://127.0.0.1:${args.port}`;
const PREPARED = path.resolve(".wrangler/bench-reserve");
const PERSIST = path.resolve(".wrangler/bench-reserve-profile");
const BUILD = path.resolve(".wrangler/bench-reserve-profile-build");
const STORE = { authorization: "Bearer dev-storefront-key", "content-type": "application/json" };
const ADMIN = { authorization: "Bearer bench-admin-token", "content-type": "application/json" };

const sku = () => (args.case === "hot" ? "BENCH-HOT" : `BENCH-S${String(Math.floor(Math.random() * args.skus)).padStart(4, "0")}`);
const request = (): [string, RequestInit] =>
  args.case === "noop"
    ? ["/admin/bench/do-noop", { method: "POST", headers: ADMIN }]
    : [
        "/v1/reservations",
        {
          method: "POST",
          headers: { ...STORE, "idempotency-key": crypto.randomUUID(), "x-shopper-id": `bench-shopper-${Math.floor(Math.random() * args.shoppers)}` },
          body: JSON.stringify({ items: [{ sku: sku(), quantity: 1 }], ttl_seconds: 3600 }),
        },
      ];

async function loop(seconds: number): Promise<number> {
  let n = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: args.connections }, async () => {
      while (performance.now() < end) {
        const [p, init] = request();
        const res = await fetch(ORIGIN + p, init).catch(() => undefined);
        await res?.arrayBuffer();
        if (res?.ok) n++;
      }
    }),
  );
  return n;
}

/** esbuild's unminified bundle marks each module with a `// path` comment: a bundle line → its source file. */
function moduleOf(bundle: string[]): (line: number) => string {
  const marks: { line: number; file: string }[] = [];
  bundle.forEach((l, i) => {
    const m = /^\/\/ ((?:src|durable-objects|node_modules)\/\S+)$/.exec(l);
    if (m) marks.push({ line: i + 1, file: m[1]!.replace(/^node_modules\/(@[^/]+\/[^/]+|[^/]+)\/.*/, "node_modules/$1") });
  });
  return (line) => {
    let lo = 0;
    let hi = marks.length - 1;
    let best = "(runtime)";
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (marks[mid]!.line <= line) {
        best = marks[mid]!.file;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best;
  };
}

async function main() {
  rmSync(PERSIST, { recursive: true, force: true });
  cpSync(PREPARED, PERSIST, { recursive: true });
  rmSync(BUILD, { recursive: true, force: true });
  sh(["wrangler", "deploy", "--dry-run", "--outdir", BUILD, "--no-minify"]);
  const entry = path.join(BUILD, "index.js");
  const { stop } = await startDevServer({ port: args.port, persist: PERSIST, inspectorPort: args["inspector-port"], entry, vars: { ADMIN_TOKEN: "bench-admin-token" } });
  try {
    if (process.env.PROFILE_DEBUG) console.log(await (await fetch(`http://127.0.0.1:${args["inspector-port"]}/json`)).text());
    await loop(3);
    let done = 0;
    const prof = await profileIsolate(args["inspector-port"], async () => (done = await loop(args.seconds)), 400);
    const where = moduleOf(readFileSync(entry, "utf8").split("\n"));
    const byModule = new Map<string, number>();
    for (const r of prof.rows) {
      const line = Number(r.where.split(":").pop());
      const mod = r.where.startsWith("index.js") || r.where.includes("index.js:") ? where(line) : r.fn.startsWith("(") ? r.fn : "(runtime)";
      byModule.set(mod, (byModule.get(mod) ?? 0) + r.selfMs);
    }
    const pct = (ms: number) => `${((100 * ms) / prof.totalMs).toFixed(1)} %`;
    console.log(`case ${args.case}: ${done} ok in ${args.seconds} s (${(done / args.seconds).toFixed(0)}/s while profiled); ${prof.totalMs.toFixed(0)} ms sampled`);
    console.log("\nself time by module:");
    for (const [m, ms] of [...byModule].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${pct(ms).padStart(7)}  ${m}`);
    console.log("\ntop functions:");
    const show = (r: ProfileRow) => {
      const line = Number(r.where.split(":").pop());
      return `  ${pct(r.selfMs).padStart(7)}  ${r.fn}  ${r.where.includes("index.js") ? where(line) : r.where}`;
    };
    for (const r of prof.rows.slice(0, 30)) console.log(show(r));
  } finally {
    stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
