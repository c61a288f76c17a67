/**
 * A D1 binding that adds up `meta.rows_read` of every statement it runs, for tests that require a read not to
 * cost more as the catalog grows (test/read-cost*.test.ts). Pass it as `{ ...env, DB: counting.db }`.
 */

/** Statements that only read (so running one a second time to learn its cost is harmless). */
const READ_ONLY = /^\s*(select|with)\b/i;

/** A D1 binding that adds up the rows every statement it runs reads (statements, and statements in batches). */
export function rowCounting(db: D1Database): { db: D1Database; rows: () => number; statements: () => { sql: string; rows: number }[] } {
  let rows = 0;
  const log: { sql: string; rows: number }[] = [];
  const add = <T extends D1Result | null>(r: T, sql = ""): T => {
    rows += r?.meta?.rows_read ?? 0;
    log.push({ sql, rows: r?.meta?.rows_read ?? 0 });
    return r;
  };
  const sqlOf = new WeakMap<D1PreparedStatement, string>();
  const counted = (stmt: D1PreparedStatement, sql: string): D1PreparedStatement => {
    const { bind, all, run, raw } = stmt;
    Object.assign(stmt, {
      bind: (...args: unknown[]) => counted(bind.call(stmt, ...args), sql),
      all: async () => add(await all.call(stmt), sql),
      run: async () => add(await run.call(stmt), sql),
      // first() and raw() report no meta: read through all() so their rows count too.
      first: async (column?: string) => {
        const row = add(await all.call(stmt), sql).results[0] as Record<string, unknown> | undefined;
        return row === undefined ? null : column ? row[column] : row;
      },
      // drizzle reads every select outside a batch with raw(): its arrays keep columns that share a name (joins),
      // which all()'s objects would collapse, so the rows are counted by an all() and the answer is raw()'s.
      // A writing statement is not run twice: its rows go uncounted.
      raw: async (options?: { columnNames?: boolean }) => {
        if (READ_ONLY.test(sql)) add(await all.call(stmt), sql);
        return (raw as (options?: { columnNames?: boolean }) => Promise<unknown[]>).call(stmt, options);
      },
    });
    sqlOf.set(stmt, sql);
    return stmt;
  };
  const wrapped = {
    prepare: (sql: string) => counted(db.prepare(sql), sql),
    batch: async (stmts: D1PreparedStatement[]) => (await db.batch(stmts)).map((r, i) => add(r, sqlOf.get(stmts[i]!) ?? "")),
  };
  return { db: wrapped as unknown as D1Database, rows: () => rows, statements: () => [...log] };
}
