/**
 * Shopper region → preferred stock locations. Locations change rarely, so each isolate keeps them for a minute
 * instead of reading D1 on every reservation.
 */
import { registerAccounted } from "../lib/isolate-memory";
export type Region = "NA" | "EU" | "APAC";
type Location = { id: string; region: string; priority: number };

const TTL_MS = 60_000;
let cache: { at: number; db: D1Database; rows: Location[] } | undefined;
registerAccounted("stock.locations", { bytes: () => (cache?.rows.length ?? 0) * 160, entries: () => cache?.rows.length ?? 0, budget: () => 64 * 1024 });

export async function activeLocations(env: Env, now = Date.now()): Promise<Location[]> {
  if (cache && cache.db === env.DB && now - cache.at < TTL_MS) return cache.rows;
  const { results } = await env.DB.prepare("SELECT id, region, priority FROM stock_locations WHERE active = 1 ORDER BY priority, id").all<Location>();
  // An empty list is never cached: a fresh database gets its locations seeded a moment later.
  cache = results.length ? { at: now, db: env.DB, rows: results } : undefined;
  return results;
}

/** Ids among `ids` that are not active locations; a cache miss re-reads D1 once, so new locations work at once. */
export async function unknownLocations(env: Env, ids: string[]): Promise<string[]> {
  if (!ids.length) return [];
  const missing = (rows: Location[]) => [...new Set(ids)].filter((id) => !rows.some((l) => l.id === id));
  const first = missing(await activeLocations(env));
  if (!first.length) return first;
  cache = undefined;
  return missing(await activeLocations(env));
}

const CONTINENT_REGION: Record<string, Region> = { NA: "NA", SA: "NA", EU: "EU", AF: "EU", AS: "APAC", OC: "APAC" };

/** `x-shopper-region` (NA | EU | APAC) wins, for tests and for storefronts that already know; else `request.cf`. */
export function shopperRegion(request: Request): Region | undefined {
  const header = request.headers.get("x-shopper-region")?.trim().toUpperCase();
  if (header === "NA" || header === "EU" || header === "APAC") return header;
  const cf = (request as Request & { cf?: { continent?: string } }).cf;
  return cf?.continent ? CONTINENT_REGION[cf.continent] : undefined;
}

export function preferredLocations(locations: Location[], region: Region | undefined): string[] {
  if (!region) return [];
  return locations.filter((l) => l.region === region).map((l) => l.id);
}
