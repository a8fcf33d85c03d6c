// The error values are the Worker <-> Durable Object contract's; the Worker's modules keep importing them from here.
export { errorResponse, httpError, httpFail, type HttpError, type HttpResult } from "../contract/http-error.ts";

/** A JSON success response. */
export function jsonResponse(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}
