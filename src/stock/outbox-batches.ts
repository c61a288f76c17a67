/**
 * Cutting a stock shard's pending outbox rows into queue sends. Cloudflare Queues refuse a `sendBatch` over 100
 * messages or 256 KB in total, and any message over 128 KB, and a refused batch sends nothing. The shard always
 * flushes its oldest rows first, so a batch that can never be accepted would come back on every flush and stop
 * every event of the shard behind it: batches are cut by bytes as well as by count, and a message the queue can
 * never take is set apart (dead-lettered by the caller) instead of being retried.
 */

/** Below the queue's 256 KB per batch, with room for what the runtime adds per message. */
const OUTBOX_BATCH_BYTES = 200_000;
/** Below the queue's 128 KB per message. */
const OUTBOX_MESSAGE_BYTES = 120_000;

type SizedRow = { body: string };

const encoder = new TextEncoder();

function bodyBytes(row: SizedRow): number {
  return encoder.encode(row.body).length;
}

/** Rows in order, cut into batches within the byte budget; rows no batch can carry come back as `oversized`. */
export function packOutboxBatches<T extends SizedRow>(rows: T[]): { batches: T[][]; oversized: T[] } {
  const batches: T[][] = [];
  const oversized: T[] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const row of rows) {
    const size = bodyBytes(row);
    if (size > OUTBOX_MESSAGE_BYTES) {
      oversized.push(row);
      continue;
    }
    if (current.length && bytes + size > OUTBOX_BATCH_BYTES) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(row);
    bytes += size;
  }
  if (current.length) batches.push(current);
  return { batches, oversized };
}

/** The queue refused the send for its size (413 or "exceeds … limit"), not because it is unavailable. */
export function isSizeRefusal(err: unknown): boolean {
  return /exceeds|too large|payload too large|413/i.test(String(err));
}
