/**
 * The recommendation batch: a full rebuild on demand and an incremental run on every cron tick.
 *
 * Workers limit CPU and subrequests per invocation, so a full rebuild is a chain of small steps: the job
 * row (D1 `jobs`) holds a cursor (leaf category, last product id done); each step computes and stores one chunk of
 * products, advances the cursor with a compare-and-set, and a queue message carries the job to the next
 * invocation. A lost message or a crashed step leaves the cursor where it was: the cron notices the stall
 * and continues, and re-doing a chunk is harmless (lists are only rewritten when they change).
 *
 * The incremental run takes the dirty set (products edited or ordered since the last run), recomputes
 * their lists and purges the cached answers whose lists changed.
 */
import type { Purger } from "../events/purger";
import { everyPartitionById, rebuildScope } from "./catalog-reads";
import { computeLists, type BlockCache } from "./compute";
import { storeLists } from "./lists";
import { ownersWithAnswers, purgeOwners } from "./refs";

export const REBUILD_KIND = "recommendations.rebuild";
export const REBUILD_MESSAGE = "recommendations.rebuild";
/** Products per step: bounded by KV writes per invocation (≤ one per product) and D1 statement size. */
export const CHUNK = 400;
/**
 * Chunks per invocation: each chunk may write one KV key per product, and an invocation has a bounded number
 * of subrequests (1,000 on the standard plan), so a step stops after this many chunks or `STEP_BUDGET_MS`.
 */
export const CHUNKS_PER_STEP = 2;
const STEP_BUDGET_MS = 20_000;
/** Dirty products recomputed per cron tick. */
export const INCREMENTAL_BATCH = 400;
/** A running job whose cursor has not moved for this long is continued by the cron. */
const STALL_MS = 2 * 60_000;

type Cursor = { cats: string[]; ci: number; after: string; moved_at: number };
export type JobRow = { id: string; kind: string; status: string; cursor: string | null; processed: number; total: number; started_at: number; finished_at: number | null; error: string | null };
export type RebuildMessage = { type: typeof REBUILD_MESSAGE; job_id: string; occurred_at: number };

type Deps = { purger?: Purger; now?: () => number };

/** Starts a full rebuild, or returns the one already running (rebuilds are not stacked). */
export async function startRebuild(env: Env, now = Date.now()): Promise<{ job: JobRow; started: boolean }> {
  const running = await env.DB.prepare("SELECT * FROM jobs WHERE kind = ? AND status IN ('pending', 'running') ORDER BY started_at DESC LIMIT 1").bind(REBUILD_KIND).first<JobRow>();
  if (running) return { job: running, started: false };
  const scope = await rebuildScope(env);
  const cursor: Cursor = { cats: scope.categories, ci: 0, after: "", moved_at: now };
  const id = `rebuild-${now.toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
  const n = scope.total;
  await env.DB.prepare("INSERT INTO jobs (id, kind, status, cursor, processed, total, started_at) VALUES (?, ?, 'running', ?, 0, ?, ?)")
    .bind(id, REBUILD_KIND, JSON.stringify(cursor), n, now)
    .run();
  await env.EVENTS.send({ type: REBUILD_MESSAGE, job_id: id, occurred_at: now } satisfies RebuildMessage, { contentType: "json" });
  const job = await env.DB.prepare("SELECT * FROM jobs WHERE id = ?").bind(id).first<JobRow>();
  return { job: job!, started: true };
}

/**
 * Runs chunks of job `id` for up to `budgetMs`. Returns "done", "more" (call again) or "lost" (another
 * invocation moved the cursor first, or the job is not running).
 */
export async function advanceRebuild(env: Env, id: string, limits: { budgetMs: number; maxChunks: number }, deps: Deps = {}): Promise<"done" | "more" | "lost"> {
  const clock = deps.now ?? Date.now;
  const start = clock();
  let chunks = 0;
  const blocks: BlockCache = new Map();
  for (;;) {
    const job = await env.DB.prepare("SELECT * FROM jobs WHERE id = ?").bind(id).first<JobRow>();
    if (!job || job.status !== "running" || !job.cursor) return "lost";
    const cursor = JSON.parse(job.cursor) as Cursor;
    if (cursor.ci >= cursor.cats.length) {
      await env.DB.prepare("UPDATE jobs SET status = 'completed', finished_at = ? WHERE id = ? AND status = 'running'").bind(clock(), id).run();
      return "done";
    }
    const category = cursor.cats[cursor.ci]!;
    // `+status`: walk products_category_idx from the cursor, not every active product. The cursor is an id, so it
    // is a position in every partition: each returns its next CHUNK, and the merge keeps the first CHUNK of all.
    const results = await everyPartitionById<{ id: string }>(
      env,
      "SELECT id FROM products WHERE category_id = ? AND +status = 'active' AND id > ? ORDER BY id LIMIT ?",
      [category, cursor.after, CHUNK],
      CHUNK,
    );
    const ids = results.map((r) => r.id);
    if (ids.length) await recompute(env, ids, blocks, deps.purger, clock());
    const next: Cursor = ids.length < CHUNK ? { ...cursor, ci: cursor.ci + 1, after: "", moved_at: clock() } : { ...cursor, after: ids.at(-1)!, moved_at: clock() };
    const moved = await env.DB.prepare("UPDATE jobs SET cursor = ?, processed = processed + ? WHERE id = ? AND cursor = ? AND status = 'running'")
      .bind(JSON.stringify(next), ids.length, id, job.cursor)
      .run();
    if (!moved.meta.changes) return "lost";
    if (next.ci !== cursor.ci) blocks.delete(category);
    if (++chunks >= limits.maxChunks || clock() - start >= limits.budgetMs) return "more";
  }
}

/** Recomputes and stores the lists of `ids`; purges the cached answers of those whose lists changed. */
export async function recompute(env: Env, ids: string[], blocks: BlockCache, purger: Purger | undefined, now: number): Promise<string[]> {
  const computed = await computeLists(env, ids, blocks);
  const changed = await storeLists(env, computed, now);
  await purgeOwners(env, purger, await ownersWithAnswers(env.DB, changed));
  return changed;
}

/** One step of a rebuild from a queue message: run for a while, then hand the rest to the next message. */
export async function handleRebuildMessage(env: Env, msg: RebuildMessage, deps: Deps = {}): Promise<void> {
  const outcome = await advanceRebuild(env, msg.job_id, stepLimits(env), deps);
  if (outcome === "more") await env.EVENTS.send({ type: REBUILD_MESSAGE, job_id: msg.job_id, occurred_at: (deps.now ?? Date.now)() } satisfies RebuildMessage, { contentType: "json" });
}

/**
 * Production steps are small (subrequest limits). The local queue simulator stalls when a consumer chains a
 * message to its own queue more than once (and never delivers delayed messages), so outside production one
 * invocation runs the whole rebuild (local runtimes enforce no CPU or subrequest limits).
 */
function stepLimits(env: Pick<Env, "ENVIRONMENT">): { budgetMs: number; maxChunks: number } {
  return env.ENVIRONMENT === "production" ? { budgetMs: STEP_BUDGET_MS, maxChunks: CHUNKS_PER_STEP } : { budgetMs: 14 * 60_000, maxChunks: Number.POSITIVE_INFINITY };
}

/** The incremental run: recompute the dirty products (oldest first), then clear the marks that were handled. */
export async function runIncremental(env: Env, deps: Deps = {}): Promise<{ recomputed: number; changed: number }> {
  const now = (deps.now ?? Date.now)();
  const { results } = await env.DB.prepare("SELECT product_id, marked_at FROM recommendation_dirty ORDER BY marked_at LIMIT ?").bind(INCREMENTAL_BATCH).all<{ product_id: string; marked_at: number }>();
  if (!results.length) return { recomputed: 0, changed: 0 };
  const changed = await recompute(env, results.map((r) => r.product_id), new Map(), deps.purger, now);
  // A product marked again while we worked keeps its newer mark and is recomputed next time.
  await env.DB.prepare(
    // A row-value IN list is a keyed lookup per handled mark; the EXISTS form scanned the whole dirty table.
    "DELETE FROM recommendation_dirty WHERE (product_id, marked_at) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
  )
    .bind(JSON.stringify(results.map((r) => [r.product_id, r.marked_at])))
    .run();
  await env.DB.prepare("INSERT INTO meta (key, value, updated_at) VALUES ('recommendations.incremental', ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
    .bind(JSON.stringify({ at: now, recomputed: results.length, changed: changed.length }), now)
    .run();
  return { recomputed: results.length, changed: changed.length };
}

/** Cron: the incremental run, and a push for a rebuild whose message chain broke. */
export async function recommendationsTick(env: Env, deps: Deps = {}): Promise<void> {
  const now = (deps.now ?? Date.now)();
  await runIncremental(env, deps);
  const running = await env.DB.prepare("SELECT * FROM jobs WHERE kind = ? AND status = 'running' ORDER BY started_at LIMIT 1").bind(REBUILD_KIND).first<JobRow>();
  if (running?.cursor && now - (JSON.parse(running.cursor) as Cursor).moved_at > STALL_MS) {
    const outcome = await advanceRebuild(env, running.id, stepLimits(env), deps);
    if (outcome === "more") await env.EVENTS.send({ type: REBUILD_MESSAGE, job_id: running.id, occurred_at: now } satisfies RebuildMessage, { contentType: "json" });
  }
}

/** Progress and last finished run, for /admin/metrics. */
export async function recommendationMetrics(d1: D1Database) {
  const [running, finished, dirty, incremental] = await d1.batch([
    d1.prepare("SELECT * FROM jobs WHERE kind = ? AND status = 'running' ORDER BY started_at DESC LIMIT 1").bind(REBUILD_KIND),
    d1.prepare("SELECT * FROM jobs WHERE kind = ? AND status = 'completed' ORDER BY finished_at DESC LIMIT 1").bind(REBUILD_KIND),
    d1.prepare("SELECT count(*) AS n FROM recommendation_dirty"),
    d1.prepare("SELECT value FROM meta WHERE key = 'recommendations.incremental'"),
  ]);
  const view = (j: JobRow | undefined) =>
    j
      ? {
          id: j.id,
          status: j.status,
          processed: j.processed,
          total: j.total,
          started_at: new Date(j.started_at).toISOString(),
          finished_at: j.finished_at ? new Date(j.finished_at).toISOString() : null,
          duration_ms: j.finished_at ? j.finished_at - j.started_at : null,
        }
      : null;
  const inc = (incremental!.results[0] as { value: string } | undefined)?.value;
  const last = inc ? (JSON.parse(inc) as { at: number; recomputed: number; changed: number }) : null;
  return {
    rebuild_running: view(running!.results[0] as JobRow | undefined),
    last_rebuild: view(finished!.results[0] as JobRow | undefined),
    dirty_products: (dirty!.results[0] as { n: number }).n,
    last_incremental: last ? { at: new Date(last.at).toISOString(), recomputed: last.recomputed, changed: last.changed } : null,
  };
}
