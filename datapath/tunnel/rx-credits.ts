/**
 * RX credits: a client posts counts of buffers of one size, not buffer ids.
 * The segment's whole credit state is two numbers (credits, buffer size), which
 * fits a hibernation attachment; TAP and QEMU backends have no buffer addresses
 * to name; and frames fill buffers in FIFO order, like a virtqueue's used ring,
 * so ids would add nothing. Each RX record consumes one credit and its used
 * length is the frame length. The segment never truncates: a frame larger than
 * the buffer size is dropped and counted. Without credit, frames wait in a
 * bounded per-port queue (frames and bytes) under a segment-wide byte budget;
 * past either bound the newest frame is dropped (tail drop).
 */
import { joinBytes } from "../bytes.ts";
import { DropReason } from "../counters.ts";
import { fail, ok, type Result } from "../result.ts";
import { MAX_RX_CREDITS, MIN_RX_BUFFER_BYTES } from "./constants.ts";

/** Bytes queued for credit-less ports across the whole segment, shared by every ledger. */
export class SegmentQueueBudget {
  usedBytes = 0;

  /** @param limitBytes most bytes all ports together may hold queued */
  constructor(public limitBytes: number) {}

  /** Changes the limit; bytes already queued stay (new frames see the new limit). */
  setLimit(limitBytes: number): void {
    this.limitBytes = limitBytes;
  }

  /** True if `bytes` more would fit. */
  fits(bytes: number): boolean {
    return this.usedBytes + bytes <= this.limitBytes;
  }
}

/**
 * Read acknowledgements (protocol.md §8.5): credits say a client posted buffers, not that it read
 * anything, so the segment also bounds the RX bytes it handed a port that the client has not shown it
 * read. Past READ_ACK_PING_BYTES unacknowledged it sends a PING (one at a time); the client can answer
 * only after reading everything before it, and the matching PONG acknowledges those bytes. Past
 * READ_ACK_LIMIT_BYTES the port gets no RX: frames queue (and then drop) as if it had no credit.
 */
export const READ_ACK_PING_BYTES = 1024 * 1024;
export const READ_ACK_LIMIT_BYTES = 4 * 1024 * 1024;

/** Per-port queue bounds. */
export interface RxQueueLimits {
  /** Frames the port may have queued while it has no credit (0: no queue, drop at once). */
  maxQueueFrames: number;
  /** Bytes the port may have queued. */
  maxQueueBytes: number;
}

/** The reasons the ledger drops a frame for. */
export type RxDropReason =
  | typeof DropReason.RxBufferTooSmall | typeof DropReason.RxQueueFull | typeof DropReason.SegmentBudget;

/** What offer() did with a frame: deliver it now (a credit was consumed), queue a copy, or drop it for a reason. */
export type RxOffer = "delivered-now" | "queued" | RxDropReason;

/** Frames that drain() released, oldest first (with the RX flags they were offered with), and the reasons for queued frames it dropped instead. */
export interface RxDrain {
  frames: Uint8Array[];
  flags: number[];
  dropped: RxDropReason[];
}

/** Plain data for a socket attachment: what survives hibernation. */
export interface RxCreditState {
  credits: number;
  bufferSize: number;
  maxQueueFrames: number;
  maxQueueBytes: number;
  /** Frames queued when the state was taken: lost if the object is evicted, reported by flush() after restore. */
  queuedFrames: number;
  /** RX bytes handed to the port and not yet acknowledged by a PONG (absent in older attachments: 0). */
  unackedBytes?: number;
  /** The outstanding PING's seq (0: none) and the unacknowledged bytes its PONG acknowledges. */
  pingSeq?: number;
  pingCovers?: number;
}

/** Why an rx-post was rejected (the segment closes with 4007). */
export type RxPostErrorCode = "credit-overflow" | "invalid-buffer-size";

const COMPACT_AT = 1024;

/**
 * Segment side RX accounting for one port. It returns verdicts; the segment switch counts them on the
 * port's counters (the ledger counts nothing itself).
 */
export class RxCreditLedger {
  readonly maxQueueFrames: number;
  readonly maxQueueBytes: number;
  private credits = 0;
  private size = 0;
  private readonly queue: Uint8Array[] = [];
  /** The RX flags each queued frame was offered with (parallel to `queue`). */
  private readonly queueFlags: number[] = [];
  private head = 0;
  private bytesQueued = 0;
  /** Frames queued before an eviction, reported (once) by flush(). */
  private lostOnRestore = 0;
  /** RX bytes handed over and not yet acknowledged (see READ_ACK_LIMIT_BYTES). */
  private unacked = 0;
  /** The outstanding PING's seq, 0 when none; and the bytes its PONG acknowledges. */
  private pingSeq = 0;
  private pingCovers = 0;
  private lastSeq = 0;

  /**
   * @param limits per-port queue bounds
   * @param budget the segment-wide budget shared with every other port
   */
  constructor(limits: RxQueueLimits, private readonly budget: SegmentQueueBudget) {
    this.maxQueueFrames = limits.maxQueueFrames;
    this.maxQueueBytes = limits.maxQueueBytes;
  }

  /** Credits posted and not yet consumed. */
  get available(): number {
    return this.credits;
  }

  /** Size of every outstanding buffer (that of the latest post; 0 before any post). */
  get bufferSize(): number {
    return this.size;
  }

  /** Frames waiting for credit. */
  get queuedFrames(): number {
    return this.queue.length - this.head;
  }

  /** Bytes waiting for credit. */
  get queuedBytes(): number {
    return this.bytesQueued;
  }

  /**
   * Adds credits; the buffer size applies to every outstanding credit. Call drain() next.
   * @param count more buffers (0 only changes the size)
   * @param bufferSize bytes per buffer, ≥ MIN_RX_BUFFER_BYTES
   * @returns credits now available, or a failure (nothing changed) that the segment answers with close 4007
   */
  post(count: number, bufferSize: number): Result<number, RxPostErrorCode> {
    if (!Number.isInteger(bufferSize) || bufferSize < MIN_RX_BUFFER_BYTES) {
      return fail("invalid-buffer-size", `rx-post buffer size ${bufferSize} is below the minimum of ${MIN_RX_BUFFER_BYTES} bytes`);
    }
    if (!Number.isInteger(count) || count < 0 || this.credits + count > MAX_RX_CREDITS) {
      return fail("credit-overflow", `rx-post of ${count} would make ${this.credits + count} credits outstanding, at most ${MAX_RX_CREDITS}`);
    }
    this.credits += count;
    this.size = bufferSize;
    return ok(this.credits);
  }

  /**
   * Offers one frame for this port.
   * @param frame the frame; on "queued" the ledger keeps a copy, so the caller may reuse its buffer
   * @param prefix bytes the port receives before `frame` (a virtio-net header): counted in the frame's
   *   length, and joined to it only if it is queued
   * @returns "delivered-now" (a credit was consumed: send it in an RX record), "queued", or the drop reason
   */
  offer(frame: Uint8Array, flags = 0, prefix?: Uint8Array): RxOffer {
    const length = frame.length + (prefix?.length ?? 0);
    if (this.size > 0 && length > this.size) return DropReason.RxBufferTooSmall;
    if (this.credits > 0 && this.head === this.queue.length && this.unacked < READ_ACK_LIMIT_BYTES) {
      this.credits--;
      this.unacked += length;
      return "delivered-now";
    }
    if (this.queuedFrames >= this.maxQueueFrames || this.bytesQueued + length > this.maxQueueBytes) {
      return DropReason.RxQueueFull;
    }
    if (!this.budget.fits(length)) return DropReason.SegmentBudget;
    this.queue.push(prefix === undefined ? frame.slice() : joinBytes(prefix, frame));
    this.queueFlags.push(flags);
    this.bytesQueued += length;
    this.budget.usedBytes += length;
    return "queued";
  }

  /**
   * Releases queued frames that the available credits cover, oldest first, consuming one credit each.
   * Queued frames larger than the current buffer size are dropped (RxBufferTooSmall), never truncated.
   * @returns the frames to send now and the reasons for frames dropped on the way
   */
  drain(): RxDrain {
    const result: RxDrain = { frames: [], flags: [], dropped: [] };
    while (this.credits > 0 && this.head < this.queue.length && this.unacked < READ_ACK_LIMIT_BYTES) {
      const flags = this.queueFlags[this.head] as number;
      const frame = this.dequeue();
      if (frame.length > this.size) {
        result.dropped.push(DropReason.RxBufferTooSmall);
        continue;
      }
      this.credits--;
      this.unacked += frame.length;
      result.frames.push(frame);
      result.flags.push(flags);
    }
    this.compact();
    return result;
  }

  /**
   * Discards every queued frame (port closing, or after restore) and returns their bytes to the budget.
   * @returns frames flushed, including frames lost to an eviction before restore(); count them as Flushed
   */
  flush(): number {
    let flushed = this.lostOnRestore;
    this.lostOnRestore = 0;
    while (this.head < this.queue.length) {
      this.dequeue();
      flushed++;
    }
    this.compact();
    return flushed;
  }

  /** RX bytes handed to the port that no PONG has acknowledged yet. */
  get unackedBytes(): number {
    return this.unacked;
  }

  /** The seq of the segment's PING that no PONG has answered yet, or 0. */
  get outstandingPing(): number {
    return this.pingSeq;
  }

  /**
   * The seq of a PING to send now (after the RX already handed over), or 0: one is due when no PING is
   * outstanding and READ_ACK_PING_BYTES are unacknowledged. Seqs count up from 1 and skip 0.
   */
  pingDue(): number {
    if (this.pingSeq !== 0 || this.unacked < READ_ACK_PING_BYTES) return 0;
    this.lastSeq = this.lastSeq >= 0xffff_ffff ? 1 : this.lastSeq + 1;
    this.pingSeq = this.lastSeq;
    this.pingCovers = this.unacked;
    return this.pingSeq;
  }

  /** A PONG from the port: the outstanding PING's acknowledges the bytes before it (call drain() next). Others change nothing. */
  pong(seq: number): boolean {
    if (this.pingSeq === 0 || seq !== this.pingSeq) return false;
    this.unacked -= this.pingCovers;
    this.pingSeq = 0;
    this.pingCovers = 0;
    return true;
  }

  /** Plain data for the socket attachment. */
  state(): RxCreditState {
    return {
      credits: this.credits, bufferSize: this.size, maxQueueFrames: this.maxQueueFrames, maxQueueBytes: this.maxQueueBytes,
      queuedFrames: this.queuedFrames, unackedBytes: this.unacked, pingSeq: this.pingSeq, pingCovers: this.pingCovers,
    };
  }

  /**
   * Rebuilds a ledger after hibernation or eviction. Queued frames lived in memory only: the ledger starts
   * with an empty queue and reports the frames that were queued through the next flush().
   * @param state from state()
   * @param budget the segment's (new) budget
   */
  static restore(state: RxCreditState, budget: SegmentQueueBudget): RxCreditLedger {
    const ledger = new RxCreditLedger({ maxQueueFrames: state.maxQueueFrames, maxQueueBytes: state.maxQueueBytes }, budget);
    ledger.credits = state.credits;
    ledger.size = state.bufferSize;
    ledger.lostOnRestore = state.queuedFrames;
    ledger.unacked = state.unackedBytes ?? 0;
    ledger.pingSeq = state.pingSeq ?? 0;
    ledger.pingCovers = state.pingCovers ?? 0;
    ledger.lastSeq = ledger.pingSeq;
    return ledger;
  }

  private dequeue(): Uint8Array {
    const frame = this.queue[this.head] as Uint8Array;
    this.queue[this.head] = EMPTY;
    this.head++;
    this.bytesQueued -= frame.length;
    this.budget.usedBytes -= frame.length;
    return frame;
  }

  /** Drops consumed slots once they dominate, so the queue array does not grow without bound. */
  private compact(): void {
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.queueFlags.length = 0;
      this.head = 0;
    } else if (this.head >= COMPACT_AT && this.head * 2 >= this.queue.length) {
      this.queue.splice(0, this.head);
      this.queueFlags.splice(0, this.head);
      this.head = 0;
    }
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Client side: keeps about `target` buffers posted. Replenishes in batches (once `threshold` are used)
 * so one rx-post covers many RX records, and checks that the segment never fills more than was posted.
 */
export class RxCreditPoster {
  private posted = 0;

  /**
   * @param target buffers to keep posted (≤ MAX_RX_CREDITS)
   * @param bufferSize bytes per buffer (≥ the session's max frame size, so nothing is dropped as too small)
   * @param threshold post once at least this many are missing (default a quarter of target)
   */
  constructor(readonly target: number, readonly bufferSize: number, readonly threshold: number = Math.max(1, Math.ceil(target / 4))) {
    if (!Number.isInteger(target) || target < 1 || target > MAX_RX_CREDITS) throw new RangeError(`RX target must be 1..${MAX_RX_CREDITS}, got ${target}`);
  }

  /** Buffers posted and not yet filled. */
  get outstanding(): number {
    return this.posted;
  }

  /**
   * Records RX records received (each fills one buffer).
   * @param count records received
   * @returns ok, or rx-without-credit if the segment filled more buffers than were posted (a protocol violation)
   */
  filled(count = 1): Result<void, "rx-without-credit"> {
    if (count > this.posted) return fail("rx-without-credit", `segment delivered ${count} frames with only ${this.posted} buffers posted`);
    this.posted -= count;
    return ok(undefined);
  }

  /** How many buffers to post now: 0 until `threshold` are missing (or none are posted at all). */
  due(): number {
    const missing = this.target - this.posted;
    if (missing <= 0) return 0;
    return this.posted === 0 || missing >= this.threshold ? missing : 0;
  }

  /**
   * Takes the due count and marks it posted; send `{ type: "rx-post", count, bufferSize }` when it is > 0.
   * @returns the count to post
   */
  take(): number {
    const count = this.due();
    this.posted += count;
    return count;
  }

  /** A new connection starts with nothing posted (credits never survive a socket). */
  reset(): void {
    this.posted = 0;
  }
}
