import { fail, ok, type Result } from "../datapath/result.ts";
import { httpError, type HttpError } from "./http.ts";

// Request bodies of the management API. Configuration and token requests are small and
// flat, so anything large or deep is refused here, in the Worker, before JSON.parse and
// before the value is cloned into an RPC call to the segment (a deeply nested value
// overflows the stack of the structured clone: a 500 instead of a useful answer).

/** Largest request body the management API reads; configuration and token requests are tiny. */
export const MAX_BODY_BYTES = 64 * 1024;
/** Deepest nesting of arrays and objects accepted; the deepest valid body (a config with a list) needs 2. */
export const MAX_JSON_DEPTH = 32;

export type BodyErrorCode = "invalid-json" | "json-too-deep" | "body-too-large";

/**
 * Reads a request body as JSON. An empty body reads as `{}`, so `PUT` with no body creates a segment with defaults.
 * Fails with `body-too-large` past MAX_BODY_BYTES (declared or streamed: reading stops there),
 * `json-too-deep` past MAX_JSON_DEPTH levels of nesting, and `invalid-json` for malformed JSON or bytes that are not UTF-8.
 */
export async function readJsonBody(request: Request): Promise<Result<unknown, BodyErrorCode>> {
  const declared = Number(request.headers.get("Content-Length") ?? "0");
  if (declared > MAX_BODY_BYTES) return tooLarge();
  const bytes = await readBounded(request, MAX_BODY_BYTES);
  if (bytes === null) return tooLarge();
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return fail("invalid-json", "the request body is not valid UTF-8");
  }
  if (text.trim() === "") return ok({});
  const depth = nestingDepth(text);
  if (depth > MAX_JSON_DEPTH) {
    return fail("json-too-deep", `the request body nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep`);
  }
  try {
    return ok(JSON.parse(text) as unknown);
  } catch (error) {
    return fail("invalid-json", `the request body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** HTTP status for a body failure: 413 for size, 400 otherwise. */
export function bodyError(failure: { code: BodyErrorCode; message: string }): HttpError {
  return httpError(failure.code === "body-too-large" ? 413 : 400, failure.code, failure.message);
}

function tooLarge(): Result<never, "body-too-large"> {
  return fail("body-too-large", `the request body is larger than ${MAX_BODY_BYTES} bytes`);
}

/** The body's bytes, or null as soon as more than `limit` arrived (the rest is never read). */
async function readBounded(request: Request, limit: number): Promise<Uint8Array | null> {
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

/**
 * The deepest nesting of `[` and `{` in JSON text, ignoring brackets inside strings.
 * Linear and iterative, so it is safe on any input; malformed text is left for JSON.parse to refuse.
 */
export function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c) i++; // backslash: skip the escaped character
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) {
      inString = true;
    } else if (char === 0x5b || char === 0x7b) {
      depth++;
      if (depth > deepest) deepest = depth;
    } else if ((char === 0x5d || char === 0x7d) && depth > 0) {
      depth--; // stray closers do not lower the count below zero, so they cannot hide nesting that follows
    }
  }
  return deepest;
}
