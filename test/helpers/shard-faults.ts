/**
 * Faults inside StockShard objects, whoever calls them: the Worker, or a coordinator reaching a shard
 * object-to-object (which a wrapper around the Worker's bindings never sees). The test pool runs the objects in
 * the test's isolate, so patching the class's method reaches every instance; `ctx.id.name` tells which one.
 */
import { StockShard } from "../../durable-objects/stock-shard";

export type ShardFault = { method: string; matches: (shard: string) => boolean; when: "before" | "after"; fired?: string };

type Method = (this: { ctx: DurableObjectState }, ...args: unknown[]) => Promise<unknown>;

/**
 * Makes the first matching call of `fault.method` fail once: "before" fails it before it runs, "after" lets it apply
 * and then loses its answer. `fault.fired` names the object it hit. Returns the undo.
 */
export function injectShardFault(fault: ShardFault): () => void {
  const proto = StockShard.prototype as unknown as Record<string, Method>;
  const original = proto[fault.method]!;
  proto[fault.method] = async function (this: { ctx: DurableObjectState }, ...args: unknown[]) {
    const name = this.ctx.id.name ?? "";
    if (fault.fired || !fault.matches(name)) return original.apply(this, args);
    fault.fired = name;
    if (fault.when === "before") throw new Error(`injected: ${fault.method} on ${name} failed before applying`);
    await original.apply(this, args);
    throw new Error(`injected: ${fault.method} on ${name} applied, then its answer was lost`);
  };
  return () => {
    proto[fault.method] = original;
  };
}

export type ShardGate = { entered: () => Promise<void>; open: () => void; undo: () => void };

const tick = () => new Promise<void>((r) => setTimeout(r, 2));

/**
 * Pauses the first call of `method` on the object named `shard` until `open()`, then runs it (or, with "fail",
 * throws without running it). `entered()` resolves once that call is waiting, so a test can run something else in
 * the gap (a commit between an extend's shard calls, say). Both sides poll a flag, each in its own context: a
 * promise resolved by the test would resume the object's code (or the object's, the test's) in the other's I/O
 * context, which workerd refuses once that code makes a call.
 */
export function gateShardMethod(method: string, shard: string, then: "run" | "fail" = "run"): ShardGate {
  const proto = StockShard.prototype as unknown as Record<string, Method>;
  const original = proto[method]!;
  const state = { fired: false, opened: false };
  proto[method] = async function (this: { ctx: DurableObjectState }, ...args: unknown[]) {
    if (!state.fired && this.ctx.id.name === shard) {
      state.fired = true;
      while (!state.opened) await tick();
      if (then === "fail") throw new Error(`injected: ${method} on ${shard} failed after a stall`);
    }
    return original.apply(this, args);
  };
  return {
    entered: async () => {
      for (let i = 0; !state.fired; i++) {
        if (i > 5_000) throw new Error(`${method} on ${shard} was never called`);
        await tick();
      }
    },
    open: () => {
      state.opened = true;
    },
    undo: () => {
      state.opened = true;
      proto[method] = original;
    },
  };
}
