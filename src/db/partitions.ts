/**
 * The catalog past one D1 database: which database holds a product.
 *
 * A product and every row it owns (translations, attributes, variants, prices, availability, stock baseline, its
 * outbox rows, its FTS row and its facet counts) live in one partition, so a product write stays one D1 batch (one
 * transaction) and its changes stay ordered. The partition is a function of the product id only:
 * `stableHash(id) % BUCKETS` is the product's virtual bucket, and bucket `b` lives in partition `b % N`. With N a
 * power of two, growing N → 2N sends bucket b either where it was or to partition `b % N + N`: each old partition
 * hands half of its buckets to exactly one new one (docs/storage.md, "Past one D1 database").
 *
 * Partition 0 is the `DB` binding, which is also the directory: categories, affiliates, keys, promotions, imports,
 * webhooks, console and metrics stay there only (categories are also copied to every partition, so product SQL can
 * join them locally). Partition i > 0 is the D1 binding `CATALOG_<i>`. `CATALOG_PARTITIONS` (default 1) says how
 * many there are; with 1, every helper here returns `env.DB` and the catalog behaves and costs exactly as before.
 */
import { BUCKETS, bucketOf, partitionIndex } from "./buckets";

export { BUCKETS, bucketOf };
/** Most partitions a request fans out to: each scatter costs one D1 query per partition (1,000 per invocation). */
export const MAX_PARTITIONS = 16;

type PartitionEnv = Pick<Env, "DB"> & { CATALOG_PARTITIONS?: string };

const counted = new WeakMap<object, number>();

/** N from `CATALOG_PARTITIONS`: a power of two from 1 to MAX_PARTITIONS, each partition i > 0 bound as `CATALOG_<i>`. */
export function partitionCount(env: PartitionEnv): number {
  const cached = counted.get(env);
  if (cached !== undefined) return cached;
  const raw = env.CATALOG_PARTITIONS?.trim() || "1";
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PARTITIONS || (n & (n - 1)) !== 0) {
    throw new Error(`CATALOG_PARTITIONS must be a power of two from 1 to ${MAX_PARTITIONS}, got ${JSON.stringify(raw)}`);
  }
  for (let i = 1; i < n; i++) {
    if (!bindingOf(env, i)) throw new Error(`CATALOG_PARTITIONS is ${n} but there is no D1 binding CATALOG_${i}`);
  }
  counted.set(env, n);
  return n;
}

function bindingOf(env: PartitionEnv, index: number): D1Database | undefined {
  return index === 0 ? env.DB : ((env as unknown as Record<string, D1Database | undefined>)[`CATALOG_${index}`] ?? undefined);
}

/** The partition index holding `productId`. */
export function partitionOf(env: PartitionEnv, productId: string): number {
  const n = partitionCount(env);
  return partitionIndex(productId, n);
}

/** Partition `index`'s database. */
export function partitionDb(env: PartitionEnv, index: number): D1Database {
  const db = bindingOf(env, index);
  if (!db || index >= partitionCount(env)) throw new Error(`no catalog partition ${index}`);
  return db;
}

/** The database holding `productId` and everything it owns. */
export function catalogDb(env: PartitionEnv, productId: string): D1Database {
  return partitionDb(env, partitionOf(env, productId));
}

/** Every partition's database, in partition order (one entry, `env.DB`, when N = 1). */
export function allCatalogDbs(env: PartitionEnv): D1Database[] {
  return Array.from({ length: partitionCount(env) }, (_, i) => bindingOf(env, i)!);
}

/** One database, or every partition in order, as a list: functions that serve both take either. */
export function asList(dbs: D1Database | readonly D1Database[]): readonly D1Database[] {
  return Array.isArray(dbs) ? dbs : [dbs as D1Database];
}

/**
 * Which product owns each SKU, and in which partition (a SKU's partition is not known from the SKU alone, so each
 * partition in `dbs` is asked once).
 */
export async function ownersOfSkus(dbs: readonly D1Database[], skus: readonly string[]): Promise<Map<string, { productId: string; partition: number }>> {
  const list = JSON.stringify([...new Set(skus)]);
  const found = await Promise.all(
    dbs.map((db) => db.prepare("SELECT sku, product_id FROM variants WHERE sku IN (SELECT value FROM json_each(?))").bind(list).all<{ sku: string; product_id: string }>()),
  );
  const owners = new Map<string, { productId: string; partition: number }>();
  found.forEach((res, partition) => {
    for (const r of res.results) owners.set(r.sku, { productId: r.product_id, partition });
  });
  return owners;
}

/** Groups ids by partition: `[partition index, ids]` for each partition holding at least one of them. */
export function groupByPartition<T>(env: PartitionEnv, items: readonly T[], idOf: (item: T) => string): [number, T[]][] {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const p = partitionOf(env, idOf(item));
    const list = groups.get(p);
    if (list) list.push(item);
    else groups.set(p, [item]);
  }
  return [...groups].sort(([a], [b]) => a - b);
}
