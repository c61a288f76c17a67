/**
 * Per-isolate counters of which tier answered a read (edge = Cache API, kv, d1). Kept in memory because a
 * D1 or KV write per read would cost more than the read itself; the figures therefore describe the isolate
 * that serves /admin/metrics (locally: the only one). Production-wide ratios belong in Workers Analytics
 * (the `x-cache-tier` response header) or an Analytics Engine dataset.
 */
import { registerAccounted } from "./isolate-memory";

export type Tier = "edge" | "kv" | "d1" | "stale";

const counts: Record<Tier, number> = { edge: 0, kv: 0, d1: 0, stale: 0 };
const startedAt = Date.now();
registerAccounted("tier-stats", { bytes: () => 256, entries: () => 4, budget: () => 256 });

/** Called by the read path once per answered request, with the tier that answered. */
export function recordTier(tier: Tier): void {
  counts[tier] += 1;
}

export function tierStats() {
  const total = counts.edge + counts.kv + counts.d1 + counts.stale;
  const ratio = (n: number) => (total === 0 ? null : Math.round((n / total) * 10_000) / 10_000);
  return {
    scope: "isolate",
    since: new Date(startedAt).toISOString(),
    reads: total,
    hits: { ...counts },
    hit_ratio: { edge: ratio(counts.edge), kv: ratio(counts.kv), d1: ratio(counts.d1), stale: ratio(counts.stale) },
  };
}

/** Counts every public read by the `x-cache-tier` header the read path sets, without touching the read path. */
export async function countTiers(c: { res: Response }, next: () => Promise<void>): Promise<void> {
  await next();
  const tier = c.res.headers.get("x-cache-tier");
  if (tier !== "edge" && tier !== "kv" && tier !== "d1") return;
  recordTier(c.res.headers.get("x-stale") === "true" ? "stale" : tier);
}
