import { normalizeOrigin } from "../contract/origins.ts";
import { isDevMode, type Env } from "./env.ts";
import { httpFail, type HttpResult } from "./http.ts";

export { MAX_ALLOWED_ORIGINS, normalizeOrigin, parseAllowedOrigins } from "../contract/origins.ts";

// Browser origins. A browser names the page behind every WebSocket handshake and
// cross-site request in the `Origin` header; programs (the CLI, QEMU, native clients)
// send none. Two rules use it:
//  - open dev mode: only pages on this machine (localhost, 127.0.0.0/8, [::1], any port)
//    or origins in EDGELAN_DEV_ALLOWED_ORIGINS may use the relay, so a web page a
//    developer happens to visit cannot join, sniff or reconfigure their open relay;
//  - any mode: a segment with `allowedOrigins` admits browser joins only from those origins.

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
