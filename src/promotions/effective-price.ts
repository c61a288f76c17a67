/**
 * THE effective-price function. Every shopper-visible price (product pages, listings, search, feeds, the
 * widget) and every reserved unit price comes from `effectivePrice`, so a page, a feed and checkout can
 * never disagree about what a SKU costs at a given instant.
 *
 * A product's promotions travel with its document (`ProductDocument.promotions`): the whole schedule, not
 * just today's price, so every tier (edge, KV, D1) renders the price in force at the moment of the read and
 * a boundary needs no write to take effect. Caches only have to avoid keeping a rendered price past the
 * next boundary, which `nextBoundary` gives them.
 *
 * Reads that name no market (listings' min_prices, feeds, recommendation cards) get the price without
 * market-limited promotions: a discount is never shown to a shopper it may not apply to.
 */
import { sellableIn, type ShopperMarket } from "../lib/markets";

export type ValueType = "percent_off" | "amount_off" | "fixed_price";
export type PromotionValue = { bps?: number; amounts?: Record<string, number> };

/** One promotion as embedded in a product document (only the SKUs of that product it covers). */
export type DocPromotion = {
  id: string;
  name: string;
  /** Epoch ms, inclusive. */
  starts_at: number;
  /** Epoch ms, exclusive; null = open-ended. */
  ends_at: number | null;
  priority: number;
  value_type: ValueType;
  value: PromotionValue;
  /** Currencies it applies in; empty = all. */
  currencies: string[];
  /**
   * Markets (countries or regions) it applies in; empty or absent (documents written before markets were
   * applied) = all. A market-limited promotion needs a shopper market that the read names.
   */
  markets?: string[];
  skus: string[];
};

export type PromotionRef = { id: string; name: string; ends_at: string | null };

export type EffectivePrice = {
  amount: number;
  /** The regular price when a promotion lowers it; null otherwise. */
  compare_at: number | null;
  promotion: PromotionRef | null;
};

export function isActive(p: Pick<DocPromotion, "starts_at" | "ends_at">, now: number): boolean {
  return p.starts_at <= now && (p.ends_at === null || now < p.ends_at);
}

/** The promoted price of `regular`, or null when the promotion has no value in this currency. */
export function discountedAmount(regular: number, valueType: ValueType, value: PromotionValue, currency: string): number | null {
  switch (valueType) {
    case "percent_off":
      return value.bps === undefined ? null : regular - Math.round((regular * value.bps) / 10_000);
    case "amount_off": {
      const off = value.amounts?.[currency];
      return off === undefined ? null : regular - off;
    }
    case "fixed_price": {
      const price = value.amounts?.[currency];
      return price === undefined ? null : price;
    }
  }
}

/** Higher priority first; then the later start (the more recent decision); then id, so the order is total. */
export function outranks(a: DocPromotion, b: DocPromotion): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority;
  if (a.starts_at !== b.starts_at) return a.starts_at > b.starts_at;
  return a.id < b.id;
}

/**
 * A promotion applies to a (sku, currency) when it is active, allowed in the currency and the shopper's
 * market, and priced in the currency.
 */
function matches(p: DocPromotion, sku: string, currency: string, now: number, market: ShopperMarket | undefined): boolean {
  if (!isActive(p, now)) return false;
  if (p.currencies.length > 0 && !p.currencies.includes(currency)) return false;
  if (p.markets?.length && !(market && sellableIn(p.markets, market))) return false;
  if (p.value_type !== "percent_off" && p.value.amounts?.[currency] === undefined) return false;
  return p.skus.includes(sku);
}

/**
 * The price of one SKU in one currency at `now`: the single highest-ranked matching promotion applies (no
 * stacking). A promotion that would not lower the price, or would take it to zero or below (possible when
 * the regular price was cut after the promotion was validated), leaves the regular price in force.
 */
export function effectivePrice(
  regular: number,
  currency: string,
  sku: string,
  promotions: readonly DocPromotion[] | undefined,
  now: number,
  market?: ShopperMarket,
): EffectivePrice {
  let best: DocPromotion | null = null;
  for (const p of promotions ?? []) if (matches(p, sku, currency, now, market) && (!best || outranks(p, best))) best = p;
  if (!best) return { amount: regular, compare_at: null, promotion: null };
  const amount = discountedAmount(regular, best.value_type, best.value, currency);
  if (amount === null || amount <= 0 || amount >= regular) return { amount: regular, compare_at: null, promotion: null };
  return { amount, compare_at: regular, promotion: promotionRef(best) };
}

export function promotionRef(p: Pick<DocPromotion, "id" | "name" | "ends_at">): PromotionRef {
  return { id: p.id, name: p.name, ends_at: p.ends_at === null ? null : new Date(p.ends_at).toISOString() };
}

/** The first start or end strictly after `now` among `promotions`, or null when nothing is scheduled. */
export function nextBoundary(promotions: readonly Pick<DocPromotion, "starts_at" | "ends_at">[] | undefined, now: number): number | null {
  let next: number | null = null;
  for (const p of promotions ?? []) {
    if (p.starts_at > now && (next === null || p.starts_at < next)) next = p.starts_at;
    if (p.ends_at !== null && p.ends_at > now && (next === null || p.ends_at < next)) next = p.ends_at;
  }
  return next;
}

/** The last start or end at or before `now`: identifies which price period a rendering belongs to. */
export function lastBoundary(promotions: readonly Pick<DocPromotion, "starts_at" | "ends_at">[] | undefined, now: number): number | null {
  let last: number | null = null;
  for (const p of promotions ?? []) {
    if (p.starts_at <= now && (last === null || p.starts_at > last)) last = p.starts_at;
    if (p.ends_at !== null && p.ends_at <= now && (last === null || p.ends_at > last)) last = p.ends_at;
  }
  return last;
}

/** Seconds a rendering made at `now` may be cached: until the next boundary (undefined = no cap). */
export function secondsToNextBoundary(promotions: readonly Pick<DocPromotion, "starts_at" | "ends_at">[] | undefined, now: number): number | undefined {
  const next = nextBoundary(promotions, now);
  return next === null ? undefined : Math.max(0, (next - now) / 1000);
}

/** Lowest effective price per currency over a product's variants, with the promotion of the cheapest one. */
export function minEffectivePrices(
  variants: readonly { sku: string; prices: Record<string, number> }[],
  promotions: readonly DocPromotion[] | undefined,
  now: number,
): { min: Record<string, number>; badges: Record<string, { compare_at: number; promotion: PromotionRef }> } {
  const min: Record<string, number> = {};
  const badges: Record<string, { compare_at: number; promotion: PromotionRef }> = {};
  for (const v of variants) {
    for (const [currency, regular] of Object.entries(v.prices)) {
      const eff = effectivePrice(regular, currency, v.sku, promotions, now);
      if (min[currency] === undefined || eff.amount < min[currency]!) {
        min[currency] = eff.amount;
        if (eff.promotion && eff.compare_at !== null) badges[currency] = { compare_at: eff.compare_at, promotion: eff.promotion };
        else delete badges[currency];
      }
    }
  }
  return { min, badges };
}
