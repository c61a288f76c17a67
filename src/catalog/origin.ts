/**
 * D1 access for the read path through the Sessions API: reads may go to a nearby replica
 * ("first-unconstrained"); a client that sends the bookmark of its own write (`x-d1-bookmark`) reads at
 * least that state; a read that must not go back in time asks the primary ("first-primary").
 */
import type { SQL } from "drizzle-orm";
import { SQLiteAsyncDialect } from "drizzle-orm/sqlite-core";
import { getDb, type Db } from "../db/client";

export const BOOKMARK_HEADER = "x-d1-bookmark";

/** The client's bookmark header, unverified (see bookmark.ts; only a signed one is honoured). */
export function requestBookmark(req: Request): string | undefined {
  const b = req.headers.get(BOOKMARK_HEADER)?.trim();
  return b && b.length <= 512 ? b : undefined;
}

export type OriginSession = {
  db: Db;
  /** Several drizzle `sql` queries in one D1 batch: one round trip (drizzle's own batch rejects raw SQL). */
  batch: <T extends unknown[][]>(queries: { [K in keyof T]: SQL }) => Promise<T>;
  bookmark: () => string | null;
};

const dialect = new SQLiteAsyncDialect();

export function originSession(d1: D1Database, opts: { bookmark?: string; primary?: boolean } = {}): OriginSession {
  const constraint = opts.bookmark ?? (opts.primary ? "first-primary" : "first-unconstrained");
  const session: D1Database | D1DatabaseSession = typeof d1.withSession === "function" ? d1.withSession(constraint) : d1;
  const batch = async <T extends unknown[][]>(queries: { [K in keyof T]: SQL }): Promise<T> => {
    const statements = (queries as SQL[]).map((q) => {
      const { sql, params } = dialect.sqlToQuery(q);
      return session.prepare(sql).bind(...params);
    });
    const results = await session.batch(statements);
    return results.map((r) => r.results) as T;
  };
  return { db: getDb(session), batch, bookmark: () => ("getBookmark" in session ? session.getBookmark() : null) };
}
