import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../env";
import { getDb } from "../db/client";
import { supportedCurrencies } from "../catalog/locale";
import { loadProductDocument, type ProductDocument } from "../catalog/document";
import { applyPatch, inputFromDocument, ProductIdParam, ProductInput, ProductPatch } from "../catalog/product-input";
import { isOccGuardError, isUniqueError } from "../db/guards";
import { prepareArchive, prepareProductWrite, type PreparedWrite, type WriteMode } from "../catalog/product-writes";
import { sendOutboxRows } from "../events/outbox";
import { requireAdmin } from "../lib/auth";
import { now } from "../lib/clock";
import { ApiError } from "../lib/errors";
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

const preconditionRequired = (currentVersion: number) =>
  ApiError.preconditionRequired(`Product exists at version ${currentVersion}; send If-Match: "${currentVersion}" to replace it.`, currentVersion);

async function currentVersion(env: Env, id: string): Promise<number | undefined> {
  const row = await env.DB.prepare("SELECT version FROM products WHERE id = ?").bind(id).first<{ version: number }>();
  return row?.version;
}

/**
 * Business rules zod cannot see: the category exists, currencies are supported, SKUs are not someone else's.
 * `current` (PATCH) skips the D1 look-ups when the category and SKUs are the ones the product already has.
 */
async function checkReferences(env: Env, id: string, input: ProductInput, current?: ProductDocument): Promise<void> {
  const supported = new Set(supportedCurrencies(env));
  const unsupported = [...new Set(input.variants.flatMap((v) => Object.keys(v.prices)))].filter((c) => !supported.has(c));
  if (unsupported.length) throw ApiError.unprocessable(`Unsupported currencies: ${unsupported.join(", ")}. Supported: ${[...supported].join(", ")}.`);
  if (current && current.category_id === input.category_id && input.variants.every((v) => current.variants.some((cv) => cv.sku === v.sku))) return;
  const [category, owners] = await env.DB.batch([
    env.DB.prepare("SELECT id FROM categories WHERE id = ?").bind(input.category_id),
    env.DB.prepare("SELECT sku, product_id FROM variants WHERE sku IN (SELECT value FROM json_each(?)) AND product_id <> ?").bind(
      JSON.stringify(input.variants.map((v) => v.sku)),
      id,
    ),
  ]);
  if (category.results.length === 0) throw ApiError.unprocessable(`Unknown category_id ${input.category_id}.`);
  const taken = owners.results as { sku: string; product_id: string }[];
  if (taken.length) throw ApiError.conflict(`SKUs already belong to other products: ${taken.map((t) => `${t.sku} (${t.product_id})`).join(", ")}.`, { skus: taken });
}

/** Runs the write batch, maps constraint errors to problems, then sends the outbox row after the commit. */
async function commit(c: Context<AppEnv>, id: string, prepared: PreparedWrite, expected: number | undefined): Promise<ProductDocument> {
  let results: D1Result[];
  try {
    results = await c.env.DB.batch(prepared.statements);
  } catch (err) {
    if (isOccGuardError(err)) {
      throw ApiError.preconditionFailed(`Version ${expected} is no longer current: the product was changed by another write.`, await currentVersion(c.env, id));
    }
    if (isUniqueError(err, "products.id") || isUniqueError(err, "products.slug")) {
      // SQLite may report either index first when a concurrent create of the same id won the race.
      const now = await currentVersion(c.env, id);
      if (expected === undefined && now !== undefined) throw ApiError.preconditionFailed("The product was created by another write meanwhile.", now);
      throw ApiError.conflict("The slug already belongs to another product.");
    }
    throw err;
  }
  const outboxId = (results[prepared.outboxIndex]!.results[0] as { id: number }).id;
  // After the commit, never before: the event describes a write that happened. A failed send stays in the
  // outbox and the cron re-sends it.
  const { event } = prepared;
  const row = { id: outboxId, payload: JSON.stringify(event), type: event.type, entity_id: event.id, version: event.version, occurred_at: event.occurred_at };
  c.executionCtx.waitUntil(sendOutboxRows(c.env, [row]).catch(() => {}));
  const doc = await loadProductDocument(getDb(c.env.DB), id);
  if (!doc) throw new Error(`product ${id} vanished after its write`);
  c.header("ETag", etag(doc.version));
  c.header("cache-control", "no-store");
  return doc;
}

async function write(c: Context<AppEnv>, id: string, input: ProductInput, mode: WriteMode, current?: ProductDocument): Promise<ProductDocument> {
  await checkReferences(c.env, id, input, current);
  return commit(c, id, prepareProductWrite(c.env.DB, id, input, mode, now()), mode.kind === "update" ? mode.expectedVersion : undefined);
}

export const adminProductsApp = createApp();
adminProductsApp.use("/admin/products/*", requireAdmin);

adminProductsApp
  .openapi(putRoute, async (c) => {
    const { id } = c.req.valid("param");
    const input = c.req.valid("json");
    const ifMatch = parseIfMatch(c.req.header("if-match"), "a product version");
    const current = await currentVersion(c.env, id);
    if (current === undefined) {
      if (ifMatch !== undefined) throw ApiError.preconditionFailed(`Product ${id} does not exist, so If-Match cannot match.`);
      const doc = await write(c, id, input, { kind: "create" });
      return c.json(doc, 201);
    }
    if (ifMatch === undefined) throw preconditionRequired(current);
    if (ifMatch !== current) throw ApiError.preconditionFailed(`If-Match ${ifMatch} is stale: the current version is ${current}.`, current);
    const doc = await write(c, id, input, { kind: "update", expectedVersion: ifMatch });
    return c.json(doc, 200);
  })
  .openapi(patchRoute, async (c) => {
    const { id } = c.req.valid("param");
    const patch = c.req.valid("json");
    const ifMatch = parseIfMatch(c.req.header("if-match"), "a product version");
    const currentDoc = await loadProductDocument(getDb(c.env.DB), id);
    if (!currentDoc) throw ApiError.notFound(`No product ${id}.`);
    if (ifMatch === undefined) throw preconditionRequired(currentDoc.version);
    if (ifMatch !== currentDoc.version) throw ApiError.preconditionFailed(`If-Match ${ifMatch} is stale: the current version is ${currentDoc.version}.`, currentDoc.version);
    const merged = ProductInput.safeParse(applyPatch(inputFromDocument(currentDoc), patch));
    if (!merged.success) {
      throw ApiError.unprocessable("The patched product would be invalid.", {
        errors: merged.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message })),
      });
    }
    // The batch re-checks the version atomically: a writer that got in between makes it fail with 412.
    const doc = await write(c, id, merged.data, { kind: "update", expectedVersion: ifMatch }, currentDoc);
    return c.json(doc, 200);
  })
  .openapi(deleteRoute, async (c) => {
    const { id } = c.req.valid("param");
    const ifMatch = parseIfMatch(c.req.header("if-match"), "a product version");
    const current = await currentVersion(c.env, id);
    if (current === undefined) throw ApiError.notFound(`No product ${id}.`);
    if (ifMatch !== undefined && ifMatch !== current) throw ApiError.preconditionFailed(`If-Match ${ifMatch} is stale: the current version is ${current}.`, current);
    const doc = await commit(c, id, prepareArchive(c.env.DB, id, ifMatch ?? current, now()), ifMatch ?? current);
    return c.json(doc, 200);
  });
