import { createExecutionContext, env, runDurableObjectAlarm, waitOnExecutionContext } from "cloudflare:test";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { setClock } from "../src/lib/clock";
import { setStockFault } from "../src/lib/fault-injection";
import { clearSoldOut, SOLD_OUT_TTL_SECONDS } from "../src/stock/flash-gate";
import { coordinatorForScope, coordinatorOfReservation, holderOfReservation, hotSubShardIndex, hotSubShardName, shardName, shardNameForSku, tallyShardIndex } from "../src/stock/routing";
import { holderKey } from "../src/stock/shopper";
import { addStorefrontKey, seedApiKeys } from "./helpers/api-keys";
import { seedCategories } from "./helpers/catalog-fixtures";
import { ADMIN_TOKEN, BASE, uid } from "./helpers/http";
import { makeSkus } from "./helpers/stock-fixtures";
import { itemSet, LOCATIONS, mergeItems, StockModel, type Item, type Line, type ModelItem, type ModelReservation, type Region } from "./helpers/stock-model";

/**
 * Model-based test of stock and reservations: random command sequences (fc.commands) run against the real app
 * (every route, the Durable Objects, D1) and against the plain reference model in test/helpers/stock-model.ts,
 * and after every command the two must agree and no unit may be promised twice.
 *
 * Time is the injectable clock (src/lib/clock.ts), frozen and moved only by the `advance` command, so deadlines
 * are hit exactly. Faults go through the guarded STOCK binding (src/lib/fault-injection.ts), from the Worker and
 * from one object to another: a shard RPC that throws before it applies, or applies and then loses its answer.
 *
 * `STOCK_MODEL_RUNS=200 npx vitest run test/stock-model.test.ts` runs a longer search with a fresh seed (opt-in);
 * CI runs the bounded default with a fixed seed, so main never turns red at random. STOCK_MODEL_SEED=<seed> with
 * the same STOCK_MODEL_RUNS re-runs the search a long run printed.
 */

const LONG_RUNS = Number(env.STOCK_MODEL_RUNS ?? "") || 0;
const RUNS = LONG_RUNS || 12;
/** The bounded CI run replays the same histories every time; an opt-in long run draws a fresh seed (printed on failure). */
const SEED = env.STOCK_MODEL_SEED ? Number(env.STOCK_MODEL_SEED) : LONG_RUNS ? undefined : 20261204;

const MAX_COMMANDS = 20;

/**
 * Behaviours the model already expects but that are switched on once the protocol fixes land on main
 * (a switch stays off only while main still fails it).
 */
const FIXED = {
  /** Sets and adjustments on a hot SKU change the physical count, drawing on the sub-shards' quotas. */
  hotAdminWrites: true,
  /** Availability shows one definition of stock for a hot SKU (home + every sub-shard). */
  hotReaders: true,
  /** The ledger of a hot SKU merges the home shard and every sub-shard. */
  mergedLedger: true,
  /** The merged ledger replays to the readers' totals even while a transfer between objects is pending. */
  ledgerCountsTransit: true,
  /** A recount below what is held keeps the holds and reports "oversold by N". */
  recountBelowHeld: true,
  /** A rejected adjustment's event_id applies on retry once the cause is gone. */
  rejectedRetryApplies: true,
  /** Faults on commit / extend / escrow transfers: the reconciler and the sweeper settle them. */
  settlingFaults: true,
};

// --- the system under test -------------------------------------------------------------------------------

type FaultSpec = { method: "hold" | "escrowSend" | "escrowGive"; sku: number; when: "before" | "after" };
type ItemFault = { item: number; when: "before" | "after" };
type Fault = { method: string; matches: (shard: string) => boolean; when: "before" | "after"; fired?: string };

/** Fails the first matching shard call once (from the Worker or from another object), then lets calls through. */
function armFault(fault: Fault | undefined): void {
  setStockFault(
    fault
      ? ({ shard, method }) => {
          if (fault.fired || method !== fault.method || !fault.matches(shard)) return undefined;
          fault.fired = shard;
          return fault.when;
        }
      : null,
  );
}

class Sut {
  static clients = 0;
  readonly app = buildApp();
  /**
   * One storefront key and one client address per history: rate-limit buckets and hold caps are counted per
   * client, and they do not refill while the clock is frozen.
   */
  readonly ip = `198.18.${(++Sut.clients >> 8) & 255}.${Sut.clients & 255}`;
  readonly key = `model-storefront-${Sut.clients}-${realNow()}`;
  readonly keyId = `key-${this.key}`;
  constructor(readonly skus: string[]) {}

  async register(): Promise<void> {
    await addStorefrontKey(env.DB, this.keyId, this.key);
  }

  async fetch(path: string, init: RequestInit & { role?: "admin" | "storefront"; fault?: Fault } = {}): Promise<{ status: number; body: any; headers: Headers }> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${init.role === "admin" ? ADMIN_TOKEN : this.key}`);
    headers.set("cf-connecting-ip", this.ip);
    if (init.body) headers.set("content-type", "application/json");
    const ctx = createExecutionContext();
    armFault(init.fault);
    let res: Response;
    try {
      res = await this.app.fetch(new Request(BASE + path, { method: init.method, body: init.body, headers }), env, ctx);
      await waitOnExecutionContext(ctx);
    } finally {
      armFault(undefined);
    }
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
  }
}

// --- time --------------------------------------------------------------------------------------------------

const realNow = Date.now.bind(Date);
let frozen = 0;
/** The test isolate is the Worker's and the objects' isolate, so the clock set here is theirs too. */
function freezeClock(t: number) {
  frozen = t;
  setClock(() => frozen);
}

// --- commands ----------------------------------------------------------------------------------------------

type LineSpec = { sku: number; quantity: number; location?: (typeof LOCATIONS)[number] };
type Spec =
  | { t: "reserve"; lines: LineSpec[]; region?: Region; ttl: number; fault?: FaultSpec; want?: 201 | 409; shopper?: number }
  | { t: "replay"; pick: number; same: boolean }
  | { t: "commit"; pick: number; fault?: ItemFault }
  | { t: "release"; pick: number; fault?: ItemFault }
  | { t: "extend"; pick: number; ttl: number; fault?: ItemFault }
  | { t: "advance"; ms: number }
  | { t: "set"; sku: number; location: (typeof LOCATIONS)[number]; extra: number; safety?: number; backorder?: number }
  | { t: "adjust"; sku: number; location: (typeof LOCATIONS)[number]; delta: number; retry?: number }
  | { t: "hot"; sku: number; k: number }
  | { t: "unhot"; sku: number }
  | { t: "burst"; sku: number; n: number };

type World = { m: StockModel; s: Sut };

const home = (sku: string) => shardNameForSku(env, sku);

/** Where a line of reservation `id` is held: its SKU's home, or the sub-shard of the reservation's shopper. */
function shardOfLine(m: StockModel, sku: string, id: string, hot: boolean): string {
  const k = hot ? m.hot.get(sku)!.k : 0;
  return k ? hotSubShardName(sku, hotSubShardIndex(holderOfReservation(id)!, k)) : home(sku);
}

/**
 * The shard that coordinates a create with this key: the shopper's tally shard, or the key's hash without one
 * (src/stock/reservations.ts). A fault on that shard's own hold cannot fire: the coordinator holds in-process.
 */
async function coordinatorOfKey(s: Sut, r: ModelReservation): Promise<string> {
  const keyId = s.keyId;
  return shardName(r.shopper ? tallyShardIndex(env, await holderKey(keyId, r.shopper)) : coordinatorForScope(env, `${keyId}\u0000${r.key}`));
}

function shardsOf(m: StockModel, sku: string): string[] {
  const k = m.hot.get(sku)?.k ?? 0;
  return [home(sku), ...Array.from({ length: k }, (_, i) => hotSubShardName(sku, i))];
}

const shopperHeaders = (r: ModelReservation): Record<string, string> => ({
  "idempotency-key": r.key,
  ...(r.region ? { "x-shopper-region": r.region } : {}),
  ...(r.shopper ? { "x-shopper-id": r.shopper } : {}),
});

const withIds = (m: StockModel) => m.reservations.filter((r) => r.id !== undefined);

/**
 * When the coordinator's reconciler retries a commit that a shard did not answer: 10 s after the failed round
 * (then 20 s, 40 s… per further failed round; a fault fires once, so the first retry completes it). From then
 * on the reservation is committed, and the model says so.
 */
const RECONCILE_MS = 10_000;

/** A fault on `method` at the shard of one of the reservation's items. */
function itemFault(r: ModelReservation, method: string, spec: ItemFault | undefined): Fault | undefined {
  const target = spec && r.items.length ? r.items[spec.item % r.items.length]!.shard : undefined;
  return target ? { method, when: spec!.when, matches: (n) => n === target } : undefined;
}

/** Every line of the reservation leaves the shelf: on_hand and reserved both drop. */
function finishCommit(m: StockModel, r: ModelReservation) {
  for (const it of r.items) {
    if (it.state !== "held") continue;
    it.state = "committed";
    m.ensureCell(it.sku, it.location).onHand -= it.quantity;
  }
  r.status = "committed";
  r.committingSince = undefined;
}

async function reserveOnce(w: World, r: ModelReservation, faultSpec?: FaultSpec): Promise<string> {
  const { m, s } = w;
  const faultSku = faultSpec ? s.skus[faultSpec.sku % s.skus.length]! : undefined;
  const fault: Fault | undefined =
    faultSpec && faultSku
      ? { method: faultSpec.method, when: faultSpec.when, matches: (n) => n === home(faultSku) || n.startsWith(`stock:hot:${faultSku}:`) }
      : undefined;
  // A fault on the coordinator's own hold can never fire, so a history that pins the answer after a fault would
  // test nothing (about 1 key in 16): the key is drawn again until another shard coordinates. A named shopper's
  // coordinator does not depend on the key; such a fault may simply not fire, which the checks below allow.
  if (faultSku && faultSpec?.method === "hold" && !r.shopper) {
    for (let i = 0; i < 200 && (await coordinatorOfKey(s, r)) === home(faultSku); i++) r.key = uid("model");
  }
  const hotNow = new Set(r.lines.filter((l) => m.hotState(l.sku) === "hot").map((l) => l.sku));
  const cold = r.lines.filter((l) => !hotNow.has(l.sku));
  const predicted = m.predictHold(cold, r.region);
  const res = await s.fetch("/v1/reservations", {
    method: "POST",
    body: JSON.stringify({ items: r.lines, ttl_seconds: r.ttl }),
    headers: shopperHeaders(r),
    fault,
  });
  const what = `reserve ${JSON.stringify(r.lines)} region=${r.region ?? "-"} → ${res.status} ${JSON.stringify(res.body)}`;

  if (fault?.fired && fault.method !== "hold") m.transitUnsettled = true;
  if (fault?.fired && (fault.method === "hold" || res.status === 503)) {
    // A shard that failed mid-saga: nothing stays held and the key may be retried. (A failed transfer while
    // borrowing may also end in a hold or a refusal: the units stay with the giver until the sweeper settles.)
    expect(res.status, what).toBe(503);
    r.outcome = "abandoned";
    return what;
  }
  if (res.status === 409 && res.headers.get("x-sold-out") === "edge") {
    // The colo's short-lived sold-out marker answered; it may only stand for a SKU seen sold out here.
    const marked = r.lines.filter((l) => l.location === undefined && m.soldOutMarked.has(l.sku));
    expect(marked.length, what).toBeGreaterThan(0);
    r.outcome = "failed";
    return what;
  }
  if (res.status === 201) {
    expect(predicted.ok, `${what}: the model has no room for ${JSON.stringify(predicted)}`).toBe(true);
    const body = res.body as { id: string; expires_at: string; items: Item[] };
    r.id = body.id;
    r.expiresAt = Date.parse(body.expires_at);
    expect(r.expiresAt, what).toBe(m.now + r.ttl * 1000);
    const coldItems = body.items.filter((i) => !hotNow.has(i.sku));
    if (predicted.ok) expect(itemSet(coldItems), what).toEqual(itemSet(predicted.items));
    checkHotItems(m, r.lines, body.items, hotNow, what);
    r.outcome = "held";
    r.status = "held";
    r.items = body.items.map((i): ModelItem => ({ sku: i.sku, location: i.location, quantity: i.quantity, shard: shardOfLine(m, i.sku, body.id, hotNow.has(i.sku)), state: "held", until: r.expiresAt }));
    return what;
  }
  expect(res.status, what).toBe(409);
  const shortfalls = (res.body as { shortfalls: { sku: string; requested: number; available: number; location?: string }[] }).shortfalls;
  const coldShort = shortfalls.filter((sf) => !hotNow.has(sf.sku));
  if (predicted.ok) {
    // Only a hot SKU's sub-shard may fall short where the model has room: its quota is a slice of the stock.
    expect(coldShort, what).toEqual([]);
    expect(shortfalls.length, what).toBeGreaterThan(0);
  } else {
    const key = (x: { sku: string; location?: string; requested: number; available: number }) => `${x.sku}@${x.location ?? "*"} ${x.requested}/${x.available}`;
    expect(coldShort.map(key).sort(), what).toEqual(predicted.shortfalls.map(key).sort());
  }
  noteSoldOut(m, res.body);
  r.outcome = "failed";
  return what;
}

/** A refusal that found a SKU empty leaves this colo's sold-out marker for it (src/stock/flash-gate.ts). */
function noteSoldOut(m: StockModel, problem: { shortfalls?: { sku: string; available: number; location?: string }[] }) {
  for (const sf of problem.shortfalls ?? []) if (sf.location === undefined && sf.available === 0) m.soldOutMarked.add(sf.sku);
}

/** A hot SKU's items: every unit asked for, named locations honoured, and never more than the model's room. */
function checkHotItems(m: StockModel, lines: Line[], items: Item[], hot: Set<string>, what: string) {
  for (const sku of hot) {
    const asked = lines.filter((l) => l.sku === sku);
    const got = items.filter((i) => i.sku === sku);
    expect(got.reduce((n, i) => n + i.quantity, 0), what).toBe(asked.reduce((n, l) => n + l.quantity, 0));
    for (const loc of new Set(asked.flatMap((l) => (l.location ? [l.location] : [])))) {
      const named = asked.filter((l) => l.location === loc).reduce((n, l) => n + l.quantity, 0);
      expect(got.filter((i) => i.location === loc).reduce((n, i) => n + i.quantity, 0), what).toBeGreaterThanOrEqual(named);
    }
    for (const it of mergeItems(got)) {
      expect(m.available(sku, it.location), `${what}: ${it.quantity} held at ${it.location} beyond the stock`).toBeGreaterThanOrEqual(it.quantity);
    }
  }
}

async function runSpec(w: World, spec: Spec): Promise<ModelReservation | undefined> {
  const { m, s } = w;
  const sku = (i: number) => s.skus[i % s.skus.length]!;
  switch (spec.t) {
    case "reserve": {
      const r: ModelReservation = {
        key: uid("model"),
        lines: spec.lines.map((l) => ({ sku: sku(l.sku), quantity: l.quantity, ...(l.location ? { location: l.location } : {}) })),
        region: spec.region,
        ...(spec.shopper !== undefined ? { shopper: `model-shopper-${spec.shopper}` } : {}),
        ttl: spec.ttl,
        outcome: "failed",
        expiresAt: 0,
        items: [],
      };
      m.reservations.push(r);
      const what = await reserveOnce(w, r, spec.fault && (FIXED.settlingFaults || spec.fault.method === "hold") ? spec.fault : undefined);
      // Regression histories pin the answer where the model alone would accept either (a hot SKU's quotas).
      if (spec.want) expect(r.outcome, `${what}; model: ${JSON.stringify(m.reservations.map((x) => [x.outcome, x.status ?? "-", x.lines]))}`).toBe(spec.want === 201 ? "held" : "failed");
      return r;
    }
    case "replay": {
      if (!m.reservations.length) return;
      const r = m.reservations[spec.pick % m.reservations.length]!;
      if (!spec.same) {
        const lines = r.lines.map((l, i) => (i === 0 ? { ...l, quantity: l.quantity + 1 } : l));
        // The same shopper (the key is scoped to the storefront key and its x-shopper-id), another body.
        const res = await s.fetch("/v1/reservations", { method: "POST", body: JSON.stringify({ items: lines, ttl_seconds: r.ttl }), headers: shopperHeaders(r) });
        expect(res.status, `replay with another body: ${JSON.stringify(res.body)}`).toBe(422);
        return;
      }
      if (r.outcome === "abandoned") {
        await reserveOnce(w, r);
        return r;
      }
      const res = await s.fetch("/v1/reservations", {
        method: "POST",
        body: JSON.stringify({ items: r.lines, ttl_seconds: r.ttl }),
        headers: shopperHeaders(r),
      });
      if (r.outcome === "held") {
        expect(res.status, JSON.stringify(res.body)).toBe(201);
        expect(res.body.id).toBe(r.id);
        expect(res.headers.get("idempotent-replayed")).toBe("true");
        expect(itemSet(res.body.items)).toEqual(itemSet(r.items));
      } else {
        expect(res.status, JSON.stringify(res.body)).toBe(409);
      }
      return r;
    }
    case "commit": {
      const list = withIds(m);
      if (!list.length) return;
      const r = list[spec.pick % list.length]!;
      const before = m.effective(r);
      const fault = itemFault(r, "commit", FIXED.settlingFaults ? spec.fault : undefined);
      const res = await s.fetch(`/v1/reservations/${r.id}/commit`, { method: "POST", body: "{}", fault });
      const what = `commit of a ${before} reservation${fault?.fired ? ` (${fault.when} fault on ${fault.fired})` : ""} → ${res.status} ${JSON.stringify(res.body)}`;
      if (before !== "held" && before !== "committed" && before !== "committing") {
        expect(res.status, what).toBe(409);
        return r;
      }
      if (fault?.fired && before !== "committed") {
        // Accepted, but a shard did not answer: the reservation is committing, and its holds are never
        // released or resold meanwhile; a retry or the coordinator's reconciler completes it.
        expect([res.status, res.body.status], what).toEqual([202, "committing"]);
        if (before === "held") {
          r.status = "committing";
          r.committingSince = m.now;
          for (const it of r.items) if (it.state === "held") it.until = Number.POSITIVE_INFINITY;
        }
        return r;
      }
      expect([res.status, res.body.status], what).toEqual([200, "committed"]);
      if (before !== "committed") finishCommit(m, r);
      return r;
    }
    case "release": {
      const list = withIds(m);
      if (!list.length) return;
      const r = list[spec.pick % list.length]!;
      const before = m.effective(r);
      const fault = itemFault(r, "release", spec.fault);
      const res = await s.fetch(`/v1/reservations/${r.id}`, { method: "DELETE", fault });
      const what = `release of a ${before} reservation → ${res.status} ${JSON.stringify(res.body)}`;
      if (before === "committed" || before === "committing") {
        expect(res.status, what).toBe(409);
        return r;
      }
      expect(res.status, what).toBe(200);
      expect(res.body.status, what).toBe(before === "held" ? "released" : before);
      if (before === "held") r.status = "released";
      if (before === "expired") r.status = "expired";
      // Every release (a repeated one too) is sent to every shard of the reservation. A shard that never got
      // it keeps the hold until its own deadline, or until the client's retried DELETE reaches it.
      for (const it of r.items) {
        if (it.state === "held" && !(fault?.fired === it.shard && fault.when === "before")) it.state = "gone";
      }
      return r;
    }
    case "extend": {
      const list = withIds(m);
      if (!list.length) return;
      const r = list[spec.pick % list.length]!;
      const before = m.effective(r);
      const fault = itemFault(r, "extend", FIXED.settlingFaults ? spec.fault : undefined);
      const res = await s.fetch(`/v1/reservations/${r.id}/extend`, { method: "POST", body: JSON.stringify({ ttl_seconds: spec.ttl }), fault });
      const what = `extend of a ${before} reservation${fault?.fired ? ` (${fault.when} fault on ${fault.fired})` : ""} → ${res.status} ${JSON.stringify(res.body)}`;
      if (before !== "held") {
        expect(res.status, what).toBe(409);
        return r;
      }
      const deadline = m.now + spec.ttl * 1000;
      if (fault?.fired) {
        // A shard did not confirm: the header keeps the old deadline (the earliest in force), and the shards that
        // did move their holds put them back to it, so every unit is free again at the old deadline.
        expect(res.status, what).toBe(503);
        return r;
      }
      expect(res.status, what).toBe(200);
      r.expiresAt = deadline;
      expect(Date.parse(res.body.expires_at), what).toBe(r.expiresAt);
      for (const it of r.items) if (it.state === "held") it.until = r.expiresAt;
      return r;
    }
    case "advance": {
      m.now += spec.ms;
      freezeClock(m.now);
      // The colo's sold-out markers live 5 s of the cache's own (real) clock, which cannot be frozen: when the
      // model's time passes that, the markers are gone as they would be.
      if (spec.ms >= SOLD_OUT_TTL_SECONDS * 1000) {
        await clearSoldOut(m.skus());
        m.soldOutMarked.clear();
      }
      // Deadlines are enforced by each object's alarm: a shard asks the reservation's coordinator before letting
      // a due hold go, and the coordinator's alarm completes commits that a shard did not answer.
      const committing = m.reservations.filter((r) => r.status === "committing");
      const objects = new Set([...m.skus().flatMap((sk) => shardsOf(m, sk)), ...committing.map((r) => coordinatorOfReservation(env, r.id!)!)]);
      for (let round = 0; round < 2; round++) for (const name of objects) await runDurableObjectAlarm(env.STOCK.getByName(name));
      for (const r of committing) {
        if (m.now - r.committingSince! < RECONCILE_MS) continue;
        finishCommit(m, r);
        const got = await s.fetch(`/v1/reservations/${r.id}`);
        expect(got.body.status, `${r.id} is still ${got.body.status} after the reconciler ran`).toBe("committed");
      }
      // The giver's alarm re-delivers a transfer whose arrival was not confirmed within 2 s.
      if (spec.ms >= 2_000) m.transitUnsettled = false;
      return;
    }
    case "set": {
      const k = sku(spec.sku);
      if (m.hotState(k) !== "cold" && !FIXED.hotAdminWrites) return;
      const held = m.held(k, spec.location);
      // Below what is held is a recount that oversells; until that is reported, stay at or above it.
      const target = FIXED.recountBelowHeld ? spec.extra : held + spec.extra;
      // Safety stock is set on ordinary SKUs only: on a hot SKU it would sit with the home shard's remainder.
      const safety = spec.safety !== undefined && m.hotState(k) === "cold" ? spec.safety : undefined;
      // So is a backorder limit (pre-orders): a hot SKU's sub-shards sell only units that exist.
      const backorder = spec.backorder !== undefined && m.hotState(k) === "cold" ? spec.backorder : undefined;
      const limits = { ...(safety !== undefined ? { safety_stock: safety } : {}), ...(backorder !== undefined ? { backorder_limit: backorder } : {}) };
      const res = await s.fetch(`/admin/stock/${encodeURIComponent(k)}`, { method: "PUT", role: "admin", body: JSON.stringify({ location: spec.location, on_hand: target, ...limits }) });
      const what = `set ${k}@${spec.location} to ${target} with ${held} held (${m.hotState(k)}) → ${res.status} ${JSON.stringify(res.body)}`;
      expect(res.status, what).toBe(200);
      const cell = m.ensureCell(k, spec.location);
      cell.onHand = target;
      if (safety !== undefined) cell.safety = safety;
      if (backorder !== undefined) cell.backorder = backorder;
      // The answer is the physical count, and a recount below what is held (beyond the backorder limit) says by
      // how much it is oversold.
      const oversold = m.oversoldAt(k, spec.location);
      expect({ on_hand: res.body.on_hand, reserved: res.body.reserved, oversold: res.body.oversold ?? 0 }, what).toEqual({ on_hand: target, reserved: held, oversold });
      m.oversold.set(`${k}\u0000${spec.location}`, oversold);
      return;
    }
    case "adjust": {
      const k = sku(spec.sku);
      if (m.hotState(k) !== "cold" && !FIXED.hotAdminWrites) return;
      const retry = spec.retry !== undefined && m.adjustments.size ? [...m.adjustments.entries()][spec.retry % m.adjustments.size]! : undefined;
      if (retry) {
        const [eventId, prev] = retry;
        if (m.hotState(prev.sku) !== "cold" && !FIXED.hotAdminWrites) return;
        const res = await s.fetch("/admin/stock/adjustments", { method: "POST", role: "admin", body: JSON.stringify([{ sku: prev.sku, location: prev.location, delta: prev.delta, reason: prev.reason, event_id: eventId }]) });
        expect(res.status).toBe(200);
        const out = res.body.results[0];
        if (prev.status === "applied" || !FIXED.rejectedRetryApplies) {
          expect(out.status, JSON.stringify(out)).toBe("duplicate");
          return;
        }
        applyAdjustment(m, eventId, prev, out);
        return;
      }
      const cell = m.cell(k, spec.location);
      const onHand = cell?.onHand ?? 0;
      const held = m.held(k, spec.location);
      let delta = spec.delta;
      // Below what is held (but not below zero) would oversell; until that is reported, make it a rejection.
      if (!FIXED.recountBelowHeld && delta < 0 && onHand + delta >= 0 && onHand + delta < held) delta = -(onHand + 1);
      const line = { sku: k, location: spec.location, delta, reason: "model", status: "applied" as "applied" | "rejected" };
      const eventId = uid("evt");
      const res = await s.fetch("/admin/stock/adjustments", { method: "POST", role: "admin", body: JSON.stringify([{ ...line, event_id: eventId }]) });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      applyAdjustment(m, eventId, line, res.body.results[0]);
      return;
    }
    case "hot": {
      const k = sku(spec.sku);
      const state = m.hotState(k);
      const res = await s.fetch(`/admin/stock/${encodeURIComponent(k)}/hot`, { method: "POST", role: "admin", body: JSON.stringify({ sub_shards: spec.k }) });
      const what = `mark hot K=${spec.k} (${state}) → ${res.status} ${JSON.stringify(res.body)}`;
      if (state === "cold" || (state === "hot" && m.hot.get(k)!.k === spec.k)) {
        expect(res.status, what).toBe(200);
        m.hot.set(k, { k: spec.k, state: "hot" });
      } else {
        expect(res.status, what).toBe(409);
      }
      return;
    }
    case "unhot": {
      const k = sku(spec.sku);
      const state = m.hotState(k);
      const res = await s.fetch(`/admin/stock/${encodeURIComponent(k)}/hot`, { method: "DELETE", role: "admin" });
      const what = `un-mark (${state}) → ${res.status} ${JSON.stringify(res.body)}`;
      if (state === "cold") {
        expect(res.status, what).toBe(404);
        return;
      }
      expect(res.status, what).toBe(200);
      const kk = m.hot.get(k)!.k;
      const subs = new Set(Array.from({ length: kk }, (_, i) => hotSubShardName(k, i)));
      const stillHeld = m.liveItems().some((i) => i.sku === k && subs.has(i.shard));
      if (stillHeld) m.hot.set(k, { k: kk, state: "folding" });
      else m.hot.delete(k);
      expect(res.body.state, what).toBe(stillHeld ? "folding" : null);
      return;
    }
    case "burst": {
      // Many single-unit checkouts on one SKU at once: on a hot SKU they drain the sub-shards unevenly, so
      // later, larger holds have to borrow from siblings.
      const k = sku(spec.sku);
      const rs = Array.from({ length: spec.n }, (_, i): ModelReservation => ({ key: uid("burst"), lines: [{ sku: k, quantity: 1 }], shopper: `burst-shopper-${i}`, ttl: 120, outcome: "failed", expiresAt: 0, items: [] }));
      const hotK = m.hotState(k) === "hot" ? m.hot.get(k)!.k : 0;
      const answers = await Promise.all(
        rs.map((r) => s.fetch("/v1/reservations", { method: "POST", body: JSON.stringify({ items: r.lines, ttl_seconds: r.ttl }), headers: shopperHeaders(r) })),
      );
      const free = m.skus().includes(k) ? [...m.cells.get(k)!.keys()].reduce((n, loc) => n + Math.max(0, m.room(k, loc)), 0) : 0;
      let granted = 0;
      let edge = 0;
      answers.forEach((res, i) => {
        const r = rs[i]!;
        m.reservations.push(r);
        if (res.status !== 201) {
          expect(res.status, JSON.stringify(res.body)).toBe(409);
          if (res.headers.get("x-sold-out") === "edge") edge++;
          noteSoldOut(m, res.body);
          return;
        }
        const it = res.body.items[0] as Item;
        r.id = res.body.id;
        r.outcome = "held";
        r.status = "held";
        r.expiresAt = Date.parse(res.body.expires_at);
        expect(m.available(k, it.location), `burst: a unit held at ${it.location} beyond the stock`).toBeGreaterThanOrEqual(1);
        r.items = [{ ...it, shard: shardOfLine(m, k, r.id!, hotK > 0), state: "held", until: r.expiresAt }];
        granted++;
      });
      if (edge) expect(m.soldOutMarked.has(k), "a sold-out marker for a SKU never seen sold out").toBe(true);
      // A cold SKU serves a burst exactly: every unit that is free sells, and no more (requests the colo's
      // sold-out marker answered never reached the shard).
      if (!hotK) expect(granted, `burst of ${spec.n} on ${free} free units, ${edge} refused at the edge`).toBe(Math.min(spec.n - edge, free));
      return;
    }
  }
}

function applyAdjustment(m: StockModel, eventId: string, line: { sku: string; location: string; delta: number; reason: string }, out: { status: string; on_hand?: number; oversold?: number }) {
  const cell = m.ensureCell(line.sku, line.location);
  const held = m.held(line.sku, line.location);
  const expected = cell.onHand + line.delta < 0 ? "rejected" : "applied";
  const what = `adjust ${line.sku}@${line.location} by ${line.delta} (on_hand ${cell.onHand}, held ${held}) → ${JSON.stringify(out)}`;
  expect(out.status, what).toBe(expected);
  if (expected === "applied") {
    cell.onHand += line.delta;
    // Taking the count below what is held (beyond the backorder limit) is a physical fact: applied, and reported as oversold.
    const oversold = m.oversoldAt(line.sku, line.location);
    expect({ on_hand: out.on_hand, oversold: out.oversold ?? 0 }, what).toEqual({ on_hand: cell.onHand, oversold });
    m.oversold.set(`${line.sku}\u0000${line.location}`, oversold);
  }
  m.adjustments.set(eventId, { ...line, status: expected });
}

// --- the checks after every command ------------------------------------------------------------------------

type AvailRow = { sku: string; on_hand: number; reserved: number; available: number; locations: { location: string; on_hand: number; reserved: number; available: number }[] };
type LedgerRow = { location: string; delta_on_hand: number; delta_reserved: number };

async function verify(w: World, touched: ModelReservation | undefined): Promise<void> {
  const { m, s } = w;
  // The model itself: held units never exceed the physical count and the backorder limit, beyond what was
  // reported as oversold.
  for (const sku of m.skus()) {
    for (const [loc, c] of m.cells.get(sku)!) {
      expect(m.held(sku, loc), `${sku}@${loc}: held beyond on_hand`).toBeLessThanOrEqual(c.onHand + c.backorder + (m.oversold.get(`${sku}\u0000${loc}`) ?? 0));
    }
  }
  const avail = await s.fetch(`/v1/availability?skus=${m.skus().map(encodeURIComponent).join(",")}&by_location=true`);
  expect(avail.status).toBe(200);
  for (const sku of m.skus()) {
    const state = m.hotState(sku);
    const row = (avail.body.items as AvailRow[]).find((r) => r.sku === sku)!;
    const expected = [...m.cells.get(sku)!].map(([loc, c]) => {
      const held = m.held(sku, loc);
      return { location: loc, on_hand: c.onHand, reserved: held, available: Math.max(0, c.onHand - held - c.safety) };
    });
    const sortLoc = <T extends { location: string }>(xs: T[]) => [...xs].sort((a, b) => a.location.localeCompare(b.location));
    // A committing reservation's lines are committed on some shards and still held on others until the
    // reconciler runs: either way on_hand − reserved and available are the same, so only those are compared there.
    const uncertain = new Set(m.reservations.filter((r) => r.status === "committing").flatMap((r) => r.items.filter((i) => i.sku === sku).map((i) => i.location)));
    const comparable = <T extends { location: string; on_hand: number; reserved: number }>(xs: T[]) =>
      sortLoc(xs).map((x) => (uncertain.has(x.location) ? { ...x, on_hand: x.on_hand - x.reserved, reserved: 0 } : x));
    if (state === "cold" || FIXED.hotReaders) {
      expect(comparable(row.locations.map(({ location, on_hand, reserved, available }) => ({ location, on_hand, reserved, available }))), `availability of ${sku} (${state})`).toEqual(comparable(expected));
      if ((state === "cold" || FIXED.mergedLedger) && (FIXED.ledgerCountsTransit || !m.transitUnsettled)) await expectLedgerReplay(s, sku, sortLoc(expected), state !== "cold", comparable);
    }
    if (state !== "cold") {
      // Every object's expiry has run, so the per-object totals count live holds only.
      for (const name of shardsOf(m, sku).slice(1)) await runDurableObjectAlarm(env.STOCK.getByName(name));
      const hot = await s.fetch(`/admin/stock/${encodeURIComponent(sku)}/hot`, { role: "admin" });
      expect(hot.status).toBe(200);
      const totals = hot.body.totals as { on_hand: number; reserved: number };
      const [got, want] = [
        // The admin view's totals include units in transit, as every reader counts them.
        [{ location: "*", on_hand: totals.on_hand, reserved: totals.reserved }],
        [{ location: "*", on_hand: expected.reduce((n, e) => n + e.on_hand, 0), reserved: expected.reduce((n, e) => n + e.reserved, 0) }],
      ];
      const fold = (xs: typeof got) => (uncertain.size ? xs.map((x) => ({ ...x, on_hand: x.on_hand - x.reserved, reserved: 0 })) : xs);
      expect(fold(got), `hot totals of ${sku}`).toEqual(fold(want));
      // Nothing stays in transit once the sweeper has run.
      if (!m.transitUnsettled) expect(hot.body.in_transit, `in transit of ${sku}`).toBe(0);
    }
  }
  if (touched?.id) {
    const got = await s.fetch(`/v1/reservations/${touched.id}`);
    expect(got.status).toBe(200);
    expect(got.body.status, `status of ${touched.id}`).toBe(m.effective(touched));
  }
}

/** Summing the ledger's movements per location gives the counts every reader shows. */
async function expectLedgerReplay(
  s: Sut,
  sku: string,
  expected: { location: string; on_hand: number; reserved: number }[],
  merged: boolean,
  comparable: <T extends { location: string; on_hand: number; reserved: number }>(xs: T[]) => T[],
) {
  const rows: LedgerRow[] = [];
  let cursor: string | null = null;
  do {
    const page = await s.fetch(`/admin/stock/${encodeURIComponent(sku)}/ledger?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { role: "admin" });
    expect(page.status).toBe(200);
    rows.push(...(page.body.items as LedgerRow[]));
    cursor = page.body.next_cursor as string | null;
  } while (cursor);
  const replay = new Map<string, { on_hand: number; reserved: number }>();
  for (const r of rows) {
    const cur = replay.get(r.location) ?? { on_hand: 0, reserved: 0 };
    replay.set(r.location, { on_hand: cur.on_hand + r.delta_on_hand, reserved: cur.reserved + r.delta_reserved });
  }
  const got = expected.map((e) => ({ location: e.location, ...(replay.get(e.location) ?? { on_hand: 0, reserved: 0 }) }));
  expect(comparable(got), `ledger replay of ${sku}${merged ? " (all shards)" : ""}`).toEqual(comparable(expected.map(({ location, on_hand, reserved }) => ({ location, on_hand, reserved }))));
}

// --- arbitraries -------------------------------------------------------------------------------------------

const skuIndex = fc.nat({ max: 2 });
const location = fc.constantFrom(...LOCATIONS);
const lineArb = fc.record({ sku: skuIndex, quantity: fc.integer({ min: 1, max: 4 }), location: fc.option(location, { nil: undefined, freq: 2 }) }, { requiredKeys: ["sku", "quantity"] });
const ttlArb = fc.constantFrom(60, 120, 600);
const itemFaultArb = fc.option(fc.record({ item: fc.nat(), when: fc.constantFrom("before" as const, "after" as const) }), { nil: undefined, freq: 3 });

const reserveArb: fc.Arbitrary<Spec> = fc.record({
    t: fc.constant("reserve" as const),
    lines: fc.array(lineArb, { minLength: 1, maxLength: 3 }),
    region: fc.option(fc.constantFrom<Region>("NA", "EU", "APAC"), { nil: undefined }),
    shopper: fc.option(fc.nat({ max: 3 }), { nil: undefined, freq: 4 }),
    ttl: ttlArb,
    fault: fc.option(
      fc.record({ method: fc.constantFrom("hold" as const, "escrowSend" as const, "escrowGive" as const), sku: skuIndex, when: fc.constantFrom("before" as const, "after" as const) }),
      { nil: undefined, freq: 4 },
    ),
  }, { requiredKeys: ["t", "lines", "ttl", "shopper"] });

/** Checkouts are the common case: reserves are drawn four times as often as any other command. */
const specArbs: fc.Arbitrary<Spec>[] = [
  reserveArb,
  reserveArb,
  reserveArb,
  reserveArb,
  fc.record({ t: fc.constant("replay" as const), pick: fc.nat(), same: fc.boolean() }),
  fc.record({ t: fc.constant("commit" as const), pick: fc.nat(), fault: itemFaultArb }, { requiredKeys: ["t", "pick"] }),
  fc.record({ t: fc.constant("release" as const), pick: fc.nat(), fault: itemFaultArb }, { requiredKeys: ["t", "pick"] }),
  fc.record({ t: fc.constant("extend" as const), pick: fc.nat(), ttl: ttlArb, fault: itemFaultArb }, { requiredKeys: ["t", "pick", "ttl"] }),
  fc.record({ t: fc.constant("advance" as const), ms: fc.constantFrom(1_000, 2_000, 11_000, 21_000, 60_000, 61_000, 120_000, 700_000) }),
  fc.record(
    {
      t: fc.constant("set" as const),
      sku: skuIndex,
      location,
      extra: fc.nat({ max: 8 }),
      safety: fc.option(fc.nat({ max: 2 }), { nil: undefined, freq: 3 }),
      backorder: fc.option(fc.nat({ max: 3 }), { nil: undefined, freq: 3 }),
    },
    { requiredKeys: ["t", "sku", "location", "extra"] },
  ),
  fc.record({ t: fc.constant("adjust" as const), sku: skuIndex, location, delta: fc.integer({ min: -6, max: 6 }).filter((d) => d !== 0), retry: fc.option(fc.nat(), { nil: undefined, freq: 3 }) }, { requiredKeys: ["t", "sku", "location", "delta"] }),
  fc.record({ t: fc.constant("hot" as const), sku: skuIndex, k: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ t: fc.constant("unhot" as const), sku: skuIndex }),
  fc.record({ t: fc.constant("burst" as const), sku: skuIndex, n: fc.integer({ min: 2, max: 6 }) }),
];

/** What the random histories exercised, printed once so a run that tests nothing shows it. */
const stats = new Map<string, number>();
const count = (k: string) => stats.set(k, (stats.get(k) ?? 0) + 1);

class SpecCommand implements fc.AsyncCommand<StockModel, World> {
  constructor(readonly spec: Spec) {}
  check() {
    return true;
  }
  async run(_m: StockModel, w: World) {
    const touched = await runSpec(w, this.spec);
    const fault = "fault" in this.spec && this.spec.fault ? "+fault" : "";
    count(this.spec.t + fault + (touched ? `:${this.spec.t === "reserve" ? touched.outcome : (touched.status ?? touched.outcome)}` : ""));
    await verify(w, touched);
  }
  toString() {
    return JSON.stringify(this.spec);
  }
}

const stockArb = fc.tuple(
  fc.record({ "loc-us-east": fc.integer({ min: 0, max: 8 }), "loc-us-west": fc.integer({ min: 0, max: 8 }), "loc-eu-central": fc.integer({ min: 0, max: 8 }) }),
  fc.record({ "loc-us-east": fc.integer({ min: 0, max: 12 }) }),
  fc.record({ "loc-eu-central": fc.integer({ min: 0, max: 6 }), "loc-ap-south": fc.integer({ min: 0, max: 6 }) }),
);

async function runScenario(stock: Record<string, number>[], specs: Spec[] | Iterable<fc.AsyncCommand<StockModel, World>>): Promise<void> {
  const skus = await makeSkus(stock);
  const m = new StockModel(frozen);
  skus.forEach((sku, i) => m.addSku(sku, stock[i]!));
  const w: World = { m, s: new Sut(skus) };
  await w.s.register();
  await verify(w, undefined);
  const cmds = Array.isArray(specs) ? specs.map((s) => new SpecCommand(s)) : specs;
  for (const c of cmds) await c.run(m, w);
}

beforeAll(async () => {
  await seedApiKeys(env.DB);
  await seedCategories(env.DB);
  freezeClock(realNow());
});

afterAll(() => {
  setClock(null);
  setStockFault(null);
});

const L = { east: "loc-us-east", west: "loc-us-west", eu: "loc-eu-central", ap: "loc-ap-south" } as const;
const NO_STOCK: Record<string, number>[] = [{ [L.east]: 0 }, { [L.east]: 0 }, { [L.eu]: 0 }];
const reserve = (lines: LineSpec[], more: Partial<Extract<Spec, { t: "reserve" }>> = {}): Spec => ({ t: "reserve", lines, ttl: 60, ...more });

/**
 * Histories kept as regression cases: each pins a boundary that a flipped or off-by-one condition in the
 * stock path would cross (bench/results/mutation.md lists the mutations they kill), or a counterexample
 * the random search found.
 */
const REGRESSIONS: { name: string; stock: Record<string, number>[]; specs: Spec[] }[] = [
  {
    name: "a named location sells exactly its free units, and one more is refused",
    stock: [{ [L.east]: 0, [L.west]: 3 }, ...NO_STOCK.slice(1)],
    specs: [
      reserve([{ sku: 0, quantity: 2, location: L.west }], { want: 201 }),
      reserve([{ sku: 0, quantity: 2, location: L.west }], { want: 409 }),
      reserve([{ sku: 0, quantity: 1, location: L.west }], { want: 201 }),
      reserve([{ sku: 0, quantity: 1, location: L.west }], { want: 409 }),
      reserve([{ sku: 0, quantity: 1, location: L.east }], { want: 409 }),
    ],
  },
  {
    name: "safety stock is never sold, by a named location or the server's choice",
    stock: [{ [L.east]: 3, [L.west]: 1 }, ...NO_STOCK.slice(1)],
    specs: [
      { t: "set", sku: 0, location: L.east, extra: 3, safety: 1 },
      reserve([{ sku: 0, quantity: 3, location: L.east }], { want: 409 }),
      reserve([{ sku: 0, quantity: 3 }], { want: 409 }),
      reserve([{ sku: 0, quantity: 2 }], { want: 201 }),
      reserve([{ sku: 0, quantity: 1, location: L.east }], { want: 409 }),
    ],
  },
  {
    name: "a named line and a line for any location of one SKU never take the same units twice",
    stock: [{ [L.east]: 3 }, ...NO_STOCK.slice(1)],
    specs: [
      reserve([{ sku: 0, quantity: 2, location: L.east }, { sku: 0, quantity: 2 }], { want: 409 }),
      reserve([{ sku: 0, quantity: 2 }, { sku: 0, quantity: 2, location: L.east }], { want: 409 }),
      reserve([{ sku: 0, quantity: 2, location: L.east }, { sku: 0, quantity: 1 }], { want: 201 }),
      reserve([{ sku: 0, quantity: 1 }], { want: 409 }),
    ],
  },
  {
    name: "a backorder limit sells exactly that many units beyond on_hand, wherever the location is chosen, and pre-orders are not oversold",
    stock: [{ [L.east]: 1, [L.west]: 0 }, ...NO_STOCK.slice(1)],
    specs: [
      { t: "set", sku: 0, location: L.east, extra: 1, backorder: 2 },
      reserve([{ sku: 0, quantity: 4, location: L.east }], { want: 409 }),
      reserve([{ sku: 0, quantity: 3, location: L.east }], { want: 201 }),
      reserve([{ sku: 0, quantity: 1, location: L.east }], { want: 409 }),
      { t: "adjust", sku: 0, location: L.east, delta: 1 },
      reserve([{ sku: 0, quantity: 1 }], { want: 201 }),
      reserve([{ sku: 0, quantity: 1, location: L.west }], { want: 409 }),
      { t: "set", sku: 0, location: L.west, extra: 0, backorder: 1 },
      reserve([{ sku: 0, quantity: 1 }], { region: "NA", want: 201 }),
      reserve([{ sku: 0, quantity: 1 }], { want: 409 }),
      { t: "set", sku: 0, location: L.east, extra: 1, backorder: 0 },
      { t: "commit", pick: 1 },
    ],
  },
  {
    name: "two lines on one named location are summed before the check",
    stock: [{ [L.west]: 3 }, ...NO_STOCK.slice(1)],
    specs: [
      reserve([{ sku: 0, quantity: 2, location: L.west }, { sku: 0, quantity: 2, location: L.west }], { want: 409 }),
      reserve([{ sku: 0, quantity: 2, location: L.west }, { sku: 0, quantity: 1, location: L.west }], { want: 201 }),
    ],
  },
  {
    name: "the server's choice sells exactly the free units of the best location",
    stock: [{ [L.east]: 2, [L.west]: 1 }, ...NO_STOCK.slice(1)],
    specs: [
      reserve([{ sku: 0, quantity: 3 }], { want: 409 }),
      reserve([{ sku: 0, quantity: 2 }], { want: 201 }),
      reserve([{ sku: 0, quantity: 2 }], { want: 409 }),
      reserve([{ sku: 0, quantity: 1 }], { want: 201 }),
      reserve([{ sku: 0, quantity: 1 }], { want: 409 }),
    ],
  },
  {
    name: "a shopper region takes its own locations in priority order, then falls back to the best one",
    stock: [{ [L.east]: 1, [L.west]: 2, [L.eu]: 4 }, ...NO_STOCK.slice(1)],
    specs: [
      reserve([{ sku: 0, quantity: 2 }], { region: "NA", want: 201 }),
      reserve([{ sku: 0, quantity: 1 }], { region: "NA", want: 201 }),
      reserve([{ sku: 0, quantity: 2 }], { region: "APAC", want: 201 }),
      reserve([{ sku: 0, quantity: 3 }], { region: "NA", want: 409 }),
      reserve([{ sku: 0, quantity: 2 }], { region: "EU", want: 201 }),
      reserve([{ sku: 0, quantity: 1 }], { region: "EU", want: 409 }),
    ],
  },
  {
    name: "a hold lapses exactly at its deadline: commit refused, stock back, extend refused",
    stock: [{ [L.east]: 2 }, ...NO_STOCK.slice(1)],
    specs: [
      reserve([{ sku: 0, quantity: 2 }], { want: 201 }),
      { t: "advance", ms: 59_999 },
      reserve([{ sku: 0, quantity: 1 }], { want: 409 }),
      { t: "extend", pick: 0, ttl: 60 },
      { t: "advance", ms: 60_000 },
      { t: "commit", pick: 0 },
      { t: "extend", pick: 0, ttl: 60 },
      reserve([{ sku: 0, quantity: 2 }], { want: 201 }),
      { t: "commit", pick: 1 },
      { t: "release", pick: 1 },
      { t: "replay", pick: 2, same: true },
    ],
  },
  {
    name: "an adjustment may take on_hand to zero but not below; a rejected event_id applies on retry once stock allows, then only once",
    stock: [{ [L.east]: 3 }, ...NO_STOCK.slice(1)],
    specs: [
      { t: "adjust", sku: 0, location: L.east, delta: -4 },
      { t: "adjust", sku: 0, location: L.east, delta: 2 },
      { t: "adjust", sku: 0, location: L.east, delta: -4, retry: 0 },
      { t: "adjust", sku: 0, location: L.east, delta: -4, retry: 0 },
      { t: "adjust", sku: 0, location: L.east, delta: 2, retry: 1 },
      reserve([{ sku: 0, quantity: 1, location: L.east }], { want: 201 }),
      reserve([{ sku: 0, quantity: 1, location: L.east }], { want: 409 }),
    ],
  },
  {
    name: "a recount or damage below what is held keeps the holds, reports oversold by N, and sells nothing until restocked",
    stock: [{ [L.east]: 4 }, { [L.east]: 6 }, ...NO_STOCK.slice(2)],
    specs: [
      reserve([{ sku: 0, quantity: 3, location: L.east }], { want: 201 }),
      { t: "adjust", sku: 0, location: L.east, delta: -3 },
      reserve([{ sku: 0, quantity: 1 }], { want: 409 }),
      { t: "set", sku: 0, location: L.east, extra: 4 },
      reserve([{ sku: 0, quantity: 1, location: L.east }], { want: 201 }),
      reserve([{ sku: 0, quantity: 1, location: L.east }], { want: 409 }),
      { t: "commit", pick: 0 },
      { t: "hot", sku: 1, k: 3 },
      reserve([{ sku: 1, quantity: 4 }], { want: 201 }),
      { t: "set", sku: 1, location: L.east, extra: 2 },
      reserve([{ sku: 1, quantity: 1 }], { want: 409 }),
      { t: "adjust", sku: 1, location: L.east, delta: 3 },
      reserve([{ sku: 1, quantity: 1, location: L.east }], { want: 201 }),
      reserve([{ sku: 1, quantity: 1, location: L.east }], { want: 409 }),
    ],
  },
  {
    name: "a shard failing before or after its hold: 503, nothing stays held, and the retried key succeeds",
    stock: [{ [L.east]: 2 }, { [L.east]: 2 }, { [L.eu]: 2 }],
    specs: [
      reserve([{ sku: 0, quantity: 2 }, { sku: 1, quantity: 2 }], { fault: { method: "hold", sku: 1, when: "after" } }),
      reserve([{ sku: 0, quantity: 2 }, { sku: 2, quantity: 2 }], { fault: { method: "hold", sku: 0, when: "before" } }),
      { t: "replay", pick: 0, same: true },
      reserve([{ sku: 2, quantity: 2 }], { want: 201 }),
    ],
  },
  {
    name: "a release that one shard never got leaves that shard's hold until its deadline, then frees it",
    stock: [{ [L.east]: 2 }, { [L.east]: 2 }, ...NO_STOCK.slice(2)],
    specs: [
      reserve([{ sku: 0, quantity: 2 }, { sku: 1, quantity: 2 }], { want: 201 }),
      { t: "release", pick: 0, fault: { item: 1, when: "before" } },
      reserve([{ sku: 0, quantity: 2 }], { want: 201 }),
      reserve([{ sku: 1, quantity: 1 }], { want: 409 }),
      { t: "advance", ms: 60_000 },
      reserve([{ sku: 1, quantity: 2 }], { want: 201 }),
    ],
  },
  {
    name: "a commit that one shard does not answer is 202 committing: its holds outlive their deadline, a retry completes it",
    stock: [{ [L.east]: 2 }, { [L.east]: 2 }, ...NO_STOCK.slice(2)],
    specs: [
      reserve([{ sku: 0, quantity: 2 }, { sku: 1, quantity: 1 }], { want: 201 }),
      { t: "commit", pick: 0, fault: { item: 1, when: "before" } },
      { t: "release", pick: 0 },
      { t: "advance", ms: 61_000 },
      reserve([{ sku: 1, quantity: 2 }], { want: 409 }),
      { t: "commit", pick: 0 },
      reserve([{ sku: 1, quantity: 1 }], { want: 201 }),
    ],
  },
  {
    name: "a commit whose shard answer was lost is completed by the coordinator's reconciler, once",
    stock: [{ [L.east]: 3 }, { [L.east]: 3 }, ...NO_STOCK.slice(2)],
    specs: [
      reserve([{ sku: 0, quantity: 1 }, { sku: 1, quantity: 2 }], { ttl: 600, want: 201 }),
      { t: "commit", pick: 0, fault: { item: 0, when: "after" } },
      { t: "advance", ms: 11_000 },
      { t: "advance", ms: 11_000 },
      { t: "commit", pick: 0 },
      reserve([{ sku: 0, quantity: 2 }, { sku: 1, quantity: 1 }], { want: 201 }),
      reserve([{ sku: 1, quantity: 1 }], { want: 409 }),
    ],
  },
  {
    name: "an extend that one shard does not confirm is 503 and the old deadline stays in force on every shard",
    stock: [{ [L.east]: 2 }, { [L.east]: 2 }, ...NO_STOCK.slice(2)],
    specs: [
      reserve([{ sku: 0, quantity: 2 }, { sku: 1, quantity: 2 }], { want: 201 }),
      { t: "extend", pick: 0, ttl: 600, fault: { item: 1, when: "before" } },
      { t: "advance", ms: 60_000 },
      { t: "commit", pick: 0 },
      reserve([{ sku: 1, quantity: 2 }], { want: 201 }),
      // The shard that did move its hold put it back: its units sell at the old deadline, not 10 minutes later.
      reserve([{ sku: 0, quantity: 2 }], { want: 201 }),
    ],
  },
  {
    name: "a borrow whose transfer fails leaves nothing in transit once the sweeper has run",
    stock: [{ [L.east]: 0 }, { [L.east]: 6 }, ...NO_STOCK.slice(2)],
    specs: [
      { t: "hot", sku: 1, k: 3 },
      reserve([{ sku: 1, quantity: 4 }], { fault: { method: "escrowGive", sku: 1, when: "after" } }),
      reserve([{ sku: 1, quantity: 3 }], { fault: { method: "escrowSend", sku: 1, when: "before" } }),
      { t: "advance", ms: 2_000 },
      reserve([{ sku: 1, quantity: 1, location: L.east }]),
      { t: "unhot", sku: 1 },
      { t: "advance", ms: 700_000 },
      { t: "unhot", sku: 1 },
      reserve([{ sku: 1, quantity: 6 }], { want: 201 }),
    ],
  },
  {
    name: "on a hot SKU damage may take the count to zero but not below, and units freed after an oversold recount are not sold twice",
    stock: [{ [L.east]: 0 }, { [L.east]: 4 }, ...NO_STOCK.slice(2)],
    specs: [
      { t: "hot", sku: 1, k: 2 },
      { t: "adjust", sku: 1, location: L.east, delta: -5 },
      reserve([{ sku: 1, quantity: 2, location: L.east }], { shopper: 0, want: 201 }),
      { t: "adjust", sku: 1, location: L.east, delta: -3 },
      { t: "release", pick: 0 },
      reserve([{ sku: 1, quantity: 2, location: L.east }], { shopper: 1, want: 409 }),
      reserve([{ sku: 1, quantity: 2, location: L.east }], { shopper: 0, want: 409 }),
      { t: "adjust", sku: 1, location: L.east, delta: -1 },
      { t: "adjust", sku: 1, location: L.east, delta: -1 },
    ],
  },
  {
    name: "found by the model: marking a SKU with one unit hot (K=1) and un-marking it at once keeps the unit",
    stock: [{ [L.east]: 0 }, { [L.east]: 1 }, ...NO_STOCK.slice(2)],
    specs: [{ t: "hot", sku: 1, k: 1 }, { t: "unhot", sku: 1 }, reserve([{ sku: 1, quantity: 1 }], { want: 201 })],
  },
  {
    name: "found by the model: a SKU folded, marked hot again and folded again gets every unit home (fold transfer ids never repeat)",
    stock: [{ [L.east]: 0 }, { [L.east]: 2 }, ...NO_STOCK.slice(2)],
    specs: [
      { t: "hot", sku: 1, k: 1 },
      { t: "unhot", sku: 1 },
      { t: "hot", sku: 1, k: 2 },
      { t: "unhot", sku: 1 },
      { t: "hot", sku: 1, k: 1 },
      { t: "unhot", sku: 1 },
      reserve([{ sku: 1, quantity: 2 }], { want: 201 }),
    ],
  },
  {
    name: "found by the model: a commit a shard did not answer is committed by the reconciler 10 s later, and reads say so",
    stock: [{ [L.east]: 1 }, ...NO_STOCK.slice(1)],
    specs: [
      reserve([{ sku: 0, quantity: 1 }], { want: 201 }),
      { t: "commit", pick: 0, fault: { item: 0, when: "before" } },
      { t: "advance", ms: 11_000 },
      { t: "extend", pick: 0, ttl: 60 },
      { t: "release", pick: 0 },
    ],
  },
  {
    name: "a hot SKU (K=4) sells every unit through borrowing, and not one more",
    stock: [{ [L.east]: 0 }, { [L.east]: 8 }, ...NO_STOCK.slice(2)],
    specs: [
      { t: "hot", sku: 1, k: 4 },
      reserve([{ sku: 1, quantity: 5 }], { want: 201 }),
      reserve([{ sku: 1, quantity: 1 }], { want: 201 }),
      reserve([{ sku: 1, quantity: 1 }], { want: 201 }),
      reserve([{ sku: 1, quantity: 1 }], { want: 201 }),
      reserve([{ sku: 1, quantity: 1 }], { want: 409 }),
      { t: "burst", sku: 1, n: 3 },
      { t: "unhot", sku: 1 },
      { t: "advance", ms: 700_000 },
      { t: "unhot", sku: 1 },
      reserve([{ sku: 1, quantity: 8 }], { want: 201 }),
    ],
  },
];

describe("stock model: regression histories", () => {
  it.each(REGRESSIONS)("$name", async ({ stock, specs }) => {
    await runScenario(stock, specs);
  });
});

describe("stock model: random histories agree with the reference model after every command", () => {
  it(`${RUNS} random command sequences (reserve, replay, commit, release, extend, expiry, set, adjust, hot K=1–8, bursts, faults)`, async () => {
    await fc.assert(
      fc.asyncProperty(stockArb, fc.commands(specArbs.map((a) => a.map((s) => new SpecCommand(s))), { maxCommands: MAX_COMMANDS, size: "max" }), async (stock, cmds) => {
        await runScenario(stock, cmds);
      }),
      { numRuns: RUNS, verbose: 1, ...(SEED === undefined ? {} : { seed: SEED }) },
    );
    console.log("stock model:", JSON.stringify(Object.fromEntries([...stats].sort())));
  }, 600_000);
});
