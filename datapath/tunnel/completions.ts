/**
 * Segment side of TX completion: per-id verdicts, in the order the TX records
 * arrived, folded into runs of consecutive ids (mod 2^16) with one status.
 * A batch that is all ok but one becomes ok-run, drop-run, ok-run: three
 * records instead of one per id.
 */
import type { MessageEncoder } from "./codec.ts";

const ID_MASK = 0xffff;
const MAX_RUN = 0xffff;

/** Folds per-id statuses into completion runs; reusable, allocation-free once warmed up. */
export class CompletionCoalescer {
  private readonly firstIds: number[] = [];
  private readonly counts: number[] = [];
  private readonly statuses: number[] = [];
  private runTotal = 0;
  private ids = 0;

  /**
   * @param maxRun longest run to emit: 1 when the client was not granted CoalescedCompletions, else up to 65535
   */
  constructor(public maxRun: number = MAX_RUN) {}

  /** Runs collected since the last flush. */
  get runCount(): number {
    return this.runTotal;
  }

  /** Ids collected since the last flush. */
  get idCount(): number {
    return this.ids;
  }

  /**
   * Adds one completed id.
   * @param id the TX id (u16)
   * @param status 0 for ok, else a DropReason code
   */
  push(id: number, status: number): void {
    this.ids++;
    const last = this.runTotal - 1;
    if (last >= 0 && this.statuses[last] === status) {
      const count = this.counts[last] as number;
      if (count < this.maxRun && (((this.firstIds[last] as number) + count) & ID_MASK) === id) {
        this.counts[last] = count + 1;
        return;
      }
    }
    this.firstIds[this.runTotal] = id & ID_MASK;
    this.counts[this.runTotal] = 1;
    this.statuses[this.runTotal] = status;
    this.runTotal++;
  }

  /**
   * Appends every collected run to `encoder` as tx-complete records and empties the coalescer.
   * @param encoder the outgoing message for the TX sender
   * @returns the number of records appended
   */
  flushInto(encoder: MessageEncoder): number {
    const written = this.runTotal;
    for (let i = 0; i < written; i++) {
      encoder.addTxComplete(this.firstIds[i] as number, this.counts[i] as number, this.statuses[i] as number);
    }
    this.reset();
    return written;
  }

  /** Runs collected so far as flat [firstId, count, status, …] triples (persisted for held lazy completions). */
  runs(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.runCount; i++) out.push(this.firstIds[i] as number, this.counts[i] as number, this.statuses[i] as number);
    return out;
  }

  /** Adds a whole run back (from runs()), merging with the last one where push() would. */
  pushRun(firstId: number, count: number, status: number): void {
    for (let i = 0; i < count; i++) this.push((firstId + i) & ID_MASK, status);
  }

  /** Forgets collected runs without emitting them. */
  reset(): void {
    this.runTotal = 0;
    this.ids = 0;
  }
}
