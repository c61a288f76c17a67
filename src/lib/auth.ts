import { createMiddleware } from "hono/factory";
import type { Context } from "hono";
import type { AppEnv, Principal } from "../env";
import { ApiError } from "./errors";
import { sha256Hex, timingSafeEqualStrings } from "./crypto";
import { findKeyWithAffiliate } from "../affiliates/account";
import { BoundedMap } from "./isolate-memory";

type KeyRow = { id: string; kind: string; affiliate_id: string | null; expires_at: number | null; revoked_at: number | null };

export function bearerToken(c: Context<AppEnv>): string | undefined {
  const header = c.req.header("authorization");
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * The password of `Authorization: Basic`, for feed fetchers that can only send a user name and password
 * (Merchant Center's scheduled fetch): the affiliate key goes in the password, the user name is ignored.
 */
export function basicPassword(c: Context<AppEnv>): string | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]{1,700})\s*$/i.exec(c.req.header("authorization") ?? "");
  if (!match) return undefined;
  try {
    const decoded = atob(match[1]!);
    const colon = decoded.indexOf(":");
    return colon >= 0 && colon < decoded.length - 1 ? decoded.slice(colon + 1) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Keys found valid, per isolate, for a few seconds: checkout must not pay a D1 query per reservation. A revoked
 * or rotated-out key therefore stops working within `VERIFIED_KEY_TTL_MS` (and at its expiry time exactly).
 * Only successes are kept, so unknown tokens fill nothing; entries have a fixed size (hash prefix → principal).
 */
const VERIFIED_KEY_TTL_MS = 10_000;
// Fixed-size entries (hash prefix → principal), bounded by bytes like every per-isolate structure.
const verifiedKeys = new BoundedMap<{ principal: Principal; until: number }>("auth.verified-keys", { maxBytes: 256 * 1024, maxKeyLength: 32, sizeOf: () => 160 });

/** True when `hash` (SHA-256 hex of a key) was verified in this isolate within the last few seconds. */
export function isVerifiedKeyCached(hash: string, now = Date.now()): boolean {
  const cached = verifiedKeys.get(hash.slice(0, 32));
  return !!cached && cached.until > now;
}

/** Looks an API key up by its SHA-256 hash; expired (rotated-out) and revoked keys do not authenticate. */
export async function lookupKey(env: Env, key: string, now = Date.now()): Promise<Principal | undefined> {
  if (key.length > 256) return undefined;
  const hash = await sha256Hex(key);
  const cached = verifiedKeys.get(hash.slice(0, 32));
  if (cached && cached.until > now) return cached.principal;
  const row = await env.DB.prepare("SELECT id, kind, affiliate_id, expires_at, revoked_at FROM api_keys WHERE key_hash = ?")
    .bind(hash)
    .first<KeyRow>();
  if (!row || row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= now)) return undefined;
  let principal: Principal | undefined;
  if (row.kind === "storefront") principal = { kind: "storefront", keyId: row.id };
  if (row.kind === "affiliate" && row.affiliate_id) principal = { kind: "affiliate", keyId: row.id, affiliateId: row.affiliate_id };
  if (principal) {
    verifiedKeys.set(hash.slice(0, 32), { principal, until: Math.min(now + VERIFIED_KEY_TTL_MS, row.expires_at ?? Infinity) });
  }
  return principal;
}

/** Admin endpoints: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. */
export const requireAdmin = createMiddleware<AppEnv>(async (c, next) => {
  const token = bearerToken(c);
  if (!token || !c.env.ADMIN_TOKEN || !(await timingSafeEqualStrings(token, c.env.ADMIN_TOKEN))) {
    throw ApiError.unauthorized("Admin endpoints need `Authorization: Bearer <ADMIN_TOKEN>`.");
  }
  c.set("principal", { kind: "admin" });
  await next();
});

/** Checkout endpoints: a storefront key. Affiliate keys are refused (403): they may read feeds, never reserve. */
export const requireStorefront = createMiddleware<AppEnv>(async (c, next) => {
  const token = bearerToken(c);
  if (!token) throw ApiError.unauthorized("Reservation endpoints need `Authorization: Bearer <storefront key>`.");
  const principal = await lookupKey(c.env, token);
  if (!principal) throw ApiError.unauthorized("Unknown, expired or revoked key.");
  if (principal.kind !== "storefront") throw ApiError.forbidden("This key may not reserve stock; use a storefront key.");
  c.set("principal", principal);
  await next();
});

/** The origin a browser request came from: `Origin`, else the origin of `Referer` (same-origin GETs send no Origin). */
export function requestOrigin(c: Context<AppEnv>): string | undefined {
  const origin = c.req.header("origin");
  if (origin && origin !== "null") return origin.toLowerCase();
  const referer = c.req.header("referer");
  if (!referer) return undefined;
  try {
    return new URL(referer).origin.toLowerCase();
  } catch {
    return undefined;
  }
}

export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (!origin) return false;
  return allowed.some((a) => a.replace(/\/+$/, "").toLowerCase() === origin);
}

/**
 * Feed and widget endpoints: an affiliate key as `Authorization: Bearer` or, for `<script>` embeds, `?key=`.
 * A key in the URL is public by nature, so it only counts when the request's Origin/Referer is one of the
 * affiliate's allowed origins. Missing, unknown, expired (rotated out) and revoked keys get 401.
 */
export const requireAffiliate = createMiddleware<AppEnv>(async (c, next) => {
  const bearer = bearerToken(c) ?? basicPassword(c);
  const token = bearer ?? c.req.query("key");
  if (!token) throw ApiError.unauthorized("Feeds need `Authorization: Bearer <affiliate key>` (or Basic with the key as password) or `?key=<affiliate key>`.");
  const match = token.length > 256 ? null : await findKeyWithAffiliate(c.env.DB, await sha256Hex(token));
  const now = Date.now();
  if (!match || match.revokedAt !== null || (match.expiresAt !== null && match.expiresAt <= now)) {
    throw ApiError.unauthorized("Unknown, expired or revoked key.");
  }
  if (match.kind !== "affiliate") throw ApiError.forbidden("This key may not read affiliate feeds; use an affiliate key.");
  const affiliate = match.affiliate;
  if (!affiliate || affiliate.status !== "active") throw ApiError.unauthorized("This affiliate account is not active.");
  const principal = { kind: "affiliate" as const, keyId: match.keyId, affiliateId: affiliate.id };
  if (!bearer && !originAllowed(requestOrigin(c), affiliate.allowed_origins)) {
    throw ApiError.forbidden("A key in `?key=` is only accepted from the affiliate's allowed origins (checked against Origin/Referer).");
  }
  c.set("principal", principal);
  c.set("affiliate", affiliate);
  await next();
});
