import { allCatalogDbs } from "../db/partitions";
import { createRoute, z } from "@hono/zod-openapi";
import { listAdminProducts, listImports } from "../catalog/admin-list";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";
import { problem } from "./common";

const security = [{ adminToken: [] }];

const AdminProduct = z
  .object({
    id: z.string(),
    slug: z.string(),
    title: z.string(),
    brand: z.string(),
    category_id: z.string(),
    status: z.enum(["active", "draft", "archived"]),
    in_stock: z.number(),
    version: z.number(),
    updated_at: z.number(),
    min_prices: z.record(z.string(), z.number()).openapi({ description: "Lowest effective variant price per currency, minor units." }),
    variants: z.number(),
  })
  .openapi("AdminProduct");

const listRoute = createRoute({
  method: "get",
  path: "/admin/products",
  tags: ["Admin: catalog"],
  summary: "Every product, drafts and archived included; by id with a cursor, or searched",
  description:
    "`q` is an exact product id or SKU, else a full-text search (every term prefix-matched) answering the best 100 matches without a cursor. Shoppers' reads never show drafts; this list does.",
  security,
  request: {
    query: z.object({
      q: z.string().max(200).optional(),
      status: z.enum(["active", "draft", "archived"]).optional(),
      cursor: z.string().max(100).optional().openapi({ description: "`next_cursor` of the previous page." }),
      limit: z.coerce.number().int().min(1).max(100).default(50),
    }),
  },
  responses: {
    200: { description: "A page of products.", content: { "application/json": { schema: z.object({ items: z.array(AdminProduct), next_cursor: z.string().nullable() }) } } },
    401: problem("Missing or wrong admin token."),
  },
});

const importsRoute = createRoute({
  method: "get",
  path: "/admin/imports",
  tags: ["Admin: catalog"],
  summary: "The latest imports, newest first (each one's rejected lines: GET /admin/imports/{id})",
  security,
  request: { query: z.object({ limit: z.coerce.number().int().min(1).max(100).default(20) }) },
  responses: {
    200: {
      description: "Imports.",
      content: {
        "application/json": {
          schema: z.object({
            items: z.array(
              z.object({
                import_id: z.string(),
                status: z.string(),
                format: z.string(),
                total_lines: z.number(),
                accepted: z.number(),
                rejected_count: z.number(),
                created_at: z.number(),
                finished_at: z.number().nullable(),
              }),
            ),
          }),
        },
      },
    },
    401: problem("Missing or wrong admin token."),
  },
});

export const adminProductListApp = createApp();
adminProductListApp.use("/admin/products", requireAdmin);
adminProductListApp.use("/admin/imports", requireAdmin);

adminProductListApp
  .openapi(listRoute, async (c) => {
    const { q, status, cursor, limit } = c.req.valid("query");
    const page = await listAdminProducts(allCatalogDbs(c.env), { q, status, after: cursor, limit: q ? Math.min(100, limit) : limit });
    c.header("cache-control", "no-store");
    return c.json(page as { items: z.infer<typeof AdminProduct>[]; next_cursor: string | null }, 200);
  })
  .openapi(importsRoute, async (c) => {
    const { limit } = c.req.valid("query");
    c.header("cache-control", "no-store");
    return c.json({ items: await listImports(c.env.DB, limit) }, 200);
  });
