import { createRoute, z } from "@hono/zod-openapi";
import { getImport, runImport, type ImportFormat } from "../imports/import-job";
import { sendOutboxIds } from "../events/outbox";
import { requireAdmin } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";

const Rejection = z.object({ line: z.number(), error: z.string() });
const ImportSchema = z
  .object({
    import_id: z.string(),
    status: z.enum(["receiving", "validating", "publishing", "completed", "failed"]),
    format: z.enum(["ndjson", "csv"]),
    total_lines: z.number(),
    accepted: z.number(),
    rejected_count: z.number(),
    rejected: z.array(Rejection).openapi({ description: "Rejected lines with the reason (the first 1,000)." }),
    duplicate_of: z.string().optional().openapi({ description: "Present when the same file was imported before; nothing was written." }),
    staged: z.number().optional(),
    created_at: z.number(),
    finished_at: z.number().nullable(),
  })
  .openapi("Import");

const postRoute = createRoute({
  method: "post",
  path: "/admin/import",
  tags: ["Admin: catalog"],
  summary: "Bulk import products (NDJSON or CSV, one product per line, streamed)",
  description:
    "Each line is validated like a PUT /admin/products/:id body plus `id`. Good lines are staged and published in one switch " +
    "(readers see all of them or none); bad lines are reported by line number. Re-sending the same file is a no-op that returns the first result.",
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
    200: { description: "The same file was imported before (`duplicate_of`).", content: { "application/json": { schema: ImportSchema } } },
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/admin/imports/{id}",
  tags: ["Admin: catalog"],
  summary: "Status and progress of an import",
  security: [{ adminToken: [] }],
  request: { params: z.object({ id: z.string().uuid().openapi({ param: { name: "id", in: "path" } }) }) },
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

adminImportApp
  .openapi(postRoute, async (c) => {
    const body = c.req.raw.body;
    if (!body) throw ApiError.badRequest("The import needs a body: NDJSON or CSV, one product per line.");
    const result = await runImport(c.env, body, formatOf(c.req.header("content-type"), c.req.valid("query").format));
    const { outbox_ids: outboxIds, ...answer } = result;
    if (outboxIds?.length) c.executionCtx.waitUntil(sendOutboxIds(c.env, outboxIds).catch(() => {}));
    c.header("cache-control", "no-store");
    c.header("location", `/admin/imports/${answer.import_id}`);
    return c.json(answer as z.infer<typeof ImportSchema>, answer.duplicate_of ? 200 : 201);
  })
  .openapi(getRoute, async (c) => {
    const found = await getImport(c.env, c.req.valid("param").id);
    if (!found) throw ApiError.notFound("No such import.");
    c.header("cache-control", "no-store");
    return c.json(found as z.infer<typeof ImportSchema>, 200);
  });
