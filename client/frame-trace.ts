// A latency trace for `bench:netns`'s budget mode: when the environment variable
// EDGELAN_TRACE_FILE names a file, the TAP backend and the session stamp every
// ICMP echo (request or reply) at five points of its way through this process,
// with CLOCK_MONOTONIC (process.hrtime.bigint(), the same clock in every process
// on the machine), and append `point type id seq ns sent received` lines to that
// file, where sent/received count the binary WebSocket messages the session sent
// and received so far (so a budget can tell how many messages a ping cost). Without
// the variable (and in browsers) `frameTrace` is null and costs one comparison.
//
// Points: tap-read (the addon handed the frame over), ws-sending (the message that
// carries it is about to go to the socket), ws-send (the socket's send returned),
// ws-recv (the message that carries it arrived), tap-write (the frame is handed to
// the TAP's write()).
import { appendFileSync } from "node:fs";
import type { SessionTrace, TracePoint } from "./session/trace.ts";

export type { SessionTrace, TracePoint };

/** Lines kept in memory before they are appended to the file (and at least once a second). */
const FLUSH_LINES = 256;

const ETHERTYPE_IPV4 = 0x0800;
const IP_PROTOCOL_ICMP = 1;
const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;

/** The echo identity of an Ethernet frame at `offset` in `bytes`: "type id seq", or null for anything else. */
export function echoKey(bytes: Uint8Array, offset: number): string | null {
  const ip = offset + 14;
  if (bytes.length < ip + 20 || ((bytes[offset + 12] as number) << 8 | (bytes[offset + 13] as number)) !== ETHERTYPE_IPV4) return null;
  if (bytes[ip + 9] !== IP_PROTOCOL_ICMP) return null;
  const icmp = ip + ((bytes[ip] as number) & 0x0f) * 4;
  if (bytes.length < icmp + 8) return null;
  const type = bytes[icmp] as number;
  if (type !== ICMP_ECHO_REQUEST && type !== ICMP_ECHO_REPLY) return null;
  const id = (bytes[icmp + 4] as number) << 8 | (bytes[icmp + 5] as number);
  const seq = (bytes[icmp + 6] as number) << 8 | (bytes[icmp + 7] as number);
  return `${type} ${id} ${seq}`;
}

/** Collects trace lines and appends them to one file. */
export class FrameTrace implements SessionTrace {
  private lines: string[] = [];
  /** Echo keys added to the message being built, stamped ws-sending and ws-send when it goes out. */
  private queued: string[] = [];
  /** Binary messages the session sent and received so far (text keepalives are not counted). */
  private messagesSent = 0;
  private messagesReceived = 0;

  constructor(private readonly path: string) {
    const timer = setInterval(() => this.flush(), 1000);
    timer.unref();
    process.once("exit", () => this.flush());
  }

  /** Stamps `point` for the frame at `offset` in `bytes` if it is an ICMP echo. */
  mark(point: TracePoint, bytes: Uint8Array, offset: number): void {
    const key = echoKey(bytes, offset);
    if (key !== null) this.record(point, key);
  }

  /** Remembers an echo frame added to the outgoing message (stamped by `sending()` and `sent()`). */
  queue(bytes: Uint8Array, offset: number): void {
    const key = echoKey(bytes, offset);
    if (key !== null) this.queued.push(key);
  }

  /** The outgoing message is about to go to the socket: stamps ws-sending for every echo it carries. */
  sending(): void {
    this.messagesSent++;
    for (const key of this.queued) this.record("ws-sending", key);
  }

  /** A binary message arrived (before its records are walked). */
  received(): void {
    this.messagesReceived++;
  }

  /** The outgoing message went to the socket (`send` returned): stamps ws-send for every echo it carries. */
  sent(): void {
    if (this.queued.length === 0) return;
    for (const key of this.queued) this.record("ws-send", key);
    this.queued = [];
  }

  /** The message being built was discarded (connection lost). */
  discard(): void {
    this.queued = [];
  }

  private record(point: TracePoint, key: string): void {
    this.lines.push(`${point} ${key} ${process.hrtime.bigint()} ${this.messagesSent} ${this.messagesReceived}\n`);
    if (this.lines.length >= FLUSH_LINES) this.flush();
  }

  flush(): void {
    if (this.lines.length === 0) return;
    const text = this.lines.join("");
    this.lines = [];
    try {
      appendFileSync(this.path, text);
    } catch {
      // A diagnostic must never end the agent.
    }
  }
}

function fromEnvironment(): FrameTrace | null {
  const path = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.EDGELAN_TRACE_FILE;
  return path === undefined || path === "" ? null : new FrameTrace(path);
}

/** The process's trace, or null when EDGELAN_TRACE_FILE is not set. */
export const frameTrace: FrameTrace | null = fromEnvironment();
