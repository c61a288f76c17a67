import { describe, expect, it } from "vitest";
import { call, expectProblem } from "./helpers/http";

describe("foundation", () => {
  it("GET /health answers ok with the deployed version", async () => {
    const res = await call("/health");
    expect(res.status).toBe(200);
    const body = await res.json<{ status: string; version: string }>();
    expect(body.status).toBe("ok");
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("echoes a well-formed x-request-id and makes one otherwise", async () => {
    const echoed = await call("/health", { headers: { "x-request-id": "trace-123" } });
    expect(echoed.headers.get("x-request-id")).toBe("trace-123");
    const made = await call("/health", { headers: { "x-request-id": "bad id with spaces" } });
    expect(made.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("unknown routes get a 404 problem carrying the request id", async () => {
    const res = await call("/nope", { headers: { "x-request-id": "rid-404" } });
    const problem = await expectProblem(res, 404);
    expect(problem.request_id).toBe("rid-404");
  });

  it("a wrong method on a known path gets 405 with Allow", async () => {
    const res = await call("/health", { method: "DELETE" });
    await expectProblem(res, 405);
    expect(res.headers.get("allow")).toContain("GET");
  });

  it("serves a generated OpenAPI 3.1 document and a readable reference", async () => {
    const doc = await (await call("/openapi.json")).json<{ openapi: string; paths: Record<string, unknown> }>();
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toContain("/health");
    const page = await call("/docs");
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(await page.text()).toContain("swagger-ui");
  });
});
