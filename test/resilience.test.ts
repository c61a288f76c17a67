import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { D1ParameterLimitError, guardEnv } from "../src/lib/guarded-env";
import { CircuitBreaker, CircuitOpenError, TimeoutError, withTimeout } from "../src/lib/resilience";
import { call, expectProblem } from "./helpers/http";

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

const fail = () => Promise.reject(new Error("boom"));
const succeed = () => Promise.resolve("ok");

describe("withTimeout", () => {
  it("rejects with a 503 TimeoutError when the promise outlives the bound", async () => {
    const never = new Promise<string>(() => {});
    const started = Date.now();
    const err = await withTimeout(never, 30, "slow thing").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).status).toBe(503);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("passes the value and the rejection of a prompt promise through unchanged", async () => {
    await expect(withTimeout(Promise.resolve(7), 1000, "x")).resolves.toBe(7);
    await expect(withTimeout(Promise.reject(new Error("own")), 1000, "x")).rejects.toThrow("own");
  });
});

describe("CircuitBreaker", () => {
  it("opens after a burst of failures and then fails fast without calling the dependency", async () => {
    const c = clock();
    const b = new CircuitBreaker("dep", { minFailures: 3, failureRatio: 0.5, openMs: 5000, now: c.now });
    for (let i = 0; i < 3; i++) await expect(b.run(fail)).rejects.toThrow("boom");
    expect(b.currentState()).toBe("open");
    let called = 0;
    const err = await b.run(() => {
      called++;
      return succeed();
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CircuitOpenError);
    expect((err as CircuitOpenError).status).toBe(503);
    expect((err as CircuitOpenError).headers["Retry-After"]).toBe("5");
    expect(called).toBe(0);
  });

  it("stays closed while failures are a minority of the calls in the window", async () => {
    const c = clock();
    const b = new CircuitBreaker("dep", { minFailures: 3, failureRatio: 0.5, now: c.now });
    for (let i = 0; i < 10; i++) await b.run(succeed);
    for (let i = 0; i < 4; i++) await b.run(fail).catch(() => {});
    expect(b.currentState()).toBe("closed");
  });

  it("lets exactly one probe through when half-open, and closes when it succeeds", async () => {
    const c = clock();
    const b = new CircuitBreaker("dep", { minFailures: 2, openMs: 1000, now: c.now });
    await b.run(fail).catch(() => {});
    await b.run(fail).catch(() => {});
    c.t += 1000;
    expect(b.currentState()).toBe("half_open");
    let release!: (v: string) => void;
    const probe = b.run(() => new Promise<string>((r) => (release = r)));
    await expect(b.run(succeed)).rejects.toBeInstanceOf(CircuitOpenError);
    release("fine");
    await expect(probe).resolves.toBe("fine");
    expect(b.currentState()).toBe("closed");
    await expect(b.run(succeed)).resolves.toBe("ok");
  });

  it("re-opens when the half-open probe fails", async () => {
    const c = clock();
    const b = new CircuitBreaker("dep", { minFailures: 2, openMs: 1000, now: c.now });
    await b.run(fail).catch(() => {});
    await b.run(fail).catch(() => {});
    c.t += 1000;
    await expect(b.run(fail)).rejects.toThrow("boom");
    expect(b.currentState()).toBe("open");
  });

  it("counts timeouts as failures, and ignores errors the predicate calls healthy", async () => {
    const c = clock();
    const b = new CircuitBreaker("dep", { minFailures: 2, failureRatio: 0.25, isFailure: (e) => !String(e).includes("constraint"), now: c.now });
    for (let i = 0; i < 5; i++) await b.run(() => Promise.reject(new Error("UNIQUE constraint failed"))).catch(() => {});
    expect(b.currentState()).toBe("closed");
    await b.run(() => new Promise(() => {}), 10).catch(() => {});
    await b.run(() => new Promise(() => {}), 10).catch(() => {});
    expect(b.currentState()).toBe("open");
  });
});

/** A D1 binding whose every call hangs: what an overloaded origin looks like from the Worker. */
function hangingD1(): D1Database {
  const hang = () => new Promise<never>(() => {});
  const stmt: Record<string, unknown> = { first: hang, all: hang, run: hang, raw: hang };
  stmt.bind = () => stmt;
  return { prepare: () => stmt, batch: hang, exec: hang, withSession: () => ({ prepare: () => stmt, batch: hang }) } as unknown as D1Database;
}

describe("guarded bindings", () => {
  it("the real D1 still works through the guard, including batches of guarded statements", async () => {
    const g = guardEnv(env);
    expect(g.DB === env.DB).toBe(false);
    const [a, b] = await g.DB.batch([g.DB.prepare("SELECT 1 AS one"), g.DB.prepare("SELECT ? AS two").bind(2)]);
    expect(a!.results).toEqual([{ one: 1 }]);
    expect(b!.results).toEqual([{ two: 2 }]);
    expect(await g.DB.prepare("SELECT 3 AS three").first("three")).toBe(3);
    expect(guardEnv(env) === g).toBe(true);
    expect(guardEnv(g) === g).toBe(true);
  });

  it("bounds a hanging D1, then opens its breaker so later calls fail fast", async () => {
    const g = guardEnv({ ...env, DB: hangingD1() });
    const started = Date.now();
    // Five timeouts trip the breaker; they run in parallel so the test waits one timeout, not five.
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => g.DB.prepare("SELECT 1").first()));
    expect(results.every((r) => r.status === "rejected" && r.reason instanceof TimeoutError)).toBe(true);
    const fast = Date.now();
    await expect(g.DB.prepare("SELECT 1").first()).rejects.toBeInstanceOf(CircuitOpenError);
    expect(Date.now() - fast).toBeLessThan(100);
    expect(fast - started).toBeLessThan(7000);
  });
});

/** Queries containing "slow" hang (a shopper's deliberately expensive search); everything else answers. */
function partlySlowD1(): D1Database {
  const hang = () => new Promise<never>(() => {});
  const statement = (slow: boolean) => {
    const answer = slow ? hang : () => Promise.resolve({ results: [{ ok: 1 }], success: true, meta: {} });
    const stmt: Record<string, unknown> = { first: slow ? hang : () => Promise.resolve({ ok: 1 }), all: answer, run: answer, raw: answer };
    stmt.bind = () => stmt;
    return stmt;
  };
  const db = { prepare: (q: string) => statement(q.includes("slow")), batch: hang, exec: hang } as Record<string, unknown>;
  db.withSession = () => db;
  return db as unknown as D1Database;
}

describe("breakers per use and production D1 limits", () => {
  it("slow catalog queries open the catalog's D1 breaker but not the one checkouts use", async () => {
    const e = { ...env, DB: partlySlowD1() } as Env;
    const catalog = guardEnv(e, "catalog");
    const checkout = guardEnv(e, "checkout");
    const slow = await Promise.allSettled(Array.from({ length: 5 }, () => catalog.DB.prepare("SELECT slow").first()));
    expect(slow.every((r) => r.status === "rejected" && r.reason instanceof TimeoutError)).toBe(true);
    await expect(catalog.DB.prepare("SELECT 1").first()).rejects.toBeInstanceOf(CircuitOpenError);
    await expect(checkout.DB.prepare("SELECT 1").first()).resolves.toEqual({ ok: 1 });
    await expect(guardEnv(e, "background").DB.prepare("SELECT 1").first()).resolves.toEqual({ ok: 1 });
  });

  it("a statement with more than 100 bound parameters is refused as production D1 would; 100 pass", async () => {
    const g = guardEnv(env);
    const marks = (n: number) => Array.from({ length: n }, () => "?").join(",");
    const values = (n: number) => Array.from({ length: n }, (_, i) => i);
    const ok = await g.DB.prepare(`SELECT count(*) AS n FROM (SELECT 1 WHERE 1 IN (${marks(100)}))`).bind(...values(100)).first<{ n: number }>();
    expect(ok?.n).toBe(1);
    expect(() => g.DB.prepare(`SELECT 1 WHERE 1 IN (${marks(101)})`).bind(...values(101))).toThrow(D1ParameterLimitError);
  });
});

describe("request shape limits", () => {
  it("rejects a JSON body over 1 MiB with 413", async () => {
    const big = JSON.stringify({ pad: "x".repeat(1024 * 1024 + 10) });
    const res = await call("/v1/reservations", { method: "POST", headers: { "content-type": "application/json" }, body: big });
    await expectProblem(res, 413);
  });

  it("rejects a body that is not JSON with 415, naming the accepted type", async () => {
    const res = await call("/v1/reservations", { method: "POST", headers: { "content-type": "text/plain" }, body: "hello" });
    const p = await expectProblem(res, 415);
    expect(p.accepted).toEqual(["application/json"]);
    const none = await call("/v1/reservations", { method: "POST", body: new TextEncoder().encode("{}") });
    await expectProblem(none, 415);
  });

  it("accepts NDJSON and CSV on the bulk import, and JSON variants elsewhere", async () => {
    for (const type of ["application/x-ndjson", "text/csv"]) {
      const res = await call("/admin/import", { method: "POST", headers: { "content-type": type }, body: "a\n" });
      expect(res.status).not.toBe(415);
      await res.body?.cancel();
    }
    const merge = await call("/v1/reservations", {
      method: "POST",
      headers: { "content-type": "application/merge-patch+json" },
      body: "{}",
    });
    expect(merge.status).not.toBe(415);
    await merge.body?.cancel();
  });

  it("rejects oversized headers with 431 and overlong URLs with 414", async () => {
    await expectProblem(await call("/health", { headers: { "x-big": "y".repeat(9000) } }), 431);
    const many: Record<string, string> = {};
    for (let i = 0; i < 30; i++) many[`x-h${i}`] = "z".repeat(700);
    await expectProblem(await call("/health", { headers: many }), 431);
    await expectProblem(await call(`/v1/products/${"p".repeat(9000)}`), 414);
  });

  it("never leaks a stack trace: an unexpected error becomes an opaque 500 problem", async () => {
    const app = buildApp();
    app.get("/__boom", () => {
      throw new Error("secret internals at Object.<anonymous> (src/x.ts:1:1)");
    });
    const ctx = createExecutionContext();
    const res = await app.fetch(new Request("http://x/__boom"), env, ctx);
    await waitOnExecutionContext(ctx);
    const text = await res.text();
    expect(res.status).toBe(500);
    expect(text).not.toContain("secret");
    expect(text).not.toMatch(/\bat\s+\S+\s+\(/);
  });
});
