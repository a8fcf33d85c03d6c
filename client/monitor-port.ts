// A receive-only port of kind `monitor`: the segment copies every frame it
// forwards to it (RX flag Mirrored). Unlike Session it hands on each frame's
// RX flags and arrival time, never transmits and never reconnects: a capture
// with a silent gap would lie, so a lost connection ends the capture.
// Runs in Node (pass a socketFactory built on `ws`) and in browsers (global WebSocket).
import { decodeMessage, encodeMessage } from "../datapath/tunnel/codec.ts";
import { CLOSE_CODE_INFO, isKnownCloseCode } from "../datapath/tunnel/close-codes.ts";
import {
  Feature, KEEPALIVE_REQUEST, MAX_FRAME_BYTES, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, SUBPROTOCOL_V1,
} from "../datapath/tunnel/constants.ts";
import type { StatsReplyRecord, TunnelRecord, WelcomeRecord } from "../datapath/tunnel/records.ts";
import type { SocketFactory, SocketLike } from "./session.ts";
import { EDGELAN_VERSION } from "../datapath/version.ts";

/** One frame as the monitor port received it. */
export interface MonitoredFrame {
  /** The Ethernet frame (a copy the caller may keep). */
  frame: Uint8Array;
  /** RX record flags (RxFlag bits: Flooded, Mirrored). */
  flags: number;
  /** Arrival time, microseconds since 1970. */
  timestampUs: number;
}

export interface MonitorPortOptions {
  /** `ws(s)://host/v1/segments/NAME/connect`; `kind=monitor` is added. */
  url: string;
  /** A join token of role `monitor` (a monitor port always needs one). */
  token: string;
  /** Node: a factory that can set headers; browsers: omitted (the token then goes in `?token=`). */
  socketFactory?: SocketFactory;
  /** RX buffers kept posted (default 4096); with the segment's queue they absorb bursts. */
  rxBuffers?: number;
  /** RX queue asked for at the segment (default 4096; the segment grants at most its `rxQueueFrames`). */
  rxQueue?: number;
  clientName?: string;
  /** Seconds between text keepalives; 0 disables (default 30). */
  keepaliveSeconds?: number;
}

/** Why the monitor port ended; `code` is the close code (1000 after close()). */
export interface MonitorEnd {
  code: number;
  reason: string;
  /** True when this side called close(). */
  requested: boolean;
}

const DEFAULT_RX_BUFFERS = 4096;
const DEFAULT_RX_QUEUE = 4096;
const DEFAULT_KEEPALIVE_SECONDS = 30;
const STATS_TIMEOUT_MS = 2000;

/** Arrival clock in microseconds since 1970 (sub-millisecond where the platform allows). */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * A monitor port: `start()` resolves with the WELCOME; `onFrames` sees every
 * message's frames in order; `stats()` asks the segment for the port's counters
 * (its drops say what the capture missed); `close()` says BYE and closes.
 */
export class MonitorPort {
  private socket: SocketLike | null = null;
  private welcome: WelcomeRecord | null = null;
  private creditsOutstanding = 0;
  private nextSeq = 1;
  private readonly pendingStats = new Map<number, (reply: StatsReplyRecord | null) => void>();
  private keepalive: ReturnType<typeof setInterval> | null = null;
  private closing = false;
  private framesHandler: (frames: MonitoredFrame[]) => void = () => undefined;
  private endHandler: (end: MonitorEnd) => void = () => undefined;
  private ended: MonitorEnd | null = null;

  constructor(private readonly options: MonitorPortOptions) {}

  /** Sets the handler for received frames (one call per tunnel message). */
  onFrames(handler: (frames: MonitoredFrame[]) => void): void {
    this.framesHandler = handler;
  }

  /** Sets the handler called once when the port ends (refused, closed by the segment, lost, or close()). */
  onEnd(handler: (end: MonitorEnd) => void): void {
    this.endHandler = handler;
    if (this.ended !== null) handler(this.ended);
  }

  /** Connects and says HELLO; resolves with the WELCOME, rejects with a message a user can act on. */
  start(): Promise<WelcomeRecord> {
    return new Promise((resolve, reject) => {
      const url = new URL(this.options.url);
      url.searchParams.set("kind", "monitor");
      const headers: Record<string, string> = {};
      if (this.options.socketFactory !== undefined) headers.authorization = `Bearer ${this.options.token}`;
      else url.searchParams.set("token", this.options.token);
      const socket = (this.options.socketFactory ?? browserSocket)(url.toString(), [SUBPROTOCOL_V1], headers);
      socket.binaryType = "arraybuffer";
      this.socket = socket;
      let transportError = "";
      socket.onopen = () => {
        if (socket.protocol !== SUBPROTOCOL_V1) {
          this.finish(4001, `the relay did not select the ${SUBPROTOCOL_V1} subprotocol`);
          socket.close(1000, "subprotocol not selected");
          return;
        }
        this.send([this.hello(), ...this.creditTopUp()]);
      };
      socket.onmessage = (event) => {
        const welcome = this.onMessage(event.data);
        if (welcome !== null) {
          this.startKeepalive();
          resolve(welcome);
        }
      };
      socket.onerror = (event) => {
        const message = (event as { message?: unknown } | null)?.message;
        if (typeof message === "string") transportError = message;
      };
      socket.onclose = (event) => {
        const reason = describeClose(event.code, event.reason, event.httpStatus, transportError);
        if (this.welcome === null) reject(new Error(reason));
        this.finish(event.code, reason);
      };
    });
  }

  /** The port's counters at the segment, or null when the port is gone or the segment does not answer within 2 s. */
  stats(): Promise<StatsReplyRecord | null> {
    if (this.socket === null || this.welcome === null || this.ended !== null) return Promise.resolve(null);
    const seq = this.nextSeq++ & 0xffff;
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(null), STATS_TIMEOUT_MS);
      const settle = (reply: StatsReplyRecord | null): void => {
        clearTimeout(timer);
        this.pendingStats.delete(seq);
        resolve(reply);
      };
      this.pendingStats.set(seq, settle);
      this.send([{ type: "stats-request", seq }]);
    });
  }

  /** Says BYE and closes; the end handler sees `requested: true`. */
  close(): void {
    if (this.closing || this.socket === null) return;
    this.closing = true;
    if (this.welcome !== null && this.ended === null) this.send([{ type: "bye", code: 1000, reason: "capture finished" }]);
    try {
      this.socket.close(1000, "capture finished");
    } catch {
      // Already closed.
    }
  }

  private hello(): TunnelRecord {
    return {
      type: "hello", minVersion: PROTOCOL_VERSION_MIN, maxVersion: PROTOCOL_VERSION_MAX,
      features: Feature.RxQueue | Feature.Stats | Feature.Vlan | Feature.LargeFrames,
      portKind: "monitor", macs: [], txWindow: 1, rxQueue: this.options.rxQueue ?? DEFAULT_RX_QUEUE,
      clientName: this.options.clientName ?? "edgelan-capture", clientVersion: EDGELAN_VERSION,
    };
  }

  /** An rx-post that brings posted buffers back to the target once a quarter is used, or nothing. */
  private creditTopUp(): TunnelRecord[] {
    const target = this.options.rxBuffers ?? DEFAULT_RX_BUFFERS;
    const missing = target - this.creditsOutstanding;
    if (missing <= 0 || (this.creditsOutstanding > 0 && missing < target / 4)) return [];
    this.creditsOutstanding += missing;
    // Large enough for any frame the segment may mirror (jumbo and tagged frames included).
    return [{ type: "rx-post", count: missing, bufferSize: MAX_FRAME_BYTES }];
  }

  /** Handles one message; returns the WELCOME when this message carried it. */
  private onMessage(data: unknown): WelcomeRecord | null {
    if (!(data instanceof ArrayBuffer)) return null; // the keepalive answer is text
    const decoded = decodeMessage(new Uint8Array(data));
    if (!decoded.ok) {
      this.socket?.close(4000, "undecodable message from segment");
      return null;
    }
    const timestampUs = nowMicros();
    const frames: MonitoredFrame[] = [];
    const replies: TunnelRecord[] = [];
    let welcomed: WelcomeRecord | null = null;
    for (const record of decoded.value) {
      switch (record.type) {
        case "welcome":
          this.welcome = record;
          welcomed = record;
          break;
        case "rx":
          // A copy: a held view would keep the whole message (up to 1 MiB) alive.
          frames.push({ frame: record.frame.slice(), flags: record.flags, timestampUs });
          break;
        case "stats-reply":
          this.pendingStats.get(record.seq)?.(record);
          break;
        case "ping":
          replies.push({ type: "pong", seq: record.seq, timestamp: record.timestamp });
          break;
        default:
          break; // refuse and bye are followed by the close that ends the port
      }
    }
    // A segment never sends more than was posted; if one did, the count must not go below zero and over-post.
    this.creditsOutstanding = Math.max(0, this.creditsOutstanding - frames.length);
    if (frames.length > 0) this.framesHandler(frames);
    replies.push(...this.creditTopUp());
    if (replies.length > 0 && this.welcome !== null) this.send(replies);
    return welcomed;
  }

  private send(records: TunnelRecord[]): void {
    if (this.socket === null || this.socket.readyState !== 1) return;
    this.socket.send(encodeMessage(records));
  }

  private startKeepalive(): void {
    const seconds = this.options.keepaliveSeconds ?? DEFAULT_KEEPALIVE_SECONDS;
    if (seconds <= 0) return;
    this.keepalive = setInterval(() => {
      if (this.socket?.readyState === 1) this.socket.send(KEEPALIVE_REQUEST);
    }, seconds * 1000);
  }

  private finish(code: number, reason: string): void {
    if (this.ended !== null) return;
    if (this.keepalive !== null) clearInterval(this.keepalive);
    for (const settle of [...this.pendingStats.values()]) settle(null);
    this.ended = { code, reason, requested: this.closing };
    this.endHandler(this.ended);
  }
}

/** A message a user can act on for a close before or after the WELCOME. */
function describeClose(code: number, reason: string, httpStatus: number | undefined, transportError: string): string {
  if (httpStatus !== undefined && httpStatus !== 101) return `the relay refused the monitor port: HTTP ${httpStatus}${reason ? ` (${reason})` : ""}`;
  if (isKnownCloseCode(code)) return `segment closed the monitor port: ${CLOSE_CODE_INFO[code].meaning}${reason ? ` (${reason})` : ""}`;
  if (code === 1006) return `lost the connection to the relay (${transportError || "connection failed or dropped"})`;
  return `monitor port closed with code ${code}${reason ? `: ${reason}` : ""}`;
}

/** The browser's global WebSocket. */
function browserSocket(url: string, protocols: string[]): SocketLike {
  const Global = (globalThis as unknown as { WebSocket?: new (url: string, protocols: string[]) => SocketLike }).WebSocket;
  if (Global === undefined) throw new Error("no global WebSocket here: pass socketFactory (for example one built on the `ws` package)");
  return new Global(url, protocols);
}
