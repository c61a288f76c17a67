import { createRoute, z } from "@hono/zod-openapi";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";
import { forceRelease, holdsOfSku } from "../stock/holds";
import { problem } from "./common";
import { ReservationSchema } from "./reservations";

const security = [{ adminToken: [] }];
const SkuParams = z.object({ sku: z.string().min(1).max(128).openapi({ param: { name: "sku", in: "path" }, example: "SKU-000001-1" }) });
const IdParams = z.object({ id: z.string().regex(/^rsv_\d{1,4}_[0-9a-f]{32}$/).openapi({ param: { name: "id", in: "path" }, example: "rsv_5_0123456789abcdef0123456789abcdef" }) });

const HoldSchema = z
  .object({
    reservation_id: z.string(),
    sku: z.string(),
    location: z.string(),
    quantity: z.number(),
    expires_at: z.string().openapi({ description: "When the hold lapses unless committed or extended." }),
    created_at: z.string(),
    holder: z.string().nullable().openapi({ description: "Id of the storefront key that placed it." }),
    shard: z.string().openapi({ description: "The object holding it: the SKU's home shard or one of its hot sub-shards." }),
  })
  .openapi("Hold");

const holdsRoute = createRoute({
  method: "get",
  path: "/admin/stock/{sku}/holds",
  tags: ["Admin: stock"],
  summary: "Live holds of a SKU (every reservation holding it), soonest deadline first",
  description: "Read from the SKU's home shard and any hot sub-shards; holds past their deadline are expired first, so none is listed after its TTL.",
  security,
  request: { params: SkuParams, query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(200) }) },
  responses: {
    200: { description: "Live holds.", content: { "application/json": { schema: z.object({ sku: z.string(), items: z.array(HoldSchema) }) } } },
    401: problem("Missing or wrong admin token."),
  },
});

const releaseRoute = createRoute({
  method: "post",
  path: "/admin/reservations/{id}/release",
  tags: ["Admin: stock"],
  summary: "Force-release a reservation, whoever holds it",
  description:
    "The storefront's release, done by an admin (ledger actor `admin`): every hold of the reservation goes back to stock. Idempotent; 409 once committed.",
  security,
  request: { params: IdParams },
  responses: {
    200: { description: "The reservation, now released (or expired, if its deadline had passed).", content: { "application/json": { schema: ReservationSchema } } },
    401: problem("Missing or wrong admin token."),
    404: problem("No such reservation."),
    409: problem("Already committed."),
  },
});

export const adminHoldsApp = createApp();
adminHoldsApp.use("/admin/stock/*", requireAdmin);
adminHoldsApp.use("/admin/reservations/*", requireAdmin);

adminHoldsApp
  .openapi(holdsRoute, async (c) => {
    const { sku } = c.req.valid("param");
    const { limit } = c.req.valid("query");
    const holds = await holdsOfSku(c.env, sku, limit);
    c.header("cache-control", "no-store");
    return c.json(
      { sku, items: holds.map((h) => ({ ...h, expires_at: new Date(h.expires_at).toISOString(), created_at: new Date(h.created_at).toISOString() })) },
      200,
    );
  })
  .openapi(releaseRoute, async (c) => {
    const { id } = c.req.valid("param");
    const view = await forceRelease(c.env, id);
    c.header("cache-control", "no-store");
    return c.json(view, 200);
  });
