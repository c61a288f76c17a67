/**
 * Seeds the local D1 database with the deterministic demo catalog.
 *   npm run seed                        # 2,000 products (demo default)
 *   npm run seed -- --products 1000000  # scale benchmarks (about 5 minutes here, see bench/results/scale.md)
 *   npm run seed -- --if-empty          # only when no product exists yet (used by `npm run dev`)
 *   npm run seed -- --persist DIR       # the same directory as `wrangler dev --persist-to DIR`
 *   npm run seed -- --partitions 2      # the catalog over DB and CATALOG_1 (serve with --var CATALOG_PARTITIONS:2)
 *
 * The D1 binding comes from wrangler's getPlatformProxy, so rows reach the same local database `wrangler dev`
 * serves through the supported API (never miniflare's file layout). Each table's rows travel as ONE JSON
 * parameter expanded by `json_each` in SQLite: a statement carries thousands of rows with one bound parameter
 * (D1 allows 100) and stays under D1's 2 MB value limit, and one `batch` (one transaction) per chunk of
 * products keeps every transaction short. Rows are inserted with ON CONFLICT DO NOTHING, so re-running is
 * idempotent and never overwrites newer edits.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import type { D1Database, D1PreparedStatement } from "@cloudflare/workers-types";
import { getPlatformProxy } from "wrangler";
import {
  BASE_TIME, CURRENCIES, DEMO_AFFILIATE, DEV_STOREFRONT_KEY, LOCATIONS, categories, product, stock,
} from "../src/seed/generate";
import { availabilityStatus } from "../src/lib/stock-status";
import { partitionIndex } from "../src/db/buckets";
import { QUIET_ENV } from "./lib/wrangler";

const { values } = parseArgs({
  options: {
    products: { type: "string", default: "2000" },
    "if-empty": { type: "boolean", default: false },
    env: { type: "string" },
    persist: { type: "string" },
    /** Products per D1 batch (one transaction). */
    chunk: { type: "string", default: "2000" },
    /** Catalog partitions (src/db/partitions.ts): each product goes to its partition, categories to every one. */
    partitions: { type: "string", default: "1" },
    /** Print how long each rebuilt index took. */
    timings: { type: "boolean", default: false },
  },
});
const total = Number(values.products);
const partitions = Number(values.partitions);
const chunk = Number(values.chunk);
if (!Number.isInteger(partitions) || partitions < 1 || partitions > 16 || (partitions & (partitions - 1)) !== 0) {
  console.error(`--partitions must be a power of two from 1 to 16 (CATALOG_PARTITIONS), got ${values.partitions}`);
  process.exit(2);
}
if (!Number.isInteger(total) || total < 1 || !Number.isInteger(chunk) || chunk < 1) {
  console.error(`--products and --chunk must be positive integers, got ${values.products} and ${values.chunk}`);
  process.exit(2);
}
Object.assign(process.env, QUIET_ENV);

/** Characters of JSON per bound parameter: D1 refuses values over 2,000,000 bytes (UTF-8 can double a few). */
const MAX_PARAM_CHARS = 900_000;

/** A table and its columns, in the order rows list their values. */
type TableSpec = { table: string; cols: string[] };
const T = {
  stock_locations: { table: "stock_locations", cols: ["id", "name", "region", "country", "priority"] },
  categories: { table: "categories", cols: ["id", "slug", "name", "parent_id", "path", "depth", "position"] },
  category_translations: { table: "category_translations", cols: ["category_id", "locale", "name"] },
  affiliates: { table: "affiliates", cols: ["id", "name", "tracking_id", "allowed_origins", "scope", "campaign"] },
  api_keys: { table: "api_keys", cols: ["id", "kind", "affiliate_id", "key_hash", "prefix", "label"] },
  products: {
    table: "products",
    cols: ["id", "slug", "title", "description", "brand", "category_id", "status", "attributes", "images", "markets", "condition", "in_stock", "min_prices", "change_seq", "created_at", "updated_at"],
  },
  product_translations: { table: "product_translations", cols: ["product_id", "locale", "title", "description"] },
  product_attributes: { table: "product_attributes", cols: ["product_id", "name", "value"] },
  variants: { table: "variants", cols: ["sku", "product_id", "title", "options", "gtin", "mpn", "position"] },
  prices: { table: "prices", cols: ["sku", "currency", "amount"] },
  stock_baseline: { table: "stock_baseline", cols: ["sku", "location_id", "on_hand", "safety_stock", "low_stock_threshold"] },
  availability: { table: "availability", cols: ["sku", "location_id", "on_hand", "reserved", "available", "status", "seq"] },
} satisfies Record<string, TableSpec>;
type TableName = keyof typeof T;

/** JSON-typed columns are stored as JSON text: `->>` returns an object's JSON text, a string's value. */
const insertSql = ({ table, cols }: TableSpec) =>
  `INSERT INTO ${table} (${cols.join(", ")}) SELECT ${cols.map((_, i) => `value ->> ${i}`).join(", ")} FROM json_each(?1) WHERE true ON CONFLICT DO NOTHING`;

/** Rows grouped by table, in insertion order, cut into JSON parameters of at most MAX_PARAM_CHARS. */
class Rows {
  private readonly params = new Map<TableName, { done: string[]; open: string[]; chars: number }>();
  add(table: TableName, row: unknown[]) {
    const json = JSON.stringify(row);
    let p = this.params.get(table);
    if (!p) this.params.set(table, (p = { done: [], open: [], chars: 2 }));
    if (p.chars + json.length + 1 > MAX_PARAM_CHARS && p.open.length > 0) {
      p.done.push(`[${p.open.join(",")}]`);
      p.open = [];
      p.chars = 2;
    }
    p.open.push(json);
    p.chars += json.length + 1;
  }
  statements(db: D1Database, prepared: Map<TableName, D1PreparedStatement>): D1PreparedStatement[] {
    const out: D1PreparedStatement[] = [];
    for (const [table, p] of this.params) {
      if (p.open.length > 0) p.done.push(`[${p.open.join(",")}]`);
      let stmt = prepared.get(table);
      if (!stmt) prepared.set(table, (stmt = db.prepare(insertSql(T[table]))));
      for (const json of p.done) out.push(stmt.bind(json));
    }
    return out;
  }
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/** What every partition holds besides its products: stock locations and the category tree (joined by product SQL). */
function sharedRows(r = new Rows()): Rows {
  for (const loc of LOCATIONS) r.add("stock_locations", [loc.id, loc.name, loc.region, loc.country, loc.priority]);
  for (const c of categories()) {
    r.add("categories", [c.id, c.slug, c.name, c.parentId, c.path, c.depth, c.position]);
    for (const [locale, name] of Object.entries(c.translations)) r.add("category_translations", [c.id, locale, name]);
  }
  return r;
}

/** Partition 0 is also the directory: affiliates and keys live there only. */
function referenceRows(): Rows {
  const r = sharedRows();
  r.add("affiliates", [DEMO_AFFILIATE.id, DEMO_AFFILIATE.name, DEMO_AFFILIATE.trackingId, DEMO_AFFILIATE.allowedOrigins, {}, DEMO_AFFILIATE.campaign]);
  r.add("api_keys", ["key-demo-affiliate", "affiliate", DEMO_AFFILIATE.id, sha256(DEMO_AFFILIATE.key), DEMO_AFFILIATE.key.slice(0, 8), "Demo affiliate key"]);
  r.add("api_keys", [DEV_STOREFRONT_KEY.id, "storefront", null, sha256(DEV_STOREFRONT_KEY.key), DEV_STOREFRONT_KEY.key.slice(0, 8), DEV_STOREFRONT_KEY.label]);
  return r;
}

/** Products first..last (1-based, inclusive) and everything they own, one Rows per partition. */
function productRows(first: number, last: number, partitionOfId: (id: string) => number): Rows[] {
  const byPartition = Array.from({ length: partitions }, () => new Rows());
  for (let n = first; n <= last; n++) {
    const p = product(n);
    const r = byPartition[partitionOfId(p.id)]!;
    const stockRows = stock(p, n);
    const sellable = stockRows.some((s) => s.onHand - s.safetyStock > 0);
    const minPrices: Record<string, number> = {};
    for (const cur of CURRENCIES) minPrices[cur] = Math.min(...p.variants.map((v) => v.prices[cur]!));
    r.add("products", [p.id, p.slug, p.title, p.description, p.brand, p.categoryId, "active", p.attributes, p.images, p.markets, "new", sellable ? 1 : 0, minPrices, n, p.createdAt, BASE_TIME]);
    for (const [locale, t] of Object.entries(p.translations)) r.add("product_translations", [p.id, locale, t.title, t.description]);
    for (const [name, value] of Object.entries(p.attributes)) r.add("product_attributes", [p.id, name, value]);
    for (const v of p.variants) {
      r.add("variants", [v.sku, p.id, v.title, v.options, v.gtin, v.mpn, v.position]);
      for (const cur of CURRENCIES) r.add("prices", [v.sku, cur, v.prices[cur]]);
    }
    for (const s of stockRows) {
      r.add("stock_baseline", [s.sku, s.locationId, s.onHand, s.safetyStock, s.lowStockThreshold]);
      const available = Math.max(0, s.onHand - s.safetyStock);
      r.add("availability", [s.sku, s.locationId, s.onHand, 0, available, availabilityStatus(available, s.lowStockThreshold), 0]);
    }
  }
  return byPartition;
}

const DEFERRED_KEY = "seed:deferred_schema";

/**
 * What a trigger keeps current row by row, rebuilt in bulk once the rows are in: the FTS index, and the facet
 * counts (the same statements as the back-fill at the end of migrations/0001_search.sql, which the triggers
 * there keep exact afterwards).
 */
const REBUILD_SQL = [
  "INSERT INTO products_fts(products_fts) VALUES ('rebuild')",
  "DELETE FROM facet_counts",
  "INSERT INTO facet_counts(facet, value, count) SELECT 'brand', brand, count(*) FROM products WHERE status = 'active' GROUP BY brand",
  "INSERT INTO facet_counts(facet, value, count) SELECT 'category', category_id, count(*) FROM products WHERE status = 'active' GROUP BY category_id",
  `INSERT INTO facet_counts(facet, value, count) SELECT 'attr:' || a.name, a.value, count(*) FROM product_attributes a JOIN products p ON p.id = a.product_id
     WHERE p.status = 'active' GROUP BY a.name, a.value`,
  `INSERT INTO facet_counts(facet, value, count) SELECT 'price:' || j.key,
     CASE WHEN j.value < 2500 THEN '0-2500' WHEN j.value < 5000 THEN '2500-5000' WHEN j.value < 10000 THEN '5000-10000'
          WHEN j.value < 25000 THEN '10000-25000' WHEN j.value < 50000 THEN '25000-50000' ELSE '50000+' END, count(*)
     FROM products p, json_each(p.min_prices) j WHERE p.status = 'active' AND j.type = 'integer' GROUP BY 1, 2`,
];

/**
 * On an empty database, drops the secondary indexes and the triggers of the tables the seed fills: each index
 * is then built once at the end by a sort, and the FTS index and facet counts are rebuilt in bulk, instead of
 * row by row (random-order keys such as slugs and prices made a 1M seed slow to a crawl once those indexes
 * outgrew SQLite's page cache; the facet and FTS triggers cost as much again). The DDL is saved in `meta`
 * first, so a seed that dies half-way gets everything back from the next run's restoreSchema.
 * Returns how many objects were deferred.
 */
async function deferSchema(db: D1Database): Promise<number> {
  if (await db.prepare("SELECT id FROM products LIMIT 1").first()) return 0;
  const tables = Object.values(T).map((t) => t.table);
  const { results } = await db
    .prepare(`SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL AND tbl_name IN (SELECT value FROM json_each(?1))`)
    .bind(JSON.stringify(tables))
    .all<{ type: "index" | "trigger"; name: string; sql: string }>();
  if (results.length === 0) return 0;
  const saved = { indexes: results.filter((r) => r.type === "index").map((r) => r.sql), triggers: results.filter((r) => r.type === "trigger").map((r) => r.sql) };
  await db.batch([
    db.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value").bind(DEFERRED_KEY, JSON.stringify(saved)),
    ...results.map((r) => db.prepare(`DROP ${r.type === "index" ? "INDEX" : "TRIGGER"} IF EXISTS "${r.name.replace(/"/g, '""')}"`)),
  ]);
  return results.length;
}

/** Recreates what a seed deferred (this run's, or a crashed run's), rebuilds what its triggers maintain, and forgets it. */
async function restoreSchema(db: D1Database, progress?: (done: number, total: number, step: string) => void): Promise<void> {
  const row = await db.prepare("SELECT value FROM meta WHERE key = ?1").bind(DEFERRED_KEY).first<{ value: string }>();
  if (!row) return;
  const saved = JSON.parse(row.value) as { indexes: string[]; triggers: string[] };
  const steps = saved.indexes.length + (saved.triggers.length > 0 ? REBUILD_SQL.length + 1 : 0);
  let done = 0;
  const step = async (name: string, run: () => Promise<unknown>) => {
    const t = Date.now();
    await run();
    timings.push([name, Date.now() - t]);
    progress?.(++done, steps, name);
  };
  for (const ddl of saved.indexes) {
    await step(/INDEX\s+(?:IF NOT EXISTS\s+)?[`"]?(\w+)/i.exec(ddl)?.[1] ?? "index", () => db.prepare(ddl.replace(/^CREATE (UNIQUE )?INDEX /i, (m) => `${m}IF NOT EXISTS `)).run());
  }
  if (saved.triggers.length > 0) {
    for (const q of REBUILD_SQL) await step(/products_fts|facet_counts/.exec(q)?.[0] ?? "rebuild", () => db.prepare(q).run());
    await step("triggers", () => db.batch(saved.triggers.map((ddl) => db.prepare(ddl.replace(/^CREATE TRIGGER /i, "CREATE TRIGGER IF NOT EXISTS ")))));
  }
  await db.prepare("DELETE FROM meta WHERE key = ?1").bind(DEFERRED_KEY).run();
}

/** Per-step durations of the rebuild, printed with --timings (where a large seed spends its time). */
const timings: [string, number][] = [];

async function main() {
  const persistRoot = values.persist ? path.resolve(values.persist) : path.resolve(".wrangler/state");
  const bindings = Array.from({ length: partitions }, (_, i) => (i === 0 ? "DB" : `CATALOG_${i}`));
  // The schema comes from the migrations (already applied ones are skipped), so a fresh directory can be seeded.
  for (const binding of bindings) {
    execFileSync("npx", ["--no-install", "wrangler", "d1", "migrations", "apply", binding, "--local", "--persist-to", persistRoot, ...(values.env ? ["--env", values.env] : [])], {
      env: QUIET_ENV,
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  const proxy = await getPlatformProxy<Record<string, D1Database>>({
    configPath: "wrangler.toml",
    environment: values.env,
    persist: { path: path.join(persistRoot, "v3") },
    remoteBindings: false,
  });
  try {
    const dbs = bindings.map((b) => {
      const db = proxy.env[b];
      if (!db) throw new Error(`--partitions ${partitions} needs the D1 binding ${b} in wrangler.toml`);
      return db;
    });
    const partitionOfId = (id: string) => partitionIndex(id, partitions);
    if (values["if-empty"]) {
      for (const db of dbs) {
        if (await db.prepare("SELECT id FROM products LIMIT 1").first()) {
          console.log("seed: products already present, skipping");
          return;
        }
      }
    }
    const started = Date.now();
    for (const db of dbs) await restoreSchema(db);
    let deferred = 0;
    for (const db of dbs) deferred += await deferSchema(db);
    const prepared = dbs.map(() => new Map<TableName, D1PreparedStatement>());
    await dbs[0]!.batch(referenceRows().statements(dbs[0]!, prepared[0]!));
    for (const [i, db] of dbs.entries()) if (i > 0) await db.batch(sharedRows().statements(db, prepared[i]!));

    const bar = new cliProgress.SingleBar({
      format: "seed [{bar}] {percentage}% | {value}/{total} products | {rate}/s | ETA {eta_formatted}",
      etaBuffer: 20,
      noTTYOutput: true,
      notTTYSchedule: 10_000,
    }, cliProgress.Presets.shades_classic);
    bar.start(total, 0, { rate: 0 });
    // One chunk in flight while the next is generated: workerd's SQLite and Node's generator overlap.
    let inFlight: Promise<unknown> = Promise.resolve();
    for (let first = 1; first <= total; first += chunk) {
      const last = Math.min(total, first + chunk - 1);
      const rows = productRows(first, last, partitionOfId);
      const batches = dbs.map((db, i) => rows[i]!.statements(db, prepared[i]!));
      await inFlight;
      // The partitions' batches one after the other: two large batches at once through the platform proxy failed
      // (an internal assertion, "false == true", 26,000 products into a 1M seed over two partitions).
      inFlight = (async () => {
        for (const [i, statements] of batches.entries()) if (statements.length > 0) await dbs[i]!.batch(statements);
        bar.update(last, { rate: Math.round(last / ((Date.now() - started) / 1000)) });
      })();
    }
    await inFlight;
    bar.stop();
    if (deferred) {
      const t = Date.now();
      const rebuild = new cliProgress.SingleBar({
        format: "index [{bar}] {value}/{total} | {step} | {duration_formatted}",
        noTTYOutput: true,
        notTTYSchedule: 10_000,
      }, cliProgress.Presets.shades_classic);
      rebuild.start(1, 0, { step: "" });
      const progress = dbs.map(() => ({ done: 0, steps: 0 }));
      for (const [i, db] of dbs.entries()) {
        await restoreSchema(db, (done, steps, step) => {
          progress[i] = { done, steps };
          rebuild.setTotal(progress.reduce((s, p) => s + p.steps, 0));
          rebuild.update(progress.reduce((s, p) => s + p.done, 0), { step: partitions > 1 ? `${bindings[i]} ${step}` : step });
        });
      }
      rebuild.stop();
      console.log(`seed: ${deferred} indexes and triggers rebuilt in ${((Date.now() - t) / 1000).toFixed(1)} s`);
      if (values.timings) for (const [name, ms] of timings.sort((a, b) => b[1] - a[1])) console.log(`  ${(ms / 1000).toFixed(1).padStart(7)} s  ${name}`);
    }
    const seconds = (Date.now() - started) / 1000;
    console.log(`seed: ${total} products in ${seconds.toFixed(1)} s (${Math.round(total / seconds)} products/s)${partitions > 1 ? ` over ${partitions} partitions` : ""}`);
  } finally {
    await proxy.dispose();
  }
}

main().catch((err) => {
  console.error(`seed failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
