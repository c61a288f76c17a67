/**
 * Wraps the bindings a request sees so a test can count what it costs: every Durable Object call (which object,
 * which method, when it started and ended on one logical clock) and every D1 statement. Calls made between
 * objects are not seen: only what the Worker itself waits for, which is what a round trip from the edge costs.
 */
export type ObjectCall = { binding: "STOCK" | "CLIENT_GUARD"; name: string; method: string; start: number; end: number };

export type Counter = { env: Env; calls: ObjectCall[]; d1: string[]; reset: () => void };

export function countingEnv(base: Env): Counter {
  let tick = 0;
  const calls: ObjectCall[] = [];
  const d1: string[] = [];

  const stub = (binding: ObjectCall["binding"], name: string, real: object) =>
    new Proxy(real, {
      get(target, prop) {
        if (prop === "then") return undefined;
        const v = Reflect.get(target, prop) as unknown;
        if (typeof prop === "symbol" || typeof v !== "function") return v;
        return async (...args: unknown[]) => {
          const call: ObjectCall = { binding, name, method: prop, start: ++tick, end: Number.POSITIVE_INFINITY };
          calls.push(call);
          try {
            // Reflect.apply: on an RPC stub, `method.apply` would itself be a remote property.
            return await Reflect.apply(v as (...a: unknown[]) => unknown, target, args);
          } finally {
            call.end = ++tick;
          }
        };
      },
    });

  const namespace = (binding: ObjectCall["binding"], real: DurableObjectNamespace) =>
    new Proxy(real, {
      get(target, prop) {
        if (prop === "getByName") return (name: string) => stub(binding, name, target.getByName(name));
        if (prop === "get") return (id: DurableObjectId) => stub(binding, id.name ?? id.toString(), target.get(id));
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });

  const statement = (sql: string, real: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(real, {
      get(target, prop) {
        if (prop === "__real") return target;
        if (prop === "bind") return (...values: unknown[]) => statement(sql, target.bind(...values));
        if (prop === "first" || prop === "all" || prop === "run" || prop === "raw") {
          return (...args: unknown[]) => {
            d1.push(sql);
            return (target[prop] as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });

  const database = <T extends D1Database | D1DatabaseSession>(real: T): T =>
    new Proxy(real, {
      get(target, prop) {
        if (prop === "prepare") return (sql: string) => statement(sql, target.prepare(sql));
        if (prop === "batch") {
          return (stmts: D1PreparedStatement[]) => {
            d1.push(...stmts.map(() => "(batch statement)"));
            return target.batch(stmts.map((s) => unwrap(s)));
          };
        }
        if (prop === "withSession") return (c?: string) => database((target as D1Database).withSession(c));
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  // Statements handed to the runtime's batch() must be its own objects.
  const unwrap = (s: D1PreparedStatement) => (s as unknown as { __real?: D1PreparedStatement }).__real ?? s;

  const env = {
    ...base,
    STOCK: namespace("STOCK", base.STOCK as unknown as DurableObjectNamespace),
    CLIENT_GUARD: namespace("CLIENT_GUARD", base.CLIENT_GUARD as unknown as DurableObjectNamespace),
    DB: database(base.DB),
  } as unknown as Env;
  return {
    env,
    calls,
    d1,
    reset: () => {
      calls.length = 0;
      d1.length = 0;
    },
  };
}

/** The longest chain of object calls in which each starts only after the previous one answered. */
export function sequentialDepth(calls: readonly ObjectCall[]): number {
  const byEnd = [...calls].sort((a, b) => a.end - b.end);
  const depth = new Map<ObjectCall, number>();
  let best = 0;
  for (const c of byEnd) {
    let d = 1;
    for (const p of byEnd) if (p.end < c.start) d = Math.max(d, (depth.get(p) ?? 0) + 1);
    depth.set(c, d);
    best = Math.max(best, d);
  }
  return best;
}
