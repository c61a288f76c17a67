/**
 * The contract as a whole: checks that hold for every operation, so routes added later are held to them too.
 * (Answers replayed against a running Worker are checked by test/contract/contract.e2e.ts.)
 */
import { describe, expect, it } from "vitest";
import clientDocument from "../client/openapi.json";
import { routeClass } from "../src/lib/rate-limit";
import { call } from "./helpers/http";

type Json = Record<string, unknown>;
type Op = { operationId?: string; security?: Record<string, string[]>[]; parameters?: Json[]; requestBody?: Json; responses: Record<string, Json> };
type Doc = {
  servers?: { url: string }[];
  paths: Record<string, Record<string, Op>>;
  components: { securitySchemes: Record<string, Json>; responses: Record<string, Json>; schemas: Record<string, Json> };
};

const METHODS = ["get", "put", "post", "patch", "delete"];

async function served(): Promise<Doc> {
  const res = await call("/openapi.json");
  expect(res.status).toBe(200);
  return res.json<Doc>();
}

function operations(doc: Doc): { path: string; method: string; op: Op }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) => METHODS.filter((m) => item[m]).map((method) => ({ path, method, op: item[method]! })));
}

/** A response entry with its `$ref` (to components.responses) resolved. */
function resolve(doc: Doc, res: Json): Json {
  const ref = res.$ref as string | undefined;
  return ref ? doc.components.responses[ref.split("/").pop()!]! : res;
}

describe("OpenAPI contract", () => {
  it("every operation declares its security, using schemes the document defines; admin, storefront and affiliate paths need theirs", async () => {
    const doc = await served();
    const ops = operations(doc);
    expect(ops.length).toBeGreaterThan(40);
    for (const { path, method, op } of ops) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(Array.isArray(op.security), where).toBe(true);
      for (const req of op.security!) for (const name of Object.keys(req)) expect(doc.components.securitySchemes[name], `${where}: ${name}`).toBeDefined();
      const names = op.security!.flatMap((r) => Object.keys(r));
      if (path.startsWith("/admin/")) expect(names, where).toEqual(["adminToken"]);
      if (path.startsWith("/v1/reservations")) expect(names, where).toEqual(["storefrontKey"]);
      if (path.startsWith("/v1/feeds/")) expect(names, where).toEqual(["affiliateKey", "affiliateBasic", "affiliateKeyQuery"]);
      expect(op.operationId, where).toMatch(/^[a-z][A-Za-z0-9]+$/);
    }
    expect(new Set(ops.map((o) => o.op.operationId)).size).toBe(ops.length);
    expect(doc.components.securitySchemes.affiliateKeyQuery).toMatchObject({ type: "apiKey", in: "query", name: "key" });
    expect(doc.servers?.length).toBeGreaterThan(0);
  });

  it("every operation documents the answers the middleware can give, each error as a problem with an example where shared", async () => {
    const doc = await served();
    for (const { path, method, op } of operations(doc)) {
      const where = `${method.toUpperCase()} ${path}`;
      const codes = Object.keys(op.responses);
      for (const code of ["414", "431", "500", "503"]) expect(codes, `${where} ${code}`).toContain(code);
      if ((op.parameters?.length ?? 0) > 0 || op.requestBody) expect(codes, `${where} 400`).toContain("400");
      if (op.requestBody) for (const code of ["413", "415"]) expect(codes, `${where} ${code}`).toContain(code);
      if (op.security!.length > 0) expect(codes, `${where} 401`).toContain("401");
      if (routeClass(method.toUpperCase(), path.replace(/\{[^}]+\}/g, "x"), new URLSearchParams())) expect(codes, `${where} 429`).toContain("429");
      expect(codes.some((c) => c.startsWith("2") || c.startsWith("3")), `${where} success`).toBe(true);
      for (const [code, entry] of Object.entries(op.responses)) {
        if (Number(code) < 400) continue;
        const res = resolve(doc, entry);
        const content = res.content as Record<string, { schema: Json; example?: Json }> | undefined;
        expect(Object.keys(content ?? {}), `${where} ${code}`).toEqual(["application/problem+json"]);
      }
    }
    for (const shared of Object.values(doc.components.responses)) {
      const example = (shared.content as Record<string, { example: Json }>)["application/problem+json"]!.example;
      expect(example).toMatchObject({ type: expect.stringMatching(/^https:/), title: expect.any(String), status: expect.any(Number), request_id: expect.any(String) });
    }
  });

  it("the typed client's copy of the document (client/openapi.json) is the one this Worker serves: regenerate with npm run client:generate", async () => {
    expect(await served()).toEqual(clientDocument);
  });

  it("/docs serves Swagger UI and its files from this origin (works offline)", async () => {
    const page = await call("/docs");
    expect(page.headers.get("content-type")).toContain("text/html");
    const html = await page.text();
    expect(html).toContain('src="/docs/vendor/swagger-ui-bundle.js"');
    expect(html).not.toMatch(/https?:\/\/(?!localhost)/);
    const bundle = await call("/docs/vendor/swagger-ui-bundle.js");
    expect(bundle.status).toBe(200);
    expect((await bundle.text()).length).toBeGreaterThan(100_000);
    const init = await (await call("/docs/init.js")).text();
    expect(init).toContain('url: "/openapi.json"');
  });
});
