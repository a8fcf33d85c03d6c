import { Bridge, ForwardOutcome, type BridgeConfig, type PortKind, type ReceiveFilter } from "../datapath/bridge.ts";
import { describeCounters, DropReason, newPortCounters, type PortCountersData } from "../datapath/counters.ts";
import type { FdbSummary } from "../datapath/fdb.ts";
import { formatMac, isUsableUnicastMac, macKeyAt, type MacKey } from "../datapath/mac.ts";
import { CloseCode } from "../datapath/tunnel/close-codes.ts";
import { CompletionCoalescer, decodeMessage, forEachRecord, MessageEncoder, type RecordVisitor } from "../datapath/tunnel/codec.ts";
import {
  AckStatus, Feature, KEEPALIVE_REQUEST, RxFlag, TX_FLAGS_KNOWN, TxFlag, KNOWN_FEATURES, MAX_FILTER_MACS, MAX_MACS_PER_PORT, MAX_MESSAGE_BYTES, MAX_RECORDS_PER_MESSAGE, PROTOCOL_VERSION_MAX,
  PROTOCOL_VERSION_MIN, RECORD_HEADER_BYTES,
} from "../datapath/tunnel/constants.ts";
import type { DecodeErrorCode, HelloRecord, TunnelRecord } from "../datapath/tunnel/records.ts";
import type { Failure } from "../datapath/result.ts";
import { checkOffload, isTrivialVnetHeader, parseVnetHeader, segmentFrame, VNET_HDR_LEN, type VnetHeader } from "../datapath/offload.ts";
import { RxCreditLedger, SegmentQueueBudget } from "../datapath/tunnel/rx-credits.ts";
import { grantTxWindow, TxBatchGuard } from "../datapath/tunnel/tx-window.ts";
import type { PortAuth } from "../worker/port-request.ts";
import type { SegmentConfig } from "./config.ts";
import { snapshotAttachment, type PortAttachment, type PortMode, type PortRuntime } from "./port.ts";
import type { PortInfo, PortStats } from "./segment.ts";
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

/** Segment-wide counters for what is not one port's traffic. */
export interface SegmentCounters {
  portsAccepted: number;
  portsClosed: number;
  hellosRefused: number;
  sessionsResumed: number;
  malformedMessages: number;
  protocolErrors: number;
  windowOverruns: number;
  flushedOnEviction: number;
}

/** The segment grants at most this TX window, whatever a client asks. */
const MAX_GRANTED_TX_WINDOW = 1024;
const HELLO_TIMEOUT_MS = 10_000;
/** While connected, a session stays resumable this long (refreshed on close to RESUME_GRACE_MS). */
const CONNECTED_SESSION_MS = 7 * 24 * 3600 * 1000;
/** A tx-complete record: header and a 6-byte body. */
const TX_COMPLETE_RECORD_BYTES = RECORD_HEADER_BYTES + 6;
/** More than any control record the segment sends needs (a stats-reply with 64 drops, an ack or link with a 255-byte reason, a WELCOME). */
const MAX_CONTROL_BODY_BYTES = 1024;
// LazyCompletions is specified (protocol.md §6.3 rule 2a) but not implemented by this relay yet.
const GRANTED_FEATURES = KNOWN_FEATURES & ~Feature.LazyCompletions;
/** Stands in the TX batch for a descriptor with unknown flags (never switched). */
const MALFORMED_TX = new Uint8Array(0);
/** A GSO super-frame's header, kept beside its Ethernet frame while the batch is switched. */
interface SuperFrame {
  readonly header: VnetHeader;
  /** The 10 header bytes as received (passed on unchanged to Gso receivers). */
  readonly bytes: Uint8Array;
}

/** How long a counters-only change may wait for its attachment write (see markCounted). */
const COUNTER_WRITE_DELAY_MS = 50;

/**
 * The relay: moves frames between a segment's sockets through one Bridge.
 * Per incoming message: decode → bridge → one outgoing message per destination
 * port → one completion batch to the sender. The Durable Object owns storage
 * and routing; this class owns the copy/completion path and port state.
 */
export class SegmentRelay {
  private readonly ports = new Map<WebSocket, PortRuntime>();
  private readonly byId = new Map<number, PortRuntime>();
  private readonly bridge: Bridge;
  private readonly budget: SegmentQueueBudget;
  private readonly outcome = new ForwardOutcome();
  private readonly coalescer = new CompletionCoalescer();
  /** For ports that did not negotiate CoalescedCompletions: one id per tx-complete record. */
  private readonly singleCompletions = new CompletionCoalescer(1);
  /** Descriptors with unknown flags in the batch being collected (rare; see forwardTx). */
  private txMalformed = 0;
  /** Whether the port whose batch is being collected was granted Gso. */
  private txGso = false;
  /** GSO super-frames (Ethernet views) of the batch being collected and their headers (rare; see forwardTx). */
  private readonly txSuper = new Map<Uint8Array, SuperFrame>();
  private readonly txForwardable: Uint8Array[] = [];
  private readonly txGuard = new TxBatchGuard();
  private readonly txIds: number[] = [];
  private readonly txFrames: Uint8Array[] = [];
  private readonly touched = new Set<PortRuntime>();
  /** Ports whose counters (only) changed since their attachment was written; see markCounted. */
  private readonly countersPending = new Set<PortRuntime>();
  private counterWrite: ReturnType<typeof setTimeout> | null = null;
  /** The port whose open-session message `recordVisitor` is walking; null once that port was closed. */
  private visiting: PortRuntime | null = null;
  private readonly recordVisitor: RecordVisitor = {
    tx: (id, flags, frame) => this.collectTx(id, flags, frame),
    rxPost: (count, bufferSize) => {
      const port = this.visiting;
      if (port !== null && !this.postCredits(port, count, bufferSize)) this.visiting = null;
    },
    record: (record) => {
      const port = this.visiting;
      if (port !== null && !this.onRecord(port, record)) this.visiting = null;
    },
  };
  readonly counters: SegmentCounters = {
    portsAccepted: 0, portsClosed: 0, hellosRefused: 0, sessionsResumed: 0, malformedMessages: 0, protocolErrors: 0,
    windowOverruns: 0, flushedOnEviction: 0,
  };
  /** Set when `counters` changed since the segment last stored them. */
  countersChanged = false;

  constructor(
    private config: SegmentConfig,
    private readonly sessions: SessionStore | null,
    private readonly now: () => number = Date.now,
    storedCounters?: Partial<SegmentCounters>,
  ) {
    Object.assign(this.counters, storedCounters);
    this.bridge = new Bridge(bridgeConfigOf(config), now);
    this.budget = new SegmentQueueBudget(config.segmentQueueBytes);
  }

  /** Applies new segment settings to the bridge and the queue budget; connected ports stay. */
  reconfigure(config: SegmentConfig): void {
    this.config = config;
    this.bridge.reconfigure(bridgeConfigOf(config));
    this.budget.setLimit(config.segmentQueueBytes);
  }

  /**
   * Rebuilds every port from its socket attachment after the object was
   * evicted (hibernation) or restarted: registered MACs go back into the
   * forwarding table, credits and counters carry on, and frames that were
   * queued in memory are counted as flushed.
   */
  restore(sockets: readonly WebSocket[]): void {
    for (const ws of sockets) {
      const state = ws.deserializeAttachment() as PortAttachment | null;
      if (state === null || state.v !== 1) {
        closeQuietly(ws, CloseCode.SegmentRestarting, "port state lost; reconnect");
        continue;
      }
      const port = this.attach(ws, state);
      if (state.phase === "open" && !this.registerInBridge(port)) {
        this.closePort(port, CloseCode.MacTaken, "a MAC of this port is registered by another port");
      }
    }
  }

  /** Connected ports, counting those still negotiating. */
  get portCount(): number {
    return this.ports.size;
  }

  /** Bytes queued for ports without credit, segment-wide. */
  get queuedBytes(): number {
    return this.budget.usedBytes;
  }

  /**
   * Takes a freshly accepted socket. Raw ports are open at once; descriptor
   * ports wait for HELLO (the alarm enforces the deadline).
   */
  accept(ws: WebSocket, grant: JoinGrant): void {
    const raw = grant.mode === "raw";
    const state: PortAttachment = {
      v: 1, portId: grant.portId, mode: grant.mode, phase: raw ? "open" : "hello",
      kind: grant.kind, authorizedKind: grant.kind, boundMacs: grant.boundMacs,
      macs: raw ? (grant.boundMacs ?? []) : [], filter: defaultFilter(), version: 0, features: 0, txWindow: 0,
      sessionId: randomHex(16), remote: grant.remote, auth: grant.auth, tokenExp: grant.tokenExp,
      connectedAt: this.now(), helloDeadline: raw ? 0 : this.now() + HELLO_TIMEOUT_MS, credits: null,
      counters: newPortCounters(),
    };
    const port = this.attach(ws, state);
    this.bump("portsAccepted");
    if (raw && !this.registerInBridge(port)) {
      this.closePort(port, CloseCode.MacTaken, "a MAC bound to this token is registered by another port");
      return;
    }
    this.persist(port);
  }

  /** Handles one WebSocket message from a port. */
  onMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const port = this.ports.get(ws);
    if (port === undefined) return;
    if (typeof message === "string") {
      this.bump("malformedMessages");
      this.protocolError(port, CloseCode.Malformed, `text messages are not part of the protocol (except the keepalive ${JSON.stringify(KEEPALIVE_REQUEST)})`);
      return;
    }
    const bytes = new Uint8Array(message);
    if (port.heldMessages !== null) port.heldMessages.push(bytes);
    else if (port.state.mode === "raw") this.onRawFrame(port, bytes);
    else this.onDescriptorMessage(port, bytes);
    this.flushTouched();
  }

  /**
   * A socket closed or failed: the port leaves the segment and its queue is
   * flushed. Without a BYE its session stays resumable for a grace period.
   */
  onClose(ws: WebSocket, code: number): void {
    const port = this.ports.get(ws);
    if (port === undefined) return;
    if (code !== CloseCode.Normal) this.saveSession(port, RESUME_GRACE_MS);
    else this.sessions?.forget(port.state.sessionId);
    this.detach(port);
  }

  /** Closes every port with one code (segment deleted or reset), telling open ports their link is down; returns how many. */
  closeAll(code: number, reason: string): number {
    const all = [...this.ports.values()];
    for (const port of all) {
      if (port.state.phase === "open" && port.encoder !== null) {
        this.reply(port, { type: "link", up: false, reason });
        this.sendPending(port);
      }
      this.closePort(port, code, reason);
    }
    this.touched.clear();
    return all.length;
  }

  /** Closes ports that did not say HELLO in time. */
  expireHellos(): void {
    const now = this.now();
    for (const port of [...this.ports.values()]) {
      if (port.state.phase === "hello" && port.state.helloDeadline <= now) {
        this.protocolError(port, CloseCode.HandshakeTimeout, `no HELLO within ${HELLO_TIMEOUT_MS / 1000} s`);
      }
    }
  }

  /** The earliest HELLO deadline of a negotiating port, if any. */
  nextHelloDeadline(): number | undefined {
    let next: number | undefined;
    for (const port of this.ports.values()) {
      if (port.state.phase === "hello") next = Math.min(next ?? Infinity, port.state.helloDeadline);
    }
    return next;
  }

  /** Ages the forwarding table. */
  age(): void {
    this.bridge.ageOut();
  }

  /** When the next learned entry expires, if any. */
  nextAgingDeadline(): number | undefined {
    return this.bridge.nextAgingDeadline();
  }

  /** Connected ports for the admin API. */
  listPorts(): PortInfo[] {
    return [...this.byId.values()].map(({ state }) => ({
      portId: state.portId, kind: state.kind, mode: state.mode, phase: state.phase, macs: state.macs.map(formatMac),
      remote: state.remote, connectedSince: new Date(state.connectedAt).toISOString(),
    }));
  }

  /** Per-port counters, credits and queues for the admin API. */
  portStats(): PortStats[] {
    return [...this.byId.values()].map(({ state, ledger }) => ({
      portId: state.portId, kind: state.kind, mode: state.mode, counters: describeCounters(state.counters),
      credits: ledger?.available ?? null, queuedFrames: ledger?.queuedFrames ?? 0, queuedBytes: ledger?.queuedBytes ?? 0,
    }));
  }

  /** The forwarding table summary for the admin API. */
  fdbSummary(): FdbSummary {
    return this.bridge.fdbSummary();
  }

  /** Counts a segment-level event (rare: connects, closes, errors), so the segment persists it. */
  private bump(counter: keyof SegmentCounters, by = 1): void {
    this.counters[counter] += by;
    this.countersChanged = true;
  }

  // ---- attaching and detaching ------------------------------------------------

  /** Creates the live runtime for a socket and indexes it; a restored ledger reports frames lost to eviction. */
  private attach(ws: WebSocket, state: PortAttachment): PortRuntime {
    const port: PortRuntime = { ws, state, ledger: null, encoder: null, dirty: false, pendingSend: false, heldMessages: null };
    if (state.mode === "descriptor") port.encoder = new MessageEncoder();
    if (state.credits !== null) {
      port.ledger = RxCreditLedger.restore(state.credits, this.budget);
      const lost = port.ledger.flush();
      if (lost > 0) {
        state.counters.drops[DropReason.Flushed] = (state.counters.drops[DropReason.Flushed] ?? 0) + lost;
        this.bump("flushedOnEviction", lost);
        port.dirty = true;
        this.touched.add(port);
      }
    }
    this.ports.set(ws, port);
    this.byId.set(state.portId, port);
    return port;
  }

  /** Registers an open port with the bridge and makes the bridge's live counters the port's counters. */
  private registerInBridge(port: PortRuntime): boolean {
    const { state } = port;
    const added = this.bridge.addPort(state.portId, { kind: state.kind, macs: state.macs, filter: state.filter, learnLimit: this.config.learnLimitPerPort });
    if (!added.ok) return false;
    const live = this.bridge.counters(state.portId) as PortCountersData;
    Object.assign(live, state.counters);
    state.counters = live;
    return true;
  }

  /** Removes a port from every index, the bridge and the queue budget. */
  private detach(port: PortRuntime): void {
    if (!this.ports.delete(port.ws)) return;
    if (this.byId.get(port.state.portId) === port) this.byId.delete(port.state.portId);
    if (port.state.phase === "open" && this.bridge.hasPort(port.state.portId)) this.bridge.removePort(port.state.portId);
    port.ledger?.flush();
    this.touched.delete(port);
    this.bump("portsClosed");
  }

  /** Closes a port's socket with a code and removes it. */
  private closePort(port: PortRuntime, code: number, reason: string): void {
    closeQuietly(port.ws, code, reason);
    this.detach(port);
  }

  /** Counts a protocol violation and closes the port with its code. */
  private protocolError(port: PortRuntime, code: number, reason: string): void {
    this.bump("protocolErrors");
    this.sendPending(port);
    this.closePort(port, code, reason);
  }

  // ---- raw mode ---------------------------------------------------------------

  /** One raw frame in: same switching, learning and counters, no completion. */
  private onRawFrame(port: PortRuntime, frame: Uint8Array): void {
    if (port.state.kind === "member" && port.state.macs.length === 0) this.claimFirstSource(port, frame);
    this.txFrames.length = 0;
    this.txFrames.push(frame);
    this.bridge.forward(port.state.portId, this.txFrames, this.outcome);
    this.deliverOutcome();
    this.markCounted(port);
  }

  /**
   * A raw member cannot say HELLO, so it registers the source MAC of its first
   * frame and stays locked to it (a v86 guest announces itself that way). If
   * another port owns that MAC, the frame is dropped as spoofed by the bridge.
   */
  private claimFirstSource(port: PortRuntime, frame: Uint8Array): void {
    if (frame.length < 14) return;
    const source = macKeyAt(frame, 6);
    if (!isUsableUnicastMac(source) || !this.bridge.addMac(port.state.portId, source).ok) return;
    port.state.macs.push(source);
    this.markDirty(port);
  }

  // ---- descriptor mode --------------------------------------------------------

  /**
   * One batch of records from a descriptor port. An open session's message is walked with a visitor
   * (forEachRecord validates the whole message first, then visits): TX records become an id and a frame
   * view in two reused arrays, with no object per record. HELLO, a cold path, decodes into records.
   */
  private onDescriptorMessage(port: PortRuntime, bytes: Uint8Array): void {
    if (port.state.phase === "open") {
      this.beginTxBatch(port);
      this.visiting = port;
      const walked = forEachRecord(bytes, this.recordVisitor);
      const stillOpen = this.visiting === port;
      this.visiting = null;
      if (!walked.ok) this.onMalformed(port, walked.error);
      else if (stillOpen) this.endTxBatch(port);
      return;
    }
    const decoded = decodeMessage(bytes);
    if (!decoded.ok) {
      this.onMalformed(port, decoded.error);
      return;
    }
    this.onHelloMessage(port, decoded.value);
  }

  /** A message that failed to decode: nothing of it was applied; the port is closed with the matching code. */
  private onMalformed(port: PortRuntime, error: Failure<DecodeErrorCode>): void {
    this.bump("malformedMessages");
    this.protocolError(port, closeCodeForDecode(error.code), error.message);
  }

  /** Applies the records of one message in an open session, then forwards its TX batch. */
  private onRecords(port: PortRuntime, records: readonly TunnelRecord[]): void {
    this.beginTxBatch(port);
    for (const record of records) {
      if (!this.onRecord(port, record)) return;
    }
    this.endTxBatch(port);
  }

  /** Empties the TX batch arrays (pop keeps V8's fast path; `length = 0` calls into the runtime). */
  private beginTxBatch(port: PortRuntime): void {
    const { txIds, txFrames } = this;
    while (txIds.length > 0) txIds.pop();
    while (txFrames.length > 0) txFrames.pop();
    this.txMalformed = 0;
    if (this.txSuper.size > 0) this.txSuper.clear();
    this.txGso = (port.state.features & Feature.Gso) !== 0;
  }

  /** Adds one TX descriptor to the batch; flags other than a granted VnetHeader complete as malformed, unswitched. */
  private collectTx(id: number, flags: number, frame: Uint8Array): void {
    this.txIds.push(id);
    if ((flags & ~TX_FLAGS_KNOWN) === 0) {
      this.txFrames.push(frame);
    } else {
      this.collectFlagged(flags, frame);
    }
  }

  /**
   * A TX with a virtio-net header (Gso granted): a trivial header is stripped
   * and the frame switched as plain; a valid offload request is switched on
   * its Ethernet frame and remembered in txSuper; anything else is malformed.
   */
  private collectFlagged(flags: number, body: Uint8Array): void {
    const header = flags === TxFlag.VnetHeader && this.txGso ? parseVnetHeader(body) : null;
    const frame = body.subarray(VNET_HDR_LEN);
    if (header === null || !header.ok || !checkOffload(header.value, frame).ok) {
      this.txFrames.push(MALFORMED_TX);
      this.txMalformed++;
      return;
    }
    this.txFrames.push(frame);
    if (!isTrivialVnetHeader(body)) this.txSuper.set(frame, { header: header.value, bytes: body.subarray(0, VNET_HDR_LEN) });
  }

  /** The window check for the message's TX records, then one forward and one completion batch. */
  private endTxBatch(port: PortRuntime): void {
    const guarded = this.txGuard.check(this.txIds, port.state.txWindow);
    if (!guarded.ok) {
      this.bump("windowOverruns");
      this.protocolError(port, CloseCode.TxWindowOverrun, guarded.error.message);
      return;
    }
    if (this.txFrames.length > 0) this.forwardTx(port);
  }

  /** Applies one record; returns false when the port was closed. */
  private onRecord(port: PortRuntime, record: TunnelRecord): boolean {
    switch (record.type) {
      case "tx":
        this.collectTx(record.id, record.flags, record.frame);
        return true;
      case "rx-post":
        return this.postCredits(port, record.count, record.bufferSize);
      case "set-filter":
        this.setFilter(port, record.seq, record);
        return true;
      case "add-mac":
        this.addMac(port, record.seq, record.mac);
        return true;
      case "remove-mac":
        this.removeMac(port, record.seq, record.mac);
        return true;
      case "stats-request":
        this.replyStats(port, record.seq);
        return true;
      case "ping":
        this.reply(port, { type: "pong", seq: record.seq, timestamp: record.timestamp });
        return true;
      case "pong":
        return true;
      case "bye":
        this.sessions?.forget(port.state.sessionId);
        this.closePort(port, CloseCode.Normal, "bye");
        return false;
      default:
        this.protocolError(port, CloseCode.UnexpectedRecord, `a "${record.type}" record is not valid from a client in an open session`);
        return false;
    }
  }

  /** Forwards the collected TX batch and answers every id with exactly one completion. */
  private forwardTx(port: PortRuntime): void {
    const coalescer = (port.state.features & Feature.CoalescedCompletions) !== 0 ? this.coalescer : this.singleCompletions;
    if (this.txMalformed === 0 && this.txSuper.size === 0) {
      this.bridge.forward(port.state.portId, this.txFrames, this.outcome);
      this.deliverOutcome();
      const verdicts = this.outcome.verdicts;
      for (let i = 0; i < this.txIds.length; i++) coalescer.push(this.txIds[i] as number, verdicts[i] as number);
    } else {
      this.forwardWithMalformed(port, coalescer);
    }
    const encoder = port.encoder as MessageEncoder;
    const runs = coalescer.runCount;
    if (encoder.recordCount + runs > MAX_RECORDS_PER_MESSAGE || encoder.byteLength + runs * TX_COMPLETE_RECORD_BYTES > MAX_MESSAGE_BYTES) {
      this.sendNow(port);
    }
    coalescer.flushInto(encoder);
    port.pendingSend = true;
    this.touched.add(port);
    this.markCounted(port);
  }

  /**
   * The slow path of forwardTx for a batch holding descriptors with unknown
   * flags or GSO super-frames: the former complete as malformed (and count as
   * received and dropped, so rx = forwarded + drops still holds); the rest are
   * switched as usual, super-frames exempt from maxFrameSize and delivered per
   * receiver (deliverMixed).
   */
  private forwardWithMalformed(port: PortRuntime, coalescer: CompletionCoalescer): void {
    this.txForwardable.length = 0;
    for (const frame of this.txFrames) if (frame !== MALFORMED_TX) this.txForwardable.push(frame);
    const superFrames = this.txSuper.size > 0 ? new Set(this.txSuper.keys()) : null;
    this.bridge.forward(port.state.portId, this.txForwardable, this.outcome, superFrames);
    if (superFrames === null) this.deliverOutcome();
    else this.deliverMixedOutcome();
    const counters = port.state.counters;
    let next = 0;
    for (let i = 0; i < this.txIds.length; i++) {
      if (this.txFrames[i] === MALFORMED_TX) {
        counters.rxFrames++;
        counters.drops[DropReason.Malformed] = (counters.drops[DropReason.Malformed] ?? 0) + 1;
        coalescer.push(this.txIds[i] as number, DropReason.Malformed);
      } else {
        coalescer.push(this.txIds[i] as number, this.outcome.verdicts[next++] as number);
      }
    }
  }

  /** Hands each egress batch of the last forward to its port. */
  private deliverOutcome(): void {
    for (const portId of this.outcome.egressPorts()) {
      const dest = this.byId.get(portId);
      if (dest === undefined) continue;
      const frames = this.outcome.framesFor(portId);
      if (dest.state.mode === "raw") this.deliverRaw(dest, frames);
      else this.deliverDescriptors(dest, frames);
    }
  }

  /** deliverOutcome for a batch holding super-frames: each destination gets them as is (Gso) or in software-offloaded frames. */
  private deliverMixedOutcome(): void {
    for (const portId of this.outcome.egressPorts()) {
      const dest = this.byId.get(portId);
      if (dest === undefined) continue;
      const gso = dest.state.mode !== "raw" && (dest.state.features & Feature.Gso) !== 0;
      for (const frame of this.outcome.framesFor(portId)) {
        const superFrame = this.txSuper.get(frame);
        if (superFrame === undefined) this.deliverOne(dest, frame, 0);
        else if (gso) this.deliverOne(dest, concat(superFrame.bytes, frame), RxFlag.VnetHeader);
        else this.deliverSegmented(dest, superFrame.header, frame);
      }
      if (dest.state.mode === "raw") this.markCounted(dest);
      else this.markDirty(dest);
    }
  }

  /**
   * Software offload for a receiver without Gso: the bridge counted the
   * super-frame as one tx frame; it becomes n frames, so tx counts n and their bytes.
   */
  private deliverSegmented(dest: PortRuntime, header: VnetHeader, frame: Uint8Array): void {
    const segmented = segmentFrame(header, frame);
    // checkOffload accepted it at ingress, so this cannot fail; count it as malformed if it ever does.
    if (!segmented.ok) return countDrop(dest, DropReason.Malformed);
    const counters = dest.state.counters;
    counters.txFrames += segmented.value.length - 1;
    counters.txBytes -= frame.length;
    for (const segment of segmented.value) {
      counters.txBytes += segment.length;
      this.deliverOne(dest, segment, 0);
    }
  }

  /** One frame to one port, raw or descriptor (the slow path's per-frame form of deliverRaw / deliverDescriptors). */
  private deliverOne(dest: PortRuntime, frame: Uint8Array, flags: number): void {
    if (dest.state.mode === "raw") {
      try {
        dest.ws.send(frame);
      } catch {
        countDrop(dest, DropReason.Flushed);
      }
      return;
    }
    const ledger = dest.ledger;
    if (ledger === null) return;
    const verdict = ledger.offer(frame, flags);
    if (verdict === "delivered-now") this.appendRx(dest, frame, flags);
    else if (verdict !== "queued") countDrop(dest, verdict);
  }

  /** Raw ports: one frame per message, sent at once (the runtime copies; its socket buffer is the queue). */
  private deliverRaw(dest: PortRuntime, frames: readonly Uint8Array[]): void {
    for (const frame of frames) {
      try {
        dest.ws.send(frame);
      } catch {
        countDrop(dest, DropReason.Flushed);
      }
    }
    this.markCounted(dest);
  }

  /** Descriptor ports: each frame takes a credit, waits in the bounded queue, or is dropped and counted. */
  private deliverDescriptors(dest: PortRuntime, frames: readonly Uint8Array[]): void {
    const ledger = dest.ledger;
    if (ledger === null) return;
    for (const frame of frames) {
      const verdict = ledger.offer(frame);
      if (verdict === "delivered-now") this.appendRx(dest, frame);
      else if (verdict !== "queued") countDrop(dest, verdict);
    }
    this.markDirty(dest);
  }

  /** Adds an RX record, sending first when the message would pass 1 MiB or 4096 records. */
  private appendRx(dest: PortRuntime, frame: Uint8Array, flags = 0): void {
    const encoder = dest.encoder as MessageEncoder;
    if (!encoder.fitsBody(frame.length)) this.sendNow(dest);
    encoder.addRx(flags, frame);
    dest.pendingSend = true;
  }

  /** New credits: deliver what waited in the queue, oldest first. Returns false when the post was invalid (port closed). */
  private postCredits(port: PortRuntime, count: number, bufferSize: number): boolean {
    const ledger = port.ledger as RxCreditLedger;
    const posted = ledger.post(count, bufferSize);
    if (!posted.ok) {
      this.protocolError(port, CloseCode.RxPostInvalid, posted.error.message);
      return false;
    }
    const drained = ledger.drain();
    for (let i = 0; i < drained.frames.length; i++) this.appendRx(port, drained.frames[i] as Uint8Array, drained.flags[i]);
    for (const reason of drained.dropped) countDrop(port, reason);
    this.markDirty(port);
    return true;
  }

  // ---- control ------------------------------------------------------------------

  /** Replaces the port's receive filter and acknowledges it. */
  private setFilter(port: PortRuntime, seq: number, filter: ReceiveFilter): void {
    if (filter.multicast.length > MAX_FILTER_MACS) {
      this.ack(port, seq, AckStatus.TooManyMacs, `the multicast list holds at most ${MAX_FILTER_MACS} addresses`);
      return;
    }
    port.state.filter = { promiscuous: filter.promiscuous, allMulticast: filter.allMulticast, multicast: [...filter.multicast] };
    this.bridge.setFilter(port.state.portId, port.state.filter);
    this.markDirty(port);
    this.ack(port, seq, AckStatus.Ok, "filter set");
  }

  /** Registers another MAC on the port, subject to its kind, its token binding and the segment. */
  private addMac(port: PortRuntime, seq: number, mac: MacKey): void {
    if (port.state.kind === "monitor") return this.ack(port, seq, AckStatus.NotPermitted, "a monitor port cannot own MACs");
    if (port.state.macs.includes(mac)) return this.ack(port, seq, AckStatus.Ok, `${formatMac(mac)} is already registered`);
    if (port.state.macs.length >= MAX_MACS_PER_PORT) return this.ack(port, seq, AckStatus.TooManyMacs, `a port owns at most ${MAX_MACS_PER_PORT} MACs`);
    const refusal = macRefusal(port.state.boundMacs, [mac]);
    if (refusal !== null) return this.ack(port, seq, refusal.status, refusal.reason);
    const added = this.bridge.addMac(port.state.portId, mac);
    if (!added.ok) return this.ack(port, seq, added.error.code === "mac-taken" ? AckStatus.MacTaken : AckStatus.InvalidMac, added.error.message);
    port.state.macs.push(mac);
    this.markDirty(port);
    this.ack(port, seq, AckStatus.Ok, `${formatMac(mac)} registered`);
  }

  /** Unregisters a MAC from the port. */
  private removeMac(port: PortRuntime, seq: number, mac: MacKey): void {
    const index = port.state.macs.indexOf(mac);
    if (index < 0) return this.ack(port, seq, AckStatus.UnknownMac, `${formatMac(mac)} is not registered on this port`);
    this.bridge.removeMac(port.state.portId, mac);
    port.state.macs.splice(index, 1);
    this.markDirty(port);
    this.ack(port, seq, AckStatus.Ok, `${formatMac(mac)} removed`);
  }

  /** Answers a stats request with the port's counters, credits and queue. */
  private replyStats(port: PortRuntime, seq: number): void {
    const ledger = port.ledger as RxCreditLedger;
    this.reply(port, {
      type: "stats-reply", seq, counters: port.state.counters, creditsAvailable: ledger.available,
      queuedFrames: ledger.queuedFrames, queuedBytes: ledger.queuedBytes,
    });
  }

  /** Queues an ack for a control request. */
  private ack(port: PortRuntime, seq: number, status: number, reason: string): void {
    this.reply(port, { type: "ack", seq, status, reason });
  }

  /** Queues a record for the port's next outgoing message (sending what it holds first when it is full). */
  private reply(port: PortRuntime, record: TunnelRecord): void {
    const encoder = port.encoder as MessageEncoder;
    if (!encoder.fitsBody(MAX_CONTROL_BODY_BYTES)) this.sendNow(port);
    encoder.add(record);
    port.pendingSend = true;
    this.touched.add(port);
  }

  // ---- negotiation --------------------------------------------------------------

  /**
   * The first message must start with HELLO. A HELLO that resumes a session
   * looks the session up in storage first; messages arriving meanwhile are held.
   */
  private onHelloMessage(port: PortRuntime, records: readonly TunnelRecord[]): void {
    const hello = records[0];
    if (hello === undefined || hello.type !== "hello") {
      this.protocolError(port, CloseCode.HandshakeTimeout, "the first message must start with HELLO");
      return;
    }
    const rest = records.slice(1);
    if (hello.resume === undefined || this.sessions === null || (hello.features & Feature.Resume) === 0) {
      this.completeHello(port, hello, rest);
      return;
    }
    port.heldMessages = [];
    const sessionId = toHex(hello.resume.sessionId);
    void this.sessions.verify(sessionId, toHex(hello.resume.token), this.now()).then((stored) => {
      if (!this.ports.has(port.ws)) return;
      if (stored !== undefined) this.takeOverSession(port, sessionId, stored.portId);
      const held = port.heldMessages ?? [];
      port.heldMessages = null;
      this.completeHello(port, hello, rest);
      for (const message of held) {
        if (this.ports.has(port.ws)) this.onDescriptorMessage(port, message);
      }
      this.flushTouched();
    });
  }

  /** A verified resume: the stale socket of the session (if any) is replaced and the old port id comes back. */
  private takeOverSession(port: PortRuntime, sessionId: string, oldPortId: number): void {
    for (const other of [...this.ports.values()]) {
      if (other !== port && other.state.sessionId === sessionId) this.closePort(other, CloseCode.Replaced, "session resumed on a new connection");
    }
    port.state.sessionId = sessionId;
    if (!this.byId.has(oldPortId)) {
      this.byId.delete(port.state.portId);
      port.state.portId = oldPortId;
      this.byId.set(oldPortId, port);
    }
    this.bump("sessionsResumed");
  }

  /** Negotiates, then answers WELCOME (and applies the rest of the message) or REFUSE. */
  private completeHello(port: PortRuntime, hello: HelloRecord, rest: readonly TunnelRecord[]): void {
    const refusal = this.negotiate(port, hello);
    if (refusal !== null) {
      this.refuse(port, refusal.code, refusal.reason);
      return;
    }
    const { state } = port;
    state.phase = "open";
    state.helloDeadline = 0;
    // Without the RxQueue feature frames that find no credit are dropped at once.
    const wantedQueue = hello.rxQueue > 0 ? hello.rxQueue : this.config.rxQueueFrames;
    const queueFrames = (state.features & Feature.RxQueue) === 0 ? 0 : Math.min(wantedQueue, this.config.rxQueueFrames);
    port.ledger = new RxCreditLedger({ maxQueueFrames: queueFrames, maxQueueBytes: this.config.rxQueueBytes }, this.budget);
    const resumeToken = (state.features & Feature.Resume) !== 0 && this.sessions !== null ? crypto.getRandomValues(new Uint8Array(16)) : new Uint8Array(0);
    if (resumeToken.length > 0) this.saveSession(port, CONNECTED_SESSION_MS, toHex(resumeToken));
    this.reply(port, {
      type: "welcome", version: state.version, features: state.features, portId: state.portId,
      maxFrameSize: this.config.maxFrameSize, txWindow: state.txWindow, rxQueue: queueFrames,
      sessionId: fromHex(state.sessionId), resumeToken, macs: state.macs,
    });
    this.markDirty(port);
    this.onRecords(port, rest);
  }

  /** Agrees version, kind, MACs, features and window; registers the port; returns a refusal or null. */
  private negotiate(port: PortRuntime, hello: HelloRecord): { code: number; reason: string } | null {
    const { state } = port;
    if (hello.minVersion > PROTOCOL_VERSION_MAX || hello.maxVersion < PROTOCOL_VERSION_MIN) {
      return { code: CloseCode.UnsupportedVersion, reason: `the segment speaks versions ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION_MAX}; the client offered ${hello.minVersion}..${hello.maxVersion}` };
    }
    if (hello.portKind !== state.authorizedKind) {
      return { code: CloseCode.Refused, reason: `HELLO asks for a ${hello.portKind} port but the join was authorized for ${state.authorizedKind} (use ?kind=${hello.portKind} and a matching token)` };
    }
    const macs = hello.macs.length > 0 || state.boundMacs === null ? [...hello.macs] : [...state.boundMacs];
    if (hello.portKind === "monitor" && macs.length > 0) return { code: CloseCode.Refused, reason: "a monitor port cannot own MACs" };
    const refusal = macRefusal(state.boundMacs, macs);
    if (refusal !== null) return { code: refusal.status === AckStatus.InvalidMac ? CloseCode.InvalidMac : CloseCode.Refused, reason: refusal.reason };
    if (hello.portKind === "member" && macs.length === 0) macs.push(randomLocalMac());
    state.kind = hello.portKind;
    state.macs = macs;
    state.version = PROTOCOL_VERSION_MAX;
    state.features = (hello.features & GRANTED_FEATURES) >>> 0;
    state.txWindow = grantTxWindow(hello.txWindow, MAX_GRANTED_TX_WINDOW);
    if (!this.registerInBridge(port)) {
      return { code: CloseCode.MacTaken, reason: `a requested MAC is registered by another port (${macs.map(formatMac).join(", ")})` };
    }
    return null;
  }

  /** Sends REFUSE, counts it and closes with the matching code. */
  private refuse(port: PortRuntime, code: number, reason: string): void {
    this.bump("hellosRefused");
    this.reply(port, { type: "refuse", code, reason });
    this.sendPending(port);
    this.closePort(port, code, reason);
  }

  /** Stores the port's resumable session for `lifetimeMs`, keeping its token. */
  private saveSession(port: PortRuntime, lifetimeMs: number, token?: string): void {
    if (this.sessions === null || (port.state.features & Feature.Resume) === 0 || port.state.phase !== "open") return;
    const resumeToken = token ?? port.state.resumeToken;
    if (resumeToken === undefined) return;
    port.state.resumeToken = resumeToken;
    this.sessions.save(port.state.sessionId, {
      token: resumeToken, portId: port.state.portId, kind: port.state.kind, macs: port.state.macs, expiresAt: this.now() + lifetimeMs,
    });
  }

  // ---- output -------------------------------------------------------------------

  /** Marks a port's attachment for rewriting at the end of this message. */
  private markDirty(port: PortRuntime): void {
    port.dirty = true;
    this.touched.add(port);
  }

  /**
   * Only the port's counters changed (a sender's rx counts and ingress drops, a raw receiver's tx counts):
   * its attachment is rewritten within COUNTER_WRITE_DELAY_MS instead of after every message, so a busy
   * port costs one structured clone per interval instead of one per message. Everything else (credits,
   * queue length, MACs, filter, phase) is still written at the end of the message that changed it.
   *
   * Counters stay exact across hibernation: the runtime hibernates an object only after 10 s without
   * events and only while no setTimeout callback is pending, so a pending write is always done first.
   * Any other eviction (deploy, crash, reset) closes the sockets, and their attachments die with them.
   */
  private markCounted(port: PortRuntime): void {
    if (port.dirty || this.countersPending.has(port)) return;
    this.countersPending.add(port);
    this.counterWrite ??= setTimeout(() => this.writeCounters(), COUNTER_WRITE_DELAY_MS);
  }

  /** The deferred attachment writes of markCounted. */
  private writeCounters(): void {
    this.counterWrite = null;
    for (const port of this.countersPending) {
      if (this.ports.has(port.ws)) this.persist(port);
    }
    this.countersPending.clear();
  }

  /** One outgoing message per touched port, then their attachments. */
  private flushTouched(): void {
    for (const port of this.touched) {
      if (!this.ports.has(port.ws)) continue;
      this.sendPending(port);
      if (port.dirty) this.persist(port);
    }
    this.touched.clear();
  }

  /** Sends what the port's encoder holds now, to make room in its message. */
  private sendNow(port: PortRuntime): void {
    port.pendingSend = true;
    this.sendPending(port);
  }

  /**
   * Sends what the port's encoder holds as one WebSocket message. workerd does not copy on send():
   * the message keeps referring to the bytes until it is written to the socket, after this event
   * returns. So the message must be a copy (finish()), never a view of the encoder's reused buffer
   * (finishView() let later messages overwrite earlier ones still queued: frames from the wrong
   * batch, headers that disagree with their length).
   */
  private sendPending(port: PortRuntime): void {
    const encoder = port.encoder;
    if (!port.pendingSend || encoder === null) return;
    port.pendingSend = false;
    if (encoder.recordCount === 0) return;
    try {
      port.ws.send(encoder.finish());
    } catch {
      // The socket is closing; its close event removes the port.
    }
    encoder.reset();
  }

  /** Writes the port's state into its socket attachment so it survives hibernation. */
  private persist(port: PortRuntime): void {
    port.dirty = false;
    this.countersPending.delete(port);
    try {
      port.ws.serializeAttachment(snapshotAttachment(port));
    } catch {
      // The socket is gone; nothing left to keep.
    }
  }
}

/** A new buffer holding `a` then `b`. */
function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Counts one frame dropped on its way to a port. */
function countDrop(port: PortRuntime, reason: number): void {
  port.state.counters.drops[reason] = (port.state.counters.drops[reason] ?? 0) + 1;
}

/** Why these MACs may not be registered under this token binding, or null. */
function macRefusal(boundMacs: readonly MacKey[] | null, macs: readonly MacKey[]): { status: number; reason: string } | null {
  if (macs.length > MAX_MACS_PER_PORT) return { status: AckStatus.TooManyMacs, reason: `a port owns at most ${MAX_MACS_PER_PORT} MACs` };
  for (const mac of macs) {
    if (!isUsableUnicastMac(mac)) return { status: AckStatus.InvalidMac, reason: `${formatMac(mac)} is not a usable unicast MAC` };
    if (boundMacs !== null && !boundMacs.includes(mac)) return { status: AckStatus.Policy, reason: `${formatMac(mac)} is not among the MACs the join token allows` };
  }
  return null;
}

/** The close code for a message that failed to decode. */
function closeCodeForDecode(code: string): number {
  if (code === "message-too-large") return CloseCode.MessageTooLarge;
  if (code === "too-many-records") return CloseCode.TooManyRecords;
  if (code === "unsupported-version") return CloseCode.UnsupportedVersion;
  return CloseCode.Malformed;
}

/** Closes a socket, ignoring one that is already closing. */
function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    // Already closing.
  }
}

/** Bridge settings derived from the segment configuration. */
function bridgeConfigOf(config: SegmentConfig): BridgeConfig {
  return {
    maxFrameSize: config.maxFrameSize, learnLimitPerPort: config.learnLimitPerPort,
    learnLimitPerSegment: config.learnLimitPerSegment, agingMs: config.agingSeconds * 1000,
  };
}


/** A filter that accepts the port's own MACs and broadcast only. */
function defaultFilter(): ReceiveFilter {
  return { promiscuous: false, allMulticast: false, multicast: [] };
}

/** A random locally administered unicast MAC for a member that asked for none. */
function randomLocalMac(): MacKey {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  bytes[0] = ((bytes[0] as number) & 0xfc) | 0x02;
  return bytes.reduce((key, byte) => key * 256 + byte, 0);
}

function randomHex(byteCount: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(byteCount)));
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
