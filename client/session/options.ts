// What a session is given (options), what it counts, what it reports (events), and where its connection is.
import type { PortKind } from "../../datapath/tunnel/constants.ts";
import type { WelcomeRecord } from "../../datapath/tunnel/records.ts";
import type { MacKey } from "../../datapath/mac.ts";
import type { SessionTrace } from "./trace.ts";
import type { SessionError } from "./errors.ts";
import type { SocketFactory } from "./socket.ts";

export interface SessionOptions {
  /** `ws(s)://host/v1/segments/NAME/connect` (a `?kind=` is added from `kind`). */
  url: string;
  /** Join token; sent as `Authorization: Bearer` where the factory can set headers, else as `?token=`. */
  token?: string;
  kind?: PortKind;
  macs?: MacKey[];
  /** Wanted TX window (power of two), default 256. */
  txWindow?: number;
  /** Wanted RX queue at the segment, default 256. */
  rxQueue?: number;
  /** RX buffers kept posted (1..65536), default 4096 (TCP bursts through a TAP overflowed 1024 plus the segment's queue); size defaults to the granted max frame size. */
  rxBuffers?: number;
  rxBufferSize?: number;
  /** Frames deferred while the TX window is full before further sends are dropped (counted), default 4096. */
  maxDeferred?: number;
  /**
   * With LazyCompletions: how long a frame sent with a callback waits for its completion before the
   * session asks the segment for it (a flush PING), default 5 ms; 0 never asks (callbacks then wait
   * for the segment's next message, half a window, or whenCompleted()).
   */
  callbackFlushMs?: number;
  clientName?: string;
  clientVersion?: string;
  /** Receive filter applied at every (re)connect; full network stacks (TAP, VMs) want allMulticast for IPv6. */
  filter?: { promiscuous: boolean; allMulticast: boolean; multicast: MacKey[] };
  /**
   * Reconnect with exponential backoff and jitter; false to stay closed.
   * `beforeOpen: false` retries only after a first WELCOME, so start() fails fast when the relay
   * cannot be reached or answers the upgrade with a 5xx (the CLI's choice); the default retries then too.
   */
  reconnect?: false | { initialMs?: number; maxMs?: number; beforeOpen?: boolean };
  /** Seconds between text keepalives (answered by the runtime without waking the segment); 0 disables. */
  keepaliveSeconds?: number;
  socketFactory?: SocketFactory;
  /**
   * Frames given to send() and emitted as "frames" start with a 10-byte virtio-net header (a TAP with
   * offloads). The session offers Gso: when granted, offload requests go out as they are (TX flag
   * VnetHeader); otherwise it completes checksums and segments super-frames itself (datapath/offload.ts).
   */
  vnetHeader?: boolean;
  /**
   * Offer LazyCompletions (docs/protocol.md §6.3 rule 2a), default true: the segment then sends
   * completions with its next message instead of a message of their own, so a ping costs 4
   * messages instead of 6. The session asks for held completions with a PING when its window is
   * full or a caller waits for them (whenCompleted()).
   */
  lazyCompletions?: boolean;
  /**
   * Offer CellCompletions (docs/protocol.md §6.3 rule 8), default true: on a segment of several cells, a
   * frame sent to another cell completes once that cell took it, or `cell-unreachable` (17) when the
   * call carrying it failed. The id stays outstanding for that trunk round trip. Nothing changes on a
   * segment of one cell.
   */
  cellCompletions?: boolean;
  /** Stamps ICMP echoes on their way through the session (bench:netns's latency budget; client/frame-trace.ts). */
  trace?: SessionTrace;
  /** Injected for tests; defaults to Math.random. */
  random?: () => number;
}

export const SESSION_DEFAULTS = { txWindow: 256, rxQueue: 256, rxBuffers: 4096, maxDeferred: 4096, callbackFlushMs: 5, initialMs: 250, maxMs: 10_000, keepaliveSeconds: 30 };

export interface SessionCounters {
  txFrames: number; txBytes: number; txOk: number; txDropped: number; txReset: number; txDeferred: number; txDeferDrops: number;
  rxFrames: number; rxBytes: number; reconnects: number; creditsPosted: number;
  /** PINGs sent only to get held completions back (LazyCompletions). */
  flushPings: number;
  /** Connections dropped (and resumed) because the segment broke the protocol in a recoverable way. */
  protocolErrors: number;
}

/** All counters at zero. */
export function newSessionCounters(): SessionCounters {
  return {
    txFrames: 0, txBytes: 0, txOk: 0, txDropped: 0, txReset: 0, txDeferred: 0, txDeferDrops: 0,
    rxFrames: 0, rxBytes: 0, reconnects: 0, creditsPosted: 0, flushPings: 0, protocolErrors: 0,
  };
}

export interface SessionEvents {
  open: (welcome: WelcomeRecord) => void;
  frames: (frames: Uint8Array[]) => void;
  close: (info: { code: number; reason: string; reconnecting: boolean }) => void;
  link: (up: boolean, reason: string) => void;
  /** A fatal refusal or protocol error: the session will not reconnect. */
  error: (error: SessionError) => void;
  /** Something went wrong that the session recovers from by itself (it reconnects); for logs. */
  warning: (error: SessionError) => void;
  /** A reconnect attempt is scheduled `delayMs` from now (attempt 1 is the first after a loss). */
  retry: (info: { attempt: number; delayMs: number }) => void;
}

/**
 * Where the connection is: idle (before start), connecting (socket opening), handshaking (HELLO sent),
 * open (WELCOME received), backoff (waiting to reconnect), closed (for good: close() or a fatal error).
 */
export type ConnectionState = "idle" | "connecting" | "handshaking" | "open" | "backoff" | "closed";
