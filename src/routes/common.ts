/**
 * What every route file shares: the problem schema for OpenAPI, the query shapes that mean the same thing on every
 * resource (market, currency, locale), and the If-Match / ETag version handling of the admin writes.
 */
import { z } from "@hono/zod-openapi";
import { ApiError } from "../lib/errors";
import { MARKET_CODE } from "../lib/markets";

/** The body `app.onError` sends for every 4xx/5xx; extensions (errors, current_version, shortfalls…) ride alongside. */
export const ProblemSchema = z
  .looseObject({
    type: z.string(),
    title: z.string(),
    status: z.number(),
    detail: z.string().optional(),
    request_id: z.string(),
  })
  .openapi("Problem");

/** An OpenAPI response entry for a problem answer. */
export const problem = (description: string) => ({ description, content: { "application/problem+json": { schema: ProblemSchema } } });

/** A market a request names (product reads, reservations): the same codes wherever prices depend on it. */
export const MarketCode = z.string().regex(MARKET_CODE, "must be a country (ISO 3166 alpha-2) or region code (EU, NA, APAC)");

/** `currency` and `locale` as every catalog read accepts them. */
export const LocaleQuery = {
  currency: z
    .string()
    .regex(/^[A-Za-z]{3}$/, "must be an ISO 4217 code")
    .optional()
    .openapi({ description: "Price currency; else from x-shopper-country / Accept-Language / country; else the default.", example: "EUR" }),
  locale: z.string().max(35).optional().openapi({ description: "Text locale (en, de, fr); falls back to Accept-Language, then the default.", example: "de" }),
};

/** A version as this API sends it in ETag and expects it back in If-Match. */
export const etag = (version: number) => `"${version}"`;

/**
 * `"3"`, `W/"3"` or a bare `3` → 3; no header → undefined. Anything else cannot match a version, so it is a 412
 * rather than a 400: the client sent a precondition, and it does not hold.
 */
export function parseIfMatch(header: string | undefined, what = "a version", currentVersion?: number): number | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(header);
  if (!match) throw ApiError.preconditionFailed(`If-Match ${JSON.stringify(header)} is not ${what} such as "3".`, currentVersion);
  return Number(match[1]);
}
