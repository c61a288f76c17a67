/**
 * Renders catalog data for one shopper context (currency, locale, time). Every price a shopper sees goes
 * through `renderPrice`, so promotions turn regular prices into effective ones in one place,
 * and `renderContext.now` makes the time injectable.
 */
import type { StockStatus } from "../lib/stock-status";
import { effectivePrice, lastBoundary, secondsToNextBoundary, type DocPromotion, type PromotionRef } from "../promotions/effective-price";
import type { ProductDocument } from "./document";
import type { ShopperMarket } from "../lib/markets";

/** `market`: the shopper market the request names, if any (market-limited promotions need one). */
export type RenderContext = { currency: string; locale: string; now: number; market?: ShopperMarket };

export type PriceView = { amount: number; currency: string };

/** Price rules applied to every shopper-visible price (product pages, listings, search). */
export type PriceHook = {
  /** Effective price for one SKU; defaults to the regular price. */
  price?: (input: { sku: string | null; productId: string; regular: number; currency: string; now: number }) => PriceView & Record<string, unknown>;
  /** Seconds until any price of `doc` changes by itself (next promotion boundary); caps every cache tier. */
  maxAgeCap?: (doc: ProductDocument, now: number) => number | undefined;
};

let priceHook: PriceHook = {};

/** Lets the promotions module plug effective prices into every read without touching the routes. */
export function setPriceHook(hook: PriceHook): void {
  priceHook = hook;
}

/** The one place a shopper-visible price is produced. `null` when there is no price in that currency. */
export function renderPrice(
  regular: number | undefined,
  ctx: RenderContext,
  target: {
    sku: string | null;
    productId: string;
    /** The product's promotion schedule (document.promotions): the effective price at ctx.now is shown. */
    promotions?: DocPromotion[];
    /** Listings: `regular` is already the effective min price (products.min_prices); this is its promotion. */
    badge?: { compare_at: number; promotion: PromotionRef };
  },
): (PriceView & Record<string, unknown>) | null {
  if (regular === undefined || regular === null) return null;
  if (priceHook.price) return priceHook.price({ sku: target.sku, productId: target.productId, regular, currency: ctx.currency, now: ctx.now });
  if (target.badge) return { amount: regular, currency: ctx.currency, compare_at: target.badge.compare_at, promotion: target.badge.promotion };
  if (target.sku === null || !target.promotions?.length) return { amount: regular, currency: ctx.currency };
  const eff = effectivePrice(regular, ctx.currency, target.sku, target.promotions, ctx.now, ctx.market);
  if (!eff.promotion) return { amount: regular, currency: ctx.currency };
  return { amount: eff.amount, currency: ctx.currency, compare_at: eff.compare_at, promotion: eff.promotion };
}

export function priceMaxAgeCap(doc: ProductDocument, now: number): number | undefined {
  if (priceHook.maxAgeCap) return priceHook.maxAgeCap(doc, now);
  return secondsToNextBoundary(doc.promotions, now);
}

/**
 * Part of a product response's validator: a promotion boundary changes the rendered price without a new
 * document version, so the ETag must change with the price period too.
 */
export function priceEtagSuffix(doc: ProductDocument, now: number): string {
  const last = lastBoundary(doc.promotions, now);
  return last === null ? "" : `.b${last}`;
}

/** Quantity buckets rather than exact counts: enough for "only a few left", and stable across small changes. */
export function quantityBucket(available: number): "0" | "1-5" | "6-20" | "21+" {
  if (available <= 0) return "0";
  if (available <= 5) return "1-5";
  if (available <= 20) return "6-20";
  return "21+";
}

export type ProductView = {
  id: string;
  slug: string;
  version: number;
  locale: string;
  currency: string;
  title: string;
  description: string;
  brand: string;
  category: { id: string; path: string[] };
  attributes: Record<string, string>;
  images: { url: string; alt?: string }[];
  condition: string;
  markets: string[];
  price_range: { min: number; max: number; currency: string } | null;
  in_stock: boolean;
  variants: (Pick<ProductDocument["variants"][number], "sku" | "title" | "options" | "gtin" | "mpn"> & {
    price: (PriceView & Record<string, unknown>) | null;
    availability: { status: StockStatus; quantity: ReturnType<typeof quantityBucket> };
  })[];
  created_at: string;
  updated_at: string;
};

export function localisedText(doc: Pick<ProductDocument, "title" | "description" | "translations">, locale: string, defaultLocale: string) {
  const t = locale === defaultLocale ? undefined : doc.translations[locale];
  return { title: t?.title ?? doc.title, description: t?.description ?? doc.description, locale: t ? locale : defaultLocale };
}

export function renderProduct(doc: ProductDocument, ctx: RenderContext, defaultLocale: string): ProductView {
  const text = localisedText(doc, ctx.locale, defaultLocale);
  const variants = doc.variants.map((v) => ({
    sku: v.sku,
    title: v.title,
    options: v.options,
    gtin: v.gtin,
    mpn: v.mpn,
    price: renderPrice(v.prices[ctx.currency], ctx, { sku: v.sku, productId: doc.id, promotions: doc.promotions }),
    availability: { status: v.availability.status, quantity: quantityBucket(v.availability.available) },
  }));
  const amounts = variants.map((v) => v.price?.amount).filter((a): a is number => typeof a === "number");
  return {
    id: doc.id,
    slug: doc.slug,
    version: doc.version,
    locale: text.locale,
    currency: ctx.currency,
    title: text.title,
    description: text.description,
    brand: doc.brand,
    category: { id: doc.category_id, path: doc.category_path },
    attributes: doc.attributes,
    images: doc.images,
    condition: doc.condition,
    markets: doc.markets,
    price_range: amounts.length ? { min: Math.min(...amounts), max: Math.max(...amounts), currency: ctx.currency } : null,
    in_stock: variants.some((v) => v.availability.status !== "out_of_stock"),
    variants,
    created_at: new Date(doc.created_at).toISOString(),
    updated_at: new Date(doc.updated_at).toISOString(),
  };
}
