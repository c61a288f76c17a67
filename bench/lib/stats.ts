/** Latency statistics and number formatting shared by the benches, plus a typed handle on autocannon. */
// autocannon ships no types; only the few fields the benches read are declared.
// @ts-expect-error untyped module
import autocannonUntyped from "autocannon";

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Fixed decimals, "–" for NaN/Infinity (an empty case or a zero baseline). */
export const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "–");

/** Status → count, as a compact JSON object for logs and report tables. */
export const statusJson = (statuses: Map<number, number>) => JSON.stringify(Object.fromEntries(statuses));

export type AutocannonOptions = { url: string; connections: number; duration: number; timeout: number; headers: Record<string, string> };
export type AutocannonResult = { latency: Record<string, number>; requests: { average: number }; non2xx: number };
export const autocannon = autocannonUntyped as (opts: AutocannonOptions) => Promise<AutocannonResult>;
