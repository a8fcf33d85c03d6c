import { httpError, type HttpError } from "../contract/http-error.ts";
import { fail, ok, type Result } from "../datapath/result.ts";

// The error values are the Worker <-> Durable Object contract's; the Worker's modules keep importing them from here.
export { errorResponse, httpError, httpFail, type HttpError, type HttpResult } from "../contract/http-error.ts";

/** A JSON success response. */
export function jsonResponse(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

/** Largest request body the management API reads; configuration and token requests are tiny. */
const MAX_BODY_BYTES = 64 * 1024;

/**
 * Reads a request body as JSON. An empty body reads as `{}`, so `PUT` with no body creates a segment with defaults.
 * Fails with 400 `invalid-json` for malformed JSON and 413 `body-too-large` past 64 KiB.
 */
export async function readJsonBody(request: Request): Promise<Result<unknown, "invalid-json" | "body-too-large">> {
  const declared = Number(request.headers.get("Content-Length") ?? "0");
  if (declared > MAX_BODY_BYTES) return fail("body-too-large", `the request body is larger than ${MAX_BODY_BYTES} bytes`);
  const text = await request.text();
  if (text.length > MAX_BODY_BYTES) return fail("body-too-large", `the request body is larger than ${MAX_BODY_BYTES} bytes`);
  if (text.trim() === "") return ok({});
  try {
    return ok(JSON.parse(text) as unknown);
  } catch (error) {
    return fail("invalid-json", `the request body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Status for failures from body parsing. */
export function bodyError(failure: { code: "invalid-json" | "body-too-large"; message: string }): HttpError {
  return httpError(failure.code === "invalid-json" ? 400 : 413, failure.code, failure.message);
}
