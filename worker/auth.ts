import { fail, ok, type Result } from "../datapath/result.ts";
import { formatMac, isUsableUnicastMac, parseMac } from "../datapath/mac.ts";
import { MAX_MACS_PER_PORT } from "../datapath/tunnel/constants.ts";
import { isPortKind, type PortKind } from "../durable/config.ts";
import { configuredSecret, isDevMode, type Env } from "./env.ts";
import { httpFail, type HttpResult } from "./http.ts";
import { validateSegmentName } from "./segment-name.ts";

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

/** Compares two secrets without leaking where they differ: both are hashed to equal length first. */
async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [digestA, digestB] = await Promise.all([sha256(a), sha256(b)]);
  return crypto.subtle.timingSafeEqual(digestA, digestB);
}

async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
}

// ---------------------------------------------------------------------------
// Join tokens
// ---------------------------------------------------------------------------

/**
 * Join tokens look like `elt1.<base64url(JSON claims)>.<base64url(HMAC-SHA256)>`; the MAC covers
 * `elt1.<claims part>`, so the version prefix is signed too.
 */
export const JOIN_TOKEN_PREFIX = "elt1";

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

/** What a join token says. */
export interface JoinClaims {
  v: 1;
  /** The one segment the token admits to. */
  seg: string;
  /** The port kind it admits as (see `roleAllowsKind`). */
  role: PortKind;
  /** If present, the port may only use these MAC addresses (lower-case). */
  macs?: string[];
  /** Issued at, Unix seconds. */
  iat: number;
  /** Expires at, Unix seconds. */
  exp: number;
  /** Random token id, so two tokens minted in the same second differ and can be told apart in logs. */
  jti: string;
}

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

/** Signs a join token for `claims`. */
export async function mintJoinToken(secret: string, claims: JoinClaims): Promise<string> {
  const body = `${JOIN_TOKEN_PREFIX}.${base64urlEncode(new TextEncoder().encode(JSON.stringify(claims)))}`;
  const key = await hmacKey(secret);
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body));
  return `${body}.${base64urlEncode(new Uint8Array(mac))}`;
}

/** Fresh claims for a token minted now. */
export function newJoinClaims(segment: string, role: PortKind, ttlSeconds: number, macs: string[] | undefined, nowSeconds: number): JoinClaims {
  const jti = base64urlEncode(crypto.getRandomValues(new Uint8Array(12)));
  const claims: JoinClaims = { v: 1, seg: segment, role, iat: nowSeconds, exp: nowSeconds + ttlSeconds, jti };
  if (macs !== undefined) claims.macs = macs;
  return claims;
}

/**
 * Checks a join token's signature (crypto.subtle.verify, constant time), shape and expiry.
 * Fails with `invalid-token` (malformed or forged) or `token-expired`.
 */
export async function verifyJoinToken(
  secret: string,
  token: string,
  nowSeconds: number,
): Promise<Result<JoinClaims, "invalid-token" | "token-expired">> {
  const parts = token.length <= MAX_TOKEN_LENGTH ? token.split(".") : [];
  if (parts.length !== 3 || parts[0] !== JOIN_TOKEN_PREFIX) {
    return fail("invalid-token", `malformed join token: expected ${JOIN_TOKEN_PREFIX}.<claims>.<signature>`);
  }
  const [prefix, claimsPart, macPart] = parts as [string, string, string];
  const mac = base64urlDecode(macPart);
  const claimsBytes = base64urlDecode(claimsPart);
  if (mac === null || claimsBytes === null) return fail("invalid-token", "malformed join token: a part is not base64url");
  const key = await hmacKey(secret);
  const genuine = await crypto.subtle.verify("HMAC", key, mac, new TextEncoder().encode(`${prefix}.${claimsPart}`));
  if (!genuine) return fail("invalid-token", "the join token's signature does not match: it was not issued by this relay or was altered");

  const claims = parseClaims(claimsBytes);
  if (claims === null) return fail("invalid-token", "the join token's claims are malformed");
  if (claims.exp <= nowSeconds) {
    return fail("token-expired", `the join token expired at ${new Date(claims.exp * 1000).toISOString()}: ask for a new one`);
  }
  return ok(claims);
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

/** Parses and type-checks the claims JSON; null when anything is off. */
function parseClaims(bytes: Uint8Array): JoinClaims | null {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const claims = value as Record<string, unknown>;
  const { v, seg, role, macs, iat, exp, jti } = claims;
  if (v !== 1 || typeof seg !== "string" || !validateSegmentName(seg).ok || !isPortKind(role)) return null;
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp) || typeof jti !== "string") return null;
  const parsed: JoinClaims = { v: 1, seg, role, iat: iat as number, exp: exp as number, jti };
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

/** Decodes unpadded base64url; null for any other alphabet or an impossible length. */
function base64urlDecode(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
