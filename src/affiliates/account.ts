/**
 * Affiliate accounts as the feed and widget code sees them, and the links that credit an affiliate.
 * Raw SQL on D1 (one keyed read per request); manage-affiliates.ts writes the same row shape.
 */
export type AffiliateScope = { categories?: string[]; brands?: string[]; skus?: string[] };

export type Affiliate = {
  id: string;
  name: string;
  tracking_id: string;
  allowed_origins: string[];
  scope: AffiliateScope;
  campaign: string | null;
  status: "active" | "suspended";
  created_at: number;
  updated_at: number;
  version: number;
};

type AffiliateRow = {
  id: string;
  name: string;
  tracking_id: string;
  allowed_origins: string;
  scope: string;
  campaign: string | null;
  status: string;
  created_at: number;
  updated_at: number;
  version: number;
};

const COLUMNS = "id, name, tracking_id, allowed_origins, scope, campaign, status, created_at, updated_at, version";

function parseJson<T>(text: string | null, fallback: T): T {
  if (!text) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

function fromRow(row: AffiliateRow): Affiliate {
  return {
    id: row.id,
    name: row.name,
    tracking_id: row.tracking_id,
    allowed_origins: parseJson<string[]>(row.allowed_origins, []),
    scope: parseJson<AffiliateScope>(row.scope, {}),
    campaign: row.campaign,
    status: row.status === "suspended" ? "suspended" : "active",
    created_at: row.created_at,
    updated_at: row.updated_at,
    version: row.version,
  };
}

export async function getAffiliate(db: D1Database, id: string): Promise<Affiliate | null> {
  const row = await db.prepare(`SELECT ${COLUMNS} FROM affiliates WHERE id = ?`).bind(id).first<AffiliateRow>();
  return row ? fromRow(row) : null;
}

/** A page of affiliates in id order (keyset: ids after `after`). */
export async function listAffiliateRows(db: D1Database, after: string, limit: number): Promise<Affiliate[]> {
  const { results } = await db.prepare(`SELECT ${COLUMNS} FROM affiliates WHERE id > ? ORDER BY id LIMIT ?`).bind(after, limit).all<AffiliateRow>();
  return results.map(fromRow);
}

export async function getAffiliateByTrackingId(db: D1Database, trackingId: string): Promise<Affiliate | null> {
  const row = await db.prepare(`SELECT ${COLUMNS} FROM affiliates WHERE tracking_id = ?`).bind(trackingId).first<AffiliateRow>();
  return row ? fromRow(row) : null;
}

export type AffiliateKeyMatch = { keyId: string; kind: string; expiresAt: number | null; revokedAt: number | null; affiliate: Affiliate | null };

/** One indexed read for the hot path of every feed request: the key (by hash) and its affiliate. */
export async function findKeyWithAffiliate(db: D1Database, keyHash: string): Promise<AffiliateKeyMatch | null> {
  const row = await db
    .prepare(
      `SELECT k.id AS key_id, k.kind, k.expires_at AS key_expires_at, k.revoked_at AS key_revoked_at, ${COLUMNS.split(", ").map((c) => `a.${c}`).join(", ")}
       FROM api_keys k LEFT JOIN affiliates a ON a.id = k.affiliate_id WHERE k.key_hash = ?`,
    )
    .bind(keyHash)
    .first<AffiliateRow & { key_id: string; kind: string; key_expires_at: number | null; key_revoked_at: number | null }>();
  if (!row) return null;
  return { keyId: row.key_id, kind: row.kind, expiresAt: row.key_expires_at, revokedAt: row.key_revoked_at, affiliate: row.id ? fromRow(row) : null };
}

/** True when a scope restricts anything at all. */
export function hasScope(scope: AffiliateScope): boolean {
  return Boolean(scope.categories?.length || scope.brands?.length || scope.skus?.length);
}

/** `https://<site>/p/<slug>?aff=<tracking id>&utm_*`: the landing page that credits the affiliate. */
export function trackedLink(siteBaseUrl: string, affiliate: Pick<Affiliate, "tracking_id" | "campaign">, slug: string, extra: Record<string, string> = {}): string {
  const url = new URL(`/p/${encodeURIComponent(slug)}`, siteBaseUrl);
  url.searchParams.set("aff", affiliate.tracking_id);
  url.searchParams.set("utm_source", affiliate.tracking_id);
  url.searchParams.set("utm_medium", "affiliate");
  url.searchParams.set("utm_campaign", affiliate.campaign ?? "affiliate");
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
  return url.toString();
}

/** The click-counting redirect on this API (`GET /r/:affiliate/:product`), which 302s to `trackedLink`. */
export function clickUrl(apiOrigin: string, affiliate: Pick<Affiliate, "tracking_id">, productId: string): string {
  return `${apiOrigin}/r/${encodeURIComponent(affiliate.tracking_id)}/${encodeURIComponent(productId)}`;
}
