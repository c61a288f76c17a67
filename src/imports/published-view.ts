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
 * Changes to EXISTING products cannot be hidden that way: they are applied in place, partition 0's in the switch
 * and each other partition's at its roll-forward. So they are fenced by a seqlock on the directory: the switch
 * writes the import's row with `rolling` = 1 when another partition still has changes to apply, and one directory
 * write clears it once every roll-forward has committed (publish.ts). Every in-place change of an import therefore
 * commits inside [switch, rolling = 0]. An origin read of the catalog (`consistentRead`, around the read path's
 * origin and the feeds' pages)
 *   - never reads with a list that shows a rolling import: it waits (polling, bounded by ROLLING_WAIT_MS), then
 *     answers 503 with Retry-After, which the read path turns into its stale-if-error copy;
 *   - validates after reading: the directory's state (ids and rolling flags) read again must equal the one its
 *     reads used, else it re-reads with a fresh list.
 * Other reads through the view (an admin write's checks, checkout's price fallback) neither wait nor validate, so
 * a roll-forward that a crash left for the cron never blocks writes.
 * A read overlapping any part of an import's interval either saw `rolling` at its start (it waited), or saw the
 * list change between its start and its validation (the import appeared, or its flag flipped): it never returns a
 * mix of an import's old and new rows across partitions (docs/storage.md, "Imports at scale").
 *
 * The finalization clears `pending_import`, which makes a row visible to every reader, also to one whose list was
 * read before the switch. So at N > 1 it waits SETTLE_MS after the switch (publish.ts): by then no request that
 * read its list before the switch still reads (it has MAX_VIEW_MS to start its reads, and each is bounded by the
 * binding timeouts of guarded-env.ts). A request that runs longer fails its late reads with 503, never showing
 * half an import. There is no cache of the list across requests: a stale list would have to be covered by the
 * same wait, and it costs one indexed read of a table of a few rows.
 *
 * With one partition the subquery reads the same database in the same statement, and an import's changes are one
 * transaction: nothing is replaced, waited for or validated.
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
/**
 * How long a read waits for a rolling import before answering 503. A roll-forward in the switch's invocation takes
 * milliseconds to a second or two; one left by a crash waits for the cron, and readers fall back to cached copies.
 */
export const ROLLING_WAIT_MS = 2_000;
/** Reads of one consistent read (the first and its re-reads) before it gives up with 503. */
const CONSISTENT_ATTEMPTS = 3;

/** Import ids are the Worker's own UUIDs: checked anyway before they are written into SQL. */
const IMPORT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The directory's published imports; `state` names every row with its rolling flag, to compare two reads. */
type Directory = { ids: string[]; rolling: boolean; state: string };
type Published = { subquery: string; at: number; rolling: boolean; state: string };

async function readDirectory(directory: D1Database): Promise<Directory> {
  const { results } = await directory.prepare("SELECT import_id, rolling FROM import_visibility ORDER BY import_id").all<{ import_id: string; rolling: number }>();
  return {
    ids: results.map((r) => r.import_id).filter((id) => IMPORT_ID.test(id)),
    rolling: results.some((r) => r.rolling === 1),
    state: results.map((r) => `${r.import_id}:${r.rolling}`).join(","),
  };
}

async function readPublished(directory: D1Database): Promise<Published> {
  // Taken before the read: MAX_VIEW_MS then bounds the time from the list's snapshot to any read that uses it.
  const at = Date.now();
  const dir = await readDirectory(directory);
  return { subquery: `(SELECT value FROM json_each('${JSON.stringify(dir.ids)}'))`, at, rolling: dir.rolling, state: dir.state };
}

const unavailable = (why: string) => ApiError.unavailable(`${why} Retry shortly.`, 1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
        // The primary, whatever the caller asked (a replica, a bookmark): the seqlock reads the directory's primary,
        // and its argument needs every data read at least as new as that list. A replica of one partition could still
        // be before an import's switch while another's is past its roll-forward. Read replication is given up for
        // catalog origin reads at N > 1 (the edge and KV tiers serve most reads).
        return (_constraint?: string) => viewD1((target as D1Database).withSession("first-primary"), published);
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A request's published list, read on its first product read and again when a consistent read asks for it. */
class View {
  private current: Promise<Published> | undefined;
  constructor(readonly directory: D1Database) {}
  list: Lookup = () => (this.current ??= readPublished(this.directory));
  /** The next read takes a fresh list. */
  refresh(): void {
    this.current = undefined;
  }
}

const views = new WeakMap<object, View>();

/** `env` for one request: with N > 1, every catalog database reads with the request's one published set. */
export function publishedView(env: Env): Env {
  const n = partitionCount(env);
  if (n === 1) return env;
  const state = new View(env.DB);
  // A plain copy: the runtime's env object has read-only properties that cannot be shadowed by assignment.
  const view = {} as Env;
  for (const key of Object.keys(env)) {
    Object.defineProperty(view, key, { value: (env as unknown as Record<string, unknown>)[key], writable: true, enumerable: true, configurable: true });
  }
  view.DB = viewD1(env.DB, state.list);
  for (let i = 1; i < n; i++) {
    const key = `CATALOG_${i}`;
    Object.defineProperty(view, key, { value: viewD1((env as unknown as Record<string, D1Database>)[key]!, state.list), writable: true, enumerable: true, configurable: true });
  }
  views.set(view, state);
  return view;
}

/**
 * Runs `read` (a D1 read of products over the partitions) so that it cannot return a mix of an import's old and
 * new rows: its list is read first (waiting out a rolling import), and the directory is read again after it; when
 * the two differ the reads may have overlapped a switch or a roll-forward, and they run again with a fresh list
 * (503 after CONSISTENT_ATTEMPTS). Put it at the origin boundary, so that no cached copy, KV write or response is
 * built from a mixed read. Costs one directory read per call at N > 1, nothing at N = 1 (`env` is no view then).
 * A re-read also follows the harmless changes of the list (a completed import's row deleted): rare and cheap.
 */
export async function consistentRead<T>(env: Env, read: () => Promise<T>): Promise<T> {
  const view = views.get(env);
  if (!view) return read();
  const waitUntil = Date.now() + ROLLING_WAIT_MS;
  for (let attempt = 1; ; attempt++) {
    let used = await view.list();
    // A list read long ago in this request (a streamed feed's later pages) would soon be refused: take a new one.
    if (Date.now() - used.at > MAX_VIEW_MS / 2) {
      view.refresh();
      used = await view.list();
    }
    // Never read while an import's changes are half applied: wait for its roll-forward (short backoff).
    for (let delay = 25; used.rolling; delay = Math.min(delay * 2, 400)) {
      if (Date.now() + delay > waitUntil) throw unavailable("An import is being applied across the catalog's partitions.");
      await sleep(delay);
      view.refresh();
      used = await view.list();
    }
    const result = await read();
    // Past MAX_VIEW_MS a completed import's row may be gone again, which would hide that the list changed.
    if (Date.now() - used.at <= MAX_VIEW_MS && (await readDirectory(view.directory)).state === used.state) return result;
    if (attempt === CONSISTENT_ATTEMPTS) throw unavailable("Imports kept changing the catalog while it was read.");
    view.refresh();
  }
}

/** Gives each request its view (after the guards and the load shedding have chosen its bindings). */
export const publishedImports = createMiddleware<AppEnv>(async (c, next) => {
  c.env = publishedView(c.env);
  await next();
});
