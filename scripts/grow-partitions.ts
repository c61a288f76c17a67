/**
 * Grows a local catalog from N to 2N partitions (docs/storage.md, "Growing N → 2N without downtime"), with the steps
 * of src/db/grow.ts over the D1 bindings of wrangler.toml (DB = partition 0, CATALOG_<i>), through getPlatformProxy
 * as the seed does:
 *   npx tsx scripts/grow-partitions.ts --from 1 --persist DIR           # steps 1–3: copy, then replay until quiet
 *   (pause admin writes and imports)
 *   npx tsx scripts/grow-partitions.ts --from 1 --persist DIR --flip    # step 4: the last replay, which also sets the
 *                                                                        # new partitions' change_seq split marks
 *   (serve with CATALOG_PARTITIONS = 2N, wrangler.toml binding CATALOG_N … CATALOG_{2N−1}; resume writes once no
 *    instance with N is left)
 *   npx tsx scripts/grow-partitions.ts --from 1 --persist DIR --finish  # step 5: stock projections and flags, delete moved rows
 * Each step resumes safely after a crash (a chunk copied twice replaces the same rows). The replay's outbox mark is
 * kept in the new partition's `meta` (`grow:replay_mark`), so `--flip` replays only what changed since the copy.
 */
import { execFileSync } from "node:child_process";
import path from "node:path";
import { parseArgs } from "node:util";
import type { D1Database } from "@cloudflare/workers-types";
import { getPlatformProxy } from "wrangler";
import { copyChunk, copyShared, deleteMoved, outboxMark, refreshAvailability, replaySince } from "../src/db/grow";
import { QUIET_ENV } from "./lib/wrangler";

const { values } = parseArgs({
  options: {
    from: { type: "string", default: "1" },
    persist: { type: "string" },
    env: { type: "string" },
    flip: { type: "boolean", default: false },
    finish: { type: "boolean", default: false },
  },
});
const n = Number(values.from);
if (!Number.isInteger(n) || n < 1 || n > 8 || (n & (n - 1)) !== 0) {
  console.error(`--from must be the current CATALOG_PARTITIONS (1, 2, 4 or 8), got ${values.from}`);
  process.exit(2);
}
Object.assign(process.env, QUIET_ENV);
const binding = (i: number) => (i === 0 ? "DB" : `CATALOG_${i}`);
if (values.flip && values.finish) {
  console.error("--flip and --finish are separate steps");
  process.exit(2);
}

const MARK_KEY = "grow:replay_mark";
async function loadMark(to: D1Database): Promise<number | null> {
  const row = await to.prepare("SELECT value FROM meta WHERE key = ?").bind(MARK_KEY).first<{ value: string }>();
  return row ? Number(row.value) : null;
}
async function saveMark(to: D1Database, mark: number): Promise<void> {
  await to.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value").bind(MARK_KEY, String(mark)).run();
}

async function main() {
  const persistRoot = values.persist ? path.resolve(values.persist) : path.resolve(".wrangler/state");
  for (let i = n; i < 2 * n && !values.finish && !values.flip; i++) {
    execFileSync("npx", ["--no-install", "wrangler", "d1", "migrations", "apply", binding(i), "--local", "--persist-to", persistRoot, ...(values.env ? ["--env", values.env] : [])], {
      env: QUIET_ENV,
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  const proxy = await getPlatformProxy<Record<string, D1Database>>({ configPath: "wrangler.toml", environment: values.env, persist: { path: path.join(persistRoot, "v3") }, remoteBindings: false });
  try {
    for (let p = 0; p < n; p++) {
      const from = proxy.env[binding(p)];
      const to = proxy.env[binding(p + n)];
      if (!from || !to) throw new Error(`wrangler.toml needs the D1 bindings ${binding(p)} and ${binding(p + n)}`);
      const opts = { newCount: 2 * n, toIndex: p + n };
      const started = Date.now();
      let after: string | null = "";
      let moved = 0;
      if (values.flip) {
        const mark = await loadMark(to);
        if (mark === null) throw new Error(`${binding(p + n)} was never copied: run the copy (no --flip) first`);
        const replay = await replaySince(from, to, { ...opts, mark });
        await saveMark(to, replay.mark);
        console.log(`grow: ${binding(p)} → ${binding(p + n)}: ${replay.replayed.length} products replayed; change_seq split mark ${replay.split}`);
      } else if (!values.finish) {
        await copyShared(from, to);
        let mark = await outboxMark(from);
        while (after !== null) {
          const step: { copied: string[]; next: string | null } = await copyChunk(from, to, { ...opts, after });
          moved += step.copied.length;
          after = step.next;
        }
        // Replay until a pass finds little to do; the last one runs during the flip's pause.
        for (let pass = 0; pass < 10; pass++) {
          const replay = await replaySince(from, to, { ...opts, mark });
          mark = replay.mark;
          await saveMark(to, mark);
          if (replay.replayed.length < 10) break;
        }
        console.log(`grow: ${binding(p)} → ${binding(p + n)}: ${moved} products copied in ${((Date.now() - started) / 1000).toFixed(1)} s; outbox mark ${mark}`);
      } else {
        let rederived = 0;
        while (after !== null) {
          const step: { next: string | null; rederived: string[] } = await refreshAvailability(from, to, { ...opts, after });
          rederived += step.rederived.length;
          after = step.next;
        }
        console.log(`grow: ${binding(p + n)}: stock flags re-derived for ${rederived} moved products`);
        after = "";
        while (after !== null) {
          const step: { deleted: string[]; next: string | null } = await deleteMoved(from, { ...opts, after });
          moved += step.deleted.length;
          after = step.next;
        }
        console.log(`grow: ${binding(p)}: ${moved} moved products deleted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      }
    }
  } finally {
    await proxy.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
