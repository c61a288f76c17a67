/**
 * Which partition owns a product while a growth is being cleaned up. Between a growth's flip to 2N and the end of
 * `deleteMoved` (src/db/grow.ts) an old partition still holds the moved products' rows, older than their owner's:
 * scatter-gather reads skip, in each partition, the rows it does not own. The hash cannot be computed in SQL, so
 * the rule is applied to rows read, and only where the old partition's `meta` says a clean-up is pending.
 */
import { partitionIndex } from "./buckets";

/** `meta` key of an old partition from its growth's replay (set before the flip) until its moved rows are deleted. */
export const GROW_CLEANUP_KEY = "grow:cleanup";

/** Whether partition `part` of `n` owns product `id`. */
export const owns = (n: number, part: number, id: string): boolean => n === 1 || partitionIndex(id, n) === part;
