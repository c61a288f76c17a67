/**
 * CPU per request of each bench/reserve case, read from the kernel: the user+system CPU time of every process of
 * `wrangler dev` (its node process, its proxy workerd, the runtime workerd that runs the Worker, every Durable
 * Object and miniflare's KV/Cache/D1/Queues simulators) and of this client, before and after N requests, then
 * again once the event pipeline has drained (the queue consumer's share). On a CPU-bound local runtime the
 * throughput ratio of two cases is roughly the inverse ratio of these figures.
 *
 * With `--profile`, it also samples every isolate of the runtime (ours through wrangler's inspector proxy,
 * miniflare's through workerd's own inspector) during each case and prints busy time per isolate.
 *   npx tsx bench/reserve/cpu.ts --requests 3000 --port 8821 --inspector-port 9321 [--profile 1] [--cases noop,hot,spread]
 * Needs `bench/reserve/run.ts --phase prepare` first; works on a copy of its state.
 */
import { cpSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { benchArgs } from "../lib/args";
import { startDevServer } from "../lib/dev-server";
import { connectInspector, connectRuntimeIsolates, type Inspector } from "../lib/inspector";

const args = benchArgs({ requests: 3000, connections: 50, port: 8821, "inspector-port": 9321, skus: 1000, shoppers: 1000, profile: 0, cases: "noop,hot,spread,noop", entry: "" });
const ORIGIN = `http://127.0.0.1:${args.port}`;
const PREPARED = path.resolve(".wrangler/bench-reserve");
const PERSIST = path.resolve(".wrangler/bench-reserve-cpu");
const ENTRY = path.resolve(args.entry || ".wrangler/bench-reserve-build/index.js");
const ADMIN = { authorization: "Bearer bench-admin-token", "content-type": "application/json" };
const STORE = { authorization: "Bearer dev-storefront-key", "content-type": "application/json" };
const TICK_MS = 1000 / 100; // USER_HZ

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

function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** utime + stime of a process (all its threads), in ms. */
function cpuMs(pid: number | "self"): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

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

/** Until no new consumed-event sample for 3 s (max 60 s). */
async function drain(): Promise<void> {
  const t0 = performance.now();
  let last = await lagSamples();
  let since = performance.now();
  while (performance.now() - since < 3000 && performance.now() - t0 < 60_000) {
    await new Promise((r) => setTimeout(r, 250));
    const now = await lagSamples();
    if (now !== last) {
      last = now;
      since = performance.now();
    }
  }
}

type Sampler = { name: string; insp: Inspector };
async function startProfiles(samplers: Sampler[]) {
  for (const s of samplers) {
    await s.insp.call("Profiler.enable");
    await s.insp.call("Profiler.setSamplingInterval", { interval: 500 });
    await s.insp.call("Profiler.start");
  }
}
type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };
async function stopProfiles(samplers: Sampler[], requests: number) {
  for (const s of samplers) {
    const { profile } = await s.insp.call<{ profile: { nodes: Node[]; samples: number[]; timeDeltas: number[] } }>("Profiler.stop", {}, 30_000);
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    let busy = 0;
    const fns = new Map<string, number>();
    profile.samples.forEach((id, i) => {
      const n = byId.get(id)!;
      const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
      if (n.callFrame.functionName === "(idle)") return;
      busy += ms;
      const k = `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.replace(/^.*\//, "")}:${n.callFrame.lineNumber + 1}`;
      fns.set(k, (fns.get(k) ?? 0) + ms);
    });
    const top = [...fns].sort((a, b) => b[1] - a[1]).slice(0, 12);
    console.log(`    isolate ${s.name}: busy ${busy.toFixed(0)} ms = ${(busy / requests).toFixed(3)} ms/req`);
    for (const [k, ms] of top) console.log(`      ${((100 * ms) / Math.max(busy, 1)).toFixed(1).padStart(5)} %  ${k}`);
  }
}

async function main() {
  rmSync(PERSIST, { recursive: true, force: true });
  cpSync(PREPARED, PERSIST, { recursive: true });
  const server = await startDevServer({ port: args.port, persist: PERSIST, inspectorPort: args["inspector-port"], entry: ENTRY, vars: { ADMIN_TOKEN: "bench-admin-token" } });
  try {
    const ours = await connectInspector(args["inspector-port"]);
    await ours.call("Network.disable");
    const procs = descendants(server.pid).map((pid) => {
      const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      const role = comm === "workerd" ? (cmd.includes("--inspector-addr") ? "runtime workerd" : "proxy workerd") : comm;
      return { pid, role };
    }).filter((p) => p.role !== "sh" && p.role !== "npm exec");
    console.log(`processes: ${procs.map((p) => `${p.role}(${p.pid})`).join(", ")}`);
    const runtime = procs.find((p) => p.role === "runtime workerd");
    const samplers: Sampler[] = [];
    if (args.profile && runtime) {
      samplers.push({ name: "edgeshelf (Worker + DOs)", insp: ours });
      for (const [id, insp] of await connectRuntimeIsolates(runtime.pid)) samplers.push({ name: id, insp });
    }
    // Warm every path once.
    await loop("noop", 300);
    if (args.cases.includes("spread")) await loop("spread", 600);
    await loop("hot", 300);
    await drain();
    for (const kind of args.cases.split(",")) {
      const snap = () => ({ procs: procs.map((p) => cpuMs(p.pid)), self: cpuMs("self"), samples: 0 });
      const before = snap();
      const samplesBefore = await lagSamples();
      if (samplers.length) await startProfiles(samplers);
      const r = await loop(kind, args.requests);
      const during = snap();
      if (samplers.length) await stopProfiles(samplers, args.requests);
      const d0 = performance.now();
      await drain();
      const drainS = (performance.now() - d0) / 1000 - 3;
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
