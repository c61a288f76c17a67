/**
 * Markets: where a product may be sold (`products.markets`) and where a promotion applies
 * (`promotions.markets`). Both list ISO country codes or regions (EU, NA, APAC); an empty list means
 * everywhere. A shopper's market is a country, a region, or both. The region EU is Europe as a sales region
 * (it includes GB, CH, NO and IS, see `regionOfCountry`).
 */

const EU = new Set(["AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"]);
export const REGIONS = ["EU", "NA", "APAC"] as const;
/** A market a request may name: an ISO 3166 alpha-2 country or a region (any case). */
export const MARKET_CODE = /^(?:[A-Za-z]{2}|[Ee][Uu]|[Nn][Aa]|[Aa][Pp][Aa][Cc])$/;

export type ShopperMarket = { country?: string; region?: string };

/** True when `markets` (empty = everywhere) includes the shopper's country, its region or, for EU members, EU. */
export function sellableIn(markets: readonly string[], shopper: ShopperMarket): boolean {
  if (!markets.length) return true;
  const codes = new Set<string>();
  if (shopper.country) {
    codes.add(shopper.country);
    if (EU.has(shopper.country)) codes.add("EU");
  }
  if (shopper.region) codes.add(shopper.region);
  // A shopper whose market is unknown only gets what applies everywhere.
  return markets.some((m) => codes.has(m.toUpperCase()));
}

export function regionOfCountry(country: string | undefined): string | undefined {
  if (!country) return undefined;
  if (EU.has(country) || ["GB", "CH", "NO", "IS"].includes(country)) return "EU";
  if (["US", "CA", "MX"].includes(country)) return "NA";
  if (["SG", "JP", "KR", "AU", "NZ", "IN", "CN", "HK", "TW", "MY", "TH", "ID", "PH", "VN"].includes(country)) return "APAC";
  return undefined;
}

/** A market code as a request names it (`DE`, `eu`): a region, or a country with its region. */
export function marketOf(code: string | undefined): ShopperMarket | undefined {
  const c = code?.trim().toUpperCase();
  if (!c) return undefined;
  if ((REGIONS as readonly string[]).includes(c)) return { region: c };
  return { country: c, region: regionOfCountry(c) };
}
