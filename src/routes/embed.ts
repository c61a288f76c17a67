import { createRoute } from "@hono/zod-openapi";
import { conditionalResponse } from "../feeds/conditional";
import { createApp } from "../lib/validation";

/**
 * The widget script and its demo page live in public/ and are fetched through the ASSETS binding:
 * `run_worker_first` sends every path to the API, so assets are served explicitly, with our headers.
 */
const scriptRoute = createRoute({
  method: "get",
  path: "/embed.js",
  tags: ["Embed widget"],
  summary: "The dependency-free embed script (shadow-DOM product card and category grid)",
  responses: { 200: { description: "JavaScript.", content: { "application/javascript": { schema: { type: "string" } } } } },
});

const demoRoute = createRoute({
  method: "get",
  path: "/embed/demo",
  tags: ["Embed widget"],
  summary: "A demo host page with a product card and a category grid (?product=, ?category=, ?key=, ?refresh=)",
  responses: { 200: { description: "HTML.", content: { "text/html": { schema: { type: "string" } } } } },
});

async function asset(env: Env, requestUrl: string, path: string): Promise<Response> {
  const res = await env.ASSETS.fetch(new Request(new URL(path, requestUrl)));
  if (!res.ok) throw new Error(`asset ${path} answered ${res.status}`);
  return res;
}

export const embedApp = createApp()
  .openapi(scriptRoute, async (c) => {
    const file = await asset(c.env, c.req.url, "/embed.js");
    const source = (await file.text()).replace("__EDGESHELF_SITE__", c.env.SITE_BASE_URL.replace(/["\\]/g, ""));
    const res = await conditionalResponse(c.req.raw, source, {
      contentType: "application/javascript; charset=utf-8",
      // Short max-age so fixes reach publishers' pages quickly; SWR keeps page loads from waiting on us.
      cacheControl: "public, max-age=300, stale-while-revalidate=86400",
    });
    res.headers.set("access-control-allow-origin", "*");
    res.headers.set("x-content-type-options", "nosniff");
    return res;
  })
  .openapi(demoRoute, async (c) => {
    const res = await asset(c.env, c.req.url, "/embed/demo.html");
    return new Response(res.body, {
      status: 200,
      headers: { "content-type": "text/html; charset=utf-8", "cache-control": "public, max-age=60", "x-content-type-options": "nosniff" },
    });
  });
