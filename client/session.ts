// The client side of a descriptor-mode tunnel: handshake, TX window with
// backpressure, RX credits, completions, control requests, keepalive and
// reconnect with resume. Runs in Node (with `ws`) and in browsers (global WebSocket).
//
// The parts live in client/session/: options, counters and events; the socket
// surface; errors and close codes; backoff; the outgoing message (outbox); the TX
// path (window, callbacks, the deferred-TX ring, flush PINGs); control requests
// and the event emitter. This file is the connection state machine that joins
// them, the receive side, and the public API.
import {
  SUBPROTOCOL_V1, KEEPALIVE_REQUEST, Feature, MAX_FRAME_BYTES, RxFlag, TxFlag, VNET_HEADER_BYTES,
} from "../datapath/tunnel/constants.ts";
import { isTrivialVnetHeader, segmentWithHeader, withZeroVnetHeader } from "../datapath/offload.ts";
import { forEachRecord, type RecordVisitor } from "../datapath/tunnel/codec.ts";
import type { AckRecord, ResumeCredentials, StatsReplyRecord, TunnelRecord, WelcomeRecord } from "../datapath/tunnel/records.ts";
import { RxCreditPoster } from "../datapath/tunnel/rx-credits.ts";
import { DropReason } from "../datapath/counters.ts";
import type { MacKey } from "../datapath/mac.ts";
import { Backoff } from "./session/backoff.ts";
import { ControlRequests, type ControlReply } from "./session/control.ts";
import { describeClose, SessionError, shouldReconnect } from "./session/errors.ts";
import { Emitter } from "./session/events.ts";
import { helloRecord, upgradeTarget } from "./session/handshake.ts";
import { newSessionCounters, SESSION_DEFAULTS as DEFAULTS, type ConnectionState, type SessionEvents, type SessionOptions } from "./session/options.ts";
import { Outbox } from "./session/outbox.ts";
import { browserSocket, SOCKET_OPEN, type SocketLike } from "./session/socket.ts";
import { TxPath } from "./session/tx-path.ts";
import type { TxCallback } from "./session/tx-queue.ts";

export { SessionError } from "./session/errors.ts";
export type { ConnectionState, SessionCounters, SessionEvents, SessionOptions } from "./session/options.ts";
export type { SocketFactory, SocketLike } from "./session/socket.ts";
export type { TxCallback } from "./session/tx-queue.ts";



/**
 * One port on a segment. `send` never drops for lack of window: a full window
 * defers frames (netvsc's TX defer) until completions return ids. On
 * disconnect every outstanding TX completes with `reset` at once, and the
 * session reconnects with backoff, resuming its port.
 */
export class Session {
  readonly counters = newSessionCounters();
  /** The last WELCOME (kept across reconnects: its MACs and credentials are what a resume asks for). */
  welcome: WelcomeRecord | null = null;
  private connection: ConnectionState = "idle";
  private socket: SocketLike | null = null;
  /** The socket this side decided to close (a protocol error): what it still delivers is ignored. */
  private abandoned: SocketLike | null = null;
  private readonly outbox: Outbox;
  private readonly tx: TxPath;
  private credits: RxCreditPoster | null = null;
  private resume: ResumeCredentials | null = null;
  private readonly control = new ControlRequests();
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
    this.outbox = new Outbox(options.trace);
    this.tx = new TxPath({
      counters: this.counters, outbox: this.outbox, canSend: () => this.isOpen, gsoGranted: () => this.gsoGranted,
      lazyGranted: () => this.lazyCompletions, nextSeq: () => this.control.seq(),
    }, options.maxDeferred ?? DEFAULTS.maxDeferred, options.callbackFlushMs ?? DEFAULTS.callbackFlushMs);
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
    return this.tx.outstanding;
  }

  /** Frames waiting for window space. */
  get deferredCount(): number {
    return this.tx.deferredCount;
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
    return this.tx.whenCompleted();
  }

  /**
   * With LazyCompletions: sends a PING in a message of its own, which the segment answers with every
   * completion it holds for this port. Does nothing without lazy completions, with nothing outstanding,
   * while a flush PING is already in flight, or when no TX went out since the last one.
   */
  flushCompletions(): void {
    this.tx.flushCompletions();
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
    } else {
      this.tx.send(frame, flags, done);
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
      this.outbox.add({ type: "bye", code: 1000, reason: "client closing" });
      this.outbox.flush();
    }
    this.socket?.close(1000, "client closing");
    this.tx.failOutstanding();
    this.tx.failDeferred();
    this.control.failAll(new SessionError(0, "session closed"));
    const waiters = [...this.startWaiters];
    for (const reject of waiters) reject(new SessionError(0, "session closed before the segment welcomed it"));
  }

  // ---- connection ---------------------------------------------------------------

  private connect(): void {
    const factory = this.options.socketFactory ?? browserSocket;
    let socket: SocketLike;
    try {
      const { url, headers } = upgradeTarget(this.options, this.resume === null ? null : this.welcome);
      socket = factory(url, [SUBPROTOCOL_V1], headers);
    } catch (error) {
      this.fatal(new SessionError(0, `cannot open ${this.options.url}: ${error instanceof Error ? error.message : String(error)}`));
      return;
    }
    // Node's `ws` delivers Buffers, views of the socket's own read chunk: asking it for ArrayBuffers would copy
    // nearly every message. Browsers default to Blob and get ArrayBuffers.
    if (socket.binaryType !== "nodebuffer") socket.binaryType = "arraybuffer";
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
    this.outbox.use(socket);
    this.outbox.add(helloRecord(this.options, this.welcome, this.resume));
    this.outbox.flush();
  }

  private onMessage(socket: SocketLike, data: unknown): void {
    // The keepalive answer is text (a string); binary data is an ArrayBuffer, or a Buffer from Node's `ws`.
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : null;
    if (bytes === null || socket !== this.socket || socket === this.abandoned) return;
    this.options.trace?.received();
    this.received = [];
    const walked = forEachRecord(bytes, this.visitor);
    if (!walked.ok) {
      // A segment bug must not end a long-running agent: drop the connection and resume.
      this.recoverFromProtocolError(`segment sent an undecodable message (${walked.error.message})`, "undecodable message from segment");
      return;
    }
    const received = this.received;
    this.received = [];
    if (received.length > 0 && socket === this.socket && socket !== this.abandoned) this.deliver(received);
    this.outbox.flush();
  }

  /** Whether records of the message being walked still count (its connection was not given up meanwhile). */
  private get receiving(): boolean {
    return this.socket !== null && this.socket !== this.abandoned;
  }

  private onRx(flags: number, frame: Uint8Array): void {
    if (!this.receiving) return;
    const headerFlag = (flags & RxFlag.VnetHeader) !== 0;
    this.options.trace?.mark("ws-recv", frame, headerFlag ? VNET_HEADER_BYTES : 0);
    // A view is safe: every message arrives in its own ArrayBuffer, or in a socket read chunk, that nothing rewrites.
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
        this.tx.onPong(record.seq);
        this.control.settle(record);
        return;
      case "ack":
      case "stats-reply":
        this.control.settle(record);
        return;
      case "ping":
        this.outbox.add({ type: "pong", seq: record.seq, timestamp: record.timestamp });
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
    this.connection = "open";
    this.backoff.reset();
    if (resumed) this.counters.reconnects++;
    // A Gso port may receive super-frames up to 65,535 bytes after their header.
    const bufferSize = this.options.rxBufferSize ?? (this.gsoGranted ? MAX_FRAME_BYTES + VNET_HEADER_BYTES : welcome.maxFrameSize + 4);
    this.credits = new RxCreditPoster(this.options.rxBuffers ?? DEFAULTS.rxBuffers, bufferSize);
    if (this.options.filter !== undefined) this.outbox.add({ type: "set-filter", seq: this.control.seq(), ...this.options.filter });
    this.postCredits();
    this.startKeepalive();
    this.events.emit("open", this.welcome);
    this.tx.open(welcome.txWindow);
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
    this.outbox.use(null);
    this.tx.failOutstanding();
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
    const delay = this.backoff.next();
    this.events.emit("retry", { attempt: this.backoff.attempts, delayMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.connection === "backoff") this.connect();
    }, delay);
  }

  // ---- RX -------------------------------------------------------------------------

  private onCompletion(firstId: number, count: number, status: number): void {
    if (!this.receiving) return;
    const completed = this.tx.complete(firstId, count, status);
    if (!completed.ok) {
      this.abandoned = this.socket;
      this.fatal(new SessionError(4000, completed.error.message));
      this.socket?.close(4000, "bad completion");
    }
  }

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
    this.outbox.add({ type: "rx-post", count, bufferSize: credits.bufferSize });
    this.counters.creditsPosted += count;
  }

  // ---- control and output ---------------------------------------------------------

  private async request(build: (seq: number) => TunnelRecord): Promise<ControlReply> {
    if (!this.isOpen) throw new SessionError(0, "session is not open");
    const seq = this.control.seq();
    const reply = this.control.wait(seq);
    this.outbox.add(build(seq));
    return reply;
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
    this.tx.failDeferred();
    this.events.emit("error", error);
  }
}
