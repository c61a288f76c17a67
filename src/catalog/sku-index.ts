/**
 * KV `sku:{sku}` → product id: how checkout finds the product document of a SKU without asking D1. A SKU
 * belongs to one product for its whole life, so an entry is written once (by the queue consumer when a catalog
 * change projects the product, or by checkout after a D1 fallback found it) and then only read.
 */
export const skuKey = (sku: string) => `sku:${sku}`;

/** sku → product id for the SKUs the index knows; a failed read counts as unknown (the caller falls back to D1). */
export async function productIdsOf(kv: KVNamespace, skus: readonly string[]): Promise<Map<string, string>> {
  const found = await Promise.all(skus.map(async (sku) => [sku, await kv.get(skuKey(sku)).catch(() => null)] as const));
  return new Map(found.filter((e): e is readonly [string, string] => e[1] !== null));
}

/** Writes the entries that are missing or point elsewhere (a read first: KV allows one write per key per second). */
export async function indexSkus(kv: KVNamespace, productId: string, skus: readonly string[]): Promise<void> {
  const known = await productIdsOf(kv, skus);
  await Promise.all(skus.filter((sku) => known.get(sku) !== productId).map((sku) => kv.put(skuKey(sku), productId)));
}
