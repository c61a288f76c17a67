import { createRoute, z } from "@hono/zod-openapi";
import { commitImport, createImport, getImport, runImport, uploadPart, type ImportFormat } from "../imports/import-job";
import type { Outbox } from "../imports/publish";
import { sendOutboxBatches } from "../events/outbox";
import type { AppEnv } from "../env";
import type { Context } from "hono";
import { requireAdmin } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";

const Rejection = z.object({ line: z.number(), error: z.string() });
const ImportSchema = z
  .object({
    import_id: z.string(),
    status: z.enum(["open", "receiving", "publishing", "finalizing", "completed", "aborting", "failed"]).openapi({
      description:
        "`open`: taking parts; `publishing`: committed, not visible yet; `finalizing`: published (readers see all of it) while counts and " +
        "feeds catch up; `completed`; `aborting`/`failed`: discarded, nothing of it was ever visible.",
    }),
    format: z.enum(["ndjson", "csv"]),
    total_lines: z.number(),
    accepted: z.number(),
    rejected_count: z.number(),
    rejected: z.array(Rejection).openapi({ description: "Rejected lines with the reason (the first 1,000)." }),
    duplicate_of: z.string().optional().openapi({ description: "Present when the same file was imported before; nothing was written." }),
    staged: z.number().optional().openapi({ description: "Staging rows not yet finalized, over every catalog partition." }),
    parts: z.number().openapi({ description: "Parts received (a single upload is one part)." }),
    created_at: z.number(),
    published_at: z.number().nullable().openapi({ description: "When the switch made the import visible." }),
    finished_at: z.number().nullable(),
    slugs_kept: z
      .array(z.object({ line: z.number(), product_id: z.string(), slug: z.string(), kept: z.string(), taken_by: z.string() }))
      .optional()
      .openapi({
        description:
          "Changes to existing products published without their new `slug`: another product (`taken_by`) took it between the import's checks and " +
          "the batch that applied the change, so the product kept `kept`; its other changes are published. Absent when there are none. Also in the " +
          "import.completed webhook.",
      }),
  })
  .openapi("Import");

const postRoute = createRoute({
  method: "post",
  path: "/admin/import",
  tags: ["Admin: catalog"],
  summary: "Bulk import products (NDJSON or CSV, one product per line, streamed)",
  description:
    "Each line is validated like a PUT /admin/products/:id body plus `id`. Good lines are staged and published in one switch " +
    "(readers see all of them or none); bad lines are reported by line number. Re-sending the same file is a no-op that returns the first result. " +
    "One upload holds a bounded number of lines (413 beyond): a larger import is sent as parts (POST /admin/imports).",
  security: [{ adminToken: [] }],
  request: {
    query: z.object({ format: z.enum(["ndjson", "csv"]).optional().openapi({ description: "Overrides the format implied by Content-Type." }) }),
    body: {
      required: true,
      content: {
        "application/x-ndjson": { schema: z.string().openapi({ example: '{"id":"p-1","slug":"p-1","title":"…","brand":"…","category_id":"cat-running","variants":[{"sku":"S-1","prices":{"USD":1299}}]}' }) },
        "text/csv": { schema: z.string().openapi({ example: "id,slug,title,brand,category_id,sku,price.USD\np-1,p-1,Shoe,Kestrel,cat-running,S-1,1299" }) },
      },
    },
  },
  responses: {
    201: { description: "Imported (status `completed`).", content: { "application/json": { schema: ImportSchema } } },
    202: { description: "Published or being published (status `publishing` or `finalizing`); the cron finishes it.", content: { "application/json": { schema: ImportSchema } } },
    200: { description: "The same file was imported before (`duplicate_of`).", content: { "application/json": { schema: ImportSchema } } },
  },
});

const ImportId = z.string().uuid().openapi({ param: { name: "id", in: "path" } });

const createRouteDef = createRoute({
  method: "post",
  path: "/admin/imports",
  tags: ["Admin: catalog"],
  summary: "Open a multi-part import",
  description:
    "An import larger than one upload: open it, upload its parts (PUT /admin/imports/{id}/parts/{n}, in any order), then commit. " +
    "All parts are published together in one switch, or none of them.",
  security: [{ adminToken: [] }],
  request: {
    body: { required: false, content: { "application/json": { schema: z.object({ format: z.enum(["ndjson", "csv"]).default("ndjson") }).openapi("ImportCreate") } } },
  },
  responses: { 201: { description: "Open (status `open`).", content: { "application/json": { schema: ImportSchema } } } },
});

const PartSchema = z
  .object({
    import_id: z.string(),
    part: z.number(),
    total_lines: z.number(),
    accepted: z.number(),
    rejected_count: z.number(),
    rejected: z.array(Rejection).openapi({ description: "Rejected lines (numbered (part − 1) × 1,000,000 + line within the part)." }),
  })
  .openapi("ImportPart");

const partRoute = createRoute({
  method: "put",
  path: "/admin/imports/{id}/parts/{part}",
  tags: ["Admin: catalog"],
  summary: "Upload one part of an open import (NDJSON or CSV with its header, streamed)",
  description: "Staged, not visible. A part number is taken once (409 again). A part that fails discards the whole import.",
  security: [{ adminToken: [] }],
  request: {
    params: z.object({ id: ImportId, part: z.coerce.number().int().min(1).max(999).openapi({ param: { name: "part", in: "path" } }) }),
    body: {
      required: true,
      content: {
        "application/x-ndjson": { schema: z.string() },
        "text/csv": { schema: z.string() },
      },
    },
  },
  responses: {
    200: { description: "Received and staged.", content: { "application/json": { schema: PartSchema } } },
    404: { description: "No such import." },
    409: { description: "The part was uploaded already, or the import is no longer open." },
  },
});

const commitRoute = createRoute({
  method: "post",
  path: "/admin/imports/{id}/commit",
  tags: ["Admin: catalog"],
  summary: "Publish every part of an import in one switch",
  description:
    "Idempotent: calling it again continues a published import's finalization (the cron does too). 409 while a part is still uploading, " +
    "or when the import failed.",
  security: [{ adminToken: [] }],
  request: { params: z.object({ id: ImportId }) },
  responses: {
    201: { description: "Completed.", content: { "application/json": { schema: ImportSchema } } },
    202: { description: "Published (`finalizing`) or about to be; the cron finishes it.", content: { "application/json": { schema: ImportSchema } } },
    404: { description: "No such import." },
    409: { description: "A part is still uploading, or the import failed." },
  },
});

/** Sends the events the import wrote, partition by partition, after the answer. */
function sendOutbox(c: Context<AppEnv>, outbox: Outbox) {
  c.executionCtx.waitUntil(sendOutboxBatches(c.env, outbox).catch(() => {}));
}

const getRoute = createRoute({
  method: "get",
  path: "/admin/imports/{id}",
  tags: ["Admin: catalog"],
  summary: "Status and progress of an import",
  security: [{ adminToken: [] }],
  request: { params: z.object({ id: ImportId }) },
  responses: {
    200: { description: "Current status; `staged` counts rows waiting for the switch.", content: { "application/json": { schema: ImportSchema } } },
    404: { description: "No such import." },
  },
});

function formatOf(contentType: string | undefined, override: ImportFormat | undefined): ImportFormat {
  if (override) return override;
  return (contentType ?? "").split(";")[0]!.trim().toLowerCase() === "text/csv" ? "csv" : "ndjson";
}

export const adminImportApp = createApp();
adminImportApp.use("/admin/import", requireAdmin);
adminImportApp.use("/admin/imports/*", requireAdmin);
adminImportApp.use("/admin/imports", requireAdmin);

adminImportApp
  .openapi(postRoute, async (c) => {
    const body = c.req.raw.body;
    if (!body) throw ApiError.badRequest("The import needs a body: NDJSON or CSV, one product per line.");
    const { outbox, ...answer } = await runImport(c.env, body, formatOf(c.req.header("content-type"), c.req.valid("query").format));
    sendOutbox(c, outbox);
    c.header("cache-control", "no-store");
    c.header("location", `/admin/imports/${answer.import_id}`);
    return c.json(answer as z.infer<typeof ImportSchema>, answer.duplicate_of ? 200 : answer.status === "completed" ? 201 : 202);
  })
  .openapi(createRouteDef, async (c) => {
    const answer = await createImport(c.env, c.req.valid("json")?.format ?? "ndjson");
    c.header("cache-control", "no-store");
    c.header("location", `/admin/imports/${answer.import_id}`);
    return c.json(answer as z.infer<typeof ImportSchema>, 201);
  })
  .openapi(partRoute, async (c) => {
    const body = c.req.raw.body;
    if (!body) throw ApiError.badRequest("A part needs a body: NDJSON or CSV, one product per line.");
    const { id, part } = c.req.valid("param");
    const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    const answer = await uploadPart(c.env, id, part, body, type === "text/csv" ? "csv" : type === "application/x-ndjson" ? "ndjson" : undefined);
    c.header("cache-control", "no-store");
    return c.json(answer, 200);
  })
  .openapi(commitRoute, async (c) => {
    const { outbox, ...answer } = await commitImport(c.env, c.req.valid("param").id);
    sendOutbox(c, outbox);
    c.header("cache-control", "no-store");
    return c.json(answer as z.infer<typeof ImportSchema>, answer.status === "completed" ? 201 : 202);
  })
  .openapi(getRoute, async (c) => {
    const found = await getImport(c.env, c.req.valid("param").id);
    if (!found) throw ApiError.notFound("No such import.");
    c.header("cache-control", "no-store");
    return c.json(found as z.infer<typeof ImportSchema>, 200);
  });
