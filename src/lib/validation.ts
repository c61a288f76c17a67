import { OpenAPIHono } from "@hono/zod-openapi";
import type { z } from "zod";
import type { AppEnv } from "../env";
import { ApiError } from "./errors";

export type FieldError = { location: string; path: string; message: string };

export function fieldErrors(target: string, error: z.ZodError): FieldError[] {
  return error.issues.map((issue) => ({
    location: target,
    path: issue.path.map(String).join("."),
    message: issue.message,
  }));
}

/** The one validation hook: any invalid query, params, headers or body becomes a 400 problem listing each field. */
export const validationHook = (
  result: { target: string; success: true; data: unknown } | { target: string; success: false; error: z.ZodError },
): void => {
  if (!result.success) {
    const errors = fieldErrors(result.target, result.error);
    const first = errors[0];
    throw ApiError.badRequest(
      first ? `Invalid ${first.location}${first.path ? ` field '${first.path}'` : ""}: ${first.message}` : "Invalid request.",
      { errors },
    );
  }
};

/** Every resource's sub-app is made here, so all share the hook and the environment type. */
export function createApp() {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}
