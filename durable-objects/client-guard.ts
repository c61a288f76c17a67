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

/**
 * Exact token buckets, one object per API client, `client:{client key}` (affiliate key, or IP), for the route
 * classes the Rate Limiting binding cannot serve (feeds, per-client overrides: configurable limits, global rather
 * than per colo). Every decision is one synchronous SQL step, so concurrent requests of one client cannot both
 * take the last token.
 *
 * Shoppers' hold tallies used to live here, one object per shopper (`holder:…`); they are a table of the stock
 * shards now (src/stock/shopper-tally.ts). `alarm()` stays so that such an object, still carrying an alarm from
 * before that change, deletes what it stored when the alarm fires.
 */
export class ClientGuard extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** The table exists in this instance's storage (made on first use). */
  private schemaReady = false;

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
    this.schemaReady = true;
  }

  /** Only objects of the retired per-shopper tallies have alarms: they leave nothing behind. */
  override async alarm(): Promise<void> {
    this.schema();
    if (this.sql.exec("SELECT 1 FROM buckets LIMIT 1").toArray().length) return;
    await this.ctx.storage.deleteAll();
    this.schemaReady = false;
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
