import { fail, ok, type Result } from "../datapath/result.ts";
import { isPortKind, type PortKind } from "../datapath/port-kind.ts";
import {
  DEFAULT_TOKEN_TTL_SECONDS,
  MAX_TOKEN_MAX_PORTS,
  MAX_TOKEN_TTL_SECONDS,
  joinTokenSecret,
  mintJoinToken,
  newJoinClaims,
  normalizeMacs,
  type JoinPolicyClaims,
} from "./auth.ts";
import { parseTokenLimits } from "../contract/port-request.ts";
import { errorResponse, httpError, jsonResponse } from "./http.ts";
import { checkPolicerLimits } from "../datapath/policer.ts";
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
  const epoch = await env.SEGMENTS.getByName(segment).tokenEpoch();
  if (epoch === null) return segmentNotFound(segment);
  const secret = joinTokenSecret(env);
  if (secret === null) return errorResponse(httpError(503, "tokens-disabled", "no join token secret: set EDGELAN_TOKEN_SECRET or EDGELAN_ADMIN_TOKEN"));

  const { role, ttlSeconds, macs, policy } = wanted.value;
  const claims = newJoinClaims(segment, role, ttlSeconds, macs, Math.floor(Date.now() / 1000), { ...policy, sep: epoch });
  const token = await mintJoinToken(secret, claims);
  return jsonResponse(
    {
      token, jti: claims.jti, segment, role, macs: claims.macs ?? [], expiresAt: new Date(claims.exp * 1000).toISOString(),
      maxPorts: claims.maxPorts ?? null, raw: claims.raw !== false, limits: claims.limits ?? null,
    },
    201,
  );
}

/**
 * `POST /v1/segments/:name/tokens/:jti/revoke` and `DELETE /v1/segments/:name/tokens/:jti`: adds the token id to
 * the segment's revocation list (later joins 403 `token-revoked`) and closes its open ports (4008 "token revoked").
 */
export async function revokeToken({ env, segment, params }: RouteContext): Promise<Response> {
  const jti = params.jti ?? "";
  // The same rule as a token's jti claim: 1-128 characters (percent-encoded in the path as needed).
  if (jti.length < 1 || jti.length > 128) {
    return errorResponse(httpError(400, "invalid-token-id", "the token id (jti) must be 1-128 characters (percent-encode what a path cannot hold)"));
  }
  const outcome = await env.SEGMENTS.getByName(segment).revokeToken(jti);
  if (outcome === null) return segmentNotFound(segment);
  if (!outcome.ok) return errorResponse(httpError(507, outcome.error.code, outcome.error.message));
  return jsonResponse({ revoked: true, segment, jti, alreadyRevoked: outcome.alreadyRevoked, portsClosed: outcome.portsClosed, until: outcome.until });
}

function segmentNotFound(segment: string): Response {
  return errorResponse(httpError(404, "segment-not-found", `segment ${JSON.stringify(segment)} does not exist: create it with PUT /v1/segments/${segment}`));
}

export interface TokenRequest {
  role: PortKind;
  ttlSeconds: number;
  macs: string[] | undefined;
  /** maxPorts, raw, limits when asked for. */
  policy: JoinPolicyClaims;
}

const TOKEN_REQUEST_FIELDS: ReadonlySet<string> = new Set(["role", "ttlSeconds", "macs", "maxPorts", "raw", "limits"]);

/** Checks a token request body `{ role, ttlSeconds?, macs? }`. */
export function parseTokenRequest(body: unknown): Result<TokenRequest, "invalid-token-request"> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return fail("invalid-token-request", 'the body must be a JSON object like {"role": "member"}');
  }
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((key) => !TOKEN_REQUEST_FIELDS.has(key));
  if (unknown.length > 0) {
    return fail("invalid-token-request", `unknown field(s) ${unknown.map((key) => JSON.stringify(key)).join(", ")}; known fields: role, ttlSeconds, macs, maxPorts, raw, limits`);
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
  const policy = parsePolicyFields(fields);
  if (!policy.ok) return policy;
  return ok({ role: fields.role, ttlSeconds, macs, policy: policy.value });
}

/** The optional `maxPorts`, `raw` and `limits` of a token request. */
function parsePolicyFields(fields: Record<string, unknown>): Result<JoinPolicyClaims, "invalid-token-request"> {
  const policy: JoinPolicyClaims = {};
  const { maxPorts, raw, limits } = fields;
  if (maxPorts !== undefined) {
    if (typeof maxPorts !== "number" || !Number.isInteger(maxPorts) || maxPorts < 1 || maxPorts > MAX_TOKEN_MAX_PORTS) {
      return fail("invalid-token-request", `maxPorts must be an integer in 1..${MAX_TOKEN_MAX_PORTS}; got ${JSON.stringify(maxPorts)}`);
    }
    policy.maxPorts = maxPorts;
  }
  if (raw !== undefined) {
    if (typeof raw !== "boolean") return fail("invalid-token-request", `raw must be true or false; got ${JSON.stringify(raw)}`);
    // Only `false` is a restriction worth a claim.
    if (!raw) policy.raw = false;
  }
  if (limits !== undefined) {
    const checked = parseTokenLimits(limits);
    const problems = typeof limits === "object" && limits !== null ? checkPolicerLimits(limits) : [];
    if (checked === null || problems.length > 0) {
      return fail("invalid-token-request", `limits must be an object of bytesPerSecond, framesPerSecond, floodFramesPerSecond (positive integers)${problems.length > 0 ? `: ${problems.join("; ")}` : ""}`);
    }
    policy.limits = checked;
  }
  return ok(policy);
}
