import type { MacKey } from "../datapath/mac.ts";
import type { PortKind } from "../datapath/port-kind.ts";
import type { SwitchPort, SwitchPortMode, SwitchPortState } from "../datapath/switch-port.ts";
import type { PortAuth, TokenLimits } from "../contract/port-request.ts";

/** How a socket speaks: ring descriptors (`edgelan.v1`) or one raw frame per message. */
export type PortMode = Exclude<SwitchPortMode, "service" | "trunk">;

/** Descriptor ports wait for HELLO before any data; raw ports are open at once. */
export type PortPhase = "hello" | "open";

/** The attachment layout version: an attachment of another version is closed with 4012 on restore. */
export const ATTACHMENT_VERSION = 2;

/**
 * Everything a port must keep across hibernation, stored as the socket's
 * attachment (structured clone, ≤ 16 KiB): the session and admission facts
 * here, the switch's own state (MACs, filter, features, credits, counters,
 * held completions) in `port`. Live objects are rebuilt from it.
 */
export interface PortAttachment {
  readonly v: typeof ATTACHMENT_VERSION;
  portId: number;
  mode: PortMode;
  phase: PortPhase;
  /** Kind the join was authorized for; HELLO must agree. */
  authorizedKind: PortKind;
  /** MACs a join token was bound to, or null when unbound. */
  boundMacs: MacKey[] | null;
  version: number;
  /** Hex; the key of the port's resumable session. */
  sessionId: string;
  /** Hex resume token, once the Resume feature was granted. */
  resumeToken?: string;
  remote: string;
  auth: PortAuth;
  /** Join token expiry (Unix seconds), null without a token; the alarm closes the port then (4008). */
  tokenExp: number | null;
  /** The join token's id (`jti`): revocation closes the port; `maxPorts` counts by it. Absent/null without one. */
  tokenId?: string | null;
  /** Rate limits from the join token (`limits` claim), for the switch's policer; absent/null = segment defaults. */
  tokenLimits?: TokenLimits | null;
  connectedAt: number;
  /** Deadline (ms since epoch) for HELLO; 0 once open. */
  helloDeadline: number;
  port: SwitchPortState;
}

/** A connected socket: its persisted state and its port in the switch. */
export interface PortRuntime {
  readonly ws: WebSocket;
  readonly attachment: PortAttachment;
  /** Replaced when a resume gives the socket its session's old port id. */
  port: SwitchPort;
  /** Messages that arrived while HELLO was being answered (async resume look-up). */
  heldMessages: Uint8Array[] | null;
}
