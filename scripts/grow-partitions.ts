/**
 * Grows a local catalog from N to 2N partitions (docs/storage.md, "Growing N → 2N without downtime"), with the steps
 * of src/db/grow.ts over the D1 bindings of wrangler.toml (DB = partition 0, CATALOG_<i>), through getPlatformProxy
 * as the seed does:
 *   npx tsx scripts/grow-partitions.ts --from 1 --persist DIR           # steps 1–3: copy, then replay until quiet
 *   (flip: serve with CATALOG_PARTITIONS = 2N; wrangler.toml must bind CATALOG_N … CATALOG_{2N−1})
 *   npx tsx scripts/grow-partitions.ts --from 1 --persist DIR --finish  # step 5: stock projections, delete moved rows
 * Each step resumes safely after a crash (a chunk copied twice replaces the same rows).
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

async function main() {
  const persistRoot = values.persist ? path.resolve(values.persist) : path.resolve(".wrangler/state");
  for (let i = n; i < 2 * n && !values.finish; i++) {
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
      if (!values.finish) {
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
          if (replay.replayed.length < 10) break;
        }
        console.log(`grow: ${binding(p)} → ${binding(p + n)}: ${moved} products copied in ${((Date.now() - started) / 1000).toFixed(1)} s; outbox mark ${mark}`);
      } else {
        while (after !== null) after = (await refreshAvailability(from, to, { ...opts, after })).next;
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
