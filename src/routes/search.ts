import { createRoute, z } from "@hono/zod-openapi";
import { listingParams, readListing } from "../catalog/listing-read";
import { resolveCurrency, resolveLocale } from "../catalog/locale";
import { createApp } from "../lib/validation";
import { ListingItemSchema, ListingQuery } from "./products";
import { problem } from "./common";

const FacetValue = z.object({ value: z.string(), count: z.number().int() });

const FacetsSchema = z
  .object({
    brand: z.array(FacetValue),
    category: z.array(z.object({ id: z.string(), slug: z.string(), name: z.string(), parent_id: z.string().nullable(), count: z.number().int() })),
    attributes: z.record(z.string(), z.array(FacetValue)),
    price: z.array(z.object({ min: z.number().int(), max: z.number().int().nullable(), count: z.number().int(), currency: z.string() })),
  })
  .openapi("Facets");

const SearchSchema = z
  .object({
    items: z.array(ListingItemSchema),
    total: z.number().int().openapi({ description: "Matching products; with a query or filters, counted up to 10,000 (then `total_exact` is false: show \"10,000+\")." }),
    total_exact: z.boolean().openapi({ description: "False when more than 10,000 products matched: `total` is then 10,000." }),
    facets: FacetsSchema,
    facets_exact: z.boolean().openapi({ description: "False when the query matched more than 5,000 products: facets then count the first 5,000 matches." }),
    next_cursor: z.string().nullable(),
  })
  .openapi("SearchResult");

const search = createRoute({
  method: "get",
  path: "/v1/search",
  tags: ["Catalog"],
  summary: "Full-text search with facets",
  description:
    "FTS5 over title, brand, description and attributes, every term prefix-matched. Accepts the filters of `GET /v1/products`. " +
    "Without `q` and filters, facets are read from counts maintained on write (`facet_counts`); otherwise they are counted over the matching products only (over the first 5,000 when more match: `facets_exact: false`). " +
    "Category counts include subcategories; price ranges are in minor units of the requested currency.",
  request: { query: ListingQuery },
  responses: {
    200: { description: "Matching products, total and facets.", content: { "application/json": { schema: SearchSchema } } },
    304: { description: "Not modified." },
    400: problem("Bad parameter."),
    503: problem("Origin down and nothing cached."),
  },
});

export const searchApp = createApp().openapi(search, async (c) => {
  const query = c.req.valid("query");
  const req = c.req.raw;
  const params = listingParams(query, resolveCurrency(req, c.env, query.currency), resolveLocale(req, c.env, query.locale));
  return readListing({ env: c.env, request: req, waitUntil: (p) => c.executionCtx.waitUntil(p), path: "/v1/search", params, facets: true, total: true });
});
