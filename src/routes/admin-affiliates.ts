import { createRoute, z } from "@hono/zod-openapi";
import { affiliateClicks, affiliateWithKeys, createAffiliate, listAffiliates, revokeKey, rotateKeys, updateAffiliate } from "../affiliates/manage-affiliates";
import { requireAdmin } from "../lib/auth";
import { createApp } from "../lib/validation";
import { etag, parseIfMatch, problem } from "./common";

/** `https://example.com` (scheme, host and port only): what browsers send in `Origin`. */
const OriginString = z
  .string()
  .max(200)
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === "https:" || u.protocol === "http:") && u.origin === s.replace(/\/+$/, "");
    } catch {
      return false;
    }
  }, "must be an origin such as https://example.com (no path)")
  .transform((s) => s.replace(/\/+$/, "").toLowerCase());

const Scope = z
  .object({
    categories: z.array(z.string().min(1).max(100)).max(500).optional(),
    brands: z.array(z.string().min(1).max(200)).max(500).optional(),
    skus: z.array(z.string().min(1).max(100)).max(10_000).optional(),
  })
  .strict()
  .openapi("AffiliateScope", { description: "Each list that is set restricts the feed (categories include subcategories)." });

const AffiliateBody = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9_-]{1,63}$/).optional().openapi({ example: "aff-reviews" }),
    name: z.string().min(1).max(200).openapi({ example: "Gadget Reviews Weekly" }),
    tracking_id: z.string().regex(/^[a-z0-9][a-z0-9_-]{1,39}$/, "lower-case letters, digits, - and _ (2-40)").openapi({ example: "gadgetweekly" }),
    allowed_origins: z.array(OriginString).max(50).default([]),
    scope: Scope.default({}),
    campaign: z.string().min(1).max(100).nullable().default(null).openapi({ example: "spring-2026" }),
  })
  .strict();

const AffiliatePatch = z
  .object({
    name: z.string().min(1).max(200).optional(),
    allowed_origins: z.array(OriginString).max(50).optional(),
    scope: Scope.optional(),
    campaign: z.string().min(1).max(100).nullable().optional(),
    status: z.enum(["active", "suspended"]).optional(),
  })
  .strict();

const AffiliateSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    tracking_id: z.string(),
    allowed_origins: z.array(z.string()),
    scope: Scope,
    campaign: z.string().nullable(),
    status: z.enum(["active", "suspended"]),
    created_at: z.number(),
    updated_at: z.number(),
    version: z.number(),
  })
  .openapi("Affiliate");

const KeyInfo = z
  .object({
    id: z.string(),
    prefix: z.string(),
    label: z.string().nullable(),
    created_at: z.number(),
    expires_at: z.number().nullable(),
    revoked_at: z.number().nullable(),
    state: z.enum(["active", "expiring", "expired", "revoked"]),
  })
  .openapi("AffiliateKeyInfo");

const NewKey = z
  .object({ id: z.string(), key: z.string().openapi({ description: "Shown once; only its SHA-256 hash is stored." }), prefix: z.string() })
  .openapi("AffiliateNewKey");

const IdParams = z.object({ id: z.string().min(1).max(64).openapi({ param: { name: "id", in: "path" }, example: "aff-demo" }) });
const KeyParams = IdParams.extend({ keyId: z.string().min(1).max(100).openapi({ param: { name: "keyId", in: "path" } }) });

const DAY = 86_400;

const ClickCounts = z
  .object({
    last_24h: z.number(),
    last_7d: z.number(),
    last_30d: z.number(),
    capped: z.boolean().openapi({ description: "A window reached the count cap (100,000): the figures are lower bounds." }),
    source: z.enum(["d1"]).openapi({ description: "The D1 `clicks` table: every click outside production; in production only clicks whose Analytics Engine write failed." }),
  })
  .openapi("AffiliateClickCounts");

const listAffiliatesRoute = createRoute({
  method: "get",
  path: "/admin/affiliates",
  tags: ["Admin: affiliates"],
  summary: "List affiliates with scope, usable keys (prefixes and states), retired key count and click counts",
  security: [{ adminToken: [] }],
  request: {
    query: z.object({
      cursor: z.string().max(64).optional().openapi({ description: "`next_cursor` of the previous page (an affiliate id)." }),
      limit: z.coerce.number().int().min(1).max(100).default(50),
    }),
  },
  responses: {
    200: {
      description: "A page of affiliates in id order.",
      content: {
        "application/json": {
          schema: z.object({
            items: z.array(z.object({ affiliate: AffiliateSchema, keys: z.array(KeyInfo), retired_keys: z.number(), clicks: ClickCounts })),
            next_cursor: z.string().nullable(),
          }),
        },
      },
    },
    400: problem("Bad cursor or limit."),
    401: problem("Missing or wrong admin token."),
  },
});

const clicksRoute = createRoute({
  method: "get",
  path: "/admin/affiliates/{id}/clicks",
  tags: ["Admin: affiliates"],
  summary: "An affiliate's click counts, clicks per day (14 days) and most clicked products (7 days)",
  security: [{ adminToken: [] }],
  request: { params: IdParams },
  responses: {
    200: {
      description: "Click figures.",
      content: {
        "application/json": {
          schema: ClickCounts.extend({
            per_day: z.array(z.object({ day: z.string().openapi({ example: "2026-12-05" }), clicks: z.number() })),
            top_products: z.array(z.object({ product_id: z.string(), clicks: z.number() })),
          }).openapi("AffiliateClicks"),
        },
      },
    },
    401: problem("Missing or wrong admin token."),
    404: problem("No such affiliate."),
  },
});

const createAffiliateRoute = createRoute({
  method: "post",
  path: "/admin/affiliates",
  tags: ["Admin: affiliates"],
  summary: "Create an affiliate and its first API key (returned once)",
  security: [{ adminToken: [] }],
  request: { body: { required: true, content: { "application/json": { schema: AffiliateBody } } } },
  responses: {
    201: { description: "Created.", content: { "application/json": { schema: z.object({ affiliate: AffiliateSchema, key: NewKey }) } } },
    400: problem("Invalid body."),
    401: problem("Missing or wrong admin token."),
    409: problem("The id or tracking id is taken."),
  },
});

const getAffiliateRoute = createRoute({
  method: "get",
  path: "/admin/affiliates/{id}",
  tags: ["Admin: affiliates"],
  summary: "An affiliate with its keys (prefixes and states, never the keys)",
  security: [{ adminToken: [] }],
  request: { params: IdParams },
  responses: {
    200: { description: "The affiliate.", content: { "application/json": { schema: z.object({ affiliate: AffiliateSchema, keys: z.array(KeyInfo) }) } } },
    401: problem("Missing or wrong admin token."),
    404: problem("No such affiliate."),
  },
});

const patchAffiliateRoute = createRoute({
  method: "patch",
  path: "/admin/affiliates/{id}",
  tags: ["Admin: affiliates"],
  summary: "Change name, allowed origins, scope, campaign or status",
  description: "`If-Match` with the version (ETag of GET) is optional; when given it must match.",
  security: [{ adminToken: [] }],
  request: {
    params: IdParams,
    headers: z.object({ "if-match": z.string().optional() }),
    body: { required: true, content: { "application/json": { schema: AffiliatePatch } } },
  },
  responses: {
    200: { description: "Updated.", content: { "application/json": { schema: z.object({ affiliate: AffiliateSchema }) } } },
    401: problem("Missing or wrong admin token."),
    404: problem("No such affiliate."),
    412: problem("If-Match does not match the current version."),
  },
});

const rotateRoute = createRoute({
  method: "post",
  path: "/admin/affiliates/{id}/keys",
  tags: ["Admin: affiliates"],
  summary: "Rotate: issue a new key; current keys stay valid for a grace period",
  security: [{ adminToken: [] }],
  request: {
    params: IdParams,
    body: {
      required: false,
      content: {
        "application/json": {
          schema: z
            .object({
              grace_seconds: z.number().int().min(0).max(30 * DAY).default(DAY).openapi({ description: "How long the keys being replaced keep working (0 = expire now)." }),
              label: z.string().max(100).optional(),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    201: {
      description: "The new key (shown once) and the keys now expiring.",
      content: { "application/json": { schema: z.object({ key: NewKey, rotated: z.array(z.object({ id: z.string(), expires_at: z.number() })) }) } },
    },
    401: problem("Missing or wrong admin token."),
    404: problem("No such affiliate."),
  },
});

const revokeRoute = createRoute({
  method: "delete",
  path: "/admin/affiliates/{id}/keys/{keyId}",
  tags: ["Admin: affiliates"],
  summary: "Revoke a key at once",
  security: [{ adminToken: [] }],
  request: { params: KeyParams },
  responses: { 204: { description: "Revoked." }, 401: problem("Missing or wrong admin token."), 404: problem("No such key for this affiliate.") },
});

export const adminAffiliatesApp = createApp();
adminAffiliatesApp.use("/admin/affiliates", requireAdmin);
adminAffiliatesApp.use("/admin/affiliates/*", requireAdmin);

adminAffiliatesApp.openapi(listAffiliatesRoute, async (c) => {
  const { cursor, limit } = c.req.valid("query");
  c.header("cache-control", "no-store");
  return c.json(await listAffiliates(c.env.DB, { after: cursor, limit }), 200);
});

adminAffiliatesApp.openapi(clicksRoute, async (c) => {
  c.header("cache-control", "no-store");
  return c.json(await affiliateClicks(c.env.DB, c.req.valid("param").id), 200);
});

adminAffiliatesApp.openapi(createAffiliateRoute, async (c) => {
  const { id, ...fields } = c.req.valid("json");
  const created = await createAffiliate(c.env.DB, id ?? `aff-${fields.tracking_id}`, fields);
  c.header("location", `/admin/affiliates/${created.affiliate.id}`);
  c.header("cache-control", "no-store");
  return c.json(created, 201);
});

adminAffiliatesApp.openapi(getAffiliateRoute, async (c) => {
  const found = await affiliateWithKeys(c.env.DB, c.req.valid("param").id);
  c.header("etag", etag(found.affiliate.version));
  c.header("cache-control", "no-store");
  return c.json(found, 200);
});

adminAffiliatesApp.openapi(patchAffiliateRoute, async (c) => {
  const expected = parseIfMatch(c.req.valid("header")["if-match"], "an affiliate version");
  const affiliate = await updateAffiliate(c.env.DB, c.req.valid("param").id, c.req.valid("json"), expected);
  c.header("etag", etag(affiliate.version));
  return c.json({ affiliate }, 200);
});

adminAffiliatesApp.openapi(rotateRoute, async (c) => {
  // The body is optional: without one (no content-type) the validator hands over {} and the defaults apply here.
  const body: { grace_seconds?: number; label?: string } = c.req.valid("json");
  const rotation = await rotateKeys(c.env.DB, c.req.valid("param").id, { graceSeconds: body.grace_seconds ?? DAY, label: body.label ?? "rotated key" });
  c.header("cache-control", "no-store");
  return c.json(rotation, 201);
});

adminAffiliatesApp.openapi(revokeRoute, async (c) => {
  const { id, keyId } = c.req.valid("param");
  await revokeKey(c.env.DB, id, keyId);
  return c.body(null, 204);
});
