/**
 * The one source of "now" for time-dependent behaviour (promotion windows, their boundaries and the cache
 * lifetimes derived from them). Handlers read it once per request and pass the value down, so a request
 * sees one consistent instant.
 *
 * Tests move time with `setClock` instead of sleeping: the Workers test pool runs the test file, the Worker
 * under `SELF` and its Durable Objects in one isolate, so the override reaches every handler. Nothing in the
 * Worker calls `setClock`; in production `now()` is `Date.now()`.
 */
let source: () => number = () => Date.now();

export function now(): number {
  return source();
}

/** Replaces the clock (a fixed instant, or a function); `null` restores the real one. Tests only. */
export function setClock(value: number | (() => number) | null): void {
  if (value === null) source = () => Date.now();
  else if (typeof value === "number") source = () => value;
  else source = value;
}
