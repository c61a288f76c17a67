/**
 * A second client for the miss rows of bench/recommendations/run.ts, to tell the server's tail from the load
 * generator's: Node's own fetch (undici) instead of autocannon, the same rows alternating over rounds, and for
 * the slowest requests the Server-Timing the Worker reported (time inside the Worker vs time the client waited).
 *
 *   npx tsx bench/recommendations/fetch-probe.ts --origin http://127.0.0.1:8810 --connections 2 --seconds 4
 *
 * Run it against a `wrangler dev` serving a database where a rebuild has finished (e.g. the one
 * bench/recommendations/run.ts leaves in .wrangler/bench-recommendations-10000). Prints; writes nothing.
 */
import { productId } from "../../src/seed/generate";
import { percentile } from "../lib/stats";
import { benchArgs } from "../lib/args";

const args = benchArgs({
  origin: "http://127.0.0.1:8810",
  connections: 2,
  seconds: 4,
  rounds: 3,
  products: 10000,
});
const connections = args.connections;
const seconds = args.seconds;
const third = Math.floor(args.products / 3);

type Sample = { ms: number; serverTiming: string | null; id: string };
const rows = [
  { name: "product read, miss", next: 100, path: (id: string) => `/v1/products/${id}`, samples: [] as Sample[] },
  { name: "recommendations related, miss", next: 100 + third, path: (id: string) => `/v1/products/${id}/recommendations?intent=related`, samples: [] as Sample[] },
  { name: "recommendations substitutes, miss", next: 100 + 2 * third, path: (id: string) => `/v1/products/${id}/recommendations?intent=substitutes`, samples: [] as Sample[] },
];

async function runRow(row: (typeof rows)[number]): Promise<void> {
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (Date.now() < end) {
        const id = productId(row.next++);
        const started = performance.now();
        // A bearer token per request: the per-client rate limiter must not throttle the probe itself.
        const res = await fetch(args.origin + row.path(id), { headers: { authorization: `Bearer probe-${id}` } });
        await res.arrayBuffer();
        row.samples.push({ ms: performance.now() - started, serverTiming: res.headers.get("server-timing"), id });
      }
    }),
  );
}

async function main() {
  for (let r = 0; r < args.rounds; r++) {
    for (const row of r % 2 === 0 ? rows : [...rows].reverse()) await runRow(row);
  }
  const base = percentile([...rows[0]!.samples.map((s) => s.ms)].sort((a, b) => a - b), 99);
  for (const row of rows) {
    const sorted = [...row.samples].sort((a, b) => a.ms - b.ms);
    const ms = sorted.map((s) => s.ms);
    const p99 = percentile(ms, 99);
    console.log(`${row.name}: n ${ms.length}, p50 ${percentile(ms, 50).toFixed(0)} ms, p99 ${p99.toFixed(0)} ms (${(p99 / base).toFixed(2)}× the product read)`);
    for (const s of sorted.slice(-3)) console.log(`  slowest: ${s.ms.toFixed(0)} ms ${s.id} [${s.serverTiming ?? "no Server-Timing"}]`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
