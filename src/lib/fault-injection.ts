/**
 * Test-only fault injection into stock-shard calls made through guarded bindings: from the Worker and from
 * one Durable Object to another (coordinator → shard, shard → shard transfers). Tests, the Worker and its
 * Durable Objects share one isolate in the Workers test pool, so a fault set here reaches every caller.
 * Nothing in the application sets it; in production `stockFault` is always undefined.
 *
 * `before`: the call fails without reaching the object. `after`: the object applies the call, then the
 * caller sees a failure (the answer was lost).
 */
export type StockFault = (call: { shard: string; method: string; args: unknown[] }) => "before" | "after" | undefined;

let fault: StockFault | null = null;

export function setStockFault(f: StockFault | null): void {
  fault = f;
}

export function stockFault(shard: string, method: string, args: unknown[]): "before" | "after" | undefined {
  return fault ? fault({ shard, method, args }) : undefined;
}
