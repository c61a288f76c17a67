/**
 * Typed client for the edgeshelf API: openapi-fetch over the types openapi-typescript generates from the API's
 * own /openapi.json (src/schema.d.ts). Paths, parameters, bodies and answers are checked by the compiler.
 */
import createClient, { type ClientOptions } from "openapi-fetch";
import type { paths } from "./schema";

export type { components, operations, paths } from "./schema";

export type EdgeshelfClientOptions = ClientOptions & {
  /** The API origin, e.g. http://localhost:8787. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>`: a storefront key, an affiliate key or the admin token. */
  token?: string;
};

export function createEdgeshelfClient({ token, headers, ...options }: EdgeshelfClientOptions) {
  return createClient<paths>({
    ...options,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(headers as Record<string, string> | undefined) },
  });
}

export type EdgeshelfClient = ReturnType<typeof createEdgeshelfClient>;
