/** An HTTP error as a value: every error the relay answers has this JSON body, `{ error, message }`. */
export interface HttpError {
  readonly status: number;
  readonly code: string;
  readonly message: string;
  /** Extra response headers (`Allow`, `WWW-Authenticate`, `Upgrade`). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** A result whose failure already knows its HTTP status. */
export type HttpResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: HttpError };

/** A failed HttpResult. */
export function httpFail(status: number, code: string, message: string, headers?: Record<string, string>): { readonly ok: false; readonly error: HttpError } {
  return { ok: false, error: httpError(status, code, message, headers) };
}

/** Builds an HttpError. */
export function httpError(status: number, code: string, message: string, headers?: Record<string, string>): HttpError {
  return headers === undefined ? { status, code, message } : { status, code, message, headers };
}

/** The JSON response for an error. */
export function errorResponse(error: HttpError): Response {
  return Response.json({ error: error.code, message: error.message }, { status: error.status, headers: error.headers });
}

/** A JSON success response. */
export function jsonResponse(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}
