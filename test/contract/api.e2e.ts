// End-to-end checks against a running Worker (`wrangler dev` on its own port and --persist-to directory):
//  1. contract: real requests, most of them through the typed client (client/), each answer checked against the
//     Worker's own /openapi.json: an undocumented status, content type or body shape fails the run;
//  2. docs: Swagger UI at /docs in Debian's chromium (playwright-core) sends one request with "Try it out" and one
//     authorised with the admin token. Skipped, with a message, only when chromium cannot be installed.
//   npx tsx test/contract/api.e2e.ts      (E2E_API_PORT, E2E_API_INSPECTOR_PORT to move it)
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { createEdgeshelfClient } from "../../client/src/index";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PORT = Number(process.env.E2E_API_PORT ?? 8797);
const INSPECTOR = Number(process.env.E2E_API_INSPECTOR_PORT ?? 9297);
const ORIGIN = `http://127.0.0.1:${PORT}`;
const PERSIST = path.join(ROOT, ".wrangler", "e2e-contract");
const RESULTS = path.join(ROOT, "test-results");
const CHROMIUM = "/usr/bin/chromium";
const ADMIN = "e2e-admin-token";
const STOREFRONT = "dev-storefront-key";
const AFFILIATE = "demo-affiliate-key";
// A documentation address with a tiny browse limit (wrangler dev passes cf-connecting-ip through), to see a real 429.
const LIMITED_IP = "198.51.100.77";
const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };

const log = (msg: string) => console.log(`api-e2e: ${msg}`);

// ------------------------------------------------------------------------------------------ validator

type Json = Record<string, unknown>;
type Operation = { operationId: string; responses: Record<string, Json> };
type Doc = { paths: Record<string, Record<string, Operation>>; components: { responses: Record<string, Json> } };

class ContractChecker {
  readonly violations: string[] = [];
  readonly seen = new Map<string, Set<string>>();
  private readonly ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true });
  private readonly compiled = new Map<object, ValidateFunction>();
  private readonly routes: { method: string; template: string; pattern: RegExp; op: Operation }[];

  constructor(private readonly doc: Doc) {
    addFormats.default(this.ajv);
    this.ajv.addSchema({ $id: "openapi", components: (doc as unknown as { components: Json }).components });
    this.routes = Object.entries(doc.paths).flatMap(([template, item]) =>
      Object.entries(item).map(([method, op]) => ({
        method: method.toUpperCase(),
        template,
        pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^}]+\\?\}/g, "[^/]+")}$`),
        op,
      })),
    );
  }

  private schemaFor(schema: Json): ValidateFunction {
    let fn = this.compiled.get(schema);
    if (!fn) {
      // Component references are relative to the document: point them at the copy registered as "openapi".
      const rebased = JSON.parse(JSON.stringify(schema).replace(/"#\/components\//g, '"openapi#/components/')) as Json;
      fn = this.ajv.compile(rebased);
      this.compiled.set(schema, fn);
    }
    return fn;
  }

  /** Checks one answer; returns it untouched (the body is read from a clone). */
  async check(method: string, url: string, res: Response): Promise<Response> {
    const { pathname } = new URL(url);
    const route = this.routes.find((r) => r.method === method && r.pattern.test(pathname));
    const where = `${method} ${pathname} → ${res.status}`;
    if (!route) {
      this.violations.push(`${where}: no operation in the document`);
      return res;
    }
    const codes = this.seen.get(`${route.method} ${route.template}`) ?? new Set<string>();
    codes.add(String(res.status));
    this.seen.set(`${route.method} ${route.template}`, codes);
    let entry = route.op.responses[String(res.status)] ?? route.op.responses[`${String(res.status)[0]}XX`] ?? route.op.responses.default;
    if (!entry) {
      this.violations.push(`${where}: status not documented (documented: ${Object.keys(route.op.responses).join(", ")})`);
      return res;
    }
    if (typeof entry.$ref === "string") entry = this.doc.components.responses[entry.$ref.split("/").pop()!]!;
    const content = entry.content as Record<string, { schema?: Json }> | undefined;
    const text = await res.clone().text();
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    if (!text) {
      if (content && res.status !== 304 && res.status !== 204 && method !== "HEAD") this.violations.push(`${where}: empty body, documented ${Object.keys(content).join(", ")}`);
      return res;
    }
    if (!content || !content[type]) {
      this.violations.push(`${where}: content type '${type}' not documented (documented: ${content ? Object.keys(content).join(", ") : "no body"})`);
      return res;
    }
    const schema = content[type]!.schema;
    if (schema && /json/.test(type)) {
      const validate = this.schemaFor(schema);
      if (!validate(JSON.parse(text))) this.violations.push(`${where}: body does not match the schema: ${this.ajv.errorsText(validate.errors, { separator: "; " }).slice(0, 500)}`);
    }
    return res;
  }

  /** A fetch that checks every answer, for the typed client and for raw requests. */
  fetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : new Request(input, init);
    const res = await fetch(request.clone());
    return this.check(request.method, request.url, res);
  };
}

// --------------------------------------------------------------------------------------------- server

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { cwd: ROOT, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? ` (${last.message})` : ""}`);
}

let dev: ChildProcess | undefined;
const stopDev = () => {
  if (dev?.pid && dev.exitCode === null) {
    try {
      process.kill(-dev.pid, "SIGTERM");
    } catch {
      /* already gone */
    }
  }
};
process.on("exit", stopDev);

async function startWorker(): Promise<void> {
  rmSync(PERSIST, { recursive: true, force: true });
  sh("node", ["scripts/copy-docs-assets.mjs"]);
  log("migrating and seeding a 30-product catalog");
  sh("npx", ["--no-install", "wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", PERSIST]);
  sh("npx", ["--no-install", "tsx", "scripts/seed.ts", "--products", "30", "--persist", PERSIST]);
  log(`starting wrangler dev on ${ORIGIN}`);
  dev = spawn(
    "npx",
    [
      "--no-install", "wrangler", "dev", "--port", String(PORT), "--inspector-port", String(INSPECTOR), "--ip", "127.0.0.1", "--persist-to", PERSIST,
      "--var", `ADMIN_TOKEN:${ADMIN}`, "--var", `RATE_LIMIT_OVERRIDES:ip:${LIMITED_IP} browse=2/10`, "--log-level", "warn",
    ],
    { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  let devLog = "";
  dev.stdout!.on("data", (d) => (devLog += d));
  dev.stderr!.on("data", (d) => (devLog += d));
  await waitFor("wrangler dev /health", async () => (await fetch(`${ORIGIN}/health`)).ok, 90_000).catch((err) => {
    console.error(devLog.slice(-3000));
    throw err;
  });
}

// ------------------------------------------------------------------------------------------- contract

function expectStatus(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${what}: answered ${got}, expected ${want}`);
}

async function contract(): Promise<void> {
  const doc = (await (await fetch(`${ORIGIN}/openapi.json`)).json()) as Doc;
  const checker = new ContractChecker(doc);
  const raw = (p: string, init: RequestInit = {}) => checker.fetch(`${ORIGIN}${p}`, init);
  const shop = createEdgeshelfClient({ baseUrl: ORIGIN, token: STOREFRONT, fetch: checker.fetch });
  const publicApi = createEdgeshelfClient({ baseUrl: ORIGIN, fetch: checker.fetch });
  const adminApi = createEdgeshelfClient({ baseUrl: ORIGIN, token: ADMIN, fetch: checker.fetch });
  const affiliate = createEdgeshelfClient({ baseUrl: ORIGIN, token: AFFILIATE, fetch: checker.fetch });

  // The storefront flow of the README: read, reserve, commit.
  const product = await publicApi.GET("/v1/products/{id}", { params: { path: { id: "p-000001" }, query: { currency: "EUR" } } });
  expectStatus("read product", product.response.status, 200);
  const sku = product.data!.variants[0]!.sku;
  const held = await shop.POST("/v1/reservations", {
    params: { header: { "idempotency-key": `e2e-${Date.now()}` } },
    body: { items: [{ sku, quantity: 1 }], currency: "EUR", ttl_seconds: 300 },
  });
  expectStatus("reserve", held.response.status, 201);
  const reservation = held.data!;
  const committed = await shop.POST("/v1/reservations/{id}/commit", { params: { path: { id: reservation.id } } });
  expectStatus("commit", committed.response.status, 200);
  if (committed.data!.status !== "committed") throw new Error(`commit answered status ${committed.data!.status}`);
  const again = await shop.GET("/v1/reservations/{id}", { params: { path: { id: reservation.id } } });
  expectStatus("read reservation", again.response.status, 200);
  log(`storefront flow through the typed client: ${sku} reserved (${reservation.id}) and committed`);

  // Catalog reads, conditional requests and their errors.
  // (p-000001's ETag moved with the commit's stock change; p-000002 is untouched.)
  const other = await raw("/v1/products/p-000002?currency=EUR");
  expectStatus("304", (await raw("/v1/products/p-000002?currency=EUR", { headers: { "if-none-match": other.headers.get("etag")! } })).status, 304);
  await publicApi.GET("/v1/products/{id}", { params: { path: { id: "p-999999" } } });
  await publicApi.GET("/v1/products", { params: { query: { limit: 3, sort: "price_asc" } } });
  await raw("/v1/products?limit=5000");
  await publicApi.GET("/v1/search", { params: { query: { q: "wireless", limit: 3 } } });
  await publicApi.GET("/v1/categories", {});
  await raw("/v1/categories/headphones");
  await raw(`/v1/availability?skus=${encodeURIComponent(sku)}&by_location=true`);
  await raw("/v1/products/p-000001/recommendations?intent=related&limit=4");
  await raw("/v1/recommendations?context=p-000001");
  await raw("/health");

  // Keys: none, the wrong kind.
  await raw("/v1/reservations", { method: "POST", headers: { "content-type": "application/json", "idempotency-key": "x" }, body: JSON.stringify({ items: [{ sku, quantity: 1 }] }) });
  await raw("/v1/reservations", { method: "POST", headers: { authorization: `Bearer ${AFFILIATE}`, "content-type": "application/json", "idempotency-key": "x" }, body: JSON.stringify({ items: [{ sku, quantity: 1 }] }) });
  await shop.POST("/v1/reservations", { params: { header: { "idempotency-key": `e2e-big-${Date.now()}` } }, body: { items: [{ sku, quantity: 1000 }] } });

  // Feeds in every format.
  for (const format of ["json", "google", "jsonfeed", "google-xml", "google-tsv"] as const) {
    const res = await affiliate.GET("/v1/feeds/products", { params: { query: { format, limit: 5 } }, parseAs: "text" });
    expectStatus(`feed ${format}`, res.response.status, 200);
  }
  await raw("/v1/feeds/products");
  await affiliate.GET("/v1/feeds/products/{id}", { params: { path: { id: "p-000001" }, query: { format: "google-xml" } }, parseAs: "text" });

  // Admin: metrics, dead letters, webhooks, an import.
  expectStatus("metrics", (await adminApi.GET("/admin/metrics", {})).response.status, 200);
  expectStatus("dead letters", (await adminApi.GET("/admin/events/dead-letters", { params: { query: {} } })).response.status, 200);
  await raw("/admin/metrics");
  const hook = await adminApi.POST("/admin/webhooks", { body: { url: "https://hooks.example.com/edgeshelf", events: ["stock.low", "price.changed"] } });
  expectStatus("register webhook", hook.response.status, 201);
  await adminApi.GET("/admin/webhooks", {});
  await adminApi.GET("/admin/webhooks/{id}/deliveries", { params: { path: { id: hook.data!.id } } });
  await adminApi.PATCH("/admin/webhooks/{id}", { params: { path: { id: hook.data!.id } }, body: { status: "disabled" } });
  await adminApi.DELETE("/admin/webhooks/{id}", { params: { path: { id: hook.data!.id } } });
  await adminApi.POST("/admin/webhooks", { body: { url: "ftp://nope", events: ["stock.low"] } });
  await adminApi.GET("/admin/promotions", { params: { query: {} } });
  await adminApi.GET("/admin/affiliates/{id}", { params: { path: { id: "aff-demo" } } });
  const line = JSON.stringify({ id: "p-e2e-1", slug: "p-e2e-1", title: "E2E", brand: "E2E", category_id: "cat-electronics", variants: [{ sku: "SKU-E2E-1", prices: { USD: 500 } }] });
  const imported = await raw("/admin/import", { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/x-ndjson" }, body: `${line}\n` });
  expectStatus("import", imported.status, 201);

  // What the cross-cutting middleware answers.
  expectStatus("414", (await raw(`/v1/products?q=${"x".repeat(9000)}`)).status, 414);
  expectStatus("431", (await raw("/v1/products/p-000001", { headers: { "x-filler": "y".repeat(9000) } })).status, 431);
  expectStatus("415", (await raw("/admin/webhooks", { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "text/plain" }, body: "hello" })).status, 415);
  expectStatus("413", (await raw("/admin/webhooks", { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: JSON.stringify({ url: "x".repeat(1_100_000) }) })).status, 413);
  let limited = 0;
  for (let i = 0; i < 5; i++) limited += (await raw("/v1/categories", { headers: { "cf-connecting-ip": LIMITED_IP } })).status === 429 ? 1 : 0;
  if (limited === 0) throw new Error("no 429 for the limited address");

  // More of the admin surface, through the typed client.
  const pid = `p-e2e-${Date.now().toString(36)}`;
  const psku = `SKU-E2E-${Date.now().toString(36)}`;
  const put = await adminApi.PUT("/admin/products/{id}", {
    params: { path: { id: pid } },
    body: { slug: pid, title: "Contract lamp", brand: "E2E", category_id: "cat-electronics", variants: [{ sku: psku, options: {}, prices: { USD: 1000 } }] },
  });
  expectStatus("put product", put.response.status, 201);
  await adminApi.PATCH("/admin/products/{id}", { params: { path: { id: pid }, header: { "if-match": '"99"' } }, body: { title: "Stale" } });
  await adminApi.PUT("/admin/stock/{sku}", { params: { path: { sku: psku } }, body: { location: "loc-us-east", on_hand: 5 } });
  await adminApi.GET("/admin/stock/{sku}/ledger", { params: { path: { sku: psku }, query: {} } });
  await adminApi.GET("/admin/imports/{id}", { params: { path: { id: "no-such-import" } } });
  await adminApi.GET("/admin/webhooks/{id}", { params: { path: { id: "wh_missing" } } });
  await adminApi.GET("/admin/products/{id}/recommendations", { params: { path: { id: "p-000001" } } });
  await adminApi.POST("/admin/events/dead-letters/replay", { body: { ids: ["none"] } });
  const released = await shop.POST("/v1/reservations", { params: { header: { "idempotency-key": `e2e-rel-${Date.now()}` } }, body: { items: [{ sku, quantity: 1 }] } });
  if (released.data) {
    await shop.POST("/v1/reservations/{id}/extend", { params: { path: { id: released.data.id } }, body: { ttl_seconds: 600 } });
    await shop.DELETE("/v1/reservations/{id}", { params: { path: { id: released.data.id } } });
  }
  await adminApi.DELETE("/admin/products/{id}", { params: { path: { id: pid } } });
  await raw("/embed.js");

  // The checker itself must be able to fail: an answer the document does not list is reported.
  const before = checker.violations.length;
  await checker.check("GET", `${ORIGIN}/health`, new Response("short and stout", { status: 418, headers: { "content-type": "text/plain" } }));
  if (checker.violations.length !== before + 1) throw new Error("the contract checker did not flag an undocumented 418");
  checker.violations.pop();

  const ops = Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`));
  const untested = ops.filter((o) => !checker.seen.has(o));
  log(`${checker.seen.size} of ${ops.length} operations exercised; not replayed: ${untested.join(", ") || "none"}`);
  if (checker.violations.length) {
    for (const v of checker.violations) console.error(`  undocumented: ${v}`);
    throw new Error(`${checker.violations.length} answer(s) not in the contract`);
  }
  log("every answer matched the contract");
}

// ----------------------------------------------------------------------------------------------- docs

async function docsInBrowser(): Promise<void> {
  if (!existsSync(CHROMIUM)) {
    try {
      execFileSync("bash", [path.join(ROOT, "scripts/install-chromium.sh")], { stdio: "inherit" });
    } catch {
      /* reported below */
    }
  }
  if (!existsSync(CHROMIUM)) {
    console.log("SKIP docs browser test: chromium is not installed and could not be installed here.");
    return;
  }
  const { chromium } = await import("playwright-core");
  mkdirSync(RESULTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const external: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(ORIGIN) && !r.url().startsWith("data:")) external.push(r.url());
    });
    page.on("pageerror", (err) => log(`page error: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error") log(`console error: ${msg.text()}`);
    });
    await page.goto(`${ORIGIN}/docs`);
    await page.locator(".opblock").first().waitFor({ timeout: 20_000 });

    // An anonymous request: GET /v1/products/{id} with "Try it out".
    const op = page.locator('.opblock-get:has(.opblock-summary-path[data-path="/v1/products/{id}"])').first();
    await op.locator(".opblock-summary").click();
    await op.locator(".try-out__btn").click();
    await op.locator('tr[data-param-name="id"] input').fill("p-000001");
    await op.locator(".execute").click();
    const status = op.locator(".live-responses-table .response .response-col_status").first();
    await status.waitFor({ timeout: 15_000 });
    const code = (await status.textContent())?.trim();
    const body = (await op.locator(".live-responses-table .microlight").first().textContent()) ?? "";
    if (code !== "200" || !body.includes('"p-000001"')) throw new Error(`Try it out answered ${code}: ${body.slice(0, 200)}`);
    log("Swagger UI sent GET /v1/products/p-000001 from the page: 200");

    // An authorised one: the admin bearer scheme, then GET /admin/webhooks.
    await page.locator(".auth-wrapper .authorize").first().click();
    const adminForm = page.locator(".auth-container:has-text('adminToken')").first();
    await adminForm.locator("input").first().fill(ADMIN);
    await adminForm.locator("button.authorize").click();
    await page.locator(".btn-done, button.close-modal").first().click();
    const adminOp = page.locator('.opblock-get:has(.opblock-summary-path[data-path="/admin/webhooks"])').first();
    await adminOp.locator(".opblock-summary").click();
    await adminOp.locator(".try-out__btn").click();
    await adminOp.locator(".execute").click();
    const adminStatus = adminOp.locator(".live-responses-table .response .response-col_status").first();
    await adminStatus.waitFor({ timeout: 15_000 });
    const adminCode = (await adminStatus.textContent())?.trim();
    if (adminCode !== "200") throw new Error(`GET /admin/webhooks with the admin scheme answered ${adminCode}`);
    log("Swagger UI sent GET /admin/webhooks with the adminToken scheme: 200");
    await page.screenshot({ path: path.join(RESULTS, "docs-e2e.png"), fullPage: false });
    if (external.length) throw new Error(`the reference page reached outside this origin: ${external.slice(0, 3).join(", ")}`);
  } finally {
    await browser.close();
  }
}

try {
  await startWorker();
  await contract();
  await docsInBrowser();
  log("PASS");
} catch (err) {
  console.error(`api-e2e: FAIL ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  stopDev();
}
