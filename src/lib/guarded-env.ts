import { breakerFor, breakersOf, existingBreaker, type CircuitBreaker } from "./resilience";
import { stockFault } from "./fault-injection";

/**
 * Wraps the bindings of `env` so that every await on them is bounded by a timeout and goes through a
 * circuit breaker: D1 (one breaker per database, catalog partitions included), KV, the queues, and the STOCK namespace (one breaker
 * per shard object, so one overloaded hot shard does not fail the others). Application code keeps using
 * `env.DB`, `env.STOCK.getByName(...)` unchanged; it only sees faster, clearer failures (503 problems).
 * D1 statements also get production's bound-parameter limit, which local SQLite does not enforce.
 */

export const BINDING_TIMEOUTS = {
  d1: 5_000,
  d1Batch: 15_000,
  kv: 3_000,
  queue: 3_000,
  stock: 5_000,
} as const;

/** SQLite/business errors are answers, not signs of an unhealthy database. */
function isD1Failure(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return !/constraint|no such (table|column)|syntax error|SQLITE_(CONSTRAINT|ERROR)|too many SQL variables/i.test(message);
}

const unwrapped = new WeakMap<object, object>();

const d1BreakerName = (use: BindingUse) => (use === "catalog" ? "d1" : `d1:${use}`);

function bindAll<T extends object>(target: T, prop: string | symbol): unknown {
  const value = Reflect.get(target, prop, target);
  return typeof value === "function" ? value.bind(target) : value;
}

/** Production D1 refuses a statement with more bound parameters than this; local SQLite accepts up to 32,766. */
export const D1_MAX_BOUND_PARAMETERS = 100;

/** The refusal production D1 would give, raised locally too so tests and `wrangler dev` catch it before deploy. */
export class D1ParameterLimitError extends Error {
  constructor(readonly count: number) {
    super(`D1_ERROR: too many SQL variables: ${count} bound parameters, production D1 allows ${D1_MAX_BOUND_PARAMETERS}`);
    this.name = "D1ParameterLimitError";
  }
}

function guardStatement(stmt: D1PreparedStatement, breaker: CircuitBreaker): D1PreparedStatement {
  const proxy = new Proxy(stmt, {
    get(target, prop) {
      if (prop === "bind") {
        return (...values: unknown[]) => {
          if (values.length > D1_MAX_BOUND_PARAMETERS) throw new D1ParameterLimitError(values.length);
          return guardStatement(target.bind(...values), breaker);
        };
      }
      if (prop === "first" || prop === "all" || prop === "run" || prop === "raw") {
        return (...args: unknown[]) =>
          breaker.run(() => (target[prop] as (...a: unknown[]) => Promise<unknown>).apply(target, args), BINDING_TIMEOUTS.d1);
      }
      return bindAll(target, prop);
    },
  });
  unwrapped.set(proxy, stmt);
  return proxy;
}

function guardD1<T extends D1Database | D1DatabaseSession>(db: T, breaker: CircuitBreaker): T {
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "prepare") return (query: string) => guardStatement(target.prepare(query), breaker);
      if (prop === "batch") {
        return (statements: D1PreparedStatement[]) =>
          breaker.run(
            () => target.batch(statements.map((s) => (unwrapped.get(s) as D1PreparedStatement | undefined) ?? s)),
            BINDING_TIMEOUTS.d1Batch,
          );
      }
      if (prop === "exec" && "exec" in target) {
        return (query: string) => breaker.run(() => (target as D1Database).exec(query), BINDING_TIMEOUTS.d1Batch);
      }
      if (prop === "withSession" && "withSession" in target) {
        return (constraint?: string) => guardD1((target as D1Database).withSession(constraint), breaker);
      }
      return bindAll(target, prop);
    },
  });
}

function guardMethods<T extends object>(binding: T, methods: readonly string[], breaker: CircuitBreaker, timeoutMs: number): T {
  return new Proxy(binding, {
    get(target, prop) {
      if (typeof prop === "string" && methods.includes(prop)) {
        return (...args: unknown[]) =>
          breaker.run(() => (Reflect.get(target, prop) as (...a: unknown[]) => Promise<unknown>).apply(target, args), timeoutMs);
      }
      return bindAll(target, prop);
    },
  });
}

const STUB_PLAIN_PROPS = new Set<string | symbol>(["id", "name"]);

function guardStub<T extends object>(stub: T, breaker: CircuitBreaker, name: string): T {
  return new Proxy(stub, {
    get(target, prop) {
      // A stub must never look like a promise, or `await stub` would call `then` over RPC.
      if (prop === "then") return undefined;
      if (typeof prop === "symbol" || STUB_PLAIN_PROPS.has(prop)) return bindAll(target, prop);
      return (...args: unknown[]) =>
        breaker.run(async () => {
          const fault = stockFault(name, prop, args);
          if (fault === "before") throw new Error(`stock shard ${name} ${prop}: failed before applying (injected)`);
          // Reflect.apply, not `.apply`: on an RPC stub, `method.apply` is itself a remote property lookup.
          const out: unknown = await Reflect.apply(Reflect.get(target, prop) as (...a: unknown[]) => unknown, target, args);
          if (fault === "after") throw new Error(`stock shard ${name} ${prop}: answer lost after applying (injected)`);
          return out;
        }, BINDING_TIMEOUTS.stock);
    },
  });
}

function guardNamespace<T extends object>(ns: T, prefix: string): T {
  return new Proxy(ns, {
    get(nsTarget, prop) {
      const target = nsTarget as unknown as DurableObjectNamespace;
      if (prop === "getByName") {
        return (name: string, options?: unknown) =>
          guardStub(
            (target.getByName as (n: string, o?: unknown) => object)(name, options),
            breakerFor(target, `${prefix}:${name}`, { timeoutMs: BINDING_TIMEOUTS.stock }),
            name,
          );
      }
      if (prop === "get") {
        return (id: DurableObjectId, options?: unknown) =>
          guardStub(
            (target.get as (i: DurableObjectId, o?: unknown) => object)(id, options),
            breakerFor(target, `${prefix}:${id.name ?? id.toString()}`, { timeoutMs: BINDING_TIMEOUTS.stock }),
            id.name ?? id.toString(),
          );
      }
      return bindAll(target, prop);
    },
  });
}

/**
 * Which work an env serves. Each use has its own D1 breaker: a shopper's deliberately slow search must not open
 * the breaker that checkouts (price lookups, stock adoption) go through, nor the one the event consumer needs.
 */
export type BindingUse = "catalog" | "checkout" | "background";

const guardedEnvs = new WeakMap<object, Map<BindingUse, Env>>();
const rawEnvs = new WeakMap<object, Env>();
const GUARDED = Symbol.for("edgeshelf.guarded");

/** The guarded view of `env` for one use, built once per env object (so breaker state persists across requests). */
export function guardEnv(env: Env, use: BindingUse = "catalog"): Env {
  if ((env as unknown as Record<symbol, unknown>)[GUARDED]) return env;
  let byUse = guardedEnvs.get(env);
  if (!byUse) {
    byUse = new Map();
    guardedEnvs.set(env, byUse);
  }
  const cached = byUse.get(use);
  if (cached) return cached;
  // A plain copy: the runtime's env object has read-only properties that cannot be shadowed by assignment.
  const guarded = {} as Env;
  for (const key of Object.keys(env)) {
    Object.defineProperty(guarded, key, { value: (env as unknown as Record<string, unknown>)[key], writable: true, enumerable: true, configurable: true });
  }
  Object.defineProperty(guarded, GUARDED, { value: true });
  if (env.DB) guarded.DB = guardD1(env.DB, breakerFor(env.DB, d1BreakerName(use), { isFailure: isD1Failure, timeoutMs: BINDING_TIMEOUTS.d1 }));
  // Catalog partitions (src/db/partitions.ts): the same limits, one breaker per database.
  for (const key of Object.keys(env)) {
    if (!/^CATALOG_\d+$/.test(key)) continue;
    const d1 = (env as unknown as Record<string, D1Database>)[key]!;
    const wrapped = guardD1(d1, breakerFor(d1, d1BreakerName(use), { isFailure: isD1Failure, timeoutMs: BINDING_TIMEOUTS.d1 }));
    Object.defineProperty(guarded, key, { value: wrapped, writable: true, enumerable: true, configurable: true });
  }
  if (env.CATALOG_KV) {
    guarded.CATALOG_KV = guardMethods(env.CATALOG_KV, ["get", "getWithMetadata", "put", "delete", "list"], breakerFor(env.CATALOG_KV, "kv"), BINDING_TIMEOUTS.kv);
  }
  if (env.EVENTS) guarded.EVENTS = guardMethods(env.EVENTS, ["send", "sendBatch"], breakerFor(env.EVENTS, "queue"), BINDING_TIMEOUTS.queue);
  if (env.EVENTS_DLQ) {
    guarded.EVENTS_DLQ = guardMethods(env.EVENTS_DLQ, ["send", "sendBatch"], breakerFor(env.EVENTS_DLQ, "dlq"), BINDING_TIMEOUTS.queue);
  }
  if (env.STOCK) guarded.STOCK = guardNamespace(env.STOCK, "stock");
  byUse.set(use, guarded);
  rawEnvs.set(guarded, env);
  return guarded;
}

/** The unwrapped env behind a guarded one (or `env` itself). */
export function rawEnv(env: Env): Env {
  return rawEnvs.get(env) ?? env;
}

/** Breakers of the raw `env` bindings, for health reporting and load shedding (D1: the catalog's breaker). */
export function bindingBreakers(env: Env): { d1?: CircuitBreaker; kv?: CircuitBreaker; stock: CircuitBreaker[] } {
  const raw = rawEnv(env);
  return {
    d1: raw.DB ? existingBreaker(raw.DB, d1BreakerName("catalog")) : undefined,
    kv: raw.CATALOG_KV ? existingBreaker(raw.CATALOG_KV, "kv") : undefined,
    stock: raw.STOCK ? breakersOf(raw.STOCK) : [],
  };
}
