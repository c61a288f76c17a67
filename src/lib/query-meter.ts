/**
 * Counts the D1 queries an invocation makes through an env (production allows 1,000 per invocation, every statement
 * of a batch counted), so a long job can size its next steps by what is really left rather than by an estimate.
 * The D1 bindings (DB, CATALOG_n) are wrapped; statements are unwrapped again for batch(), which only
 * takes the runtime's own objects.
 */
const REAL = Symbol("meter.real");

export type QueryMeter<E> = { env: E; spent: () => number };

export function meterQueries<E extends object>(env: E): QueryMeter<E> {
  let spent = 0;
  const statement = (real: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(real, {
      get(target, prop) {
        if (prop === REAL) return target;
        if (prop === "bind") return (...values: unknown[]) => statement(target.bind(...values));
        const v = Reflect.get(target, prop) as unknown;
        if (typeof v !== "function") return v;
        const fn = v as (...a: unknown[]) => unknown;
        if (prop === "first" || prop === "all" || prop === "run" || prop === "raw") {
          return (...args: unknown[]) => {
            spent += 1;
            return fn.apply(target, args);
          };
        }
        return fn.bind(target);
      },
    });
  const unwrap = (s: D1PreparedStatement) => ((s as unknown as Record<symbol, D1PreparedStatement>)[REAL] ?? s);
  const database = (real: D1Database): D1Database =>
    new Proxy(real, {
      get(target, prop) {
        if (prop === "prepare") return (sql: string) => statement(target.prepare(sql));
        if (prop === "batch") {
          return (statements: D1PreparedStatement[]) => {
            spent += statements.length;
            return target.batch(statements.map(unwrap));
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  // By name (the directory and the catalog partitions): an RPC stub would answer any property with a function.
  const isD1 = (prop: string | symbol, v: unknown): v is D1Database => (prop === "DB" || (typeof prop === "string" && /^CATALOG_\d+$/.test(prop))) && typeof v === "object" && v !== null;
  const wrapped = new Map<D1Database, D1Database>();
  const metered = new Proxy(env, {
    get(target, prop) {
      const v = Reflect.get(target, prop) as unknown;
      if (!isD1(prop, v)) return v;
      let db = wrapped.get(v);
      if (!db) wrapped.set(v, (db = database(v)));
      return db;
    },
  });
  return { env: metered, spent: () => spent };
}
