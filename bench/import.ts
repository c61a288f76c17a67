/**
 * Import bench: a multi-part import of --lines new products (plus --updates changes to seeded products) into a
 * real `wrangler dev`, with one and two catalog partitions, timed end to end: parts uploaded one after another,
 * then `commit` called until the import is completed (what the cron would otherwise continue each minute).
 *
 *   npx tsx bench/import.ts --lines 200000,1000000 --partitions 1,2 --port 8861 --inspector-port 9361
 *
 * It reports the time of each phase, products per second, the longest D1 batch and the longest single statement
 * (`meta.duration`, logged by the Worker when IMPORT_TRACE is set), and how many lines a reader saw mid-import.
 * Each configuration gets a fresh database (migrations + a 1,000-product seed for categories and products to
 * change) under .wrangler/bench-import-<lines>x<partitions>.
 *
 * `--phase upload` stops after the uploads (the server is stopped, the database and the import's state kept);
 * `--phase commit` then restarts a server on that database and times the commits alone. A 1M-line import takes
 * longer than one reserved-machine slot: its upload runs under the shared CPU lock, its commits under the quiet one.
 * `--runtime miniflare` serves the bundle on the Miniflare API (bench/lib/miniflare-server.ts) instead of
 * `wrangler dev`: wrangler's proxy answered a commit call of about two minutes with "Your worker restarted
 * mid-request" (twice in two runs, with no reload of the Worker logged), which cut every 1M-line run.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { benchArgs } from "./lib/args";
import { buildOnce, sh, startDevServer } from "./lib/dev-server";
import { connectInspector, type Inspector } from "./lib/inspector";
import { startMiniflare } from "./lib/miniflare-server";

const values = benchArgs({ lines: "200000", partitions: "1,2", updates: 1000, port: 8861, "inspector-port": 9361, "part-lines": 0, phase: "all", runtime: "wrangler" });
if (!["all", "upload", "commit"].includes(values.phase)) {
  console.error("--phase must be all, upload or commit");
  process.exit(2);
}
/** What the upload phase hands to the commit phase. */
type UploadState = { id: string; upload_s: number; part_s: number[]; parts: number; load0: number[]; log: string };
const H = { authorization: "Bearer dev-admin-token" };

type Trace = { import_batch: string; ms: number; statements: number; max_statement_ms: number };

function* productLines(prefix: string, from: number, to: number, categories: string[]): Generator<string> {
  for (let i = from; i < to; i++) {
    const id = `${prefix}-${i}`;
    yield JSON.stringify({
      id,
      slug: id,
      title: `Bench product ${i}`,
      description: `Imported by the bench, line ${i}: a plain description of average length for a catalog product.`,
      brand: `Brand ${i % 40}`,
      category_id: categories[i % categories.length],
      attributes: { color: ["red", "green", "blue", "black"][i % 4], material: ["cotton", "steel", "wood"][i % 3] },
      translations: { de: { title: `Produkt ${i}` }, fr: { title: `Produit ${i}` } },
      variants: [
        { sku: `${id}-a`, options: { size: "M" }, prices: { USD: 1000 + (i % 5000), EUR: 900 + (i % 5000), GBP: 800 + (i % 5000) } },
        { sku: `${id}-b`, options: { size: "L" }, prices: { USD: 1100 + (i % 5000), EUR: 1000 + (i % 5000), GBP: 900 + (i % 5000) } },
      ],
    });
  }
}

function streamOf(lines: Iterable<string>): ReadableStream<Uint8Array> {
  const it = lines[Symbol.iterator]();
  const encoder = new TextEncoder();
  return new ReadableStream({
    pull(controller) {
      const batch: string[] = [];
      for (let n = 0; n < 500; n++) {
        const next = it.next();
        if (next.done) break;
        batch.push(next.value);
      }
      if (batch.length === 0) return controller.close();
      controller.enqueue(encoder.encode(batch.join("\n") + "\n"));
    },
  });
}

async function request(origin: string, method: string, url: string, body?: BodyInit, contentType?: string): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(origin + url, { method, headers: { ...H, ...(contentType ? { "content-type": contentType } : {}) }, body, duplex: "half" } as RequestInit);
  const json = (await res.json()) as Record<string, unknown>;
  return { status: res.status, json, ms: performance.now() - t0 };
}

/** Opens the import and uploads its parts (the new products, then the changes to seeded ones). */
async function uploadParts(origin: string, lines: number, partitions: number, label: string, inspector: Inspector | undefined): Promise<UploadState> {
  const tree = (await (await fetch(`${origin}/v1/categories`)).json()) as { items: { id: string; children?: unknown[] }[] };
  const leaves: string[] = [];
  const walk = (nodes: { id: string; children?: unknown[] }[]) => {
    for (const n of nodes) {
      if (n.children?.length) walk(n.children as { id: string; children?: unknown[] }[]);
      else leaves.push(n.id);
    }
  };
  walk(tree.items);
  const partLines = values["part-lines"] || (partitions === 1 ? 100_000 : 50_000);
  // Changes to seeded products (ids p-000001…), read before the clock starts: they ride in the switch batch.
  const changes: string[] = [];
  for (let i = 1; i <= values.updates; i++) {
    const pid = `p-${String(i).padStart(6, "0")}`;
    const doc = (await (await fetch(`${origin}/v1/products/${pid}?currency=USD`)).json()) as { slug: string; brand: string; category: { id: string }; variants: { sku: string }[] };
    changes.push(JSON.stringify({ id: pid, slug: doc.slug, title: `Changed by the bench ${i}`, brand: doc.brand, category_id: doc.category.id, variants: doc.variants.map((v) => ({ sku: v.sku, prices: { USD: 4242 } })) }));
  }
  const load0 = loadavg();
  const t0 = performance.now();
  const created = await request(origin, "POST", "/admin/imports", JSON.stringify({ format: "ndjson" }), "application/json");
  const id = created.json.import_id as string;
  const partSeconds: number[] = [];
  let part = 0;
  for (let from = 0; from < lines; from += partLines) {
    part += 1;
    const to = Math.min(lines, from + partLines);
    const rows = productLines(`bi${label}`, from, to, leaves);
    const res = await request(origin, "PUT", `/admin/imports/${id}/parts/${part}`, streamOf(rows), "application/x-ndjson");
    if (res.status !== 200) throw new Error(`part ${part}: ${res.status} ${JSON.stringify(res.json)}`);
    partSeconds.push(res.ms / 1000);
    const heap = inspector ? ` (Worker heap ${((await inspector.heap()).usedSize / 2 ** 20).toFixed(0)} MB)` : "";
    process.stdout.write(`\r${label}: part ${part} (${to} lines) in ${(res.ms / 1000).toFixed(1)} s${heap}`);
  }
  if (changes.length > 0) {
    part += 1;
    const res = await request(origin, "PUT", `/admin/imports/${id}/parts/${part}`, changes.join("\n") + "\n", "application/x-ndjson");
    if (res.status !== 200) throw new Error(`update part: ${res.status} ${JSON.stringify(res.json)}`);

  }
  return { id, upload_s: (performance.now() - t0) / 1000, part_s: partSeconds, parts: part, load0, log: "" };
}

async function runOne(lines: number, partitions: number, entry: string): Promise<string> {
  const label = `${lines}x${partitions}`;
  const persist = path.resolve(`.wrangler/bench-import-${label}`);
  const stateFile = `${persist}.state.json`;
  if (values.phase !== "commit") {
    // A fresh database: an earlier run's unfinished import would still hold its products as pending.
    rmSync(persist, { recursive: true, force: true });
    rmSync(stateFile, { force: true });
    sh(["tsx", "scripts/seed.ts", "--products", "1000", "--persist", persist, "--partitions", String(partitions)]);
  } else if (!existsSync(stateFile)) throw new Error(`${stateFile} is missing: run --phase upload first`);
  const logFile = path.resolve(`.wrangler/bench-import-${label}${values.phase === "commit" ? ".commit" : ""}.log`);
  const vars: Record<string, string> = { IMPORT_TRACE: "1" };
  if (partitions > 1) vars.CATALOG_PARTITIONS = String(partitions);
  const server =
    values.runtime === "miniflare"
      ? await startMiniflare({ port: values.port, entry, persist, vars, logFile })
      : await startDevServer({ port: values.port, inspectorPort: values["inspector-port"], persist, entry, vars, logFile, logLevel: "log" });
  // wrangler's inspector proxy buffers every inspector message until a client attaches (hundreds of MB over a
  // large import's logged batches): attach and turn the Network domain off, as bench/soak does.
  const inspector: Inspector | undefined = values.runtime === "miniflare" ? undefined : await connectInspector(values["inspector-port"]).catch(() => undefined);
  await inspector?.call("Network.disable").catch(() => {});
  try {
    const origin = server.origin;
    let state: UploadState;
    if (values.phase === "commit") state = JSON.parse(readFileSync(stateFile, "utf8")) as UploadState;
    else {
      state = await uploadParts(origin, lines, partitions, label, inspector);
      state.log = logFile;
      if (values.phase === "upload") {
        writeFileSync(stateFile, JSON.stringify(state));
        console.log(`\r${label}: uploaded ${state.parts} parts in ${state.upload_s.toFixed(1)} s; state in ${stateFile}`);
        return `| ${lines.toLocaleString("en")} | ${partitions} | ${state.parts} | ${state.upload_s.toFixed(1)} | (upload phase only) |`;
      }
    }
    const { id, parts: part, load0 } = state;
    const uploaded = performance.now();
    const t0 = uploaded - state.upload_s * 1000;
    const commits: number[] = [];
    let status = "";
    let publishedAt = 0;
    let final: Record<string, unknown> = {};
    for (let i = 0; i < 10_000 && status !== "completed"; i++) {
      const res = await request(origin, "POST", `/admin/imports/${id}/commit`);
      commits.push(res.ms);
      status = res.json.status as string;
      final = res.json;
      if (!publishedAt && (status === "finalizing" || status === "completed")) publishedAt = performance.now();
      if (res.status >= 400) throw new Error(`commit: ${res.status} ${JSON.stringify(res.json)}`);
    }
    const done = performance.now();
    const load1 = loadavg();
    const traces = [...new Set([state.log, logFile])]
      .flatMap((f) => readFileSync(f, "utf8").split("\n"))
      .filter((l) => l.includes('"import_batch"'))
      .map((l) => JSON.parse(l.slice(l.indexOf("{"))) as Trace);
    const longest = (kind?: string) => traces.filter((t) => !kind || t.import_batch === kind).reduce((m, t) => (t.ms > m.ms ? t : m), { ms: 0, statements: 0, max_statement_ms: 0 } as Trace);
    const maxStatement = traces.reduce((m, t) => Math.max(m, t.max_statement_ms), 0);
    const total = (done - t0) / 1000;
    const upload = (uploaded - t0) / 1000;
    const sw = longest("switch");
    console.log(`\r${label}: ${final.accepted} accepted in ${total.toFixed(1)} s`);
    // Per part (the time of each part's upload: its lines' validation and staging) and per commit call.
    console.log(`${label}: parts (s): ${state.part_s.map((x) => x.toFixed(1)).join(", ")}`);
    console.log(`${label}: commit calls (s): ${commits.map((x) => (x / 1000).toFixed(1)).join(", ")}`);
    return [
      `| ${lines.toLocaleString("en")} + ${values.updates} changed | ${partitions} | ${part} | ${upload.toFixed(1)} | ${((publishedAt - uploaded) / 1000).toFixed(2)} | ${((done - publishedAt) / 1000).toFixed(1)} | ${total.toFixed(1)} | ${Math.round(Number(final.accepted) / total).toLocaleString("en")} | ${commits.length} | ${sw.ms} ms (${sw.statements} st.) | ${longest().ms} ms (${longest().import_batch}, ${longest().statements} st.) | ${maxStatement} ms | ${final.status} | ${load0.map((x) => x.toFixed(2)).join(", ")} → ${load1.map((x) => x.toFixed(2)).join(", ")} |`,
    ].join("\n");
  } finally {
    inspector?.close();
    await server.stop();
  }
}

const entry = buildOnce(path.resolve(".wrangler/bench-import-build"));
const rows: string[] = [];
for (const lines of values.lines.split(",").map(Number)) {
  for (const partitions of values.partitions.split(",").map(Number)) rows.push(await runOne(lines, partitions, entry));
}
console.log(`\nRun ${new Date().toISOString()}; command: npx tsx bench/import.ts ${process.argv.slice(2).join(" ")}\n`);
console.log("| import | partitions | parts | upload s | first commit s (switch + finalize within budget) | later commits s | total s | products/s | commit calls | switch batch | longest batch | longest statement | status | load avg before → after |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
