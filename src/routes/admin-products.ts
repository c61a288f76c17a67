import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../env";
import type { ProductDocument } from "../catalog/document";
import { archiveProduct, patchProduct, putProduct } from "../catalog/manage-products";
import { ProductIdParam, ProductInput, ProductPatch } from "../catalog/product-input";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";
import { etag, parseIfMatch, problem } from "./common";

const ProductDocumentSchema = z.record(z.string(), z.unknown()).openapi("ProductDocument", {
  description: "The canonical product document (all currencies and locales), as projected to KV.",
});

const Params = z.object({ id: ProductIdParam.openapi({ param: { name: "id", in: "path" }, example: "p-000001" }) });
const IfMatchHeaders = z.object({
  "if-match": z.string().optional().openapi({ description: 'The version being replaced, as returned in ETag: `"3"`. Required to update.' }),
});

const writeResponses = {
  401: problem("Missing or wrong admin token."),
  409: problem("The slug or a SKU already belongs to another product."),
  412: problem("If-Match does not match the current version (someone else wrote first)."),
  422: problem("Unknown category or unsupported currency."),
  428: problem("The product exists and the request has no If-Match."),
};

const putRoute = createRoute({
  method: "put",
  path: "/admin/products/{id}",
  tags: ["Admin: catalog"],
  summary: "Create or replace a product with its variants, prices and translations",
  description: "Creates the product when it does not exist. Replacing needs `If-Match` with the current version (optimistic concurrency).",
  security: [{ adminToken: [] }],
  request: { params: Params, headers: IfMatchHeaders, body: { required: true, content: { "application/json": { schema: ProductInput } } } },
  responses: {
    200: { description: "Replaced; ETag holds the new version.", content: { "application/json": { schema: ProductDocumentSchema } } },
    201: { description: "Created; ETag holds the new version.", content: { "application/json": { schema: ProductDocumentSchema } } },
    ...writeResponses,
  },
});

const patchRoute = createRoute({
  method: "patch",
  path: "/admin/products/{id}",
  tags: ["Admin: catalog"],
  summary: "Partially update a product (prices, status, text…)",
  description: "Fields given replace the current ones; `translations` merge per locale, `variants` merge per SKU (prices per currency). Needs `If-Match`.",
  security: [{ adminToken: [] }],
  request: { params: Params, headers: IfMatchHeaders, body: { required: true, content: { "application/json": { schema: ProductPatch } } } },
  responses: {
    200: { description: "Updated; ETag holds the new version.", content: { "application/json": { schema: ProductDocumentSchema } } },
    404: problem("No such product."),
    ...writeResponses,
  },
});

const deleteRoute = createRoute({
  method: "delete",
  path: "/admin/products/{id}",
  tags: ["Admin: catalog"],
  summary: "Archive a product",
  description: "Sets the status to `archived` (readers get 410). `If-Match` is optional; when given it must match.",
  security: [{ adminToken: [] }],
  request: { params: Params, headers: IfMatchHeaders },
  responses: {
    200: { description: "Archived; ETag holds the new version.", content: { "application/json": { schema: ProductDocumentSchema } } },
    404: problem("No such product."),
    401: writeResponses[401],
    412: writeResponses[412],
  },
});

export const adminProductsApp = createApp();
adminProductsApp.use("/admin/products/*", requireAdmin);

const writeContext = (c: Context<AppEnv>) => ({ env: c.env, waitUntil: (p: Promise<unknown>) => c.executionCtx.waitUntil(p) });

function written(c: Context<AppEnv>, doc: ProductDocument) {
  c.header("ETag", etag(doc.version));
  c.header("cache-control", "no-store");
  return doc;
}

adminProductsApp
  .openapi(putRoute, async (c) => {
    const { doc, created } = await putProduct(writeContext(c), c.req.valid("param").id, c.req.valid("json"), parseIfMatch(c.req.header("if-match"), "a product version"));
    return c.json(written(c, doc), created ? 201 : 200);
  })
  .openapi(patchRoute, async (c) => {
    const doc = await patchProduct(writeContext(c), c.req.valid("param").id, c.req.valid("json"), parseIfMatch(c.req.header("if-match"), "a product version"));
    return c.json(written(c, doc), 200);
  })
  .openapi(deleteRoute, async (c) => {
    const doc = await archiveProduct(writeContext(c), c.req.valid("param").id, parseIfMatch(c.req.header("if-match"), "a product version"));
    return c.json(written(c, doc), 200);
  });
