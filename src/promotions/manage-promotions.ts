/**
 * Admin writes of promotions, one function per request: the business rules, the version checks behind
 * If-Match, the batch (store.ts), and after the commit the change events and the boundary alarm.
 */
import type { WriteContext } from "../env";
import { supportedCurrencies } from "../catalog/locale";
import { isOccGuardError, isUniqueError } from "../db/guards";
import { allCatalogDbs } from "../db/partitions";
import { sendOutboxBatches } from "../events/outbox";
import { ApiError } from "../lib/errors";
import { nextBoundary } from "./effective-price";
import { checkRules, getPromotion, inputFromRow, type PromotionInput, type PromotionRow } from "./store";
import { writePromotion, type WriteKind } from "./write";
import { armClock, forgetNextBoundary } from "./switcher";

/** A promotion as the API takes it: instants as RFC 3339 strings. */
export type PromotionFields = Omit<PromotionInput, "starts_at" | "ends_at"> & { starts_at: string; ends_at?: string | null };
export type PromotionChanges = Partial<Omit<PromotionFields, "ends_at">> & { ends_at?: string | null };

const ms = (iso: string) => Date.parse(iso);

/** `dbs`: the directory, or every catalog partition (directory first) to count the targets of all of them. */
export async function mustGetPromotion(dbs: D1Database | readonly D1Database[], id: string): Promise<PromotionRow> {
  const row = await getPromotion(dbs, id);
  if (!row) throw ApiError.notFound(`No promotion ${id}.`);
  return row;
}

/** If-Match is mandatory on PATCH and DELETE: 428 without it, 412 when it is not the current version. */
function checkIfMatch(ifMatch: number | undefined, current: PromotionRow): number {
  if (ifMatch === undefined) throw ApiError.preconditionRequired(`Send If-Match: "${current.version}" (the version you are changing).`, current.version);
  if (ifMatch !== current.version) throw ApiError.preconditionFailed(`If-Match ${ifMatch} is not the current version ${current.version}.`, current.version);
  return current.version;
}

/** Commits, maps a lost race to 412, then sends the events and arms the boundary alarm after the commit. */
async function commit({ env, waitUntil }: WriteContext, write: WriteKind, input: PromotionInput | null, now: number): Promise<void> {
  let result;
  try {
    result = await writePromotion(allCatalogDbs(env), write, input, now);
  } catch (err) {
    if (isOccGuardError(err)) throw ApiError.preconditionFailed("The promotion was changed by another write meanwhile.", (await getPromotion(env.DB, write.id))?.version);
    if (isUniqueError(err, "promotions.id")) throw ApiError.conflict(`A promotion with id ${write.id} already exists.`);
    throw err;
  }
  forgetNextBoundary();
  const boundaries = [input, write.kind === "create" ? null : inputFromRow(write.before)].filter((x): x is PromotionInput => x !== null);
  const next = nextBoundary(boundaries, now);
  waitUntil(
    Promise.all([
      sendOutboxBatches(env, result.outboxIds),
      armClock(env, next).catch((err) => console.warn(JSON.stringify({ level: "warn", message: "promotion clock not armed; the cron will", error: String(err) }))),
    ]).catch(() => {}),
  );
}

export async function createPromotion(ctx: WriteContext, id: string, fields: PromotionFields, now: number): Promise<PromotionRow> {
  const input: PromotionInput = {
    name: fields.name,
    starts_at: ms(fields.starts_at),
    ends_at: fields.ends_at ? ms(fields.ends_at) : null,
    target: fields.target,
    value: fields.value,
    priority: fields.priority,
    currencies: fields.currencies,
    markets: fields.markets,
  };
  checkRules(input, now, supportedCurrencies(ctx.env), true);
  await commit(ctx, { kind: "create", id }, input, now);
  return mustGetPromotion(allCatalogDbs(ctx.env), id);
}

/** Fields given replace the current ones; the target is re-resolved. */
export async function updatePromotion(ctx: WriteContext, id: string, patch: PromotionChanges, ifMatch: number | undefined, now: number): Promise<PromotionRow> {
  const before = await mustGetPromotion(ctx.env.DB, id);
  const expectedVersion = checkIfMatch(ifMatch, before);
  const current = inputFromRow(before);
  const input: PromotionInput = {
    ...current,
    ...(patch.name !== undefined ? { name: patch.name } : {}),
    ...(patch.starts_at !== undefined ? { starts_at: ms(patch.starts_at) } : {}),
    ...(patch.ends_at !== undefined ? { ends_at: patch.ends_at === null ? null : ms(patch.ends_at) } : {}),
    ...(patch.target !== undefined ? { target: patch.target } : {}),
    ...(patch.value !== undefined ? { value: patch.value } : {}),
    ...(patch.priority !== undefined ? { priority: patch.priority } : {}),
    ...(patch.currencies !== undefined ? { currencies: patch.currencies } : {}),
    ...(patch.markets !== undefined ? { markets: patch.markets } : {}),
  };
  checkRules(input, now, supportedCurrencies(ctx.env), input.starts_at !== current.starts_at);
  await commit(ctx, { kind: "update", id, expectedVersion, before }, input, now);
  return mustGetPromotion(allCatalogDbs(ctx.env), id);
}

/** Prices return to regular at once: the affected products are re-priced in the same batch. */
export async function deletePromotion(ctx: WriteContext, id: string, ifMatch: number | undefined, now: number): Promise<void> {
  const before = await mustGetPromotion(ctx.env.DB, id);
  const expectedVersion = checkIfMatch(ifMatch, before);
  await commit(ctx, { kind: "delete", id, expectedVersion, before }, null, now);
}
