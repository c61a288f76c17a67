import type { EscrowItem } from "./escrow-store";

/**
 * Splits units into `k` quotas that differ by one unit at most: the remainders of successive locations go to
 * successive sub-shards.
 */
export function splitItems(items: EscrowItem[], k: number): EscrowItem[][] {
  const parts: EscrowItem[][] = Array.from({ length: k }, () => []);
  let offset = 0;
  for (const it of items) {
    const base = Math.floor(it.quantity / k);
    const extra = it.quantity % k;
    for (let i = 0; i < k; i++) {
      const q = base + ((i - offset + k) % k < extra ? 1 : 0);
      if (q > 0) parts[i]!.push({ location: it.location, quantity: q });
    }
    offset = (offset + extra) % k;
  }
  return parts;
}
