import path from "node:path";

/** Seeded template database (bench/soak/prepare.ts), copied to a fresh state directory for each run. */
export const SOAK_SEED = path.resolve(".wrangler/soak-seed");
/** The bundle served with --no-bundle, built once so edits in the tree cannot restart the server mid-run. */
export const SOAK_BUILD = path.resolve(".wrangler/soak-build");
export const SOAK_STATE = path.resolve(".wrangler/soak-state");
