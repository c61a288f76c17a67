/**
 * Who holds stock behind a storefront key. A storefront key is one shop front shared by all of its shoppers, so
 * hoarding caps and reservation rate limits count a shopper, not the shop: the storefront names the shopper or
 * cart in `x-shopper-id`; without it the client IP stands in (set by Cloudflare, a client cannot choose it).
 *
 * The holder key is a hash of (storefront key id, shopper), so object names and stored rows carry no raw
 * shopper ids, have a fixed length, and two shops' shoppers with the same id never meet.
 */
import { sha256Hex } from "../lib/crypto";

export const SHOPPER_HEADER = "x-shopper-id";
/** Printable ASCII without spaces, as cart ids, user ids and UUIDs are. */
export const SHOPPER_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;

/** The shopper named by the request: `id:<x-shopper-id>` when valid, else `ip:<client address>`. */
export function shopperIdentity(request: Request): string {
  const id = request.headers.get(SHOPPER_HEADER);
  if (id !== null && SHOPPER_ID_PATTERN.test(id)) return `id:${id}`;
  return `ip:${request.headers.get("cf-connecting-ip") ?? "unknown"}`;
}

/** 16 hex digits: the holder of the stock a reservation holds (hoarding caps, hot-SKU sub-shard choice). */
export async function holderKey(keyId: string, shopper: string): Promise<string> {
  return (await sha256Hex(`${keyId}\u0000${shopper}`)).slice(0, 16);
}
