/**
 * KV tier for product documents. KV has no compare-and-set and D1 reads may come from a lagging replica, so
 * every write here is checked afterwards against the D1 primary: a writer that finds a newer version there
 * replaces what it just wrote with that version. KV therefore never stays behind a version D1 has, whichever
 * writer finishes last.
 *
 * - The queue consumer writes a document when it is newer than KV's (`putProductDocIfNewer`).
 * - The read path only fills an empty key (`fillProductDoc`); it never replaces a document.
 */
import { isNewer, productKey, type ProductDocument } from "./document";

/** The newest document the D1 primary has (null when the product is gone). */
export type LatestDoc = () => Promise<ProductDocument | null>;

export async function readProductDoc(kv: KVNamespace, id: string): Promise<ProductDocument | null> {
  return kv.get<ProductDocument>(productKey(id), "json");
}

export type PutResult = "written" | "skipped-stale" | "present" | "superseded";

function put(kv: KVNamespace, doc: ProductDocument, expirationTtl?: number): Promise<void> {
  return kv.put(productKey(doc.id), JSON.stringify(doc), {
    metadata: { version: doc.version, stock_seq: doc.stock_seq },
    ...(expirationTtl ? { expirationTtl: Math.max(60, expirationTtl) } : {}),
  });
}

/** After a write of `doc`: if the primary has moved on, KV gets the primary's version instead (once more if need be). */
async function settle(kv: KVNamespace, doc: ProductDocument, latest: LatestDoc | undefined): Promise<boolean> {
  if (!latest) return false;
  let written = doc;
  for (let attempt = 0; attempt < 3; attempt++) {
    const newest = await latest();
    if (!newest || !isNewer(newest, written)) return attempt > 0;
    const current = await readProductDoc(kv, doc.id);
    if (current && !isNewer(newest, current)) return true;
    await put(kv, newest);
    written = newest;
  }
  return true;
}

export async function putProductDocIfNewer(
  kv: KVNamespace,
  doc: ProductDocument,
  /** `seen` gets the document KV held before this write (what caches may still show), or null. */
  options: { expirationTtl?: number; latest?: LatestDoc; seen?: (current: ProductDocument | null) => void } = {},
): Promise<PutResult> {
  const current = await readProductDoc(kv, doc.id);
  options.seen?.(current);
  if (!isNewer(doc, current)) return "skipped-stale";
  await put(kv, doc, options.expirationTtl);
  return (await settle(kv, doc, options.latest)) ? "superseded" : "written";
}

/**
 * The read path's write-back after a D1 read: fills the key only when it is empty, then checks the primary, so
 * a replica's older copy written just after the consumer's newer one does not stay.
 */
export async function fillProductDoc(kv: KVNamespace, doc: ProductDocument, options: { expirationTtl?: number; latest: LatestDoc }): Promise<PutResult> {
  if (await readProductDoc(kv, doc.id)) return "present";
  await put(kv, doc, options.expirationTtl);
  return (await settle(kv, doc, options.latest)) ? "superseded" : "written";
}
