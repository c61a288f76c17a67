/**
 * D1 access for the read path through the Sessions API: reads may go to a nearby replica
 * ("first-unconstrained"); a client that sends the bookmark of its own write (`x-d1-bookmark`) reads at
 * least that state; a read that must not go back in time asks the primary ("first-primary").
 */
import { getDb, type Db } from "../db/client";

export const BOOKMARK_HEADER = "x-d1-bookmark";

const BOOKMARK_RE = /^[\w.:+/=-]{1,256}$/;

export function requestBookmark(req: Request): string | undefined {
  const b = req.headers.get(BOOKMARK_HEADER)?.trim();
  return b && BOOKMARK_RE.test(b) ? b : undefined;
}

export type OriginSession = { db: Db; bookmark: () => string | null };

export function originSession(d1: D1Database, opts: { bookmark?: string; primary?: boolean } = {}): OriginSession {
  const constraint = opts.bookmark ?? (opts.primary ? "first-primary" : "first-unconstrained");
  if (typeof d1.withSession !== "function") return { db: getDb(d1), bookmark: () => null };
  const session = d1.withSession(constraint);
  return { db: getDb(session), bookmark: () => session.getBookmark() };
}
