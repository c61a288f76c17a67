/**
 * Catalog rows for tests (the test D1 starts empty). Reuses the deterministic seed generator, so tests can
 * run on the same data as `npm run dev` and compare against brute-force counts over it.
 */
import { CURRENCIES, LOCATIONS, categories, product, stock, type SeedProduct } from "../../src/seed/generate";
import { availabilityStatus } from "../../src/lib/stock-status";
import { allCatalogDbs, catalogDb } from "../../src/db/partitions";

type Row = Record<string, unknown>;

function insert(db: D1Database, table: string, row: Row, conflict = "ON CONFLICT DO NOTHING"): D1PreparedStatement {
  const cols = Object.keys(row);
  const values = cols.map((c) => {
    const v = row[c];
    return v !== null && typeof v === "object" ? JSON.stringify(v) : (v ?? null);
  });
  return db.prepare(`INSERT INTO ${table} (${cols.join(",")}) VALUES (${cols.map(() => "?").join(",")}) ${conflict}`).bind(...values);
}

async function runChunked(db: D1Database, statements: D1PreparedStatement[], size = 500): Promise<void> {
  for (let i = 0; i < statements.length; i += size) await db.batch(statements.slice(i, i + size));
}

/** Categories and stock locations of the seed (idempotent). */
export async function seedCategories(db: D1Database): Promise<void> {
  const stmts: D1PreparedStatement[] = [];
  for (const loc of LOCATIONS) stmts.push(insert(db, "stock_locations", { id: loc.id, name: loc.name, region: loc.region, country: loc.country, priority: loc.priority }));
  for (const c of categories()) {
    stmts.push(insert(db, "categories", { id: c.id, slug: c.slug, name: c.name, parent_id: c.parentId, path: c.path, depth: c.depth, position: c.position }));
    for (const [locale, name] of Object.entries(c.translations)) stmts.push(insert(db, "category_translations", { category_id: c.id, locale, name }));
  }
  await runChunked(db, stmts);
}

export type FixtureProduct = SeedProduct & { status?: string; stock?: { sku: string; locationId: string; onHand: number; safetyStock?: number }[] };

function productStatements(db: D1Database, p: FixtureProduct, stockRows: { sku: string; locationId: string; onHand: number; safetyStock?: number }[]): D1PreparedStatement[] {
  const sellable = stockRows.some((s) => s.onHand - (s.safetyStock ?? 0) > 0);
  const minPrices: Record<string, number> = {};
  for (const v of p.variants) for (const [cur, amount] of Object.entries(v.prices)) minPrices[cur] = Math.min(minPrices[cur] ?? Infinity, amount);
  const out = [
    insert(db, "products", {
      id: p.id, slug: p.slug, title: p.title, description: p.description, brand: p.brand, category_id: p.categoryId,
      status: p.status ?? "active", attributes: p.attributes, images: p.images, markets: p.markets, condition: "new",
      in_stock: sellable ? 1 : 0, min_prices: minPrices, change_seq: 0, created_at: p.createdAt, updated_at: p.createdAt,
    }),
  ];
  for (const [locale, t] of Object.entries(p.translations)) out.push(insert(db, "product_translations", { product_id: p.id, locale, title: t.title, description: t.description }));
  for (const [name, value] of Object.entries(p.attributes)) out.push(insert(db, "product_attributes", { product_id: p.id, name, value }));
  for (const v of p.variants) {
    out.push(insert(db, "variants", { sku: v.sku, product_id: p.id, title: v.title, options: v.options, gtin: v.gtin, mpn: v.mpn, position: v.position }));
    for (const [currency, amount] of Object.entries(v.prices)) out.push(insert(db, "prices", { sku: v.sku, currency, amount }));
  }
  for (const s of stockRows) {
    const safety = s.safetyStock ?? 0;
    const available = Math.max(0, s.onHand - safety);
    out.push(insert(db, "stock_baseline", { sku: s.sku, location_id: s.locationId, on_hand: s.onHand, safety_stock: safety, low_stock_threshold: 5 }));
    out.push(insert(db, "availability", { sku: s.sku, location_id: s.locationId, on_hand: s.onHand, reserved: 0, available, status: availabilityStatus(available, 5), seq: 0 }));
  }
  return out;
}

/** Seed products n = from … from+count-1 exactly as `npm run seed` makes them. Returns the generated products. */
export async function seedProducts(db: D1Database, count: number, from = 1): Promise<SeedProduct[]> {
  await seedCategories(db);
  const products: SeedProduct[] = [];
  const stmts: D1PreparedStatement[] = [];
  for (let n = from; n < from + count; n++) {
    const p = product(n);
    products.push(p);
    stmts.push(...productStatements(db, p, stock(p, n)));
  }
  await runChunked(db, stmts);
  return products;
}

/**
 * Seed products n = from … from+count-1 over the catalog partitions: each product with its rows in its own
 * partition (src/db/partitions.ts), categories and stock locations in every one, as the seed does.
 */
export async function seedProductsPartitioned(env: Env, count: number, from = 1): Promise<SeedProduct[]> {
  const dbs = allCatalogDbs(env);
  for (const db of dbs) await seedCategories(db);
  const products: SeedProduct[] = [];
  const byDb = new Map<D1Database, D1PreparedStatement[]>(dbs.map((db) => [db, []]));
  for (let n = from; n < from + count; n++) {
    const p = product(n);
    products.push(p);
    const db = catalogDb(env, p.id);
    byDb.get(db)!.push(...productStatements(db, p, stock(p, n)));
  }
  for (const [db, stmts] of byDb) await runChunked(db, stmts);
  return products;
}

let fixtureCounter = 0;

/**
 * One custom product (built on seed product `base`, default 1) with its own id/SKUs so tests never collide.
 * Override anything; `stock` defaults to 10 units per variant at loc-us-east.
 */
export async function insertProduct(
  db: D1Database,
  overrides: Partial<FixtureProduct> & { base?: number; stockFor?: (skus: string[]) => NonNullable<FixtureProduct["stock"]> } = {},
): Promise<FixtureProduct> {
  await seedCategories(db);
  fixtureCounter += 1;
  const suffix = `${Date.now().toString(36)}${fixtureCounter}`;
  const seed = product(overrides.base ?? 1);
  const id = overrides.id ?? `p-t${suffix}`;
  const variants = (overrides.variants ?? seed.variants).map((v, i) => ({ ...v, sku: overrides.variants ? v.sku : `SKU-t${suffix}-${i + 1}` }));
  const { base: _base, stockFor: _stockFor, ...fields } = overrides;
  const p: FixtureProduct = { ...seed, slug: `${seed.slug}-t${suffix}`, ...fields, id, variants };
  const stockRows = overrides.stock ?? overrides.stockFor?.(variants.map((v) => v.sku)) ?? variants.map((v) => ({ sku: v.sku, locationId: "loc-us-east", onHand: 10 }));
  await runChunked(db, productStatements(db, p, stockRows));
  return p;
}

/** Bumps products.version like an admin write would (for tests of versioned tiers). */
export async function touchProduct(db: D1Database, id: string, fields: Record<string, unknown> = {}): Promise<number> {
  const sets = Object.keys(fields).map((k) => `${k} = ?`);
  const row = await db
    .prepare(`UPDATE products SET ${[...sets, "version = version + 1", "updated_at = ?"].join(", ")} WHERE id = ? RETURNING version`)
    .bind(...Object.values(fields).map((v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : v)), Date.now(), id)
    .first<{ version: number }>();
  return row!.version;
}

export { CURRENCIES };
