/**
 * How a coordinator reaches a shopper's total-cap tally (src/stock/shopper-tally.ts) when another shard keeps it:
 * only reservations without `x-shopper-id` (the coordinator follows the Idempotency-Key, the tally the client IP).
 * The cap is a safeguard, not a dependency: a tally shard that does not answer within a second lets the
 * reservation go on (the per-SKU cap in the SKU's own shard still holds), and a lost `end` only keeps units
 * counted until their deadline.
 */
import { withTimeout } from "../lib/resilience";
import { holderOfReservation, shardName, stockStub, tallyShardIndex } from "./routing";
import type { HoldAdmission } from "./shopper-tally";
import type { HoldLine } from "./types";

const TALLY_TIMEOUT_MS = 1_000;

export function tallyShardName(env: Env, holder: string): string {
  return shardName(tallyShardIndex(env, holder));
}

/** The tally shard of a reservation's holder (read off its id), or undefined for ids without one. */
export function tallyShardOf(env: Env, reservationId: string): string | undefined {
  const holder = holderOfReservation(reservationId);
  return holder ? tallyShardName(env, holder) : undefined;
}

export async function admitRemote(env: Env, holder: string, id: string, lines: HoldLine[], expiresAt: number, total: number): Promise<HoldAdmission | undefined> {
  const pending = stockStub(env, tallyShardName(env, holder)).tallyAdmit(holder, id, lines, expiresAt, total) as unknown as Promise<HoldAdmission>;
  return withTimeout(pending, TALLY_TIMEOUT_MS, "hold tally").catch(() => undefined);
}

/**
 * Best effort: `end` (expiresAt undefined) or `extend` the reservation's row in the tally shard `name`. An end with
 * `onlyUntil` is a saga attempt's compensation: it ends only the row that attempt admitted (see ShopperTally.end).
 */
export async function updateRemote(env: Env, name: string, id: string, expiresAt?: number, onlyUntil?: number): Promise<void> {
  await withTimeout(stockStub(env, name).tallyUpdate(id, expiresAt ?? null, onlyUntil), TALLY_TIMEOUT_MS, "hold tally").catch(() => undefined);
}
