#!/usr/bin/env node
/**
 * Mutation run over the stock path (src/stock/, durable-objects/stock-shard.ts). Applies each boundary or
 * condition mutation of scripts/mutation/mutations.mjs on its own, runs the stock tests against it, and
 * expects them to fail ("killed"). A mutation whose text is no longer in the source is reported "stale", so
 * the list is kept in step with the code. Writes bench/results/mutation.md.
 *
 *   node scripts/mutation/run.mjs                       # every mutation, the default stock tests
 *   node scripts/mutation/run.mjs --only hold-named-boundary,commit-late-check
 *   node scripts/mutation/run.mjs --tests "test/stock-model.test.ts" --out /tmp/m.md
 *
 * It edits the source files in place and restores each one before the next mutation (and on Ctrl-C), so
 * run it in a copy of the work tree if you want to keep working meanwhile:
 *   git archive HEAD | tar -x -C /tmp/mut && ln -s "$PWD/node_modules" /tmp/mut/ && cd /tmp/mut && node scripts/mutation/run.mjs
 * On a shared machine, run it while no other test run competes for the CPU: `node scripts/mutation/run.mjs > /tmp/mut.log`.
 *
 * Stryker's vitest runner was tried first: it cannot drive @cloudflare/vitest-pool-workers (see
 * bench/results/mutation.md), hence this small runner.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DEFAULT_TESTS, MUTATIONS, TESTS_BY_AREA } from "./mutations.mjs";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    tests: { type: "string" },
    out: { type: "string", default: "bench/results/mutation.md" },
    "timeout-seconds": { type: "string", default: "300" },
    /** Skip the unmutated run (when it was just checked, e.g. when splitting the list over two copies). */
    "skip-baseline": { type: "boolean", default: false },
  },
});
const override = values.tests ? values.tests.split(/\s+/).filter(Boolean) : undefined;
/** The files one mutation runs against: the command line's, else its own list, else its area's, else all. */
const testsOf = (m) => override ?? m.tests ?? TESTS_BY_AREA[m.area] ?? DEFAULT_TESTS;
const only = values.only ? new Set(values.only.split(",")) : undefined;
const timeoutMs = Number(values["timeout-seconds"]) * 1000;
const chosen = MUTATIONS.filter((m) => !only || only.has(m.id));

let restore = () => {};
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    restore();
    process.exit(130);
  });
}

/** Runs the tests; returns whether they passed, the first failing test and the time taken. */
function runTests(tests) {
  const started = Date.now();
  const res = spawnSync("npx", ["vitest", "run", "--bail=1", ...tests], { encoding: "utf8", timeout: timeoutMs, env: { ...process.env, FORCE_COLOR: "0" } });
  const out = `${res.stdout ?? ""}\n${res.stderr ?? ""}`.replace(/\x1b\[[0-9;]*m/g, "");
  const failed = /(?:FAIL|×)\s+(.+)/.exec(out)?.[1]?.trim();
  return { passed: res.status === 0, timedOut: res.error?.code === "ETIMEDOUT", failed, seconds: Math.round((Date.now() - started) / 1000), out };
}

if (!values["skip-baseline"]) {
  const baseline = runTests(override ?? [...new Set(chosen.flatMap(testsOf))]);
  if (!baseline.passed) {
    console.error(baseline.out.slice(-4000));
    console.error("the unmutated tests fail; fix that first");
    process.exit(1);
  }
  console.log(`baseline: tests pass in ${baseline.seconds} s`);
}

const results = [];
for (const m of chosen) {
  const original = readFileSync(m.file, "utf8");
  const hits = original.split(m.find).length - 1;
  if (hits !== 1) {
    results.push({ ...m, result: hits === 0 ? "stale" : `ambiguous (${hits} matches)`, by: "", seconds: 0 });
    console.log(`${m.id}: ${hits === 0 ? "stale" : "ambiguous"}`);
    continue;
  }
  restore = () => writeFileSync(m.file, original);
  writeFileSync(m.file, original.replace(m.find, m.replace));
  let r;
  try {
    r = runTests(testsOf(m));
  } finally {
    restore();
    restore = () => {};
  }
  const result = r.passed ? "SURVIVED" : r.timedOut ? "killed (timeout)" : "killed";
  results.push({ ...m, result, by: r.passed ? "" : (r.failed ?? "(run failed)"), seconds: r.seconds, files: testsOf(m).length });
  console.log(`${m.id}: ${result}${r.failed ? ` by ${r.failed}` : ""} (${r.seconds} s)`);
}

const counted = results.filter((r) => r.result === "SURVIVED" || r.result.startsWith("killed"));
const killed = counted.filter((r) => r.result.startsWith("killed")).length;
const score = counted.length ? ((100 * killed) / counted.length).toFixed(1) : "n/a";
const esc = (s) => String(s).replace(/\|/g, "\\|").replace(/\n/g, " ");
const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout?.trim() || "(no git)";
const lines = [
  "# Mutation run over the stock path",
  "",
  `Command: \`node scripts/mutation/run.mjs${values.only ? ` --only ${values.only}` : ""}${values.tests ? ` --tests "${values.tests}"` : ""}\``,
  `(commit ${commit}, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC; each mutation applied alone, then \`npx vitest run --bail=1 <files>\`,`,
  `the files of its area in scripts/mutation/mutations.mjs (\`TESTS_BY_AREA\`) unless \`--tests\` is given; a time-out counts as killed;`,
  "a shared 2-core machine, so durations are noisy).",
  "",
  `**Score: ${killed} of ${counted.length} mutations killed (${score} %).** Survivors: ${counted.length - killed}.` +
    (results.length > counted.length ? ` Not run (text no longer in the source): ${results.length - counted.length}.` : ""),
  "",
  "| mutation | area | file | change | result | first failing test | files | s |",
  "|---|---|---|---|---|---|---|---|",
  ...results.map((r) => `| ${r.id} | ${r.area} | ${r.file} | \`${esc(r.find)}\` → \`${esc(r.replace)}\` | ${r.result} | ${esc(r.by).slice(0, 140)} | ${r.files ?? ""} | ${r.seconds} |`),
  "",
];
// A report with hand-written notes keeps them: only the part between the markers is replaced.
const START = "<!-- mutation-run:start -->";
const END = "<!-- mutation-run:end -->";
let prev = "";
try {
  prev = readFileSync(values.out, "utf8");
} catch {}
const a = prev.indexOf(START);
const b = prev.indexOf(END);
const block = `${START}\n${lines.join("\n")}\n${END}`;
writeFileSync(values.out, a >= 0 && b > a ? prev.slice(0, a) + block + prev.slice(b + END.length) : `${block}\n`);
console.log(`score ${score} %: ${killed}/${counted.length}; written to ${values.out}`);
process.exit(counted.length - killed > 0 ? 2 : 0);
