/**
 * Retention of a stock shard's history, run from the shard's alarm. Without it `ledger`, `holds`,
 * `reservations` and `adjustments` grow with every checkout for ever (10 GB per object in production).
 *
 * - Ledger: rows older than the ledger window are folded, per (SKU, location, kind, reason), into the newest of
 *   them, which keeps the summed deltas (a snapshot row, `actor = 'retention'`). Summing the deltas per location
 *   still gives the current counts, and per-kind sums (commits, escrow moves) stay exact. The kept row's
 *   `*_after` columns describe its own moment only.
 * - Reservations that finished (committed, released, expired, failed) more than the idempotency window ago are
 *   deleted, with their released, expired or committed hold rows, owner rows and saga rows: a retry of their
 *   Idempotency-Key after the window is a new checkout, which is what the window promises.
 * - Hold rows here of reservations coordinated anywhere are deleted once they are older than the window and no
 *   longer live, but never while their reservation is unfinished: a commit still `committing` is completed by
 *   re-sending it to every shard, and a shard that committed already knows so only by its `committed` hold row
 *   (without it, the re-sent commit would take the units a second time). The shard asks the coordinators first
 *   (`retentionHoldCandidates`, then `applyRetention` with the unfinished ones kept).
 * - Adjustment records (event-id deduplication of stock adjustments) older than the window are deleted.
 * - Shopper tally rows (src/stock/shopper-tally.ts) past their deadline are deleted: admissions sweep a few per
 *   call, this catches the rest on a shard that stopped admitting.
 *
 * Each run does a bounded slice of work, so one alarm never holds the object for long; the next alarm goes on.
 */

import { ShopperTally } from "./shopper-tally";

export type RetentionPolicy = {
  /** Ledger rows older than this are folded into snapshot rows. */
  ledgerWindowMs: number;
  /** Finished reservations, their holds and adjustment records older than this are deleted. */
  idempotencyWindowMs: number;
  /** Upper bound of groups or rows handled per table per run. */
  batch: number;
  /** Minimum time between two runs on one shard. */
  everyMs: number;
};

const DAY = 86_400_000;
export const DEFAULT_RETENTION: RetentionPolicy = { ledgerWindowMs: 30 * DAY, idempotencyWindowMs: DAY, batch: 500, everyMs: 60_000 };

/** `"ledger_days=30,idempotency_hours=24"` (vars `STOCK_RETENTION`); missing or malformed parts keep the defaults. */
export function retentionPolicy(text: string | undefined): RetentionPolicy {
  const out = { ...DEFAULT_RETENTION };
  for (const part of (text ?? "").split(",")) {
    const [name, value] = part.split("=").map((s) => s.trim());
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) continue;
    if (name === "ledger_days") out.ledgerWindowMs = n * DAY;
    if (name === "idempotency_hours") out.idempotencyWindowMs = n * 3_600_000;
  }
  return out;
}

export type RetentionResult = { ledgerRowsFolded: number; reservations: number; holds: number; adjustments: number; tallyRows: number };

const FINISHED = "('committed', 'released', 'expired', 'failed')";

/** Reservations with hold rows here that retention would delete: ask their coordinators which are unfinished. */
export function retentionHoldCandidates(sql: SqlStorage, now: number, policy: RetentionPolicy): string[] {
  return sql
    .exec<{ reservation_id: string }>("SELECT DISTINCT reservation_id FROM holds WHERE state <> 'held' AND created_at < ? LIMIT ?", now - policy.idempotencyWindowMs, policy.batch)
    .toArray()
    .map((r) => r.reservation_id);
}

/**
 * One slice of retention work; run inside the shard's transaction (it only reads and writes this object's SQLite).
 * `unfinished`: reservations (among the candidates) whose coordinator has not finished them; their holds stay.
 */
export function applyRetention(sql: SqlStorage, now: number, policy: RetentionPolicy, unfinished: readonly string[]): RetentionResult {
  const ledgerCutoff = now - policy.ledgerWindowMs;
  const idemCutoff = now - policy.idempotencyWindowMs;
  let ledgerRowsFolded = 0;
  const groups = sql
    .exec<{ sku: string; location: string; kind: string; reason: string | null; keep: number; d_on: number; d_res: number; n: number }>(
      `SELECT sku, location, kind, reason, MAX(id) AS keep, SUM(delta_on_hand) AS d_on, SUM(delta_reserved) AS d_res, COUNT(*) AS n
       FROM ledger WHERE at < ? GROUP BY sku, location, kind, reason HAVING COUNT(*) > 1 LIMIT ?`,
      ledgerCutoff,
      policy.batch,
    )
    .toArray();
  for (const g of groups) {
    sql.exec(
      "UPDATE ledger SET delta_on_hand = ?, delta_reserved = ?, reservation_id = NULL, event_id = NULL, actor = 'retention' WHERE id = ?",
      g.d_on,
      g.d_res,
      g.keep,
    );
    ledgerRowsFolded += sql.exec(
      "DELETE FROM ledger WHERE sku = ? AND location = ? AND kind = ? AND reason IS ? AND at < ? AND id < ?",
      g.sku,
      g.location,
      g.kind,
      g.reason,
      ledgerCutoff,
      g.keep,
    ).rowsWritten;
  }

  const done = sql
    .exec<{ id: string }>(`SELECT id FROM reservations WHERE status IN ${FINISHED} AND updated_at < ? LIMIT ?`, idemCutoff, policy.batch)
    .toArray()
    .map((r) => r.id);
  let holds = 0;
  if (done.length) {
    const ids = JSON.stringify(done);
    holds += sql.exec("DELETE FROM holds WHERE state <> 'held' AND reservation_id IN (SELECT value FROM json_each(?))", ids).rowsWritten;
    sql.exec("DELETE FROM hold_owners WHERE reservation_id IN (SELECT value FROM json_each(?)) AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.reservation_id = hold_owners.reservation_id AND h.state = 'held')", ids);
    sql.exec("DELETE FROM reservation_sagas WHERE id IN (SELECT value FROM json_each(?))", ids);
    sql.exec("DELETE FROM reservations WHERE id IN (SELECT value FROM json_each(?))", ids);
  }
  // Hold rows of reservations coordinated anywhere: no longer live, older than the window, and finished.
  holds += sql.exec(
    `DELETE FROM holds WHERE (reservation_id, sku, location) IN
       (SELECT reservation_id, sku, location FROM holds WHERE state <> 'held' AND created_at < ?
          AND reservation_id NOT IN (SELECT value FROM json_each(?)) LIMIT ?)`,
    idemCutoff,
    JSON.stringify(unfinished),
    policy.batch,
  ).rowsWritten;
  const adjustments = sql.exec(
    "DELETE FROM adjustments WHERE event_id IN (SELECT event_id FROM adjustments WHERE applied_at < ? LIMIT ?)",
    idemCutoff,
    policy.batch,
  ).rowsWritten;
  const tallyRows = new ShopperTally(sql).sweep(now, policy.batch);
  return { ledgerRowsFolded, reservations: done.length, holds, adjustments, tallyRows };
}
