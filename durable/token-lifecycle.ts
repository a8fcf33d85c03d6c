import { httpError, type HttpError } from "../contract/http-error.ts";
import type { PortRequest } from "../contract/port-request.ts";
import type { LifecycleCounters } from "../contract/segment-api.ts";
import { CloseCode } from "../datapath/tunnel/close-codes.ts";
import type { PortMode, PortRuntime } from "./port.ts";

/** Storage key of the segment's token epoch (minted tokens carry it as `sep`); every cell of a segment holds its home's. */
export const TOKEN_EPOCH_KEY = "epoch";

// The join token's life inside the segment: admission rules the Worker cannot check (they need the
// segment's state), and closing ports whose token expired or was revoked (docs/api.md, "Join tokens").

/** Segment-wide HELLO-phase sockets at most: min(8, maxPorts/4), at least 1 (protocol.md §11.1). */
export const MAX_HELLO_SOCKETS = 8;
/**
 * HELLO-phase sockets one token (jti) may hold at once. Tokenless joins have only the segment's limit: their
 * addresses are no credential (behind one NAT, or 127.0.0.1 for every local client).
 */
export const MAX_HELLO_SOCKETS_PER_TOKEN = 2;

/** The counter each admission refusal code bumps. */
export const REFUSAL_COUNTERS: Readonly<Record<string, keyof LifecycleCounters>> = {
  "token-stale-segment": "joinsRefusedStaleToken",
  "token-revoked": "joinsRefusedRevoked",
  "token-port-limit": "joinsRefusedPortLimit",
  "token-forbids-raw": "joinsRefusedRaw",
  "hello-slots-full": "joinsRefusedHelloSlots",
};

/** Fresh lifecycle counters. */
export function newLifecycleCounters(): LifecycleCounters {
  return {
    tokenExpiryCloses: 0, tokenRevocationCloses: 0, joinsRefusedStaleToken: 0, joinsRefusedRevoked: 0, joinsRefusedPortLimit: 0,
    joinsRefusedRaw: 0, joinsRefusedHelloSlots: 0, resumeRowsEvicted: 0,
  };
}

/** What the admission checks need to know about the segment. */
export interface SegmentFacts {
  /** The segment's epoch (tokens minted by POST tokens carry it as `sep`). */
  epoch: string;
  /** When this incarnation of the segment was created (ms since epoch). */
  createdAtMs: number;
  maxPorts: number;
  isRevoked(jti: string): boolean;
}

/** Checks a token's segment-side rules for a connect; an HTTP error, or null to admit. */
export function checkTokenAdmission(request: PortRequest, mode: PortMode, segment: SegmentFacts, runtimes: readonly PortRuntime[]): HttpError | null {
  const token = request.token;
  if (token === null) return null;
  if (token.epoch !== null ? token.epoch !== segment.epoch : token.issuedAt !== null && token.issuedAt < Math.floor(segment.createdAtMs / 1000)) {
    return httpError(403, "token-stale-segment", `the join token was issued for an earlier segment named ${JSON.stringify(request.segment)} (deleted since): ask for a new one`);
  }
  if (token.id !== null && segment.isRevoked(token.id)) {
    return httpError(403, "token-revoked", "the join token was revoked: ask for a new one");
  }
  if (mode === "raw" && !token.raw) {
    return httpError(403, "token-forbids-raw", "the join token forbids raw mode: connect with the edgelan.v1 subprotocol");
  }
  if (token.maxPorts !== null && token.id !== null) {
    const open = portsOfToken(runtimes, token.id);
    if (open >= token.maxPorts) {
      return httpError(403, "token-port-limit", `the join token allows ${token.maxPorts} port(s) at once and has ${open} open: close one first`);
    }
  }
  return null;
}

/** How many of `runtimes` joined with the token `tokenId` (its `jti`); 0 for null. */
export function portsOfToken(runtimes: readonly PortRuntime[], tokenId: string | null): number {
  return tokenId === null ? 0 : runtimes.filter((runtime) => runtime.attachment.tokenId === tokenId).length;
}

/** The segment's limit of HELLO-phase sockets: min(8, maxPorts/4), at least 1. */
export function helloSocketLimit(maxPorts: number): number {
  return Math.max(1, Math.min(MAX_HELLO_SOCKETS, Math.floor(maxPorts / 4)));
}

/**
 * A descriptor connect would open another HELLO-phase socket: refused (503 `hello-slots-full`) when
 * the segment already has its limit of them, or this token (jti) has MAX_HELLO_SOCKETS_PER_TOKEN.
 * Raw ports are open at once and never in HELLO phase.
 */
export function checkHelloSlots(request: PortRequest, mode: PortMode, maxPorts: number, runtimes: readonly PortRuntime[]): HttpError | null {
  if (mode === "raw") return null;
  const tokenId = request.token?.id ?? null;
  let negotiating = 0;
  let mine = 0;
  for (const { attachment } of runtimes) {
    if (attachment.phase !== "hello") continue;
    negotiating++;
    if (tokenId !== null && attachment.tokenId === tokenId) mine++;
  }
  const limit = helloSocketLimit(maxPorts);
  if (negotiating >= limit) {
    return httpError(503, "hello-slots-full", `the segment has ${limit} sockets waiting for HELLO (its limit): retry in a few seconds`, { "Retry-After": "10" });
  }
  if (mine >= MAX_HELLO_SOCKETS_PER_TOKEN) {
    return httpError(503, "hello-slots-full", `this join token already has ${mine} sockets waiting for HELLO: say HELLO on them first`, { "Retry-After": "10" });
  }
  return null;
}

/** What closing ports needs from the relay. */
export interface PortCloser {
  runtimes(): PortRuntime[];
  closePort(runtime: PortRuntime, code: number, reason: string): void;
}

/** Closes (4008 "join token expired") every port whose token expired by `nowMs`; returns how many. */
export function closeExpiredTokens(relay: PortCloser, nowMs: number): number {
  return closeWhere(relay, (runtime) => runtime.attachment.tokenExp !== null && runtime.attachment.tokenExp * 1000 <= nowMs, "join token expired");
}

/** Closes (4008 "token revoked") every port opened with token `jti`; returns how many. */
export function closeRevokedToken(relay: PortCloser, jti: string): number {
  return closeWhere(relay, (runtime) => runtime.attachment.tokenId === jti, "token revoked");
}

function closeWhere(relay: PortCloser, matches: (runtime: PortRuntime) => boolean, reason: string): number {
  const closing = relay.runtimes().filter(matches);
  for (const runtime of closing) relay.closePort(runtime, CloseCode.Policy, reason);
  return closing.length;
}

/** When the next connected port's token expires (ms since epoch), if any. */
export function nextTokenExpiry(runtimes: readonly PortRuntime[]): number | undefined {
  let next: number | undefined;
  for (const { attachment } of runtimes) {
    if (attachment.tokenExp !== null) next = Math.min(next ?? Infinity, attachment.tokenExp * 1000);
  }
  return next;
}

/** The latest expiry (Unix seconds) of connected ports using token `jti`, if any. */
export function connectedTokenExpiry(runtimes: readonly PortRuntime[], jti: string): number | undefined {
  let latest: number | undefined;
  for (const { attachment } of runtimes) {
    if (attachment.tokenId === jti && attachment.tokenExp !== null) latest = Math.max(latest ?? 0, attachment.tokenExp);
  }
  return latest;
}
