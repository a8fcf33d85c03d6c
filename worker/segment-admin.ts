import { fail, ok, type Result } from "../datapath/result.ts";
import { isPortKind, type PortKind } from "../datapath/port-kind.ts";
import {
  DEFAULT_TOKEN_TTL_SECONDS,
  MAX_TOKEN_TTL_SECONDS,
  joinTokenSecret,
  mintJoinToken,
  newJoinClaims,
  normalizeMacs,
} from "./auth.ts";
import { errorResponse, httpError, jsonResponse } from "./http.ts";
import { bodyError, readJsonBody } from "./json-body.ts";
import type { RouteContext } from "./router.ts";

// The management API: each handler is one RPC call on the segment's Durable Object.

/** `PUT /v1/segments/:name`: creates (201) or reconfigures (200) a segment; the body is a partial SegmentConfig. */
export async function putSegment({ request, env, segment }: RouteContext): Promise<Response> {
  const body = await readJsonBody(request);
  if (!body.ok) return errorResponse(bodyError(body.error));
  const outcome = await env.SEGMENTS.getByName(segment).configure(segment, body.value);
  if (!outcome.ok) return errorResponse(httpError(400, outcome.error.code, outcome.error.message));
  return jsonResponse(outcome.config, outcome.created ? 201 : 200);
}

/** `GET /v1/segments/:name`: settings, ports, forwarding-table summary, counters. */
export async function getSegment({ env, segment }: RouteContext): Promise<Response> {
  const description = await env.SEGMENTS.getByName(segment).describe();
  return description === null ? segmentNotFound(segment) : jsonResponse(description);
}

/** `GET /v1/segments/:name/ports`: per-port counters. */
export async function getPorts({ env, segment }: RouteContext): Promise<Response> {
  const ports = await env.SEGMENTS.getByName(segment).portStats();
  return ports === null ? segmentNotFound(segment) : jsonResponse({ name: segment, ports });
}

/** `GET /v1/segments/:name/leases`: the IPAM service's pool and leases (docs/ipam.md); 404 `dhcp-off` without `dhcp`. */
export async function getLeases({ env, segment }: RouteContext): Promise<Response> {
  const report = await env.SEGMENTS.getByName(segment).leases();
  if (report === null) return segmentNotFound(segment);
  if ("off" in report) return errorResponse(httpError(404, "dhcp-off", `segment ${JSON.stringify(segment)} has no dhcp setting: turn the service on with PUT /v1/segments/${segment} {"dhcp": {"subnet": "10.44.0.0/24"}}`));
  return jsonResponse({ name: segment, ...report });
}

/** `DELETE /v1/segments/:name`: disconnects every port (close 4010) and erases the segment. */
export async function deleteSegment({ env, segment }: RouteContext): Promise<Response> {
  const deleted = await env.SEGMENTS.getByName(segment).destroy();
  return deleted === null ? segmentNotFound(segment) : jsonResponse({ deleted: true, name: segment, portsClosed: deleted.portsClosed });
}

/** `POST /v1/segments/:name/tokens`: mints a join token for one role, optionally bound to MACs. */
export async function postToken({ request, env, segment }: RouteContext): Promise<Response> {
  const body = await readJsonBody(request);
  if (!body.ok) return errorResponse(bodyError(body.error));
  const wanted = parseTokenRequest(body.value);
  if (!wanted.ok) return errorResponse(httpError(400, wanted.error.code, wanted.error.message));
  if (!(await env.SEGMENTS.getByName(segment).exists())) return segmentNotFound(segment);
  const secret = joinTokenSecret(env);
  if (secret === null) return errorResponse(httpError(503, "tokens-disabled", "no join token secret: set EDGELAN_TOKEN_SECRET or EDGELAN_ADMIN_TOKEN"));

  const { role, ttlSeconds, macs } = wanted.value;
  const claims = newJoinClaims(segment, role, ttlSeconds, macs, Math.floor(Date.now() / 1000));
  const token = await mintJoinToken(secret, claims);
  return jsonResponse({ token, segment, role, macs: claims.macs ?? [], expiresAt: new Date(claims.exp * 1000).toISOString() }, 201);
}

function segmentNotFound(segment: string): Response {
  return errorResponse(httpError(404, "segment-not-found", `segment ${JSON.stringify(segment)} does not exist: create it with PUT /v1/segments/${segment}`));
}

export interface TokenRequest {
  role: PortKind;
  ttlSeconds: number;
  macs: string[] | undefined;
}

const TOKEN_REQUEST_FIELDS: ReadonlySet<string> = new Set(["role", "ttlSeconds", "macs"]);

/** Checks a token request body `{ role, ttlSeconds?, macs? }`. */
export function parseTokenRequest(body: unknown): Result<TokenRequest, "invalid-token-request"> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return fail("invalid-token-request", 'the body must be a JSON object like {"role": "member"}');
  }
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((key) => !TOKEN_REQUEST_FIELDS.has(key));
  if (unknown.length > 0) {
    return fail("invalid-token-request", `unknown field(s) ${unknown.map((key) => JSON.stringify(key)).join(", ")}; known fields: role, ttlSeconds, macs`);
  }
  if (!isPortKind(fields.role)) {
    return fail("invalid-token-request", `role must be one of member, bridge, monitor; got ${JSON.stringify(fields.role) ?? "nothing"}`);
  }
  const ttlSeconds = fields.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  if (typeof ttlSeconds !== "number" || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TOKEN_TTL_SECONDS) {
    return fail("invalid-token-request", `ttlSeconds must be an integer in 1..${MAX_TOKEN_TTL_SECONDS} (30 days); got ${JSON.stringify(ttlSeconds)}`);
  }
  let macs: string[] | undefined;
  if (fields.macs !== undefined) {
    const normalized = normalizeMacs(fields.macs);
    if (!normalized.ok) return fail("invalid-token-request", `macs: ${normalized.error.message}`);
    macs = normalized.value;
  }
  return ok({ role: fields.role, ttlSeconds, macs });
}
