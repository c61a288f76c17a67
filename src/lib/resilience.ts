import { ApiError } from "./errors";
import { registerAccounted } from "./isolate-memory";

/**
 * Timeouts and circuit breakers for every binding call. State is per isolate (a breaker protects this
 * isolate from piling requests onto a dependency that is already failing); nothing here is shared
 * across isolates, which is what we want: each isolate learns about a failure from its own requests.
 */

/** A bounded await ran out. 503 so that a request that waited on a slow dependency never looks like a bug. */
export class TimeoutError extends ApiError {
  constructor(readonly what: string, readonly ms: number) {
    super(503, "timeout", "Service Unavailable", `${what} did not answer within ${ms} ms.`, {}, { "Retry-After": "1" });
    this.name = "TimeoutError";
  }
}

/** A breaker is open: the call was refused without touching the dependency. */
export class CircuitOpenError extends ApiError {
  constructor(readonly breaker: string, retryAfterSeconds: number) {
    super(
      503,
      "circuit-open",
      "Service Unavailable",
      `${breaker} is failing; the request was refused without waiting. Retry after ${retryAfterSeconds} s.`,
      { dependency: breaker },
      { "Retry-After": String(retryAfterSeconds) },
    );
    this.name = "CircuitOpenError";
  }
}

/** Resolves or rejects like `promise`, but rejects with TimeoutError after `ms`. The timer never outlives the race. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => {
    if (timer !== undefined) clearTimeout(timer);
  });
}

export type BreakerState = "closed" | "open" | "half_open";

export type BreakerOptions = {
  /** Failures needed inside one window before the breaker may open. */
  minFailures?: number;
  /** Share of failed calls inside the window that opens the breaker (0..1). */
  failureRatio?: number;
  /** Length of the tumbling window over which failures are counted. */
  windowMs?: number;
  /** How long the breaker stays open before letting one probe through. */
  openMs?: number;
  /** Bound applied to every call made through the breaker. */
  timeoutMs?: number;
  /** Errors that say nothing about the dependency's health (constraint violations…) are not counted. */
  isFailure?: (err: unknown) => boolean;
  now?: () => number;
};

export class CircuitBreaker {
  private state: BreakerState = "closed";
  private windowStart = 0;
  private failures = 0;
  private calls = 0;
  private openedAt = 0;
  private probing = false;
  /** Calls currently in flight through this breaker: the saturation signal for load shedding. */
  inflight = 0;
  private readonly o: Required<BreakerOptions>;

  constructor(readonly name: string, options: BreakerOptions = {}) {
    this.o = {
      minFailures: options.minFailures ?? 5,
      failureRatio: options.failureRatio ?? 0.5,
      windowMs: options.windowMs ?? 10_000,
      openMs: options.openMs ?? 5_000,
      timeoutMs: options.timeoutMs ?? 5_000,
      isFailure: options.isFailure ?? (() => true),
      now: options.now ?? Date.now,
    };
  }

  /** Current state; an open breaker whose cool-down has passed reports half_open (the next call probes). */
  currentState(): BreakerState {
    if (this.state === "open" && this.o.now() - this.openedAt >= this.o.openMs) return "half_open";
    return this.state;
  }

  retryAfterSeconds(): number {
    const left = this.o.openMs - (this.o.now() - this.openedAt);
    return Math.max(1, Math.ceil(left / 1000));
  }

  snapshot() {
    return { name: this.name, state: this.currentState(), failures: this.failures, calls: this.calls, inflight: this.inflight };
  }

  /** Runs `fn` under the breaker and its timeout. Fails fast with CircuitOpenError while open. */
  async run<T>(fn: () => Promise<T>, timeoutMs = this.o.timeoutMs): Promise<T> {
    const state = this.currentState();
    let probe = false;
    if (state === "open") throw new CircuitOpenError(this.name, this.retryAfterSeconds());
    if (state === "half_open") {
      // Exactly one probe at a time; everyone else keeps failing fast until it has answered.
      if (this.probing) throw new CircuitOpenError(this.name, 1);
      this.probing = true;
      probe = true;
    }
    this.inflight += 1;
    try {
      const result = await withTimeout(fn(), timeoutMs, this.name);
      this.onSuccess(probe);
      return result;
    } catch (err) {
      if (err instanceof TimeoutError || this.o.isFailure(err)) this.onFailure(probe);
      else this.onSuccess(probe);
      throw err;
    } finally {
      this.inflight -= 1;
      if (probe) this.probing = false;
    }
  }

  private roll(now: number) {
    if (now - this.windowStart >= this.o.windowMs) {
      this.windowStart = now;
      this.failures = 0;
      this.calls = 0;
    }
  }

  private onSuccess(probe: boolean) {
    if (probe || this.state !== "closed") {
      this.state = "closed";
      this.windowStart = this.o.now();
      this.failures = 0;
      this.calls = 0;
    }
    this.roll(this.o.now());
    this.calls += 1;
  }

  private onFailure(probe: boolean) {
    const now = this.o.now();
    if (probe) {
      this.trip(now);
      return;
    }
    this.roll(now);
    this.calls += 1;
    this.failures += 1;
    if (this.state === "closed" && this.failures >= this.o.minFailures && this.failures / this.calls >= this.o.failureRatio) {
      this.trip(now);
    }
  }

  private trip(now: number) {
    this.state = "open";
    this.openedAt = now;
  }
}

/**
 * Breakers live as long as the binding object they guard: the same binding shares one breaker per name,
 * and a different binding object (another database, a wrapped test double) gets its own.
 */
const registry = new WeakMap<object, Map<string, CircuitBreaker>>();
let breakersMade = 0;
// Names come from configuration (bindings, shard names), never from request input: the budget flags a leak.
registerAccounted("resilience.breakers", { bytes: () => breakersMade * 512, entries: () => breakersMade, budget: () => 128 * 1024 });

export function breakerFor(owner: object, name: string, options?: BreakerOptions): CircuitBreaker {
  let byName = registry.get(owner);
  if (!byName) {
    byName = new Map();
    registry.set(owner, byName);
  }
  let breaker = byName.get(name);
  if (!breaker) {
    breaker = new CircuitBreaker(name, options);
    byName.set(name, breaker);
    breakersMade += 1;
  }
  return breaker;
}

export function existingBreaker(owner: object, name: string): CircuitBreaker | undefined {
  return registry.get(owner)?.get(name);
}

/** Every breaker made for `owner` (e.g. all stock-shard breakers of the STOCK namespace). */
export function breakersOf(owner: object): CircuitBreaker[] {
  return [...(registry.get(owner)?.values() ?? [])];
}
