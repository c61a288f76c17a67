/**
 * The one place feed items and the widget get a price from: the effective price (promotions applied), with
 * `compare_at` and `promotion` set when a promotion lowers it, so every format (json, google `sale_price`,
 * jsonfeed, widget) shows the same price as the catalog.
 */
import { BoundedMap } from "../lib/isolate-memory";
import { effectivePrice, type DocPromotion } from "../promotions/effective-price";

export type PriceView = {
  /** Minor units in `currency`: what the shopper pays. */
  amount: number;
  currency: string;
  /** The regular price when a promotion lowers `amount`; null otherwise. */
  compare_at: number | null;
  promotion: { id: string; name: string; ends_at: string | null } | null;
};

/** The effective price (src/promotions/effective-price.ts) of one variant at `at.now`. */
export function variantPrice(
  prices: Record<string, number>,
  currency: string,
  at?: { sku: string; promotions: DocPromotion[] | undefined; now: number },
): PriceView | null {
  const amount = prices[currency];
  if (amount === undefined) return null;
  if (!at) return { amount, currency, compare_at: null, promotion: null };
  const eff = effectivePrice(amount, currency, at.sku, at.promotions, at.now);
  return { amount: eff.amount, currency, compare_at: eff.compare_at, promotion: eff.promotion };
}

/** The lowest of several prices (a product's "from" price). */
export function lowestPrice(views: (PriceView | null)[]): PriceView | null {
  let best: PriceView | null = null;
  for (const v of views) if (v && (!best || v.amount < best.amount)) best = v;
  return best;
}

const exponents = new BoundedMap<number>("feeds.currency-exponents", { maxBytes: 16 * 1024, maxKeyLength: 8, sizeOf: () => 8 });

/** ISO 4217 minor-unit exponent (2 for EUR, 0 for JPY), as the runtime's Intl data knows it. */
export function currencyExponent(currency: string): number {
  let exp = exponents.get(currency);
  if (exp === undefined) {
    try {
      exp = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
    } catch {
      exp = 2;
    }
    exponents.set(currency, exp);
  }
  return exp;
}

/** Minor units as a plain decimal string: 1299 EUR → "12.99". */
export function decimalAmount(amount: number, currency: string): string {
  const exp = currencyExponent(currency);
  if (exp === 0) return String(amount);
  const sign = amount < 0 ? "-" : "";
  const abs = Math.abs(amount);
  const unit = 10 ** exp;
  return `${sign}${Math.floor(abs / unit)}.${String(abs % unit).padStart(exp, "0")}`;
}

/** Google Merchant Center price text: "12.99 EUR". */
export function googlePrice(amount: number, currency: string): string {
  return `${decimalAmount(amount, currency)} ${currency}`;
}

/** Shopper-facing text in the visitor's locale, e.g. "12,99 €" for de. */
export function formatMoney(amount: number, currency: string, locale: string): string {
  const value = amount / 10 ** currencyExponent(currency);
  const key = `${locale}|${currency}`;
  let format = formatters.get(key);
  if (format === undefined) {
    try {
      format = new Intl.NumberFormat(locale, { style: "currency", currency });
    } catch {
      format = null;
    }
    formatters.set(key, format);
  }
  return format ? format.format(value) : googlePrice(amount, currency);
}

/** Building an Intl formatter costs far more than using one; a 1,000-item page would build thousands. */
const formatters = new BoundedMap<Intl.NumberFormat | null>("feeds.money-formatters", { maxBytes: 256 * 1024, maxKeyLength: 48, sizeOf: () => 2048 });

/** The JSON shape of a price in feed items. */
export function renderPrice(view: PriceView | null, locale: string) {
  if (!view) return null;
  return {
    amount: view.amount,
    currency: view.currency,
    decimal: decimalAmount(view.amount, view.currency),
    formatted: formatMoney(view.amount, view.currency, locale),
    compare_at: view.compare_at,
    compare_at_formatted: view.compare_at === null ? null : formatMoney(view.compare_at, view.currency, locale),
    promotion: view.promotion,
  };
}
