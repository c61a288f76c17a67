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

export type ShardGate = { entered: Promise<void>; open: () => void; undo: () => void };

/**
 * Pauses the first call of `method` on the object named `shard` until `open()`: `entered` resolves once that call is
 * waiting, so a test can run something else in the gap (a commit between an extend's shard calls, say).
 */
export function gateShardMethod(method: string, shard: string): ShardGate {
  const proto = StockShard.prototype as unknown as Record<string, Method>;
  const original = proto[method]!;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let entered!: () => void;
  const enteredP = new Promise<void>((r) => (entered = r));
  let fired = false;
  proto[method] = async function (this: { ctx: DurableObjectState }, ...args: unknown[]) {
    if (!fired && this.ctx.id.name === shard) {
      fired = true;
      entered();
      await gate;
    }
    return original.apply(this, args);
  };
  return {
    entered: enteredP,
    open,
    undo: () => {
      open();
      proto[method] = original;
    },
  };
}
