/**
 * Read-your-writes bookmarks (`x-d1-bookmark`) that only this API can issue.
 *
 * A bookmark makes a product read skip the edge and KV and go to D1. Taken from any client it would be a free
 * way around the cache tiers, and a made-up one would reach D1's session API. So the header carries
 * `<D1 bookmark>~<product>~<expiry>~<HMAC>`: signed with a key derived from ADMIN_TOKEN, good for one product and
 * for BOOKMARK_TTL_MS after it was first issued. A read made with a bookmark hands back one with the same expiry,
 * so a chain of bookmarked reads cannot keep the bypass open. Anything that does not verify is ignored: the read
 * takes the normal tiers (an expired bookmark is normal client state, not an error).
 */
const encoder = new TextEncoder();

/** Long enough for a client to read back its own change, short enough that a copied header stops bypassing soon. */
export const BOOKMARK_TTL_MS = 60_000;

/** What D1 bookmarks look like (opaque; hex, dashes and a few separators), bounded so a header cannot be large. */
const RAW_RE = /^[\w.:+/=-]{1,256}$/;

let cached: { secret: string; key: Promise<CryptoKey> } | undefined;

function signingKey(env: Pick<Env, "ADMIN_TOKEN">): Promise<CryptoKey> {
  const secret = `edgeshelf-d1-bookmark:${env.ADMIN_TOKEN}`;
  if (cached?.secret !== secret) {
    cached = { secret, key: crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]) };
  }
  return cached.key;
}

function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
}

const signed = (raw: string, productId: string, expires: number) => `${raw}~${productId}~${expires}`;

/** The header value for D1 bookmark `raw` of a read of `productId`, valid until `expires` (epoch ms). */
export async function signBookmark(env: Pick<Env, "ADMIN_TOKEN">, raw: string, productId: string, expires: number): Promise<string> {
  const data = signed(raw, productId, expires);
  return `${data}~${b64url(new Uint8Array(await crypto.subtle.sign("HMAC", await signingKey(env), encoder.encode(data))))}`;
}

export type VerifiedBookmark = { raw: string; expires: number };

/** The D1 bookmark inside `header` when this API signed it for `productId` and it has not expired; else undefined. */
export async function verifyBookmark(env: Pick<Env, "ADMIN_TOKEN">, header: string | undefined, productId: string, now: number): Promise<VerifiedBookmark | undefined> {
  if (!header || header.length > 512 || !env.ADMIN_TOKEN) return undefined;
  const parts = header.split("~");
  if (parts.length !== 4) return undefined;
  const [raw, product, expiresText, mac] = parts as [string, string, string, string];
  const expires = Number(expiresText);
  if (!RAW_RE.test(raw) || product !== productId || !/^\d{1,15}$/.test(expiresText) || expires <= now) return undefined;
  try {
    const bytes = fromB64url(mac);
    // Only the canonical spelling counts, so one signature has one header value.
    if (b64url(bytes) !== mac) return undefined;
    const ok = await crypto.subtle.verify("HMAC", await signingKey(env), bytes, encoder.encode(signed(raw, product, expires)));
    return ok ? { raw, expires } : undefined;
  } catch {
    return undefined;
  }
}
