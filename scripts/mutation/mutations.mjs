/**
 * Boundary and condition mutations of the stock path, each one a single exact text replacement. `area` names
 * the check it breaks; the target is that no mutation of a hold, commit, set, adjust or transfer check
 * survives. When the code moves on, a mutation whose `find` text is gone is reported "stale": re-aim it.
 */
export const DEFAULT_TESTS = [
  "test/stock-model.test.ts",
  "test/reservations.test.ts",
  "test/stock-shard.test.ts",
  "test/flash-sale.test.ts",
  "test/faults.test.ts",
];

const STORE = "src/stock/shard-store.ts";
const HEADERS = "src/stock/reservation-store.ts";
const ESCROW = "src/stock/escrow-store.ts";
const HOT = "src/stock/hot.ts";
const SAGA = "src/stock/reservations.ts";
const SHARD = "durable-objects/stock-shard.ts";

export const MUTATIONS = [
  // --- hold -------------------------------------------------------------------------------------------------
  { id: "hold-named-boundary", area: "hold", file: STORE, find: "if (r && room(r) >= w.quantity) chosen = r;", replace: "if (r && room(r) >= w.quantity - 1) chosen = r;" },
  { id: "hold-region-boundary", area: "hold", file: STORE, find: "if (r && room(r) >= w.quantity) {", replace: "if (r && room(r) >= w.quantity - 1) {" },
  { id: "hold-best-boundary", area: "hold", file: STORE, find: "if (best && room(best) >= w.quantity) chosen = best;", replace: "if (best && room(best) >= w.quantity - 1) chosen = best;" },
  { id: "hold-ignores-cart", area: "hold", file: STORE, find: "availableOf(r) - takenAt(w.sku, r.location) - floorOf(r);", replace: "availableOf(r) - floorOf(r);" },
  { id: "hold-ignores-safety", area: "hold", file: STORE, find: "const availableOf = (r: RawStock) => r.on_hand - r.reserved - r.safety_stock;", replace: "const availableOf = (r: RawStock) => r.on_hand - r.reserved;" },
  { id: "hold-backorder-sign", area: "hold", file: STORE, find: "const floorOf = (r: RawStock) => -(r.backorder_limit ?? 0);", replace: "const floorOf = (r: RawStock) => (r.backorder_limit ?? 0);" },
  { id: "hold-lines-not-summed", area: "hold", file: STORE, find: "if (prev) prev.quantity += line.quantity;", replace: "if (prev) prev.quantity = line.quantity;" },
  { id: "hold-retry-holds-again", area: "hold", file: STORE, find: "if (live.length) {", replace: "if (live.length && false) {" },
  { id: "saga-no-compensation-on-unavailable", area: "hold", file: SAGA, find: "r.res.ok || r.res.error === \"unavailable\" ?", replace: "r.res.ok ?" },
  // --- release / expiry / extend ------------------------------------------------------------------------------
  { id: "release-any-state", area: "release", file: STORE, find: "const live = this.sql.exec<RawHold>(\"SELECT * FROM holds WHERE reservation_id = ? AND state = 'held'\", reservationId).toArray();\n    for (const h of live) {", replace: "const live = this.sql.exec<RawHold>(\"SELECT * FROM holds WHERE reservation_id = ?\", reservationId).toArray();\n    for (const h of live) {" },
  { id: "expiry-boundary", area: "expiry", file: STORE, find: "WHERE state = 'held' AND expires_at <= ? ORDER BY expires_at", replace: "WHERE state = 'held' AND expires_at < ? ORDER BY expires_at" },
  { id: "status-expiry-boundary", area: "expiry", file: HEADERS, find: "&& now >= h.expires_at) return \"expired\";", replace: "&& now > h.expires_at) return \"expired\";" },
  { id: "read-without-expiry", area: "expiry", file: SHARD, find: "this.atomically(() => this.stock.expireDue(Date.now()));\n    return { ok: true, rows: this.stock.rows(skus) };", replace: "return { ok: true, rows: this.stock.rows(skus) };" },
  { id: "extend-rehold-everything", area: "extend", file: STORE, find: "const lapsed = items.filter((it) => holds.get(`${it.sku}\\u0000${it.location}`)?.state !== \"held\");", replace: "const lapsed = items.filter((it) => holds.get(`${it.sku}\\u0000${it.location}`)?.state !== \"expired\");" },
  { id: "extend-lapsed-header", area: "extend", file: HEADERS, find: "if (h.status !== \"held\" || effectiveStatus(h, now) !== \"held\") return { kind: \"refused\", header: { ...h, status: effectiveStatus(h, now) } };\n    this.sql.exec(\"UPDATE reservations SET expires_at", replace: "if (h.status !== \"held\") return { kind: \"refused\", header: { ...h, status: effectiveStatus(h, now) } };\n    this.sql.exec(\"UPDATE reservations SET expires_at" },
  // --- commit -------------------------------------------------------------------------------------------------
  { id: "commit-late-check", area: "commit", file: STORE, find: "if (!h || (h.state !== \"held\" && h.state !== \"committed\")) late.push(it);", replace: "if (!h) late.push(it);" },
  { id: "commit-twice", area: "commit", file: STORE, find: "if (h?.state === \"committed\") continue;", replace: "" },
  { id: "commit-keeps-reserved", area: "commit", file: STORE, find: "this.apply(it.sku, it.location, -h.quantity, -h.quantity, \"commit\", meta, now);", replace: "this.apply(it.sku, it.location, -h.quantity, 0, \"commit\", meta, now);" },
  { id: "commit-late-boundary", area: "commit", file: STORE, find: "if (room < it.quantity) out.push(", replace: "if (room < it.quantity - 1) out.push(" },
  { id: "commit-lapsed-header", area: "commit", file: HEADERS, find: "if (h.status !== \"held\" || effectiveStatus(h, now) !== \"held\") return { kind: \"refused\", header: { ...h, status: effectiveStatus(h, now) } };\n    this.sql.exec(\"UPDATE reservations SET status = 'committing'", replace: "if (h.status !== \"held\") return { kind: \"refused\", header: { ...h, status: effectiveStatus(h, now) } };\n    this.sql.exec(\"UPDATE reservations SET status = 'committing'" },
  { id: "commit-event-twice", area: "commit", file: HEADERS, find: "WHERE id = ? AND status = 'committing'\", now, now, id).rowsWritten;", replace: "WHERE id = ?\", now, now, id).rowsWritten;" },
  { id: "release-after-commit", area: "commit", file: HEADERS, find: "if (h.status === \"committed\" || h.status === \"committing\") return { kind: \"refused\", header: h };", replace: "if (h.status === \"committing\") return { kind: \"refused\", header: h };" },
  { id: "commit-ignores-shortfall", area: "commit", file: SAGA, find: "if (shortfalls.length) {\n    // Only reachable", replace: "if (shortfalls.length && false) {\n    // Only reachable" },
  // --- idempotency ----------------------------------------------------------------------------------------------
  { id: "idem-body-ignored", area: "idempotency", file: HEADERS, find: "if (existing.body_hash !== req.bodyHash) return { kind: \"mismatch\" };", replace: "" },
  { id: "adjust-event-not-deduped", area: "adjust", file: STORE, find: "if (seen) return { ...(JSON.parse(seen.outcome) as AdjustmentOutcome), status: \"duplicate\" };", replace: "" },
  // --- set / adjust ---------------------------------------------------------------------------------------------
  { id: "set-adds", area: "set", file: STORE, find: "return this.apply(req.sku, req.location, req.on_hand - cur.on_hand, 0, \"set\"", replace: "return this.apply(req.sku, req.location, req.on_hand, 0, \"set\"" },
  { id: "adjust-floor-boundary", area: "adjust", file: STORE, find: "if (cur.on_hand + line.delta < 0) {", replace: "if (cur.on_hand + line.delta < -1) {" },
  { id: "adjust-floor-inverted", area: "adjust", file: STORE, find: "if (cur.on_hand + line.delta < 0) {", replace: "if (cur.on_hand + line.delta <= 0) {" },
  // --- transfers (hot-SKU escrow) -----------------------------------------------------------------------------
  { id: "escrow-takes-held", area: "transfer", file: ESCROW, find: "free: Math.max(0, r.on_hand - r.reserved - r.safety_stock)", replace: "free: Math.max(0, r.on_hand - r.safety_stock)" },
  { id: "escrow-takes-safety", area: "transfer", file: ESCROW, find: "free: Math.max(0, r.on_hand - r.reserved - r.safety_stock)", replace: "free: Math.max(0, r.on_hand - r.reserved)" },
  { id: "escrow-take-over", area: "transfer", file: ESCROW, find: "const q = Math.min(r.free, left);", replace: "const q = Math.min(r.free + 1, left);" },
  { id: "escrow-take-not-idempotent", area: "transfer", file: ESCROW, find: "if (done) return JSON.parse(done.items) as EscrowItem[];", replace: "" },
  { id: "escrow-give-not-idempotent", area: "transfer", file: ESCROW, find: "event_id: `${transferId}:in:${it.location}` }", replace: "event_id: `${transferId}:in:${it.location}:${now}:${Math.random()}` }" },
  { id: "borrow-skips-last-sibling", area: "transfer", file: HOT, find: "for (let step = 1; step < k && need > 0; step++) {", replace: "for (let step = 1; step < k - 1 && need > 0; step++) {" },
  { id: "borrow-miscounts", area: "transfer", file: HOT, find: "need -= got;", replace: "need -= got + 1;" },
  { id: "split-uneven", area: "transfer", file: HOT, find: "const q = base + ((i - offset + k) % k < extra ? 1 : 0);", replace: "const q = base + ((i - offset + k) % k <= extra ? 1 : 0);" },
  { id: "unmark-forgets-committed", area: "transfer", file: HOT, find: "if (status.sub_shard_totals.every((t) => t.on_hand === 0 && t.reserved === 0)) {", replace: "if (status.sub_shard_totals.every((t) => t.reserved === 0)) {" },
];
