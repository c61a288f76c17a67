/**
 * Admin views across every object that holds a SKU's stock: its home shard and, for a SKU that is or was hot,
 * its escrow sub-shards (held items stay on their sub-shard after un-marking). Object names come from the SKU's
 * hash and its home shard's record of sub-shards, never from anything else the caller sends.
 */
import { ApiError } from "../lib/errors";
import { coordinatorStub, releaseReservation } from "./reservations";
import { shardNameForSku, stockStub } from "./routing";
import type { LiveHold, ReservationView } from "./types";

/** The home shard knows every sub-shard the SKU ever used (the same list its merged ledger reads). */
export async function objectsHoldingSku(env: Env, sku: string): Promise<string[]> {
  return stockStub(env, shardNameForSku(env, sku)).ledgerShards(sku);
}

export type ShardHold = LiveHold & { shard: string };

/** Live holds of a SKU in every object, soonest deadline first. */
export async function holdsOfSku(env: Env, sku: string, limit = 200): Promise<ShardHold[]> {
  const names = await objectsHoldingSku(env, sku);
  const lists = await Promise.all(names.map(async (shard) => (await stockStub(env, shard).liveHolds(sku, limit)).map((h) => ({ ...h, shard }))));
  return lists.flat().sort((a, b) => a.expires_at - b.expires_at).slice(0, limit);
}

/**
 * Releases a reservation whoever holds it (a stuck checkout, a hoarder): the same release as the storefront's,
 * acting as `admin`, so every hold goes back and the ledger says who released it. 409 once committed.
 */
export async function forceRelease(env: Env, id: string, actor = "admin"): Promise<ReservationView> {
  const owner = await coordinatorStub(env, id).reservationOwner(id);
  if (owner === null) throw ApiError.notFound(`Reservation ${id} does not exist.`);
  return releaseReservation(env, id, owner, actor);
}
