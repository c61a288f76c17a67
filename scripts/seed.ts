/**
 * Seeds the local D1 database with the deterministic demo catalog.
 *   npm run seed                      # 2,000 products (demo default)
 *   npm run seed -- --products 100000 # benchmark scale
 *   npm run seed -- --if-empty        # only when no product exists yet (used by `npm run dev`)
 * Rows are inserted with ON CONFLICT DO NOTHING, so re-running is idempotent and never overwrites newer edits.
 */
import { createHash } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  BASE_TIME, CURRENCIES, DEMO_AFFILIATE, DEV_STOREFRONT_KEY, LOCATIONS, categories, product, stock,
} from "../src/seed/generate";
import { availabilityStatus } from "../src/lib/stock-status";
import { d1Execute, d1Query } from "./lib/wrangler";

const { values } = parseArgs({
  options: {
    products: { type: "string", default: "2000" },
    "if-empty": { type: "boolean", default: false },
    env: { type: "string" },
    persist: { type: "string" },
  },
});
const total = Number(values.products);
if (!Number.isInteger(total) || total < 1) {
  console.error(`--products must be a positive integer, got ${values.products}`);
  process.exit(2);
}
const persistTo = values.persist;

const q = (v: unknown): string => {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "number") return String(v);
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return `'${s.replace(/'/g, "''")}'`;
};
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

class SqlWriter {
  private statements: string[] = [];
  private rows = new Map<string, { cols: string[]; values: string[]; bytes: number }>();
  /** D1 rejects statements over 100 KB (SQLITE_TOOBIG). */
  constructor(private readonly maxStatementBytes = 90_000) {}
  insert(table: string, record: Record<string, unknown>) {
    const cols = Object.keys(record);
    const key = `${table}(${cols.join(",")})`;
    const tuple = `(${cols.map((c) => q(record[c])).join(",")})`;
    const pending = this.rows.get(key);
    if (pending && pending.bytes + tuple.length > this.maxStatementBytes) this.flushKey(key);
    const entry = this.rows.get(key) ?? { cols, values: [], bytes: key.length + 64 };
    entry.values.push(tuple);
    entry.bytes += Buffer.byteLength(tuple) + 2;
    this.rows.set(key, entry);
  }
  private flushKey(key: string) {
    const entry = this.rows.get(key);
    if (!entry || entry.values.length === 0) return;
    const table = key.slice(0, key.indexOf("("));
    this.statements.push(`INSERT INTO ${table} (${entry.cols.join(",")}) VALUES\n${entry.values.join(",\n")}\nON CONFLICT DO NOTHING;`);
    this.rows.delete(key);
  }
  take(): string {
    for (const key of [...this.rows.keys()]) this.flushKey(key);
    const out = this.statements.join("\n");
    this.statements = [];
    return out;
  }
}

async function main() {
  if (values["if-empty"]) {
    const rows = await d1Query<{ n: number }>("SELECT count(*) AS n FROM products", persistTo);
    if ((rows[0]?.n ?? 0) > 0) {
      console.log(`seed: ${rows[0]!.n} products already present, skipping`);
      return;
    }
  }
  // One directory per run: benches seed several databases at once, and must not delete each other's files.
  const dir = path.resolve(".seed", String(process.pid));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const started = Date.now();
  const files: string[] = [];
  const w = new SqlWriter();

  for (const loc of LOCATIONS) w.insert("stock_locations", { id: loc.id, name: loc.name, region: loc.region, country: loc.country, priority: loc.priority });
  for (const c of categories()) {
    w.insert("categories", { id: c.id, slug: c.slug, name: c.name, parent_id: c.parentId, path: c.path, depth: c.depth, position: c.position });
    for (const [locale, name] of Object.entries(c.translations)) w.insert("category_translations", { category_id: c.id, locale, name });
  }
  w.insert("affiliates", { id: DEMO_AFFILIATE.id, name: DEMO_AFFILIATE.name, tracking_id: DEMO_AFFILIATE.trackingId, allowed_origins: DEMO_AFFILIATE.allowedOrigins, scope: {}, campaign: DEMO_AFFILIATE.campaign });
  w.insert("api_keys", { id: "key-demo-affiliate", kind: "affiliate", affiliate_id: DEMO_AFFILIATE.id, key_hash: sha256(DEMO_AFFILIATE.key), prefix: DEMO_AFFILIATE.key.slice(0, 8), label: "Demo affiliate key" });
  w.insert("api_keys", { id: DEV_STOREFRONT_KEY.id, kind: "storefront", affiliate_id: null, key_hash: sha256(DEV_STOREFRONT_KEY.key), prefix: DEV_STOREFRONT_KEY.key.slice(0, 8), label: DEV_STOREFRONT_KEY.label });

  const chunk = 5000;
  const flush = () => {
    const sql = w.take();
    // A count that is a multiple of the chunk leaves nothing for the last flush; wrangler rejects empty files.
    if (!sql.trim()) return;
    const file = path.join(dir, `seed-${String(files.length).padStart(4, "0")}.sql`);
    writeFileSync(file, sql);
    files.push(file);
  };
  for (let n = 1; n <= total; n++) {
    const p = product(n);
    const stockRows = stock(p, n);
    const sellable = new Set(stockRows.filter((s) => s.onHand - s.safetyStock > 0).map((s) => s.sku));
    const minPrices: Record<string, number> = {};
    for (const cur of CURRENCIES) minPrices[cur] = Math.min(...p.variants.map((v) => v.prices[cur]!));
    w.insert("products", {
      id: p.id, slug: p.slug, title: p.title, description: p.description, brand: p.brand, category_id: p.categoryId,
      status: "active", attributes: p.attributes, images: p.images, markets: p.markets, condition: "new",
      in_stock: sellable.size > 0 ? 1 : 0, min_prices: minPrices, change_seq: n, created_at: p.createdAt, updated_at: BASE_TIME,
    });
    for (const [locale, t] of Object.entries(p.translations)) w.insert("product_translations", { product_id: p.id, locale, title: t.title, description: t.description });
    for (const [name, value] of Object.entries(p.attributes)) w.insert("product_attributes", { product_id: p.id, name, value });
    for (const v of p.variants) {
      w.insert("variants", { sku: v.sku, product_id: p.id, title: v.title, options: v.options, gtin: v.gtin, mpn: v.mpn, position: v.position });
      for (const cur of CURRENCIES) w.insert("prices", { sku: v.sku, currency: cur, amount: v.prices[cur] });
    }
    for (const s of stockRows) {
      w.insert("stock_baseline", { sku: s.sku, location_id: s.locationId, on_hand: s.onHand, safety_stock: s.safetyStock, low_stock_threshold: s.lowStockThreshold });
      const available = Math.max(0, s.onHand - s.safetyStock);
      w.insert("availability", { sku: s.sku, location_id: s.locationId, on_hand: s.onHand, reserved: 0, available, status: availabilityStatus(available, s.lowStockThreshold), seq: 0 });
    }
    if (n % chunk === 0) flush();
  }
  flush();
  for (const file of files) await d1Execute(file, persistTo);
  rmSync(dir, { recursive: true, force: true });
  console.log(`seed: ${total} products in ${((Date.now() - started) / 1000).toFixed(1)} s (${files.length} files)`);
}

main().catch((err) => {
  console.error(`seed failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
