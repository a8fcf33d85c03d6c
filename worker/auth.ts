import { constantTimeEqual } from "../contract/secrets.ts";
import { errors, jwtVerify, SignJWT, type JWTPayload } from "jose";
import { fail, ok, type Result } from "../datapath/result.ts";
import { formatMac, isUsableUnicastMac, parseMac } from "../datapath/mac.ts";
import { MAX_MACS_PER_PORT } from "../datapath/tunnel/constants.ts";
import { isPortKind, type PortKind } from "../datapath/port-kind.ts";
import { configuredSecret, isDevMode, type Env } from "./env.ts";
import { httpFail, type HttpResult } from "./http.ts";
import { validateSegmentName } from "./segment-name.ts";
import { parseTokenLimits, type TokenLimits, type TokenPolicy } from "../contract/port-request.ts";

// ---------------------------------------------------------------------------
// Admin authentication
// ---------------------------------------------------------------------------

/** How a management call was admitted: with the admin token, or because the relay runs in open dev mode. */
export type AdminAccess = "token" | "dev";

/**
 * Admits a management call.
 * With EDGELAN_ADMIN_TOKEN set, the request must carry `Authorization: Bearer <token>` (compared in constant time).
 * Without it, management is open in dev mode and disabled (503) otherwise: a deployed relay is closed unless configured.
 */
export async function authorizeAdmin(request: Request, env: Env): Promise<HttpResult<AdminAccess>> {
  const adminToken = configuredSecret(env.EDGELAN_ADMIN_TOKEN);
  if (adminToken === null) {
    if (isDevMode(env)) return ok("dev");
    return httpFail(503, "admin-disabled", "the management API is disabled: set EDGELAN_ADMIN_TOKEN with `wrangler secret put EDGELAN_ADMIN_TOKEN` (locally: in .dev.vars, or run `npm start` for open development mode)");
  }
  const presented = bearerToken(request);
  if (presented === null) {
    return unauthorized("admin-token-required", "this call needs `Authorization: Bearer <EDGELAN_ADMIN_TOKEN>`");
  }
  if (!(await constantTimeEqual(presented, adminToken))) {
    return unauthorized("admin-token-invalid", "the bearer token is not the admin token");
  }
  return ok("token");
}

function unauthorized(code: string, message: string): HttpResult<never> {
  return httpFail(401, code, message, { "WWW-Authenticate": 'Bearer realm="edgelan"' });
}

/** The token of an `Authorization: Bearer …` header, or null. */
export function bearerToken(request: Request): string | null {
  const header = request.headers.get("Authorization");
  if (header === null) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match === null ? null : (match[1] as string);
}

// ---------------------------------------------------------------------------
// Join tokens
// ---------------------------------------------------------------------------

/**
 * Join tokens are standard JWTs (RFC 7519) signed with HS256 (HMAC-SHA256), so any JWT library can
 * mint them: header `{"alg":"HS256","typ":"JWT"}`, claims `aud` ("edgelan"), `seg`, `role`, `exp`,
 * optional `macs`, `iat`, `nbf`, `jti` (docs/api.md, "Join tokens"). jose signs and verifies them.
 */
export const JOIN_TOKEN_AUDIENCE = "edgelan";
const JOIN_TOKEN_ALGORITHM = "HS256";

/**
 * The HMAC key used in open dev mode when neither EDGELAN_TOKEN_SECRET nor EDGELAN_ADMIN_TOKEN is set.
 * It is public (it is in this file), so such tokens prove nothing: dev mode is open anyway.
 */
export const INSECURE_DEV_TOKEN_SECRET = "edgelan-INSECURE-dev-mode-token-secret-do-not-deploy";

/** Longest join token accepted; claims with the most MACs a port may have stay well below. */
const MAX_TOKEN_LENGTH = 4096;

/** Longest join token lifetime: 30 days. */
export const MAX_TOKEN_TTL_SECONDS = 30 * 86400;
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;

/** What a join token says (the JWT claims set, `aud` aside). */
export interface JoinClaims {
  /** The one segment the token admits to. */
  seg: string;
  /** The port kind it admits as (see `roleAllowsKind`). */
  role: PortKind;
  /** If present, the port may only use these MAC addresses (lower-case). */
  macs?: string[];
  /** Issued at, Unix seconds (optional when minted elsewhere). */
  iat?: number;
  /** Expires at, Unix seconds (required). */
  exp: number;
  /** Not before, Unix seconds (optional). */
  nbf?: number;
  /** Token id: names the token for revocation and counts its ports for `maxPorts` (optional when minted elsewhere). */
  jti?: string;
  /** Segment epoch: the token works only on the segment incarnation that minted it (set by POST tokens). */
  sep?: string;
  /** Ports the token may hold open at once (1..MAX_TOKEN_MAX_PORTS); needs `jti`. */
  maxPorts?: number;
  /** false: the token may not join in raw mode. */
  raw?: boolean;
  /** Rate limits for the port, overriding the segment's defaults. */
  limits?: TokenLimits;
}

/** The optional policy claims a minted token may carry. */
export type JoinPolicyClaims = Pick<JoinClaims, "sep" | "maxPorts" | "raw" | "limits">;

/** Largest `maxPorts` claim (a segment's own maxPorts limit). */
export const MAX_TOKEN_MAX_PORTS = 1024;
/** Longest `jti` and `sep` accepted. */
const MAX_TOKEN_ID_LENGTH = 128;

/** The HMAC secret for join tokens: EDGELAN_TOKEN_SECRET, else the admin token, else (dev mode only) the insecure dev key. */
export function joinTokenSecret(env: Env): string | null {
  return (
    configuredSecret(env.EDGELAN_TOKEN_SECRET) ??
    configuredSecret(env.EDGELAN_ADMIN_TOKEN) ??
    (isDevMode(env) ? INSECURE_DEV_TOKEN_SECRET : null)
  );
}

/** Which port kinds a token role admits: a bridge may also join as a plain member. */
export function roleAllowsKind(role: PortKind, kind: PortKind): boolean {
  switch (role) {
    case "member":
      return kind === "member";
    case "bridge":
      return kind === "bridge" || kind === "member";
    case "monitor":
      return kind === "monitor";
  }
}

/** Signs a join token (an HS256 JWT with audience "edgelan") for `claims`. */
export async function mintJoinToken(secret: string, claims: JoinClaims): Promise<string> {
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: JOIN_TOKEN_ALGORITHM, typ: "JWT" })
    .setAudience(JOIN_TOKEN_AUDIENCE)
    .sign(await hmacKey(secret));
}

/** Fresh claims for a token minted now. */
export function newJoinClaims(
  segment: string,
  role: PortKind,
  ttlSeconds: number,
  macs: string[] | undefined,
  nowSeconds: number,
  policy: JoinPolicyClaims = {},
): JoinClaims {
  const jti = base64urlEncode(crypto.getRandomValues(new Uint8Array(12)));
  const claims: JoinClaims = { seg: segment, role, iat: nowSeconds, exp: nowSeconds + ttlSeconds, jti };
  if (macs !== undefined) claims.macs = macs;
  for (const key of ["sep", "maxPorts", "raw", "limits"] as const) {
    if (policy[key] !== undefined) Object.assign(claims, { [key]: policy[key] });
  }
  return claims;
}

/** What the segment must enforce of valid claims (sent to it in x-edgelan-token-* headers). */
export function tokenPolicyOf(claims: JoinClaims): TokenPolicy {
  return {
    id: claims.jti ?? null, epoch: claims.sep ?? null, issuedAt: claims.iat ?? null, maxPorts: claims.maxPorts ?? null,
    raw: claims.raw !== false, limits: claims.limits ?? null,
  };
}

/**
 * Checks a join token: a JWT signed with HS256 and this relay's key (jose, crypto.subtle.verify:
 * constant time), audience "edgelan", not expired (expired from `exp` on) and not before `nbf`,
 * then the claims' shape. Fails with `invalid-token` (malformed, forged, wrong algorithm or
 * audience, bad claims) or `token-expired`.
 */
export async function verifyJoinToken(
  secret: string,
  token: string,
  nowSeconds: number,
): Promise<Result<JoinClaims, "invalid-token" | "token-expired">> {
  if (token.length > MAX_TOKEN_LENGTH) return fail("invalid-token", `malformed join token: longer than ${MAX_TOKEN_LENGTH} characters`);
  if (token.split(".").length !== 3) return fail("invalid-token", "malformed join token: expected a JWT (header.claims.signature)");
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, await hmacKey(secret), {
      algorithms: [JOIN_TOKEN_ALGORITHM],
      audience: JOIN_TOKEN_AUDIENCE,
      currentDate: new Date(nowSeconds * 1000),
      requiredClaims: ["exp"],
    }));
  } catch (error) {
    return tokenFailure(error);
  }
  const claims = parseClaims(payload);
  if (claims === null) {
    return fail(
      "invalid-token",
      `the join token's claims are malformed: it needs seg (a segment name), role (member, bridge or monitor) and exp; macs must be unicast MACs; jti and sep strings of at most ${MAX_TOKEN_ID_LENGTH} characters; maxPorts an integer in 1..${MAX_TOKEN_MAX_PORTS} and only with jti; raw a boolean; limits an object of bytesPerSecond, framesPerSecond, floodFramesPerSecond (positive integers)`,
    );
  }
  return ok(claims);
}

/** A jose error as the relay's failure. */
function tokenFailure(error: unknown): Result<never, "invalid-token" | "token-expired"> {
  if (error instanceof errors.JWTExpired) {
    const exp = error.payload.exp;
    return fail("token-expired", `the join token expired${typeof exp === "number" ? ` at ${new Date(exp * 1000).toISOString()}` : ""}: ask for a new one`);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return fail("invalid-token", "the join token's signature does not match: it was not issued by this relay or was altered");
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return fail("invalid-token", `the join token must be signed with ${JOIN_TOKEN_ALGORITHM}`);
  if (error instanceof errors.JWTClaimValidationFailed) {
    return fail("invalid-token", `the join token's "${error.claim}" claim is not acceptable (${error.reason}): ${error.message}`);
  }
  return fail("invalid-token", `malformed join token: ${error instanceof Error ? error.message : String(error)}`);
}

/** Checks that valid claims admit `kind` to `segment`. */
export function checkJoinScope(
  claims: JoinClaims,
  segment: string,
  kind: PortKind,
): Result<JoinClaims, "token-wrong-segment" | "token-wrong-role"> {
  if (claims.seg !== segment) {
    return fail("token-wrong-segment", `the join token is for segment ${JSON.stringify(claims.seg)}, not ${JSON.stringify(segment)}`);
  }
  if (!roleAllowsKind(claims.role, kind)) {
    return fail("token-wrong-role", `a ${claims.role} token cannot connect as kind=${kind}`);
  }
  return ok(claims);
}

/** Type-checks verified claims; null when anything is off. */
function parseClaims(payload: JWTPayload): JoinClaims | null {
  const parsed = parseBaseClaims(payload);
  if (parsed === null) return null;
  const { sep, maxPorts, raw, limits } = payload as Record<string, unknown>;
  if (sep !== undefined) {
    if (!isTokenId(sep)) return null;
    parsed.sep = sep;
  }
  if (maxPorts !== undefined) {
    // A port count needs a token id to count by.
    if (parsed.jti === undefined || !Number.isSafeInteger(maxPorts) || (maxPorts as number) < 1 || (maxPorts as number) > MAX_TOKEN_MAX_PORTS) return null;
    parsed.maxPorts = maxPorts as number;
  }
  if (raw !== undefined) {
    if (typeof raw !== "boolean") return null;
    parsed.raw = raw;
  }
  if (limits !== undefined) {
    const checked = parseTokenLimits(limits);
    if (checked === null) return null;
    parsed.limits = checked;
  }
  return parsed;
}

function isTokenId(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && value.length <= MAX_TOKEN_ID_LENGTH;
}

/** The registered claims and seg, role, macs. */
function parseBaseClaims(payload: JWTPayload): JoinClaims | null {
  const { seg, role, macs, iat, exp, nbf, jti } = payload as Record<string, unknown>;
  if (typeof seg !== "string" || !validateSegmentName(seg).ok || !isPortKind(role) || !Number.isSafeInteger(exp)) return null;
  const parsed: JoinClaims = { seg, role, exp: exp as number };
  if (iat !== undefined) {
    if (!Number.isSafeInteger(iat)) return null;
    parsed.iat = iat as number;
  }
  if (nbf !== undefined) {
    if (!Number.isSafeInteger(nbf)) return null;
    parsed.nbf = nbf as number;
  }
  if (jti !== undefined) {
    if (!isTokenId(jti)) return null;
    parsed.jti = jti;
  }
  if (macs !== undefined) {
    const normalized = normalizeMacs(macs);
    if (!normalized.ok) return null;
    parsed.macs = normalized.value;
  }
  return parsed;
}

/** Checks a list of unicast MAC strings (at most MAX_MACS_PER_PORT, a port's limit) and returns them in lower-case canonical form. */
export function normalizeMacs(value: unknown): Result<string[], "invalid-mac"> {
  if (!Array.isArray(value) || value.length > MAX_MACS_PER_PORT) {
    return fail("invalid-mac", `macs must be an array of at most ${MAX_MACS_PER_PORT} MAC addresses like "02:00:00:00:00:01"`);
  }
  const macs: string[] = [];
  for (const item of value) {
    const mac = parseMac(typeof item === "string" ? item : String(item));
    if (!mac.ok) return mac;
    if (!isUsableUnicastMac(mac.value)) return fail("invalid-mac", `${formatMac(mac.value)} is not a usable unicast MAC address (multicast or all zeros)`);
    macs.push(formatMac(mac.value));
  }
  return ok(macs);
}

/** HMAC keys are imported once per secret and isolate. */
const hmacKeys = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = hmacKeys.get(secret);
  if (key === undefined) {
    key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    hmacKeys.set(secret, key);
  }
  return key;
}

function base64urlEncode(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
