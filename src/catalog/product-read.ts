/**
 * Product-by-id through the tiered read path: the route only parses the request and calls this.
 * Also used by anything else that wants a product page response (e.g. warming after a purge).
 */
import { catalogDb } from "../db/partitions";
import { now as clockNow } from "../lib/clock";
import { ApiError } from "../lib/errors";
import { marketOf } from "../lib/markets";
import { productCacheKey, productTags } from "./cache-keys";
import { loadProductDocument, newerThan, type ProductDocument } from "./document";
import { BOOKMARK_TTL_MS, signBookmark, verifyBookmark } from "./bookmark";
import { originSession, BOOKMARK_HEADER } from "./origin";
import { fillProductDoc, readProductDoc } from "./projection-store";
import { tieredRead, type CachePolicy, type Timeouts } from "./read-path";
import { consistentRead } from "../imports/published-view";
import { priceEtagSuffix, priceMaxAgeCap, renderProduct } from "./render";

export type ProductReadInput = {
  env: Env;
  request: Request;
  waitUntil: (p: Promise<unknown>) => void;
  id: string;
  currency: string;
  locale: string;
  /** Upper-case market code the request named (market-limited promotions); part of the cache key. */
  market?: string;
  /** The client's `x-d1-bookmark` as sent; honoured only when this API signed it (bookmark.ts). */
  bookmark?: string;
  now?: number;
  policy?: Partial<CachePolicy>;
  timeouts?: Partial<Timeouts>;
};

/** The render variant is part of the validator: one document yields one ETag per currency × locale. */
export function productEtag(doc: Pick<ProductDocument, "id" | "version" | "stock_seq">, currency: string, locale: string, market?: string): string {
  return `${doc.id}.v${doc.version}.s${doc.stock_seq}.${currency}.${locale}${market ? `.${market}` : ""}`;
}

export async function readProduct(input: ProductReadInput): Promise<Response> {
  const { env, id, currency, locale, market } = input;
  const now = input.now ?? clockNow();
  const given = input.bookmark ? await verifyBookmark(env, input.bookmark, id, Date.now()) : undefined;
  let bookmark: string | null = null;
  const headers: Record<string, string> = { vary: "Accept-Language, x-shopper-country" };
  const response = await tieredRead<ProductDocument>({
    request: input.request,
    cacheKey: productCacheKey(id, currency, locale, market),
    waitUntil: input.waitUntil,
    versionKey: `product:${id}`,
    versionOf: (d) => ({ version: d.version, stock_seq: d.stock_seq }),
    bypassCache: !!given,
    kv: {
      read: () => readProductDoc(env.CATALOG_KV, id),
      write: (doc, ttl) =>
        fillProductDoc(env.CATALOG_KV, doc, { expirationTtl: ttl, latest: () => newerThan(doc, originSession(catalogDb(env, id), { primary: true }).db.$client, id) }),
    },
    // One product, but the read must not straddle an import's switch either: its page would disagree with listings.
    origin: ({ primary }) => consistentRead(env, async () => {
      const db = catalogDb(env, id);
      let session = originSession(db, { bookmark: given?.raw, primary });
      let doc: ProductDocument | null;
      try {
        doc = await loadProductDocument(session.db.$client, id);
      } catch (err) {
        if (!given) throw err;
        // A signed bookmark D1 still refuses (another database's, or from before a restore) is the client's
        // state, not an origin failure: the primary is at least as new as any bookmark.
        session = originSession(db, { primary: true });
        doc = await loadProductDocument(session.db.$client, id);
      }
      bookmark = session.bookmark();
      return doc;
    }),
    notFound: () => ApiError.notFound(`No product with id '${id}'.`),
    render: (doc) => {
      if (doc.status === "archived") throw new ApiError(410, "gone", "Gone", `Product '${id}' has been archived.`);
      if (doc.status !== "active") throw ApiError.notFound(`No product with id '${id}'.`);
      const view = renderProduct(doc, { currency, locale, now, market: marketOf(market) }, env.DEFAULT_LOCALE);
      return {
        body: JSON.stringify(view),
        etag: productEtag(doc, currency, locale, market) + priceEtagSuffix(doc, now),
        tags: productTags(doc),
        version: { version: doc.version, stock_seq: doc.stock_seq },
        contentLanguage: view.locale,
        maxAgeCap: priceMaxAgeCap(doc, now),
      };
    },
    headers,
    now,
    policy: input.policy,
    timeouts: input.timeouts,
  });
  // A read made with a bookmark passes its expiry on, so chained bookmarked reads cannot keep skipping the cache.
  if (bookmark) response.headers.set(BOOKMARK_HEADER, await signBookmark(env, bookmark, id, given?.expires ?? Date.now() + BOOKMARK_TTL_MS));
  return response;
}
