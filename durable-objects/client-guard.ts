import { DurableObject } from "cloudflare:workers";
import { now as clockNow } from "../src/lib/clock";

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
 *
 * A holder object is named after a shopper id the storefront sends, so there is one per shopper ever seen: it
 * must leave nothing behind. It keeps one alarm (set at the latest deadline when none is set; when it fires it
 * sweeps and re-arms); once no hold is live (the last one ended or lapsed) it deletes all of its storage and alarm, and makes its tables again only when
 * that shopper holds something again (docs/storage.md, "Shopper hold tallies").
 */
export class ClientGuard extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Tables exist in this instance's storage (made on first use, dropped by `deleteAll`). */
  private schemaReady = false;
  /** The alarm this instance last set; undefined when unknown (a fresh instance reads it once). */
  private alarmAt: number | null | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
  }

  private schema(): void {
    if (this.schemaReady) return;
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
    this.schemaReady = true;
  }

  /**
   * Hoarding cap: admits a reservation's lines only if this shopper's live holds plus them stay within `total`
   * units. Idempotent per reservation id (a retried saga).
   */
  async admitHold(reservationId: string, lines: { sku: string; quantity: number }[], expiresAt: number, total: number, now = clockNow()): Promise<HoldAdmission> {
    this.schema();
    this.sql.exec("DELETE FROM holdings WHERE expires_at <= ?", now);
    if (this.sql.exec("SELECT 1 FROM holdings WHERE reservation_id = ? LIMIT 1", reservationId).toArray().length) return { ok: true };
    const want = new Map<string, number>();
    for (const l of lines) want.set(l.sku, (want.get(l.sku) ?? 0) + l.quantity);
    const held = this.sql.exec<{ n: number | null }>("SELECT SUM(quantity) AS n FROM holdings").one().n ?? 0;
    const adding = [...want.values()].reduce((a, b) => a + b, 0);
    if (held + adding > total) {
      const soonest = this.sql.exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM holdings").one().t ?? now + 1000;
      await this.settle();
      return { ok: false, scope: "total", limit: total, held, requested: adding, retry_after: Math.max(1, Math.ceil((soonest - now) / 1000)) };
    }
    for (const [sku, q] of want) {
      this.sql.exec("INSERT INTO holdings (reservation_id, sku, quantity, expires_at) VALUES (?, ?, ?, ?)", reservationId, sku, q, expiresAt);
    }
    await this.settle();
    return { ok: true };
  }

  /** The reservation ended (committed, released or failed): its units no longer count as held. */
  async endHold(reservationId: string): Promise<void> {
    this.schema();
    this.sql.exec("DELETE FROM holdings WHERE reservation_id = ?", reservationId);
    await this.settle();
  }

  /** The latest hold lapsed (or the alarm fired early): drop what has lapsed, and everything once nothing is left. */
  override async alarm(): Promise<void> {
    this.alarmAt = undefined;
    this.schema();
    this.sql.exec("DELETE FROM holdings WHERE expires_at <= ?", clockNow());
    await this.settle();
  }

  /**
   * Holder objects only (a `client:` object keeps its buckets): with no live hold left, deletes every table and
   * the alarm; otherwise keeps one alarm at the latest deadline, when every hold here will have lapsed.
   */
  private async settle(): Promise<void> {
    const latest = this.sql.exec<{ t: number | null }>("SELECT MAX(expires_at) AS t FROM holdings").one().t;
    if (latest === null) {
      if (this.sql.exec("SELECT 1 FROM buckets LIMIT 1").toArray().length) return;
      await this.ctx.storage.deleteAlarm();
      await this.ctx.storage.deleteAll();
      this.schemaReady = false;
      this.alarmAt = null;
      return;
    }
    if (this.alarmAt === undefined) this.alarmAt = await this.ctx.storage.getAlarm();
    // Any alarm already set is enough: when it fires it sweeps what lapsed and re-arms for the latest deadline
    // then. Moving it on every reservation would cost a storage write each time.
    if (this.alarmAt !== null) return;
    // Never sooner than a second from now: an alarm that finds nothing lapsed yet must not re-fire at once.
    const at = Math.max(latest, Date.now() + 1_000);
    await this.ctx.storage.setAlarm(at);
    this.alarmAt = at;
  }

  /** Token bucket: capacity `limit`, refilled at `limit` per `periodSeconds`; takes `cost` tokens if it can. */
  take(bucket: string, limit: number, periodSeconds: number, cost = 1, now = Date.now()): TakeResult {
    this.schema();
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
