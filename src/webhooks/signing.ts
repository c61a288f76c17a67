/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
 * `${webhook-id}.${webhook-timestamp}.${body}` with the endpoint's secret (`whsec_` + base64 of 24–64 random
 * bytes), sent as `webhook-signature: v1,<base64>`. Receivers verify with the `standardwebhooks` package.
 */
const PREFIX = "whsec_";

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function unbase64(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function generateSecret(): string {
  return PREFIX + base64(crypto.getRandomValues(new Uint8Array(32)));
}

/** A secret an operator brings: `whsec_` and base64 of 24 to 64 bytes. */
export function validSecret(secret: string): boolean {
  if (!secret.startsWith(PREFIX)) return false;
  try {
    const n = unbase64(secret.slice(PREFIX.length)).length;
    return n >= 24 && n <= 64;
  } catch {
    return false;
  }
}

export async function signatureHeader(secret: string, id: string, timestampSeconds: number, body: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", unbase64(secret.slice(PREFIX.length)), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${id}.${timestampSeconds}.${body}`));
  return `v1,${base64(new Uint8Array(mac))}`;
}
