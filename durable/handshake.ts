import { randomLocalMac, formatMac } from "../datapath/mac.ts";
import { macRefusal, type SegmentSwitch } from "../datapath/segment-switch.ts";
import { CloseCode } from "../datapath/tunnel/close-codes.ts";
import { AckStatus, Feature, KNOWN_FEATURES, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from "../datapath/tunnel/constants.ts";
import type { HelloRecord, TunnelRecord } from "../datapath/tunnel/records.ts";
import { grantTxWindow } from "../datapath/tunnel/tx-window.ts";
import type { SegmentConfig } from "./config.ts";
import type { PortRuntime } from "./port.ts";
import { RESUME_GRACE_MS, type SessionStore, type StoredSession } from "./sessions.ts";

/** How long a descriptor port may take to say HELLO (protocol.md §11.1); the alarm fires at the deadline. */
export const HELLO_TIMEOUT_MS = 10_000;
/** The segment grants at most this TX window, whatever a client asks. */
const MAX_GRANTED_TX_WINDOW = 1024;
/** What this relay implements, so what it grants of what a HELLO offers: every feature it knows. */
const RELAY_FEATURES = KNOWN_FEATURES;

/** What the handshake needs from the relay. */
export interface HandshakeHost {
  readonly switch: SegmentSwitch;
  readonly sessions: SessionStore | null;
  readonly config: SegmentConfig;
  now(): number;
  isConnected(runtime: PortRuntime): boolean;
  runtimes(): PortRuntime[];
  portIdInUse(portId: number): boolean;
  renumber(runtime: PortRuntime, portId: number): void;
  closePort(runtime: PortRuntime, code: number, reason: string): void;
  protocolError(runtime: PortRuntime, code: number, reason: string): void;
  bump(counter: "hellosRefused" | "sessionsResumed"): void;
  applyRecords(runtime: PortRuntime, records: readonly TunnelRecord[]): void;
  replay(runtime: PortRuntime, messages: readonly Uint8Array[]): void;
  persist(runtime: PortRuntime): void;
}

/** A refusal: the close code REFUSE names, and why. */
interface Refusal {
  code: number;
  reason: string;
}

/**
 * HELLO → WELCOME or REFUSE (protocol.md §11.1), and resume (§11.3): a verified resume gets its
 * port id, MACs (those still free), receive filter and counters back; a stale socket of the same
 * session is closed with 4011.
 */
export class Handshake {
  constructor(private readonly host: HandshakeHost) {}

  /**
   * The first message: it must start with HELLO, and carry no TX (the window is not known before
   * WELCOME: close 4006). A HELLO that resumes looks the session up in storage first; messages that
   * arrive meanwhile are held and applied afterwards.
   */
  onHello(runtime: PortRuntime, records: readonly TunnelRecord[]): void {
    const { host } = this;
    const hello = records[0];
    if (hello === undefined || hello.type !== "hello") {
      host.protocolError(runtime, CloseCode.HandshakeTimeout, "the first message must start with HELLO");
      return;
    }
    const rest = records.slice(1);
    if (rest.some((record) => record.type === "tx")) {
      host.protocolError(runtime, CloseCode.UnexpectedRecord, "a TX record before WELCOME (TX must wait for the granted window)");
      return;
    }
    const sessions = host.sessions;
    if (hello.resume === undefined || sessions === null || (hello.features & Feature.Resume) === 0) {
      this.complete(runtime, hello, rest, undefined);
      return;
    }
    runtime.heldMessages = [];
    const sessionId = toHex(hello.resume.sessionId);
    void sessions.verify(sessionId, toHex(hello.resume.token), host.now()).then((stored) => {
      if (!host.isConnected(runtime)) return;
      const held = runtime.heldMessages ?? [];
      runtime.heldMessages = null;
      if (stored !== undefined) this.takeOver(runtime, sessionId, stored);
      this.complete(runtime, hello, rest, stored);
      host.replay(runtime, held);
    });
  }

  /** Stores the port's resumable session for `lifetimeMs` (its MACs, filter and counters as they are now). */
  saveSession(runtime: PortRuntime, lifetimeMs: number, token?: string): void {
    const { attachment } = runtime;
    const sessions = this.host.sessions;
    if (sessions === null || (runtime.port.state.features & Feature.Resume) === 0 || attachment.phase !== "open") return;
    const resumeToken = token ?? attachment.resumeToken;
    if (resumeToken === undefined) return;
    attachment.resumeToken = resumeToken;
    const { state } = runtime.port;
    sessions.save(attachment.sessionId, {
      token: resumeToken, portId: attachment.portId, kind: state.kind, macs: state.macs, filter: state.filter, counters: state.counters,
      expiresAt: this.host.now() + lifetimeMs,
    });
  }

  /**
   * A verified resume: a socket of the session still open is closed (4011) and its live state taken;
   * the session's port id comes back when no connected port uses it.
   */
  private takeOver(runtime: PortRuntime, sessionId: string, stored: StoredSession): void {
    const { host } = this;
    const state = runtime.port.state;
    state.filter = stored.filter ?? state.filter;
    state.counters = stored.counters ?? state.counters;
    for (const other of host.runtimes()) {
      if (other === runtime || other.attachment.sessionId !== sessionId) continue;
      host.closePort(other, CloseCode.Replaced, "session resumed on a new connection");
      state.filter = other.port.state.filter;
      state.counters = other.port.state.counters;
    }
    runtime.attachment.sessionId = sessionId;
    if (!host.portIdInUse(stored.portId)) host.renumber(runtime, stored.portId);
    host.bump("sessionsResumed");
  }

  /** Negotiates, then answers WELCOME (and applies the rest of the message) or REFUSE. */
  private complete(runtime: PortRuntime, hello: HelloRecord, rest: readonly TunnelRecord[], resumed: StoredSession | undefined): void {
    const { host } = this;
    const refusal = this.negotiate(runtime, hello, resumed);
    if (refusal !== null) {
      host.bump("hellosRefused");
      host.switch.reply(runtime.port, { type: "refuse", code: refusal.code, reason: refusal.reason });
      host.closePort(runtime, refusal.code, refusal.reason);
      return;
    }
    const { attachment, port } = runtime;
    attachment.phase = "open";
    attachment.helloDeadline = 0;
    const features = port.state.features;
    const resumeToken = (features & Feature.Resume) !== 0 && host.sessions !== null ? crypto.getRandomValues(new Uint8Array(16)) : new Uint8Array(0);
    if (resumeToken.length > 0) this.saveSession(runtime, RESUME_GRACE_MS, toHex(resumeToken));
    host.switch.reply(port, {
      type: "welcome", version: attachment.version, features, portId: attachment.portId,
      maxFrameSize: port.maxFrameSize(host.config.maxFrameSize), txWindow: port.state.txWindow, rxQueue: port.ledger?.maxQueueFrames ?? 0,
      sessionId: fromHex(attachment.sessionId), resumeToken, macs: port.state.macs,
    });
    host.persist(runtime);
    host.applyRecords(runtime, rest);
  }

  /** Agrees version, kind, MACs, features and window, and opens the port in the switch; returns a refusal or null. */
  private negotiate(runtime: PortRuntime, hello: HelloRecord, resumed: StoredSession | undefined): Refusal | null {
    const { attachment, port } = runtime;
    const { config } = this.host;
    if (hello.minVersion > PROTOCOL_VERSION_MAX || hello.maxVersion < PROTOCOL_VERSION_MIN) {
      return { code: CloseCode.UnsupportedVersion, reason: `the segment speaks versions ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION_MAX}; the client offered ${hello.minVersion}..${hello.maxVersion}` };
    }
    if (hello.portKind !== attachment.authorizedKind) {
      return { code: CloseCode.Policy, reason: `HELLO asks for a ${hello.portKind} port but the join was authorized for ${attachment.authorizedKind} (use ?kind=${hello.portKind} and a matching token)` };
    }
    const macs = this.requestedMacs(runtime, hello, resumed);
    if (hello.portKind === "monitor" && macs.length > 0) return { code: CloseCode.Policy, reason: "a monitor port cannot own MACs" };
    const refusal = macRefusal(attachment.boundMacs, macs);
    if (refusal !== null) return { code: refusal.status === AckStatus.InvalidMac ? CloseCode.InvalidMac : CloseCode.Policy, reason: refusal.reason };
    if (hello.portKind === "member" && macs.length === 0) macs.push(randomLocalMac());
    const { state } = port;
    state.kind = hello.portKind;
    state.macs = macs;
    state.features = (hello.features & RELAY_FEATURES) >>> 0;
    state.txWindow = grantTxWindow(hello.txWindow, MAX_GRANTED_TX_WINDOW);
    attachment.version = PROTOCOL_VERSION_MAX;
    // Without the RxQueue feature frames that find no credit are dropped at once.
    const wantedQueue = hello.rxQueue > 0 ? hello.rxQueue : config.rxQueueFrames;
    const queueFrames = (state.features & Feature.RxQueue) === 0 ? 0 : Math.min(wantedQueue, config.rxQueueFrames);
    if (!this.host.switch.open(port, queueFrames).ok) {
      return { code: CloseCode.MacTaken, reason: `a requested MAC is registered by another port (${macs.map(formatMac).join(", ")})` };
    }
    return null;
  }

  /** The HELLO's MACs; else those of a resumed session that are still free; else the token's binding. */
  private requestedMacs(runtime: PortRuntime, hello: HelloRecord, resumed: StoredSession | undefined): number[] {
    if (hello.macs.length > 0) return [...hello.macs];
    if (resumed !== undefined && resumed.macs.length > 0) return resumed.macs.filter((mac) => this.host.switch.macOwner(mac) === undefined);
    return [...(runtime.attachment.boundMacs ?? [])];
  }
}

/** Bytes as lower-case hex (session ids and resume tokens are stored so). */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
