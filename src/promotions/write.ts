/**
 * A promotion write. It resolves its target to SKUs (`promotion_targets`, so reads are keyed lookups), checks the
 * business rules (store.ts), and commits in ONE D1 batch per catalog partition: the promotion row (version-guarded
 * on update, in the directory), its targets, the affected products' effective prices, new versions and change_seq,
 * and their outbox rows. A rejected or failed write leaves nothing behind in the directory.
 *
 * With several partitions, every partition other than the directory holds a mirror of each promotion row (same
 * columns, same version): product writes, imports, product documents and the boundary switch all join
 * `promotions` locally, in the product's own database, exactly as with one. The mirror is written after the
 * directory commits, with that partition's targets and prices in one batch; a mirror batch that fails is redone
 * by the cron (mirror-repair.ts), and a stale one (a newer version is already there) is refused by its guard.
 */
import { isOccGuardError, occGuard } from "../db/guards";
import { asList } from "../db/partitions";
import { owns } from "../db/ownership";
import { productChangedOutboxSql, type OutboxIds } from "../events/outbox";
import type { DocPromotion } from "./effective-price";
import { computePriceRows, priceRefreshStatements } from "./price-refresh";
import { checkAmountOff, inputFromRow, promotionColumns, resolveTargets, unprocessable, type PromotionInput, type PromotionRow, type Target } from "./store";
import { targetCondition } from "./targets";
import { CHANGE_SEQ_BASE_SQL } from "../feeds/change-seq";
import { promotionWriteEventStatements } from "../webhooks/promotion-events";

export type WriteKind = { kind: "create"; id: string } | { kind: "update"; id: string; expectedVersion: number; before: PromotionRow } | { kind: "delete"; id: string; expectedVersion: number; before: PromotionRow };

/** Outbox rows written, per partition (each partition's outbox holds its own products' events). */
export type WriteResult = { outboxIds: OutboxIds; productIds: string[] };

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

/**
 * Validates against the catalog and commits; throws ApiError (422/409/412) with nothing written.
 *
 * `dbs` are the catalog partitions (src/db/partitions.ts), the directory `DB` first. The directory's batch is the
 * write (the version check, and its own products' targets and prices, in one transaction). Every other partition
 * then gets the same promotion row as a mirror (`promotion-mirror.ts`) in a batch with its own products' targets,
 * prices and outbox rows, so product reads, listings, feeds and product writes there price it locally. A partition
 * whose batch fails is brought in line by the cron (`repairPromotionMirrors`).
 */
export async function writePromotion(dbs: D1Database | readonly D1Database[], write: WriteKind, input: PromotionInput | null, now: number): Promise<WriteResult> {
  const list = asList(dbs);
  const targets = input ? await Promise.all(list.map((db) => resolveTargets(db, input.target))) : list.map(() => []);
  if (input && targets.every((t) => t.length === 0)) {
    throw unprocessable(`The ${input.target.type} target ${JSON.stringify(input.target.values)} matches no sellable SKU.`, "empty_target");
  }
  if (input) await Promise.all(list.map((db, i) => (i === 0 || targets[i]!.length ? checkAmountOff(db, input, targets[i]!) : undefined)));

  const directory = list[0]!;
  const part = await partitionStatements(directory, directoryHeader(directory, write, input, now), write, input, targets[0]!, now, ownedBy(list.length, 0));
  const results = await directory.batch(part.statements);
  const out: WriteResult = { outboxIds: [{ db: directory, ids: part.outboxIds(results) }], productIds: part.productIds };
  if (list.length > 1) {
    const row = mirrorRow(write, input, now);
    const mirrored = await Promise.all(list.slice(1).map((db, i) => applyMirror(db, row, input, now, ownedBy(list.length, i + 1), targets[i + 1]!)));
    for (const [i, m] of mirrored.entries()) {
      if (!m) continue;
      out.outboxIds.push({ db: list[i + 1]!, ids: m.outboxIds });
      out.productIds.push(...m.productIds);
    }
  }
  return out;
}

/**
 * The directory's statements: the promotion row itself, version-guarded on update and delete, between the webhook
 * events of what the clock did to the old row and of what this write changes at once (promotion-events.ts).
 */
function directoryHeader(db: D1Database, write: WriteKind, input: PromotionInput | null, now: number): D1PreparedStatement[] {
  const before = write.kind === "create" ? null : write.before;
  const version = write.kind === "create" ? 1 : write.expectedVersion + 1;
  const events = promotionWriteEventStatements(db, { id: write.id, before, after: input, version }, now);
  return [...events.first, ...rowStatements(db, write, input, now), ...events.last];
}

function rowStatements(db: D1Database, write: WriteKind, input: PromotionInput | null, now: number): D1PreparedStatement[] {
  if (write.kind === "create") {
    return [
      db
        .prepare(
          `INSERT INTO promotions (id, name, starts_at, ends_at, target_type, target_values, value_type, value, priority, currencies, markets,
             created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
        )
        .bind(...promotionColumns(write.id, input!), now, now),
    ];
  }
  if (write.kind === "update") {
    return [
      db
        .prepare(
          `UPDATE promotions SET name = ?2, starts_at = ?3, ends_at = ?4, target_type = ?5, target_values = ?6, value_type = ?7, value = ?8,
             priority = ?9, currencies = ?10, markets = ?11, updated_at = ?12, version = version + 1
           WHERE id = ?1 AND version = ?13 AND deleted_at IS NULL`,
        )
        .bind(...promotionColumns(write.id, input!), now, write.expectedVersion),
      occGuard(db),
    ];
  }
  return [
    db
      .prepare("UPDATE promotions SET deleted_at = ?2, updated_at = ?2, version = version + 1 WHERE id = ?1 AND version = ?3 AND deleted_at IS NULL")
      .bind(write.id, now, write.expectedVersion),
    occGuard(db),
  ];
}

/** The row as the directory holds it once `write` commits: what every other partition mirrors. */
function mirrorRow(write: WriteKind, input: PromotionInput | null, now: number): MirrorRow {
  const fields = input ?? inputFromRow((write as Extract<WriteKind, { before: PromotionRow }>).before);
  return {
    columns: promotionColumns(write.id, fields),
    created_at: write.kind === "create" ? now : write.before.created_at,
    updated_at: now,
    deleted_at: write.kind === "delete" ? now : null,
    version: write.kind === "create" ? 1 : write.expectedVersion + 1,
  };
}

/**
 * Which products partition `partition` of `count` prices. During a growth's clean-up an old partition still holds
 * rows of products that moved (src/db/ownership.ts): their owner prices them, and the old rows' facet counts must
 * stay as the growth noted them (grow_moved_facets), so a promotion's SQL targets there are not re-priced.
 */
export function ownedBy(count: number, partition: number): (productId: string) => boolean {
  return (productId) => owns(count, partition, productId);
}

export type PartitionStatements = { statements: D1PreparedStatement[]; outboxIds: (results: readonly D1Result[]) => number[]; productIds: string[] };

/**
 * One partition's batch: `header` (the promotion row), then this partition's targets re-resolved, the late joiners,
 * and the effective prices of every product of this partition the promotion covered before or covers now.
 */
export async function partitionStatements(
  db: D1Database,
  header: D1PreparedStatement[],
  write: Pick<WriteKind, "kind" | "id">,
  input: PromotionInput | null,
  targets: readonly Target[],
  now: number,
  owned: (productId: string) => boolean,
): Promise<PartitionStatements> {
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
  const rows = await computePriceRows(db, affected.filter(owned), now, (productId, schedule) => {
    const others = schedule.filter((p) => p.id !== write.id);
    const skus = skusByProduct.get(productId);
    return input && skus ? [...others, docPromotion(write.id, input, skus)] : others;
  });

  const statements: D1PreparedStatement[] = [...header];
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
           FROM (SELECT ${CHANGE_SEQ_BASE_SQL} AS m) AS b,
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
  const outboxIds = (results: readonly D1Result[]) =>
    [...refresh.outboxIndexes.map((i) => offset + i), ...(lateIndex >= 0 ? [lateIndex] : [])].flatMap((i) =>
      (results[i]?.results ?? []).map((r) => (r as { id: number }).id),
    );
  return { statements, outboxIds, productIds: affected };
}


/** A promotion row as every partition mirrors it. */
export type MirrorRow = { columns: (string | number | null)[]; created_at: number; updated_at: number; deleted_at: number | null; version: number };

/** The directory's row as a mirror (the cron's repair copies it as it is). */
export function mirrorOf(row: PromotionRow): MirrorRow {
  return { columns: promotionColumns(row.id, inputFromRow(row)), created_at: row.created_at, updated_at: row.updated_at, deleted_at: row.deleted_at, version: row.version };
}

/**
 * Upserts the mirror only over an older version, then guards: a partition already at this version (the batch ran
 * before) or a newer one (a later write got there first) aborts the batch, leaving its targets and prices as the
 * newer write set them.
 */
function mirrorHeader(db: D1Database, row: MirrorRow): D1PreparedStatement[] {
  return [
    db
      .prepare(
        `INSERT INTO promotions (id, name, starts_at, ends_at, target_type, target_values, value_type, value, priority, currencies, markets,
           created_at, updated_at, deleted_at, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, starts_at = excluded.starts_at, ends_at = excluded.ends_at,
           target_type = excluded.target_type, target_values = excluded.target_values, value_type = excluded.value_type, value = excluded.value,
           priority = excluded.priority, currencies = excluded.currencies, markets = excluded.markets, created_at = excluded.created_at,
           updated_at = excluded.updated_at, deleted_at = excluded.deleted_at, version = excluded.version
         WHERE excluded.version > promotions.version`,
      )
      .bind(...row.columns, row.created_at, row.updated_at, row.deleted_at, row.version),
    occGuard(db),
  ];
}

/**
 * Writes `row` and this partition's targets and prices into partition `db`. `input` is null for a deleted
 * promotion; `targets` may be passed when already resolved. Returns null when the partition already had this
 * version or a newer one, or when the batch failed (logged: the cron's repair redoes it).
 */
export async function applyMirror(
  db: D1Database,
  row: MirrorRow,
  input: PromotionInput | null,
  now: number,
  owned: (productId: string) => boolean,
  targets?: readonly Target[],
): Promise<{ outboxIds: number[]; productIds: string[] } | null> {
  const id = row.columns[0] as string;
  try {
    const resolved = targets ?? (input ? await resolveTargets(db, input.target) : []);
    // "update": the mirror may already hold targets of an older version to replace.
    const part = await partitionStatements(db, mirrorHeader(db, row), { kind: "update", id }, input, resolved, now, owned);
    const results = await db.batch(part.statements);
    return { outboxIds: part.outboxIds(results), productIds: part.productIds };
  } catch (err) {
    if (isOccGuardError(err)) return null;
    console.warn(JSON.stringify({ level: "warn", message: "promotion mirror not written; the cron will repair it", promotion: id, error: String(err) }));
    return null;
  }
}
