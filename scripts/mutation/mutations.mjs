/**
 * Boundary and condition mutations of the stock path, each one a single exact text replacement. `area` names
 * the check it breaks; the target is that no mutation of a hold, commit, set, adjust or transfer check
 * survives. When the code moves on, a mutation whose `find` text is gone is reported "stale": re-aim it.
 */
export const DEFAULT_TESTS = [
  "test/stock-model.test.ts",
  "test/never-oversold.test.ts",
  "test/reservations.test.ts",
  "test/stock-shard.test.ts",
  "test/flash-sale.test.ts",
  "test/faults.test.ts",
];

/**
 * The test files each area's mutations run against (about a minute per mutation on this machine, instead of
 * the whole list): the model and never-oversold tests guard every area; each area adds the files whose tests
 * reach its code. `--tests` on the command line overrides this for every mutation.
 */
const CORE = ["test/stock-model.test.ts", "test/never-oversold.test.ts"];
export const TESTS_BY_AREA = {
  hold: [...CORE, "test/stock-shard.test.ts", "test/faults.test.ts"],
  release: [...CORE, "test/reservations.test.ts", "test/faults.test.ts"],
  expiry: [...CORE, "test/reservations.test.ts", "test/faults.test.ts"],
  extend: [...CORE, "test/reservations.test.ts", "test/faults.test.ts", "test/stock-shard.test.ts"],
  commit: [...CORE, "test/reservations.test.ts", "test/faults.test.ts", "test/stock-shard.test.ts"],
  idempotency: [...CORE, "test/reservations.test.ts"],
  set: [...CORE, "test/stock-shard.test.ts"],
  adjust: [...CORE, "test/stock-shard.test.ts"],
  transfer: [...CORE, "test/flash-sale.test.ts"],
  retention: ["test/reservations.test.ts", "test/never-oversold.test.ts"],
};

const STORE = "src/stock/shard-store.ts";
const HEADERS = "src/stock/reservation-store.ts";
const ESCROW = "src/stock/escrow-store.ts";
const HOT = "src/stock/hot.ts";
const SPLIT = "src/stock/split.ts";
const SAGA = "src/stock/saga.ts";
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
  { id: "hold-retry-holds-again", area: "hold", file: STORE, find: "    if (live.length) {", replace: "    if (live.length && false) {" },
  { id: "hold-frozen-location-sells", area: "hold", file: STORE, find: "(frozen.has(r.location) ? {", replace: "(false ? {" },
  { id: "saga-no-compensation-on-unavailable", area: "hold", file: SAGA, find: "r.res.ok || r.res.error === \"unavailable\" ?", replace: "r.res.ok ?" },
  // --- release / expiry / extend ------------------------------------------------------------------------------
  { id: "release-any-state", area: "release", file: STORE, find: "if (owner > attempt) return -1;\n    }\n    const live = this.sql.exec<RawHold>(\"SELECT * FROM holds WHERE reservation_id = ? AND state = 'held'\", reservationId).toArray();", replace: "if (owner > attempt) return -1;\n    }\n    const live = this.sql.exec<RawHold>(\"SELECT * FROM holds WHERE reservation_id = ?\", reservationId).toArray();" },
  { id: "release-fence-off", area: "release", file: STORE, find: "if (owner > attempt) return -1;", replace: "if (owner > attempt + 1) return -1;" },
  { id: "verdict-due-boundary", area: "expiry", file: STORE, find: "SELECT DISTINCT reservation_id FROM holds WHERE state = 'held' AND expires_at <= ?", replace: "SELECT DISTINCT reservation_id FROM holds WHERE state = 'held' AND expires_at < ?" },
  { id: "verdict-keep-boundary", area: "expiry", file: HEADERS, find: "&& h.expires_at > now) return { kind: \"keep\"", replace: "&& h.expires_at >= now) return { kind: \"keep\"" },
  { id: "status-expiry-boundary", area: "expiry", file: HEADERS, find: "&& now >= h.expires_at) return \"expired\";", replace: "&& now > h.expires_at) return \"expired\";" },
  { id: "verdict-committing-expires", area: "commit", file: HEADERS, find: "if (h.status === \"committing\" || h.status === \"committed\") return { kind: \"commit\" };", replace: "if (h.status === \"committed\") return { kind: \"commit\" };" },
  { id: "extend-lapsed-header", area: "extend", file: HEADERS, find: "canExtend(id: string, owner: string, now: number): HeaderChange {\n    const h = this.get(id, owner);\n    if (!h) return { kind: \"not_found\" };\n    if (h.status !== \"held\" || effectiveStatus(h, now) !== \"held\")", replace: "canExtend(id: string, owner: string, now: number): HeaderChange {\n    const h = this.get(id, owner);\n    if (!h) return { kind: \"not_found\" };\n    if (h.status !== \"held\")" },
  { id: "extend-moves-header-unconfirmed", area: "extend", file: SHARD, find: "if (answers.some((a) => a === undefined)) return { kind: \"unavailable\", header: this.headers.get(id)! };", replace: "" },
  { id: "extend-revives-released-line", area: "extend", file: STORE, find: "if (items.some((it) => state(it) === \"released\" || state(it) === \"committed\")) return { ok: false, shortfalls: [] };", replace: "" },
  // --- commit -------------------------------------------------------------------------------------------------
  { id: "commit-twice", area: "commit", file: STORE, find: "if (h?.state === \"committed\") continue;", replace: "" },
  { id: "commit-keeps-reserved", area: "commit", file: STORE, find: "this.apply(it.sku, it.location, -h.quantity, -h.quantity, \"commit\", meta, now);", replace: "this.apply(it.sku, it.location, -h.quantity, 0, \"commit\", meta, now);" },
  { id: "commit-late-boundary", area: "commit", file: STORE, find: "if (room < it.quantity) out.push(", replace: "if (room < it.quantity - 1) out.push(" },
  { id: "commit-lapsed-header", area: "commit", file: HEADERS, find: "if (h.status !== \"held\" || effectiveStatus(h, now) !== \"held\") return { kind: \"refused\", header: { ...h, status: effectiveStatus(h, now) } };\n    this.sql.exec(\"UPDATE reservations SET status = 'committing'", replace: "if (h.status !== \"held\") return { kind: \"refused\", header: { ...h, status: effectiveStatus(h, now) } };\n    this.sql.exec(\"UPDATE reservations SET status = 'committing'" },
  { id: "commit-event-twice", area: "commit", file: HEADERS, find: "WHERE id = ? AND status = 'committing'\", now, now, id).rowsWritten;", replace: "WHERE id = ?\", now, now, id).rowsWritten;" },
  { id: "release-after-commit", area: "commit", file: HEADERS, find: "if (h.status === \"committed\" || h.status === \"committing\") return { kind: \"refused\", header: h };", replace: "if (h.status === \"committed\") return { kind: \"refused\", header: h };" },
  { id: "commit-finishes-unanswered", area: "commit", file: SHARD, find: "if (answers.includes(false)) {", replace: "if (false) {" },
  // --- idempotency ----------------------------------------------------------------------------------------------
  { id: "idem-body-ignored", area: "idempotency", file: HEADERS, find: "if (existing.body_hash !== req.bodyHash) return { kind: \"mismatch\" };", replace: "" },
  { id: "adjust-event-not-deduped", area: "adjust", file: STORE, find: "const seen = this.seenAdjustment(line.event_id);\n    if (seen) return seen;", replace: "const seen = this.seenAdjustment(line.event_id);" },
  // --- set / adjust ---------------------------------------------------------------------------------------------
  { id: "set-adds", area: "set", file: STORE, find: "this.apply(req.sku, req.location, req.on_hand - cur.on_hand, 0, \"set\"", replace: "this.apply(req.sku, req.location, req.on_hand, 0, \"set\"" },
  { id: "set-hot-adds", area: "set", file: SHARD, find: "const delta = req.set !== undefined ? req.set - before.on_hand : req.delta!;", replace: "const delta = req.set !== undefined ? req.set : req.delta!;" },
  { id: "adjust-floor-boundary", area: "adjust", file: STORE, find: "if (cur.on_hand + line.delta < 0) {", replace: "if (cur.on_hand + line.delta < -1) {" },
  { id: "adjust-floor-inverted", area: "adjust", file: STORE, find: "if (cur.on_hand + line.delta < 0) {", replace: "if (cur.on_hand + line.delta <= 0) {" },
  { id: "adjust-hot-floor-boundary", area: "adjust", file: SHARD, find: "if (before.on_hand + delta < 0) {", replace: "if (before.on_hand + delta < -1) {" },
  { id: "oversold-underreported", area: "set", file: STORE, find: "const units = Math.max(0, row.reserved - row.on_hand - (row.backorder_limit ?? 0));", replace: "const units = Math.max(0, row.reserved - row.on_hand - (row.backorder_limit ?? 0) - 1);" },
  { id: "oversold-ignores-backorder", area: "set", file: STORE, find: "const units = Math.max(0, row.reserved - row.on_hand - (row.backorder_limit ?? 0));", replace: "const units = Math.max(0, row.reserved - row.on_hand);" },
  { id: "hot-decrease-no-freeze", area: "adjust", file: SHARD, find: "if (-delta > homeFree + subFree) await this.freeze(sku, location);", replace: "if (-delta > homeFree + subFree + 1) await this.freeze(sku, location);" },
  { id: "hot-decrease-recall-short", area: "adjust", file: SHARD, find: "if (-delta > homeFree) await this.recall(sku, location, -delta - homeFree,", replace: "if (-delta > homeFree + 1) await this.recall(sku, location, -delta - homeFree," },
  // --- transfers (hot-SKU escrow) -----------------------------------------------------------------------------
  { id: "escrow-takes-held", area: "transfer", file: ESCROW, find: "quantity: Math.max(0, r.on_hand - r.reserved - r.safety_stock)", replace: "quantity: Math.max(0, r.on_hand - r.safety_stock)" },
  { id: "escrow-takes-safety", area: "transfer", file: ESCROW, find: "quantity: Math.max(0, r.on_hand - r.reserved - r.safety_stock)", replace: "quantity: Math.max(0, r.on_hand - r.reserved)" },
  { id: "escrow-take-over", area: "transfer", file: ESCROW, find: "const q = Math.min(r.quantity, left);", replace: "const q = Math.min(r.quantity + 1, left);" },
  { id: "borrow-skips-last-sibling", area: "transfer", file: HOT, find: "for (let step = 1; step < k && need > 0; step++) {", replace: "for (let step = 1; step < k - 1 && need > 0; step++) {" },
  { id: "borrow-miscounts", area: "transfer", file: HOT, find: "need -= got;", replace: "need -= got + 1;" },
  { id: "split-uneven", area: "transfer", file: SPLIT, find: "const q = base + ((i - offset + k) % k < extra ? 1 : 0);", replace: "const q = base + ((i - offset + k) % k <= extra ? 1 : 0);" },
  // --- retention ------------------------------------------------------------------------------------------------
  { id: "retention-prunes-unfinished", area: "retention", file: "src/stock/retention.ts", find: "AND reservation_id NOT IN (SELECT value FROM json_each(?)) LIMIT ?)`", replace: "AND (? IS NOT NULL) LIMIT ?)`" },
  { id: "transit-sent-unrecorded", area: "transfer", file: ESCROW, find: 'for (const it of items) if (it.quantity > 0) this.stock.noteTransit(sku, it.location, it.quantity, "sent", transferId, actor, now);', replace: "" },
  { id: "hot-totals-without-transit", area: "transfer", file: HOT, find: "on_hand: sum((t) => t.on_hand) + inTransit,", replace: "on_hand: sum((t) => t.on_hand)," },
  { id: "fold-ignores-transit", area: "transfer", file: SHARD, find: "const done = parts === 0 && inTransit === 0;", replace: "const done = parts === 0;" },
];
