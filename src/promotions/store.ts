/**
 * Promotions as stored: rows, their views, target resolution and the business rules a write checks (the write
 * itself is write.ts). The directory `DB` holds the promotions; `promotion_targets` live with the products, in every
 * catalog partition, so match counts add up the partitions.
 */
import { ApiError } from "../lib/errors";
import { asList } from "../db/partitions";
import type { PromotionValue, ValueType } from "./effective-price";
import { targetCondition, type TargetType } from "./targets";

export type PromotionInput = {
  name: string;
  starts_at: number;
  ends_at: number | null;
  target: { type: TargetType; values: string[] };
  value: { type: ValueType; bps?: number; amounts?: Record<string, number> };
  priority: number;
  currencies: string[];
  markets: string[];
};

export type PromotionRow = {
  id: string;
  name: string;
  starts_at: number;
  ends_at: number | null;
  target_type: string;
  target_values: string;
  value_type: string;
  value: string;
  priority: number;
  currencies: string;
  markets: string;
  deleted_at: number | null;
  created_at: number;
  updated_at: number;
  version: number;
  matched_skus?: number;
  matched_products?: number;
};

export type PromotionStatus = "scheduled" | "active" | "ended";

export function statusAt(p: { starts_at: number; ends_at: number | null }, now: number): PromotionStatus {
  if (now < p.starts_at) return "scheduled";
  if (p.ends_at !== null && now >= p.ends_at) return "ended";
  return "active";
}

export function inputFromRow(row: PromotionRow): PromotionInput {
  const value = JSON.parse(row.value) as PromotionValue;
  return {
    name: row.name,
    starts_at: row.starts_at,
    ends_at: row.ends_at,
    target: { type: row.target_type as TargetType, values: JSON.parse(row.target_values) as string[] },
    value: { type: row.value_type as ValueType, ...value },
    priority: row.priority,
    currencies: JSON.parse(row.currencies) as string[],
    markets: JSON.parse(row.markets) as string[],
  };
}

export function view(row: PromotionRow, now: number) {
  const input = inputFromRow(row);
  return {
    id: row.id,
    name: row.name,
    status: statusAt(row, now),
    starts_at: new Date(row.starts_at).toISOString(),
    ends_at: row.ends_at === null ? null : new Date(row.ends_at).toISOString(),
    target: { ...input.target, matched_skus: row.matched_skus ?? 0, matched_products: row.matched_products ?? 0 },
    value: input.value,
    priority: row.priority,
    currencies: input.currencies,
    markets: input.markets,
    version: row.version,
    created_at: new Date(row.created_at).toISOString(),
    updated_at: new Date(row.updated_at).toISOString(),
  };
}

const SELECT_ROW = `SELECT p.*, (SELECT count(*) FROM promotion_targets t WHERE t.promotion_id = p.id) AS matched_skus,
  (SELECT count(DISTINCT t.product_id) FROM promotion_targets t WHERE t.promotion_id = p.id) AS matched_products FROM promotions p`;

/**
 * Adds the targets held by the catalog partitions after the first (`others`) to rows counted in the directory: a
 * product and its targets live in one partition, so the sums are exact. Nothing to do with one partition.
 */
async function addPartitionCounts(others: readonly D1Database[], rows: PromotionRow[]): Promise<PromotionRow[]> {
  if (others.length === 0 || rows.length === 0) return rows;
  const ids = JSON.stringify(rows.map((r) => r.id));
  const counts = await Promise.all(
    others.map((db) =>
      db
        .prepare(
          `SELECT promotion_id, count(*) AS skus, count(DISTINCT product_id) AS products FROM promotion_targets
           WHERE promotion_id IN (SELECT value FROM json_each(?)) GROUP BY promotion_id`,
        )
        .bind(ids)
        .all<{ promotion_id: string; skus: number; products: number }>(),
    ),
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const c of counts.flatMap((r) => r.results)) {
    const row = byId.get(c.promotion_id)!;
    row.matched_skus = (row.matched_skus ?? 0) + c.skus;
    row.matched_products = (row.matched_products ?? 0) + c.products;
  }
  return rows;
}

/** `dbs`: the directory alone, or every catalog partition (directory first) for match counts over all of them. */
export async function getPromotion(dbs: D1Database | readonly D1Database[], id: string): Promise<PromotionRow | null> {
  const [db, ...others] = asList(dbs);
  const row = await db!.prepare(`${SELECT_ROW} WHERE p.id = ? AND p.deleted_at IS NULL`).bind(id).first<PromotionRow>();
  return row ? (await addPartitionCounts(others, [row]))[0]! : null;
}

export async function listPromotions(
  dbs: D1Database | readonly D1Database[],
  opts: { status?: PromotionStatus; after?: string; limit: number; now: number },
): Promise<PromotionRow[]> {
  const [db, ...others] = asList(dbs);
  const where = ["p.deleted_at IS NULL", "p.id > ?1"];
  if (opts.status === "active") where.push("p.starts_at <= ?2 AND (p.ends_at IS NULL OR p.ends_at > ?2)");
  if (opts.status === "scheduled") where.push("p.starts_at > ?2");
  if (opts.status === "ended") where.push("p.ends_at <= ?2");
  const { results } = await db!
    .prepare(`${SELECT_ROW} WHERE ${where.join(" AND ")} ORDER BY p.id LIMIT ?3`)
    .bind(opts.after ?? "", opts.now, opts.limit)
    .all<PromotionRow>();
  return addPartitionCounts(others, results);
}

// ---- business rules -------------------------------------------------------------------------------------

export type Target = { sku: string; product_id: string };

/** SKUs (of non-archived products, active variants) that a target covers today. */
export async function resolveTargets(db: D1Database, target: PromotionInput["target"]): Promise<Target[]> {
  const { results } = await db
    .prepare(
      `SELECT v.sku, v.product_id FROM variants v JOIN products p ON p.id = v.product_id
       WHERE ${targetCondition(target.type, "?1")} AND v.status = 'active' AND p.status <> 'archived' ORDER BY v.sku`,
    )
    .bind(JSON.stringify([...new Set(target.values)]))
    .all<Target>();
  return results;
}

export const unprocessable = (detail: string, rule: string) => ApiError.unprocessable(detail, { rule });

/** Rules that need no database. `startsAtChanged`: the past-start rule only applies to a start being set. */
export function checkRules(input: PromotionInput, now: number, supported: readonly string[], startsAtChanged: boolean): void {
  if (input.ends_at !== null && input.ends_at <= input.starts_at) {
    throw unprocessable("ends_at must be after starts_at.", "ends_before_start");
  }
  if (startsAtChanged && input.starts_at < now - 60_000) {
    throw unprocessable("starts_at is more than a minute in the past; a promotion cannot start retroactively.", "start_in_past");
  }
  const v = input.value;
  if (v.type === "percent_off") {
    if (v.bps === undefined) throw unprocessable("percent_off needs value.bps (basis points, 100 = 1%).", "missing_value");
    if (v.bps > 10_000) throw unprocessable(`value.bps ${v.bps} is more than 100% off.`, "more_than_100_percent");
    if (v.bps === 10_000) throw unprocessable("100% off would take prices to zero.", "price_not_positive");
  } else {
    const amounts = v.amounts ?? {};
    if (Object.keys(amounts).length === 0) throw unprocessable(`${v.type} needs value.amounts per currency (minor units).`, "missing_value");
    if (v.type === "fixed_price") {
      const bad = Object.entries(amounts).filter(([, a]) => a <= 0);
      if (bad.length) throw unprocessable(`A fixed price must be above zero: ${bad.map(([c, a]) => `${c} ${a}`).join(", ")}.`, "price_not_positive");
    }
  }
  const unsupported = [...new Set([...input.currencies, ...Object.keys(v.amounts ?? {})])].filter((c) => !supported.includes(c));
  if (unsupported.length) throw unprocessable(`Unsupported currencies: ${unsupported.join(", ")}. Supported: ${supported.join(", ")}.`, "unsupported_currency");
}

/** An amount off at or above a targeted SKU's regular price would take that price to or below zero. */
export async function checkAmountOff(db: D1Database, input: PromotionInput, targets: Target[]): Promise<void> {
  if (input.value.type !== "amount_off") return;
  const { results } = await db
    // `+q.amount`: look the targeted SKUs up by key instead of walking the currency's whole price index.
    .prepare(
      `SELECT currency, min(amount) AS lowest, (SELECT sku FROM prices q WHERE q.currency = p.currency AND q.sku IN (SELECT value FROM json_each(?1))
         ORDER BY +q.amount, q.sku LIMIT 1) AS sku
       FROM prices p WHERE sku IN (SELECT value FROM json_each(?1)) GROUP BY currency`,
    )
    .bind(JSON.stringify(targets.map((t) => t.sku)))
    .all<{ currency: string; lowest: number; sku: string }>();
  for (const r of results) {
    const off = input.value.amounts?.[r.currency];
    if (off !== undefined && off >= r.lowest) {
      throw unprocessable(`${off} ${r.currency} off would take ${r.sku} (regular ${r.lowest}) to or below zero.`, "price_not_positive");
    }
  }
}

export function promotionColumns(id: string, input: PromotionInput): (string | number | null)[] {
  const { type, ...value } = input.value;
  return [
    id,
    input.name,
    input.starts_at,
    input.ends_at,
    input.target.type,
    JSON.stringify(input.target.values),
    type,
    JSON.stringify(value),
    input.priority,
    JSON.stringify(input.currencies),
    JSON.stringify(input.markets),
  ];
}
