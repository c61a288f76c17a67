import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";
import { sha256Hex } from "./crypto";
import { ApiError } from "./errors";
import { withTimeout } from "./resilience";
import { shopperIdentity } from "../stock/shopper";
import type { TakeResult } from "../../durable-objects/client-guard";

/**
 * Per-client rate limits per route class.
 *
 * - browse, search, reserve: the Workers Rate Limiting binding (RL_BROWSE, RL_SEARCH, RL_RESERVE). It is local
 *   to the colo, approximate and free of round trips, which fits high-volume catalog reads and checkout alike;
 *   its limit and period are fixed in wrangler.toml (`[[ratelimits]]`) and must match the class in `RATE_LIMITS`.
 *   Reserve counts each shopper of a storefront key (src/stock/shopper.ts), never the shop as a whole: holds
 *   themselves are bounded exactly by the hoarding caps, so the limit only has to stop floods.
 * - feed: an exact token bucket in the client's ClientGuard Durable Object (feeds are contractual quotas, so
 *   they need a global, exact count whose limit comes from vars).
 * - A per-client override in `RATE_LIMIT_OVERRIDES` always uses the token bucket (a binding has one limit).
 *
 * A limiter that fails or is slow lets the request through: losing the limiter must not take the API down.
 */

export type RouteClass = "browse" | "search" | "reserve" | "feed";
export type Limit = { limit: number; period: number };

const CLASSES: RouteClass[] = ["browse", "search", "reserve", "feed"];
const DEFAULTS: Record<RouteClass, Limit> = {
  browse: { limit: 1000, period: 10 },
  search: { limit: 500, period: 10 },
  reserve: { limit: 1000, period: 60 },
  feed: { limit: 600, period: 60 },
};
const LIMITER_TIMEOUT_MS = 500;

function parseLimit(text: string): Limit | undefined {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) return undefined;
  const limit = Number(m[1]);
  const period = Number(m[2]);
  return limit > 0 && period > 0 ? { limit, period } : undefined;
}

/** `"browse=1000/10,search=500/10,reserve=4000/60,feed=600/60"` (limit per period in seconds). */
export function parseLimits(text: string | undefined): Record<RouteClass, Limit> {
  const out = { ...DEFAULTS };
  for (const part of (text ?? "").split(",")) {
    const [name, value] = part.split("=");
    const cls = name?.trim() as RouteClass;
    const limit = value ? parseLimit(value) : undefined;
    if (CLASSES.includes(cls) && limit) out[cls] = limit;
  }
  return out;
}

/** `"ip:198.51.100.7 browse=5/10; key:ab12… reserve=100/60"`: exact limits for named clients. */
export function parseOverrides(text: string | undefined): Map<string, Partial<Record<RouteClass, Limit>>> {
  const out = new Map<string, Partial<Record<RouteClass, Limit>>>();
  for (const entry of (text ?? "").split(";")) {
    const [client, ...rules] = entry.trim().split(/\s+/);
    if (!client) continue;
    const limits: Partial<Record<RouteClass, Limit>> = {};
    for (const rule of rules) {
      const [name, value] = rule.split("=");
      const limit = value ? parseLimit(value) : undefined;
      if (CLASSES.includes(name as RouteClass) && limit) limits[name as RouteClass] = limit;
    }
    out.set(client, limits);
  }
  return out;
}

const parsed = new Map<string, unknown>();
function cachedParse<T>(text: string | undefined, parse: (t: string | undefined) => T): T {
  const key = `${parse.name}\u0000${text ?? ""}`;
  if (!parsed.has(key)) parsed.set(key, parse(text));
  return parsed.get(key) as T;
}

/** Which limit a request counts against; undefined for admin, health and docs. */
export function routeClass(method: string, path: string, query: URLSearchParams): RouteClass | undefined {
  if (path.startsWith("/v1/feeds") || path.startsWith("/r/") || path.startsWith("/v1/embed") || path.startsWith("/embed")) return "feed";
  // Only creating a hold is limited: commit, extend and release must always get through (they free stock).
  if (method === "POST" && (path === "/v1/reservations" || path === "/v1/reservations/")) return "reserve";
  if (path.startsWith("/v1/reservations")) return undefined;
  if (method !== "GET" && method !== "HEAD") return undefined;
  if (path.startsWith("/v1/search") || (path.startsWith("/v1/products") && query.has("q"))) return "search";
  if (path.startsWith("/v1/")) return "browse";
  return undefined;
}

/** The client a request is counted for: its key (bearer or `?key=`, hashed, never stored) or its IP. */
export async function clientKey(c: Context<AppEnv>): Promise<string> {
  const auth = c.req.header("authorization");
  const bearer = auth ? /^Bearer\s+(\S{1,256})\s*$/i.exec(auth)?.[1] : undefined;
  const key = bearer ?? c.req.query("key");
  if (key && key.length <= 256) return `key:${(await sha256Hex(key)).slice(0, 24)}`;
  return `ip:${c.req.header("cf-connecting-ip") ?? "unknown"}`;
}

type Decision = { ok: boolean; limit: Limit; remaining?: number; reset?: number; retryAfter: number };

function bindingFor(env: Env, cls: RouteClass): RateLimit | undefined {
  if (cls === "browse") return env.RL_BROWSE;
  if (cls === "search") return env.RL_SEARCH;
  if (cls === "reserve") return env.RL_RESERVE;
  return undefined;
}

/** The binding's counter: the client, and for reserve also the shopper behind it. */
async function bindingKey(c: Context<AppEnv>, cls: RouteClass, client: string): Promise<string> {
  if (cls !== "reserve") return `${cls}:${client}`;
  return `${cls}:${client}:${(await sha256Hex(shopperIdentity(c.req.raw))).slice(0, 24)}`;
}

async function decide(c: Context<AppEnv>, cls: RouteClass, client: string, limit: Limit, exact: boolean): Promise<Decision> {
  const env = c.env;
  const binding = exact ? undefined : bindingFor(env, cls);
  if (binding) {
    const { success } = await withTimeout(binding.limit({ key: await bindingKey(c, cls, client) }), LIMITER_TIMEOUT_MS, "rate limiter");
    return { ok: success, limit, retryAfter: success ? 0 : limit.period, remaining: success ? undefined : 0, reset: success ? undefined : limit.period };
  }
  const stub = env.CLIENT_GUARD.getByName(`client:${client}`);
  const r = (await withTimeout(stub.take(cls, limit.limit, limit.period), LIMITER_TIMEOUT_MS, "rate limiter")) as TakeResult;
  return { ok: r.ok, limit, remaining: r.remaining, reset: r.reset, retryAfter: r.retry_after };
}

function rateHeaders(d: Decision): Record<string, string> {
  const h: Record<string, string> = {
    "RateLimit-Limit": String(d.limit.limit),
    "RateLimit-Policy": `${d.limit.limit};w=${d.limit.period}`,
  };
  if (d.remaining !== undefined) h["RateLimit-Remaining"] = String(d.remaining);
  if (d.reset !== undefined) h["RateLimit-Reset"] = String(d.reset);
  return h;
}

export const rateLimit = createMiddleware<AppEnv>(async (c, next) => {
  const url = new URL(c.req.url);
  const cls = routeClass(c.req.method, url.pathname, url.searchParams);
  if (!cls) return next();
  const client = await clientKey(c);
  const override = cachedParse(c.env.RATE_LIMIT_OVERRIDES, parseOverrides).get(client)?.[cls];
  const limit = override ?? cachedParse(c.env.RATE_LIMITS, parseLimits)[cls];
  let decision: Decision | undefined;
  try {
    decision = await decide(c, cls, client, limit, override !== undefined);
  } catch (err) {
    console.warn(JSON.stringify({ level: "warn", request_id: c.get("requestId"), message: "rate limiter unavailable; allowing", error: String(err) }));
  }
  if (decision && !decision.ok) {
    throw new ApiError(
      429,
      "rate-limited",
      "Too Many Requests",
      `The ${cls} limit of ${limit.limit} requests per ${limit.period} s for this client is used up; retry after ${decision.retryAfter} s.`,
      { route_class: cls, limit: limit.limit, period_seconds: limit.period },
      { ...rateHeaders(decision), "Retry-After": String(decision.retryAfter) },
    );
  }
  await next();
  if (decision) {
    const headers = rateHeaders(decision);
    // Responses replayed from the Cache API have immutable headers: copy before stamping.
    try {
      for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
    } catch {
      c.res = new Response(c.res.body, c.res);
      for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
    }
  }
});
