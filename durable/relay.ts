import { describeCounters, newPortCounters } from "../datapath/counters.ts";
import type { FdbSummary } from "../datapath/fdb.ts";
import { formatMac, type MacKey } from "../datapath/mac.ts";
import type { PortKind } from "../datapath/port-kind.ts";
import type { Failure } from "../datapath/result.ts";
import { SegmentSwitch, type SwitchConfig, type SwitchCounters } from "../datapath/segment-switch.ts";
import type { TxBatch } from "../datapath/tx-batch.ts";
import { CloseCode, closeCodeForDecodeError } from "../datapath/tunnel/close-codes.ts";
import { decodeMessage, forEachRecord, type RecordVisitor } from "../datapath/tunnel/codec.ts";
import { AckStatus, Feature, KEEPALIVE_REQUEST } from "../datapath/tunnel/constants.ts";
import type { DecodeErrorCode, TunnelRecord } from "../datapath/tunnel/records.ts";
import type { PortAuth } from "../contract/port-request.ts";
import type { PortInfo, PortStats, RelayCounters } from "../contract/segment-api.ts";
import { policerLimitsOf, rawEgressLimitsOf, type SegmentConfig } from "./config.ts";
import { Handshake, HELLO_TIMEOUT_MS, toHex, type HandshakeHost } from "./handshake.ts";
import { ATTACHMENT_VERSION, type PortAttachment, type PortMode, type PortRuntime } from "./port.ts";
import { closeQuietly, PortWriter } from "./port-writer.ts";
import { RESUME_GRACE_MS, type SessionStore } from "./sessions.ts";

/** What the Worker and the segment established about a join before the socket reached the relay. */
export interface JoinGrant {
  portId: number;
  mode: PortMode;
  kind: PortKind;
  boundMacs: MacKey[] | null;
  remote: string;
  auth: PortAuth;
  tokenExp: number | null;
}

/** The segment-level counters the relay and its switch keep (stored; the admin API adds sums and instanceStarts). */
export type SegmentCounters = RelayCounters & SwitchCounters;

/**
 * The relay: the sockets of one segment and their sessions, around one SegmentSwitch.
 * Per message: decode (or walk) the records, apply control records, hand the TX batch
 * to the switch, then flush (one message per touched port, attachment writes).
 * The Durable Object owns storage and routing; the switch owns every frame rule.
 */
export class SegmentRelay implements HandshakeHost {
  readonly switch: SegmentSwitch;
  private readonly sockets = new Map<WebSocket, PortRuntime>();
  private readonly byId = new Map<number, PortRuntime>();
  private readonly writer = new PortWriter(
    (runtime) => this.sockets.get(runtime.ws) === runtime,
    (runtime, code, reason) => this.closePort(runtime, code, reason),
  );
  private readonly handshake: Handshake;
  private readonly own: RelayCounters = {
    portsAccepted: 0, portsClosed: 0, hellosRefused: 0, sessionsResumed: 0, malformedMessages: 0, protocolErrors: 0, windowOverruns: 0,
  };
  private ownChanged = false;
  /** The port whose open-session message `visitor` is walking; null once that port was closed. */
  private visiting: PortRuntime | null = null;
  private visitedTx = false;
  /** The switch's TX batch being collected for `visiting`. */
  private batch: TxBatch;
  private readonly visitor: RecordVisitor = {
    tx: (id, flags, frame) => {
      this.visitedTx = true;
      this.batch.addTx(id, flags, frame);
    },
    rxPost: (count, bufferSize) => {
      const runtime = this.visiting;
      if (runtime !== null && !this.postCredits(runtime, count, bufferSize)) this.visiting = null;
    },
    record: (record) => {
      const runtime = this.visiting;
      if (runtime !== null && !this.onRecord(runtime, record)) this.visiting = null;
    },
  };

  constructor(
    public config: SegmentConfig,
    readonly sessions: SessionStore | null,
    readonly now: () => number = Date.now,
    storedCounters?: Partial<SegmentCounters>,
  ) {
    this.switch = new SegmentSwitch(switchConfigOf(config), now);
    for (const key of Object.keys(this.own) as (keyof RelayCounters)[]) this.own[key] = storedCounters?.[key] ?? 0;
    for (const key of Object.keys(this.switch.counters) as (keyof SwitchCounters)[]) this.switch.counters[key] = storedCounters?.[key] ?? 0;
    this.handshake = new Handshake(this);
    this.batch = this.switch.beginTx(null);
  }

  /** Segment-level counters, for storage and the admin API. */
  get counters(): SegmentCounters {
    return { ...this.own, ...this.switch.counters };
  }

  /** Whether `counters` changed since `countersSaved()`. */
  get countersChanged(): boolean {
    return this.ownChanged || this.switch.countersChanged;
  }

  /** The segment stored the counters. */
  countersSaved(): void {
    this.ownChanged = false;
    this.switch.countersChanged = false;
  }

  /** Applies new segment settings; connected ports stay. */
  reconfigure(config: SegmentConfig): void {
    this.config = config;
    this.switch.reconfigure(switchConfigOf(config));
  }

  /**
   * Rebuilds every port from its socket attachment after the object was evicted (hibernation) or
   * restarted: MACs go back into the forwarding table, credits and counters carry on, and frames that
   * were queued in memory are counted as flushed.
   */
  restore(sockets: readonly WebSocket[]): void {
    for (const ws of sockets) {
      const attachment = ws.deserializeAttachment() as PortAttachment | null;
      if (attachment === null || attachment.v !== ATTACHMENT_VERSION) {
        closeQuietly(ws, CloseCode.SegmentRestarting, "port state lost; reconnect");
        continue;
      }
      const runtime = this.attach(ws, attachment);
      if (attachment.phase === "open" && !this.switch.open(runtime.port).ok) {
        this.closePort(runtime, CloseCode.MacTaken, "a MAC of this port is registered by another port");
      }
    }
    this.switch.flush();
  }

  /** Connected ports, counting those still negotiating. */
  get portCount(): number {
    return this.sockets.size;
  }

  /** Bytes queued for ports without credit, segment-wide. */
  get queuedBytes(): number {
    return this.switch.queuedBytes;
  }

  /** Takes a freshly accepted socket. Raw ports are open at once; descriptor ports wait for HELLO (the alarm enforces the deadline). */
  accept(ws: WebSocket, grant: JoinGrant): void {
    const raw = grant.mode === "raw";
    const now = this.now();
    const attachment: PortAttachment = {
      v: ATTACHMENT_VERSION, portId: grant.portId, mode: grant.mode, phase: raw ? "open" : "hello",
      authorizedKind: grant.kind, boundMacs: grant.boundMacs, version: 0, sessionId: toHex(crypto.getRandomValues(new Uint8Array(16))), remote: grant.remote,
      auth: grant.auth, tokenExp: grant.tokenExp, connectedAt: now, helloDeadline: raw ? 0 : now + HELLO_TIMEOUT_MS,
      port: {
        kind: grant.kind, macs: raw ? [...(grant.boundMacs ?? [])] : [], filter: { promiscuous: false, allMulticast: false, multicast: [] },
        features: 0, txWindow: 0, credits: null, counters: newPortCounters(), heldCompletions: [],
      },
    };
    const runtime = this.attach(ws, attachment);
    this.bump("portsAccepted");
    if (raw && !this.config.rawMode) {
      this.protocolError(runtime, CloseCode.Policy, "raw mode is disabled on this segment (setting rawMode); use the edgelan.v1 subprotocol");
      return;
    }
    if (raw && !this.switch.open(runtime.port).ok) {
      this.closePort(runtime, CloseCode.MacTaken, "a MAC bound to this token is registered by another port");
      return;
    }
    this.writer.persist(runtime);
  }

  /** Handles one WebSocket message from a port. */
  onMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const runtime = this.sockets.get(ws);
    if (runtime === undefined) return;
    if (typeof message === "string") {
      this.bump("malformedMessages");
      this.protocolError(runtime, CloseCode.Malformed, `text messages are not part of the protocol (except the keepalive ${JSON.stringify(KEEPALIVE_REQUEST)})`);
      return;
    }
    const bytes = new Uint8Array(message);
    if (runtime.heldMessages !== null) runtime.heldMessages.push(bytes);
    else if (runtime.attachment.mode === "raw") this.switch.rawFrame(runtime.port, bytes);
    else this.onDescriptorMessage(runtime, bytes);
    this.switch.flush();
  }

  /** A socket closed or failed: the port leaves (its queue counted flushed). Without a BYE its session stays resumable for a grace period. */
  onClose(ws: WebSocket, code: number): void {
    const runtime = this.sockets.get(ws);
    if (runtime === undefined) return;
    this.detach(runtime);
    if (code !== CloseCode.Normal) this.handshake.saveSession(runtime, RESUME_GRACE_MS);
    else this.sessions?.forget(runtime.attachment.sessionId);
  }

  /** Closes every port with one code (segment deleted or reset); ports with LinkNotices hear the link go down first. Returns how many. */
  closeAll(code: number, reason: string): number {
    const all = [...this.sockets.values()];
    for (const runtime of all) {
      if (runtime.attachment.phase === "open" && (runtime.port.state.features & Feature.LinkNotices) !== 0) {
        this.switch.reply(runtime.port, { type: "link", up: false, reason });
      }
      this.closePort(runtime, code, reason);
    }
    return all.length;
  }

  /** Closes ports that did not say HELLO by their deadline. */
  expireHellos(): void {
    const now = this.now();
    for (const runtime of [...this.sockets.values()]) {
      if (runtime.attachment.phase === "hello" && runtime.attachment.helloDeadline <= now) {
        this.protocolError(runtime, CloseCode.HandshakeTimeout, `no HELLO within ${HELLO_TIMEOUT_MS / 1000} s`);
      }
    }
  }

  /** The earliest HELLO deadline of a negotiating port, if any. */
  nextHelloDeadline(): number | undefined {
    let next: number | undefined;
    for (const { attachment } of this.sockets.values()) {
      if (attachment.phase === "hello") next = Math.min(next ?? Infinity, attachment.helloDeadline);
    }
    return next;
  }

  /** Ages the forwarding table. */
  age(): void {
    this.switch.age();
  }

  /** When the next learned entry expires, if any. */
  nextAgingDeadline(): number | undefined {
    return this.switch.nextAgingDeadline();
  }

  /** Connected ports for the admin API. */
  listPorts(): PortInfo[] {
    return [...this.byId.values()].map(({ attachment, port }) => ({
      portId: attachment.portId, kind: port.state.kind, mode: attachment.mode, phase: attachment.phase, macs: port.state.macs.map(formatMac),
      remote: attachment.remote, connectedSince: new Date(attachment.connectedAt).toISOString(),
    }));
  }

  /** Per-port counters, credits and queues for the admin API. */
  portStats(): PortStats[] {
    return [...this.byId.values()].map(({ attachment, port }) => ({
      portId: attachment.portId, kind: port.state.kind, mode: attachment.mode, counters: describeCounters(port.state.counters),
      credits: port.ledger?.available ?? (attachment.mode === "raw" ? null : 0), queuedFrames: port.ledger?.queuedFrames ?? 0,
      queuedBytes: port.ledger?.queuedBytes ?? 0,
    }));
  }

  /** The forwarding table summary for the admin API. */
  fdbSummary(): FdbSummary {
    return this.switch.fdbSummary();
  }

  // ---- HandshakeHost --------------------------------------------------------------

  /** Counts a segment-level event (rare: connects, closes, errors), so the segment persists it. */
  bump(counter: keyof RelayCounters): void {
    this.own[counter]++;
    this.ownChanged = true;
  }

  /** Whether the runtime's socket is still connected. */
  isConnected(runtime: PortRuntime): boolean {
    return this.sockets.get(runtime.ws) === runtime;
  }

  /** Connected runtimes. */
  runtimes(): PortRuntime[] {
    return [...this.sockets.values()];
  }

  /** Gives a runtime another port id (a resumed session's), re-indexing it. */
  renumber(runtime: PortRuntime, portId: number): void {
    if (this.byId.get(runtime.attachment.portId) === runtime) this.byId.delete(runtime.attachment.portId);
    this.switch.detach(runtime.port.id);
    runtime.attachment.portId = portId;
    runtime.port = this.switch.attach(
      portId, runtime.attachment.mode, runtime.attachment.port, this.writer.sinkFor(runtime.ws, () => this.sockets.get(runtime.ws)),
      { boundMacs: runtime.attachment.boundMacs, limits: runtime.attachment.tokenLimits ?? null },
    );
    this.byId.set(portId, runtime);
  }

  /** Whether a port id is in use by a connected socket. */
  portIdInUse(portId: number): boolean {
    return this.byId.has(portId);
  }

  /** Applies the records that followed a HELLO, once WELCOME went out. */
  applyRecords(runtime: PortRuntime, records: readonly TunnelRecord[]): void {
    for (const record of records) {
      if (!this.onRecord(runtime, record)) return;
    }
    this.switch.endMessage(runtime.port, false);
  }

  /** Messages held during an async resume look-up, applied in order. */
  replay(runtime: PortRuntime, messages: readonly Uint8Array[]): void {
    for (const message of messages) {
      if (this.isConnected(runtime)) this.onDescriptorMessage(runtime, message);
    }
    this.switch.flush();
  }

  /** Writes the port's attachment now. */
  persist(runtime: PortRuntime): void {
    this.writer.persist(runtime);
  }

  /** Closes a port's socket with a code, after sending what it holds (held completions too). */
  closePort(runtime: PortRuntime, code: number, reason: string): void {
    this.sessions?.forget(runtime.attachment.sessionId); // a port the segment closed is not resumable (protocol.md §11.3)
    this.switch.flushPort(runtime.port);
    closeQuietly(runtime.ws, code, reason);
    this.detach(runtime);
  }

  /** Counts a protocol violation and closes the port with its code. */
  protocolError(runtime: PortRuntime, code: number, reason: string): void {
    this.bump("protocolErrors");
    this.closePort(runtime, code, reason);
  }

  // ---- attaching and detaching ------------------------------------------------------

  /** Creates the live runtime for a socket and indexes it. */
  private attach(ws: WebSocket, attachment: PortAttachment): PortRuntime {
    const sink = this.writer.sinkFor(ws, () => this.sockets.get(ws));
    const port = this.switch.attach(attachment.portId, attachment.mode, attachment.port, sink, { boundMacs: attachment.boundMacs, limits: attachment.tokenLimits ?? null });
    const runtime: PortRuntime = { ws, attachment, port, heldMessages: null };
    this.sockets.set(ws, runtime);
    this.byId.set(attachment.portId, runtime);
    return runtime;
  }

  /** Removes a socket's port from every index and the switch (its queue is counted flushed). */
  private detach(runtime: PortRuntime): void {
    if (!this.sockets.delete(runtime.ws)) return;
    if (this.byId.get(runtime.attachment.portId) === runtime) this.byId.delete(runtime.attachment.portId);
    if (this.switch.port(runtime.port.id) === runtime.port) this.switch.detach(runtime.port.id);
    this.bump("portsClosed");
  }

  // ---- descriptor messages ------------------------------------------------------------

  /**
   * One message from a descriptor port. An open session's message is walked with a visitor
   * (forEachRecord validates the whole message first, then visits): TX records go straight into the
   * switch's batch, with no object per record. HELLO, a cold path, decodes into records.
   */
  private onDescriptorMessage(runtime: PortRuntime, bytes: Uint8Array): void {
    if (runtime.attachment.phase === "hello") {
      const decoded = decodeMessage(bytes);
      if (!decoded.ok) this.onMalformed(runtime, decoded.error);
      else this.handshake.onHello(runtime, decoded.value);
      return;
    }
    this.batch = this.switch.beginTx(runtime.port);
    this.visiting = runtime;
    this.visitedTx = false;
    const walked = forEachRecord(bytes, this.visitor);
    const stillOpen = this.visiting === runtime;
    this.visiting = null;
    if (!walked.ok) this.onMalformed(runtime, walked.error);
    else if (stillOpen) this.endTx(runtime, this.visitedTx);
  }

  /** A message that failed to decode: nothing of it was applied; the port is closed with the matching code. */
  private onMalformed(runtime: PortRuntime, error: Failure<DecodeErrorCode>): void {
    this.bump("malformedMessages");
    this.protocolError(runtime, closeCodeForDecodeError(error.code), error.message);
  }

  /** Switches the message's TX batch (the window checked first) and applies the lazy-completion rule. */
  private endTx(runtime: PortRuntime, hadTx: boolean): void {
    const sent = this.switch.transmit(runtime.port);
    if (!sent.ok) {
      this.bump("windowOverruns");
      this.protocolError(runtime, CloseCode.WindowOverrun, sent.error.message);
      return;
    }
    this.switch.endMessage(runtime.port, hadTx);
  }

  /** New credits; false when the post was invalid (the port was closed). */
  private postCredits(runtime: PortRuntime, count: number, bufferSize: number): boolean {
    const posted = this.switch.postCredits(runtime.port, count, bufferSize);
    if (!posted.ok) this.protocolError(runtime, CloseCode.RxPostInvalid, posted.error.message);
    return posted.ok;
  }

  /** Applies one record of an open session; returns false when the port was closed. */
  private onRecord(runtime: PortRuntime, record: TunnelRecord): boolean {
    const { port } = runtime;
    switch (record.type) {
      case "rx-post":
        return this.postCredits(runtime, record.count, record.bufferSize);
      case "set-filter":
        return this.ack(runtime, record.seq, this.switch.setFilter(port, record));
      case "add-mac":
        return this.ack(runtime, record.seq, this.switch.addMac(port, record.mac, runtime.attachment.boundMacs));
      case "remove-mac":
        return this.ack(runtime, record.seq, this.switch.removeMac(port, record.mac));
      case "stats-request":
        return this.replyStats(runtime, record.seq);
      case "ping":
        this.switch.reply(port, { type: "pong", seq: record.seq, timestamp: record.timestamp });
        return true;
      case "pong":
        this.switch.pong(port, record.seq);
        return true;
      case "bye":
        this.sessions?.forget(runtime.attachment.sessionId);
        this.closePort(runtime, CloseCode.Normal, "bye");
        return false;
      default:
        this.protocolError(runtime, CloseCode.UnexpectedRecord, `a "${record.type}" record is not valid from a client in an open session`);
        return false;
    }
  }

  /** Answers a control request. */
  private ack(runtime: PortRuntime, seq: number, answer: { status: number; reason: string }): boolean {
    this.switch.reply(runtime.port, { type: "ack", seq, status: answer.status, reason: answer.reason });
    return true;
  }

  /** The port's counters, credits and queue; without Stats granted, an ack NotNegotiated (protocol.md §8.4). */
  private replyStats(runtime: PortRuntime, seq: number): boolean {
    const { port } = runtime;
    if ((port.state.features & Feature.Stats) === 0) {
      return this.ack(runtime, seq, { status: AckStatus.NotNegotiated, reason: "stats-request needs the Stats feature" });
    }
    const ledger = port.ledger;
    this.switch.reply(port, {
      type: "stats-reply", seq, counters: port.state.counters, creditsAvailable: ledger?.available ?? 0,
      queuedFrames: ledger?.queuedFrames ?? 0, queuedBytes: ledger?.queuedBytes ?? 0,
    });
    return true;
  }
}

/** Switch settings derived from the segment configuration. */
function switchConfigOf(config: SegmentConfig): SwitchConfig {
  return {
    maxFrameSize: config.maxFrameSize, learnLimitPerPort: config.learnLimitPerPort, learnLimitPerSegment: config.learnLimitPerSegment,
    agingMs: config.agingSeconds * 1000, rxQueueFrames: config.rxQueueFrames, rxQueueBytes: config.rxQueueBytes,
    segmentQueueBytes: config.segmentQueueBytes,
    policer: policerLimitsOf(config),
    rawEgress: rawEgressLimitsOf(config),
  };
}
