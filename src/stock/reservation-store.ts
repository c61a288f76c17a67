/**
 * Reservation headers and idempotency records, kept in the coordinator shard (see src/stock/routing.ts).
 * Synchronous, like StockStore: the Durable Object runs each method as one atomic step.
 */
import { now as clockNow } from "../lib/clock";
import type { BeginCommit, BeginReservation, HeaderChange, HeaderStatus, HoldVerdict, ReservationHeader, ReservationView, ReservedItem, StoredOutcome } from "./types";

type RawHeader = {
  id: string;
  scope_key: string;
  owner: string;
  body_hash: string;
  status: HeaderStatus;
  items: string;
  currency: string;
  expires_at: number;
  lease_until: number;
  outcome: string | null;
  created_at: number;
  updated_at: number;
  committed_at: number | null;
  released_at: number | null;
};

/**
 * How long a running saga owns its idempotency key before a retry may take over (a crashed Worker). A saga on a
 * hot SKU can take a shard timeout per borrow; a late first saga cannot harm a retry anyway, because every saga
 * attempt is fenced: its number travels with its holds, and an older attempt can neither release them nor
 * finish the header.
 */
export const SAGA_LEASE_MS = 30_000;
/** A commit still `committing` this long after it began is completed by the coordinator's alarm. */
export const COMMIT_RECONCILE_MS = 10_000;
const COMMIT_RECONCILE_MAX_MS = 5 * 60_000;

function toHeader(r: RawHeader): ReservationHeader {
  return {
    id: r.id,
    owner: r.owner,
    status: r.status,
    items: JSON.parse(r.items) as ReservedItem[],
    currency: r.currency,
    expires_at: r.expires_at,
    created_at: r.created_at,
    updated_at: r.updated_at,
    committed_at: r.committed_at,
    released_at: r.released_at,
  };
}

/** Status as a reader should see it: a live status past its deadline is `expired`, alarm or not. */
export function effectiveStatus(h: Pick<ReservationHeader, "status" | "expires_at">, now: number): HeaderStatus {
  if ((h.status === "held" || h.status === "pending") && now >= h.expires_at) return "expired";
  return h.status;
}

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

/** The public JSON of a reservation header (a live one past its deadline shows as `expired`). */
export function toView(h: ReservationHeader, now = clockNow()): ReservationView {
  return {
    id: h.id,
    status: effectiveStatus(h, now),
    expires_at: new Date(h.expires_at).toISOString(),
    currency: h.currency,
    items: h.items,
    created_at: new Date(h.created_at).toISOString(),
    committed_at: iso(h.committed_at),
    released_at: iso(h.released_at),
  };
}

export class ReservationStore {
  constructor(private readonly sql: SqlStorage) {}

  /** With `owner`, a reservation of another storefront key is treated as absent. */
  get(id: string, owner?: string): ReservationHeader | undefined {
    const r = this.sql.exec<RawHeader>("SELECT * FROM reservations WHERE id = ?", id).toArray()[0];
    return r && (owner === undefined || r.owner === owner) ? toHeader(r) : undefined;
  }

  begin(req: { scopeKey: string; owner: string; bodyHash: string; candidateId: string; currency: string; ttlMs: number }, now: number): BeginReservation {
    const existing = this.sql.exec<RawHeader>("SELECT * FROM reservations WHERE scope_key = ?", req.scopeKey).toArray()[0];
    if (!existing) {
      const expiresAt = now + req.ttlMs;
      this.sql.exec(
        `INSERT INTO reservations (id, scope_key, owner, body_hash, status, items, currency, expires_at, lease_until, created_at, updated_at)
         VALUES (?, ?, ?, ?, 'pending', '[]', ?, ?, ?, ?, ?)`,
        req.candidateId, req.scopeKey, req.owner, req.bodyHash, req.currency, expiresAt, now + SAGA_LEASE_MS, now, now,
      );
      return { kind: "started", id: req.candidateId, expiresAt, attempt: this.nextAttempt(req.candidateId) };
    }
    if (existing.body_hash !== req.bodyHash) return { kind: "mismatch" };
    if (existing.outcome) return { kind: "replay", outcome: JSON.parse(existing.outcome) as StoredOutcome };
    if (existing.lease_until > now) return { kind: "in_progress" };
    // The Worker that ran this saga died before answering. Its holds carry their own TTL; the retry reruns the
    // saga under the same reservation id (shard holds are idempotent per id) with a fresh deadline.
    const expiresAt = now + req.ttlMs;
    this.sql.exec(
      "UPDATE reservations SET status = 'pending', expires_at = ?, lease_until = ?, updated_at = ? WHERE id = ?",
      expiresAt, now + SAGA_LEASE_MS, now, existing.id,
    );
    return { kind: "started", id: existing.id, expiresAt, attempt: this.nextAttempt(existing.id) };
  }

  /** The saga attempt now running for `id` (0 before any). */
  attempt(id: string): number {
    return this.sql.exec<{ attempt: number }>("SELECT attempt FROM reservation_sagas WHERE id = ?", id).toArray()[0]?.attempt ?? 0;
  }

  private nextAttempt(id: string): number {
    return this.sql
      .exec<{ attempt: number }>(
        "INSERT INTO reservation_sagas (id, attempt) VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET attempt = attempt + 1 RETURNING attempt",
        id,
      )
      .one().attempt;
  }

  /** Only the saga attempt that owns the header may finish it: a superseded attempt's answer is dropped. */
  finish(id: string, result: { status: "held" | "failed"; items: ReservedItem[]; outcome: StoredOutcome }, now: number, attempt?: number): boolean {
    if (attempt !== undefined && attempt !== this.attempt(id)) return false;
    return (
      this.sql.exec(
        "UPDATE reservations SET status = ?, items = ?, outcome = ?, lease_until = 0, updated_at = ? WHERE id = ? AND status = 'pending'",
        result.status, JSON.stringify(result.items), JSON.stringify(result.outcome), now, id,
      ).rowsWritten > 0
    );
  }

  /** A saga that hit an infrastructure error gives its key back at once, so the client's retry reruns it. */
  abandon(id: string, now: number, attempt?: number): boolean {
    if (attempt !== undefined && attempt !== this.attempt(id)) return false;
    return this.sql.exec("UPDATE reservations SET lease_until = 0, updated_at = ? WHERE id = ? AND status = 'pending'", now, id).rowsWritten > 0;
  }

  /** Writing `committing` first means a commit accepted before the deadline survives a crash and can be resumed. */
  beginCommit(id: string, owner: string, now: number): BeginCommit {
    const h = this.get(id, owner);
    if (!h) return { kind: "not_found" };
    if (h.status === "committed") return { kind: "already", header: h };
    if (h.status === "committing") return { kind: "proceed", header: h };
    if (h.status !== "held" || effectiveStatus(h, now) !== "held") return { kind: "refused", header: { ...h, status: effectiveStatus(h, now) } };
    this.sql.exec("UPDATE reservations SET status = 'committing', updated_at = ? WHERE id = ?", now, id);
    // The reconciler's deadline is written in the same step: a commit accepted here is completed even if no
    // one ever retries it.
    this.sql.exec(
      `INSERT INTO reservation_sagas (id, attempt, commit_started_at, commit_attempts, next_reconcile_at) VALUES (?, 0, ?, 0, ?)
       ON CONFLICT (id) DO UPDATE SET commit_started_at = excluded.commit_started_at, next_reconcile_at = excluded.next_reconcile_at`,
      id, now, now + COMMIT_RECONCILE_MS,
    );
    return { kind: "proceed", header: { ...h, status: "committing", updated_at: now } };
  }

  /** Marks the reservation committed; returns true only the first time, so the caller emits one event. */
  finishCommit(id: string, now: number): { header: ReservationHeader; first: boolean } | undefined {
    const changed = this.sql.exec("UPDATE reservations SET status = 'committed', committed_at = ?, updated_at = ? WHERE id = ? AND status = 'committing'", now, now, id).rowsWritten;
    this.sql.exec("UPDATE reservation_sagas SET next_reconcile_at = NULL WHERE id = ?", id);
    const h = this.get(id);
    return h ? { header: h, first: changed > 0 } : undefined;
  }

  /** A commit round that did not reach every shard: try again later, backing off. */
  commitDeferred(id: string, now: number): void {
    const r = this.sql
      .exec<{ n: number }>("UPDATE reservation_sagas SET commit_attempts = commit_attempts + 1 WHERE id = ? RETURNING commit_attempts AS n", id)
      .toArray()[0];
    // 10 s after the first failed round, then 20 s, 40 s… up to 5 minutes.
    const delay = Math.min(COMMIT_RECONCILE_MAX_MS, COMMIT_RECONCILE_MS * 2 ** Math.min(Math.max(0, (r?.n ?? 1) - 1), 8));
    this.sql.exec("UPDATE reservation_sagas SET next_reconcile_at = ? WHERE id = ?", now + delay, id);
  }

  /** Reservations whose commit is due for the reconciler. */
  dueCommits(now: number): string[] {
    return this.sql
      .exec<{ id: string }>("SELECT id FROM reservation_sagas WHERE next_reconcile_at IS NOT NULL AND next_reconcile_at <= ? ORDER BY next_reconcile_at LIMIT 50", now)
      .toArray()
      .map((r) => r.id);
  }

  nextReconcile(): number | null {
    return this.sql.exec<{ t: number | null }>("SELECT MIN(next_reconcile_at) AS t FROM reservation_sagas").one().t;
  }

  /**
   * What a stock shard must do with a hold of `id` that reached its deadline there. The header decides: a
   * commit accepted here keeps (and commits) the hold however late; a live reservation keeps it until the
   * header's deadline; anything else lets it go.
   */
  verdict(id: string, now: number): HoldVerdict {
    const h = this.get(id);
    if (!h) return { kind: "end" };
    if (h.status === "committing" || h.status === "committed") return { kind: "commit" };
    if ((h.status === "held" || h.status === "pending") && h.expires_at > now) return { kind: "keep", until: h.expires_at };
    return { kind: "end" };
  }

  release(id: string, owner: string, now: number): HeaderChange {
    const h = this.get(id, owner);
    if (!h) return { kind: "not_found" };
    if (h.status === "committed" || h.status === "committing") return { kind: "refused", header: h };
    if (h.status === "released" || h.status === "expired" || h.status === "failed") return { kind: "ok", header: h };
    const status: HeaderStatus = effectiveStatus(h, now) === "expired" ? "expired" : "released";
    this.sql.exec("UPDATE reservations SET status = ?, released_at = ?, updated_at = ? WHERE id = ?", status, now, now, id);
    return { kind: "ok", header: this.get(id)! };
  }

  /** Checks that `id` may be extended; the deadline itself moves only in `setDeadline`, once every shard agreed. */
  canExtend(id: string, owner: string, now: number): HeaderChange {
    const h = this.get(id, owner);
    if (!h) return { kind: "not_found" };
    if (h.status !== "held" || effectiveStatus(h, now) !== "held") return { kind: "refused", header: { ...h, status: effectiveStatus(h, now) } };
    return { kind: "ok", header: h };
  }

  setDeadline(id: string, expiresAt: number, now: number): HeaderChange {
    const h = this.get(id);
    if (!h) return { kind: "not_found" };
    if (h.status !== "held" || effectiveStatus(h, now) !== "held") return { kind: "refused", header: { ...h, status: effectiveStatus(h, now) } };
    this.sql.exec("UPDATE reservations SET expires_at = ?, updated_at = ? WHERE id = ?", expiresAt, now, id);
    return { kind: "ok", header: this.get(id)! };
  }

  /**
   * Compensation when an extend could not be honoured on every shard: the reservation ends as expired. False when
   * it was no longer `held` (a commit, release or expiry got there first): then its holds are not the extend's to free.
   */
  markExpired(id: string, now: number): boolean {
    return this.sql.exec("UPDATE reservations SET status = 'expired', expires_at = MIN(expires_at, ?), updated_at = ? WHERE id = ? AND status = 'held'", now, now, id).rowsWritten > 0;
  }
}
