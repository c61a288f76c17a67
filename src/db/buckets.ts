/**
 * Which partition holds a product, as a pure function of its id and N: shared by the Worker (src/db/partitions.ts,
 * which reads N from the environment) and the seed script, which runs in Node without the Worker's types.
 */
import { stableHash } from "../lib/stable-hash";

/** Virtual buckets: the unit a growth moves. Fixed forever: changing it would re-hash every product. */
export const BUCKETS = 256;

/** The product's virtual bucket (0 … BUCKETS − 1). */
export function bucketOf(productId: string): number {
  return stableHash(productId) % BUCKETS;
}

/** The partition index of `productId` among `n` partitions: bucket b lives in partition b % n. */
export function partitionIndex(productId: string, n: number): number {
  return n === 1 ? 0 : bucketOf(productId) % n;
}
