/**
 * Bulk product import (NDJSON or CSV, one product per line), all-or-nothing at any size and over every catalog
 * partition (docs/storage.md, "Imports at scale").
 *
 * An import is one upload (`runImport`) or a session of parts: `createImport`, `uploadPart` × k, `commitImport`.
 *   1. each part is received line by line and validated (receive.ts), and staged chunk by chunk in the partitions of
 *      its products; new products are written ahead as pending rows that no reader shows (stage.ts, visibility.ts);
 *   2. the commit switches the import on the directory in one batch, then rolls the other partitions forward and
 *      finalizes in bounded steps, in this invocation while its query budget lasts, else in the next commit call or
 *      the cron (publish.ts).
 * A failure before the switch aborts the import: it is pruned and nothing of it was ever visible. After the
 * switch, every step rolls forward. The SHA-256 of a single upload makes re-sending the same file a no-op.
 */
import { ApiError } from "../lib/errors";
import { meterQueries } from "../lib/query-meter";
import { supportedCurrencies } from "../catalog/locale";
import { partitionCount, allCatalogDbs } from "../db/partitions";
import { isUniqueError } from "../db/guards";
import { now as clockNow } from "../lib/clock";
import { CHUNK_LINES, chunkLines, PartTooLarge, receivePart, type AcceptedLine, type ChunkEnv, type ImportFormat, type Rejection } from "./receive";
import { stageChunk } from "./stage";
import { releaseImportProductClaims } from "../catalog/sku-claims";
import { checkSwitchSize, slugClashes, finalizeImport, rollImportForward, rollingImports, ImportTooManyUpdates, MAX_REPORTED_ERRORS, MAX_UPDATE_CHUNKS, mergedLinesSql, pruneImport, switchImport, type Budget, type Outbox } from "./publish";

export type { ImportFormat, Rejection };
export { CHUNK_LINES as PUBLISH_CHUNK_LINES };

type ImportEnv = Pick<Env, "DB" | "SUPPORTED_CURRENCIES" | "CATALOG_PARTITIONS" | "IMPORT_TRACE"> & ChunkEnv;

export type ImportResult = {
  import_id: string;
  status: string;
  format: ImportFormat;
  total_lines: number;
  accepted: number;
  rejected_count: number;
  /** The first MAX_REPORTED_ERRORS rejections, by line number. */
  rejected: Rejection[];
  /** Set when this file was imported before: nothing was written again. */
  duplicate_of?: string;
  parts: number;
  created_at: number;
  published_at: number | null;
  finished_at: number | null;
  /** Staging rows not yet finalized, over every partition. */
  staged?: number;
  /** Changes published without their new slug (another product took it after the checks): only when there are some. */
  slugs_kept?: SlugKept[];
};

export type SlugKept = { line: number; product_id: string; slug: string; kept: string; taken_by: string };

export type PartResult = { import_id: string; part: number; total_lines: number; accepted: number; rejected_count: number; rejected: Rejection[] };

/**
 * D1 statements one invocation spends on an import (production: 1,000 queries per invocation, each statement of a
 * batch counted), leaving room for the request's other reads.
 */
export const QUERY_BUDGET = 950;
/** Per chunk of a part: 3 clash checks in each partition, then a staging batch of about 7 statements per partition. */
const STAGE_STATEMENTS_PER_PARTITION = 10;
/** The staging share of an upload's budget; the rest is for a single upload's switch and finalization. */
const STAGE_BUDGET = 600;

/** Most lines of one part (one upload): its staging must fit one invocation. 108,000 with one partition, 56,000 with two. */
export function maxPartLines(env: Pick<Env, "DB"> & { CATALOG_PARTITIONS?: string } & ChunkEnv): number {
  return chunkLines(env) * Math.floor(STAGE_BUDGET / (STAGE_STATEMENTS_PER_PARTITION * partitionCount(env) + 1));
}
/** The largest single upload with one partition. */
export const MAX_IMPORT_LINES = CHUNK_LINES * Math.floor(STAGE_BUDGET / (STAGE_STATEMENTS_PER_PARTITION + 1));
/** Changes to existing products one partition's switch can publish. */
const maxUpdatesPerPartition = (env: ChunkEnv) => MAX_UPDATE_CHUNKS * chunkLines(env);

/** Opens an import that takes parts until it is committed. */
export async function createImport(env: ImportEnv, format: ImportFormat, now = Date.now()): Promise<ImportResult> {
  const id = crypto.randomUUID();
  await env.DB.prepare("INSERT INTO imports (id, content_hash, format, status, created_at, updated_at) VALUES (?, '', ?, 'open', ?, ?)").bind(id, format, now, now).run();
  return (await getImport(env, id))!;
}

type ImportRow = {
  id: string; format: ImportFormat; status: string; total_lines: number; accepted: number; rejected: number; errors: string; parts: number;
  created_at: number; published_at: number | null; finished_at: number | null; slugs_kept: string;
};

async function importRow(env: Pick<Env, "DB">, id: string): Promise<ImportRow | null> {
  return env.DB.prepare(
    "SELECT id, format, status, total_lines, accepted, rejected, errors, parts, created_at, published_at, finished_at, slugs_kept FROM imports WHERE id = ?",
  )
    .bind(id)
    .first<ImportRow>();
}

/** The import's status as it is now (undefined: no such import): re-read wherever another invocation may have moved it. */
async function importStatus(env: Pick<Env, "DB">, id: string): Promise<string | undefined> {
  return (await env.DB.prepare("SELECT status FROM imports WHERE id = ?").bind(id).first<{ status: string }>())?.status;
}

/** Receives part `part` of an open import. Any failure aborts the whole import: a part is never half in it. */
export async function uploadPart(env: ImportEnv, importId: string, part: number, body: ReadableStream<Uint8Array>, format?: ImportFormat, now = Date.now()): Promise<PartResult> {
  const db = env.DB;
  const row = await importRow(env, importId);
  if (!row) throw ApiError.notFound("No such import.");
  if (row.status !== "open" && row.status !== "receiving") {
    throw new ApiError(409, "conflict", "Conflict", `The import is ${row.status}: it takes no more parts.`, { status: row.status });
  }
  try {
    const claimed = await db
      .prepare("INSERT INTO import_parts (import_id, part, status, received_at) SELECT ?1, ?2, 'receiving', ?3 WHERE EXISTS (SELECT 1 FROM imports WHERE id = ?1 AND status IN ('open', 'receiving'))")
      .bind(importId, part, now)
      .run();
    // A commit (or the cron's abort) that moved the status since the read above: staging now would write into an
    // import that is being published or discarded.
    if (claimed.meta.changes !== 1) throw new ApiError(409, "conflict", "Conflict", "The import was committed or aborted meanwhile: it takes no more parts.");
  } catch (err) {
    if (isUniqueError(err, "import_parts")) throw new ApiError(409, "conflict", "Conflict", `Part ${part} of this import was uploaded already.`, { part });
    throw err;
  }

  const categoryRows = await db.prepare("SELECT id FROM categories").all<{ id: string }>();
  const categoryIds = new Set(categoryRows.results.map((r) => r.id));
  const rejected: Rejection[] = [];
  let rejectedCount = 0;
  let accepted = 0;
  const touched = new Set<string>();
  const reject = (line: number, error: string) => {
    rejectedCount += 1;
    if (rejected.length < MAX_REPORTED_ERRORS) rejected.push({ line, error });
  };
  let totalLines = 0;
  try {
    totalLines = await receivePart(body, {
      part,
      format: format ?? row.format,
      maxLines: maxPartLines(env),
      chunkLines: chunkLines(env),
      categoryIds,
      currencies: new Set(supportedCurrencies(env)),
      reject,
      onChunk: async (rows: AcceptedLine[]) => {
        // Another part's failure or the cron may have aborted the import while this part streamed: staging more
        // would leave pending products in an import whose prune has run.
        const live = await importStatus(env, importId);
        if (live !== "open" && live !== "receiving") throw new ImportGone(live ?? "gone");
        const outcome = await stageChunk(env, importId, part, rows, now);
        for (const r of outcome.rejections) reject(r.line, r.error);
        const bad = new Set(outcome.rejections.map((r) => r.line));
        for (const r of rows) if (!bad.has(r.line)) touched.add(r.categoryId);
        accepted += outcome.staged;
      },
    });
  } catch (err) {
    await abortImport(env, importId, `part ${part}: ${String((err as Error)?.message ?? err)}`, { left: QUERY_BUDGET / 2 });
    if (err instanceof ImportGone) {
      // Chunks this part staged after the abort's prune had passed them: pruned again (idempotent), then released.
      if (err.status === "aborting" || err.status === "failed") await pruneImport(env, importId, { left: QUERY_BUDGET / 2 }).catch(() => {});
      throw new ApiError(409, "conflict", "Conflict", `The import was ${err.status === "failed" || err.status === "aborting" ? "aborted" : err.status} while this part was uploading: nothing of this part is kept.`, { status: err.status });
    }
    if (err instanceof PartTooLarge) {
      throw new ApiError(413, "payload-too-large", "Payload Too Large", `One upload holds at most ${err.limit} lines: send a larger import as several parts (POST /admin/imports, then PUT /admin/imports/{id}/parts/{n}).`, {
        limit_lines: err.limit,
      });
    }
    throw err;
  }
  rejected.sort((a, b) => a.line - b.line);
  await db.batch([
    db.prepare("UPDATE import_parts SET status = 'received', total_lines = ?3, accepted = ?4, rejected = ?5 WHERE import_id = ?1 AND part = ?2").bind(importId, part, totalLines, accepted, rejectedCount),
    db
      .prepare(
        `UPDATE imports SET parts = parts + 1, total_lines = total_lines + ?2, accepted = accepted + ?3, rejected = rejected + ?4, updated_at = ?7,
           errors = ${mergedLinesSql("errors", "?5")},
           categories = (SELECT json_group_array(value) FROM (SELECT value FROM json_each(imports.categories) UNION SELECT value FROM json_each(?6)))
         WHERE id = ?1`,
      )
      .bind(importId, totalLines, accepted, rejectedCount, JSON.stringify(rejected), JSON.stringify([...touched]), Date.now()),
  ]);
  return { import_id: importId, part, total_lines: totalLines, accepted, rejected_count: rejectedCount, rejected };
}

class ImportGone extends Error {
  constructor(readonly status: string) {
    super(`the import is ${status}`);
  }
}

/** Marks the import aborted and prunes what it wrote while the budget lasts (the cron prunes the rest). */
async function abortImport(env: ImportEnv, importId: string, error: string, budget: Budget): Promise<void> {
  const db = env.DB;
  const at = Date.now();
  await db
    .prepare(
      `UPDATE imports SET status = 'aborting', updated_at = ?3,
         errors = (SELECT json_group_array(json(value)) FROM (SELECT value FROM json_each(imports.errors) UNION ALL SELECT json_object('line', 0, 'error', ?2)) LIMIT ${MAX_REPORTED_ERRORS})
       WHERE id = ?1 AND status IN ('open', 'receiving', 'publishing')`,
    )
    .bind(importId, error, at)
    .run()
    .catch(() => {});
  // Only an import marked aborting is pruned: when the UPDATE above matched nothing (the switch had committed
  // although its call reported an error, or another commit switched it), its products are published and stay.
  const status = await importStatus(env, importId).catch(() => null);
  if (status !== "aborting") return;
  await continueAbort(env, importId, budget).catch(() => {});
}

/** Prunes an import whose status is `aborting` (the caller has read it). */
async function continueAbort(env: ImportEnv, importId: string, budget: Budget): Promise<void> {
  if (await pruneImport(env, importId, budget)) {
    await env.DB.prepare("UPDATE imports SET status = 'failed', finished_at = ?2, updated_at = ?2 WHERE id = ?1 AND status = 'aborting'").bind(importId, Date.now()).run();
  }
}

/**
 * Commits an import: the switch, then as much of the finalization as the budget allows. Idempotent: calling it
 * again on a published import continues its finalization. Returns the import and the events to send.
 */
export async function commitImport(env: ImportEnv, importId: string, budget: Budget = { left: QUERY_BUDGET }): Promise<ImportResult & { outbox: Outbox }> {
  const db = env.DB;
  const outbox: Outbox = [];
  const row = await importRow(env, importId);
  if (!row) throw ApiError.notFound("No such import.");
  if (row.status === "failed" || row.status === "aborting") {
    throw new ApiError(409, "conflict", "Conflict", "The import failed and was discarded: start a new one.", { status: row.status, rejected: JSON.parse(row.errors) as Rejection[] });
  }
  if (row.status === "open" || row.status === "receiving") {
    const claimed = await db
      .prepare(
        `UPDATE imports SET status = 'publishing', updated_at = ?2 WHERE id = ?1 AND status IN ('open', 'receiving')
           AND NOT EXISTS (SELECT 1 FROM import_parts WHERE import_id = ?1 AND status = 'receiving')`,
      )
      .bind(importId, Date.now())
      .run();
    if (claimed.meta.changes === 0) {
      const again = await importRow(env, importId);
      if (again?.status === "open" || again?.status === "receiving") throw new ApiError(409, "conflict", "Conflict", "A part of this import is still being uploaded.");
    }
    try {
      await checkSwitchSize(env, importId);
    } catch (err) {
      await abortImport(env, importId, String((err as Error).message), budget);
      if (err instanceof ImportTooManyUpdates) {
        throw new ApiError(413, "payload-too-large", "Payload Too Large", `An import changes at most ${maxUpdatesPerPartition(env)} existing products per catalog partition (new products are not limited): split the changes over several imports.`, {
          limit_updates: maxUpdatesPerPartition(env),
        });
      }
      throw err;
    }
  }
  const published = await continueImport(env, importId, budget, outbox);
  try {
    return { ...(await getImport(env, importId))!, outbox };
  } catch (err) {
    if (!published) throw err;
    // The import is published and the cron finishes it: a failed read of its state (the invocation's queries spent,
    // a blip) must not tell the client it failed, which would make it send the file again as a new import.
    console.warn(JSON.stringify({ level: "warn", message: "import published but its state could not be read", import_id: importId, error: String(err) }));
    return { ...resultOf(row), status: "finalizing", published_at: row.published_at ?? Date.now(), outbox };
  }
}

/** Drops, before the switch, the staged changes whose new slug is taken (publish.ts, slugClashes), and reports their lines. */
async function rejectSlugClashes(env: ImportEnv, importId: string, budget: Budget): Promise<void> {
  const dbs = allCatalogDbs(env);
  const clashes = await slugClashes(env, importId);
  budget.left -= dbs.length;
  if (clashes.length === 0) return;
  budget.left -= dbs.length + 1;
  const dropped = await Promise.all(
    dbs.map(async (db, p) => {
      const lines = clashes.filter((c) => c.partition === p).map((c) => c.line);
      if (lines.length === 0) return [];
      const { results } = await db.prepare("DELETE FROM import_rows WHERE import_id = ?1 AND line IN (SELECT value FROM json_each(?2)) RETURNING product_id").bind(importId, JSON.stringify(lines)).all<{ product_id: string }>();
      return results.map((r) => r.product_id);
    }),
  );
  // The SKUs these changes claimed at staging (N > 1) are no one's now: free them at once, not after the orphan takeover.
  const products = dropped.flat();
  if (products.length > 0 && dbs.length > 1) {
    budget.left -= 1;
    await releaseImportProductClaims(env, importId, products);
  }
  const rejected = clashes.map(({ line, error }) => ({ line, error }));
  await env.DB.prepare(`UPDATE imports SET accepted = accepted - ?2, rejected = rejected + ?2, errors = ${mergedLinesSql("errors", "?3")}, updated_at = ?4 WHERE id = ?1`)
    .bind(importId, rejected.length, JSON.stringify(rejected), Date.now())
    .run();
}

/** One step of whatever the import needs next; shared by commits and the cron. True when the import is published. */
async function continueImport(env: ImportEnv, importId: string, budget: Budget, outbox: Outbox): Promise<boolean> {
  const status = await importStatus(env, importId);
  if (status === "completed") return true;
  if (status === "publishing") {
    // Imports switched earlier and still rolling forward go first: the switch waits for them (publish.ts, NONE_ROLLING),
    // so every partition applies imports in switch order. One that cannot be rolled forward now leaves this import
    // publishing (202): the next commit call or the cron tries again.
    for (const earlier of await rollingImports(env, importId)) {
      const rolled = await rollImportForward(env, earlier, clockNow(), budget, outbox).catch((err) => {
        console.warn(JSON.stringify({ level: "warn", message: "an earlier import's roll-forward failed; this import waits for it", import_id: importId, earlier, error: String(err) }));
        return false;
      });
      if (!rolled) return false;
    }
    try {
      // Before every attempt at the switch (a commit that crashed after claiming the import, or the cron, retries it).
      await rejectSlugClashes(env, importId, budget);
      // The clock, not Date.now(): which promotions are live (retargeting) is decided at this instant.
      const outcome = await switchImport(env, importId, clockNow(), budget, outbox);
      // Deferred (out of budget): nothing is published yet, so nothing may be finalized; the next call switches.
      if (outcome === "deferred") return false;
      // Lost: another invocation moved the status first, which may have been an abort (finalize only what was switched),
      // or another import started rolling forward in between (still publishing: the next attempt rolls it forward first).
      if (outcome === "lost") {
        const now = await importStatus(env, importId);
        if (now === "completed") return true;
        if (now !== "finalizing") return false;
      }
    } catch (err) {
      // The switch is one transaction: it failed whole, so the import was never visible. Abort it.
      await abortImport(env, importId, `publish failed: ${String((err as Error)?.message ?? err)}`, budget);
      throw err;
    }
  } else if (status === "aborting") {
    await continueAbort(env, importId, budget);
    return false;
  } else if (status !== "finalizing") {
    return false;
  }
  try {
    await finalizeImport(env, importId, clockNow(), budget, outbox);
  } catch (err) {
    // Published already: the import is visible and complete for readers; what is left is rolled forward later.
    console.warn(JSON.stringify({ level: "warn", message: "import finalization step failed; the cron continues it", import_id: importId, error: String(err) }));
  }
  return true;
}

/**
 * A single upload: an import of one part, committed at once. Re-sending a file imported before (same SHA-256)
 * writes nothing and answers the first import's result.
 */
export async function runImport(realEnv: ImportEnv, body: ReadableStream<Uint8Array>, format: ImportFormat, now = Date.now()): Promise<ImportResult & { outbox: Outbox }> {
  // Staging's cost depends on the file (chunks, partitions, clash re-checks): counted, so that the commit in this
  // same invocation gets what is really left of it.
  const meter = meterQueries(realEnv);
  const env = meter.env;
  const db = env.DB;
  const importId = crypto.randomUUID();
  await db.prepare("INSERT INTO imports (id, content_hash, format, status, created_at, updated_at) VALUES (?, '', ?, 'receiving', ?, ?)").bind(importId, format, now, now).run();
  const digest = new crypto.DigestStream("SHA-256");
  const [forLines, forHash] = body.tee();
  const hashed = forHash.pipeTo(digest);
  await uploadPart(env, importId, 1, forLines, format, now);
  await hashed;
  const contentHash = [...new Uint8Array(await digest.digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const previous = await db.prepare("SELECT id FROM imports WHERE content_hash = ? AND status = 'completed' ORDER BY created_at LIMIT 1").bind(contentHash).first<{ id: string }>();
  if (previous) {
    // The same bytes were imported before, so the catalog already holds them: drop this one without a trace.
    const budget = { left: QUERY_BUDGET / 2 };
    await db.prepare("UPDATE imports SET status = 'aborting' WHERE id = ?").bind(importId).run();
    if (await pruneImport(env, importId, budget)) await db.batch([db.prepare("DELETE FROM import_parts WHERE import_id = ?").bind(importId), db.prepare("DELETE FROM imports WHERE id = ?").bind(importId)]);
    return { ...(await getImport(env, previous.id))!, duplicate_of: previous.id, outbox: [] };
  }
  await db.prepare("UPDATE imports SET content_hash = ? WHERE id = ?").bind(contentHash, importId).run();
  return commitImport(realEnv, importId, { left: QUERY_BUDGET - meter.spent() });
}

export async function getImport(env: Pick<Env, "DB"> & { CATALOG_PARTITIONS?: string }, id: string): Promise<ImportResult | null> {
  const row = await importRow(env, id);
  if (!row) return null;
  const staged = await Promise.all(allCatalogDbs(env).map((db) => db.prepare("SELECT count(*) AS n FROM import_rows WHERE import_id = ?").bind(id).first<{ n: number }>()));
  return { ...resultOf(row), staged: staged.reduce((n, r) => n + (r?.n ?? 0), 0) };
}

function resultOf(row: ImportRow): ImportResult {
  const kept = JSON.parse(row.slugs_kept) as SlugKept[];
  return {
    import_id: row.id,
    status: row.status,
    format: row.format,
    total_lines: row.total_lines,
    accepted: row.accepted,
    rejected_count: row.rejected,
    rejected: JSON.parse(row.errors) as Rejection[],
    parts: row.parts,
    created_at: row.created_at,
    published_at: row.published_at,
    finished_at: row.finished_at,
    ...(kept.length > 0 ? { slugs_kept: kept } : {}),
  };
}

/** Imports left unfinished by their requests (a crash, a spent budget): how long the cron leaves them to their request. */
const IDLE_MS = 20_000;
/** An upload that has not finished after this long has died with its request: its import is aborted. */
const STALE_PART_MS = 15 * 60_000;
/** An open import nobody committed after this long is aborted. */
const STALE_OPEN_MS = 24 * 3_600_000;

/** The cron's usual share of its invocation for imports; the rest of its queries go to its other jobs. */
export const CRON_IMPORT_SHARE = 400;
/**
 * What the cron adds when an import's next indivisible batch (a switch, a roll-forward: up to MAX_SWITCH_STATEMENTS)
 * needs more than its share; its other jobs then wait for the next minute. Share + reserve = QUERY_BUDGET, which
 * holds the largest batch and the statements before it (slug checks, reads), so no import waits for a budget that
 * never comes.
 */
export const CRON_IMPORT_RESERVE = QUERY_BUDGET - CRON_IMPORT_SHARE;

/**
 * Cron: continues published imports, prunes aborted ones and aborts abandoned ones, oldest first (the first one
 * of a tick can always draw the reserve, so each tick moves the oldest import forward). An import still rolling
 * forward is continued at once, not after IDLE_MS: readers wait for it (published-view.ts), and a roll-forward
 * racing its own request is harmless (each partition's batch is applied once). Returns the events to send;
 * `budget.drewReserve` tells the caller to skip its other work this time.
 */
export async function importsTick(env: ImportEnv, now = Date.now(), budget: Budget = { left: CRON_IMPORT_SHARE, reserve: CRON_IMPORT_RESERVE }): Promise<Outbox> {
  const outbox: Outbox = [];
  const { results } = await env.DB.prepare(
    `SELECT id, status, created_at FROM imports WHERE status IN ('publishing', 'finalizing', 'aborting')
       AND (updated_at < ?1 OR id IN (SELECT import_id FROM import_visibility WHERE rolling = 1))
     UNION ALL SELECT id, 'stale', created_at FROM imports WHERE status IN ('open', 'receiving') AND (updated_at < ?2
       OR EXISTS (SELECT 1 FROM import_parts p WHERE p.import_id = imports.id AND p.status = 'receiving' AND p.received_at < ?3))
     ORDER BY created_at, id LIMIT 5`,
  )
    .bind(now - IDLE_MS, now - STALE_OPEN_MS, now - STALE_PART_MS)
    .all<{ id: string; status: string }>();
  for (const r of results) {
    if (budget.left < 50) break;
    if (r.status === "stale") await abortImport(env, r.id, "abandoned: not committed, or an upload never finished", budget);
    else await continueImport(env, r.id, budget, outbox).catch((err) => console.error(JSON.stringify({ level: "error", job: "imports", import_id: r.id, error: String(err) })));
  }
  return outbox;
}


