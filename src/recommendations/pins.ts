/** Merchandiser pins (D1 `recommendation_pins`), versioned for If-Match. */

export type RecommendationPins = { complementary: string[]; related: string[]; exclude: string[]; version: number };

type Row = { product_id: string; complementary: string; related: string; exclude: string; version: number };

export async function readPins(d1: D1Database, ids: string[]): Promise<Map<string, RecommendationPins>> {
  const out = new Map<string, RecommendationPins>();
  if (!ids.length) return out;
  const { results } = await d1
    .prepare("SELECT product_id, complementary, related, exclude, version FROM recommendation_pins WHERE product_id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(ids))
    .all<Row>();
  for (const r of results) {
    out.set(r.product_id, {
      complementary: JSON.parse(r.complementary) as string[],
      related: JSON.parse(r.related) as string[],
      exclude: JSON.parse(r.exclude) as string[],
      version: r.version,
    });
  }
  return out;
}

export type PinWrite = { complementary: string[]; related: string[]; exclude: string[] };

/**
 * Writes the pins when `expectedVersion` matches (undefined = the pins must not exist yet).
 * Returns the new version, or null when someone else wrote first.
 */
export async function writePins(d1: D1Database, id: string, pins: PinWrite, expectedVersion: number | undefined, now: number): Promise<number | null> {
  const values = [JSON.stringify(pins.complementary), JSON.stringify(pins.related), JSON.stringify(pins.exclude), now];
  const row =
    expectedVersion === undefined
      ? await d1
          .prepare(
            `INSERT INTO recommendation_pins (product_id, complementary, related, exclude, version, updated_at) VALUES (?, ?, ?, ?, 1, ?)
             ON CONFLICT (product_id) DO NOTHING RETURNING version`,
          )
          .bind(id, ...values)
          .first<{ version: number }>()
      : await d1
          .prepare(
            `UPDATE recommendation_pins SET complementary = ?, related = ?, exclude = ?, updated_at = ?, version = version + 1
             WHERE product_id = ? AND version = ? RETURNING version`,
          )
          .bind(...values, id, expectedVersion)
          .first<{ version: number }>();
  return row?.version ?? null;
}
