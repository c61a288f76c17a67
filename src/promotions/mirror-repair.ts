/**
 * Brings every catalog partition's mirror of the promotions (write.ts) in line with the directory, for a promotion
 * write whose mirror batch failed after the directory committed. Run by the every-minute cron before the boundary
 * switch. A mirror is only ever behind the directory (it is written after it, and only over older versions), so
 * equal row counts and equal version sums mean equal tables: one aggregate per database when nothing is missing,
 * which is every minute but the ones after a failure. Nothing to do with one partition.
 */
import { allCatalogDbs } from "../db/partitions";
import { sendOutboxIds } from "../events/outbox";
import { inputFromRow, type PromotionRow } from "./store";
import { applyMirror, mirrorOf, ownedBy } from "./write";

const FINGERPRINT = "SELECT count(*) AS n, total(version) AS v FROM promotions";
/** Promotions re-applied per partition and run; the next minute takes the rest. */
const REPAIR_LIMIT = 50;

export async function repairPromotionMirrors(env: Pick<Env, "DB" | "EVENTS" | "CATALOG_PARTITIONS">, now: number): Promise<number> {
  const dbs = allCatalogDbs(env);
  if (dbs.length === 1) return 0;
  const [directory, ...mirrors] = await Promise.all(dbs.map((db) => db.prepare(FINGERPRINT).first<{ n: number; v: number }>()));
  let repaired = 0;
  for (const [i, fingerprint] of mirrors.entries()) {
    if (fingerprint?.n === directory?.n && fingerprint?.v === directory?.v) continue;
    const db = dbs[i + 1]!;
    const [want, have] = await Promise.all(
      [env.DB, db].map(async (d) => new Map((await d.prepare("SELECT id, version FROM promotions").all<{ id: string; version: number }>()).results.map((r) => [r.id, r.version]))),
    );
    const behind = [...want!].filter(([id, version]) => (have!.get(id) ?? 0) < version).map(([id]) => id).slice(0, REPAIR_LIMIT);
    for (const id of behind) {
      const row = await env.DB.prepare("SELECT * FROM promotions WHERE id = ?").bind(id).first<PromotionRow>();
      if (!row) continue;
      const done = await applyMirror(db, mirrorOf(row), row.deleted_at === null ? inputFromRow(row) : null, now, ownedBy(dbs.length, i + 1));
      if (!done) continue;
      await sendOutboxIds(env, done.outboxIds, db);
      repaired += 1;
    }
  }
  return repaired;
}
