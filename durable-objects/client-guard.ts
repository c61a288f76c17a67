import { DurableObject } from "cloudflare:workers";

export type TakeResult = {
  ok: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the bucket is full again. */
  reset: number;
  /** Seconds until one token is available (0 when ok). */
  retry_after: number;
};

export type HoldCaps = { perSku: number; total: number };
export type HoldAdmission = { ok: true } | { ok: false; scope: "total"; limit: number; held: number; requested: number; retry_after: number };

/**
 * Two jobs, each keyed so that no object serves a whole shop:
 * - `client:{client key}` (affiliate key, or IP): exact token buckets for the route classes the Rate Limiting
 *   binding cannot serve (feeds, per-client overrides: configurable limits, global rather than per colo).
 * - `holder:{storefront key id}:{holder key}`: one shopper's live holds across all SKUs, for the total hoarding
 *   cap (the per-SKU cap is checked by the stock shard inside the hold itself).
 * Every decision is one synchronous SQL step, so concurrent requests of one client cannot both take the last token.
 */
export class ClientGuard extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS buckets (
      name TEXT PRIMARY KEY,
      tokens REAL NOT NULL,
      updated_at INTEGER NOT NULL
    )`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS holdings (
      reservation_id TEXT NOT NULL,
      sku TEXT NOT NULL,
      quantity INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      PRIMARY KEY (reservation_id, sku)
    )`);
  }

  /**
   * Hoarding cap: admits a reservation's lines only if this shopper's live holds plus them stay within `total`
   * units. Idempotent per reservation id (a retried saga).
   */
  admitHold(reservationId: string, lines: { sku: string; quantity: number }[], expiresAt: number, total: number, now = Date.now()): HoldAdmission {
    this.sql.exec("DELETE FROM holdings WHERE expires_at <= ?", now);
    if (this.sql.exec("SELECT 1 FROM holdings WHERE reservation_id = ? LIMIT 1", reservationId).toArray().length) return { ok: true };
    const want = new Map<string, number>();
    for (const l of lines) want.set(l.sku, (want.get(l.sku) ?? 0) + l.quantity);
    const held = this.sql.exec<{ n: number | null }>("SELECT SUM(quantity) AS n FROM holdings").one().n ?? 0;
    const adding = [...want.values()].reduce((a, b) => a + b, 0);
    if (held + adding > total) {
      const soonest = this.sql.exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM holdings").one().t ?? now + 1000;
      return { ok: false, scope: "total", limit: total, held, requested: adding, retry_after: Math.max(1, Math.ceil((soonest - now) / 1000)) };
    }
    for (const [sku, q] of want) {
      this.sql.exec("INSERT INTO holdings (reservation_id, sku, quantity, expires_at) VALUES (?, ?, ?, ?)", reservationId, sku, q, expiresAt);
    }
    return { ok: true };
  }

  /** The reservation ended (committed, released or failed): its units no longer count as held. */
  endHold(reservationId: string): void {
    this.sql.exec("DELETE FROM holdings WHERE reservation_id = ?", reservationId);
  }

  /** Token bucket: capacity `limit`, refilled at `limit` per `periodSeconds`; takes `cost` tokens if it can. */
  take(bucket: string, limit: number, periodSeconds: number, cost = 1, now = Date.now()): TakeResult {
    const perMs = limit / (periodSeconds * 1000);
    const row = this.sql.exec<{ tokens: number; updated_at: number }>("SELECT tokens, updated_at FROM buckets WHERE name = ?", bucket).toArray()[0];
    const elapsed = row ? Math.max(0, now - row.updated_at) : 0;
    const tokens = row ? Math.min(limit, row.tokens + elapsed * perMs) : limit;
    const ok = tokens >= cost;
    const left = ok ? tokens - cost : tokens;
    this.sql.exec(
      "INSERT INTO buckets (name, tokens, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at",
      bucket,
      left,
      now,
    );
    return {
      ok,
      limit,
      remaining: Math.floor(left),
      reset: Math.ceil((limit - left) / perMs / 1000),
      retry_after: ok ? 0 : Math.max(1, Math.ceil((cost - left) / perMs / 1000)),
    };
  }
}
