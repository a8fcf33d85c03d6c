// The client side of a descriptor-mode tunnel: handshake, TX window with
// backpressure, RX credits, completions, control requests, keepalive and
// reconnect with resume. Runs in Node (with `ws`) and in browsers (global WebSocket).
import {
  SUBPROTOCOL_V1, KEEPALIVE_REQUEST, Feature, MAX_FRAME_BYTES, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, RxFlag, TxFlag, VNET_HEADER_BYTES, type PortKind,
} from "../datapath/tunnel/constants.ts";
import { isTrivialVnetHeader, segmentWithHeader, withZeroVnetHeader } from "../datapath/offload.ts";
import { CLOSE_CODE_INFO, isKnownCloseCode } from "../datapath/tunnel/close-codes.ts";
import { decodeMessage, MessageEncoder } from "../datapath/tunnel/codec.ts";
import type { AckRecord, StatsReplyRecord, TunnelRecord, WelcomeRecord } from "../datapath/tunnel/records.ts";
import { TxWindow } from "../datapath/tunnel/tx-window.ts";
import { DropReason } from "../datapath/counters.ts";
import type { MacKey } from "../datapath/mac.ts";
import type { SessionTrace } from "./frame-trace.ts";

/** The subset of the WebSocket API the session needs; both `ws` and browsers provide it. */
export interface SocketLike {
  binaryType: string;
  readonly protocol: string;
  readyState: number;
  send(data: Uint8Array | string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; httpStatus?: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** Opens a socket; Node callers pass one that can also set headers. */
export type SocketFactory = (url: string, protocols: string[], headers: Record<string, string>) => SocketLike;

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
  /** RX buffers kept posted, default 4096 (TCP bursts through a TAP overflowed 1024 plus the segment's queue); size defaults to the granted max frame size. */
  rxBuffers?: number;
  rxBufferSize?: number;
  /** Frames deferred while the TX window is full before further sends are dropped (counted). */
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
  /** Stamps ICMP echoes on their way through the session (bench:netns's latency budget; client/frame-trace.ts). */
  trace?: SessionTrace;
  /** Injected for tests; defaults to Math.random. */
  random?: () => number;
}

/** Called once per TX frame with 0 (ok) or a DropReason code. */
export type TxCallback = (status: number) => void;

export interface SessionCounters {
  txFrames: number; txBytes: number; txOk: number; txDropped: number; txReset: number; txDeferred: number; txDeferDrops: number;
  rxFrames: number; rxBytes: number; reconnects: number; creditsPosted: number;
}

export interface SessionEvents {
  open: (welcome: WelcomeRecord) => void;
  frames: (frames: Uint8Array[]) => void;
  close: (info: { code: number; reason: string; reconnecting: boolean }) => void;
  link: (up: boolean, reason: string) => void;
  /** A fatal refusal or protocol error: the session will not reconnect. */
  error: (error: SessionError) => void;
}

/** An error a user can act on: a code (close code or HTTP-like) and a message. */
export class SessionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = "SessionError";
  }
}

const OPEN = 1;
/** Room kept free for any non-TX record the session sends (a set-filter with 64 MACs is the largest). */
const MAX_CONTROL_BODY_BYTES = 512;
const DEFAULTS = { txWindow: 256, rxQueue: 256, rxBuffers: 4096, maxDeferred: 4096, initialMs: 250, maxMs: 10_000, keepaliveSeconds: 30 };

/**
 * One port on a segment. `send` never drops for lack of window: a full window
 * defers frames (netvsc's TX defer) until completions return ids. On
 * disconnect every outstanding TX completes with `reset` at once, and the
 * session reconnects with backoff, resuming its port.
 */
export class Session {
  readonly counters: SessionCounters = {
    txFrames: 0, txBytes: 0, txOk: 0, txDropped: 0, txReset: 0, txDeferred: 0, txDeferDrops: 0,
    rxFrames: 0, rxBytes: 0, reconnects: 0, creditsPosted: 0,
  };
  /** The last WELCOME (kept across reconnects: its MACs and credentials are what a resume asks for). */
  welcome: WelcomeRecord | null = null;
  private socket: SocketLike | null = null;
  /** True once the current socket's handshake is done (its WELCOME arrived). */
  private welcomed = false;
  private window: TxWindow | null = null;
  private readonly callbacks = new Map<number, TxCallback | undefined>();
  private readonly deferred: Array<{ frame: Uint8Array; flags: number; done: TxCallback | undefined }> = [];
  private readonly encoder = new MessageEncoder();
  private flushScheduled = false;
  private creditsOutstanding = 0;
  private resume: { sessionId: Uint8Array; token: Uint8Array } | null = null;
  private readonly pending = new Map<number, (record: AckRecord | StatsReplyRecord | { type: "pong"; timestamp: number }) => void>();
  private nextSeq = 1;
  private attempt = 0;
  private stopped = false;
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
  private readonly listeners: { [K in keyof SessionEvents]: Array<SessionEvents[K]> } = { open: [], frames: [], close: [], link: [], error: [] };

  constructor(private readonly options: SessionOptions) {}

  /** Registers an event handler. */
  on<K extends keyof SessionEvents>(event: K, handler: SessionEvents[K]): this {
    this.listeners[event].push(handler);
    return this;
  }

  /** Connects and resolves with the WELCOME, or rejects with a SessionError (refusal, HTTP error, unreachable). */
  start(): Promise<WelcomeRecord> {
    this.stopped = false;
    return new Promise((resolve, reject) => {
      const settled = (): void => {
        this.off("open", onOpen);
        this.off("error", onError);
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

  /** Whether the session is open (handshake done, socket up). */
  get isOpen(): boolean {
    return this.welcomed && this.socket?.readyState === OPEN;
  }

  /** TX descriptors in flight. */
  get outstanding(): number {
    return this.window?.outstanding ?? 0;
  }

  /** Frames waiting for window space. */
  get deferredCount(): number {
    return this.deferred.length;
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
    if (this.stopped) {
      // Closed for good (close() or a fatal error): nothing will ever send it.
      this.counters.txReset++;
      done?.(DropReason.Reset);
    } else if (frame.length > MAX_FRAME_BYTES + (flags === 0 ? 0 : VNET_HEADER_BYTES)) {
      // The format cannot carry it; the encoder would throw.
      this.counters.txDropped++;
      done?.(DropReason.Oversize);
    } else if (this.deferred.length > 0 || !this.trySend(frame, flags, done)) {
      this.defer(frame, flags, done);
    }
  }

  /** Asks for the port's counters at the segment. */
  stats(): Promise<StatsReplyRecord> {
    return this.request((seq) => ({ type: "stats-request", seq })) as Promise<StatsReplyRecord>;
  }

  /** Round-trip time to the segment in milliseconds (protocol ping, not the keepalive). */
  async ping(): Promise<number> {
    const started = Date.now();
    await this.request((seq) => ({ type: "ping", seq, timestamp: started }));
    return Date.now() - started;
  }

  /** Replaces the receive filter. */
  setFilter(filter: { promiscuous: boolean; allMulticast: boolean; multicast: MacKey[] }): Promise<AckRecord> {
    return this.request((seq) => ({ type: "set-filter", seq, ...filter })) as Promise<AckRecord>;
  }

  /** Registers another MAC. */
  addMac(mac: MacKey): Promise<AckRecord> {
    return this.request((seq) => ({ type: "add-mac", seq, mac })) as Promise<AckRecord>;
  }

  /** Gives up a MAC. */
  removeMac(mac: MacKey): Promise<AckRecord> {
    return this.request((seq) => ({ type: "remove-mac", seq, mac })) as Promise<AckRecord>;
  }

  /** Says BYE and closes for good; outstanding TX completes with reset. */
  close(): void {
    this.stopped = true;
    this.clearTimers();
    if (this.isOpen) {
      this.add({ type: "bye", code: 1000, reason: "client closing" });
      this.flush();
    }
    this.socket?.close(1000, "client closing");
    this.failOutstanding();
    this.failDeferred();
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
    this.welcomed = false;
    this.lastSocketError = "";
    this.refusal = null;
    socket.onopen = () => this.sendHello(socket);
    socket.onmessage = (event) => this.onMessage(event.data);
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
    // The HELLO must open the first message: nothing left over from an earlier connection may precede it.
    this.encoder.reset();
    this.encoder.add({
      type: "hello", minVersion: PROTOCOL_VERSION_MIN, maxVersion: PROTOCOL_VERSION_MAX,
      features: Feature.CoalescedCompletions | Feature.RxQueue | Feature.Stats | Feature.LinkNotices | Feature.Vlan | Feature.LargeFrames | Feature.Resume
        | (this.options.vnetHeader === true ? Feature.Gso : 0),
      portKind: this.options.kind ?? "member", macs: this.welcome?.macs ?? this.options.macs ?? [],
      txWindow: this.options.txWindow ?? DEFAULTS.txWindow, rxQueue: this.options.rxQueue ?? DEFAULTS.rxQueue,
      clientName: this.options.clientName ?? "edgelan", clientVersion: this.options.clientVersion ?? "0.1.0",
      ...(this.resume === null ? {} : { resume: this.resume }),
    });
    this.flush();
  }

  private onMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) return; // the keepalive answer is text
    const decoded = decodeMessage(new Uint8Array(data));
    if (!decoded.ok) {
      // A segment bug must not end a long-running agent: drop the connection and resume.
      console.error(`edgelan: segment sent an undecodable message (${decoded.error.message}); reconnecting`);
      this.reconnectAfterClose = true;
      this.socket?.close(4000, "undecodable message from segment");
      return;
    }
    const received: Uint8Array[] = [];
    for (const record of decoded.value) this.onRecord(record, received);
    if (received.length > 0) this.deliver(received);
    this.flush();
  }

  private onRecord(record: TunnelRecord, received: Uint8Array[]): void {
    switch (record.type) {
      case "welcome":
        this.onWelcome(record);
        return;
      case "refuse":
        // The segment closes with record.code next; a code that allows a retry (segment full, rate limited) is retried there.
        if (this.mayRetry() && shouldReconnect(record.code)) this.refusal = record.reason;
        else this.fatal(new SessionError(record.code, `segment refused the join: ${record.reason}`));
        return;
      case "tx-complete":
        this.onCompletion(record.firstId, record.count, record.status);
        return;
      case "rx":
        this.options.trace?.mark("ws-recv", record.frame, (record.flags & RxFlag.VnetHeader) !== 0 ? VNET_HEADER_BYTES : 0);
        // A view is safe: every message arrives in its own ArrayBuffer that nothing reuses.
        if (this.options.vnetHeader !== true || (record.flags & RxFlag.VnetHeader) !== 0) received.push(record.frame);
        else received.push(withZeroVnetHeader(record.frame));
        return;
      case "ack":
      case "stats-reply":
      case "pong":
        this.settle(record.seq, record);
        return;
      case "ping":
        this.add({ type: "pong", seq: record.seq, timestamp: record.timestamp });
        return;
      case "link":
        this.emit("link", record.up, record.reason);
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
    this.welcomed = true;
    this.attempt = 0;
    if (resumed) this.counters.reconnects++;
    this.creditsOutstanding = 0;
    if (this.options.filter !== undefined) this.add({ type: "set-filter", seq: this.nextSeq++ >>> 0, ...this.options.filter });
    this.postCredits();
    this.startKeepalive();
    this.emit("open", this.welcome);
    this.pumpDeferred();
  }

  private onSocketClose(socket: SocketLike, code: number, reason: string, httpStatus?: number): void {
    if (socket !== this.socket) return;
    if (httpStatus !== undefined) {
      this.onRefusedUpgrade(httpStatus, reason);
      return;
    }
    this.socket = null;
    this.welcomed = false;
    this.clearTimers();
    // Records queued for the dead connection (TX of failed ids, pongs, acks' requests) must not go out on the next one.
    this.encoder.reset();
    this.options.trace?.discard();
    this.failOutstanding();
    for (const settle of this.pending.values()) settle({ type: "ack", seq: 0, status: 255, reason: "connection closed" });
    this.pending.clear();
    const retry = this.mayRetry() && (this.reconnectAfterClose || shouldReconnect(code));
    this.reconnectAfterClose = false;
    const why = this.refusal ?? reason;
    this.emit("close", { code, reason: why, reconnecting: retry });
    if (retry) this.scheduleReconnect();
    else if (!this.stopped && code !== 1000) this.fatal(new SessionError(code, describeClose(code, why, this.options.url, this.lastSocketError)));
  }

  /** The relay answered the upgrade with an HTTP error: auth and not-found are final, 5xx is retried. */
  private onRefusedUpgrade(status: number, reason: string): void {
    this.socket = null;
    this.clearTimers();
    const retry = status >= 500 && this.mayRetry();
    this.emit("close", { code: 1006, reason, reconnecting: retry });
    if (retry) this.scheduleReconnect();
    else this.fatal(new SessionError(status, `relay refused the connection: ${reason}`));
  }

  /** Whether a lost or failed connection may be retried at all (the close code decides the rest). */
  private mayRetry(): boolean {
    const policy = this.options.reconnect;
    if (this.stopped || policy === false) return false;
    return this.welcome !== null || policy?.beforeOpen !== false;
  }

  private scheduleReconnect(): void {
    const initial = (this.options.reconnect === false ? undefined : this.options.reconnect?.initialMs) ?? DEFAULTS.initialMs;
    const max = (this.options.reconnect === false ? undefined : this.options.reconnect?.maxMs) ?? DEFAULTS.maxMs;
    const ceiling = Math.min(max, initial * 2 ** this.attempt);
    const delay = ceiling / 2 + (this.options.random ?? Math.random)() * (ceiling / 2);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopped) this.connect();
    }, delay);
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
    this.callbacks.set(id, done);
    // A message holds at most 4096 records and 1 MiB: a full one goes out now and the frame starts the next.
    if (!this.encoder.fitsFrame(frame.length)) this.flush();
    this.encoder.addTx(id, flags, frame);
    this.options.trace?.queue(frame, flags === 0 ? 0 : VNET_HEADER_BYTES);
    this.counters.txFrames++;
    this.counters.txBytes += frame.length;
    this.scheduleFlush();
    return true;
  }

  private defer(frame: Uint8Array, flags: number, done: TxCallback | undefined): void {
    if (this.deferred.length >= (this.options.maxDeferred ?? DEFAULTS.maxDeferred)) {
      this.counters.txDeferDrops++;
      done?.(DropReason.RxQueueFull);
      return;
    }
    this.counters.txDeferred++;
    this.deferred.push({ frame: frame.slice(), flags, done });
  }

  /** Moves deferred frames into freed window slots. */
  private pumpDeferred(): void {
    while (this.deferred.length > 0) {
      const next = this.deferred[0] as { frame: Uint8Array; flags: number; done: TxCallback | undefined };
      if (!this.trySend(next.frame, next.flags, next.done)) return;
      this.deferred.shift();
    }
  }

  private onCompletion(firstId: number, count: number, status: number): void {
    const window = this.window;
    if (window === null) return;
    const applied = window.applyCompletion(firstId, count, status);
    if (!applied.ok) {
      this.fatal(new SessionError(4000, `segment completed ids it never got: ${applied.error.message}`));
      this.socket?.close(4000, "bad completion");
      return;
    }
    for (let i = 0; i < count; i++) {
      const id = (firstId + i) & 0xffff;
      const done = this.callbacks.get(id);
      this.callbacks.delete(id);
      if (status === 0) this.counters.txOk++;
      else this.counters.txDropped++;
      done?.(status);
    }
    this.pumpDeferred();
  }

  /** Completes every deferred frame with reset: the session is closed for good, nothing would send them. */
  private failDeferred(): void {
    for (const { done } of this.deferred.splice(0)) {
      this.counters.txReset++;
      done?.(DropReason.Reset);
    }
  }

  /** Completes every outstanding TX with reset at once (the obsolete-device rule). */
  private failOutstanding(): void {
    const ids = this.window?.failAll() ?? [];
    this.window = null;
    for (const id of ids) {
      const done = this.callbacks.get(id);
      this.callbacks.delete(id);
      this.counters.txReset++;
      done?.(DropReason.Reset);
    }
    this.callbacks.clear();
  }

  // ---- RX -------------------------------------------------------------------------

  private deliver(frames: Uint8Array[]): void {
    this.creditsOutstanding -= frames.length;
    for (const frame of frames) {
      this.counters.rxFrames++;
      this.counters.rxBytes += frame.length;
    }
    this.emit("frames", frames);
    this.postCredits();
  }

  /** Tops posted buffers back up to the target once a quarter has been used. */
  private postCredits(): void {
    const target = this.options.rxBuffers ?? DEFAULTS.rxBuffers;
    const missing = target - this.creditsOutstanding;
    if (missing <= 0 || (this.creditsOutstanding > 0 && missing < target / 4)) return;
    // A Gso port may receive super-frames up to 65,535 bytes after their header.
    const bufferSize = this.options.rxBufferSize ?? (this.gsoGranted ? MAX_FRAME_BYTES + VNET_HEADER_BYTES : (this.welcome?.maxFrameSize ?? 1514) + 4);
    this.add({ type: "rx-post", count: missing, bufferSize });
    this.creditsOutstanding += missing;
    this.counters.creditsPosted += missing;
  }

  // ---- control and output ---------------------------------------------------------

  private request(build: (seq: number) => TunnelRecord): Promise<unknown> {
    if (!this.isOpen) return Promise.reject(new SessionError(0, "session is not open"));
    const seq = this.nextSeq++ >>> 0;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, (record) => {
        if (record.type === "ack" && record.status === 255 && record.seq === 0) reject(new SessionError(0, record.reason));
        else resolve(record);
      });
      this.add(build(seq));
    });
  }

  /** Queues a non-TX record for this turn's message, sending the current message first if it is full. */
  private add(record: TunnelRecord): void {
    if (this.encoder.recordCount > 0 && !this.encoder.fitsBody(MAX_CONTROL_BODY_BYTES)) this.flush();
    this.encoder.add(record);
    this.scheduleFlush();
  }

  private settle(seq: number, record: AckRecord | StatsReplyRecord | { type: "pong"; timestamp: number }): void {
    const settle = this.pending.get(seq);
    this.pending.delete(seq);
    settle?.(record);
  }

  /** Everything queued in this turn goes out as one message, without a timer. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.encoder.recordCount === 0 || this.socket?.readyState !== OPEN) return;
    const message = this.encoder.finish();
    this.encoder.reset();
    this.socket.send(message);
    this.options.trace?.sent();
  }

  private startKeepalive(): void {
    const seconds = this.options.keepaliveSeconds ?? DEFAULTS.keepaliveSeconds;
    if (seconds <= 0) return;
    this.keepaliveTimer = setInterval(() => {
      if (this.socket?.readyState === OPEN) this.socket.send(KEEPALIVE_REQUEST);
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
    this.stopped = true;
    this.clearTimers();
    this.failDeferred();
    this.emit("error", error);
  }

  private off<K extends keyof SessionEvents>(event: K, handler: SessionEvents[K]): void {
    const list = this.listeners[event] as Array<SessionEvents[K]>;
    const index = list.indexOf(handler);
    if (index >= 0) list.splice(index, 1);
  }

  private emit<K extends keyof SessionEvents>(event: K, ...args: Parameters<SessionEvents[K]>): void {
    for (const handler of [...this.listeners[event]]) (handler as (...a: Parameters<SessionEvents[K]>) => void)(...args);
  }
}

/** Reconnect after abnormal closes and after codes the protocol marks as resumable. */
function shouldReconnect(code: number): boolean {
  if (code === 1000) return false;
  if (isKnownCloseCode(code)) return CLOSE_CODE_INFO[code].reconnect;
  return code < 4000 || code >= 5000;
}

/** A message a user can act on for a close before or after the handshake. */
function describeClose(code: number, reason: string, url: string, transportError: string): string {
  if (isKnownCloseCode(code)) return `segment closed the tunnel: ${CLOSE_CODE_INFO[code].meaning}${reason ? ` (${reason})` : ""}`;
  if (code === 1006) return `cannot reach the relay at ${url} (${transportError || "connection failed or dropped"})`;
  return `tunnel closed with code ${code}${reason ? `: ${reason}` : ""}`;
}

/** The browser's (or Node 22's) global WebSocket. */
function browserSocket(url: string, protocols: string[]): SocketLike {
  const Global = (globalThis as unknown as { WebSocket?: new (url: string, protocols: string[]) => SocketLike }).WebSocket;
  if (Global === undefined) throw new Error("no global WebSocket here: pass socketFactory (for example one built on the `ws` package)");
  return new Global(url, protocols);
}
