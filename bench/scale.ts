/**
 * Catalog size bench: the same reads at 10k, 100k and 1M products, side by side in one run, each against its own
 * `wrangler dev` (own port, own --persist-to copy of a seeded database).
 *   npx tsx bench/scale.ts --from '/tmp/scale-{size}' --sizes 10000,100000,1000000 --port 8861
 * `--from` names databases seeded once by `npm run seed -- --products N --persist DIR` (a 1M seed is long: seed
 * once, reuse); they are copied, never written, unless `--in-place` (the bench then serves them where they are:
 * no 5 GB copy while the machine is reserved). Without `--from` each size is seeded into .wrangler/bench-scale-<size>.
 * A size written `1000000x2` is served with CATALOG_PARTITIONS=2 (its directory seeded with two partitions).
 * An A/B of two builds in one run: `--entries 'old=DIR/index.js,new=…' --sizes 10000x2@old,10000x2@new` serves each
 * size from its bundle (built with `wrangler deploy --dry-run --outdir DIR` from each commit), the same database
 * copied for both; ratios to the first size are then new ÷ old.
 *
 * Cases (misses use every URL once, so every answer comes from the tier the case names; the answering tier is
 * counted from `x-cache-tier`): bare route (baseline), product edge hit / KV hit / D1 miss, a small category's
 * page (60 products, in stock, by price), a large category's page (a top-level category, distinct sorts and
 * currencies), a deep page (page 8 through the cursors), distinct-query search, one-typo search, one feed page.
 * Cases are measured in alternating slices across sizes, so background load hits every size alike. Latencies
 * are p50/p95/p99 over every request; the report gives ratios to the bare route and to the smallest size.
 */
import { execFileSync } from "node:child_process";
import { closeSync, cpSync, existsSync, openSync, readSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { benchArgs } from "./lib/args";
import { buildOnce, sh, startDevServer } from "./lib/dev-server";
import { connectInspector } from "./lib/inspector";
import { fmt, percentile } from "./lib/stats";

const values = benchArgs({
  sizes: "10000,100000,1000000",
  from: undefined as string | undefined,
  port: 8861,
  "inspector-port": 9361,
  "in-place": false,
  connections: 2,
  each: 60,
  rounds: 3,
  out: "bench/results/scale.md",
  /** Seed times measured beforehand (the seed's own clock), e.g. `10000=3.0,1000000=281.3`: reported with ratios. */
  "seed-times": "",
  /** Only the cases whose name contains one of these comma-separated words (the bare route is always measured). */
  cases: "",
  /**
   * Read every database file once before measuring, so that it sits in the OS page cache as a 10k database always
   * does: otherwise a 5 GB file's residency depends on what the machine did before (a seed, another bench), and the
   * 1M rows measure this VM's disk rather than the rows the code reads. Residency is reported either way.
   */
  "warm-files": false,
  /** The opposite, to show what residency costs: drop the database files from the page cache (`dd iflag=nocache`). */
  "cold-files": false,
  /** Serve this prebuilt bundle instead of building src/ (e.g. an older commit's, for an A/B in one run). */
  entry: undefined as string | undefined,
  /** Named bundles for an A/B in one run, `name=path,…`: a size written `N@name` is served from that bundle. */
  entries: "",
  /** wrangler's output per size goes to `<log-dir>/wrangler-<size>.log` (diagnostics: the Worker's console). */
  "log-dir": "",
});
const ENTRIES = new Map(values.entries.split(",").filter(Boolean).map((kv) => {
  const [name, file] = kv.split("=");
  return [name!, path.resolve(file!)] as const;
}));
const SIZES = values.sizes.split(",").map((label) => {
  // `dims` names the database (`--from`'s {size}); `variant` the bundle, so two builds can share one database.
  const [dims, variant] = label.split("@") as [string, string | undefined];
  const [size, partitions] = dims.split("x").map(Number);
  if (!Number.isInteger(size) || (partitions !== undefined && !Number.isInteger(partitions))) throw new Error(`bad size ${label}`);
  if (variant !== undefined && !ENTRIES.has(variant)) throw new Error(`size ${label}: no bundle named ${variant} in --entries`);
  return { label, dims, variant, size: size!, partitions: partitions ?? 1 };
});
const CONNECTIONS = values.connections;
const ONLY = values.cases.split(",").map((w) => w.trim()).filter(Boolean);
const EACH = values.each;
const ROUNDS = values.rounds;
const ADMIN = "bench-admin-token";
const AFFILIATE_KEY = "demo-affiliate-key";
const CURRENCIES = ["USD", "EUR", "GBP"];
const pid = (n: number) => `p-${String(n).padStart(6, "0")}`;

type Case = { name: string; urls: string[]; headers?: Record<string, string> };
type Sample = { times: number[]; tiers: Record<string, number>; non2xx: number; urls?: string[] };
type Size = { label: string; size: number; partitions: number; origin: string; persist: string; dbBytes: number; partitionBytes: number[]; cases: Case[] };

let loadAtStart: number[] = [];
/** Per size: share of its database files in the OS page cache when measuring began. */
let resident: (number | undefined)[] = [];
let token = 0;
/** Each request carries its own bearer token, so the per-client rate limiter never rejects the bench itself. */
const auth = () => `Bearer bench-${(token++ % 4096).toString(36)}`;

async function timed(origin: string, urls: string[], sample: Sample, headers: Record<string, string> = {}): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < urls.length) {
      const url = urls[next++]!;
      const t = performance.now();
      const res = await fetch(origin + url, { headers: { authorization: auth(), "accept-encoding": "gzip", ...headers } });
      await res.arrayBuffer();
      sample.times.push(performance.now() - t);
      sample.urls?.push(url);
      if (res.status >= 300) sample.non2xx += 1;
      const tier = res.headers.get("x-cache-tier") ?? "-";
      sample.tiers[tier] = (sample.tiers[tier] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
}

const json = async <T>(origin: string, url: string, headers: Record<string, string> = {}): Promise<T> =>
  (await (await fetch(origin + url, { headers: { authorization: auth(), ...headers } })).json()) as T;

/** The D1 SQLite files (one per catalog partition; the directory's tables are in partition 0), largest first. */
function dbPaths(persist: string): { file: string; bytes: number }[] {
  const dir = path.join(persist, "v3", "d1");
  const out: { file: string; bytes: number }[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = path.join(d, f);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (f.endsWith(".sqlite") && f !== "metadata.sqlite") out.push({ file: p, bytes: st.size });
    }
  };
  if (existsSync(dir)) walk(dir);
  return out.sort((a, b) => b.bytes - a.bytes);
}

const dbFiles = (persist: string) => dbPaths(persist).map((f) => f.bytes);

/** Reads a file through once (into the OS page cache), 8 MB at a time. */
function readThrough(file: string): void {
  const fd = openSync(file, "r");
  const buf = Buffer.allocUnsafe(8 << 20);
  try {
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

/** Share of the database files held in the OS page cache (util-linux `fincore`), or undefined without it. */
function residency(persist: string): number | undefined {
  try {
    let resident = 0;
    let total = 0;
    for (const { file, bytes } of dbPaths(persist)) {
      const out = execFileSync("fincore", ["--bytes", "--noheadings", "--output", "RES", file], { encoding: "utf8" });
      resident += Number(out.trim());
      total += bytes;
    }
    return total ? resident / total : undefined;
  } catch {
    return undefined;
  }
}

/** Copies (or seeds) the database, starts wrangler dev on it, and prepares every case's URLs. */
async function startSize({ label, dims, variant, size, partitions }: (typeof SIZES)[number], port: number): Promise<Size> {
  let persist = path.resolve(`.wrangler/bench-scale-${label}`);
  if (values.from && values["in-place"]) {
    if (variant !== undefined) throw new Error("an A/B (size@bundle) copies the database for each bundle: drop --in-place");
    persist = path.resolve(values.from.replace("{size}", dims));
  } else {
    rmSync(persist, { recursive: true, force: true });
    if (values.from) cpSync(values.from.replace("{size}", dims), persist, { recursive: true });
  }
  if (values.from) for (const tier of ["cache", "kv", "do"]) rmSync(path.join(persist, "v3", tier), { recursive: true, force: true });
  const bindings = Array.from({ length: partitions }, (_, i) => (i === 0 ? "DB" : `CATALOG_${i}`));
  for (const b of bindings) sh(["wrangler", "d1", "migrations", "apply", b, "--local", "--persist-to", persist]);
  if (!values.from) sh(["tsx", "scripts/seed.ts", "--products", String(size), "--persist", persist, "--partitions", String(partitions)]);
  // The small category: 60 products spread over the catalog, moved into a category of their own (the category in
  // every partition, as the seed copies the tree; each UPDATE moves the ones that partition holds).
  const small = Array.from({ length: 60 }, (_, i) => `'${pid(1 + Math.floor(((i + 0.5) * size) / 60))}'`).join(",");
  for (const b of bindings) {
    sh(["wrangler", "d1", "execute", b, "--local", "--persist-to", persist, "--command",
      `INSERT OR IGNORE INTO categories (id, slug, name, parent_id, path, depth, position) VALUES ('cat-bench-small', 'bench-small', 'Bench small', 'cat-home-kitchen', '/cat-home-kitchen/cat-bench-small/', 1, 99); UPDATE products SET category_id = 'cat-bench-small' WHERE id IN (${small})`]);
  }
  const partitionBytes = dbFiles(persist);
  const bytes = partitionBytes.reduce((a, b) => a + b, 0);
  const vars: Record<string, string> = { ADMIN_TOKEN: ADMIN };
  if (partitions > 1) vars.CATALOG_PARTITIONS = String(partitions);
  const inspectorPort = values["inspector-port"] + (port - values.port);
  const logFile = values["log-dir"] ? path.join(values["log-dir"], `wrangler-${label}.log`) : undefined;
  const { origin } = await startDevServer({ port, inspectorPort, persist, vars, entry: variant !== undefined ? ENTRIES.get(variant) : entry, logFile, logLevel: logFile ? "log" : undefined });
  // wrangler's DevTools proxy buffers every inspector event (and logs each to Node) until a client attaches: ~130 MB
  // per 1,000 reads and CPU in a second process, which lands on whichever request is running (bench/lib/inspector.ts).
  const inspector = await connectInspector(inspectorPort).catch(() => undefined);
  if (!inspector || !(await inspector.call("Network.disable").then(() => true, () => false))) console.error(`bench: ${label}: could not turn the inspector's Network domain off`);
  // Warm the process: the first queries on a freshly opened large database are slow.
  for (const n of [size, Math.ceil(size / 2), 2]) await fetch(`${origin}/v1/products/${pid(n)}?currency=GBP&locale=fr`).then((r) => r.arrayBuffer());
  await fetch(`${origin}/v1/search?q=prime&currency=GBP&locale=fr`).then((r) => r.arrayBuffer());

  const hot = `/v1/products/${pid(1)}?currency=USD&locale=en`;
  const body = await (await fetch(origin + hot)).text();
  await fetch(origin + hot).then((r) => r.arrayBuffer());
  const put = await fetch(`${origin}/admin/bench/bare`, { method: "PUT", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body });
  if (put.status !== 204) throw new Error(`could not store the baseline body: ${put.status}`);

  const spread = (count: number, offset: number) => Array.from({ length: count }, (_, i) => 3 + Math.floor(((i + offset) * (size - 3)) / count));
  const kvIds = spread(EACH, 0.25);
  // The KV documents exist once a product was read: one read each (USD/en) puts them there.
  await timed(origin, kvIds.map((n) => `/v1/products/${pid(n)}?currency=USD&locale=en`), { times: [], tiers: {}, non2xx: 0 });
  const kvUrls = kvIds.map((n, i) => `/v1/products/${pid(n)}?currency=${CURRENCIES[1 + (i % 2)]}&locale=${["de", "fr"][i % 2]}`);
  const d1Urls = spread(EACH, 0.75).map((n) => `/v1/products/${pid(n)}?currency=USD&locale=en`);

  const variants: string[] = [];
  for (let limit = 10; variants.length < EACH; limit++)
    for (const cur of CURRENCIES) for (const sort of ["price_asc", "price_desc", "newest"]) variants.push(`currency=${cur}&sort=${sort}&limit=${limit}`);
  variants.length = EACH;
  const smallUrls = variants.map((v) => `/v1/products?category=bench-small&in_stock=true&${v}`);
  const largeUrls = variants.map((v) => `/v1/products?category=electronics&${v}`);

  // Deep pages: page 8 of distinct large listings, reached through their cursors (the earlier pages are not timed).
  const deepUrls: string[] = [];
  for (const v of variants.slice(0, Math.min(EACH, 24))) {
    let url = `/v1/products?category=electronics&${v}&in_stock=true`;
    for (let page = 1; page < 8; page++) {
      const got = await json<{ next_cursor: string | null }>(origin, url);
      if (!got.next_cursor) break;
      url = `/v1/products?category=electronics&${v}&in_stock=true&cursor=${encodeURIComponent(got.next_cursor)}`;
    }
    deepUrls.push(url);
  }

  const terms = ["wire", "head", "camera", "tent", "shoe", "jacket", "linen", "cast", "espresso", "serum", "game", "robot", "black", "nylon", "trail", "smart", "bag", "pro", "mini", "steel"];
  const typos = ["headphnes", "camrea", "espreso", "sklilet", "backpak", "trial shoe", "sleping bag", "tripd", "duvte", "helmte", "grinedr", "lantern", "serim", "roobt kit", "parkka", "kettel", "sunscren", "earbdus", "smart blub", "wool thorw"];
  const searchUrls: string[] = [];
  for (let limit = 10; searchUrls.length < EACH; limit++) for (const t of terms) for (const cur of CURRENCIES) searchUrls.push(`/v1/search?q=${encodeURIComponent(t)}&currency=${cur}&limit=${limit}`);
  searchUrls.length = EACH;
  const typoUrls: string[] = [];
  for (let limit = 10; typoUrls.length < EACH; limit++) for (const t of typos) typoUrls.push(`/v1/search?q=${encodeURIComponent(t)}&limit=${limit}`);
  typoUrls.length = EACH;
  const feedUrls = Array.from({ length: EACH }, (_, i) => `/v1/feeds/products?limit=${20 + (i % 30)}&currency=${CURRENCIES[i % 3]}`);

  return {
    label,
    size,
    partitions,
    origin,
    persist,
    dbBytes: bytes,
    partitionBytes,
    cases: ([
      { name: "bare route (baseline)", urls: Array.from({ length: EACH }, () => "/v1/bench/bare") },
      { name: "product, edge hit", urls: Array.from({ length: EACH }, () => hot) },
      { name: "product, KV hit", urls: kvUrls },
      { name: "product, D1 miss", urls: d1Urls },
      { name: "listing, small category (60, in stock)", urls: smallUrls },
      { name: "listing, large category (top level)", urls: largeUrls },
      { name: "listing, deep page (page 8)", urls: deepUrls },
      { name: "search, distinct queries", urls: searchUrls },
      { name: "search, one typo", urls: typoUrls },
      { name: "feed page (affiliate)", urls: feedUrls, headers: { authorization: `Bearer ${AFFILIATE_KEY}` } },
    ] as Case[]).filter((c, i) => i === 0 || !ONLY.length || ONLY.some((w) => c.name.includes(w))),
  };
}

/** The Worker bundled once for every size: edits to src/ while the bench runs do not restart its servers. */
let entry: string | undefined;

async function main() {
  const sizes: Size[] = [];
  try {
    // Built only when some size is served from src/ (an A/B names a bundle for every size).
    entry = values.entry ? path.resolve(values.entry) : SIZES.every((s) => s.variant !== undefined) ? undefined : buildOnce(path.resolve(".wrangler/bench-scale-build"));
    for (const [i, size] of SIZES.entries()) {
      console.error(`bench: preparing ${size.label}…`);
      sizes.push(await startSize(size, values.port + i));
    }
    if (values["warm-files"]) {
      const t = performance.now();
      for (const s of sizes) for (const { file } of dbPaths(s.persist)) readThrough(file);
      console.error(`bench: database files read into the page cache in ${fmt((performance.now() - t) / 1000, 1)} s`);
    }
    if (values["cold-files"]) {
      for (const s of sizes) for (const { file } of dbPaths(s.persist)) execFileSync("dd", [`if=${file}`, "iflag=nocache", "count=0"], { stdio: "ignore" });
    }
    resident = sizes.map((s) => residency(s.persist));
    loadAtStart = loadavg();
    const samples = sizes.map((s) => s.cases.map((): Sample => ({ times: [], tiers: {}, non2xx: 0, urls: [] })));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [ci] of sizes[0]!.cases.entries()) {
        for (const [si, s] of sizes.entries()) {
          const c = s.cases[ci]!;
          const per = Math.ceil(c.urls.length / ROUNDS);
          const urls = c.urls.slice(round * per, (round + 1) * per);
          if (c.headers) {
            // The feed route authenticates by key: one key for every request of the case.
            const sample = samples[si]![ci]!;
            const origin = s.origin;
            for (const url of urls) {
              const t = performance.now();
              const res = await fetch(origin + url, { headers: c.headers });
              await res.arrayBuffer();
              sample.times.push(performance.now() - t);
              if (res.status >= 300) sample.non2xx += 1;
            }
          } else {
            await timed(s.origin, urls, samples[si]![ci]!);
          }
        }
      }
      console.error(`bench: round ${round + 1}/${ROUNDS} done`);
    }
    // The slowest requests of each case: what a p99 of a few hundred samples is made of.
    for (const [si, s] of sizes.entries()) {
      for (const [ci, c] of s.cases.entries()) {
        const smp = samples[si]![ci]!;
        const slow = smp.times.map((ms, i) => [ms, smp.urls?.[i] ?? ""] as const).sort((a, b) => b[0] - a[0]).slice(0, 3);
        console.error(`slowest ${s.label} ${c.name}: ${slow.map(([ms, u]) => `${fmt(ms)} ms ${u}`).join(" | ")}`);
      }
    }
    writeFileSync(values.out, report(sizes, samples));
    console.error(`bench: wrote ${values.out}`);
  } catch (err) {
    // The servers run detached: exit (which stops them) with the error shown, not a silent 0.
    console.error(err);
    process.exit(1);
  } finally {
    process.exit(0);
  }
}

function report(sizes: Size[], samples: Sample[][]): string {
  const stats = samples.map((per) => per.map((s) => {
    const t = [...s.times].sort((a, b) => a - b);
    return { p50: percentile(t, 50), p95: percentile(t, 95), p99: percentile(t, 99), n: t.length, tiers: s.tiers, non2xx: s.non2xx };
  }));
  const lines: string[] = [];
  lines.push(`# Scale bench: ${sizes.map((s) => s.label).join(", ")} side by side`, "");
  lines.push(`Command: \`npx tsx bench/scale.ts --sizes ${values.sizes} --from '${values.from ?? ""}'${values["in-place"] ? " --in-place" : ""} --connections ${CONNECTIONS} --each ${EACH} --rounds ${ROUNDS}${values["seed-times"] ? ` --seed-times ${values["seed-times"]}` : ""}${values["warm-files"] ? " --warm-files" : ""}${values["cold-files"] ? " --cold-files" : ""}${values.entry ? ` --entry ${values.entry}` : ""}${values.entries ? ` --entries '${values.entries}'` : ""}${ONLY.length ? ` --cases '${values.cases}'` : ""}\` (a size \`NxP\`: N products over P catalog partitions)`, "");
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(", ");
  lines.push(`Run ${new Date().toISOString()} on a 2-core machine; load average (1, 5, 15 min) ${load(loadAtStart)} when measuring began, ${load(loadavg())} at the end. Ratios are measured in the same run, each case in ${ROUNDS} alternating slices across sizes. ${CONNECTIONS} connections, ${EACH} requests per case and size.`, "");
  lines.push("| case | size | n | p50 ms | p95 ms | p99 ms | p99 ÷ bare | p99 ÷ same case at " + sizes[0]!.label + " | p50 ÷ same case at " + sizes[0]!.label + " | tiers | non-2xx |", "|---|---|---|---|---|---|---|---|---|---|---|");
  for (const [ci, c] of sizes[0]!.cases.entries()) {
    for (const [si, s] of sizes.entries()) {
      const r = stats[si]![ci]!;
      const bare = stats[si]![0]!.p99;
      const base = stats[0]![ci]!.p99;
      const base50 = stats[0]![ci]!.p50;
      lines.push(`| ${c.name} | ${s.label} | ${r.n} | ${fmt(r.p50)} | ${fmt(r.p95)} | ${fmt(r.p99)} | ${fmt(r.p99 / bare, 2)} | ${fmt(r.p99 / base, 2)} | ${fmt(r.p50 / base50, 2)} | ${JSON.stringify(r.tiers).replace(/"/g, "")} | ${r.non2xx} |`);
    }
  }
  const seeds = new Map(values["seed-times"].split(",").filter(Boolean).map((kv) => kv.split("=") as [string, string]));
  const seed0 = Number(seeds.get(sizes[0]!.label));
  lines.push("", "| size | partitions | database (SQLite files) | largest partition | per 100k products | in page cache when measuring began | seed time | seed ÷ same at " + sizes[0]!.size + " |", "|---|---|---|---|---|---|---|---|");
  for (const [si, s] of sizes.entries()) {
    const res = resident[si];
    const seed = Number(seeds.get(s.label));
    lines.push(
      `| ${s.label} | ${s.partitions} | ${fmt(s.dbBytes / 1e9, 2)} GB${s.partitionBytes.length > 1 ? ` (${s.partitionBytes.map((b) => fmt(b / 1e9, 2)).join(" + ")})` : ""} | ${fmt(s.partitionBytes[0]! / 1e9, 2)} GB | ${fmt((s.dbBytes / s.size) * 1e5 / 1e6, 0)} MB | ${res === undefined ? "—" : `${fmt(res * 100, 0)} %${values["warm-files"] ? " (read through first)" : values["cold-files"] ? " (dropped first)" : ""}`} | ${Number.isFinite(seed) ? `${fmt(seed, 1)} s` : "—"} | ${Number.isFinite(seed) && Number.isFinite(seed0) ? fmt(seed / seed0, 1) : "—"} |`,
    );
  }
  const big = sizes.filter((s) => !s.label.includes("x")).at(-1) ?? sizes.at(-1)!;
  lines.push("", `At ${fmt((big.dbBytes / big.size) * 1e5 / 1e6, 0)} MB per 100k products (the ${big.size} row), one D1 database (10 GB) holds about ${fmt(10e9 / (big.dbBytes / big.size) / 1e6, 2)} M products.`);
  // What each p99 is made of: with n requests per case, p99 is about the (n / 100)-th slowest.
  lines.push("", "Slowest three requests per case (ms), to read a p99 by:", "");
  for (const [ci, c] of sizes[0]!.cases.entries()) {
    lines.push(`- ${c.name}: ${sizes.map((s, si) => `${s.label} ${[...samples[si]![ci]!.times].sort((a, b) => b - a).slice(0, 3).map((t) => fmt(t)).join(", ")}`).join("; ")}`);
  }
  return lines.join("\n") + "\n";
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
