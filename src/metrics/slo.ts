/**
 * Service level objectives, from configuration (`SLO_TARGETS`), checked over a rolling window of the per-minute
 * store. Each objective is "at least `target` of the events are good"; its error budget is the share of bad
 * events the target allows, and `budget_left` is how much of that allowance is unspent (negative = overspent).
 * Nothing is paused automatically: the console shows burning budgets loudly and an operator decides.
 */
import { histogram, LAG_BOUNDS, LATENCY_BOUNDS, minuteOf, readPoints, shareWithin, total } from "./timeseries";
import { READ_CLASSES, ROUTE_CLASSES } from "./request-metrics";

export type SloConfig = {
  /** Rolling window, minutes (≤ the store's retention). */
  window_minutes: number;
  read_p95_ms: number;
  read_p99_ms: number;
  /** Write → fresh read: 99% of events consumed within this bound. */
  freshness_p99_ms: number;
  /** Percent of successful (non-5xx) responses. */
  availability: number;
  /** Percent of events applied without error (dead letters count as errors). */
  correctness: number;
};

export const DEFAULT_SLO: SloConfig = {
  window_minutes: 60,
  read_p95_ms: 120,
  read_p99_ms: 200,
  freshness_p99_ms: 1000,
  availability: 99.95,
  correctness: 99.99,
};

/** `SLO_TARGETS = "read_p95_ms=120,read_p99_ms=200,freshness_p99_ms=1000,availability=99.95,correctness=99.99,window_minutes=60"`. */
export function parseSloConfig(text: string | undefined): SloConfig {
  const cfg = { ...DEFAULT_SLO };
  for (const part of (text ?? "").split(",")) {
    const [k, v] = part.split("=").map((s) => s.trim());
    const n = Number(v);
    if (k && k in cfg && Number.isFinite(n) && n > 0) cfg[k as keyof SloConfig] = n;
  }
  cfg.window_minutes = Math.min(Math.round(cfg.window_minutes), 24 * 60);
  return cfg;
}

/** Latency thresholds are histogram bucket bounds: the smallest bound at or above the configured figure. */
function bucketBound(bounds: readonly number[], ms: number): number {
  return bounds.find((b) => b >= ms) ?? bounds.at(-1)!;
}

export type Objective = {
  id: string;
  name: string;
  /** Route class or scope the objective is measured on. */
  scope: string;
  /** Required share of good events, 0..1. */
  target: number;
  /** Measured share of good events in the window, null when nothing happened. */
  actual: number | null;
  events: number;
  bad: number;
  /** Unspent share of the error budget: 1 = untouched, 0 = spent, below 0 = overspent. Null without events. */
  budget_left: number | null;
  /** Bad events the budget still allows in this window at the current volume. */
  budget_events_left: number | null;
  status: "met" | "at_risk" | "breached" | "no_data";
};

function objective(id: string, name: string, scope: string, target: number, events: number, bad: number): Objective {
  if (events === 0) return { id, name, scope, target, actual: null, events, bad, budget_left: null, budget_events_left: null, status: "no_data" };
  const allowed = (1 - target) * events;
  const left = allowed === 0 ? (bad === 0 ? 1 : -Infinity) : 1 - bad / allowed;
  const status = left < 0 ? "breached" : left < 0.25 ? "at_risk" : "met";
  return { id, name, scope, target, actual: 1 - bad / events, events, bad, budget_left: left, budget_events_left: Math.floor(allowed - bad), status };
}

export type SloReport = { config: SloConfig; window: { from: string; to: string }; objectives: Objective[]; burning: Objective[] };

export async function sloReport(env: Pick<Env, "DB" | "SLO_TARGETS">, now = Date.now()): Promise<SloReport> {
  const config = parseSloConfig(env.SLO_TARGETS);
  const to = minuteOf(now);
  const from = to - config.window_minutes + 1;
  const [table, dead] = await Promise.all([
    readPoints(env.DB, from, to, ["req.", "lag."]),
    env.DB.prepare("SELECT count(*) AS n FROM dead_letters WHERE received_at >= ?").bind(from * 60_000).first<{ n: number }>(),
  ]);
  const objectives: Objective[] = [];
  const p95 = bucketBound(LATENCY_BOUNDS, config.read_p95_ms);
  const p99 = bucketBound(LATENCY_BOUNDS, config.read_p99_ms);
  for (const cls of READ_CLASSES) {
    const h = histogram(table, `req.${cls}`, LATENCY_BOUNDS.length);
    const n = h.reduce((a, b) => a + b, 0);
    const slow95 = Math.round(n * (1 - (shareWithin(LATENCY_BOUNDS, h, p95) ?? 1)));
    const slow99 = Math.round(n * (1 - (shareWithin(LATENCY_BOUNDS, h, p99) ?? 1)));
    objectives.push(objective(`latency_p95.${cls}`, `p95 ≤ ${p95} ms`, cls, 0.95, n, slow95));
    objectives.push(objective(`latency_p99.${cls}`, `p99 ≤ ${p99} ms`, cls, 0.99, n, slow99));
  }
  const fresh = bucketBound(LAG_BOUNDS, config.freshness_p99_ms);
  const lag = histogram(table, "lag", LAG_BOUNDS.length);
  const lagN = lag.reduce((a, b) => a + b, 0);
  objectives.push(objective("freshness", `write → visible ≤ ${fresh} ms (p99)`, "events", 0.99, lagN, Math.round(lagN * (1 - (shareWithin(LAG_BOUNDS, lag, fresh) ?? 1)))));
  for (const cls of ROUTE_CLASSES.filter((c) => c !== "other")) {
    objectives.push(objective(`availability.${cls}`, `${config.availability}% successful`, cls, config.availability / 100, total(table, `req.${cls}.n`), total(table, `req.${cls}.err`)));
  }
  const deadN = dead?.n ?? 0;
  objectives.push(objective("correctness", `${config.correctness}% of events applied`, "events", config.correctness / 100, lagN + deadN, deadN));
  return {
    config,
    window: { from: new Date(from * 60_000).toISOString(), to: new Date((to + 1) * 60_000).toISOString() },
    objectives,
    burning: objectives.filter((o) => o.status === "breached" || o.status === "at_risk"),
  };
}
