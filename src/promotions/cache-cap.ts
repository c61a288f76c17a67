/**
 * Cache lifetimes of responses that show several products' prices (feeds): never past the first promotion
 * boundary among them, and validators (Last-Modified) that move when a boundary passes.
 */
import { lastBoundary, nextBoundary, type DocPromotion } from "./effective-price";

type WithSchedule = { promotions?: DocPromotion[] };

/** Rewrites `max-age`/`s-maxage` to at most the seconds left to the next boundary (and drops SWR then). */
export function capCacheControl(cacheControl: string, docs: readonly WithSchedule[], now: number): string {
  let next: number | null = null;
  for (const d of docs) {
    const n = nextBoundary(d.promotions, now);
    if (n !== null && (next === null || n < next)) next = n;
  }
  if (next === null) return cacheControl;
  const left = Math.max(0, Math.floor((next - now) / 1000));
  return cacheControl
    .replace(/(s-maxage|max-age)=(\d+)/g, (_, k: string, n: string) => `${k}=${Math.min(Number(n), left)}`)
    .replace(/stale-while-revalidate=(\d+)/, (_, n: string) => `stale-while-revalidate=${Math.min(Number(n), Math.max(0, left - 1))}`);
}

/** The latest boundary at or before `now` among the docs' promotions (0 when none): a price-change time. */
export function lastPriceChange(docs: readonly WithSchedule[], now: number): number {
  let last = 0;
  for (const d of docs) last = Math.max(last, lastBoundary(d.promotions, now) ?? 0);
  return last;
}
