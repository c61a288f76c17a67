/**
 * promotion.started / promotion.ended: one event for every change of "is this promotion in force" that a shopper
 * could see. Such a change has two causes, and each is recorded by whoever causes it:
 *
 * - the clock reaching a boundary of the row as written (the switcher, for boundaries in its window `(from, to]`;
 *   id `msg_<type>_<promotion>_<boundary ms>`). Only boundaries AFTER the row's last write count: a boundary at or
 *   before the write that set it (a start "30 s ago", an end moved into the past) was already in force when written;
 * - a write changing it at once (created with a start already past, ends_at moved into the past, a start moved to
 *   the future, DELETE while active; id `msg_<type>_<promotion>_v<version>`). The write's batch records it, and
 *   first the clock's boundaries of the row it replaces that the switcher has not reached yet (its watermark), since
 *   after the write the switcher only sees the new row.
 *
 * Ids are deterministic and inserted OR IGNORE, so re-runs of the switcher and the write's catch-up of a boundary
 * the switcher also records add nothing.
 */
import type { PromotionInput, PromotionRow } from "../promotions/store";
import { statusAt } from "../promotions/store";
import { SWITCHED_THROUGH, FIRST_RUN_LOOKBACK_MS } from "../promotions/watermark";
import { sqlIso, subscribedSql } from "./event-types";

type PromotionEvent = "promotion.started" | "promotion.ended";
const BOUNDARIES = [
  { type: "promotion.started", column: "starts_at" },
  { type: "promotion.ended", column: "ends_at" },
] as const;

/** The body receivers get, from row `p`; `atSql` is the event's instant in epoch ms. */
const payloadSql = (type: PromotionEvent, atSql: string) =>
  `json_object('type', '${type}', 'timestamp', ${sqlIso(atSql)}, 'data', json_object(
     'id', p.id, 'name', p.name, 'starts_at', ${sqlIso("p.starts_at")},
     'ends_at', CASE WHEN p.ends_at IS NULL THEN NULL ELSE ${sqlIso("p.ends_at")} END, 'priority', p.priority,
     'target', json_object('type', p.target_type, 'values', json(p.target_values)),
     'value_type', p.value_type, 'value', json(p.value), 'currencies', json(p.currencies), 'markets', json(p.markets)))`;

/** One event per row of `promotions p` matching `where`, id `msg_<type>_<promotion><idSuffixSql>`, at `atSql`. */
const insertEventSql = (type: PromotionEvent, idSuffixSql: string, atSql: string, where: string) =>
  `INSERT OR IGNORE INTO webhook_events (id, type, payload, created_at)
   SELECT 'msg_${type}_' || p.id || ${idSuffixSql}, '${type}', ${payloadSql(type, atSql)}, ?2
   FROM promotions p
   WHERE ${where} AND ${subscribedSql(`'${type}'`)}`;

/** The clock's transitions of rows matching `where`: boundaries in (`fromSql`, ?2] reached after the row's last write. */
const clockSql = (type: PromotionEvent, column: "starts_at" | "ends_at", fromSql: string, where: string) =>
  insertEventSql(type, `'_' || p.${column}`, `p.${column}`, `${where} AND p.${column} > max(${fromSql}, p.updated_at) AND p.${column} <= ?2`);

/** The switcher's part: every live promotion's boundaries in (from, to]. */
export function promotionBoundaryStatements(db: D1Database, from: number, to: number): D1PreparedStatement[] {
  return BOUNDARIES.map(({ type, column }) => db.prepare(clockSql(type, column, "?1", "p.deleted_at IS NULL")).bind(from, to));
}

/** What a write that commits at `now` replaces (nothing for a create) and what it stores (nothing for a delete). */
export type PromotionTransition = { id: string; before: PromotionRow | null; after: PromotionInput | null; version: number };

/**
 * The write's part, as statements for its directory batch: `first` runs before the row changes (the clock's
 * boundaries of the old version the switcher has not recorded yet), `last` after it (the write's own change).
 */
export function promotionWriteEventStatements(db: D1Database, t: PromotionTransition, now: number): { first: D1PreparedStatement[]; last: D1PreparedStatement[] } {
  const first: D1PreparedStatement[] = [];
  if (t.before) {
    // Read inside the batch: a switcher run that committed meanwhile moves it, and anything below it is recorded.
    const watermark = `coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = '${SWITCHED_THROUGH}'), ?2 - ${FIRST_RUN_LOOKBACK_MS})`;
    for (const { type, column } of BOUNDARIES) {
      first.push(db.prepare(clockSql(type, column, watermark, "p.id = ?1 AND p.version = ?3 AND p.deleted_at IS NULL")).bind(t.id, now, t.before.version));
    }
  }
  const wasActive = t.before !== null && statusAt(t.before, now) === "active";
  const isActive = t.after !== null && statusAt(t.after, now) === "active";
  if (wasActive === isActive) return { first, last: [] };
  const type: PromotionEvent = isActive ? "promotion.started" : "promotion.ended";
  // A deleted row keeps its columns: the event describes the promotion that stopped.
  const last = db.prepare(insertEventSql(type, "'_v' || p.version", "?2", "p.id = ?1 AND p.version = ?3")).bind(t.id, now, t.version);
  return { first, last: [last] };
}
