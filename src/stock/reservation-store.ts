/**
 * Reservation headers and idempotency records, kept in the coordinator shard (see src/stock/routing.ts).
 * Synchronous, like StockStore: the Durable Object runs each method as one atomic step.
 */
import type { BeginCommit, BeginReservation, HeaderChange, HeaderStatus, ReservationHeader, ReservedItem, StoredOutcome } from "./types";

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

/** How long a running saga owns its idempotency key before a retry may take over (a crashed Worker). */
export const SAGA_LEASE_MS = 15_000;

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
      return { kind: "started", id: req.candidateId, expiresAt };
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
    return { kind: "started", id: existing.id, expiresAt };
  }

  finish(id: string, result: { status: "held" | "failed"; items: ReservedItem[]; outcome: StoredOutcome }, now: number): void {
    this.sql.exec(
      "UPDATE reservations SET status = ?, items = ?, outcome = ?, lease_until = 0, updated_at = ? WHERE id = ? AND status = 'pending'",
      result.status, JSON.stringify(result.items), JSON.stringify(result.outcome), now, id,
    );
  }

  /** A saga that hit an infrastructure error gives its key back at once, so the client's retry reruns it. */
  abandon(id: string, now: number): void {
    this.sql.exec("UPDATE reservations SET lease_until = 0, updated_at = ? WHERE id = ? AND status = 'pending'", now, id);
  }

  /** Writing `committing` first means a commit accepted before the deadline survives a crash and can be resumed. */
  beginCommit(id: string, owner: string, now: number): BeginCommit {
    const h = this.get(id, owner);
    if (!h) return { kind: "not_found" };
    if (h.status === "committed") return { kind: "already", header: h };
    if (h.status === "committing") return { kind: "proceed", header: h };
    if (h.status !== "held" || effectiveStatus(h, now) !== "held") return { kind: "refused", header: { ...h, status: effectiveStatus(h, now) } };
    this.sql.exec("UPDATE reservations SET status = 'committing', updated_at = ? WHERE id = ?", now, id);
    return { kind: "proceed", header: { ...h, status: "committing", updated_at: now } };
  }

  /** Marks the reservation committed; returns true only the first time, so the caller emits one event. */
  finishCommit(id: string, now: number): { header: ReservationHeader; first: boolean } | undefined {
    const changed = this.sql.exec("UPDATE reservations SET status = 'committed', committed_at = ?, updated_at = ? WHERE id = ? AND status = 'committing'", now, now, id).rowsWritten;
    const h = this.get(id);
    return h ? { header: h, first: changed > 0 } : undefined;
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

  extend(id: string, ttlMs: number, owner: string, now: number): HeaderChange {
    const h = this.get(id, owner);
    if (!h) return { kind: "not_found" };
    if (h.status !== "held" || effectiveStatus(h, now) !== "held") return { kind: "refused", header: { ...h, status: effectiveStatus(h, now) } };
    this.sql.exec("UPDATE reservations SET expires_at = ?, updated_at = ? WHERE id = ?", now + ttlMs, now, id);
    return { kind: "ok", header: this.get(id)! };
  }

  /** Compensation when an extend could not be honoured on every shard: the reservation ends as expired. */
  markExpired(id: string, now: number): void {
    this.sql.exec("UPDATE reservations SET status = 'expired', expires_at = MIN(expires_at, ?), updated_at = ? WHERE id = ? AND status = 'held'", now, now, id);
  }
}
