import type { PortKind, ReceiveFilter } from "../datapath/bridge.ts";
import type { PortCountersData } from "../datapath/counters.ts";
import type { MacKey } from "../datapath/mac.ts";
import type { MessageEncoder } from "../datapath/tunnel/codec.ts";
import type { RxCreditLedger, RxCreditState } from "../datapath/tunnel/rx-credits.ts";
import type { PortAuth } from "../worker/port-request.ts";

/** How a port speaks: ring descriptors (`edgelan.v1`) or one raw frame per message. */
export type PortMode = "descriptor" | "raw";

/** Descriptor ports wait for HELLO before any data; raw ports are open at once. */
export type PortPhase = "hello" | "open";

/**
 * Everything a port must keep across hibernation, stored as the socket's
 * attachment (structured clone, ≤ 16 KiB). Live objects are rebuilt from it.
 */
export interface PortAttachment {
  readonly v: 1;
  portId: number;
  mode: PortMode;
  phase: PortPhase;
  kind: PortKind;
  /** Kind the join was authorized for; HELLO must agree. */
  authorizedKind: PortKind;
  /** MACs a join token was bound to, or null when unbound. */
  boundMacs: MacKey[] | null;
  macs: MacKey[];
  filter: ReceiveFilter;
  version: number;
  features: number;
  txWindow: number;
  /** Hex; the key of the port's resumable session. */
  sessionId: string;
  /** Hex resume token, once the Resume feature was granted. */
  resumeToken?: string;
  remote: string;
  auth: PortAuth;
  /** Join token expiry (Unix seconds), null without a token. */
  tokenExp: number | null;
  connectedAt: number;
  /** Deadline (ms since epoch) for HELLO; 0 once open. */
  helloDeadline: number;
  credits: RxCreditState | null;
  counters: PortCountersData;
}

/** A connected port: its socket, its persisted state and its live ring objects. */
export interface PortRuntime {
  readonly ws: WebSocket;
  readonly state: PortAttachment;
  /** Descriptor ports only: the RX credit ledger and the outgoing batch encoder. */
  ledger: RxCreditLedger | null;
  encoder: MessageEncoder | null;
  /** Set when something in `state` or the ledger changed and the attachment must be rewritten. */
  dirty: boolean;
  /** Set when the encoder holds records not yet sent. */
  pendingSend: boolean;
  /** Messages that arrived while HELLO was being answered (async resume look-up). */
  heldMessages: Uint8Array[] | null;
}

/** The attachment without live objects, ready for `serializeAttachment`. */
export function snapshotAttachment(port: PortRuntime): PortAttachment {
  if (port.ledger !== null) port.state.credits = port.ledger.state();
  return port.state;
}
