/**
 * Admin writes of one product, from a validated request to a committed batch: the business rules zod cannot
 * see, the version checks behind If-Match, the batch itself (product-writes.ts), and the change event, sent
 * after the commit. Each function is one admin request; the route only validates and shapes the answer.
 */
import type { WriteContext } from "../env";
import { isOccGuardError, isUniqueError } from "../db/guards";
import { allCatalogDbs, catalogDb } from "../db/partitions";
import { sendOutboxRows } from "../events/outbox";
import { now } from "../lib/clock";
import { visibleProductSql } from "../imports/visibility";
import { claimSkus, releaseSkus } from "./sku-claims";
import { ApiError } from "../lib/errors";
import { loadProductDocument, type ProductDocument } from "./document";
import { supportedCurrencies } from "./locale";
import { applyPatch, inputFromDocument, ProductInput, type ProductPatch } from "./product-input";
import { prepareArchive, prepareProductWrite, type PreparedWrite, type WriteMode } from "./product-writes";

async function currentVersion(env: Env, id: string): Promise<number | undefined> {
  const row = await catalogDb(env, id)
    .prepare(`SELECT version, pending_import, NOT ${visibleProductSql("products")} AS hidden FROM products WHERE id = ?`)
    .bind(id)
    .first<{ version: number; pending_import: string | null; hidden: number }>();
  // A product an unpublished import is creating: writing it now would either show it early or be lost if the import fails.
  if (row?.hidden) throw ApiError.conflict(`Product ${id} is being created by import ${row.pending_import}; write it once that import is published or discarded.`, { import_id: row.pending_import });
  return row?.version;
}

const preconditionRequired = (currentVersion: number) =>
  ApiError.preconditionRequired(`Product exists at version ${currentVersion}; send If-Match: "${currentVersion}" to replace it.`, currentVersion);

const stale = (ifMatch: number, current: number) => ApiError.preconditionFailed(`If-Match ${ifMatch} is stale: the current version is ${current}.`, current);

/**
 * Business rules zod cannot see: the category exists, currencies are supported, SKUs are not someone else's.
 * `current` (PATCH) skips the D1 look-ups when the category and SKUs are the ones the product already has.
 */
async function checkReferences(env: Env, id: string, input: ProductInput, current?: ProductDocument): Promise<void> {
  const supported = new Set(supportedCurrencies(env));
  const unsupported = [...new Set(input.variants.flatMap((v) => Object.keys(v.prices)))].filter((c) => !supported.has(c));
  if (unsupported.length) throw ApiError.unprocessable(`Unsupported currencies: ${unsupported.join(", ")}. Supported: ${[...supported].join(", ")}.`);
  if (current && current.category_id === input.category_id && input.variants.every((v) => current.variants.some((cv) => cv.sku === v.sku))) return;
  // The category is in every partition; a SKU may be owned by a product of any partition (one query each).
  const skus = JSON.stringify(input.variants.map((v) => v.sku));
  const home = catalogDb(env, id);
  const dbs = allCatalogDbs(env);
  const answers = await Promise.all(
    dbs.map((db) =>
      db === home
        ? db.batch([
            db.prepare("SELECT id FROM categories WHERE id = ?").bind(input.category_id),
            db.prepare("SELECT sku, product_id FROM variants WHERE sku IN (SELECT value FROM json_each(?)) AND product_id <> ?").bind(skus, id),
          ])
        : db.batch([db.prepare("SELECT sku, product_id FROM variants WHERE sku IN (SELECT value FROM json_each(?))").bind(skus)]),
    ),
  );
  const [category] = answers[dbs.indexOf(home)]!;
  const owners = { results: answers.flatMap((a) => a[a.length - 1]!.results) };
  if (category.results.length === 0) throw ApiError.unprocessable(`Unknown category_id ${input.category_id}.`);
  const taken = owners.results as { sku: string; product_id: string }[];
  if (taken.length) throw ApiError.conflict(`SKUs already belong to other products: ${taken.map((t) => `${t.sku} (${t.product_id})`).join(", ")}.`, { skus: taken });
}

/** Runs the write batch, maps constraint errors to problems, then sends the outbox row after the commit. */
async function commit({ env, waitUntil }: WriteContext, id: string, prepared: PreparedWrite, expected: number | undefined): Promise<ProductDocument> {
  let results: D1Result[];
  try {
    results = await catalogDb(env, id).batch(prepared.statements);
  } catch (err) {
    if (isOccGuardError(err)) {
      throw ApiError.preconditionFailed(`Version ${expected} is no longer current: the product was changed by another write.`, await currentVersion(env, id));
    }
    if (isUniqueError(err, "products.id") || isUniqueError(err, "products.slug")) {
      // SQLite may report either index first when a concurrent create of the same id won the race.
      const now = await currentVersion(env, id);
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
  waitUntil(sendOutboxRows(env, [row], catalogDb(env, id)).catch(() => {}));
  const doc = await loadProductDocument(catalogDb(env, id), id);
  if (!doc) throw new Error(`product ${id} vanished after its write`);
  return doc;
}

async function write(ctx: WriteContext, id: string, input: ProductInput, mode: WriteMode, current?: ProductDocument): Promise<ProductDocument> {
  await checkReferences(ctx.env, id, input, current);
  // Over several partitions the checks above race with a writer in another partition: the directory claim decides.
  const skus = input.variants.map((v) => v.sku).filter((sku) => !current?.variants.some((cv) => cv.sku === sku));
  const { claimed, taken } = await claimSkus(ctx.env, id, skus);
  if (taken.length) throw ApiError.conflict(`SKUs already belong to other products: ${taken.map((t) => `${t.sku} (${t.product_id})`).join(", ")}.`, { skus: taken });
  try {
    return await commit(ctx, id, prepareProductWrite(catalogDb(ctx.env, id), id, input, mode, now()), mode.kind === "update" ? mode.expectedVersion : undefined);
  } catch (err) {
    await releaseSkus(ctx.env, id, claimed).catch(() => {});
    throw err;
  }
}

/** PUT: creates the product when it does not exist (no If-Match allowed); replacing needs the current version. */
export async function putProduct(ctx: WriteContext, id: string, input: ProductInput, ifMatch: number | undefined): Promise<{ doc: ProductDocument; created: boolean }> {
  const current = await currentVersion(ctx.env, id);
  if (current === undefined) {
    if (ifMatch !== undefined) throw ApiError.preconditionFailed(`Product ${id} does not exist, so If-Match cannot match.`);
    return { doc: await write(ctx, id, input, { kind: "create" }), created: true };
  }
  if (ifMatch === undefined) throw preconditionRequired(current);
  if (ifMatch !== current) throw stale(ifMatch, current);
  return { doc: await write(ctx, id, input, { kind: "update", expectedVersion: ifMatch }), created: false };
}

/** PATCH: merges the patch into the current product, checks the result as a whole, and writes it. */
export async function patchProduct(ctx: WriteContext, id: string, patch: ProductPatch, ifMatch: number | undefined): Promise<ProductDocument> {
  const currentDoc = await loadProductDocument(catalogDb(ctx.env, id), id);
  if (!currentDoc) throw ApiError.notFound(`No product ${id}.`);
  if (ifMatch === undefined) throw preconditionRequired(currentDoc.version);
  if (ifMatch !== currentDoc.version) throw stale(ifMatch, currentDoc.version);
  const merged = ProductInput.safeParse(applyPatch(inputFromDocument(currentDoc), patch));
  if (!merged.success) {
    throw ApiError.unprocessable("The patched product would be invalid.", {
      errors: merged.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message })),
    });
  }
  // The batch re-checks the version atomically: a writer that got in between makes it fail with 412.
  return write(ctx, id, merged.data, { kind: "update", expectedVersion: ifMatch }, currentDoc);
}

/** DELETE: archives the product; If-Match is optional, and must match when given. */
export async function archiveProduct(ctx: WriteContext, id: string, ifMatch: number | undefined): Promise<ProductDocument> {
  const current = await currentVersion(ctx.env, id);
  if (current === undefined) throw ApiError.notFound(`No product ${id}.`);
  if (ifMatch !== undefined && ifMatch !== current) throw stale(ifMatch, current);
  return commit(ctx, id, prepareArchive(catalogDb(ctx.env, id), id, ifMatch ?? current, now()), ifMatch ?? current);
}
