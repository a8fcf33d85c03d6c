import { fail, ok, type Result } from "../datapath/result.ts";
import { formatMac, parseMac } from "../datapath/mac.ts";
import { isPortKind, type PortKind } from "../datapath/port-kind.ts";

/**
 * The contract between the Worker and a segment's Durable Object for a connect:
 * the Worker has checked the name, the upgrade and any join token, and states
 * what it found in `x-edgelan-*` headers. The Durable Object trusts only these,
 * so the Worker strips every `x-edgelan-*` header a client sent.
 */
export const PORT_REQUEST_HEADERS = {
  segment: "x-edgelan-segment",
  kind: "x-edgelan-kind",
  auth: "x-edgelan-auth",
  macs: "x-edgelan-macs",
  tokenExp: "x-edgelan-token-exp",
  remote: "x-edgelan-remote",
  devMode: "x-edgelan-dev-mode",
  tokenId: "x-edgelan-token-id",
  tokenEpoch: "x-edgelan-token-epoch",
  tokenIssuedAt: "x-edgelan-token-iat",
  tokenMaxPorts: "x-edgelan-token-max-ports",
  tokenRaw: "x-edgelan-token-raw",
  tokenLimits: "x-edgelan-token-limits",
} as const;

const HEADER_PREFIX = "x-edgelan-";

/**
 * How the guest was admitted: `none` = no token (the segment must allow open joins),
 * `token` = a valid join token for this segment and kind, `dev` = open development mode.
 */
export type PortAuth = "none" | "token" | "dev";

export interface PortRequest {
  segment: string;
  kind: PortKind;
  auth: PortAuth;
  /** MACs the join token binds the port to (lower-case `aa:bb:cc:dd:ee:ff`); empty = not bound. */
  macs: string[];
  /** Token expiry in Unix seconds; null without a token. */
  tokenExp: number | null;
  /** The guest's IP address (CF-Connecting-IP), or "local". */
  remote: string;
  /** Whether the relay runs in open development mode (auto-creates segments). */
  devMode: boolean;
  /** What else the join token says (auth `token` only; null otherwise). */
  token: TokenPolicy | null;
}

/** Per-port rate limits a join token may set (docs/api.md, "Join tokens"); absent keys keep the segment's defaults. */
export interface TokenLimits {
  bytesPerSecond?: number;
  framesPerSecond?: number;
  floodFramesPerSecond?: number;
}

/** The join token's lifecycle and policy claims, as the segment enforces them. */
export interface TokenPolicy {
  /** `jti`: the token's id (revocation, maxPorts); null when the token has none. */
  id: string | null;
  /** `sep`: the segment epoch the token was minted for; null when absent (minted elsewhere). */
  epoch: string | null;
  /** `iat` in Unix seconds; null when absent. */
  issuedAt: number | null;
  /** `maxPorts`: ports the token may hold open at once; null = no limit of its own. */
  maxPorts: number | null;
  /** false when the token forbids raw mode (`raw: false`). */
  raw: boolean;
  /** `limits`: rate limits for the port; null = the segment's defaults. */
  limits: TokenLimits | null;
}

const TOKEN_LIMIT_KEYS = ["bytesPerSecond", "framesPerSecond", "floodFramesPerSecond"] as const;

/** Checks a `limits` value: an object of at most the three keys, each a positive safe integer; null when anything is off. */
export function parseTokenLimits(value: unknown): TokenLimits | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const limits: TokenLimits = {};
  for (const [key, item] of Object.entries(value)) {
    if (!(TOKEN_LIMIT_KEYS as readonly string[]).includes(key)) return null;
    if (typeof item !== "number" || !Number.isSafeInteger(item) || item < 1) return null;
    limits[key as (typeof TOKEN_LIMIT_KEYS)[number]] = item;
  }
  return limits;
}

/** Removes every `x-edgelan-*` header, so a client cannot forge the Worker's statements. */
export function stripPortRequestHeaders(headers: Headers): void {
  const forged = [...headers.keys()].filter((name) => name.toLowerCase().startsWith(HEADER_PREFIX));
  for (const name of forged) headers.delete(name);
}

/** Writes `request` as `x-edgelan-*` headers (after stripping any the client sent). */
export function writePortRequestHeaders(headers: Headers, request: PortRequest): void {
  stripPortRequestHeaders(headers);
  headers.set(PORT_REQUEST_HEADERS.segment, request.segment);
  headers.set(PORT_REQUEST_HEADERS.kind, request.kind);
  headers.set(PORT_REQUEST_HEADERS.auth, request.auth);
  headers.set(PORT_REQUEST_HEADERS.macs, request.macs.join(","));
  headers.set(PORT_REQUEST_HEADERS.tokenExp, request.tokenExp === null ? "" : String(request.tokenExp));
  headers.set(PORT_REQUEST_HEADERS.remote, request.remote);
  headers.set(PORT_REQUEST_HEADERS.devMode, request.devMode ? "1" : "0");
  const token = request.token;
  if (token === null) return;
  headers.set(PORT_REQUEST_HEADERS.tokenId, token.id ?? "");
  headers.set(PORT_REQUEST_HEADERS.tokenEpoch, token.epoch ?? "");
  headers.set(PORT_REQUEST_HEADERS.tokenIssuedAt, token.issuedAt === null ? "" : String(token.issuedAt));
  headers.set(PORT_REQUEST_HEADERS.tokenMaxPorts, token.maxPorts === null ? "" : String(token.maxPorts));
  headers.set(PORT_REQUEST_HEADERS.tokenRaw, token.raw ? "1" : "0");
  headers.set(PORT_REQUEST_HEADERS.tokenLimits, token.limits === null ? "" : JSON.stringify(token.limits));
}

/**
 * Reads the Worker's statements back in the Durable Object.
 * Fails with `bad-forward` when a header is missing or malformed: the request did not come through the Worker.
 */
export function readPortRequestHeaders(headers: Headers): Result<PortRequest, "bad-forward"> {
  const segment = headers.get(PORT_REQUEST_HEADERS.segment);
  const kind = headers.get(PORT_REQUEST_HEADERS.kind);
  const auth = headers.get(PORT_REQUEST_HEADERS.auth);
  const macs = headers.get(PORT_REQUEST_HEADERS.macs);
  const tokenExp = headers.get(PORT_REQUEST_HEADERS.tokenExp);
  const remote = headers.get(PORT_REQUEST_HEADERS.remote);
  const devMode = headers.get(PORT_REQUEST_HEADERS.devMode);
  if (segment === null || segment === "") return badForward(PORT_REQUEST_HEADERS.segment);
  if (!isPortKind(kind)) return badForward(PORT_REQUEST_HEADERS.kind);
  if (auth !== "none" && auth !== "token" && auth !== "dev") return badForward(PORT_REQUEST_HEADERS.auth);
  if (devMode !== "0" && devMode !== "1") return badForward(PORT_REQUEST_HEADERS.devMode);
  if (auth === "dev" && devMode !== "1") return badForward(PORT_REQUEST_HEADERS.auth);
  if (remote === null || remote === "") return badForward(PORT_REQUEST_HEADERS.remote);

  const boundMacs: string[] = [];
  for (const text of macs === null || macs === "" ? [] : macs.split(",")) {
    const mac = parseMac(text);
    if (!mac.ok) return badForward(PORT_REQUEST_HEADERS.macs);
    boundMacs.push(formatMac(mac.value));
  }

  let expiry: number | null = null;
  let token: TokenPolicy | null = null;
  if (auth === "token") {
    if (tokenExp === null || !/^\d+$/.test(tokenExp)) return badForward(PORT_REQUEST_HEADERS.tokenExp);
    expiry = Number(tokenExp);
    const policy = readTokenPolicy(headers);
    if (!policy.ok) return policy;
    token = policy.value;
  }
  return ok({ segment, kind, auth, macs: boundMacs, tokenExp: expiry, remote, devMode: devMode === "1", token });
}

/** The token's policy headers (all present, possibly empty). */
function readTokenPolicy(headers: Headers): Result<TokenPolicy, "bad-forward"> {
  const id = headers.get(PORT_REQUEST_HEADERS.tokenId);
  const epoch = headers.get(PORT_REQUEST_HEADERS.tokenEpoch);
  const issuedAt = optionalCount(headers.get(PORT_REQUEST_HEADERS.tokenIssuedAt));
  const maxPorts = optionalCount(headers.get(PORT_REQUEST_HEADERS.tokenMaxPorts));
  const raw = headers.get(PORT_REQUEST_HEADERS.tokenRaw);
  const limitsText = headers.get(PORT_REQUEST_HEADERS.tokenLimits);
  if (id === null) return badForward(PORT_REQUEST_HEADERS.tokenId);
  if (epoch === null) return badForward(PORT_REQUEST_HEADERS.tokenEpoch);
  if (issuedAt === undefined) return badForward(PORT_REQUEST_HEADERS.tokenIssuedAt);
  if (maxPorts === undefined) return badForward(PORT_REQUEST_HEADERS.tokenMaxPorts);
  if (raw !== "0" && raw !== "1") return badForward(PORT_REQUEST_HEADERS.tokenRaw);
  let limits: TokenLimits | null = null;
  if (limitsText === null) return badForward(PORT_REQUEST_HEADERS.tokenLimits);
  if (limitsText !== "") {
    try {
      limits = parseTokenLimits(JSON.parse(limitsText));
    } catch {
      limits = null;
    }
    if (limits === null) return badForward(PORT_REQUEST_HEADERS.tokenLimits);
  }
  return ok({ id: id === "" ? null : id, epoch: epoch === "" ? null : epoch, issuedAt, maxPorts, raw: raw === "1", limits });
}

/** "" → null, digits → the number, anything else (or a missing header) → undefined. */
function optionalCount(text: string | null): number | null | undefined {
  if (text === null) return undefined;
  if (text === "") return null;
  return /^\d{1,15}$/.test(text) ? Number(text) : undefined;
}

function badForward(header: string): Result<never, "bad-forward"> {
  return fail("bad-forward", `missing or malformed ${header}: connect through the edgelan Worker`);
}
