// Real-browser test of the embed widget: Debian's chromium (scripts/install-chromium.sh) driven by
// playwright-core against `wrangler dev` on its own port and its own --persist-to directory.
//   node test/browser/widget.e2e.mjs
// Skips (exit 0, with a message) only when chromium is absent and cannot be installed.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { CHROMIUM, ROOT, adminApi, ensureChromium, env, fail, sh, waitFor } from "./harness.mjs";

const PORT = Number(process.env.E2E_PORT ?? 8796);
const ORIGIN = `http://127.0.0.1:${PORT}`;
// Two publisher sites on other origins: one the affiliate allowed, one it did not.
const PUBLISHER = `http://127.0.0.1:${PORT + 100}`;
const STRANGER = `http://127.0.0.1:${PORT + 101}`;
const PERSIST = path.join(ROOT, ".wrangler", "e2e-widget");
const RESULTS = path.join(ROOT, "test-results");
const ADMIN = "e2e-admin-token";
const PRODUCT = "p-000001";

const log = (msg) => console.log(`widget-e2e: ${msg}`);
ensureChromium("widget-e2e", log);

const { chromium } = await import("playwright-core");

const api = adminApi(ORIGIN, ADMIN);

let dev;
let browser;
const sites = [];

/** A minimal third-party page embedding the widget from the API origin (cross-origin fetches, CORS preflight). */
function publisherSite(port, key) {
  const html = `<!doctype html><meta charset="utf-8"><title>publisher</title>
<div id="w" data-edgeshelf-product="${PRODUCT}" data-key="${key}" data-refresh="2" data-tracking="e2e"></div>
<script src="${ORIGIN}/embed.js" async></script>`;
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(html);
  });
  sites.push(server);
  return new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
}
const stopDev = () => {
  if (dev && dev.exitCode === null) {
    try {
      process.kill(-dev.pid, "SIGTERM");
    } catch {
      /* already gone */
    }
  }
};
process.on("exit", stopDev);

try {
  rmSync(PERSIST, { recursive: true, force: true });
  mkdirSync(RESULTS, { recursive: true });
  log("migrating and seeding a 30-product catalog");
  sh("npx", ["--no-install", "wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", PERSIST]);
  sh("npx", ["--no-install", "tsx", "scripts/seed.ts", "--products", "30", "--persist", PERSIST]);
  const expected = JSON.parse(
    sh("npx", ["--no-install", "tsx", "-e", `import { product } from "./src/seed/generate.ts"; console.log(JSON.stringify(product(1)))`]),
  );

  log(`starting wrangler dev on ${ORIGIN}`);
  dev = spawn(
    "npx",
    ["--no-install", "wrangler", "dev", "--port", String(PORT), "--ip", "127.0.0.1", "--persist-to", PERSIST, "--var", `ADMIN_TOKEN:${ADMIN}`, "--log-level", "warn"],
    { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  let devLog = "";
  dev.stdout.on("data", (d) => (devLog += d));
  dev.stderr.on("data", (d) => (devLog += d));
  await waitFor("wrangler dev /health", async () => (await fetch(`${ORIGIN}/health`)).ok, 90_000).catch((err) => {
    console.error(devLog.slice(-3000));
    throw err;
  });

  // An affiliate allowed on this test's origin (the seeded demo one allows only :8787).
  const created = await api("POST", "/admin/affiliates", { name: "E2E publisher", tracking_id: `e2e${Date.now().toString(36)}`, allowed_origins: [ORIGIN, PUBLISHER] });
  if (created.status !== 201) fail(`creating the affiliate answered ${created.status}: ${JSON.stringify(created.body)}`);
  const key = created.body.key.key;

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
  });
  // A German visitor: the server picks EUR from Accept-Language, the widget asks for German texts.
  const context = await browser.newContext({ locale: "de-DE", viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => log(`page error: ${err.message}`));
  await page.goto(`${ORIGIN}/embed/demo?key=${encodeURIComponent(key)}&product=${PRODUCT}&refresh=1`);

  const card = page.locator("#product-widget .c");
  await card.waitFor({ timeout: 15_000 });
  const title = (await card.locator(".t").textContent()).trim();
  const priceText = (await card.locator(".p").textContent()).trim();
  const cheapestEur = Math.min(...expected.variants.map((v) => v.prices.EUR));
  const wantPrice = new Intl.NumberFormat("de", { style: "currency", currency: "EUR" }).format(cheapestEur / 100);
  const norm = (s) => s.replace(/\s+/g, " ");
  if (title !== expected.translations.de.title) fail(`card title '${title}', expected '${expected.translations.de.title}'`);
  if (norm(priceText) !== norm(wantPrice)) fail(`card price '${priceText}', expected '${wantPrice}' (EUR ${cheapestEur} minor units)`);
  const badgeBefore = (await card.locator(".b").textContent()).trim();
  const buyHref = await card.locator("a.buy").getAttribute("href");
  if (!buyHref.startsWith(`${ORIGIN}/r/`)) fail(`Buy link '${buyHref}' is not the click redirect`);
  log(`card rendered: '${title}' at ${priceText}, badge '${badgeBefore}'`);

  // Isolation both ways: the host's `* { color: … !important }` must not reach the card, the widget's .t must not reach the host.
  const cardColor = await card.locator(".t").evaluate((e) => getComputedStyle(e).color);
  if (cardColor === "rgb(176, 0, 32)") fail("host page CSS leaked into the widget");
  const hostFont = await page.locator("#host-text").evaluate((e) => getComputedStyle(e).fontSize);
  if (hostFont !== "22px") fail(`widget CSS leaked into the host page (host .t font-size ${hostFont})`);
  const gridCards = await page.locator("#category-widget .c").count();
  if (gridCards < 1) fail("the category grid rendered no card");
  await page.screenshot({ path: path.join(RESULTS, "widget-before.png"), fullPage: true });

  // Sell the product out through the admin stock API; the change travels shard → queue → projection → feed → widget.
  const feed = await fetch(`${ORIGIN}/v1/feeds/products/${PRODUCT}?format=json`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.json());
  const skus = feed.item.variants.map((v) => v.sku);
  for (const sku of skus) {
    for (const location of ["loc-us-east", "loc-us-west", "loc-eu-central", "loc-ap-south"]) {
      const r = await api("PUT", `/admin/stock/${encodeURIComponent(sku)}`, { location, on_hand: 0 });
      if (r.status >= 300) fail(`PUT /admin/stock/${sku} (${location}) answered ${r.status}: ${JSON.stringify(r.body)}`);
    }
  }
  const started = Date.now();
  await waitFor("the badge to show out of stock", async () => (await card.locator(".b").textContent()).trim() === "Out of stock", 30_000);
  log(`badge changed from '${badgeBefore}' to 'Out of stock' ${Date.now() - started} ms after the stock write, without a reload`);
  await page.screenshot({ path: path.join(RESULTS, "widget-e2e.png"), fullPage: true });

  // API down: a fresh page whose feed calls fail shows the quiet fallback link instead of an error.
  const down = await context.newPage();
  await down.route("**/v1/feeds/**", (route) => route.abort());
  await down.goto(`${ORIGIN}/embed/demo?key=${encodeURIComponent(key)}&product=${PRODUCT}`);
  const fallback = down.locator("#product-widget a.f");
  await fallback.waitFor({ timeout: 10_000 });
  const fallbackHref = await fallback.getAttribute("href");
  if (!fallbackHref.includes(`/r/`) || !fallbackHref.endsWith(PRODUCT)) fail(`fallback link '${fallbackHref}'`);
  await down.screenshot({ path: path.join(RESULTS, "widget-fallback.png") });
  log(`fallback link shown when the API is down: ${fallbackHref}`);

  // Cross-origin embeds: an allowed publisher gets the card (CORS narrowed to it); any other site gets the fallback.
  await publisherSite(PORT + 100, key);
  await publisherSite(PORT + 101, key);
  const onPublisher = await context.newPage();
  await onPublisher.goto(`${PUBLISHER}/`);
  await onPublisher.locator("#w .c").waitFor({ timeout: 15_000 });
  const publisherBadge = (await onPublisher.locator("#w .b").textContent()).trim();
  if (publisherBadge !== "Out of stock") fail(`cross-origin card badge '${publisherBadge}'`);
  await onPublisher.screenshot({ path: path.join(RESULTS, "widget-cross-origin.png") });
  const onStranger = await context.newPage();
  await onStranger.goto(`${STRANGER}/`);
  await onStranger.locator("#w a.f").waitFor({ timeout: 15_000 });
  if ((await onStranger.locator("#w .c").count()) !== 0) fail("a site outside the allowed origins rendered the card");
  log(`cross-origin: card on ${PUBLISHER} (allowed), fallback on ${STRANGER} (not allowed)`);

  log("PASS (screenshots in test-results/)");
} catch (err) {
  console.error(`widget-e2e: FAIL ${err.message}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const server of sites) server.close();
  stopDev();
}
