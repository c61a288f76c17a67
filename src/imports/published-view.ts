/**
 * One published set per request, over every catalog partition (N > 1).
 *
 * An import is published by one write: the switch's batch on the directory (partition 0), which sets its status
 * and lists it in the directory's `import_visibility`. The other partitions learn of it later (their roll-forward),
 * so a reader that asked each partition's own `import_visibility` could see the import in one partition and not
 * in the other: a listing or search gathering both would show half an import. Instead, at N > 1 every read of a
 * request takes the directory's list, read once for the request (on its first product read), into every
 * partition's SQL: the predicate's subquery (visibility.ts) is replaced by that fixed list. Every partition then
 * agrees for the whole request, whatever their roll-forward has done.
 *
 * The finalization clears `pending_import`, which makes a row visible to every reader, also to one whose list was
 * read before the switch. So at N > 1 it waits SETTLE_MS after the switch (publish.ts): by then no request that
 * read its list before the switch still reads (it has MAX_VIEW_MS to start its reads, and each is bounded by the
 * binding timeouts of guarded-env.ts). A request that runs longer fails its late reads with 503, never showing
 * half an import. There is no cache of the list across requests: a stale list would have to be covered by the
 * same wait, and it costs one indexed read of a table of a few rows.
 *
 * With one partition the subquery reads the same database in the same statement: nothing is replaced.
 */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";
import { ApiError } from "../lib/errors";
import { BINDING_TIMEOUTS } from "../lib/guarded-env";
import { partitionCount } from "../db/partitions";
import { PUBLISHED_SUBQUERY } from "./visibility";

/** A request reads products with its list for at most this long after reading it. */
export const MAX_VIEW_MS = 10_000;
/** At N > 1, how long after the switch the finalization may start clearing pending rows. */
export const SETTLE_MS = MAX_VIEW_MS + BINDING_TIMEOUTS.d1Batch + 5_000;

/** Import ids are the Worker's own UUIDs: checked anyway before they are written into SQL. */
const IMPORT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Published = { subquery: string; at: number };

async function readPublished(directory: D1Database): Promise<Published> {
  const { results } = await directory.prepare("SELECT import_id FROM import_visibility").all<{ import_id: string }>();
  const ids = results.map((r) => r.import_id).filter((id) => IMPORT_ID.test(id));
  return { subquery: `(SELECT value FROM json_each('${JSON.stringify(ids)}'))`, at: Date.now() };
}

type Lookup = () => Promise<Published>;

async function rewrite(sql: string, published: Lookup): Promise<string> {
  const set = await published();
  if (Date.now() - set.at > MAX_VIEW_MS) {
    throw new ApiError(503, "unavailable", "Service Unavailable", "The request ran too long to read the catalog consistently; retry it.", {}, { "Retry-After": "1" });
  }
  return sql.split(PUBLISHED_SUBQUERY).join(set.subquery);
}

/** A statement whose SQL names the published set: prepared for real once the request's list is known. */
class ViewStatement {
  constructor(
    readonly target: D1Database | D1DatabaseSession,
    readonly sql: string,
    readonly published: Lookup,
    readonly values: unknown[] = [],
  ) {}
  bind(...values: unknown[]): ViewStatement {
    return new ViewStatement(this.target, this.sql, this.published, values);
  }
  async real(): Promise<D1PreparedStatement> {
    const stmt = this.target.prepare(await rewrite(this.sql, this.published));
    return this.values.length > 0 ? stmt.bind(...this.values) : stmt;
  }
  async first(column?: string): Promise<unknown> {
    const stmt = await this.real();
    return column === undefined ? stmt.first() : stmt.first(column);
  }
  async all(): Promise<D1Result> {
    return (await this.real()).all();
  }
  async run(): Promise<D1Result> {
    return (await this.real()).run();
  }
  async raw(options?: { columnNames?: boolean }): Promise<unknown[]> {
    const stmt = await this.real();
    return options?.columnNames ? stmt.raw({ columnNames: true }) : stmt.raw();
  }
}

function viewD1<T extends D1Database | D1DatabaseSession>(db: T, published: Lookup): T {
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "prepare") {
        return (sql: string) => (sql.includes(PUBLISHED_SUBQUERY) ? (new ViewStatement(target, sql, published) as unknown as D1PreparedStatement) : target.prepare(sql));
      }
      if (prop === "batch") {
        return async (statements: D1PreparedStatement[]) =>
          target.batch(await Promise.all(statements.map((s) => (s instanceof ViewStatement ? s.real() : s))));
      }
      if (prop === "withSession" && "withSession" in target) {
        return (constraint?: string) => viewD1((target as D1Database).withSession(constraint), published);
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** `env` for one request: with N > 1, every catalog database reads with the request's one published set. */
export function publishedView(env: Env): Env {
  const n = partitionCount(env);
  if (n === 1) return env;
  let published: Promise<Published> | undefined;
  const lookup: Lookup = () => (published ??= readPublished(env.DB));
  // A plain copy: the runtime's env object has read-only properties that cannot be shadowed by assignment.
  const view = {} as Env;
  for (const key of Object.keys(env)) {
    Object.defineProperty(view, key, { value: (env as unknown as Record<string, unknown>)[key], writable: true, enumerable: true, configurable: true });
  }
  view.DB = viewD1(env.DB, lookup);
  for (let i = 1; i < n; i++) {
    const key = `CATALOG_${i}`;
    Object.defineProperty(view, key, { value: viewD1((env as unknown as Record<string, D1Database>)[key]!, lookup), writable: true, enumerable: true, configurable: true });
  }
  return view;
}

/** Gives each request its view (after the guards and the load shedding have chosen its bindings). */
export const publishedImports = createMiddleware<AppEnv>(async (c, next) => {
  c.env = publishedView(c.env);
  await next();
});
