/**
 * Guards a D1 batch relies on, and how to recognise the errors they raise. A batch is one transaction, so a
 * guard that fails rolls back every statement in it: the write either happened whole or not at all.
 */

/** Message of the constraint error the OCC guard raises; see `occGuard`. */
const GUARD_ERROR = "NOT NULL constraint failed: meta.value";

/**
 * Aborts the batch when the statement just before it changed no row (the conditional UPDATE lost the race).
 * SQLite has no RAISE outside triggers, so the guard inserts a NULL into a NOT NULL column only in that
 * case: the constraint error rolls the whole batch back. `changes()` ignores rows touched by triggers.
 */
export function occGuard(db: D1Database): D1PreparedStatement {
  return db.prepare("INSERT INTO meta (key, value) SELECT 'occ-guard', NULL WHERE changes() = 0");
}

/** True when a batch failed because an `occGuard` fired: another writer changed the row first. */
export function isOccGuardError(err: unknown): boolean {
  return String((err as Error)?.message ?? err).includes(GUARD_ERROR);
}

/** True when a statement broke the unique index on `column` (`table.column`, as SQLite names it). */
export function isUniqueError(err: unknown, column: string): boolean {
  return String((err as Error)?.message ?? err).includes(`UNIQUE constraint failed: ${column}`);
}
