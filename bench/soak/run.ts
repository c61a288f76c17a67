/**
 * Soak: a long mixed run against a real `wrangler dev`, watching the runtime's memory.
 *
 *   npx tsx bench/soak/run.ts [--requests 50000] [--concurrency 16] [--products 2000] [--port 8821]
 *
 * Sends hostile reads (random bearers on every route class, junk and control characters in queries, overlong
 * ids and URLs, made-up SKUs), valid reads (products, listings, search, categories, availability, feeds),
 * reservations (each released again), admin writes, small imports and recommendation rebuild requests. Samples
 * the resident memory of the workerd processes every second and writes bench/results/soak.md: requests/s,
 * status counts, 5xx, RSS at start/peak/end and its growth after warm-up (the first 10% of requests).
 */
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { buildOnce, freshDatabase, startDevServer } from "../lib/dev-server";
import { statusJson } from "../lib/stats";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const REQUESTS = Number(arg("requests", "50000"));
const CONCURRENCY = Number(arg("concurrency", "16"));
const PRODUCTS = Number(arg("products", "2000"));
const PORT = Number(arg("port", "8821"));
const WARMUP_SHARE = 0.1;
const SHOPPERS = 50;
const ADMIN = { authorization: "Bearer dev-admin-token" };
const STOREFRONT = { authorization: "Bearer dev-storefront-key" };
const AFFILIATE = { authorization: "Bearer demo-affiliate-key" };

const persist = path.resolve(".wrangler/soak-state");
const outdir = path.resolve(".wrangler/soak-build");

/** Every workerd process below `root` (wrangler → node → workerd). */
function workerdPids(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    for (const c of children.get(pid) ?? []) {
      try {
        if (readFileSync(`/proc/${c}/comm`, "utf8").trim() === "workerd") out.push(c);
      } catch {
        /* gone */
      }
      walk(c);
    }
  };
  walk(root);
  return out;
}

function rssMb(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      kb += m ? Number(m[1]) : 0;
    } catch {
      /* gone */
    }
  }
  return kb / 1024;
}

const rand = (n: number) => Math.floor(Math.random() * n);
const pid = (i: number) => `p-${String(1 + (i % PRODUCTS)).padStart(6, "0")}`;
const sku = (i: number) => `SKU-${String(1 + (i % PRODUCTS)).padStart(6, "0")}-1`;
const junk = (n: number) => Array.from({ length: n }, () => "abcdefghijklmnopqrstuvwxyz0123456789"[rand(36)]).join("");
const ip = () => `10.${rand(256)}.${rand(256)}.${rand(256)}`;

type Req = { kind: string; url: string; init?: RequestInit };

/** One request of the mix (weights per 100: 40 hostile, 44 valid reads, 10 reserves, 3 admin writes, 2 imports, 1 rebuild). */
function next(i: number, origin: string): Req {
  const r = i % 100;
  const bearer = { authorization: `Bearer ${crypto.randomUUID()}${junk(rand(200))}`, "cf-connecting-ip": "198.51.100.99" };
  if (r < 40) {
    const hostile: Req[] = [
      { kind: "hostile", url: `/v1/feeds/products?since=${i}`, init: { headers: bearer } },
      { kind: "hostile", url: `/v1/reservations`, init: { method: "POST", headers: { ...bearer, "content-type": "application/json", "idempotency-key": junk(12) }, body: `{"items":[{"sku":"${junk(20)}","quantity":1}]}` } },
      { kind: "hostile", url: `/r/${junk(10)}/${junk(10)}`, init: { headers: bearer, redirect: "manual" } },
      { kind: "hostile", url: `/v1/products/${pid(i)}?${junk(8)}=${junk(1500)}`, init: { headers: { "cf-connecting-ip": ip() } } },
      { kind: "hostile", url: `/v1/products?category=a%0A${junk(6)}`, init: { headers: { "cf-connecting-ip": ip() } } },
      { kind: "hostile", url: `/v1/search?brand=${junk(4)}%00${junk(4)}&q=${junk(5)}`, init: { headers: { "cf-connecting-ip": ip() } } },
      { kind: "hostile", url: `/v1/search?q=${junk(8)}&brand=${Array.from({ length: 60 }, () => junk(6)).join(",")}`, init: { headers: { "cf-connecting-ip": ip() } } },
      { kind: "hostile", url: `/v1/products/${junk(90)}`, init: { headers: bearer } },
      { kind: "hostile", url: `/v1/availability?skus=${Array.from({ length: 20 }, () => junk(10)).join(",")}`, init: { headers: bearer } },
      { kind: "hostile", url: `/v1/products/${pid(i)}?q=${"x".repeat(9000)}` },
      { kind: "hostile", url: `/v1/products/${pid(i)}`, init: { headers: { "x-d1-bookmark": "first-primary", "cf-connecting-ip": ip() } } },
      { kind: "hostile", url: `/v1/products/${pid(i)}/recommendations?intent=related&exclude=${junk(300)}`, init: { headers: bearer } },
    ];
    return hostile[i % hostile.length]!;
  }
  if (r < 84) {
    const reads: Req[] = [
      { kind: "read", url: `/v1/products/${pid(rand(PRODUCTS))}` },
      { kind: "read", url: `/v1/products/${pid(rand(PRODUCTS))}?currency=EUR&locale=de` },
      { kind: "read", url: `/v1/products?category=electronics&sort=price_asc&limit=20` },
      { kind: "read", url: `/v1/search?q=${["wireless", "shoe", "lamp", "trail", "cotton"][rand(5)]}` },
      { kind: "read", url: `/v1/categories` },
      { kind: "read", url: `/v1/availability?skus=${sku(rand(PRODUCTS))},${sku(rand(PRODUCTS))}` },
      { kind: "read", url: `/v1/feeds/products?limit=50`, init: { headers: AFFILIATE } },
      { kind: "read", url: `/v1/products/${pid(rand(PRODUCTS))}/recommendations?intent=related` },
    ];
    return reads[i % reads.length]!;
  }
  if (r < 94) {
    return {
      kind: "reserve",
      url: "/v1/reservations",
      // A pool of shoppers: each one has its own hoarding-cap object, and wrangler dev keeps every object it ever
      // made in memory (production evicts idle ones), so a fresh shopper per request would measure that instead.
      init: {
        method: "POST",
        headers: { ...STOREFRONT, "content-type": "application/json", "idempotency-key": `soak-${i}-${junk(6)}`, "x-shopper-id": `shopper-${i % SHOPPERS}`, "cf-connecting-ip": "198.51.100.120" },
        body: JSON.stringify({ items: [{ sku: sku(rand(PRODUCTS)), quantity: 1 }], ttl_seconds: 60 }),
      },
    };
  }
  if (r < 97) {
    const id = `p-soak-${i}`;
    const body = { slug: id, title: `Soak product ${i}`, brand: "Soak", category_id: "cat-electronics", variants: [{ sku: `SOAK-${i}`, title: "One", prices: { USD: 1000 + (i % 500) } }] };
    return { kind: "admin", url: `/admin/products/${id}`, init: { method: "PUT", headers: { ...ADMIN, "content-type": "application/json" }, body: JSON.stringify(body) } };
  }
  if (r < 99) {
    const lines = Array.from({ length: 5 }, (_, k) => JSON.stringify({ id: `p-soakimp-${i}-${k}`, slug: `p-soakimp-${i}-${k}`, title: `Imported ${i}/${k}`, brand: "SoakImport", category_id: "cat-electronics", variants: [{ sku: `SOAKIMP-${i}-${k}`, title: "One", prices: { USD: 999 } }] }));
    return { kind: "import", url: "/admin/import", init: { method: "POST", headers: { ...ADMIN, "content-type": "application/x-ndjson" }, body: lines.join("\n") } };
  }
  return { kind: "rebuild", url: "/admin/recommendations/rebuild", init: { method: "POST", headers: ADMIN } };
}

async function main() {
  console.log(`soak: fresh database with ${PRODUCTS} products, bundle, wrangler dev on ${PORT}…`);
  freshDatabase(persist, PRODUCTS);
  const entry = buildOnce(outdir);
  const server = await startDevServer({ port: PORT, inspectorPort: PORT + 500, persist, entry, healthTries: 480 });
  const pids = () => workerdPids(server.pid);
  console.log(`soak: workerd pids ${pids().join(",")}`);

  const samples: { t: number; rss: number; done: number }[] = [];
  const started = Date.now();
  let done = 0;
  const sampler = setInterval(() => samples.push({ t: (Date.now() - started) / 1000, rss: rssMb(pids()), done }), 1000);
  samples.push({ t: 0, rss: rssMb(pids()), done: 0 });

  const statuses = new Map<number, number>();
  const byKind = new Map<string, Map<number, number>>();
  const errors: string[] = [];
  let issued = 0;
  let warmRss = NaN;
  const worker = async () => {
    while (issued < REQUESTS) {
      const i = issued++;
      const req = next(i, server.origin);
      let status = 0;
      try {
        const res = await fetch(server.origin + req.url, { ...req.init, signal: AbortSignal.timeout(30_000) });
        status = res.status;
        const text = await res.text();
        if (status >= 500 && errors.length < 20) errors.push(`${req.init?.method ?? "GET"} ${req.url.slice(0, 100)} -> ${status} ${text.slice(0, 200)}`);
        if (req.kind === "reserve" && status === 201) {
          const id = (JSON.parse(text) as { id: string }).id;
          await (await fetch(`${server.origin}/v1/reservations/${id}`, { method: "DELETE", headers: { ...STOREFRONT, "x-shopper-id": `shopper-${i % SHOPPERS}` } })).text();
        }
      } catch (err) {
        if (errors.length < 20) errors.push(`${req.url.slice(0, 100)} -> ${String(err)}`);
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      const k = byKind.get(req.kind) ?? new Map<number, number>();
      k.set(status, (k.get(status) ?? 0) + 1);
      byKind.set(req.kind, k);
      done++;
      if (done === Math.floor(REQUESTS * WARMUP_SHARE)) warmRss = rssMb(pids());
      if (done % 5000 === 0) console.log(`soak: ${done}/${REQUESTS} ${statusJson(statuses)} rss ${rssMb(pids()).toFixed(0)} MB`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (Date.now() - started) / 1000;
  clearInterval(sampler);
  const endRss = rssMb(pids());
  samples.push({ t: seconds, rss: endRss, done });
  const alive = await fetch(`${server.origin}/health`).then((r) => r.ok, () => false);
  server.stop();

  const startRss = samples[0]!.rss;
  const peak = Math.max(...samples.map((s) => s.rss));
  const fiveXX = [...statuses].filter(([s]) => s >= 500 || s === 0).reduce((n, [, c]) => n + c, 0);
  const growth = endRss - warmRss;
  const rows = [...byKind].map(([k, m]) => `| ${k} | ${[...m.values()].reduce((a, b) => a + b, 0)} | ${statusJson(m)} |`);
  const curve = samples.filter((_, i) => i % Math.max(1, Math.floor(samples.length / 20)) === 0).map((s) => `| ${s.t.toFixed(0)} | ${s.done} | ${s.rss.toFixed(0)} |`);
  const report = `# Soak: ${REQUESTS.toLocaleString("en")} mixed requests against wrangler dev

Command: \`npx tsx bench/soak/run.ts --requests ${REQUESTS} --concurrency ${CONCURRENCY} --products ${PRODUCTS} --port ${PORT}\`
(${new Date().toISOString()}; a 2-core machine shared with other sessions running tests and benches at the same time,
so throughput is indicative only; memory is what this run is about).

The server is \`wrangler dev\` serving a bundle built once, with a fresh local D1 of ${PRODUCTS} seeded products. RSS is
the sum over the workerd processes under wrangler, sampled every second from /proc.

| figure | value |
|---|---|
| requests | ${done} in ${seconds.toFixed(1)} s |
| requests/s | ${(done / seconds).toFixed(0)} |
| status counts | ${statusJson(statuses)} |
| 5xx (and failed connections, as 0) | ${fiveXX} |
| RSS at start | ${startRss.toFixed(0)} MB |
| RSS after warm-up (${WARMUP_SHARE * 100}% of requests) | ${warmRss.toFixed(0)} MB |
| RSS peak | ${peak.toFixed(0)} MB |
| RSS at end | ${endRss.toFixed(0)} MB |
| growth after warm-up | ${growth.toFixed(1)} MB (target < 64 MB) |
| server alive at the end | ${alive ? "yes" : "NO"} |

Reservations come from a pool of ${SHOPPERS} shoppers (\`x-shopper-id\`): every shopper has its own hoarding-cap
object, and \`wrangler dev\` keeps every Durable Object it ever instantiated in memory (production evicts idle
ones), so a new shopper per request would measure that local artefact rather than the Worker.

Mix per 100 requests: 40 hostile (random bearers on feed, reserve, click, product and availability routes; 1.5 KB junk
query strings; control characters and NUL; invalid brand lists; overlong ids and URLs; bookmark reads), 44 valid
reads, 10 reservations (each released), 3 admin product writes, 2 imports of 5 products, 1 recommendation rebuild.

| kind | requests | statuses |
|---|---|---|
${rows.join("\n")}

RSS over time:

| s | requests done | RSS MB |
|---|---|---|
${curve.join("\n")}
${errors.length ? `\nFirst failures:\n\n${errors.map((e) => `- \`${e.replace(/`/g, "'")}\``).join("\n")}\n` : ""}`;
  mkdirSync("bench/results", { recursive: true });
  writeFileSync("bench/results/soak.md", report);
  console.log(report);
  process.exit(0);
}

void main();
