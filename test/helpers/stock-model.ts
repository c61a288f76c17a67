/**
 * The reference model for test/stock-model.test.ts: plain in-memory stock per (SKU, location) and the
 * reservations made against it. It knows nothing of shards, escrow or sagas. Hot or not, a SKU has one
 * physical count per location, and every reader must show that count.
 */

export const LOCATIONS = ["loc-us-east", "loc-us-west", "loc-eu-central", "loc-ap-south"] as const;
export type Region = "NA" | "EU" | "APAC";
/** The seed's locations per region in priority order (src/seed/generate.ts). */
const REGION_LOCATIONS: Record<Region, string[]> = { NA: ["loc-us-east", "loc-us-west"], EU: ["loc-eu-central"], APAC: ["loc-ap-south"] };

export type Line = { sku: string; quantity: number; location?: string };
export type Item = { sku: string; location: string; quantity: number };
export type Shortfall = { sku: string; requested: number; available: number; location?: string };

/** One held line as a shard keeps it: `until` is the deadline the shard enforces. */
export type ModelItem = Item & { shard: string; state: "held" | "committed" | "gone"; until: number };

export type ModelReservation = {
  key: string;
  lines: Line[];
  region?: Region;
  /** `x-shopper-id`: a hot SKU's lines go to the sub-shard of the reservation's shopper. */
  shopper?: string;
  ttl: number;
  /** What the create answered: 201, 409/422 (replayed as such), or 503 (the key may be retried). */
  outcome: "held" | "failed" | "abandoned";
  id?: string;
  /** Header status as stored; `effective()` turns a lapsed `held` into `expired` like the API does. */
  status?: "held" | "committing" | "committed" | "released" | "expired";
  /** When a commit was accepted but some shard did not answer: the coordinator's reconciler finishes it. */
  committingSince?: number;
  expiresAt: number;
  items: ModelItem[];
};

/** `backorder`: units that may be promised beyond on_hand (pre-orders), set on ordinary SKUs by a recount. */
type Cell = { onHand: number; safety: number; backorder: number };

const key = (sku: string, location: string) => `${sku}\u0000${location}`;

export class StockModel {
  now: number;
  /** Locations that have a stock row (baseline, or created by a set or adjustment), per SKU. */
  readonly cells = new Map<string, Map<string, Cell>>();
  readonly hot = new Map<string, { k: number; state: "hot" | "folding" }>();
  readonly reservations: ModelReservation[] = [];
  readonly adjustments = new Map<string, { status: "applied" | "rejected"; sku: string; location: string; delta: number; reason: string }>();
  /** SKUs whose sold-out marker may be live in this colo (a short-lived edge cache entry). */
  readonly soldOutMarked = new Set<string>();
  /** A transfer between objects failed since the sweeper last ran: units may be in transit until it does. */
  transitUnsettled = false;
  /** Units reported "oversold by N" per (sku, location): holds granted beyond a later recount. */
  readonly oversold = new Map<string, number>();

  constructor(now: number) {
    this.now = now;
  }

  addSku(sku: string, stock: Record<string, number>): void {
    const m = new Map<string, Cell>();
    for (const [loc, n] of Object.entries(stock)) m.set(loc, { onHand: n, safety: 0, backorder: 0 });
    this.cells.set(sku, m);
  }

  skus(): string[] {
    return [...this.cells.keys()];
  }

  cell(sku: string, location: string): Cell | undefined {
    return this.cells.get(sku)?.get(location);
  }

  ensureCell(sku: string, location: string): Cell {
    const m = this.cells.get(sku)!;
    let c = m.get(location);
    if (!c) m.set(location, (c = { onHand: 0, safety: 0, backorder: 0 }));
    return c;
  }

  liveItems(): ModelItem[] {
    return this.reservations.flatMap((r) => r.items.filter((i) => i.state === "held" && i.until > this.now));
  }

  held(sku: string, location: string): number {
    return this.liveItems().reduce((n, i) => n + (i.sku === sku && i.location === location ? i.quantity : 0), 0);
  }

  available(sku: string, location: string): number {
    const c = this.cell(sku, location);
    return c ? c.onHand - this.held(sku, location) - c.safety : 0;
  }

  /** What an ordinary SKU's shard may still hold there: available plus the backorder limit. */
  room(sku: string, location: string): number {
    return this.available(sku, location) + (this.cell(sku, location)?.backorder ?? 0);
  }

  /** Units promised beyond the count and the backorder limit: what a recount must report as oversold. */
  oversoldAt(sku: string, location: string): number {
    const c = this.cell(sku, location);
    return Math.max(0, this.held(sku, location) - (c?.onHand ?? 0) - (c?.backorder ?? 0));
  }

  effective(r: ModelReservation): ModelReservation["status"] {
    return r.status === "held" && this.now >= r.expiresAt ? "expired" : r.status;
  }

  /** The state of a hot SKU, or "cold". */
  hotState(sku: string): "cold" | "hot" | "folding" {
    return this.hot.get(sku)?.state ?? "cold";
  }

  /**
   * What a shard holding these lines does: lines on one (SKU, location) are summed first; a named location
   * must have the room (available plus backorder limit); otherwise the shopper's region's locations in priority order, then the location with
   * the most room (ties by name). All lines or none.
   */
  predictHold(lines: Line[], region: Region | undefined): { ok: true; items: Item[] } | { ok: false; shortfalls: Shortfall[] } {
    const wanted = new Map<string, Line>();
    for (const l of lines) {
      const k = key(l.sku, l.location ?? "");
      const prev = wanted.get(k);
      if (prev) prev.quantity += l.quantity;
      else wanted.set(k, { ...l });
    }
    const taken = new Map<string, number>();
    const room = (sku: string, loc: string) => this.room(sku, loc) - (taken.get(key(sku, loc)) ?? 0);
    // A shortfall reports what is available, never the backorder room.
    const free = (sku: string, loc: string) => this.available(sku, loc) - (taken.get(key(sku, loc)) ?? 0);
    const picks: Item[] = [];
    const shortfalls: Shortfall[] = [];
    for (const w of wanted.values()) {
      const locs = [...(this.cells.get(w.sku)?.keys() ?? [])];
      let chosen: string | undefined;
      if (w.location !== undefined) {
        if (locs.includes(w.location) && room(w.sku, w.location) >= w.quantity) chosen = w.location;
      } else {
        for (const loc of region ? REGION_LOCATIONS[region] : []) {
          if (locs.includes(loc) && room(w.sku, loc) >= w.quantity) {
            chosen = loc;
            break;
          }
        }
        if (!chosen) {
          const best = [...locs].sort((a, b) => room(w.sku, b) - room(w.sku, a) || a.localeCompare(b))[0];
          if (best !== undefined && room(w.sku, best) >= w.quantity) chosen = best;
        }
      }
      if (chosen === undefined) {
        const candidates = w.location !== undefined ? locs.filter((l) => l === w.location) : locs;
        const best = Math.max(0, ...candidates.map((l) => free(w.sku, l)));
        shortfalls.push({ sku: w.sku, requested: w.quantity, available: best, ...(w.location !== undefined ? { location: w.location } : {}) });
        continue;
      }
      taken.set(key(w.sku, chosen), (taken.get(key(w.sku, chosen)) ?? 0) + w.quantity);
      picks.push({ sku: w.sku, location: chosen, quantity: w.quantity });
    }
    if (shortfalls.length) return { ok: false, shortfalls };
    return { ok: true, items: mergeItems(picks) };
  }
}

/** Items summed per (sku, location), in order of first appearance. */
export function mergeItems<T extends Item>(items: T[]): Item[] {
  const out = new Map<string, Item>();
  for (const it of items) {
    const k = key(it.sku, it.location);
    const prev = out.get(k);
    if (prev) prev.quantity += it.quantity;
    else out.set(k, { sku: it.sku, location: it.location, quantity: it.quantity });
  }
  return [...out.values()];
}

/** Order-independent form of a list of items, for comparing what two sides hold. */
export function itemSet(items: Item[]): string[] {
  return mergeItems(items)
    .map((i) => `${i.sku}@${i.location}x${i.quantity}`)
    .sort();
}
