// The client side of a descriptor-mode tunnel: handshake, TX window with
// backpressure, RX credits, completions, control requests, keepalive and
// reconnect with resume. Runs in Node (with `ws`) and in browsers (global WebSocket).
//
// The parts live in client/session/: the socket surface, errors and close codes,
// backoff, the deferred-TX ring, control requests and the event emitter. This
// file is the connection state machine that joins them, and the public API.
import {
  SUBPROTOCOL_V1, KEEPALIVE_REQUEST, Feature, MAX_FRAME_BYTES, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, RxFlag, TxFlag, VNET_HEADER_BYTES, type PortKind,
} from "../datapath/tunnel/constants.ts";
import { isTrivialVnetHeader, segmentWithHeader, withZeroVnetHeader } from "../datapath/offload.ts";
import { forEachRecord, MessageEncoder, type RecordVisitor } from "../datapath/tunnel/codec.ts";
import type { AckRecord, StatsReplyRecord, TunnelRecord, WelcomeRecord } from "../datapath/tunnel/records.ts";
import { RxCreditPoster } from "../datapath/tunnel/rx-credits.ts";
import { TxWindow } from "../datapath/tunnel/tx-window.ts";
import { DropReason } from "../datapath/counters.ts";
import type { MacKey } from "../datapath/mac.ts";
import type { SessionTrace } from "./frame-trace.ts";
import { Backoff } from "./session/backoff.ts";
import { ControlRequests, type ControlReply } from "./session/control.ts";
import { describeClose, SessionError, shouldReconnect } from "./session/errors.ts";
import { Emitter } from "./session/events.ts";
import { browserSocket, SOCKET_OPEN, type SocketFactory, type SocketLike } from "./session/socket.ts";
import { TxQueue, type TxCallback } from "./session/tx-queue.ts";

export { SessionError } from "./session/errors.ts";
export type { SocketFactory, SocketLike } from "./session/socket.ts";
export type { TxCallback } from "./session/tx-queue.ts";

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
  /** Stamps ICMP echoes on their way through the session (bench:netns's latency budget; client/frame-trace.ts). */
  trace?: SessionTrace;
  /** Injected for tests; defaults to Math.random. */
  random?: () => number;
}

export interface SessionCounters {
  txFrames: number; txBytes: number; txOk: number; txDropped: number; txReset: number; txDeferred: number; txDeferDrops: number;
  rxFrames: number; rxBytes: number; reconnects: number; creditsPosted: number;
  /** PINGs sent only to get held completions back (LazyCompletions). */
  flushPings: number;
  /** Connections dropped (and resumed) because the segment broke the protocol in a recoverable way. */
  protocolErrors: number;
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
}

/**
 * Where the connection is: idle (before start), connecting (socket opening), handshaking (HELLO sent),
 * open (WELCOME received), backoff (waiting to reconnect), closed (for good: close() or a fatal error).
 */
export type ConnectionState = "idle" | "connecting" | "handshaking" | "open" | "backoff" | "closed";

/** Room kept free for any non-TX record the session sends (a set-filter with 64 MACs is the largest). */
const MAX_CONTROL_BODY_BYTES = 512;
const DEFAULTS = { txWindow: 256, rxQueue: 256, rxBuffers: 4096, maxDeferred: 4096, initialMs: 250, maxMs: 10_000, keepaliveSeconds: 30 };
const OFFERED_FEATURES = Feature.CoalescedCompletions | Feature.RxQueue | Feature.Stats | Feature.LinkNotices | Feature.Vlan | Feature.LargeFrames | Feature.Resume;

/**
 * One port on a segment. `send` never drops for lack of window: a full window
 * defers frames (netvsc's TX defer) until completions return ids. On
 * disconnect every outstanding TX completes with `reset` at once, and the
 * session reconnects with backoff, resuming its port.
 */
export class Session {
  readonly counters: SessionCounters = {
    txFrames: 0, txBytes: 0, txOk: 0, txDropped: 0, txReset: 0, txDeferred: 0, txDeferDrops: 0,
    rxFrames: 0, rxBytes: 0, reconnects: 0, creditsPosted: 0, flushPings: 0, protocolErrors: 0,
  };
  /** The last WELCOME (kept across reconnects: its MACs and credentials are what a resume asks for). */
  welcome: WelcomeRecord | null = null;
  private connection: ConnectionState = "idle";
  private socket: SocketLike | null = null;
  /** The socket this side decided to close (a protocol error): what it still delivers is ignored. */
  private abandoned: SocketLike | null = null;
  private window: TxWindow | null = null;
  /** TX callbacks by window slot (outstanding ids are distinct modulo the window size). */
  private callbacks: Array<TxCallback | undefined> = [];
  private readonly deferred: TxQueue;
  private readonly encoder = new MessageEncoder();
  /** Whether the message being built carries TX records. */
  private encoderHasTx = false;
  private flushScheduled = false;
  private credits: RxCreditPoster | null = null;
  private resume: { sessionId: Uint8Array; token: Uint8Array } | null = null;
  private readonly control = new ControlRequests();
  /** The flush PING in flight (LazyCompletions), or null. */
  private flushPingSeq: number | null = null;
  /** TX went out since the last flush PING: only then can the segment hold completions a PING would bring. */
  private txSinceFlushPing = false;
  private readonly completionWaiters: Array<() => void> = [];
  /** Frames of the message being received (one array per message, none per record). */
  private received: Uint8Array[] = [];
  private readonly backoff: Backoff;
  /** Set when this side closed a broken connection and wants a fresh one regardless of the code. */
  private reconnectAfterClose = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private keepaliveTimer: ReturnType<typeof setInterval> | null = null;
  /** start() calls still waiting for their first WELCOME; close() rejects them. */
  private readonly startWaiters = new Set<(error: SessionError) => void>();
  /** The transport error of the current connection attempt (ws reports ECONNREFUSED and the like here). */
  private lastSocketError = "";
  /** The REFUSE reason of the current connection, when its code allows a retry. */
  private refusal: string | null = null;
  private readonly events = new Emitter<SessionEvents>();
  private readonly visitor: RecordVisitor = {
    rx: (flags, frame) => this.onRx(flags, frame),
    txComplete: (firstId, count, status) => this.onCompletion(firstId, count, status),
    record: (record) => this.onControlRecord(record),
  };

  constructor(private readonly options: SessionOptions) {
    // Fails here rather than at the first WELCOME.
    new RxCreditPoster(options.rxBuffers ?? DEFAULTS.rxBuffers, 1514);
    this.deferred = new TxQueue(options.maxDeferred ?? DEFAULTS.maxDeferred);
    const reconnect = options.reconnect === false ? undefined : options.reconnect;
    this.backoff = new Backoff({
      initialMs: reconnect?.initialMs ?? DEFAULTS.initialMs, maxMs: reconnect?.maxMs ?? DEFAULTS.maxMs, random: options.random ?? Math.random,
    });
  }

  /** Registers an event handler. */
  on<K extends keyof SessionEvents>(event: K, handler: SessionEvents[K]): this {
    this.events.on(event, handler);
    return this;
  }

  /** Connects and resolves with the WELCOME, or rejects with a SessionError (refusal, HTTP error, unreachable). */
  start(): Promise<WelcomeRecord> {
    this.connection = "connecting";
    return new Promise((resolve, reject) => {
      const settled = (): void => {
        this.events.off("open", onOpen);
        this.events.off("error", onError);
        this.startWaiters.delete(onError);
      };
      const onOpen = (welcome: WelcomeRecord): void => {
        settled();
        resolve(welcome);
      };
      const onError = (error: SessionError): void => {
        settled();
        reject(error);
      };
      this.on("open", onOpen).on("error", onError);
      this.startWaiters.add(onError);
      this.connect();
    });
  }

  /** Where the connection is. */
  get state(): ConnectionState {
    return this.connection;
  }

  /** Whether the session is open (handshake done, socket up). */
  get isOpen(): boolean {
    return this.connection === "open" && this.socket?.readyState === SOCKET_OPEN;
  }

  /** TX descriptors in flight. */
  get outstanding(): number {
    return this.window?.outstanding ?? 0;
  }

  /** Frames waiting for window space. */
  get deferredCount(): number {
    return this.deferred.length;
  }

  /** Whether the current connection was granted LazyCompletions. */
  get lazyCompletions(): boolean {
    return this.connection === "open" && ((this.welcome?.features ?? 0) & Feature.LazyCompletions) !== 0;
  }

  /**
   * Sends a batch. Frames that fit the window go out in this turn's message;
   * the rest wait for completions. Each frame's callback gets its status.
   */
  send(frames: readonly Uint8Array[], done?: TxCallback): void {
    for (const frame of frames) {
      if (this.options.vnetHeader === true) this.sendWithHeader(frame, done);
      else this.sendOne(frame, 0, done);
    }
  }

  /**
   * Resolves once every frame handed to send() so far has its completion (ok, dropped or reset).
   * With LazyCompletions it asks the segment for the completions it holds (one PING).
   */
  whenCompleted(): Promise<void> {
    if (this.outstanding === 0 && this.deferred.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.completionWaiters.push(resolve);
      this.flushCompletions();
    });
  }

  /**
   * With LazyCompletions: sends a PING in a message of its own, which the segment answers with every
   * completion it holds for this port. Does nothing without lazy completions, with nothing outstanding,
   * while a flush PING is already in flight, or when no TX went out since the last one.
   */
  flushCompletions(): void {
    if (!this.lazyCompletions || this.flushPingSeq !== null || !(this.txSinceFlushPing || this.encoderHasTx) || this.outstanding === 0) return;
    // The TX being built must reach the segment before the PING; and a message with TX would not count as a flush request.
    this.flush();
    const seq = this.control.seq();
    this.flushPingSeq = seq;
    this.txSinceFlushPing = false;
    this.counters.flushPings++;
    this.encoder.add({ type: "ping", seq, timestamp: 0 });
    this.flush();
  }

  /** Whether the current session was granted Gso (false before the first WELCOME). */
  private get gsoGranted(): boolean {
    return ((this.welcome?.features ?? 0) & Feature.Gso) !== 0;
  }

  /** A frame after a virtio-net header: trivial → sent plain; Gso granted → sent flagged; else offloaded in software. */
  private sendWithHeader(bytes: Uint8Array, done: TxCallback | undefined): void {
    if (bytes.length >= VNET_HEADER_BYTES && isTrivialVnetHeader(bytes)) return this.sendOne(bytes.subarray(VNET_HEADER_BYTES), 0, done);
    if (this.gsoGranted) return this.sendOne(bytes, TxFlag.VnetHeader, done);
    const segments = segmentWithHeader(bytes);
    if (!segments.ok) {
      this.counters.txDropped++;
      done?.(DropReason.Malformed);
      return;
    }
    // One callback per frame handed in: the last segment's status stands for the super-frame.
    const last = segments.value.length - 1;
    segments.value.forEach((segment, i) => this.sendOne(segment, 0, i === last ? done : undefined));
  }

  /** Sends or defers one record's frame. */
  private sendOne(frame: Uint8Array, flags: number, done: TxCallback | undefined): void {
    if (this.connection === "closed") {
      // Closed for good (close() or a fatal error): nothing will ever send it.
      this.counters.txReset++;
      done?.(DropReason.Reset);
    } else if (frame.length > MAX_FRAME_BYTES + (flags === 0 ? 0 : VNET_HEADER_BYTES)) {
      // The format cannot carry it; the encoder would throw.
      this.counters.txDropped++;
      done?.(DropReason.Oversize);
    } else if (this.deferred.length > 0 || !this.trySend(frame, flags, done)) {
      this.defer(frame, flags, done);
      // A full window: the ids may be held by the segment (LazyCompletions) rather than in flight.
      this.flushCompletions();
    }
  }

  /** Asks for the port's counters at the segment. */
  async stats(): Promise<StatsReplyRecord> {
    return (await this.request((seq) => ({ type: "stats-request", seq }))) as StatsReplyRecord;
  }

  /** Round-trip time to the segment in milliseconds (protocol ping, not the keepalive). */
  async ping(): Promise<number> {
    const started = performance.now();
    await this.request((seq) => ({ type: "ping", seq, timestamp: Date.now() }));
    return performance.now() - started;
  }

  /** Replaces the receive filter. */
  async setFilter(filter: { promiscuous: boolean; allMulticast: boolean; multicast: MacKey[] }): Promise<AckRecord> {
    return (await this.request((seq) => ({ type: "set-filter", seq, ...filter }))) as AckRecord;
  }

  /** Registers another MAC. */
  async addMac(mac: MacKey): Promise<AckRecord> {
    return (await this.request((seq) => ({ type: "add-mac", seq, mac }))) as AckRecord;
  }

  /** Gives up a MAC. */
  async removeMac(mac: MacKey): Promise<AckRecord> {
    return (await this.request((seq) => ({ type: "remove-mac", seq, mac }))) as AckRecord;
  }

  /** Says BYE and closes for good; outstanding TX completes with reset. */
  close(): void {
    const wasOpen = this.isOpen;
    this.connection = "closed";
    this.clearTimers();
    if (wasOpen) {
      this.add({ type: "bye", code: 1000, reason: "client closing" });
      this.flush();
    }
    this.socket?.close(1000, "client closing");
    this.failOutstanding();
    this.failDeferred();
    this.control.failAll(new SessionError(0, "session closed"));
    const waiters = [...this.startWaiters];
    for (const reject of waiters) reject(new SessionError(0, "session closed before the segment welcomed it"));
  }

  // ---- connection ---------------------------------------------------------------

  private connect(): void {
    const factory = this.options.socketFactory ?? browserSocket;
    let socket: SocketLike;
    try {
      const { url, headers } = this.target();
      socket = factory(url, [SUBPROTOCOL_V1], headers);
    } catch (error) {
      this.fatal(new SessionError(0, `cannot open ${this.options.url}: ${error instanceof Error ? error.message : String(error)}`));
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.connection = "connecting";
    this.lastSocketError = "";
    this.refusal = null;
    socket.onopen = () => this.sendHello(socket);
    socket.onmessage = (event) => this.onMessage(socket, event.data);
    socket.onclose = (event) => this.onSocketClose(socket, event.code, event.reason, event.httpStatus);
    socket.onerror = (event) => {
      // The close event that follows carries the code; keep the cause (ECONNREFUSED, …) for the message.
      const message = (event as { message?: unknown } | null)?.message;
      if (socket === this.socket && typeof message === "string") this.lastSocketError = message;
    };
  }

  /** The URL with kind and (for header-less sockets) token, and the headers to send. */
  private target(): { url: string; headers: Record<string, string> } {
    const url = new URL(this.options.url);
    if (this.options.kind !== undefined && this.options.kind !== "member") url.searchParams.set("kind", this.options.kind);
    const headers: Record<string, string> = {};
    if (this.options.token !== undefined) {
      if (this.options.socketFactory !== undefined) headers.authorization = `Bearer ${this.options.token}`;
      else url.searchParams.set("token", this.options.token);
    }
    return { url: url.toString(), headers };
  }

  private sendHello(socket: SocketLike): void {
    if (socket !== this.socket) return;
    if (socket.protocol !== SUBPROTOCOL_V1) {
      // Without the subprotocol the relay treats the socket as a raw port: descriptors would be read as frames.
      this.fatal(new SessionError(4001, `the relay at ${this.options.url} did not select the ${SUBPROTOCOL_V1} subprotocol (got "${socket.protocol}")`));
      socket.close(1000, "subprotocol not selected");
      return;
    }
    this.connection = "handshaking";
    // The HELLO must open the first message: nothing left over from an earlier connection may precede it.
    this.resetEncoder();
    this.encoder.add({
      type: "hello", minVersion: PROTOCOL_VERSION_MIN, maxVersion: PROTOCOL_VERSION_MAX,
      features: OFFERED_FEATURES | (this.options.vnetHeader === true ? Feature.Gso : 0) | (this.options.lazyCompletions === false ? 0 : Feature.LazyCompletions),
      portKind: this.options.kind ?? "member", macs: this.welcome?.macs ?? this.options.macs ?? [],
      txWindow: this.options.txWindow ?? DEFAULTS.txWindow, rxQueue: this.options.rxQueue ?? DEFAULTS.rxQueue,
      clientName: this.options.clientName ?? "edgelan", clientVersion: this.options.clientVersion ?? "0.1.0",
      ...(this.resume === null ? {} : { resume: this.resume }),
    });
    this.flush();
  }

  private onMessage(socket: SocketLike, data: unknown): void {
    if (!(data instanceof ArrayBuffer) || socket !== this.socket || socket === this.abandoned) return; // the keepalive answer is text
    this.received = [];
    const walked = forEachRecord(new Uint8Array(data), this.visitor);
    if (!walked.ok) {
      // A segment bug must not end a long-running agent: drop the connection and resume.
      this.recoverFromProtocolError(`segment sent an undecodable message (${walked.error.message})`, "undecodable message from segment");
      return;
    }
    const received = this.received;
    this.received = [];
    if (received.length > 0 && socket === this.socket && socket !== this.abandoned) this.deliver(received);
    this.flush();
  }

  /** Whether records of the message being walked still count (its connection was not given up meanwhile). */
  private get receiving(): boolean {
    return this.socket !== null && this.socket !== this.abandoned;
  }

  private onRx(flags: number, frame: Uint8Array): void {
    if (!this.receiving) return;
    const headerFlag = (flags & RxFlag.VnetHeader) !== 0;
    this.options.trace?.mark("ws-recv", frame, headerFlag ? VNET_HEADER_BYTES : 0);
    // A view is safe: every message arrives in its own ArrayBuffer that nothing reuses.
    this.received.push(this.options.vnetHeader !== true || headerFlag ? frame : withZeroVnetHeader(frame));
  }

  private onControlRecord(record: TunnelRecord): void {
    if (!this.receiving) return;
    switch (record.type) {
      case "welcome":
        this.onWelcome(record);
        return;
      case "refuse":
        // The segment closes with record.code next; a code that allows a retry (segment full, rate limited) is retried there.
        if (this.mayRetry() && shouldReconnect(record.code)) this.refusal = record.reason;
        else this.fatal(new SessionError(record.code, `segment refused the join: ${record.reason}`));
        return;
      case "pong":
        if (record.seq === this.flushPingSeq) this.onFlushPong();
        this.control.settle(record);
        return;
      case "ack":
      case "stats-reply":
        this.control.settle(record);
        return;
      case "ping":
        this.add({ type: "pong", seq: record.seq, timestamp: record.timestamp });
        return;
      case "link":
        this.events.emit("link", record.up, record.reason);
        return;
      default:
        return;
    }
  }

  private onWelcome(welcome: WelcomeRecord): void {
    const resumed = this.welcome !== null;
    this.welcome = { ...welcome, sessionId: welcome.sessionId.slice(), resumeToken: welcome.resumeToken.slice() };
    this.resume = welcome.resumeToken.length > 0 ? { sessionId: this.welcome.sessionId, token: this.welcome.resumeToken } : null;
    this.window = new TxWindow(welcome.txWindow);
    this.callbacks = new Array<TxCallback | undefined>(welcome.txWindow);
    this.connection = "open";
    this.backoff.reset();
    if (resumed) this.counters.reconnects++;
    // A Gso port may receive super-frames up to 65,535 bytes after their header.
    const bufferSize = this.options.rxBufferSize ?? (this.gsoGranted ? MAX_FRAME_BYTES + VNET_HEADER_BYTES : welcome.maxFrameSize + 4);
    this.credits = new RxCreditPoster(this.options.rxBuffers ?? DEFAULTS.rxBuffers, bufferSize);
    if (this.options.filter !== undefined) this.add({ type: "set-filter", seq: this.control.seq(), ...this.options.filter });
    this.postCredits();
    this.startKeepalive();
    this.events.emit("open", this.welcome);
    this.pumpDeferred();
  }

  private onSocketClose(socket: SocketLike, code: number, reason: string, httpStatus?: number): void {
    if (socket !== this.socket) return;
    if (httpStatus !== undefined) {
      this.onRefusedUpgrade(httpStatus, reason);
      return;
    }
    this.socket = null;
    this.abandoned = null;
    this.clearTimers();
    // Records queued for the dead connection (TX of failed ids, pongs, acks' requests) must not go out on the next one.
    this.resetEncoder();
    this.options.trace?.discard();
    this.failOutstanding();
    this.control.failAll(new SessionError(code, `connection closed (${code}${reason ? `: ${reason}` : ""}) before the segment answered`));
    const retry = this.mayRetry() && (this.reconnectAfterClose || shouldReconnect(code));
    this.reconnectAfterClose = false;
    const why = this.refusal ?? reason;
    this.events.emit("close", { code, reason: why, reconnecting: retry });
    if (retry) this.scheduleReconnect();
    else if (this.connection !== "closed" && code !== 1000) this.fatal(new SessionError(code, describeClose(code, why, this.options.url, this.lastSocketError)));
    else if (this.connection !== "closed") this.connection = "closed";
  }

  /** The relay answered the upgrade with an HTTP error: auth and not-found are final, 5xx is retried. */
  private onRefusedUpgrade(status: number, reason: string): void {
    this.socket = null;
    this.clearTimers();
    const retry = status >= 500 && this.mayRetry();
    this.events.emit("close", { code: 1006, reason, reconnecting: retry });
    if (retry) this.scheduleReconnect();
    else this.fatal(new SessionError(status, `relay refused the connection: ${reason}`));
  }

  /** Gives up the current connection after a recoverable protocol error; the close that follows reconnects. */
  private recoverFromProtocolError(detail: string, closeReason: string): void {
    this.counters.protocolErrors++;
    this.events.emit("warning", new SessionError(4000, `${detail}; reconnecting`));
    this.reconnectAfterClose = true;
    this.abandoned = this.socket;
    this.socket?.close(4000, closeReason);
  }

  /** Whether a lost or failed connection may be retried at all (the close code decides the rest). */
  private mayRetry(): boolean {
    const policy = this.options.reconnect;
    if (this.connection === "closed" || policy === false) return false;
    return this.welcome !== null || policy?.beforeOpen !== false;
  }

  private scheduleReconnect(): void {
    this.connection = "backoff";
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.connection === "backoff") this.connect();
    }, this.backoff.next());
  }

  // ---- TX -------------------------------------------------------------------------

  /** Sends one frame if the window has an id free. */
  private trySend(frame: Uint8Array, flags: number, done: TxCallback | undefined): boolean {
    if (!this.isOpen || this.window === null) return false;
    if (flags !== 0 && !this.gsoGranted) {
      // Deferred before a reconnect to a segment that no longer grants Gso: the segment would call it malformed.
      this.counters.txDropped++;
      done?.(DropReason.Malformed);
      return true;
    }
    const id = this.window.acquire();
    if (id === undefined) return false;
    this.callbacks[id & (this.callbacks.length - 1)] = done;
    // A message holds at most 4096 records and 1 MiB: a full one goes out now and the frame starts the next.
    if (!this.encoder.fitsFrame(frame.length)) this.flush();
    this.encoder.addTx(id, flags, frame);
    this.encoderHasTx = true;
    this.options.trace?.queue(frame, flags === 0 ? 0 : VNET_HEADER_BYTES);
    this.counters.txFrames++;
    this.counters.txBytes += frame.length;
    this.scheduleFlush();
    return true;
  }

  private defer(frame: Uint8Array, flags: number, done: TxCallback | undefined): void {
    // A copy: the caller may reuse its buffer once send() returns.
    if (!this.deferred.push({ frame: frame.slice(), flags, done })) {
      this.counters.txDeferDrops++;
      done?.(DropReason.RxQueueFull);
      return;
    }
    this.counters.txDeferred++;
  }

  /** Moves deferred frames into freed window slots. */
  private pumpDeferred(): void {
    for (let next = this.deferred.peek(); next !== undefined; next = this.deferred.peek()) {
      if (!this.trySend(next.frame, next.flags, next.done)) {
        this.flushCompletions();
        return;
      }
      this.deferred.shift();
    }
    this.notifyCompleted();
  }

  private onCompletion(firstId: number, count: number, status: number): void {
    const window = this.window;
    if (window === null || !this.receiving) return;
    const applied = window.applyCompletion(firstId, count, status);
    if (!applied.ok) {
      this.abandoned = this.socket;
      this.fatal(new SessionError(4000, `segment completed ids it never got: ${applied.error.message}`));
      this.socket?.close(4000, "bad completion");
      return;
    }
    const mask = this.callbacks.length - 1;
    for (let i = 0; i < count; i++) {
      const slot = (firstId + i) & mask;
      const done = this.callbacks[slot];
      this.callbacks[slot] = undefined;
      if (status === 0) this.counters.txOk++;
      else this.counters.txDropped++;
      done?.(status);
    }
    this.pumpDeferred();
  }

  private onFlushPong(): void {
    this.flushPingSeq = null;
    // The completions the PING asked for came before its PONG; more TX may have gone out since.
    if (this.deferred.length > 0 || this.completionWaiters.length > 0) this.flushCompletions();
  }

  /** Resolves whenCompleted() callers once nothing is outstanding or deferred. */
  private notifyCompleted(): void {
    if (this.completionWaiters.length === 0 || this.outstanding > 0 || this.deferred.length > 0) return;
    for (const resolve of this.completionWaiters.splice(0)) resolve();
  }

  /** Completes every deferred frame with reset: the session is closed for good, nothing would send them. */
  private failDeferred(): void {
    for (const { done } of this.deferred.drain()) {
      this.counters.txReset++;
      done?.(DropReason.Reset);
    }
    this.notifyCompleted();
  }

  /** Completes every outstanding TX with reset at once (the obsolete-device rule). */
  private failOutstanding(): void {
    const ids = this.window?.failAll() ?? [];
    const callbacks = this.callbacks;
    const mask = callbacks.length - 1;
    this.window = null;
    this.callbacks = [];
    this.flushPingSeq = null;
    this.txSinceFlushPing = false;
    for (const id of ids) {
      const done = callbacks[id & mask];
      this.counters.txReset++;
      done?.(DropReason.Reset);
    }
    this.notifyCompleted();
  }

  // ---- RX -------------------------------------------------------------------------

  private deliver(frames: Uint8Array[]): void {
    const filled = this.credits?.filled(frames.length);
    if (filled !== undefined && !filled.ok) {
      this.recoverFromProtocolError(filled.error.message, "rx without credit");
      return;
    }
    for (const frame of frames) {
      this.counters.rxFrames++;
      this.counters.rxBytes += frame.length;
    }
    this.events.emit("frames", frames);
    this.postCredits();
  }

  /** Tops posted buffers back up to the target once a quarter has been used. */
  private postCredits(): void {
    const credits = this.credits;
    const count = credits?.take() ?? 0;
    if (credits === null || count === 0) return;
    this.add({ type: "rx-post", count, bufferSize: credits.bufferSize });
    this.counters.creditsPosted += count;
  }

  // ---- control and output ---------------------------------------------------------

  private async request(build: (seq: number) => TunnelRecord): Promise<ControlReply> {
    if (!this.isOpen) throw new SessionError(0, "session is not open");
    const seq = this.control.seq();
    const reply = this.control.wait(seq);
    this.add(build(seq));
    return reply;
  }

  /** Queues a non-TX record for this turn's message, sending the current message first if it is full. */
  private add(record: TunnelRecord): void {
    if (this.encoder.recordCount > 0 && !this.encoder.fitsBody(MAX_CONTROL_BODY_BYTES)) this.flush();
    this.encoder.add(record);
    this.scheduleFlush();
  }

  /** Everything queued in this turn goes out as one message, without a timer. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    if (this.encoder.recordCount === 0 || socket?.readyState !== SOCKET_OPEN) return;
    // `ws` masks into a fresh buffer, so a view of the encoder's buffer is safe there; others get a copy they own.
    socket.send(socket.copiesOnSend === true ? this.encoder.finishView() : this.encoder.finish());
    if (this.encoderHasTx) this.txSinceFlushPing = true;
    this.resetEncoder();
    this.options.trace?.sent();
  }

  private resetEncoder(): void {
    this.encoder.reset();
    this.encoderHasTx = false;
  }

  private startKeepalive(): void {
    const seconds = this.options.keepaliveSeconds ?? DEFAULTS.keepaliveSeconds;
    if (seconds <= 0) return;
    this.keepaliveTimer = setInterval(() => {
      if (this.socket?.readyState === SOCKET_OPEN) this.socket.send(KEEPALIVE_REQUEST);
    }, seconds * 1000);
    (this.keepaliveTimer as { unref?: () => void }).unref?.();
  }

  private clearTimers(): void {
    if (this.keepaliveTimer !== null) clearInterval(this.keepaliveTimer);
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.keepaliveTimer = null;
    this.reconnectTimer = null;
  }

  private fatal(error: SessionError): void {
    this.connection = "closed";
    this.clearTimers();
    this.failDeferred();
    this.events.emit("error", error);
  }
}
