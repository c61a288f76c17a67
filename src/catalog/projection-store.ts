/**
 * KV tier for product documents. Writes are conditional on version (`isNewer`): out-of-order and duplicate
 * events must be harmless. KV has no compare-and-set, so the read-check-write can still race between two
 * writers; both write documents built from D1, and the consumer's later rebuild converges on the newest.
 */
import { isNewer, productKey, type ProductDocument } from "./document";

export async function readProductDoc(kv: KVNamespace, id: string): Promise<ProductDocument | null> {
  return kv.get<ProductDocument>(productKey(id), "json");
}

export type PutResult = "written" | "skipped-stale";

export async function putProductDocIfNewer(
  kv: KVNamespace,
  doc: ProductDocument,
  options: { expirationTtl?: number } = {},
): Promise<PutResult> {
  const current = await readProductDoc(kv, doc.id);
  if (!isNewer(doc, current)) return "skipped-stale";
  await kv.put(productKey(doc.id), JSON.stringify(doc), {
    metadata: { version: doc.version, stock_seq: doc.stock_seq },
    ...(options.expirationTtl ? { expirationTtl: Math.max(60, options.expirationTtl) } : {}),
  });
  return "written";
}
