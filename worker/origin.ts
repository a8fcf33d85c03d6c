import { fail, ok, type Result } from "../datapath/result.ts";
import { isDevMode, type Env } from "./env.ts";
import { httpFail, type HttpResult } from "./http.ts";

// Browser origins. A browser names the page behind every WebSocket handshake and
// cross-site request in the `Origin` header; programs (the CLI, QEMU, native clients)
// send none. Two rules use it:
//  - open dev mode: only pages on this machine (localhost, 127.0.0.0/8, [::1], any port)
//    or origins in EDGELAN_DEV_ALLOWED_ORIGINS may use the relay, so a web page a
//    developer happens to visit cannot join, sniff or reconfigure their open relay;
//  - any mode: a segment with `allowedOrigins` admits browser joins only from those origins.

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

/** Whether a canonical origin is a page on this machine: localhost (and *.localhost), 127.0.0.0/8 or [::1], any port. */
export function isLoopbackOrigin(origin: string): boolean {
  const host = new URL(origin).hostname;
  return host === "localhost" || host.endsWith(".localhost") || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host);
}

/** The origins EDGELAN_DEV_ALLOWED_ORIGINS adds in dev mode (comma-separated); malformed entries are ignored. */
export function devAllowedOrigins(env: Env): string[] {
  const origins: string[] = [];
  for (const entry of (env.EDGELAN_DEV_ALLOWED_ORIGINS ?? "").split(",")) {
    const origin = normalizeOrigin(entry.trim());
    if (origin.ok) origins.push(origin.value);
  }
  return origins;
}

/**
 * In open dev mode, refuses a request from a browser page that is not on this machine (403 `origin-not-allowed`).
 * Requests without `Origin` (programs) pass, and so does everything outside dev mode.
 */
export function checkDevOrigin(request: Request, env: Env): HttpResult<void> {
  const origin = request.headers.get("Origin");
  if (!isDevMode(env) || origin === null) return { ok: true, value: undefined };
  const canonical = normalizeOrigin(origin);
  if (canonical.ok && (isLoopbackOrigin(canonical.value) || devAllowedOrigins(env).includes(canonical.value))) {
    return { ok: true, value: undefined };
  }
  return httpFail(
    403,
    "origin-not-allowed",
    `this relay runs in open dev mode and only serves pages on this machine (localhost, 127.0.0.1, [::1]); ` +
      `Origin ${JSON.stringify(origin)} is not one: add it to EDGELAN_DEV_ALLOWED_ORIGINS, or set EDGELAN_ADMIN_TOKEN to leave dev mode`,
  );
}

/**
 * Refuses a browser join to a segment whose `allowedOrigins` does not list the page's origin (403 `origin-not-allowed`).
 * Joins without `Origin` and segments without the setting pass; the setting is read from the segment only for browser joins.
 */
export async function checkSegmentOrigin(request: Request, env: Env, segment: string): Promise<HttpResult<void>> {
  const origin = request.headers.get("Origin");
  if (origin === null) return { ok: true, value: undefined };
  const allowed = await env.SEGMENTS.getByName(segment).allowedOrigins();
  if (allowed === null) return { ok: true, value: undefined };
  const canonical = normalizeOrigin(origin);
  if (canonical.ok && allowed.includes(canonical.value)) return { ok: true, value: undefined };
  return httpFail(403, "origin-not-allowed", `segment ${JSON.stringify(segment)} admits browser joins only from its allowedOrigins; Origin ${JSON.stringify(origin)} is not listed`);
}
