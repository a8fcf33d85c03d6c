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
  if (auth === "token") {
    if (tokenExp === null || !/^\d+$/.test(tokenExp)) return badForward(PORT_REQUEST_HEADERS.tokenExp);
    expiry = Number(tokenExp);
  }
  return ok({ segment, kind, auth, macs: boundMacs, tokenExp: expiry, remote, devMode: devMode === "1" });
}

function badForward(header: string): Result<never, "bad-forward"> {
  return fail("bad-forward", `missing or malformed ${header}: connect through the edgelan Worker`);
}
