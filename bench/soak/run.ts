/**
 * Soak: a long mixed run against the real local runtime, watching its memory.
 *
 *   npx tsx bench/soak/prepare.ts [--products 2000]          # once, before the measured run: seed + bundle
 *   npx tsx bench/soak/run.ts [--requests 50000] [--concurrency 16] [--products 2000] [--port 8831]
 *                             [--only bearer,hostile | --phases read:3000,hostile:2700] [--report bench/results/soak.md]
 *                             [--runtime wrangler|miniflare] [--inspect] [--gc] [--tmp-storage kv,cache,do]
 *
 * Classes (bench/soak/mix.ts): hostile reads, random bearers on keyed routes, valid reads, availability,
 * reservations (committed or released), admin writes, stock adjustments (queue-heavy), imports and recommendation
 * rebuilds; `--only` drives a subset, `--phases` one class after the other on one server, to find which traffic
 * makes the runtime grow.
 *
 * The runtime is `wrangler dev` (two workerd processes: its proxy and the runtime) or, with `--runtime miniflare`,
 * the same bundle and bindings on the Miniflare API alone (one workerd process, no proxy, no inspector unless
 * `--inspect`). Every second it samples the RSS of each workerd process, the runtime's RSS split by kind
 * (bench/lib/smaps.ts: V8's cage, the native heap, files), and over the inspector the JS heaps (used and committed)
 * of the Worker's isolate and of miniflare's own isolates. V8 in the local workerd collects lazily and the
 * inspector's collectGarbage is not answered, so `--gc` takes a full GC (a heap snapshot) of every isolate before
 * the samples that growth is computed from: the warm-up point (the first 10 % of requests, traffic paused) and the
 * end, or each phase's end.
 */
import { copyFileSync, cpSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { serverProcesses } from "../lib/proc-cpu";
import path from "node:path";
import { startDevServer } from "../lib/dev-server";
import { startMiniflare } from "../lib/miniflare-server";
import { formatParts, memoryParts, type MemoryParts } from "../lib/smaps";
import { connectInspector, connectRuntimeIsolates, type Inspector } from "../lib/inspector";
import { statusJson } from "../lib/stats";
import { makeMix, STOREFRONT, type Req } from "./mix";
import { SOAK_BUILD, SOAK_SEED, SOAK_STATE } from "./paths";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const REQUESTS = Number(arg("requests", "50000"));
const CONCURRENCY = Number(arg("concurrency", "16"));
const PRODUCTS = Number(arg("products", "2000"));
const PORT = Number(arg("port", "8831"));
const ONLY = arg("only", "");
/** "read:3000,hostile:3000,…": drive one class after the other on ONE server and report each phase's growth. */
const PHASES = arg("phases", "");
const REPORT = arg("report", ONLY || PHASES ? "" : "bench/results/soak.md");
const WARMUP_SHARE = Number(arg("warmup", "0.1"));
/**
 * wrangler dev's inspector proxy enables the Network domain on the runtime, which then reports every request and
 * subrequest; the proxy keeps those messages until DevTools attaches (and forwards each to the Node side as a debug
 * log). Both runtimes grow with every request because of it, which production has no equivalent of. By default
 * the soak attaches as DevTools and turns the Network domain off; `--devtools-network` keeps it, to measure it.
 */
const KEEP_NETWORK = process.argv.includes("--devtools-network");
/**
 * `--runtime miniflare` serves the same bundle and bindings with the Miniflare API: one workerd process, no proxy,
 * no inspector (`--inspect` adds workerd's inspector back). `--tmp-storage kv,cache,do` moves those stores to
 * miniflare's temporary directory.
 */
const RUNTIME = arg("runtime", "wrangler");
const INSPECT = process.argv.includes("--inspect");
const TMP_STORAGE = arg("tmp-storage", "").split(",").filter(Boolean);
/**
 * `--gc`: at the end of each phase, a full GC of every isolate the inspector reaches (a heap snapshot) before the
 * sample, so heap figures are live bytes, not live bytes plus whatever garbage V8 had not collected yet.
 */
const FORCE_GC = process.argv.includes("--gc");
/** Reads every product once before measuring (`--no-prime` to skip). */
const PRIME = !process.argv.includes("--no-prime");
const MB = 1024 * 1024;

/** Every workerd process below `root` (wrangler → node → workerd). */
const workerdPids = (root: number): number[] => serverProcesses(root).filter((p) => p.role.endsWith("workerd")).map((p) => p.pid);

/** Resident MB of a process, or one of its parts: RssAnon (heap, allocator) or RssFile (mapped files: binary, SQLite). */
function rssOf(pid: number, field: "VmRSS" | "RssAnon" | "RssFile" = "VmRSS"): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Durable Objects the local runtime has created (one SQLite file each under the persist directory). */
function objectCounts(): Record<string, number> {
  const root = path.join(SOAK_STATE, "v3", "do");
  if (!existsSync(root)) return {};
  const out: Record<string, number> = {};
  for (const ns of readdirSync(root)) out[ns.replace(/^edgeshelf-/, "")] = readdirSync(path.join(root, ns)).filter((f) => f.endsWith(".sqlite")).length;
  return out;
}

async function main() {
  if (!existsSync(SOAK_SEED) || !existsSync(path.join(SOAK_BUILD, "index.js"))) throw new Error("run `npx tsx bench/soak/prepare.ts` first");
  rmSync(SOAK_STATE, { recursive: true, force: true });
  cpSync(SOAK_SEED, SOAK_STATE, { recursive: true });
  const { classes, weights } = makeMix(PRODUCTS);
  const chosen = ONLY ? ONLY.split(",").map((k) => [k, 1] as [string, number]) : weights;
  for (const [k] of chosen) if (!classes[k]) throw new Error(`unknown class ${k}; known: ${Object.keys(classes).join(", ")}`);
  // One slot per weight unit, spread evenly (a fixed interleave keeps runs comparable).
  const slots: string[] = [];
  const total = chosen.reduce((n, [, w]) => n + w, 0);
  for (let s = 0; s < total; s++) {
    let best = chosen[0]![0];
    let bestScore = -Infinity;
    for (const [k, w] of chosen) {
      const score = w * (s + 1) / total - slots.filter((x) => x === k).length;
      if (score > bestScore) (bestScore = score), (best = k);
    }
    slots.push(best);
  }
  const next = (i: number): Req => classes[slots[i % slots.length]!]!(Math.floor(i / slots.length) * 7919 + i);

  // The admin and storefront credentials come from .dev.vars, as with `npm run dev`.
  if (!existsSync(".dev.vars")) copyFileSync(".dev.vars.example", ".dev.vars");
  const entry = path.join(SOAK_BUILD, "index.js");
  const server = RUNTIME === "miniflare"
    ? await startMiniflare({ port: PORT, entry, persist: SOAK_STATE, tmpStorage: TMP_STORAGE, inspectorPort: INSPECT ? PORT + 500 : undefined })
    : await startDevServer({ port: PORT, inspectorPort: PORT + 500, persist: SOAK_STATE, entry, healthTries: 480, logFile: ".wrangler/soak-wrangler.log", logLevel: arg("log-level", "error") });
  // Under wrangler, two workerd processes: wrangler's proxy (the port we call, the DevTools proxy) and the runtime
  // that serves the Worker, its Durable Objects and miniflare's simulations (the one started with --inspector-addr).
  // Under miniflare, the runtime alone.
  const isRuntime = (p: number) => RUNTIME === "miniflare" || readFileSync(`/proc/${p}/cmdline`, "utf8").includes("--inspector-addr");
  const pids = workerdPids(server.pid).sort((a, b) => Number(isRuntime(a)) - Number(isRuntime(b)));
  const runtimePid = pids.find(isRuntime);
  const rss = () => pids.reduce((n, p) => n + rssOf(p), 0);
  const parts = (): MemoryParts => (runtimePid ? memoryParts(runtimePid) : { v8: NaN, native: NaN, otherAnon: NaN, file: NaN });
  let inspector: Inspector | undefined;
  if (RUNTIME === "wrangler" || INSPECT) {
    try {
      // Under miniflare, workerd's own inspector lists every isolate; ours is "core:user:<name>".
      inspector = await connectInspector(PORT + 500, RUNTIME === "miniflare" ? "core:user:edgeshelf" : undefined);
    } catch (err) {
      console.log(`soak: no JS heap figures (${String(err)})`);
    }
  }
  if (inspector && !KEEP_NETWORK) await inspector.call("Network.disable").catch((err) => console.log(`soak: Network.disable failed: ${String(err)}`));
  /** Used and committed (V8 totalSize) MB of the Worker's JS heap. */
  const heapMb = async (): Promise<[number, number]> => {
    if (!inspector) return [NaN, NaN];
    const h = await inspector.heap();
    return [h.usedSize / MB, h.totalSize / MB];
  };
  const simulations = runtimePid && (RUNTIME === "wrangler" || INSPECT) ? await connectRuntimeIsolates(runtimePid).catch(() => new Map<string, Inspector>()) : new Map<string, Inspector>();
  /** JS heap of miniflare's own isolates in the runtime (Cache, KV, D1, Queues, assets, entry). */
  const simulationHeapMb = async (): Promise<[number, number]> => {
    let used = 0;
    let total = 0;
    for (const i of simulations.values()) {
      const h = await i.heap();
      used += h.usedSize;
      total += h.totalSize;
    }
    return simulations.size ? [used / MB, total / MB] : [NaN, NaN];
  };
  if (PRIME) {
    // Warm-up that production has too: the first read of every product fills Cache and KV (one time per product).
    const t0 = Date.now();
    let k = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (k < PRODUCTS) {
        const id = `p-${String(1 + k++).padStart(6, "0")}`;
        await fetch(`${server.origin}/v1/products/${id}`).then((r) => r.text(), () => "");
      }
    }));
    console.log(`soak: primed ${PRODUCTS} product reads in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(`soak: workerd pids ${pids.join(",")} (rss ${pids.map((p) => rssOf(p).toFixed(0)).join(" + ")} MB), classes ${slots.length <= 12 ? slots.join(",") : ONLY || "full mix"}, load ${load()}`);

  const errors: string[] = [];
  type Sample = { t: number; rss: number; per: number[]; anon: number[]; heap: number; heapTotal: number; sim: number; simTotal: number; parts: MemoryParts; done: number };
  const samples: Sample[] = [];
  const started = Date.now();
  let done = 0;
  const sample = async (): Promise<Sample> => {
    const [heap, heapTotal] = await heapMb().catch(() => [NaN, NaN]);
    const [sim, simTotal] = await simulationHeapMb().catch(() => [NaN, NaN]);
    const s = { t: (Date.now() - started) / 1000, heap, heapTotal, sim, simTotal, rss: rss(), per: pids.map((p) => rssOf(p)), anon: pids.map((p) => rssOf(p, "RssAnon")), parts: parts(), done };
    samples.push(s);
    return s;
  };
  const first = await sample();
  const startLoad = load();
  if (PHASES) {
    const rows: string[] = [];
    let before = first;
    let objBefore = objectCounts();
    for (const phase of PHASES.split(",")) {
      const [kind, n] = phase.split(":") as [string, string];
      const make = classes[kind];
      if (!make) throw new Error(`unknown class ${kind}`);
      const st = new Map<number, number>();
      let k = 0;
      const t0 = Date.now();
      const drive = async () => {
        while (k < Number(n)) {
          const i = k++;
          const req = make(i);
          let status = 0;
          try {
            const res = await fetch(server.origin + req.url, { ...req.init, signal: AbortSignal.timeout(30_000) });
            status = res.status;
            const text = await res.text();
            if (req.kind === "reserve" && status === 201) {
              const id = (JSON.parse(text) as { id: string }).id;
              const headers = { ...STOREFRONT, "x-shopper-id": req.shopper!, "cf-connecting-ip": "198.51.100.120" };
              await (await fetch(server.origin + (i % 2 ? `/v1/reservations/${id}` : `/v1/reservations/${id}/commit`), { method: i % 2 ? "DELETE" : "POST", headers })).text();
            }
            if (status >= 500 && errors.length < 30) errors.push(`${kind} ${req.url.slice(0, 80)} -> ${status} ${text.slice(0, 200)}`);
          } catch (err) {
            if (errors.length < 30) errors.push(`${kind} ${req.url.slice(0, 80)} -> ${String(err)}`);
          }
          st.set(status, (st.get(status) ?? 0) + 1);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, drive));
      const secs = (Date.now() - t0) / 1000;
      await new Promise((r) => setTimeout(r, 3000)); // let queue consumers and alarms settle
      if (FORCE_GC) for (const i of [inspector, ...simulations.values()]) await i?.gc().catch((err) => console.log(`soak: gc failed: ${String(err)}`));
      const after = await sample();
      const objAfter = objectCounts();
      const objDelta = Object.fromEntries(Object.entries(objAfter).map(([ns, c]) => [ns, c - (objBefore[ns] ?? 0)]).filter(([, d]) => d));
      const row = `| ${kind} | ${n} | ${(Number(n) / secs).toFixed(0)} | ${statusJson(st)} | ${(after.rss - before.rss).toFixed(1)} (${after.per.map((x, j) => (x - before.per[j]!).toFixed(1)).join(" / ")}; anon ${after.anon.map((x, j) => (x - before.anon[j]!).toFixed(1)).join(" / ")}) | ${after.rss.toFixed(0)} | ${(after.heap - before.heap).toFixed(1)} | ${after.heap.toFixed(1)} (${after.heapTotal.toFixed(1)}) | ${after.sim.toFixed(1)} (${after.simTotal.toFixed(1)}) | ${JSON.stringify(objDelta)} |`;
      const dp = (k: keyof MemoryParts) => (after.parts[k] - before.parts[k]).toFixed(1);
      console.log(`${row}\n  runtime parts after: ${formatParts(after.parts)} MB; growth: v8 ${dp("v8")} / native ${dp("native")} / other anon ${dp("otherAnon")} / file ${dp("file")}`);
      rows.push(row);
      before = after;
      objBefore = objAfter;
    }
    console.log(`| class | requests | req/s | statuses | RSS growth MB (proxy / runtime) | RSS after | Worker heap growth MB | Worker heap after, used (committed) | miniflare isolates' heaps after, used (committed) | new objects |\n|---|---|---|---|---|---|---|---|---|---|\n${rows.join("\n")}`);
    if (errors.length) console.log(errors.join("\n"));
    inspector?.close();
    await server.stop();
    process.exit(0);
  }
  const sampler = setInterval(() => void sample(), 1000);

  const statuses = new Map<number, number>();
  const byKind = new Map<string, Map<number, number>>();
  let issued = 0;
  let warm: Sample | undefined;
  let warmPending: Promise<Sample> | undefined;
  const count = (kind: string, status: number) => {
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    const k = byKind.get(kind) ?? new Map<number, number>();
    k.set(status, (k.get(status) ?? 0) + 1);
    byKind.set(kind, k);
  };
  const send = async (kind: string, url: string, init?: RequestInit): Promise<{ status: number; text: string }> => {
    let status = 0;
    let text = "";
    try {
      const res = await fetch(server.origin + url, { ...init, signal: AbortSignal.timeout(30_000) });
      status = res.status;
      text = await res.text();
    } catch (err) {
      text = String(err);
    }
    if ((status >= 500 || status === 0) && errors.length < 30) errors.push(`${kind} ${init?.method ?? "GET"} ${url.slice(0, 100)} -> ${status} ${text.slice(0, 300)}`);
    count(kind, status);
    return { status, text };
  };
  /**
   * With `--gc`, the warm-up point and the end are measured the same way: traffic paused, nothing in flight, 3 s to
   * settle, a full GC of every isolate, then the sample. Growth between them is then what the runtime keeps, not
   * the garbage V8 had not collected yet at either moment.
   */
  let gate: Promise<void> | undefined;
  let inFlight = 0;
  let pausedSeconds = 0;
  const settledSample = async (): Promise<Sample> => {
    const t0 = Date.now();
    while (inFlight > 0) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 3000));
    for (const i of [inspector, ...simulations.values()]) await i?.gc().catch((err) => console.log(`soak: gc failed: ${String(err)}`));
    const s = await sample();
    pausedSeconds += (Date.now() - t0) / 1000;
    return s;
  };
  const worker = async () => {
    while (issued < REQUESTS) {
      if (gate) await gate;
      if (issued >= REQUESTS) break;
      inFlight++;
      const i = issued++;
      const req = next(i);
      const { status, text } = await send(req.kind, req.url, req.init);
      if (req.kind === "reserve" && status === 201) {
        const id = (JSON.parse(text) as { id: string }).id;
        const headers = { ...STOREFRONT, "x-shopper-id": req.shopper!, "cf-connecting-ip": "198.51.100.120" };
        if (i % 2) await send("reserve-release", `/v1/reservations/${id}`, { method: "DELETE", headers });
        else await send("reserve-commit", `/v1/reservations/${id}/commit`, { method: "POST", headers });
      }
      inFlight--;
      done++;
      if (done === Math.floor(REQUESTS * WARMUP_SHARE)) {
        if (FORCE_GC) {
          warmPending = settledSample().then((s) => (warm = s));
          gate = warmPending.then(() => (gate = undefined));
        } else warmPending = sample().then((s) => (warm = s));
      }
      if (done % 5000 === 0) console.log(`soak: ${done}/${REQUESTS} ${statusJson(statuses)} rss ${rss().toFixed(0)} MB, load ${load()}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (Date.now() - started) / 1000 - pausedSeconds;
  clearInterval(sampler);
  await warmPending;
  const endLoad = load();
  const end = FORCE_GC ? await settledSample() : await sample();
  const alive = await fetch(`${server.origin}/health`).then((r) => r.ok, () => false);
  const accounted = await fetch(`${server.origin}/admin/metrics`, { headers: { authorization: "Bearer dev-admin-token" } })
    .then((r) => r.json() as Promise<{ memory?: { bytes: number; budget: number } }>)
    .then((m) => m.memory, () => undefined);
  const objects = objectCounts();
  inspector?.close();
  await server.stop();

  const peak = Math.max(...samples.map((s) => s.rss));
  const peakHeap = Math.max(...samples.map((s) => s.heap).filter(Number.isFinite));
  const fiveXX = [...statuses].filter(([s]) => s >= 500 || s === 0).reduce((n, [, c]) => n + c, 0);
  const w = warm ?? first;
  const requests = [...statuses.values()].reduce((a, b) => a + b, 0);
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "–");
  const summary = {
    only: ONLY || "full",
    requests: done,
    http: requests,
    seconds: +seconds.toFixed(1),
    rps: +(requests / seconds).toFixed(0),
    statuses: Object.fromEntries(statuses),
    fiveXX,
    rss: { start: +first.rss.toFixed(0), warm: +w.rss.toFixed(0), peak: +peak.toFixed(0), end: +end.rss.toFixed(0), growth: +(end.rss - w.rss).toFixed(1), perProcessEnd: end.per.map((x) => +x.toFixed(0)) },
    runtimeParts: { warm: formatParts(w.parts), end: formatParts(end.parts) },
    runtime: `${RUNTIME === "miniflare" ? `miniflare${INSPECT ? " +inspector" : ""}${TMP_STORAGE.length ? ` tmp:${TMP_STORAGE.join("+")}` : ""}` : "wrangler dev"}${FORCE_GC ? "; warm-up and end measured after a full GC of every isolate (traffic paused)" : ""}`,
    heap: { start: +first.heap.toFixed(1), warm: +w.heap.toFixed(1), peak: +peakHeap.toFixed(1), end: +end.heap.toFixed(1), growth: +(end.heap - w.heap).toFixed(1) },
    accounted,
    objects,
    alive,
    load: { start: startLoad, end: endLoad },
  };
  console.log(`SOAK ${JSON.stringify(summary)}`);
  if (errors.length) console.log(errors.join("\n"));
  if (!REPORT) process.exit(0);

  const rows = [...byKind].map(([k, m]) => `| ${k} | ${[...m.values()].reduce((a, b) => a + b, 0)} | ${statusJson(m)} |`);
  const curve = samples.filter((_, i) => i % Math.max(1, Math.floor(samples.length / 24)) === 0 || samples[i] === end)
    .map((s) => `| ${s.t.toFixed(0)} | ${s.done} | ${s.rss.toFixed(0)} (${s.per.map((x) => x.toFixed(0)).join(" + ")}) | ${formatParts(s.parts)} | ${s.heap.toFixed(1)} (${s.heapTotal.toFixed(1)}) | ${s.sim.toFixed(1)} (${s.simTotal.toFixed(1)}) |`);
  const report = `| figure | value |
|---|---|
| requests (mix draws; reservations add a commit or release each) | ${done} mix requests, ${requests} HTTP requests in ${seconds.toFixed(1)} s |
| requests/s | ${summary.rps} |
| status counts | ${statusJson(statuses)} |
| 5xx (and failed connections, as 0) | ${fiveXX} |
| runtime | ${summary.runtime} |
| runtime process after warm-up / at end, by part (smaps) | ${summary.runtimeParts.warm} / ${summary.runtimeParts.end} MB |
| workerd RSS at start (all processes) | ${f(first.rss)} MB |
| RSS after warm-up (${WARMUP_SHARE * 100}% of requests) | ${f(w.rss)} MB |
| RSS peak | ${f(peak)} MB |
| RSS at end | ${f(end.rss)} MB |
| **RSS growth after warm-up** | **${(end.rss - w.rss).toFixed(1)} MB** (target < 64 MB) |
| the Worker's isolate, JS heap used (V8): start / warm-up / end | ${first.heap.toFixed(1)} / ${w.heap.toFixed(1)} / ${end.heap.toFixed(1)} MB (peak ${peakHeap.toFixed(1)} MB) |
| **isolate heap growth after warm-up** | **${(end.heap - w.heap).toFixed(1)} MB** |
| accounted per-isolate structures (isolateMemory) | ${accounted ? `${(accounted.bytes / MB).toFixed(2)} MB of ${(accounted.budget / MB).toFixed(0)} MB budget` : "–"} |
| Durable Objects created (SQLite files) | ${JSON.stringify(objects)} |
| server alive at the end | ${alive ? "yes" : "NO"} |
| load average (1/5/15 min) at start / end | ${startLoad} / ${endLoad} |

| kind | requests | statuses |
|---|---|---|
${rows.join("\n")}

Memory over time (RSS: total and per workerd process):

| s | requests done | RSS MB | runtime process parts MB (smaps) | Worker heap MB, used (committed) | miniflare isolates' heaps MB, used (committed) |
|---|---|---|---|---|---|
${curve.join("\n")}
${errors.length ? `\nFirst failures:\n\n${errors.map((e) => `- \`${e.replace(/`/g, "'").replace(/\n/g, " ")}\``).join("\n")}\n` : ""}`;
  mkdirSync(path.dirname(REPORT), { recursive: true });
  const file = REPORT.endsWith(".md") ? REPORT.replace(/\.md$/, ".run.md") : REPORT;
  writeFileSync(file, `<!-- npx tsx bench/soak/run.ts ${process.argv.slice(2).join(" ")} (${new Date().toISOString()}) -->\n${report}`);
  console.log(report);
  process.exit(0);
}

void main();
