// The client side of a descriptor-mode tunnel: handshake, TX window with
// backpressure, RX credits, completions, control requests, keepalive and
// reconnect with resume. Runs in Node (with `ws`) and in browsers (global WebSocket).
import { SUBPROTOCOL_V1, KEEPALIVE_REQUEST, Feature, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, type PortKind } from "../datapath/tunnel/constants.ts";
import { CLOSE_CODE_INFO, isKnownCloseCode } from "../datapath/tunnel/close-codes.ts";
import { decodeMessage, MessageEncoder } from "../datapath/tunnel/codec.ts";
import type { AckRecord, StatsReplyRecord, TunnelRecord, WelcomeRecord } from "../datapath/tunnel/records.ts";
import { TxWindow } from "../datapath/tunnel/tx-window.ts";
import { DropReason } from "../datapath/counters.ts";
import type { MacKey } from "../datapath/mac.ts";

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
  /** RX buffers kept posted, default 1024 (a 1 Gbit/s burst over a 1.5 ms credit round trip needs ~125); size defaults to the granted max frame size. */
  rxBuffers?: number;
  rxBufferSize?: number;
  /** Frames deferred while the TX window is full before further sends are dropped (counted). */
  maxDeferred?: number;
  clientName?: string;
  clientVersion?: string;
  /** Receive filter applied at every (re)connect; full network stacks (TAP, VMs) want allMulticast for IPv6. */
  filter?: { promiscuous: boolean; allMulticast: boolean; multicast: MacKey[] };
  /** Reconnect with exponential backoff and jitter; false to stay closed. */
  reconnect?: false | { initialMs?: number; maxMs?: number };
  /** Seconds between text keepalives (answered by the runtime without waking the segment); 0 disables. */
  keepaliveSeconds?: number;
  socketFactory?: SocketFactory;
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
const DEFAULTS = { txWindow: 256, rxQueue: 256, rxBuffers: 1024, maxDeferred: 4096, initialMs: 250, maxMs: 10_000, keepaliveSeconds: 30 };

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
  welcome: WelcomeRecord | null = null;
  private socket: SocketLike | null = null;
  private window: TxWindow | null = null;
  private readonly callbacks = new Map<number, TxCallback | undefined>();
  private readonly deferred: Array<{ frame: Uint8Array; done: TxCallback | undefined }> = [];
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
      const onOpen = (welcome: WelcomeRecord): void => {
        this.off("open", onOpen);
        this.off("error", onError);
        resolve(welcome);
      };
      const onError = (error: SessionError): void => {
        this.off("open", onOpen);
        this.off("error", onError);
        reject(error);
      };
      this.on("open", onOpen).on("error", onError);
      this.connect();
    });
  }

  /** Whether the session is open (handshake done, socket up). */
  get isOpen(): boolean {
    return this.welcome !== null && this.socket?.readyState === OPEN;
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
      if (this.deferred.length > 0 || !this.trySend(frame, done)) this.defer(frame, done);
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
      this.encoder.add({ type: "bye", code: 1000, reason: "client closing" });
      this.flush();
    }
    this.socket?.close(1000, "client closing");
    this.failOutstanding();
  }

  // ---- connection ---------------------------------------------------------------

  private connect(): void {
    const { url, headers } = this.target();
    const factory = this.options.socketFactory ?? browserSocket;
    let socket: SocketLike;
    try {
      socket = factory(url, [SUBPROTOCOL_V1], headers);
    } catch (error) {
      this.fatal(new SessionError(0, `cannot open ${this.options.url}: ${String(error)}`));
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => this.sendHello();
    socket.onmessage = (event) => this.onMessage(event.data);
    socket.onclose = (event) => this.onSocketClose(socket, event.code, event.reason, event.httpStatus);
    socket.onerror = () => {
      // The close event that follows carries the code; errors before open surface there too.
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

  private sendHello(): void {
    this.encoder.add({
      type: "hello", minVersion: PROTOCOL_VERSION_MIN, maxVersion: PROTOCOL_VERSION_MAX,
      features: Feature.CoalescedCompletions | Feature.RxQueue | Feature.Stats | Feature.LinkNotices | Feature.Vlan | Feature.LargeFrames | Feature.Resume,
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
        this.fatal(new SessionError(record.code, `segment refused the join: ${record.reason}`));
        return;
      case "tx-complete":
        this.onCompletion(record.firstId, record.count, record.status);
        return;
      case "rx":
        received.push(record.frame.slice());
        return;
      case "ack":
      case "stats-reply":
      case "pong":
        this.settle(record.seq, record);
        return;
      case "ping":
        this.encoder.add({ type: "pong", seq: record.seq, timestamp: record.timestamp });
        this.scheduleFlush();
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
    this.attempt = 0;
    if (resumed) this.counters.reconnects++;
    this.creditsOutstanding = 0;
    if (this.options.filter !== undefined) this.encoder.add({ type: "set-filter", seq: this.nextSeq++ >>> 0, ...this.options.filter });
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
    this.clearTimers();
    this.failOutstanding();
    for (const settle of this.pending.values()) settle({ type: "ack", seq: 0, status: 255, reason: "connection closed" });
    this.pending.clear();
    const retry = !this.stopped && this.options.reconnect !== false && (this.reconnectAfterClose || shouldReconnect(code));
    this.reconnectAfterClose = false;
    this.emit("close", { code, reason, reconnecting: retry });
    if (retry) this.scheduleReconnect();
    else if (!this.stopped && code !== 1000) this.fatal(new SessionError(code, describeClose(code, reason, this.options.url)));
  }

  /** The relay answered the upgrade with an HTTP error: auth and not-found are final, 5xx is retried. */
  private onRefusedUpgrade(status: number, reason: string): void {
    this.socket = null;
    const retry = status >= 500 && !this.stopped && this.options.reconnect !== false;
    this.emit("close", { code: 1006, reason, reconnecting: retry });
    if (retry) this.scheduleReconnect();
    else this.fatal(new SessionError(status, `relay refused the connection: ${reason}`));
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
  private trySend(frame: Uint8Array, done: TxCallback | undefined): boolean {
    if (!this.isOpen || this.window === null) return false;
    const id = this.window.acquire();
    if (id === undefined) return false;
    this.callbacks.set(id, done);
    this.encoder.addTx(id, 0, frame);
    this.counters.txFrames++;
    this.counters.txBytes += frame.length;
    this.scheduleFlush();
    return true;
  }

  private defer(frame: Uint8Array, done: TxCallback | undefined): void {
    if (this.deferred.length >= (this.options.maxDeferred ?? DEFAULTS.maxDeferred)) {
      this.counters.txDeferDrops++;
      done?.(DropReason.RxQueueFull);
      return;
    }
    this.counters.txDeferred++;
    this.deferred.push({ frame: frame.slice(), done });
  }

  /** Moves deferred frames into freed window slots. */
  private pumpDeferred(): void {
    while (this.deferred.length > 0) {
      const next = this.deferred[0] as { frame: Uint8Array; done: TxCallback | undefined };
      if (!this.trySend(next.frame, next.done)) return;
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
    const bufferSize = this.options.rxBufferSize ?? (this.welcome?.maxFrameSize ?? 1514) + 4;
    this.encoder.add({ type: "rx-post", count: missing, bufferSize });
    this.creditsOutstanding += missing;
    this.counters.creditsPosted += missing;
    this.scheduleFlush();
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
      this.encoder.add(build(seq));
      this.scheduleFlush();
    });
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
function describeClose(code: number, reason: string, url: string): string {
  if (isKnownCloseCode(code)) return `segment closed the tunnel: ${CLOSE_CODE_INFO[code].meaning}${reason ? ` (${reason})` : ""}`;
  if (code === 1006) return `cannot reach the relay at ${url} (connection failed or dropped)`;
  return `tunnel closed with code ${code}${reason ? `: ${reason}` : ""}`;
}

/** The browser's (or Node 22's) global WebSocket. */
function browserSocket(url: string, protocols: string[]): SocketLike {
  const Global = (globalThis as unknown as { WebSocket?: new (url: string, protocols: string[]) => SocketLike }).WebSocket;
  if (Global === undefined) throw new Error("no global WebSocket here: pass socketFactory (for example one built on the `ws` package)");
  return new Global(url, protocols);
}
