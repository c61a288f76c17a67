/**
 * CPU per request of each bench/reserve case, read from the kernel: the user+system CPU time of every process of
 * `wrangler dev` (its node process, its proxy workerd, the runtime workerd that runs the Worker, every Durable
 * Object and miniflare's KV/Cache/D1/Queues simulators) and of this client, before and after N requests, then
 * again once the event pipeline has drained (the queue consumer's share). On a CPU-bound local runtime the
 * throughput ratio of two cases is roughly the inverse ratio of these figures.
 * Per-isolate CPU profiles cannot split it further: each isolate's V8 sampler counts wall time, so every isolate
 * that ran once reports itself busy for the whole window. Compare patched bundles instead (`--entry`).
 *   npx tsx bench/reserve/cpu.ts --requests 3000 --port 8821 --inspector-port 9321 [--cases noop,hot,spread] [--entry dir/index.js]
 * Needs `bench/reserve/run.ts --phase prepare` first; works on a copy of its state.
 */
import { cpSync, rmSync } from "node:fs";
import path from "node:path";
import { benchArgs } from "../lib/args";
import { drainEvents } from "../lib/drain";
import { startDevServer } from "../lib/dev-server";
import { connectInspector } from "../lib/inspector";
import { cpuMs, serverProcesses } from "../lib/proc-cpu";

const args = benchArgs({ requests: 3000, connections: 50, port: 8821, "inspector-port": 9321, skus: 1000, shoppers: 1000, cases: "noop,hot,spread,noop", entry: "" });
const ORIGIN = `http://127.0.0.1:${args.port}`;
const PREPARED = path.resolve(".wrangler/bench-reserve");
const PERSIST = path.resolve(".wrangler/bench-reserve-cpu");
const ENTRY = path.resolve(args.entry || ".wrangler/bench-reserve-build/index.js");
const ADMIN = { authorization: "Bearer bench-admin-token", "content-type": "application/json" };
const STORE = { authorization: "Bearer dev-storefront-key", "content-type": "application/json" };

const sku = (kind: string) => (kind === "hot" ? "BENCH-HOT" : `BENCH-S${String(Math.floor(Math.random() * args.skus)).padStart(4, "0")}`);
const request = (kind: string): [string, RequestInit] =>
  kind === "noop"
    ? ["/admin/bench/do-noop", { method: "POST", headers: ADMIN }]
    : [
        "/v1/reservations",
        {
          method: "POST",
          headers: { ...STORE, "idempotency-key": crypto.randomUUID(), "x-shopper-id": `bench-shopper-${Math.floor(Math.random() * args.shoppers)}` },
          body: JSON.stringify({ items: [{ sku: sku(kind), quantity: 1 }], ttl_seconds: 3600 }),
        },
      ];

async function loop(kind: string, n: number): Promise<{ ok: number; other: Map<number, number>; seconds: number }> {
  let sent = 0;
  let ok = 0;
  const other = new Map<number, number>();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: args.connections }, async () => {
      while (sent < n) {
        sent++;
        const [p, init] = request(kind);
        const res = await fetch(ORIGIN + p, init).catch(() => undefined);
        await res?.arrayBuffer();
        if (res?.ok) ok++;
        else other.set(res?.status ?? 0, (other.get(res?.status ?? 0) ?? 0) + 1);
      }
    }),
  );
  return { ok, other, seconds: (performance.now() - t0) / 1000 };
}

async function lagSamples(): Promise<number> {
  const r = await fetch(`${ORIGIN}/admin/metrics`, { headers: ADMIN });
  return ((await r.json()) as { propagation_lag_ms: { samples: number } }).propagation_lag_ms.samples;
}

async function main() {
  rmSync(PERSIST, { recursive: true, force: true });
  cpSync(PREPARED, PERSIST, { recursive: true });
  const server = await startDevServer({ port: args.port, persist: PERSIST, inspectorPort: args["inspector-port"], entry: ENTRY, vars: { ADMIN_TOKEN: "bench-admin-token" } });
  try {
    const ours = await connectInspector(args["inspector-port"]);
    await ours.call("Network.disable");
    const procs = serverProcesses(server.pid).filter((p) => p.role !== "sh" && p.role !== "npm exec");
    console.log(`processes: ${procs.map((p) => `${p.role}(${p.pid})`).join(", ")}`);
    // Warm every path once.
    await loop("noop", 300);
    if (args.cases.includes("spread")) await loop("spread", 600);
    await loop("hot", 300);
    await drainEvents(lagSamples);
    for (const kind of args.cases.split(",")) {
      const snap = () => ({ procs: procs.map((p) => cpuMs(p.pid)), self: cpuMs("self"), samples: 0 });
      const before = snap();
      const samplesBefore = await lagSamples();
      const r = await loop(kind, args.requests);
      const during = snap();
      const drainS = (await drainEvents(lagSamples)) - 3;
      const after = snap();
      const events = (await lagSamples()) - samplesBefore;
      const per = (a: number, b: number) => ((b - a) / args.requests).toFixed(3);
      console.log(`\n${kind}: ${args.requests} requests in ${r.seconds.toFixed(1)} s (${(args.requests / r.seconds).toFixed(0)}/s), ok ${r.ok}, other ${JSON.stringify([...r.other])}; consumed events ${events}; drain ${drainS.toFixed(1)} s`);
      procs.forEach((p, i) => {
        const load = Number(per(before.procs[i]!, during.procs[i]!));
        const all = Number(per(before.procs[i]!, after.procs[i]!));
        if (all > 0.005) console.log(`  ${p.role.padEnd(16)} ${load.toFixed(3)} ms/req during load, ${all.toFixed(3)} incl. drain`);
      });
      const tot = (s: { procs: number[] }) => s.procs.reduce((a, b) => a + b, 0);
      console.log(`  ${"all server".padEnd(16)} ${per(tot(before), tot(during))} ms/req during load, ${per(tot(before), tot(after))} incl. drain`);
      console.log(`  ${"this client".padEnd(16)} ${per(before.self, during.self)} ms/req`);
    }
  } finally {
    server.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
