/** Shapes exchanged between the Worker and the StockShard Durable Object over RPC. */

export type StockRow = {
  sku: string;
  location: string;
  on_hand: number;
  reserved: number;
  safety_stock: number;
  low_stock: number;
  /** Units that may be promised beyond stock (pre-orders); null = none. */
  backorder_limit: number | null;
  /** on_hand − reserved − safety_stock; may go negative only down to −backorder_limit. */
  available: number;
  seq: number;
};

export type Shortfall = { sku: string; requested: number; available: number; location?: string };

export type HoldLine = { sku: string; quantity: number; location?: string };
/** `shard`: set when the units are held by a hot SKU's escrow sub-shard, so later steps find them. */
export type HeldItem = { sku: string; quantity: number; location: string; shard?: string };

export type HoldRequest = {
  reservationId: string;
  expiresAt: number;
  lines: HoldLine[];
  /** Locations in the shopper's region, best first; used when a line names no location. */
  preferredLocations: string[];
  actor: string;
  /** The shopper's holder key (src/stock/shopper.ts); with `perSkuCap`, checked in the same transaction as the hold. */
  holder?: string;
  /** Most units of one SKU the holder may hold at once in this object. */
  perSkuCap?: number;
  /** The saga attempt placing the hold: a release from an older attempt leaves a newer attempt's hold alone. */
  attempt?: number;
};

export type UnknownSkus = { ok: false; error: "unknown_skus"; skus: string[] };
export type Insufficient = { ok: false; error: "insufficient"; shortfalls: Shortfall[] };
/** The holder would exceed its per-SKU hoarding cap; `retry_at` is when its first hold of that SKU lapses. */
export type HoldLimit = { ok: false; error: "hold_limit"; sku: string; limit: number; held: number; requested: number; retry_at: number };

export type HoldResult = { ok: true; items: HeldItem[] } | Insufficient | UnknownSkus | HoldLimit;
export type CommitResult = { ok: true; items: HeldItem[] } | Insufficient;
export type ExtendResult = { ok: true } | Insufficient;

export type StockReadResult = { ok: true; rows: StockRow[] } | UnknownSkus;

export type SetStockRequest = {
  sku: string;
  location: string;
  on_hand: number;
  safety_stock?: number;
  low_stock?: number;
  backorder_limit?: number | null;
  actor: string;
  /** If-Match: write only when the SKU's seq is still this one (checked in the same transaction). */
  expected_seq?: number;
};
/**
 * `oversold`: units held beyond the new physical count (0 when none); holds are promises and stay.
 * `stale`: `expected_seq` no longer matched; nothing was written and `rows` are the counts now.
 */
/** If-Match failed: the SKU is at `seq` now, with these rows; nothing was written. */
export type StaleSeq = { ok: false; error: "stale"; seq: number; rows: StockRow[] };
export type SetStockResult = { ok: true; row: StockRow; oversold: number } | UnknownSkus | StaleSeq;

export type AdjustmentLine = { sku: string; location: string; delta: number; reason: string; event_id: string };
export type AdjustmentOutcome = {
  event_id: string;
  sku: string;
  location: string;
  status: "applied" | "duplicate" | "rejected";
  detail?: string;
  on_hand?: number;
  /** Units held beyond the physical count after this movement, when there are any. */
  oversold?: number;
};

/** `oversold` and `transit` rows change no count of their own object (see StockStore.reportOversold, noteTransit). */
export type LedgerKind = "baseline" | "set" | "adjust" | "reserve" | "release" | "expire" | "commit" | "oversold" | "transit";
export type LedgerEntry = {
  id: number;
  sku: string;
  location: string;
  seq: number;
  kind: LedgerKind;
  delta_on_hand: number;
  delta_reserved: number;
  on_hand_after: number;
  reserved_after: number;
  reason: string | null;
  reservation_id: string | null;
  actor: string | null;
  event_id: string | null;
  at: number;
};

/** A line of a reservation with the unit price in force when it was made (commit charges this price, not whatever the price is by then). */
export type ReservedItem = HeldItem & {
  unit_price: number;
  currency: string;
  /** The regular price at reservation time and the promotion that made `unit_price`, if any. */
  regular_price: number;
  promotion_id: string | null;
};

/** pending = saga running (or crashed mid-way); failed = the create answered 409 and is replayed as such. */
export type HeaderStatus = "pending" | "held" | "failed" | "committing" | "committed" | "released" | "expired";

export type ReservationHeader = {
  id: string;
  /** The storefront key id that created it; other keys see 404. */
  owner: string;
  status: HeaderStatus;
  items: ReservedItem[];
  currency: string;
  expires_at: number;
  created_at: number;
  updated_at: number;
  committed_at: number | null;
  released_at: number | null;
};

/** The answer of the original create, replayed for a repeated Idempotency-Key (problems are rebuilt with the new request id). */
export type StoredOutcome =
  | { status: 201; body: ReservationView }
  | { status: 409 | 422; problem: { slug: string; title: string; detail: string; extensions: { shortfalls?: Shortfall[]; unknown_skus?: string[] } } };

export type BeginReservation =
  | { kind: "started"; id: string; expiresAt: number; attempt: number }
  | { kind: "replay"; outcome: StoredOutcome }
  | { kind: "in_progress" }
  | { kind: "mismatch" };

export type BeginCommit =
  | { kind: "proceed"; header: ReservationHeader }
  | { kind: "already"; header: ReservationHeader }
  | { kind: "refused"; header: ReservationHeader }
  | { kind: "not_found" };

/** The coordinator's answer to a shard whose hold of a reservation reached its deadline. */
/**
 * `commit` names the reservation's lines with the shard that holds each (`items`): a hold of the id on a shard the
 * header does not list it on (a retry routed that line elsewhere) was never part of the sale and ends. Without
 * `items`, every live hold is committed.
 */
export type HoldVerdict = { kind: "commit"; items?: { sku: string; location: string; shard: string }[] } | { kind: "keep"; until: number } | { kind: "end" };

/** `already`: committed (now or before); `pending`: accepted, some shard did not answer yet (completed later). */
export type CommitOutcome =
  | { kind: "already"; header: ReservationHeader }
  | { kind: "pending"; header: ReservationHeader }
  | { kind: "refused"; header: ReservationHeader }
  | { kind: "not_found" };

export type ExtendOutcome =
  | { kind: "ok"; header: ReservationHeader }
  | { kind: "refused"; header: ReservationHeader }
  | { kind: "not_found" }
  | { kind: "unavailable"; header: ReservationHeader }
  | { kind: "lapsed"; shortfalls: Shortfall[]; header: ReservationHeader };

export type HeaderChange = { kind: "ok"; header: ReservationHeader } | { kind: "refused"; header: ReservationHeader } | { kind: "not_found" };

/** The public JSON of a reservation. */
export type ReservationView = {
  id: string;
  status: HeaderStatus;
  expires_at: string;
  currency: string;
  items: ReservedItem[];
  created_at: string;
  committed_at: string | null;
  released_at: string | null;
};

/** A live hold as the admin holds listing shows it; `holder` is the storefront key id (null for old holds). */
export type LiveHold = {
  reservation_id: string;
  sku: string;
  location: string;
  quantity: number;
  expires_at: number;
  created_at: number;
  holder: string | null;
};
