import { DurableObject } from "cloudflare:workers";

/** Owns the stock of the SKUs whose stable hash falls in its shard (see docs/storage.md). */
export class StockShard extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
  }
}
