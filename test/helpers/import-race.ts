import { env } from "cloudflare:test";
import { expect, vi } from "vitest";
import { admin, call } from "./http";

/**
 * Uploads import parts at once, each body held open (every line sent, the stream not closed) until every upload
 * has claimed its part, then all closed together: each part's only chunk is then checked and staged at the same
 * moment, so all pass the checks before any writes (the race), rather than one finishing before the next starts.
 */
export async function racedParts(uploads: { id: string; part: number; body: string }[]): Promise<Response[]> {
  const closers: (() => void)[] = [];
  const responses = uploads.map(({ id, part, body }) => {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(body));
        closers.push(() => controller.close());
      },
    });
    return call(`/admin/imports/${id}/parts/${part}`, { method: "PUT", headers: admin({ "content-type": "application/x-ndjson" }), body: stream });
  });
  await vi.waitFor(async () => {
    const claimed = await Promise.all(uploads.map(({ id, part }) => env.DB.prepare("SELECT 1 AS ok FROM import_parts WHERE import_id = ? AND part = ?").bind(id, part).first()));
    expect(claimed.every(Boolean)).toBe(true);
  });
  for (const close of closers) close();
  return Promise.all(responses);
}
