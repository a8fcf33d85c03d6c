/**
 * Client side TX window, netvsc style: a ring of free ids with free-running
 * producer and consumer counters masked by `size - 1`. acquire() takes the id
 * at `producer`, a completion puts an id back at `consumer`; the window is
 * full when producer - consumer = size, and a full window defers instead of
 * dropping.
 *
 * Ids are u16. Id `x` always lives in slot `x & (size - 1)`; when it completes,
 * the ring gets back `x + size` (mod 2^16), the same slot's next generation.
 * Because size divides 2^16, in-order completions make acquire() hand out
 * 0, 1, 2, … consecutively across the u16 wrap, so the segment's completion
 * runs stay long. Each slot has exactly one id circulating, so two outstanding
 * ids can never collide, and a completion is checked exactly per id.
 */
import { fail, ok, type Result } from "../result.ts";
import { MAX_TX_WINDOW, TX_ID_SPACE } from "./constants.ts";

const ID_MASK = TX_ID_SPACE - 1;
const FREE = -1;

/** Ids that a completion run finished: firstId … firstId+count-1 (mod 2^16), all with `status`. */
export interface CompletedIds {
  firstId: number;
  count: number;
  status: number;
}

/** Why a completion run was rejected: an id never acquired, or one already completed. */
export type TxCompletionErrorCode = "unknown-id" | "duplicate-completion";

/** True for a valid window size: a power of two from 1 to MAX_TX_WINDOW. */
export function isValidTxWindowSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1 && size <= MAX_TX_WINDOW && (size & (size - 1)) === 0;
}

/**
 * The window a segment grants: the largest power of two not above `wanted` or `limit`.
 * @param wanted the HELLO's txWindow (0 means "default")
 * @param limit the segment's ceiling (≤ MAX_TX_WINDOW)
 * @param fallback used when `wanted` is 0
 * @returns a valid window size
 */
export function grantTxWindow(wanted: number, limit: number = MAX_TX_WINDOW, fallback = 256): number {
  const ceiling = Math.max(1, Math.min(wanted > 0 ? wanted : fallback, limit, MAX_TX_WINDOW));
  return 2 ** Math.floor(Math.log2(ceiling));
}

/** The outstanding-TX ring of one session. */
export class TxWindow {
  readonly size: number;
  private readonly mask: number;
  private readonly ring: Uint16Array;
  private readonly inUse: Int32Array;
  private readonly acquiredAt: Uint32Array;
  private readonly lastCompleted: Int32Array;
  private producer = 0;
  private consumer = 0;

  /**
   * @param size the granted window: a power of two, 1..MAX_TX_WINDOW
   * @throws RangeError for any other size (a caller bug; check with isValidTxWindowSize)
   */
  constructor(size: number) {
    if (!isValidTxWindowSize(size)) throw new RangeError(`TX window must be a power of two in 1..${MAX_TX_WINDOW}, got ${size}`);
    this.size = size;
    this.mask = size - 1;
    this.ring = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.ring[i] = i;
    this.inUse = new Int32Array(size).fill(FREE);
    this.acquiredAt = new Uint32Array(size);
    this.lastCompleted = new Int32Array(size).fill(FREE);
  }

  /** Ids acquired and not yet completed. */
  get outstanding(): number {
    return (this.producer - this.consumer) >>> 0;
  }

  /** Ids that acquire() can still hand out. */
  get available(): number {
    return this.size - this.outstanding;
  }

  /** True when every id is outstanding (the caller must defer). */
  get full(): boolean {
    return this.outstanding === this.size;
  }

  /**
   * Takes the next free id.
   * @returns a u16 id, or undefined when the window is full (defer the frame; do not drop it)
   */
  acquire(): number | undefined {
    if (this.full) return undefined;
    const id = this.ring[this.producer & this.mask] as number;
    const slot = id & this.mask;
    this.inUse[slot] = id;
    this.acquiredAt[slot] = this.producer;
    this.producer = (this.producer + 1) >>> 0;
    return id;
  }

  /** True if `id` is acquired and not yet completed. */
  isOutstanding(id: number): boolean {
    return this.inUse[id & this.mask] === id;
  }

  /**
   * Applies a completion run; all or nothing: if any id in it is not outstanding, nothing changes.
   * @param firstId first id of the run (u16)
   * @param count ids in the run (0 is an empty run and completes nothing)
   * @param status 0 or a DropReason code, passed through
   * @returns the completed ids, or unknown-id / duplicate-completion naming the first bad id
   */
  applyCompletion(firstId: number, count: number, status: number): Result<CompletedIds, TxCompletionErrorCode> {
    for (let i = 0; i < count; i++) {
      const id = (firstId + i) & ID_MASK;
      if (this.isOutstanding(id)) continue;
      if (this.lastCompleted[id & this.mask] === id) {
        return fail("duplicate-completion", `id ${id} (run ${firstId}+${count}) was already completed`);
      }
      return fail("unknown-id", `id ${id} (run ${firstId}+${count}) is not outstanding`);
    }
    for (let i = 0; i < count; i++) this.release((firstId + i) & ID_MASK);
    return ok({ firstId: firstId & ID_MASK, count, status });
  }

  /**
   * Completes every outstanding id at once (connection lost: the client fails them with `reset`).
   * @returns the ids, oldest first; the window is empty afterwards
   */
  failAll(): number[] {
    const slots: number[] = [];
    for (let slot = 0; slot < this.size; slot++) if (this.inUse[slot] !== FREE) slots.push(slot);
    // Age counted back from the producer survives u32 wrap; the oldest has the largest age.
    const age = (slot: number): number => (this.producer - (this.acquiredAt[slot] as number)) >>> 0;
    slots.sort((a, b) => age(b) - age(a));
    const ids = slots.map((slot) => this.inUse[slot] as number);
    for (const id of ids) this.release(id);
    return ids;
  }

  /** Returns an id's slot to the ring with its next generation. */
  private release(id: number): void {
    const slot = id & this.mask;
    this.inUse[slot] = FREE;
    this.lastCompleted[slot] = id;
    this.ring[this.consumer & this.mask] = (id + this.size) & ID_MASK;
    this.consumer = (this.consumer + 1) >>> 0;
  }
}

/** Why one message's TX records overrun the window (the segment closes with 4003). */
export type TxOverrunCode = "window-overrun" | "duplicate-id";

/**
 * Segment side of the window rule: the segment completes every TX of a message before reading the next,
 * so a message may carry at most `window` TX records, all with distinct ids. Checks that without allocating.
 */
export class TxBatchGuard {
  // seen[id] === epoch means `id` already appeared in the current batch; a new epoch forgets the last batch in O(1).
  private readonly seen = new Uint32Array(TX_ID_SPACE);
  private epoch = 0;

  /**
   * @param ids the TX ids of one message, in order
   * @param window the granted TX window
   * @returns ok, or window-overrun / duplicate-id with a message naming the count or the id
   */
  check(ids: readonly number[], window: number): Result<void, TxOverrunCode> {
    if (ids.length > window) return fail("window-overrun", `${ids.length} TX descriptors in one message exceed the granted window of ${window}`);
    this.nextEpoch();
    for (const id of ids) {
      const slot = id & ID_MASK;
      if (this.seen[slot] === this.epoch) return fail("duplicate-id", `TX id ${slot} appears twice in one message`);
      this.seen[slot] = this.epoch;
    }
    return ok(undefined);
  }

  private nextEpoch(): void {
    this.epoch = (this.epoch + 1) >>> 0;
    if (this.epoch === 0) {
      this.seen.fill(0);
      this.epoch = 1;
    }
  }
}
