/**
 * What the segment sends one descriptor port: records collected into one
 * message per event (RX, completions, control replies), split before a message
 * passes 1 MiB or 4096 records, and the completion rules of docs/protocol.md
 * §6.3: rule 2 (completions go out right after the message that carried the TX)
 * or, with LazyCompletions, rule 2a (they ride on the next message sent for any
 * other reason; at the latest at half the window, in reply to a message without
 * TX, or before the socket is closed).
 */
import { CompletionCoalescer, MessageEncoder } from "./tunnel/codec.ts";
import { Feature, MAX_MESSAGE_BYTES, MAX_RECORDS_PER_MESSAGE, RECORD_HEADER_BYTES } from "./tunnel/constants.ts";
import type { TunnelRecord } from "./tunnel/records.ts";

/** A tx-complete record: header and a 6-byte body. */
const TX_COMPLETE_RECORD_BYTES = RECORD_HEADER_BYTES + 6;
/** More than any control record the segment sends needs (a stats-reply with 64 drops, a reason of 255 bytes, a WELCOME). */
const MAX_CONTROL_BODY_BYTES = 1024;
/**
 * Most completion runs held under LazyCompletions before they are sent anyway (rule 2a allows earlier):
 * held runs are persisted in the port's attachment, which must stay far below 16 KiB.
 */
export const MAX_HELD_COMPLETION_RUNS = 64;

/** Hands a finished message to the platform; the bytes are the caller's to keep. */
export type SendMessage = (message: Uint8Array) => void;

export class PortOutput {
  private readonly encoder = new MessageEncoder();
  /** Ids completed and not yet written into the encoder (with LazyCompletions: held). */
  readonly completions = new CompletionCoalescer(1);
  private lazy = false;
  private holdIds = 0;
  /** Set when the encoder holds records that must go out at the end of this event. */
  private pending = false;
  /** Set when the held completions changed since the port's state was last persisted (lazy ports only). */
  private heldChanged = false;

  constructor(private readonly send: SendMessage) {}

  /** Applies the granted features and window (once, at WELCOME or restore). */
  configure(features: number, txWindow: number): void {
    this.completions.maxRun = (features & Feature.CoalescedCompletions) !== 0 ? 0xffff : 1;
    this.lazy = (features & Feature.LazyCompletions) !== 0;
    this.holdIds = Math.ceil(txWindow / 2);
  }

  /** Whether completions are held (LazyCompletions granted). */
  get lazyCompletions(): boolean {
    return this.lazy;
  }

  /** Ids whose completions are held, not yet written. */
  get heldIds(): number {
    return this.completions.idCount;
  }

  /** Queues a control record (ack, pong, welcome, …) for this event's message. */
  add(record: TunnelRecord): void {
    this.writeCompletions();
    if (!this.encoder.fitsBody(MAX_CONTROL_BODY_BYTES)) this.sendNow();
    this.encoder.add(record);
    this.pending = true;
  }

  /** Queues an RX record (the frame is copied). */
  addRx(flags: number, frame: Uint8Array, prefix?: Uint8Array): void {
    this.writeCompletions();
    if (!this.encoder.fitsBody(frame.length + (prefix?.length ?? 0))) this.sendNow();
    this.encoder.addRx(flags, frame, prefix);
    this.pending = true;
  }

  /**
   * Ends a TX batch whose ids were pushed into `completions`: they go out with this event's message,
   * or under LazyCompletions stay held until rule 2a releases them.
   */
  endBatch(): void {
    if (!this.lazy || this.completions.idCount >= this.holdIds || this.completions.runCount >= MAX_HELD_COMPLETION_RUNS) {
      this.writeCompletions();
    } else {
      this.heldChanged = true;
    }
  }

  /**
   * Whether the held completions changed since the last call: the persisted copy must then be
   * rewritten, or a wake from hibernation would send released ones again (or lose held ones).
   */
  takeHeldChanged(): boolean {
    const changed = this.heldChanged;
    this.heldChanged = false;
    return changed;
  }

  /** Writes the held completions into this event's message: rule 2a's reply to a message without TX records, and completions that waited for another cell (rule 8). */
  releaseHeld(): void {
    this.writeCompletions();
  }

  /** Sends this event's message, if it has anything. */
  flush(): void {
    if (!this.pending) return;
    this.pending = false;
    if (this.encoder.recordCount === 0) return;
    // workerd's send() keeps a reference until the bytes are written, after the event: send an owned copy.
    this.send(this.encoder.finish());
    this.encoder.reset();
  }

  /** Held completion runs as flat [firstId, count, status, …] triples, for the port's attachment. */
  heldRuns(): number[] {
    return this.completions.runs();
  }

  /** Puts held runs back after the object was evicted (they were persisted with the port). */
  restoreHeld(runs: readonly number[]): void {
    for (let i = 0; i + 2 < runs.length; i += 3) this.completions.pushRun(runs[i] as number, runs[i + 1] as number, runs[i + 2] as number);
  }

  /** Writes collected completions into the message, sending first what does not fit. */
  private writeCompletions(): void {
    const runs = this.completions.runCount;
    if (runs === 0) return;
    const encoder = this.encoder;
    if (encoder.recordCount + runs > MAX_RECORDS_PER_MESSAGE || encoder.byteLength + runs * TX_COMPLETE_RECORD_BYTES > MAX_MESSAGE_BYTES) {
      this.sendNow();
    }
    this.completions.flushInto(encoder);
    this.pending = true;
    if (this.lazy) this.heldChanged = true;
  }

  private sendNow(): void {
    this.pending = true;
    this.flush();
  }
}
