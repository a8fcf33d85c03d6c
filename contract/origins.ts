import { fail, ok, type Result } from "../datapath/result.ts";

// Web origins as a segment's `allowedOrigins` setting holds them: the Durable Object validates the
// setting (durable/config.ts), the Worker enforces it at connect (worker/origin.ts).

/** Most origins a segment's `allowedOrigins` may list. */
export const MAX_ALLOWED_ORIGINS = 32;
/** Longest origin accepted in a list (scheme, host and port). */
const MAX_ORIGIN_LENGTH = 256;

/**
 * The canonical form of a web origin (`https://example.com`, `http://localhost:8080`): lower-case scheme
 * and host, default port dropped. Fails for anything that is not an http(s) origin with nothing after the port.
 */
export function normalizeOrigin(text: string): Result<string, "invalid-origin"> {
  const invalid = fail("invalid-origin", `${JSON.stringify(text)} is not a web origin like "https://example.com" or "http://localhost:8080"`);
  if (text.length > MAX_ORIGIN_LENGTH || /[^\x21-\x7e]/.test(text)) return invalid;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return invalid;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return invalid;
  const bare = url.username === "" && url.password === "" && url.pathname === "/" && url.search === "" && url.hash === "";
  // The URL parser turns "https://a.example/" and "https://a.example" into the same thing: only the latter is an origin.
  if (!bare || text.endsWith("/")) return invalid;
  return ok(url.origin);
}

/** Checks a segment's `allowedOrigins` setting: null (any origin) or a list of at most MAX_ALLOWED_ORIGINS origins. */
export function parseAllowedOrigins(value: unknown): Result<string[] | null, "invalid-origin"> {
  if (value === null) return ok(null);
  if (!Array.isArray(value) || value.length > MAX_ALLOWED_ORIGINS) {
    return fail("invalid-origin", `a list of at most ${MAX_ALLOWED_ORIGINS} origins like ["https://lab.example"], or null`);
  }
  const origins: string[] = [];
  for (const item of value) {
    const origin = normalizeOrigin(typeof item === "string" ? item : JSON.stringify(item) ?? "");
    if (!origin.ok) return origin;
    if (!origins.includes(origin.value)) origins.push(origin.value);
  }
  return ok(origins);
}

