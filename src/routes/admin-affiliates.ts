import { createRoute, z } from "@hono/zod-openapi";
import { getAffiliate, type Affiliate } from "../affiliates/account";
import { newApiKey, sha256Hex } from "../lib/crypto";
import { requireAdmin } from "../lib/auth";
import { ApiError } from "../lib/errors";
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

type KeyRow = { id: string; prefix: string; label: string | null; created_at: number; expires_at: number | null; revoked_at: number | null };

function keyState(k: KeyRow, now: number): z.infer<typeof KeyInfo>["state"] {
  if (k.revoked_at !== null) return "revoked";
  if (k.expires_at !== null) return k.expires_at <= now ? "expired" : "expiring";
  return "active";
}

async function issueKeyStatement(db: D1Database, affiliateId: string, label: string | null) {
  const key = newApiKey("aff");
  const id = `key-${crypto.randomUUID()}`;
  const prefix = key.slice(0, 8);
  const stmt = db
    .prepare("INSERT INTO api_keys (id, kind, affiliate_id, key_hash, prefix, label, created_at) VALUES (?, 'affiliate', ?, ?, ?, ?, ?)")
    .bind(id, affiliateId, await sha256Hex(key), prefix, label, Date.now());
  return { stmt, key: { id, key, prefix } };
}

async function mustGet(db: D1Database, id: string): Promise<Affiliate> {
  const affiliate = await getAffiliate(db, id);
  if (!affiliate) throw ApiError.notFound(`No affiliate '${id}'.`);
  return affiliate;
}

export const adminAffiliatesApp = createApp();
adminAffiliatesApp.use("/admin/affiliates", requireAdmin);
adminAffiliatesApp.use("/admin/affiliates/*", requireAdmin);

adminAffiliatesApp.openapi(createAffiliateRoute, async (c) => {
  const body = c.req.valid("json");
  const id = body.id ?? `aff-${body.tracking_id}`;
  const now = Date.now();
  const issued = await issueKeyStatement(c.env.DB, id, "initial key");
  try {
    await c.env.DB.batch([
      c.env.DB.prepare(
        `INSERT INTO affiliates (id, name, tracking_id, allowed_origins, scope, campaign, status, created_at, updated_at, version)
         VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, 1)`,
      ).bind(id, body.name, body.tracking_id, JSON.stringify(body.allowed_origins), JSON.stringify(body.scope), body.campaign, now, now),
      issued.stmt,
    ]);
  } catch (err) {
    if (/UNIQUE constraint failed: affiliates\.(id|tracking_id)/.test(String((err as Error)?.message ?? err))) {
      throw ApiError.conflict("An affiliate with this id or tracking id already exists.");
    }
    throw err;
  }
  c.header("location", `/admin/affiliates/${id}`);
  c.header("cache-control", "no-store");
  return c.json({ affiliate: await mustGet(c.env.DB, id), key: issued.key }, 201);
});

adminAffiliatesApp.openapi(getAffiliateRoute, async (c) => {
  const { id } = c.req.valid("param");
  const affiliate = await mustGet(c.env.DB, id);
  const rows = (
    await c.env.DB.prepare("SELECT id, prefix, label, created_at, expires_at, revoked_at FROM api_keys WHERE affiliate_id = ? ORDER BY created_at, id")
      .bind(id)
      .all<KeyRow>()
  ).results;
  const now = Date.now();
  c.header("etag", etag(affiliate.version));
  c.header("cache-control", "no-store");
  return c.json({ affiliate, keys: rows.map((k) => ({ ...k, state: keyState(k, now) })) }, 200);
});

adminAffiliatesApp.openapi(patchAffiliateRoute, async (c) => {
  const { id } = c.req.valid("param");
  const patch = c.req.valid("json");
  const ifMatch = c.req.valid("header")["if-match"];
  const current = await mustGet(c.env.DB, id);
  const expected = parseIfMatch(ifMatch, "an affiliate version", current.version) ?? current.version;
  const next = { ...current, ...patch };
  const res = await c.env.DB.prepare(
    `UPDATE affiliates SET name = ?, allowed_origins = ?, scope = ?, campaign = ?, status = ?, updated_at = ?, version = version + 1
     WHERE id = ? AND version = ?`,
  )
    .bind(next.name, JSON.stringify(next.allowed_origins), JSON.stringify(next.scope), next.campaign, next.status, Date.now(), id, expected)
    .run();
  if (res.meta.changes === 0) {
    throw ApiError.preconditionFailed(`If-Match does not match the current version (${current.version}).`, current.version);
  }
  const affiliate = await mustGet(c.env.DB, id);
  c.header("etag", etag(affiliate.version));
  return c.json({ affiliate }, 200);
});

adminAffiliatesApp.openapi(rotateRoute, async (c) => {
  const { id } = c.req.valid("param");
  await mustGet(c.env.DB, id);
  const raw = await c.req.text();
  let grace = DAY;
  let label: string | null = "rotated key";
  if (raw.trim()) {
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      throw ApiError.badRequest("The body is not valid JSON.");
    }
    const parsed = rotateRoute.request.body.content["application/json"].schema.safeParse(json);
    if (!parsed.success) throw ApiError.badRequest(parsed.error.issues[0]?.message ?? "Invalid body.");
    grace = parsed.data.grace_seconds;
    label = parsed.data.label ?? label;
  }
  const now = Date.now();
  const expiresAt = now + grace * 1000;
  const issued = await issueKeyStatement(c.env.DB, id, label);
  const [rotated] = await c.env.DB.batch([
    // Keys already expiring keep the earlier of the two deadlines: rotating twice never extends an old key.
    c.env.DB.prepare(
      `UPDATE api_keys SET expires_at = min(coalesce(expires_at, ?1), ?1)
       WHERE affiliate_id = ?2 AND kind = 'affiliate' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?3)
       RETURNING id, expires_at`,
    ).bind(expiresAt, id, now),
    issued.stmt,
  ]);
  c.header("cache-control", "no-store");
  return c.json({ key: issued.key, rotated: (rotated!.results as { id: string; expires_at: number }[]) }, 201);
});

adminAffiliatesApp.openapi(revokeRoute, async (c) => {
  const { id, keyId } = c.req.valid("param");
  const res = await c.env.DB.prepare("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? AND affiliate_id = ?")
    .bind(Date.now(), keyId, id)
    .run();
  if (res.meta.changes === 0) throw ApiError.notFound(`No key '${keyId}' for affiliate '${id}'.`);
  return c.body(null, 204);
});
