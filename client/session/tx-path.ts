// The TX side of a session: the window of ids, each frame's callback, frames
// deferred while the window is full, and (with LazyCompletions) the PING that
// asks the segment for the completions it holds.
import { DropReason } from "../../datapath/counters.ts";
import { fail, ok, type Result } from "../../datapath/result.ts";
import { TxWindow } from "../../datapath/tunnel/tx-window.ts";
import type { SessionCounters } from "./options.ts";
import type { Outbox } from "./outbox.ts";
import { TxQueue, type TxCallback } from "./tx-queue.ts";

/** What the TX path needs from its session. */
export interface TxPathHost {
  readonly counters: SessionCounters;
  readonly outbox: Outbox;
  /** Whether frames may go out now (socket open, handshake done). */
  canSend(): boolean;
  /** Whether the current connection was granted Gso / LazyCompletions. */
  gsoGranted(): boolean;
  lazyGranted(): boolean;
  /** A fresh control sequence number (for the flush PING). */
  nextSeq(): number;
}

export class TxPath {
  private window: TxWindow | null = null;
  /** Callbacks by window slot (outstanding ids are distinct modulo the window size). */
  private callbacks: Array<TxCallback | undefined> = [];
  private readonly deferred: TxQueue;
  /** The flush PING in flight, or null. */
  private flushPingSeq: number | null = null;
  private readonly completionWaiters: Array<() => void> = [];
  /** The pending callbackFlushMs timer, or null. */
  private callbackFlush: ReturnType<typeof setTimeout> | null = null;

  /**
   * @param callbackFlushMs with LazyCompletions, how long a frame sent with a callback waits for its
   *   completion before the session asks for it with a flush PING (0: never). The segment holds
   *   completions until it has something else to send (protocol.md §6.3 rule 2a), so an idle port would
   *   otherwise hear nothing; frames sent without a callback (a TAP's) need no such bound. A client-side
   *   timer: the segment itself never waits on one.
   */
  constructor(private readonly host: TxPathHost, maxDeferred: number, private readonly callbackFlushMs: number) {
    this.deferred = new TxQueue(maxDeferred);
  }

  /** TX descriptors in flight. */
  get outstanding(): number {
    return this.window?.outstanding ?? 0;
  }

  /** Frames waiting for window space. */
  get deferredCount(): number {
    return this.deferred.length;
  }

  /** A connection was welcomed with a window of `size` ids: deferred frames go out now. */
  open(size: number): void {
    this.window = new TxWindow(size);
    this.callbacks = new Array<TxCallback | undefined>(size);
    this.flushPingSeq = null;
    this.pump();
  }

  /** Sends one record's frame, or defers it while the window is full (or the connection is down). */
  send(frame: Uint8Array, flags: number, done: TxCallback | undefined): void {
    if (this.deferred.length > 0 || !this.trySend(frame, flags, done)) {
      this.defer(frame, flags, done);
      // A full window: the ids may be held by the segment (LazyCompletions) rather than in flight.
      this.flushCompletions();
    }
  }

  /** Applies a completion run; a run naming ids that are not outstanding is a protocol error (nothing changes). */
  complete(firstId: number, count: number, status: number): Result<void, "bad-completion"> {
    const window = this.window;
    if (window === null) return ok(undefined);
    const applied = window.applyCompletion(firstId, count, status);
    if (!applied.ok) return fail("bad-completion", `segment completed ids it never got: ${applied.error.message}`);
    const mask = this.callbacks.length - 1;
    for (let i = 0; i < count; i++) {
      const slot = (firstId + i) & mask;
      const done = this.callbacks[slot];
      this.callbacks[slot] = undefined;
      if (status === 0) this.host.counters.txOk++;
      else this.host.counters.txDropped++;
      done?.(status);
    }
    this.pump();
    return ok(undefined);
  }

  /** A PONG arrived; true if it answered the flush PING. */
  onPong(seq: number): boolean {
    if (seq !== this.flushPingSeq) return false;
    this.flushPingSeq = null;
    // The completions the PING asked for came before its PONG; more TX may have gone out since.
    if (this.deferred.length > 0 || this.completionWaiters.length > 0) this.flushCompletions();
    return true;
  }

  /**
   * With LazyCompletions: sends a PING in a message of its own, which the segment answers with every
   * completion it holds for this port. Does nothing without lazy completions, with nothing outstanding,
   * while a flush PING is already in flight, or when no TX went out since the last one.
   */
  flushCompletions(): void {
    const outbox = this.host.outbox;
    if (!this.host.lazyGranted() || this.flushPingSeq !== null || this.outstanding === 0 || !outbox.txSinceMark) return;
    // The TX being built must reach the segment before the PING; and a message with TX would not count as a flush request.
    outbox.flush();
    outbox.markTx();
    this.flushPingSeq = this.host.nextSeq();
    this.host.counters.flushPings++;
    outbox.add({ type: "ping", seq: this.flushPingSeq, timestamp: 0 });
    outbox.flush();
  }

  /** Resolves once every frame handed over so far has its completion (ok, dropped or reset). */
  whenCompleted(): Promise<void> {
    if (this.outstanding === 0 && this.deferred.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.completionWaiters.push(resolve);
      this.flushCompletions();
    });
  }

  /** The connection is gone: every outstanding TX completes with reset at once (the obsolete-device rule). */
  failOutstanding(): void {
    const ids = this.window?.failAll() ?? [];
    const callbacks = this.callbacks;
    const mask = callbacks.length - 1;
    this.window = null;
    this.callbacks = [];
    this.flushPingSeq = null;
    if (this.callbackFlush !== null) clearTimeout(this.callbackFlush);
    this.callbackFlush = null;
    for (const id of ids) {
      this.host.counters.txReset++;
      callbacks[id & mask]?.(DropReason.Reset);
    }
    this.notifyCompleted();
  }

  /** The session is closed for good: every deferred frame completes with reset, nothing would send it. */
  failDeferred(): void {
    for (const { done } of this.deferred.drain()) {
      this.host.counters.txReset++;
      done?.(DropReason.Reset);
    }
    this.notifyCompleted();
  }

  /** Sends one frame if the window has an id free. */
  private trySend(frame: Uint8Array, flags: number, done: TxCallback | undefined): boolean {
    if (!this.host.canSend() || this.window === null) return false;
    if (flags !== 0 && !this.host.gsoGranted()) {
      // Deferred before a reconnect to a segment that no longer grants Gso: the segment would call it malformed.
      this.host.counters.txDropped++;
      done?.(DropReason.Malformed);
      return true;
    }
    const id = this.window.acquire();
    if (id === undefined) return false;
    this.callbacks[id & (this.callbacks.length - 1)] = done;
    this.host.outbox.addTx(id, flags, frame);
    if (done !== undefined) this.boundCallbackWait();
    this.host.counters.txFrames++;
    this.host.counters.txBytes += frame.length;
    return true;
  }

  /** Starts the callback flush timer (once; it rearms on the next send with a callback). */
  private boundCallbackWait(): void {
    if (this.callbackFlush !== null || this.callbackFlushMs === 0 || !this.host.lazyGranted()) return;
    this.callbackFlush = setTimeout(() => {
      this.callbackFlush = null;
      this.flushCompletions();
    }, this.callbackFlushMs);
    // Never keeps a Node process alive on its own.
    (this.callbackFlush as { unref?: () => void }).unref?.();
  }

  private defer(frame: Uint8Array, flags: number, done: TxCallback | undefined): void {
    // A copy: the caller may reuse its buffer once send() returns.
    if (!this.deferred.push({ frame: frame.slice(), flags, done })) {
      this.host.counters.txDeferDrops++;
      done?.(DropReason.RxQueueFull);
      return;
    }
    this.host.counters.txDeferred++;
  }

  /** Moves deferred frames into freed window slots. */
  private pump(): void {
    for (let next = this.deferred.peek(); next !== undefined; next = this.deferred.peek()) {
      if (!this.trySend(next.frame, next.flags, next.done)) {
        this.flushCompletions();
        return;
      }
      this.deferred.shift();
    }
    this.notifyCompleted();
  }

  /** Resolves whenCompleted() callers once nothing is outstanding or deferred. */
  private notifyCompleted(): void {
    if (this.completionWaiters.length === 0 || this.outstanding > 0 || this.deferred.length > 0) return;
    for (const resolve of this.completionWaiters.splice(0)) resolve();
  }
}
