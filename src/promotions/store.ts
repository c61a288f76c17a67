/**
 * Promotion writes. A write resolves its target to SKUs (`promotion_targets`, so reads are keyed lookups),
 * checks the business rules, and commits in ONE D1 batch: the promotion row (version-guarded on update),
 * its targets, the affected products' effective prices, new versions and change_seq, and their outbox rows.
 * A rejected or failed write leaves nothing behind.
 */
import { occGuard } from "../db/guards";
import { productChangedOutboxSql } from "../events/outbox";
import { ApiError } from "../lib/errors";
import type { DocPromotion, PromotionValue, ValueType } from "./effective-price";
import { computePriceRows, priceRefreshStatements } from "./price-refresh";
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

export async function getPromotion(db: D1Database, id: string): Promise<PromotionRow | null> {
  return db.prepare(`${SELECT_ROW} WHERE p.id = ? AND p.deleted_at IS NULL`).bind(id).first<PromotionRow>();
}

export async function listPromotions(
  db: D1Database,
  opts: { status?: PromotionStatus; after?: string; limit: number; now: number },
): Promise<PromotionRow[]> {
  const where = ["p.deleted_at IS NULL", "p.id > ?1"];
  if (opts.status === "active") where.push("p.starts_at <= ?2 AND (p.ends_at IS NULL OR p.ends_at > ?2)");
  if (opts.status === "scheduled") where.push("p.starts_at > ?2");
  if (opts.status === "ended") where.push("p.ends_at <= ?2");
  const { results } = await db
    .prepare(`${SELECT_ROW} WHERE ${where.join(" AND ")} ORDER BY p.id LIMIT ?3`)
    .bind(opts.after ?? "", opts.now, opts.limit)
    .all<PromotionRow>();
  return results;
}

// ---- business rules -------------------------------------------------------------------------------------

type Target = { sku: string; product_id: string };

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

const unprocessable = (detail: string, rule: string) => ApiError.unprocessable(detail, { rule });

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
async function checkAmountOff(db: D1Database, input: PromotionInput, targets: Target[]): Promise<void> {
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

// ---- the write -------------------------------------------------------------------------------------------

export type WriteKind = { kind: "create"; id: string } | { kind: "update"; id: string; expectedVersion: number; before: PromotionRow } | { kind: "delete"; id: string; expectedVersion: number; before: PromotionRow };

export type WriteResult = { outboxIds: number[]; productIds: string[] };

function docPromotion(id: string, input: PromotionInput, skus: string[]): DocPromotion {
  const { type, ...value } = input.value;
  return {
    id,
    name: input.name,
    starts_at: input.starts_at,
    ends_at: input.ends_at,
    priority: input.priority,
    value_type: type,
    value,
    currencies: input.currencies,
    markets: input.markets,
    skus,
  };
}

/** Validates against the database and commits; throws ApiError (422/409/412) with nothing written. */
export async function writePromotion(db: D1Database, write: WriteKind, input: PromotionInput | null, now: number): Promise<WriteResult> {
  const targets = input ? await resolveTargets(db, input.target) : [];
  if (input && targets.length === 0) throw unprocessable(`The ${input.target.type} target ${JSON.stringify(input.target.values)} matches no sellable SKU.`, "empty_target");
  if (input) await checkAmountOff(db, input, targets);

  const previous =
    write.kind === "create"
      ? []
      : (await db.prepare("SELECT DISTINCT product_id FROM promotion_targets WHERE promotion_id = ?").bind(write.id).all<{ product_id: string }>()).results.map(
          (r) => r.product_id,
        );
  const skusByProduct = new Map<string, string[]>();
  for (const t of targets) skusByProduct.set(t.product_id, [...(skusByProduct.get(t.product_id) ?? []), t.sku]);
  const affected = [...new Set([...previous, ...skusByProduct.keys()])];

  // Prices as they will be once this write commits: the stored schedule minus this promotion's old version
  // plus its new one.
  const rows = await computePriceRows(db, affected, now, (productId, schedule) => {
    const others = schedule.filter((p) => p.id !== write.id);
    const skus = skusByProduct.get(productId);
    return input && skus ? [...others, docPromotion(write.id, input, skus)] : others;
  });

  const statements: D1PreparedStatement[] = [];
  if (write.kind === "create") {
    statements.push(
      db
        .prepare(
          `INSERT INTO promotions (id, name, starts_at, ends_at, target_type, target_values, value_type, value, priority, currencies, markets,
             created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
        )
        .bind(...promotionColumns(write.id, input!), now, now),
    );
  } else if (write.kind === "update") {
    statements.push(
      db
        .prepare(
          `UPDATE promotions SET name = ?2, starts_at = ?3, ends_at = ?4, target_type = ?5, target_values = ?6, value_type = ?7, value = ?8,
             priority = ?9, currencies = ?10, markets = ?11, updated_at = ?12, version = version + 1
           WHERE id = ?1 AND version = ?13 AND deleted_at IS NULL`,
        )
        .bind(...promotionColumns(write.id, input!), now, write.expectedVersion),
      occGuard(db),
    );
  } else {
    statements.push(
      db
        .prepare("UPDATE promotions SET deleted_at = ?2, updated_at = ?2, version = version + 1 WHERE id = ?1 AND version = ?3 AND deleted_at IS NULL")
        .bind(write.id, now, write.expectedVersion),
      occGuard(db),
    );
  }
  if (write.kind !== "create") statements.push(db.prepare("DELETE FROM promotion_targets WHERE promotion_id = ?").bind(write.id));
  let lateIndex = -1;
  if (input) {
    // Resolved again inside the batch, not copied from the check above: a product written in between (whose
    // own write re-resolved targets before this promotion existed) must not be left out.
    statements.push(
      db
        .prepare(
          `INSERT INTO promotion_targets (promotion_id, sku, product_id)
           SELECT ?1, v.sku, v.product_id FROM variants v JOIN products p ON p.id = v.product_id
           WHERE ${targetCondition(input.target.type, "?2")} AND v.status = 'active' AND p.status <> 'archived'`,
        )
        .bind(write.id, JSON.stringify([...new Set(input.target.values)])),
    );
    // Such late joiners are not among the products priced below: give them a new version and an event, so the
    // consumer rebuilds their documents and folds the promotion into their listing price.
    const late = `SELECT DISTINCT product_id FROM promotion_targets WHERE promotion_id = ?1 AND product_id NOT IN (SELECT value FROM json_each(?2))`;
    statements.push(
      db
        .prepare(
          `UPDATE products SET version = version + 1, change_seq = b.m + r.n, updated_at = ?3
           FROM (SELECT coalesce(max(change_seq), 0) AS m FROM products) AS b,
                (SELECT product_id, row_number() OVER (ORDER BY product_id) AS n FROM (${late})) AS r
           WHERE products.id = r.product_id`,
        )
        .bind(write.id, JSON.stringify(affected), now),
    );
    lateIndex = statements.length;
    statements.push(db.prepare(productChangedOutboxSql(`p.id IN (${late})`, "?3")).bind(write.id, JSON.stringify(affected), now));
  }
  // The products' documents embed the schedule, so their version moves: KV and caches take the new one.
  const refresh = priceRefreshStatements(db, rows, now, { bumpVersion: true });
  const offset = statements.length;
  statements.push(...refresh.statements);

  const results = await db.batch(statements);
  const outboxIds = [...refresh.outboxIndexes.map((i) => offset + i), ...(lateIndex >= 0 ? [lateIndex] : [])].flatMap((i) =>
    (results[i]?.results ?? []).map((r) => (r as { id: number }).id),
  );
  return { outboxIds, productIds: affected };
}

function promotionColumns(id: string, input: PromotionInput): (string | number | null)[] {
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
