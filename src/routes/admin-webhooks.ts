import { createRoute, z } from "@hono/zod-openapi";
import { requireAdmin } from "../lib/auth";
import { ApiError } from "../lib/errors";
import { createApp } from "../lib/validation";
import { WEBHOOK_EVENT_TYPES } from "../webhooks/event-types";
import { generateSecret, validSecret } from "../webhooks/signing";
import { localTargetsAllowed, refuseTarget } from "../webhooks/target-policy";
import { ATTEMPTS_KEPT } from "../webhooks/deliver";
import { mirrorEndpoints } from "../webhooks/partition-events";
import { problem } from "./common";

/** Registered endpoints per installation: each event fans out to all of them. */
const MAX_ENDPOINTS = 50;

const EventType = z.enum(WEBHOOK_EVENT_TYPES);

const Endpoint = z
  .object({
    id: z.string(),
    url: z.string(),
    events: z.array(EventType),
    description: z.string(),
    status: z.enum(["active", "disabled"]),
    disabled_reason: z.string().nullable(),
    disabled_at: z.string().nullable(),
    consecutive_failures: z.number().int(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("WebhookEndpoint");

const CreatedEndpoint = Endpoint.extend({
  secret: z.string().openapi({ description: "The signing secret (`whsec_…`). Shown once: store it with the receiver." }),
}).openapi("WebhookEndpointCreated");

const Attempt = z
  .object({
    event_id: z.string().openapi({ description: "The `webhook-id` the receiver saw: the same on every retry of a delivery." }),
    event_type: EventType,
    attempt: z.number().int(),
    attempted_at: z.string(),
    ok: z.boolean(),
    status_code: z.number().int().nullable(),
    error: z.string().nullable(),
    duration_ms: z.number().int(),
  })
  .openapi("WebhookAttempt");

const CreateBody = z
  .object({
    url: z.string().min(1).max(2048).openapi({ example: "https://erp.example.com/hooks/edgeshelf" }),
    events: z.array(EventType).min(1).max(WEBHOOK_EVENT_TYPES.length).refine((e) => new Set(e).size === e.length, "must not repeat an event type"),
    secret: z
      .string()
      .max(200)
      .refine(validSecret, "must be `whsec_` followed by base64 of 24 to 64 bytes")
      .optional()
      .openapi({ description: "Bring your own signing secret; generated when omitted." }),
    description: z.string().max(500).default(""),
  })
  .openapi("WebhookEndpointInput");

const PatchBody = z
  .object({
    status: z.enum(["active", "disabled"]).optional().openapi({ description: "`disabled` stops deliveries (pending ones are cancelled); `active` re-enables and clears the failure count." }),
    events: CreateBody.shape.events.optional(),
    url: CreateBody.shape.url.optional(),
    description: z.string().max(500).optional(),
  })
  .openapi("WebhookEndpointPatch");

const IdParam = z.object({ id: z.string().regex(/^wh_[A-Za-z0-9]{1,40}$/, "must be a webhook endpoint id (wh_…)") });

const errors = {
  400: problem("Invalid input."),
  401: problem("Missing or wrong admin token."),
};

type Row = {
  id: string; url: string; events: string; description: string; status: "active" | "disabled"; disabled_reason: string | null;
  disabled_at: number | null; consecutive_failures: number; created_at: number; updated_at: number;
};

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function view(row: Row): z.infer<typeof Endpoint> {
  return {
    id: row.id,
    url: row.url,
    events: JSON.parse(row.events) as z.infer<typeof EventType>[],
    description: row.description,
    status: row.status,
    disabled_reason: row.disabled_reason,
    disabled_at: iso(row.disabled_at),
    consecutive_failures: row.consecutive_failures,
    created_at: iso(row.created_at)!,
    updated_at: iso(row.updated_at)!,
  };
}

const COLUMNS = "id, url, events, description, status, disabled_reason, disabled_at, consecutive_failures, created_at, updated_at";

async function load(db: D1Database, id: string): Promise<Row> {
  const row = await db.prepare(`SELECT ${COLUMNS} FROM webhook_endpoints WHERE id = ? AND deleted_at IS NULL`).bind(id).first<Row>();
  if (!row) throw ApiError.notFound(`No webhook endpoint '${id}'.`);
  return row;
}

function checkTarget(url: string, env: Env): void {
  const refusal = refuseTarget(url, env);
  if (refusal) {
    throw ApiError.unprocessable(`This URL may not receive webhooks: ${refusal}.`, {
      rule: localTargetsAllowed(env) ? "invalid_url" : "public_https_only",
      errors: [{ location: "json", path: "url", message: refusal }],
    });
  }
}

const createRouteDef = createRoute({
  method: "post",
  path: "/admin/webhooks",
  tags: ["Admin: webhooks"],
  summary: "Register a webhook endpoint",
  description:
    "Deliveries are POSTs signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), at least once, with the same `webhook-id` on every retry. Body: `{type, timestamp, data}`. In production the URL must be `https` on a public host (private, loopback and link-local addresses are refused). Event types: " +
    WEBHOOK_EVENT_TYPES.join(", ") +
    ".",
  security: [{ adminToken: [] }],
  request: { body: { required: true, content: { "application/json": { schema: CreateBody } } } },
  responses: {
    201: { description: "Registered; the secret is in this answer only.", content: { "application/json": { schema: CreatedEndpoint } } },
    ...errors,
    409: problem(`Already ${MAX_ENDPOINTS} endpoints.`),
    422: problem("The URL may not receive webhooks (rule `public_https_only` or `invalid_url`)."),
  },
});

const listRouteDef = createRoute({
  method: "get",
  path: "/admin/webhooks",
  tags: ["Admin: webhooks"],
  summary: "List webhook endpoints",
  security: [{ adminToken: [] }],
  responses: { 200: { description: "Oldest first.", content: { "application/json": { schema: z.object({ items: z.array(Endpoint) }) } } }, ...errors },
});

const getRouteDef = createRoute({
  method: "get",
  path: "/admin/webhooks/{id}",
  tags: ["Admin: webhooks"],
  summary: "One webhook endpoint",
  security: [{ adminToken: [] }],
  request: { params: IdParam },
  responses: { 200: { description: "The endpoint.", content: { "application/json": { schema: Endpoint } } }, ...errors, 404: problem("No such endpoint.") },
});

const patchRouteDef = createRoute({
  method: "patch",
  path: "/admin/webhooks/{id}",
  tags: ["Admin: webhooks"],
  summary: "Disable, re-enable or change a webhook endpoint",
  security: [{ adminToken: [] }],
  request: { params: IdParam, body: { required: true, content: { "application/json": { schema: PatchBody } } } },
  responses: {
    200: { description: "The endpoint as changed.", content: { "application/json": { schema: Endpoint } } },
    ...errors,
    404: problem("No such endpoint."),
    422: problem("The URL may not receive webhooks."),
  },
});

const deleteRouteDef = createRoute({
  method: "delete",
  path: "/admin/webhooks/{id}",
  tags: ["Admin: webhooks"],
  summary: "Delete a webhook endpoint (its pending deliveries are cancelled)",
  security: [{ adminToken: [] }],
  request: { params: IdParam },
  responses: { 204: { description: "Deleted." }, ...errors, 404: problem("No such endpoint.") },
});

const attemptsRouteDef = createRoute({
  method: "get",
  path: "/admin/webhooks/{id}/deliveries",
  tags: ["Admin: webhooks"],
  summary: `Delivery log: the last ${ATTEMPTS_KEPT} attempts, newest first, and the deliveries still pending`,
  security: [{ adminToken: [] }],
  request: { params: IdParam },
  responses: {
    200: {
      description: "The log.",
      content: { "application/json": { schema: z.object({ endpoint: Endpoint, pending: z.number().int(), failed: z.number().int(), attempts: z.array(Attempt) }) } },
    },
    ...errors,
    404: problem("No such endpoint."),
  },
});

export const adminWebhooksApp = createApp();
adminWebhooksApp.use("/admin/webhooks", requireAdmin);
adminWebhooksApp.use("/admin/webhooks/*", requireAdmin);

adminWebhooksApp
  .openapi(createRouteDef, async (c) => {
    const body = c.req.valid("json");
    checkTarget(body.url, c.env);
    const count = await c.env.DB.prepare("SELECT count(*) AS n FROM webhook_endpoints WHERE deleted_at IS NULL").first<{ n: number }>();
    if ((count?.n ?? 0) >= MAX_ENDPOINTS) throw ApiError.conflict(`At most ${MAX_ENDPOINTS} webhook endpoints; delete one first.`);
    const id = `wh_${crypto.randomUUID().replace(/-/g, "").slice(0, 24)}`;
    const secret = body.secret ?? generateSecret();
    const now = Date.now();
    await c.env.DB.prepare(
      "INSERT INTO webhook_endpoints (id, url, events, secret, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
      .bind(id, body.url, JSON.stringify(body.events), secret, body.description, now, now)
      .run();
    await mirrorEndpoints(c.env);
    const row = await load(c.env.DB, id);
    c.header("cache-control", "no-store");
    return c.json({ ...view(row), secret }, 201);
  })
  .openapi(listRouteDef, async (c) => {
    const { results } = await c.env.DB.prepare(`SELECT ${COLUMNS} FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY created_at, id`).all<Row>();
    c.header("cache-control", "no-store");
    return c.json({ items: results.map(view) }, 200);
  })
  .openapi(getRouteDef, async (c) => {
    c.header("cache-control", "no-store");
    return c.json(view(await load(c.env.DB, c.req.valid("param").id)), 200);
  })
  .openapi(patchRouteDef, async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    await load(c.env.DB, id);
    if (body.url !== undefined) checkTarget(body.url, c.env);
    const now = Date.now();
    const statements = [
      c.env.DB.prepare(
        `UPDATE webhook_endpoints SET
           url = coalesce(?2, url), events = coalesce(?3, events), description = coalesce(?4, description),
           status = coalesce(?5, status),
           disabled_reason = CASE WHEN ?5 = 'disabled' AND status = 'active' THEN 'disabled by an operator' WHEN ?5 = 'active' THEN NULL ELSE disabled_reason END,
           disabled_at = CASE WHEN ?5 = 'disabled' AND status = 'active' THEN ?6 WHEN ?5 = 'active' THEN NULL ELSE disabled_at END,
           consecutive_failures = CASE WHEN ?5 = 'active' THEN 0 ELSE consecutive_failures END,
           retry_after = CASE WHEN ?5 = 'active' THEN 0 ELSE retry_after END,
           updated_at = ?6
         WHERE id = ?1 AND deleted_at IS NULL`,
      ).bind(id, body.url ?? null, body.events ? JSON.stringify(body.events) : null, body.description ?? null, body.status ?? null, now),
    ];
    if (body.status === "disabled") {
      statements.push(c.env.DB.prepare("UPDATE webhook_deliveries SET status = 'cancelled' WHERE endpoint_id = ? AND status = 'pending'").bind(id));
    }
    await c.env.DB.batch(statements);
    await mirrorEndpoints(c.env);
    c.header("cache-control", "no-store");
    return c.json(view(await load(c.env.DB, id)), 200);
  })
  .openapi(deleteRouteDef, async (c) => {
    const { id } = c.req.valid("param");
    await load(c.env.DB, id);
    const now = Date.now();
    await c.env.DB.batch([
      c.env.DB.prepare("UPDATE webhook_endpoints SET deleted_at = ?2, status = 'disabled', updated_at = ?2 WHERE id = ?1").bind(id, now),
      c.env.DB.prepare("UPDATE webhook_deliveries SET status = 'cancelled' WHERE endpoint_id = ? AND status = 'pending'").bind(id),
    ]);
    await mirrorEndpoints(c.env);
    return c.body(null, 204);
  })
  .openapi(attemptsRouteDef, async (c) => {
    const { id } = c.req.valid("param");
    const row = await load(c.env.DB, id);
    const [attempts, counts] = await c.env.DB.batch([
      c.env.DB.prepare(
        `SELECT event_id, event_type, attempt, attempted_at, ok, status_code, error, duration_ms FROM webhook_attempts
         WHERE endpoint_id = ? ORDER BY id DESC LIMIT ?`,
      ).bind(id, ATTEMPTS_KEPT),
      c.env.DB.prepare(
        "SELECT sum(status = 'pending') AS pending, sum(status = 'failed') AS failed FROM webhook_deliveries WHERE endpoint_id = ?",
      ).bind(id),
    ]);
    type A = { event_id: string; event_type: string; attempt: number; attempted_at: number; ok: number; status_code: number | null; error: string | null; duration_ms: number };
    const c0 = (counts!.results[0] ?? {}) as { pending: number | null; failed: number | null };
    c.header("cache-control", "no-store");
    return c.json(
      {
        endpoint: view(row),
        pending: c0.pending ?? 0,
        failed: c0.failed ?? 0,
        attempts: (attempts!.results as A[]).map((a) => ({ ...a, event_type: a.event_type as z.infer<typeof EventType>, ok: a.ok === 1, attempted_at: iso(a.attempted_at)! })),
      },
      200,
    );
  });
