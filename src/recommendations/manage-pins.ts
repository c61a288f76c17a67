/**
 * Merchandiser pins as the admin API changes them: every id must be a product, a product cannot be pinned to
 * itself, and the pins are versioned for If-Match. A saved change is recomputed at once, not at the next cron tick.
 */
import { catalogDb } from "../db/partitions";
import { ApiError } from "../lib/errors";
import { productRows } from "./catalog-reads";
import { recompute } from "./jobs";
import { readStoredLists, type ProductLists } from "./lists";
import { readPins, writePins, type PinWrite, type RecommendationPins } from "./pins";

export type PinsView = {
  product_id: string;
  pins: RecommendationPins | null;
  lists: { related: NonNullable<ProductLists["related"]> | null; complementary: NonNullable<ProductLists["complementary"]> | null };
};

async function view(env: Env, id: string): Promise<PinsView> {
  const [pins, lists] = await Promise.all([readPins(env.DB, [id]), readStoredLists(env.DB, [id])]);
  const l = lists.get(id);
  return { product_id: id, pins: pins.get(id) ?? null, lists: { related: l?.related ?? null, complementary: l?.complementary ?? null } };
}

/** The product's pins and stored lists; 404 when there is no such product. */
export async function pinsOf(env: Env, id: string): Promise<PinsView> {
  const exists = await catalogDb(env, id).prepare("SELECT 1 AS x FROM products WHERE id = ?").bind(id).first();
  if (!exists) throw ApiError.notFound(`No product ${id}.`);
  return view(env, id);
}

/**
 * Replaces the pins. The first write needs no If-Match; once pins exist, `ifMatch` must be their version (428
 * without it, 412 when stale). Returns the new version and the recomputed view.
 */
export async function savePins(env: Env, id: string, pins: PinWrite, ifMatch: number | undefined): Promise<{ version: number; view: PinsView }> {
  const mentioned = [...new Set([...pins.complementary, ...pins.related, ...pins.exclude, id])];
  const results = await productRows<{ id: string }>(env, "id", mentioned);
  const known = new Set(results.map((r) => r.id));
  if (!known.has(id)) throw ApiError.notFound(`No product ${id}.`);
  const unknown = mentioned.filter((m) => !known.has(m));
  if (unknown.length) throw ApiError.unprocessable(`Unknown product ids: ${unknown.join(", ")}.`, { unknown_ids: unknown });
  if (pins.complementary.includes(id) || pins.related.includes(id)) throw ApiError.unprocessable("A product cannot be pinned to itself.");

  const current = (await readPins(env.DB, [id])).get(id);
  if (current && ifMatch === undefined) {
    throw ApiError.preconditionRequired(`Pins exist at version ${current.version}; send If-Match: "${current.version}".`, current.version);
  }
  if (!current && ifMatch !== undefined) throw ApiError.preconditionFailed(`Product ${id} has no pins yet, so If-Match cannot match.`);
  const version = await writePins(env.DB, id, pins, current ? ifMatch : undefined, Date.now());
  if (version === null) {
    const now = (await readPins(env.DB, [id])).get(id)?.version;
    throw ApiError.preconditionFailed(`If-Match ${ifMatch ?? "(none)"} is stale: the pins were changed by another write.`, now);
  }
  // Pins are merchandising decisions: visible at once, not at the next cron tick.
  await recompute(env, [id], new Map(), undefined, Date.now());
  return { version, view: await view(env, id) };
}
