import { OpenAPIHono } from "@hono/zod-openapi";
import type { z } from "zod";
import type { AppEnv } from "../env";
import { invalidInput } from "./errors";

export { fieldErrors, type FieldError } from "./errors";

/** The one validation hook: any invalid query, params, headers or body becomes a 400 problem listing each field. */
export const validationHook = (
  result: { target: string; success: true; data: unknown } | { target: string; success: false; error: z.ZodError },
): void => {
  if (!result.success) throw invalidInput(result.target, result.error);
};

/** Every resource's sub-app is made here, so all share the hook and the environment type. */
export function createApp() {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}
