/**
 * Admin writes of affiliates and their API keys. A key is shown once, when issued; only its SHA-256 hash is
 * stored. Rotating issues a new key and lets the current ones expire after a grace period, so an affiliate can
 * switch without a gap.
 */
import { isUniqueError } from "../db/guards";
import { newApiKey, sha256Hex } from "../lib/crypto";
import { ApiError } from "../lib/errors";
import { getAffiliate, listAffiliateRows, type Affiliate, type AffiliateScope } from "./account";
import { clickCounts, clickDetail, type ClickCounts, type ClickDetail } from "./click-counts";

export type AffiliateFields = { name: string; tracking_id: string; allowed_origins: string[]; scope: AffiliateScope; campaign: string | null };
export type AffiliateChanges = Partial<Pick<Affiliate, "name" | "allowed_origins" | "scope" | "campaign" | "status">>;

export type KeyState = "active" | "expiring" | "expired" | "revoked";
export type KeyInfo = { id: string; prefix: string; label: string | null; created_at: number; expires_at: number | null; revoked_at: number | null; state: KeyState };
export type IssuedKey = { id: string; key: string; prefix: string };

type KeyRow = Omit<KeyInfo, "state">;

function keyState(k: KeyRow, now: number): KeyState {
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
  return { stmt, key: { id, key, prefix } satisfies IssuedKey };
}

export async function mustGetAffiliate(db: D1Database, id: string): Promise<Affiliate> {
  const affiliate = await getAffiliate(db, id);
  if (!affiliate) throw ApiError.notFound(`No affiliate '${id}'.`);
  return affiliate;
}

/** The affiliate and its first key, in one batch: there is never an affiliate without a key, nor the reverse. */
export async function createAffiliate(db: D1Database, id: string, fields: AffiliateFields): Promise<{ affiliate: Affiliate; key: IssuedKey }> {
  const now = Date.now();
  const issued = await issueKeyStatement(db, id, "initial key");
  try {
    await db.batch([
      db
        .prepare(
          `INSERT INTO affiliates (id, name, tracking_id, allowed_origins, scope, campaign, status, created_at, updated_at, version)
           VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, 1)`,
        )
        .bind(id, fields.name, fields.tracking_id, JSON.stringify(fields.allowed_origins), JSON.stringify(fields.scope), fields.campaign, now, now),
      issued.stmt,
    ]);
  } catch (err) {
    if (isUniqueError(err, "affiliates.id") || isUniqueError(err, "affiliates.tracking_id")) {
      throw ApiError.conflict("An affiliate with this id or tracking id already exists.");
    }
    throw err;
  }
  return { affiliate: await mustGetAffiliate(db, id), key: issued.key };
}

/** The affiliate with its keys: prefixes and states, never the keys. */
export async function affiliateWithKeys(db: D1Database, id: string): Promise<{ affiliate: Affiliate; keys: KeyInfo[] }> {
  const affiliate = await mustGetAffiliate(db, id);
  const rows = (
    await db.prepare("SELECT id, prefix, label, created_at, expires_at, revoked_at FROM api_keys WHERE affiliate_id = ? ORDER BY created_at, id").bind(id).all<KeyRow>()
  ).results;
  const now = Date.now();
  return { affiliate, keys: rows.map((k) => ({ ...k, state: keyState(k, now) })) };
}

export type AffiliateSummary = { affiliate: Affiliate; keys: KeyInfo[]; retired_keys: number; clicks: ClickCounts };

/**
 * A page of affiliates (id order, keyset cursor) with their usable keys (active or expiring; prefixes only),
 * how many keys are retired (expired or revoked), and click counts. Three bounded reads per page.
 */
export async function listAffiliates(db: D1Database, opts: { after?: string; limit: number }, now = Date.now()): Promise<{ items: AffiliateSummary[]; next_cursor: string | null }> {
  const rows = await listAffiliateRows(db, opts.after ?? "", opts.limit + 1);
  const page = rows.slice(0, opts.limit);
  const ids = page.map((a) => a.id);
  const [keys, clicks] = await Promise.all([
    ids.length
      ? db
          .prepare("SELECT id, affiliate_id, prefix, label, created_at, expires_at, revoked_at FROM api_keys WHERE affiliate_id IN (SELECT value FROM json_each(?)) ORDER BY created_at, id")
          .bind(JSON.stringify(ids))
          .all<KeyRow & { affiliate_id: string }>()
      : Promise.resolve({ results: [] as (KeyRow & { affiliate_id: string })[] }),
    clickCounts(db, ids, now),
  ]);
  const items = page.map((affiliate) => {
    const own = keys.results.filter((k) => k.affiliate_id === affiliate.id).map(({ affiliate_id: _, ...k }) => ({ ...k, state: keyState(k, now) }));
    const live = own.filter((k) => k.state === "active" || k.state === "expiring");
    return { affiliate, keys: live, retired_keys: own.length - live.length, clicks: clicks.get(affiliate.id)! };
  });
  return { items, next_cursor: rows.length > opts.limit ? page.at(-1)!.id : null };
}

/** Click counts, clicks per day and top products of one affiliate (404 when there is no such affiliate). */
export async function affiliateClicks(db: D1Database, id: string, now = Date.now()): Promise<ClickDetail> {
  await mustGetAffiliate(db, id);
  return clickDetail(db, id, now);
}

/** Applies `changes` if the affiliate is still at `expectedVersion` (default: whatever it is now); else 412. */
export async function updateAffiliate(db: D1Database, id: string, changes: AffiliateChanges, expectedVersion?: number): Promise<Affiliate> {
  const current = await mustGetAffiliate(db, id);
  const next = { ...current, ...changes };
  const res = await db
    .prepare(
      `UPDATE affiliates SET name = ?, allowed_origins = ?, scope = ?, campaign = ?, status = ?, updated_at = ?, version = version + 1
       WHERE id = ? AND version = ?`,
    )
    .bind(next.name, JSON.stringify(next.allowed_origins), JSON.stringify(next.scope), next.campaign, next.status, Date.now(), id, expectedVersion ?? current.version)
    .run();
  if (res.meta.changes === 0) throw ApiError.preconditionFailed(`If-Match does not match the current version (${current.version}).`, current.version);
  return mustGetAffiliate(db, id);
}

/** Issues a new key; the keys in use keep working for `graceSeconds` (0 = expire now). */
export async function rotateKeys(db: D1Database, id: string, opts: { graceSeconds: number; label: string | null }): Promise<{ key: IssuedKey; rotated: { id: string; expires_at: number }[] }> {
  await mustGetAffiliate(db, id);
  const now = Date.now();
  const expiresAt = now + opts.graceSeconds * 1000;
  const issued = await issueKeyStatement(db, id, opts.label);
  const [rotated] = await db.batch([
    // Keys already expiring keep the earlier of the two deadlines: rotating twice never extends an old key.
    db
      .prepare(
        `UPDATE api_keys SET expires_at = min(coalesce(expires_at, ?1), ?1)
         WHERE affiliate_id = ?2 AND kind = 'affiliate' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?3)
         RETURNING id, expires_at`,
      )
      .bind(expiresAt, id, now),
    issued.stmt,
  ]);
  return { key: issued.key, rotated: rotated!.results as { id: string; expires_at: number }[] };
}

/** Revokes a key at once; revoking twice keeps the first time. */
export async function revokeKey(db: D1Database, id: string, keyId: string): Promise<void> {
  const res = await db.prepare("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? AND affiliate_id = ?").bind(Date.now(), keyId, id).run();
  if (res.meta.changes === 0) throw ApiError.notFound(`No key '${keyId}' for affiliate '${id}'.`);
}
