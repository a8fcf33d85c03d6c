// The message being built for the current socket: records queued in one
// event-loop turn leave as one message at the end of the turn (a microtask, never
// a timer), or sooner when the message is full.
import { MessageEncoder } from "../../datapath/tunnel/codec.ts";
import { VNET_HEADER_BYTES } from "../../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../../datapath/tunnel/records.ts";
import type { SessionTrace } from "./trace.ts";
import { SOCKET_OPEN, type SocketLike } from "./socket.ts";

/** Room kept free for any non-TX record the session sends (a set-filter with 64 MACs is the largest). */
const MAX_CONTROL_BODY_BYTES = 512;

export class Outbox {
  private readonly encoder = new MessageEncoder();
  private socket: SocketLike | null = null;
  private flushScheduled = false;
  /** Whether the message being built carries TX records. */
  private building = false;
  /** Whether a message with TX records went out since the last `markTx()`. */
  private txSent = false;

  constructor(private readonly trace: SessionTrace | undefined) {}

  /** Starts over on `socket` (or none): nothing queued for an earlier connection may go out on it. */
  use(socket: SocketLike | null): void {
    this.socket = socket;
    this.encoder.reset();
    this.building = false;
    this.txSent = false;
    this.trace?.discard();
  }

  /** Whether TX records were sent or are queued since the last `markTx()`. */
  get txSinceMark(): boolean {
    return this.txSent || this.building;
  }

  /** Starts a new "TX since" period (call after flushing). */
  markTx(): void {
    this.txSent = false;
  }

  /** Queues a non-TX record for this turn's message, sending the current message first if it is full. */
  add(record: TunnelRecord): void {
    if (this.encoder.recordCount > 0 && !this.encoder.fitsBody(MAX_CONTROL_BODY_BYTES)) this.flush();
    this.encoder.add(record);
    this.scheduleFlush();
  }

  /** Queues a TX record (the frame is copied into the message). */
  addTx(id: number, flags: number, frame: Uint8Array): void {
    // A message holds at most 4096 records and 1 MiB: a full one goes out now and the frame starts the next.
    if (!this.encoder.fitsFrame(frame.length)) this.flush();
    this.encoder.addTx(id, flags, frame);
    this.building = true;
    this.trace?.queue(frame, flags === 0 ? 0 : VNET_HEADER_BYTES);
    this.scheduleFlush();
  }

  /** Sends what is queued now, as one message. */
  flush(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    if (this.encoder.recordCount === 0 || socket?.readyState !== SOCKET_OPEN) return;
    this.trace?.sending();
    // `ws` masks into a fresh buffer, so a view of the encoder's buffer is safe there; others get a copy they own.
    socket.send(socket.copiesOnSend === true ? this.encoder.finishView() : this.encoder.finish());
    if (this.building) this.txSent = true;
    this.encoder.reset();
    this.building = false;
    this.trace?.sent();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }
}
