import { createRoute, z } from "@hono/zod-openapi";
import { readCategory, readCategoryTree } from "../catalog/category-read";
import { resolveLocale } from "../catalog/locale";
import { createApp } from "../lib/validation";
import { LocaleQuery, problem } from "./common";

const CategoryBase = z.object({
  id: z.string(),
  slug: z.string(),
  name: z.string(),
  parent_id: z.string().nullable(),
  depth: z.number().int(),
  product_count: z.number().int().openapi({ description: "Active products in this category and its subcategories." }),
});
// The OpenAPI generator cannot walk a z.lazy cycle: describe the tree to a fixed depth (the catalog has two levels;
// deeper levels still come back, typed loosely).
const CategoryNode = CategoryBase.extend({
  children: z.array(CategoryBase.extend({ children: z.array(z.record(z.string(), z.unknown())) })),
}).openapi("CategoryNode");

const Crumb = z.object({ id: z.string(), slug: z.string(), name: z.string() });
const CategoryDetail = z
  .object({
    id: z.string().openapi({ example: "cat-headphones" }),
    slug: z.string().openapi({ example: "headphones" }),
    name: z.string(),
    parent_id: z.string().nullable(),
    depth: z.number().int(),
    product_count: z.number().int().openapi({ description: "Active products in this category and its subcategories." }),
    breadcrumbs: z.array(Crumb).openapi({ description: "From the root down to this category." }),
    children: z.array(Crumb.extend({ product_count: z.number().int() })),
  })
  .openapi("Category");

const locale = z.object({ locale: LocaleQuery.locale });

const tree = createRoute({
  method: "get",
  path: "/v1/categories",
  tags: ["Catalog"],
  summary: "The category tree, localised, with product counts",
  request: { query: locale },
  responses: {
    200: { description: "Root categories with nested children.", content: { "application/json": { schema: z.object({ items: z.array(CategoryNode) }) } } },
    304: { description: "Not modified." },
  },
});

const getCategory = createRoute({
  method: "get",
  path: "/v1/categories/{slug}",
  tags: ["Catalog"],
  summary: "One category with breadcrumbs and children",
  request: { params: z.object({ slug: z.string().min(1).max(100).openapi({ example: "headphones" }) }), query: locale },
  responses: {
    200: { description: "The category.", content: { "application/json": { schema: CategoryDetail } } },
    304: { description: "Not modified." },
    404: problem("No such category."),
  },
});

export const categoriesApp = createApp()
  .openapi(tree, (c) =>
    readCategoryTree({ env: c.env, request: c.req.raw, waitUntil: (p) => c.executionCtx.waitUntil(p), locale: resolveLocale(c.req.raw, c.env, c.req.valid("query").locale) }),
  )
  .openapi(getCategory, (c) =>
    readCategory({
      env: c.env,
      request: c.req.raw,
      waitUntil: (p) => c.executionCtx.waitUntil(p),
      locale: resolveLocale(c.req.raw, c.env, c.req.valid("query").locale),
      slug: c.req.valid("param").slug,
    }),
  );
