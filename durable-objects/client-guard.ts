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
 * One object per API client (storefront key, affiliate key or IP), named `client:{client key}`.
 * Holds the client's exact token buckets for the route classes the Rate Limiting binding cannot serve
 * (configurable limits, global rather than per colo), and later its stock holdings for hoarding caps.
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
