import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";
import { sha256Hex } from "./crypto";
import { ApiError } from "./errors";
import { BoundedMap } from "./isolate-memory";
import { isVerifiedKeyCached, lookupKey } from "./auth";
import { withTimeout } from "./resilience";
import { shopperIdentity } from "../stock/shopper";
import type { TakeResult } from "../../durable-objects/client-guard";

/**
 * Per-client rate limits per route class.
 *
 * Who the client is: a key (bearer or `?key=`) counts as its own client only once it has been verified
 * against `api_keys` (auth.ts remembers verified keys per isolate for a few seconds). A missing, unknown, expired
 * or revoked key counts against the caller's IP, so a fresh random token per request buys no fresh budget;
 * and while a key is still unverified the IP's budget is charged before D1 is asked about it.
 *
 * - browse, search, strong, reserve: the Workers Rate Limiting binding (RL_BROWSE, RL_SEARCH, RL_STRONG,
 *   RL_RESERVE). It is local to the colo, approximate and free of round trips, which fits high-volume reads and
 *   checkout alike; its limit and period are fixed in wrangler.toml (`[[ratelimits]]`) and must match the class
 *   in `RATE_LIMITS`. `strong` covers the reads that bypass every cache (live availability from the stock
 *   shards, reads with a D1 bookmark). Reserve counts each shopper of a verified storefront key
 *   (src/stock/shopper.ts), never the shop as a whole: holds themselves are bounded exactly by the hoarding
 *   caps, so the limit only has to stop floods.
 * - feed: for verified keys, an exact token bucket in the key's ClientGuard Durable Object (feeds are
 *   contractual quotas, so they need a global, exact count whose limit comes from vars).
 * - Unverified callers of the keyed routes (reserve, feed) are counted per IP by RL_UNVERIFIED: a shopper id
 *   they send buys them nothing, and an object is never created for an identity nobody has verified (each one
 *   is stored, billed and, locally, kept in memory).
 * - A per-client override in `RATE_LIMIT_OVERRIDES` always uses the token bucket (a binding has one limit).
 *
 * A limiter that fails or is slow lets the request through: losing the limiter must not take the API down.
 */

export type RouteClass = "browse" | "search" | "strong" | "reserve" | "feed";
export type Limit = { limit: number; period: number };

const CLASSES: RouteClass[] = ["browse", "search", "strong", "reserve", "feed"];
const DEFAULTS: Record<RouteClass, Limit> = {
  browse: { limit: 1000, period: 10 },
  search: { limit: 500, period: 10 },
  strong: { limit: 100, period: 10 },
  reserve: { limit: 1000, period: 60 },
  feed: { limit: 600, period: 60 },
};
/** Must match RL_UNVERIFIED in wrangler.toml. */
export const UNVERIFIED_LIMIT: Limit = { limit: 120, period: 60 };
const LIMITER_TIMEOUT_MS = 500;
const VERIFY_TIMEOUT_MS = 1_000;
const UNKNOWN_TTL_MS = 10_000;

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

// Keyed on configuration text (a handful of values per deployment), hashed past 128 characters.
const parsed = new BoundedMap<unknown>("rate-limit.parsed-config", { maxBytes: 64 * 1024, sizeOf: () => 2048 });
function cachedParse<T>(text: string | undefined, parse: (t: string | undefined) => T): T {
  const key = `${parse.name}\u0000${text ?? ""}`;
  if (!parsed.has(key)) parsed.set(key, parse(text));
  return parsed.get(key) as T;
}

/** Which limit a request counts against; undefined for admin, health and docs. */
export function routeClass(method: string, path: string, query: URLSearchParams, headers?: Headers): RouteClass | undefined {
  if (path.startsWith("/v1/feeds") || path.startsWith("/r/") || path.startsWith("/v1/embed") || path.startsWith("/embed")) return "feed";
  // Only creating a hold is limited: commit, extend and release must always get through (they free stock).
  if (method === "POST" && (path === "/v1/reservations" || path === "/v1/reservations/")) return "reserve";
  if (path.startsWith("/v1/reservations")) return undefined;
  if (method !== "GET" && method !== "HEAD") return undefined;
  if (path.startsWith("/v1/availability") || (path.startsWith("/v1/") && headers?.has("x-d1-bookmark"))) return "strong";
  if (path.startsWith("/v1/search") || (path.startsWith("/v1/products") && query.has("q"))) return "search";
  if (path.startsWith("/v1/")) return "browse";
  return undefined;
}

/** The key a request presents (bearer, else `?key=`), if any. */
function presentedKey(c: Context<AppEnv>): string | undefined {
  const auth = c.req.header("authorization");
  const bearer = auth ? /^Bearer\s+(\S+)\s*$/i.exec(auth)?.[1] : undefined;
  return bearer ?? c.req.query("key");
}

/** Keys found unknown, per isolate, so a broken client repeating one bad key costs one lookup per 10 s. */
const unknown = new BoundedMap<number>("rate-limit.unknown-keys", { maxBytes: 128 * 1024, sizeOf: () => 16 });

/** Key lookups a caller may cause once its IP is out of budget (RL_UNVERIFIED, its own key space). */
async function lookupAllowed(env: Env, ipClient: string): Promise<boolean> {
  if (!env.RL_UNVERIFIED) return false;
  try {
    return (await withTimeout(env.RL_UNVERIFIED.limit({ key: `verify:${ipClient}` }), LIMITER_TIMEOUT_MS, "rate limiter")).success;
  } catch {
    return false;
  }
}

function ipClient(c: Context<AppEnv>): string {
  return `ip:${c.req.header("cf-connecting-ip") ?? "unknown"}`;
}

/**
 * The client a request is counted for, from what is already known: a key verified in this isolate moments ago
 * (src/lib/auth.ts), else the IP (`pending` holds a key that still needs verifying).
 */
export async function knownClient(c: Context<AppEnv>, now = Date.now()): Promise<{ client: string; pending?: { key: string; hash: string } }> {
  const key = presentedKey(c);
  if (!key || key.length > 256) return { client: ipClient(c) };
  const hash = await sha256Hex(key);
  const id = `key:${hash.slice(0, 24)}`;
  if (isVerifiedKeyCached(hash, now)) return { client: id };
  if ((unknown.get(id) ?? 0) > now) return { client: ipClient(c) };
  return { client: ipClient(c), pending: { key, hash } };
}

/** Verifies a pending key (one D1 lookup, then cached by auth.ts); its client id when it is a current key. */
export async function verifyKey(env: Env, pending: { key: string; hash: string }, now = Date.now()): Promise<string | undefined> {
  const id = `key:${pending.hash.slice(0, 24)}`;
  let ok = false;
  try {
    ok = !!(await withTimeout(lookupKey(env, pending.key, now), VERIFY_TIMEOUT_MS, "key lookup"));
  } catch {
    return undefined;
  }
  if (!ok) unknown.set(id, now + UNKNOWN_TTL_MS);
  return ok ? id : undefined;
}

type Decision = { ok: boolean; cls: RouteClass; limit: Limit; remaining?: number; reset?: number; retryAfter: number };

/** The binding a decision uses, with the limit it enforces; undefined = the client's ClientGuard token bucket. */
function bindingFor(env: Env, cls: RouteClass, client: string, limit: Limit): { binding: RateLimit | undefined; limit: Limit } | undefined {
  if (cls === "browse") return { binding: env.RL_BROWSE, limit };
  if (cls === "search") return { binding: env.RL_SEARCH, limit };
  if (cls === "strong") return { binding: env.RL_STRONG, limit };
  if (!client.startsWith("key:")) return { binding: env.RL_UNVERIFIED, limit: UNVERIFIED_LIMIT };
  return cls === "reserve" ? { binding: env.RL_RESERVE, limit } : undefined;
}

/** The binding's counter: the client, and for a verified key's reservations also the shopper behind it. */
async function bindingKey(c: Context<AppEnv>, cls: RouteClass, client: string): Promise<string> {
  if (cls !== "reserve" || !client.startsWith("key:")) return `${cls}:${client}`;
  return `${cls}:${client}:${(await sha256Hex(shopperIdentity(c.req.raw))).slice(0, 24)}`;
}

async function decide(c: Context<AppEnv>, cls: RouteClass, client: string, limit: Limit, exact: boolean): Promise<Decision> {
  const env = c.env;
  const shared = exact ? undefined : bindingFor(env, cls, client, limit);
  if (shared?.binding) {
    const { success } = await withTimeout(shared.binding.limit({ key: await bindingKey(c, cls, client) }), LIMITER_TIMEOUT_MS, "rate limiter");
    const l = shared.limit;
    return { ok: success, cls, limit: l, retryAfter: success ? 0 : l.period, remaining: success ? undefined : 0, reset: success ? undefined : l.period };
  }
  // Without its binding an unverified caller is let through rather than given a Durable Object.
  if (shared && !client.startsWith("key:")) return { ok: true, cls, limit: shared.limit, retryAfter: 0 };
  const stub = env.CLIENT_GUARD.getByName(`client:${client}`);
  const r = (await withTimeout(stub.take(cls, limit.limit, limit.period), LIMITER_TIMEOUT_MS, "rate limiter")) as TakeResult;
  return { ok: r.ok, cls, limit, remaining: r.remaining, reset: r.reset, retryAfter: r.retry_after };
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

/** One limiter decision; a limiter that fails lets the request through (undefined). */
async function decideFor(c: Context<AppEnv>, cls: RouteClass, client: string): Promise<Decision | undefined> {
  const override = cachedParse(c.env.RATE_LIMIT_OVERRIDES, parseOverrides).get(client)?.[cls];
  const limit = override ?? cachedParse(c.env.RATE_LIMITS, parseLimits)[cls];
  try {
    return await decide(c, cls, client, limit, override !== undefined);
  } catch (err) {
    console.warn(JSON.stringify({ level: "warn", request_id: c.get("requestId"), message: "rate limiter unavailable; allowing", error: String(err) }));
    return undefined;
  }
}

function refuse(d: Decision): never {
  throw new ApiError(
    429,
    "rate-limited",
    "Too Many Requests",
    `The ${d.cls} limit of ${d.limit.limit} requests per ${d.limit.period} s for this client is used up; retry after ${d.retryAfter} s.`,
    { route_class: d.cls, limit: d.limit.limit, period_seconds: d.limit.period },
    { ...rateHeaders(d), "Retry-After": String(d.retryAfter) },
  );
}

export const rateLimit = createMiddleware<AppEnv>(async (c, next) => {
  const url = new URL(c.req.url);
  const cls = routeClass(c.req.method, url.pathname, url.searchParams, c.req.raw.headers);
  if (!cls) return next();
  const { client, pending } = await knownClient(c);
  let decision = await decideFor(c, cls, client);
  // A real key behind an IP that is out of budget still gets verified, within a per-IP allowance of lookups.
  if (decision && !decision.ok && !(pending && (await lookupAllowed(c.env, client)))) refuse(decision);
  if (pending) {
    // Charged to the IP above; from here on a real key counts as itself (its first request costs both).
    const id = await verifyKey(c.env, pending);
    if (id) decision = await decideFor(c, cls, id);
    if (decision && !decision.ok) refuse(decision);
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
