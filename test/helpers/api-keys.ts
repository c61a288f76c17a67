/** API keys for tests (the test D1 starts empty): the dev storefront key and an affiliate key, stored hashed. */
import { sha256Hex } from "../../src/lib/crypto";
import { STOREFRONT_KEY } from "./http";

export const AFFILIATE_TEST_KEY = "test-affiliate-key";

export async function seedApiKeys(db: D1Database): Promise<void> {
  const rows = [
    { id: "key-dev-storefront", kind: "storefront", affiliate: null, key: STOREFRONT_KEY },
    { id: "key-test-affiliate", kind: "affiliate", affiliate: "aff-test", key: AFFILIATE_TEST_KEY },
  ];
  await db.batch(
    await Promise.all(
      rows.map(async (r) =>
        db
          .prepare("INSERT INTO api_keys (id, kind, affiliate_id, key_hash, prefix, label) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
          .bind(r.id, r.kind, r.affiliate, await sha256Hex(r.key), r.key.slice(0, 8), r.id),
      ),
    ),
  );
}

/** A second storefront key, to prove that Idempotency-Keys are scoped per storefront key. */
export async function addStorefrontKey(db: D1Database, id: string, key: string): Promise<void> {
  await db
    .prepare("INSERT INTO api_keys (id, kind, affiliate_id, key_hash, prefix, label) VALUES (?, 'storefront', NULL, ?, ?, ?) ON CONFLICT DO NOTHING")
    .bind(id, await sha256Hex(key), key.slice(0, 8), id)
    .run();
}
