/**
 * Currency and locale resolution for every public read, in one place: the resolved values are part of the
 * cache key, so two requests that resolve alike share one cached response whatever headers they carried.
 */
import { ApiError } from "../lib/errors";

/** Locales the catalog carries translations for; anything else falls back to DEFAULT_LOCALE. */
export const SUPPORTED_LOCALES = ["en", "de", "fr"] as const;

const EURO_COUNTRIES = new Set([
  "AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PT", "SI", "SK",
]);
const COUNTRY_CURRENCY: Record<string, string> = { US: "USD", GB: "GBP", UK: "GBP", IM: "GBP", JE: "GBP", GG: "GBP" };
/** A bare language says little about money; only languages spoken almost only in the euro area map to EUR. */
const LANGUAGE_CURRENCY: Record<string, string> = { de: "EUR", fr: "EUR", it: "EUR", es: "EUR", nl: "EUR", fi: "EUR", pt: "EUR", el: "EUR" };

export type LocaleEnv = Pick<Env, "SUPPORTED_CURRENCIES" | "DEFAULT_CURRENCY" | "DEFAULT_LOCALE">;

export function supportedCurrencies(env: Pick<Env, "SUPPORTED_CURRENCIES">): string[] {
  return env.SUPPORTED_CURRENCIES.split(",").map((c) => c.trim().toUpperCase()).filter(Boolean);
}

export function currencyForCountry(country: string | null | undefined): string | undefined {
  if (!country) return undefined;
  const cc = country.trim().toUpperCase();
  return COUNTRY_CURRENCY[cc] ?? (EURO_COUNTRIES.has(cc) ? "EUR" : undefined);
}

/** Accept-Language entries ordered by q-value (stable for ties), lower-cased. */
export function acceptedLanguages(header: string | null | undefined): string[] {
  if (!header) return [];
  return header
    .split(",")
    .map((part, index) => {
      const [tag, ...params] = part.trim().split(";");
      const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
      return { tag: (tag ?? "").trim().toLowerCase(), q: q ? Number(q.slice(2)) : 1, index };
    })
    .filter((e) => e.tag && e.tag !== "*" && Number.isFinite(e.q) && e.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index)
    .map((e) => e.tag);
}

function currencyFromLanguages(languages: string[]): string | undefined {
  for (const tag of languages) {
    const [lang, region] = tag.split("-");
    const byRegion = region && region.length === 2 ? currencyForCountry(region) : undefined;
    if (byRegion) return byRegion;
    const byLang = lang ? LANGUAGE_CURRENCY[lang] : undefined;
    if (byLang) return byLang;
  }
  return undefined;
}

/**
 * `?currency=` (400 when unsupported), else `x-shopper-country`, else the Accept-Language region/language,
 * else the Cloudflare country, else DEFAULT_CURRENCY. A mapped currency the shop does not sell is skipped.
 */
export function resolveCurrency(req: Request, env: LocaleEnv, explicit?: string | null): string {
  const supported = supportedCurrencies(env);
  if (explicit) {
    const cur = explicit.trim().toUpperCase();
    if (!supported.includes(cur)) {
      throw ApiError.badRequest(`Unsupported currency '${explicit}'; use one of ${supported.join(", ")}.`, {
        errors: [{ location: "query", path: "currency", message: `must be one of ${supported.join(", ")}` }],
      });
    }
    return cur;
  }
  const cf = (req as Request & { cf?: { country?: string } }).cf;
  const candidates = [
    currencyForCountry(req.headers.get("x-shopper-country")),
    currencyFromLanguages(acceptedLanguages(req.headers.get("accept-language"))),
    currencyForCountry(cf?.country),
  ];
  for (const c of candidates) if (c && supported.includes(c)) return c;
  return env.DEFAULT_CURRENCY.toUpperCase();
}

function supportedLocale(tag: string | null | undefined): string | undefined {
  if (!tag) return undefined;
  const lang = tag.trim().toLowerCase().split(/[-_]/)[0];
  return (SUPPORTED_LOCALES as readonly string[]).includes(lang ?? "") ? lang : undefined;
}

/** `?locale=` when supported, else the first supported Accept-Language entry, else DEFAULT_LOCALE (never an error). */
export function resolveLocale(req: Request, env: LocaleEnv, explicit?: string | null): string {
  return (
    supportedLocale(explicit) ??
    acceptedLanguages(req.headers.get("accept-language")).map(supportedLocale).find(Boolean) ??
    env.DEFAULT_LOCALE
  );
}
