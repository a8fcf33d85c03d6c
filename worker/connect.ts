import { isPortKind, type PortKind } from "../datapath/port-kind.ts";
import { bearerToken, checkJoinScope, joinTokenSecret, tokenPolicyOf, verifyJoinToken } from "./auth.ts";
import { isDevMode, type Env } from "./env.ts";
import { errorResponse, httpError, httpFail, type HttpResult } from "./http.ts";
import { checkJoinPolicy } from "./join-policy.ts";
import { writePortRequestHeaders, type PortAuth, type TokenPolicy } from "../contract/port-request.ts";
import type { RouteContext } from "./router.ts";
import { cellObjectName, CELL_HINT_HEADER, PLACE_HEADER, REGION_HEADER } from "../contract/cell-api.ts";
import { isRegion, regionOf, type ClientLocation, type Region } from "../datapath/cells/region.ts";

/**
 * `GET /v1/segments/:name/connect`: checks the upgrade, the requested port kind and any join token,
 * then forwards the upgrade to the segment's Durable Object with x-edgelan-* headers stating what was checked.
 * Whether a token is required at all (open joins) is the segment's decision.
 */
export async function connectPort({ request, env, url, segment }: RouteContext): Promise<Response> {
  if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
    return errorResponse(
      httpError(426, "upgrade-required", "this endpoint is a WebSocket tunnel: connect with `Upgrade: websocket`", { Upgrade: "websocket" }),
    );
  }
  const kind = requestedKind(url);
  if (!kind.ok) return errorResponse(kind.error);
  const admission = await admit(request, url, env, segment, kind.value);
  if (!admission.ok) return errorResponse(admission.error);
  const policy = await checkJoinPolicy(request, env, segment, kind.value, admission.value.auth);
  if (!policy.ok) return errorResponse(policy.error);

  const headers = new Headers(request.headers);
  headers.delete("Authorization");
  writePortRequestHeaders(headers, {
    segment,
    kind: kind.value,
    auth: admission.value.auth,
    macs: admission.value.macs,
    tokenExp: admission.value.tokenExp,
    remote: request.headers.get("CF-Connecting-IP") ?? "local",
    devMode: isDevMode(env),
    token: admission.value.token,
  });
  // The segment never sees the token itself: it gets the verified claims in headers.
  const forwardUrl = new URL(url);
  forwardUrl.searchParams.delete("token");
  // ?cell= is a placement hint for a segment of several cells (docs/cells.md §3.4); the home decides.
  headers.delete(CELL_HINT_HEADER);
  const hint = url.searchParams.get("cell");
  if (hint !== null) headers.set(CELL_HINT_HEADER, hint);
  // The client's region from what the edge knows of it (request.cf), for region placement (§3.4).
  const region = regionOf(request.cf as ClientLocation | undefined);
  if (region !== null) headers.set(REGION_HEADER, region);
  const home = await env.SEGMENTS.getByName(segment).fetch(new Request(forwardUrl, { method: "GET", headers, redirect: "manual" }));
  return home.status === 307 ? followPlacement(home, env, segment, forwardUrl, headers) : home;
}

/** The home placed the port on another cell (an internal 307 the client never sees): the same upgrade goes there. */
async function followPlacement(home: Response, env: Env, segment: string, url: URL, headers: Headers): Promise<Response> {
  const placed = parsePlacement(home.headers.get(PLACE_HEADER));
  if (placed === null) return errorResponse(httpError(502, "bad-placement", "the segment answered a connect with a placement the Worker cannot read"));
  // The home made the cell already (with its hint); the hint is passed again in case this get is the first.
  const name = cellObjectName(segment, placed.cell);
  const stub = placed.locationHint === null ? env.SEGMENTS.getByName(name) : env.SEGMENTS.getByName(name, { locationHint: placed.locationHint });
  return stub.fetch(new Request(url, { method: "GET", headers }));
}

/** The cell index (i ≥ 1) and location hint of an `x-edgelan-place` header (`{"cell": i, "locationHint"?: h}`), or null. */
function parsePlacement(header: string | null): { cell: number; locationHint: Region | null } | null {
  if (header === null) return null;
  try {
    const { cell, locationHint } = JSON.parse(header) as { cell?: unknown; locationHint?: unknown };
    if (typeof cell !== "number" || !Number.isInteger(cell) || cell < 1) return null;
    return { cell, locationHint: isRegion(locationHint) ? locationHint : null };
  } catch {
    return null;
  }
}

/** The `kind` query parameter: member (default), bridge or monitor. */
function requestedKind(url: URL): HttpResult<PortKind> {
  const kind = url.searchParams.get("kind");
  if (kind === null) return { ok: true, value: "member" };
  if (!isPortKind(kind)) return httpFail(400, "invalid-kind", `kind must be member, bridge or monitor; got ${JSON.stringify(kind)}`);
  return { ok: true, value: kind };
}

interface Admission {
  auth: PortAuth;
  macs: string[];
  tokenExp: number | null;
  /** The token's lifecycle and policy claims, which the segment enforces (epoch, revocation, maxPorts, raw, limits). */
  token: TokenPolicy | null;
}

/**
 * Decides what the Worker can vouch for. A presented token (header first, else `?token=`) must be valid,
 * unexpired, for this segment and allow `kind`; without one the guest is forwarded as `none`
 * (or `dev` in open dev mode) and the segment decides.
 */
async function admit(request: Request, url: URL, env: Env, segment: string, kind: PortKind): Promise<HttpResult<Admission>> {
  const token = bearerToken(request) ?? url.searchParams.get("token");
  if (token === null || token === "") {
    return { ok: true, value: { auth: isDevMode(env) ? "dev" : "none", macs: [], tokenExp: null, token: null } };
  }
  const secret = joinTokenSecret(env);
  if (secret === null) return httpFail(401, "invalid-token", "this relay has no join token secret configured, so it cannot accept join tokens");
  const verified = await verifyJoinToken(secret, token, Math.floor(Date.now() / 1000));
  if (!verified.ok) return httpFail(401, verified.error.code, verified.error.message, { "WWW-Authenticate": 'Bearer realm="edgelan"' });
  const scoped = checkJoinScope(verified.value, segment, kind);
  if (!scoped.ok) return httpFail(403, scoped.error.code, scoped.error.message);
  return { ok: true, value: { auth: "token", macs: scoped.value.macs ?? [], tokenExp: scoped.value.exp, token: tokenPolicyOf(scoped.value) } };
}
