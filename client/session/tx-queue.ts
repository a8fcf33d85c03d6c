// Frames waiting for a free TX id (netvsc's TX defer): a FIFO ring that grows by
// doubling up to its bound, so taking the oldest never shifts an array.

/** Called once per TX frame with 0 (ok) or a DropReason code. */
export type TxCallback = (status: number) => void;

/** One deferred frame: an owned copy, its TX flags and its callback. */
export interface DeferredTx {
  frame: Uint8Array;
  flags: number;
  done: TxCallback | undefined;
}

const INITIAL_SLOTS = 64;

/** A bounded FIFO of deferred frames. */
export class TxQueue {
  private slots: Array<DeferredTx | undefined> = new Array<DeferredTx | undefined>(INITIAL_SLOTS);
  private head = 0;
  private count = 0;

  /** @param limit most frames held; push() refuses beyond it */
  constructor(readonly limit: number) {}

  get length(): number {
    return this.count;
  }

  /** Appends a frame; false (nothing kept) when the queue holds `limit` frames. */
  push(entry: DeferredTx): boolean {
    if (this.count >= this.limit) return false;
    if (this.count === this.slots.length) this.grow();
    this.slots[(this.head + this.count) & (this.slots.length - 1)] = entry;
    this.count++;
    return true;
  }

  /** The oldest frame, left in place. */
  peek(): DeferredTx | undefined {
    return this.count === 0 ? undefined : this.slots[this.head];
  }

  /** Removes the oldest frame. */
  shift(): DeferredTx | undefined {
    if (this.count === 0) return undefined;
    const entry = this.slots[this.head];
    this.slots[this.head] = undefined;
    this.head = (this.head + 1) & (this.slots.length - 1);
    this.count--;
    return entry;
  }

  /** Removes and returns every frame, oldest first. */
  drain(): DeferredTx[] {
    const entries: DeferredTx[] = [];
    for (let entry = this.shift(); entry !== undefined; entry = this.shift()) entries.push(entry);
    return entries;
  }

  /** Doubles the ring (a power of two, so positions wrap with a mask), oldest first at slot 0. */
  private grow(): void {
    const bigger = new Array<DeferredTx | undefined>(this.slots.length * 2);
    for (let i = 0; i < this.count; i++) bigger[i] = this.slots[(this.head + i) & (this.slots.length - 1)];
    this.slots = bigger;
    this.head = 0;
  }
}
