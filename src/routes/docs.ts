import type { OpenAPIHono } from "@hono/zod-openapi";
import { html, raw } from "hono/html";
import type { AppEnv } from "../env";
import { createApp } from "../lib/validation";

type OpenApiDoc = ReturnType<OpenAPIHono<AppEnv>["getOpenAPI31Document"]>;
type Operation = { summary?: string; description?: string; tags?: string[]; parameters?: unknown[]; requestBody?: unknown; responses?: Record<string, { description?: string }>; security?: unknown[] };

const METHODS = ["get", "post", "put", "patch", "delete"] as const;

export const OPENAPI_INFO = {
  openapi: "3.1.0",
  info: {
    title: "edgeshelf API",
    version: "0.1.0",
    description:
      "Edge-first catalog and stock-reservation API. Errors are RFC 9457 `application/problem+json` with a `request_id`.",
  },
} as const;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]!);
}

/** A self-contained, offline reference page rendered from the generated OpenAPI document. */
function renderReference(doc: OpenApiDoc): string {
  const byTag = new Map<string, string[]>();
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = (item as Record<string, Operation | undefined>)[method];
      if (!op) continue;
      const tag = op.tags?.[0] ?? "Other";
      const responses = Object.entries(op.responses ?? {})
        .map(([code, r]) => `<li><code>${code}</code> ${escapeHtml(r.description ?? "")}</li>`)
        .join("");
      const params = (op.parameters ?? [])
        .map((p) => p as { name: string; in: string; required?: boolean; description?: string })
        .map((p) => `<li><code>${escapeHtml(p.name)}</code> <em>${p.in}${p.required ? ", required" : ""}</em> ${escapeHtml(p.description ?? "")}</li>`)
        .join("");
      const body = op.requestBody
        ? `<details><summary>Request body schema</summary><pre>${escapeHtml(JSON.stringify(op.requestBody, null, 2))}</pre></details>`
        : "";
      const entry = `<section class="op"><h3><span class="m ${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h3>
        <p>${escapeHtml(op.summary ?? "")}</p>${op.description ? `<p>${escapeHtml(op.description)}</p>` : ""}
        ${params ? `<h4>Parameters</h4><ul>${params}</ul>` : ""}${body}<h4>Responses</h4><ul>${responses}</ul></section>`;
      byTag.set(tag, [...(byTag.get(tag) ?? []), entry]);
    }
  }
  const sections = [...byTag.entries()]
    .map(([tag, ops]) => `<h2 id="${escapeHtml(tag)}">${escapeHtml(tag)}</h2>${ops.join("")}`)
    .join("");
  const toc = [...byTag.keys()].map((t) => `<a href="#${escapeHtml(t)}">${escapeHtml(t)}</a>`).join(" · ");
  return `${sections ? `<nav>${toc}</nav>${sections}` : "<p>No operations.</p>"}`;
}

export function docsApp(root: OpenAPIHono<AppEnv>) {
  const app = createApp();
  let cached: OpenApiDoc | undefined;
  const document = () => (cached ??= root.getOpenAPI31Document(OPENAPI_INFO));
  app.get("/openapi.json", (c) => {
    c.header("cache-control", "public, max-age=60");
    return c.json(document());
  });
  app.get("/docs", (c) => {
    const doc = document();
    return c.html(html`<!doctype html>
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <title>${doc.info.title} reference</title>
          <style>
            body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1b1b1f; }
            nav { position: sticky; top: 0; background: #fff; padding: .5rem 0; border-bottom: 1px solid #ddd; }
            .op { border: 1px solid #e3e3e8; border-radius: 8px; padding: .5rem 1rem; margin: 1rem 0; }
            .m { display: inline-block; min-width: 4.5rem; text-align: center; border-radius: 4px; color: #fff; font-size: .8rem; padding: 2px 6px; }
            .get { background: #1d7a46; } .post { background: #1f5fbf; } .put { background: #a35f00; } .patch { background: #6b3fa0; } .delete { background: #b3261e; }
            pre { background: #f6f6f8; padding: .5rem; overflow: auto; font-size: .8rem; }
          </style>
        </head>
        <body>
          <h1>${doc.info.title} <small>${doc.info.version}</small></h1>
          <p>${doc.info.description ?? ""}</p>
          <p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1, generated from the zod schemas).</p>
          ${raw(renderReference(doc))}
        </body>
      </html>`);
  });
  return app;
}
