import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";
import { ApiError } from "./errors";
import { bindingBreakers, rawEnv } from "./guarded-env";
import { routeClass } from "./rate-limit";

/**
 * Load shedding by priority. When the stock shards are saturated (too many calls in flight from this isolate,
 * or a shard breaker open), reservations and commits keep every resource, and browse/search requests are
 * served from the edge tiers only: their view of D1 and of the shards fails fast, so the read path answers
 * from the Cache API or KV (stale if need be, flagged `x-degraded: shed`) or says 503 with Retry-After.
 */

const DEFAULT_SHED_STOCK_INFLIGHT = 64;

export type Saturation = { saturated: boolean; inflight: number; openShards: number };

export function stockSaturation(env: Env): Saturation {
  const threshold = Number.parseInt(env.SHED_STOCK_INFLIGHT ?? "", 10) || DEFAULT_SHED_STOCK_INFLIGHT;
  let inflight = 0;
  let openShards = 0;
  for (const b of bindingBreakers(env).stock) {
    inflight += b.inflight;
    if (b.currentState() !== "closed") openShards++;
  }
  return { saturated: inflight >= threshold || openShards > 0, inflight, openShards };
}

export class ShedError extends ApiError {
  constructor() {
    super(503, "shed", "Service Unavailable", "The service is shedding catalog reads to serve checkouts; retry shortly.", {}, { "Retry-After": "1" });
    this.name = "ShedError";
  }
}

function refuse(): never {
  throw new ShedError();
}

const shedDb = new Proxy({} as D1Database, {
  get(_t, prop) {
    if (prop === "prepare") return () => shedStatement;
    if (prop === "withSession") return () => shedDb;
    if (prop === "batch" || prop === "exec") return () => Promise.reject(new ShedError());
    return undefined;
  },
});

const shedStatement: D1PreparedStatement = new Proxy({} as D1PreparedStatement, {
  get(_t, prop) {
    if (prop === "bind") return () => shedStatement;
    if (prop === "first" || prop === "all" || prop === "run" || prop === "raw") return () => Promise.reject(new ShedError());
    return undefined;
  },
});

const shedStock = new Proxy({} as Env["STOCK"], {
  get(_t, prop) {
    return prop === "getByName" || prop === "get" ? refuse : undefined;
  },
});

const shedEnvs = new WeakMap<object, Env>();

/** The same env with D1 and the shards switched off (everything else, KV included, untouched). */
export function shedEnv(env: Env): Env {
  let shed = shedEnvs.get(env);
  if (!shed) {
    shed = {} as Env;
    for (const key of Object.keys(env)) {
      Object.defineProperty(shed, key, { value: (env as unknown as Record<string, unknown>)[key], writable: true, enumerable: true, configurable: true });
    }
    shed.DB = shedDb;
    shed.STOCK = shedStock;
    shedEnvs.set(env, shed);
  }
  return shed;
}

export const shedLoad = createMiddleware<AppEnv>(async (c, next) => {
  const url = new URL(c.req.url);
  const cls = routeClass(c.req.method, url.pathname, url.searchParams, c.req.raw.headers);
  if (cls !== "browse" && cls !== "search" && cls !== "strong") return next();
  const s = stockSaturation(rawEnv(c.env));
  if (!s.saturated) return next();
  c.env = shedEnv(c.env);
  await next();
  try {
    c.res.headers.set("x-degraded", "shed");
  } catch {
    c.res = new Response(c.res.body, c.res);
    c.res.headers.set("x-degraded", "shed");
  }
});
