/**
 * The sending side of one trunk (docs/cells.md §4.3): frames the switch hands
 * a trunk port wait in a bounded pending batch; at most one call is in flight;
 * the peer's grant, the pending bound, a record limit and a per-source share
 * bound what one call carries. Frames are data (never resent, like Ethernet);
 * control records (MAC routes, filters) are sequenced and kept until the peer
 * acknowledges them, bounded, then replaced by a full announce.
 *
 * No timers and no platform: the cell calls `take()` at the end of every event
 * and hands the batch to the platform, then `completed()` or `failed()`.
 */
import type { TrunkControl, TrunkFrame, TrunkBatch, TrunkReply } from "./trunk-records.ts";
import { TrunkFrameFlag } from "./trunk-records.ts";
import { packTrunkFrames } from "./trunk-frames.ts";

/** The pending batch's bound and the largest call (bytes of frames). */
export const DEFAULT_TRUNK_QUEUE_BYTES = 1 << 20;
/** Frame records per call at most (as for clients). */
export const MAX_TRUNK_RECORDS = 4096;
/** Bytes a new trunk may send before the peer's first grant. */
export const INITIAL_GRANT_BYTES = 256 * 1024;
/** Unacknowledged control records per peer before the queue is replaced by a full announce. */
export const MAX_UNACKED_CONTROL = 4096;
/** The least per-source share of a pending batch (bytes). */
export const MIN_SOURCE_SHARE_BYTES = 64 * 1024;
/** After a failed call the next waits this long, doubling per failure up to MAX_RETRY_BACKOFF_MS (docs/cells.md §4.5). */
export const MIN_RETRY_BACKOFF_MS = 100;
export const MAX_RETRY_BACKOFF_MS = 10_000;
/** Timer retries at the longest backoff before only events retry (about a minute of failures in all). */
export const MAX_TIMED_RETRIES = 3;

/** Per-trunk counters (admin API), beyond the trunk port's PortCounters. */
export interface TrunkCounters {
  calls: number;
  callFailures: number;
  /** Frames dropped because the pending batch was full (grant, bound, records or per-source share). */
  backlogDrops: number;
  /** Frames lost in calls that failed (and pending frames whose senders waited, dropped when the call failed). */
  failedFrames: number;
  /** Frames whose senders wait for the call (CellCompletions), refused at once because the peer was failing or absent. */
  unreachableFrames: number;
  /** Empty calls sent only to refresh a zero grant. */
  probes: number;
  /** Times the peer's epoch changed (it reset). */
  peerResets: number;
  /** Times the control queue overflowed into a full announce. */
  fullAnnounces: number;
  /** Calls the peer refused whole (not a cell of this segment yet, or of another generation). */
  refusals: number;
}

/**
 * Why a frame was not taken into the pending batch: `backlog` (a bound was reached), or `unreachable`
 * (a frame whose sender waits for the call, while the peer is failing or absent: it completes at once).
 */
export type TrunkRefusal = "backlog" | "unreachable" | null;

/** Tickets of frames whose senders wait for the call (DeferredCompletions), handed back when it ends. */
export interface SettledCall {
  readonly tickets: readonly number[];
  readonly ok: boolean;
}

const NO_TICKETS: readonly number[] = [];

export class TrunkOutbox {
  readonly counters: TrunkCounters = {
    calls: 0, callFailures: 0, backlogDrops: 0, failedFrames: 0, unreachableFrames: 0, probes: 0, peerResets: 0, fullAnnounces: 0, refusals: 0,
  };
  private frames: TrunkFrame[] = [];
  /** Per pending frame (aligned with `frames`): the ticket of a sender that waits, else 0. */
  private tickets: number[] = [];
  private ticketed = 0;
  private inFlightTickets: readonly number[] = NO_TICKETS;
  private pendingBytes = 0;
  private readonly bySource = new Map<number, number>();
  /** Control records not yet acknowledged, numbered from `controlBase`. */
  private control: TrunkControl[] = [];
  private controlBase = 0;
  private inFlight: TrunkBatch | null = null;
  private grant = INITIAL_GRANT_BYTES;
  private peerEpoch: number | undefined = undefined;
  /** Set when the control queue overflowed or the peer reset: the cell must queue a full announce. */
  needsFullAnnounce = true;
  /**
   * The peer refused a call whole (it is not a cell of this segment yet): no call goes to it until it
   * calls this cell (a cell is adopted before its first port, whose HELLO makes it call every peer).
   * Without this a refused call was retried from its own answer at once, forever: the livelock of
   * docs/cells.md §0.
   */
  private absent = false;
  /** No call before this time (ms) after a failure; 0 when the last call succeeded. */
  private retryAt = 0;
  private backoffMs = 0;
  /** Failures in a row at the longest backoff: past MAX_TIMED_RETRIES only an event retries (the cell may hibernate). */
  private failuresAtMax = 0;

  constructor(
    readonly peer: number,
    private readonly self: { index: number; epoch: number; generation: string },
    private readonly queueBytes = DEFAULT_TRUNK_QUEUE_BYTES,
  ) {}

  /** Bytes the pending batch may hold now. */
  get limitBytes(): number {
    return Math.min(this.grant, this.queueBytes);
  }

  get busy(): boolean {
    return this.inFlight !== null;
  }

  /** Whether the peer refused the last call and has not called since. */
  get peerAbsent(): boolean {
    return this.absent;
  }

  /** The earliest time the next call may go (ms); 0 when no failure holds it back. */
  get nextCallAt(): number {
    return this.retryAt;
  }

  /**
   * When a timer should retry a call deferred by the backoff (ms), or null: nothing waits, or the peer
   * failed MAX_TIMED_RETRIES times in a row at the longest backoff (then only the cell's next event
   * retries, so a peer that keeps failing does not keep this cell awake).
   */
  get retryDue(): number | null {
    if (this.absent || this.inFlight !== null || this.retryAt === 0 || this.failuresAtMax >= MAX_TIMED_RETRIES) return null;
    return this.frames.length > 0 || this.control.length > 0 ? this.retryAt : null;
  }

  get pending(): number {
    return this.frames.length;
  }

  /**
   * Adds a frame to the pending batch, or refuses it (counted) when a bound is reached; mirror copies give
   * way first. `ticket` (non-zero): the sender waits for the call; while the peer is absent or a backoff
   * after a failure runs (`now` before its end), such a frame is refused `unreachable` instead of waiting
   * that long. Once the backoff is over it is taken, and the next call is the retry.
   */
  carry(ingress: number, flags: number, frame: Uint8Array, ticket = 0, now = 0): TrunkRefusal {
    if (ticket !== 0 && (this.absent || now < this.retryAt)) {
      this.counters.unreachableFrames++;
      return "unreachable";
    }
    const share = Math.max(MIN_SOURCE_SHARE_BYTES, this.queueBytes / 4);
    const fits = (): boolean => this.frames.length < MAX_TRUNK_RECORDS && this.pendingBytes + frame.length <= this.limitBytes;
    if (!fits() && (flags & TrunkFrameFlag.MirrorOnly) === 0) this.dropMirrorCopies();
    // Read after dropping mirror copies, which recounts every source.
    const fromSource = this.bySource.get(ingress) ?? 0;
    if (!fits() || fromSource + frame.length > share) {
      this.counters.backlogDrops++;
      return "backlog";
    }
    this.frames.push({ ingress, flags, frame });
    this.tickets.push(ticket);
    if (ticket !== 0) this.ticketed++;
    this.pendingBytes += frame.length;
    this.bySource.set(ingress, fromSource + frame.length);
    return null;
  }

  /**
   * Queues a control record (reliable: resent until acknowledged); past the bound, asks for a full
   * announce. An arp-bindings record replaces the unacknowledged ones before it (each holds the whole
   * list, up to 1,280 entries): they become `superseded` and keep their numbers, so a queue holds one
   * list however often the lease table changes while the peer does not answer.
   */
  queueControl(record: TrunkControl): void {
    if (record.type === "arp-bindings") {
      this.control = this.control.map((queued) => (queued.type === "arp-bindings" ? { type: "superseded" } : queued));
    }
    if (this.control.length >= MAX_UNACKED_CONTROL) {
      this.counters.fullAnnounces++;
      this.resetControl();
      return;
    }
    this.control.push(record);
  }

  /** Replaces the control queue with a full announce the caller builds: records after `routes-reset`. */
  beginFullAnnounce(records: readonly TrunkControl[]): void {
    this.needsFullAnnounce = false;
    this.controlBase += this.control.length;
    this.control = [{ type: "routes-reset", epoch: this.self.epoch }, ...records];
  }

  /**
   * The call to make now, or null: nothing pending, a call already in flight, or a zero grant with no
   * control to carry (then an empty probe goes, at most one at a time, if frames are waiting).
   */
  take(now: number): TrunkBatch | null {
    if (this.inFlight !== null || this.absent || now < this.retryAt) return null;
    if (this.frames.length === 0 && this.control.length === 0) return null;
    const probe = this.grant === 0;
    if (probe) this.counters.probes++;
    const batch: TrunkBatch = {
      generation: this.self.generation, from: this.self.index, epoch: this.self.epoch,
      controlFrom: this.controlBase, control: [...this.control], frames: packTrunkFrames(probe ? [] : this.frames), frameCount: probe ? 0 : this.frames.length,
    };
    if (!probe) {
      this.inFlightTickets = this.ticketed === 0 ? NO_TICKETS : this.tickets.filter((ticket) => ticket !== 0);
      this.clearFrames();
    }
    this.inFlight = batch;
    this.counters.calls++;
    return batch;
  }

  /** The call returned: records the peer's grant and epoch, releases acknowledged control; the call's tickets settle ok. */
  completed(reply: TrunkReply): SettledCall {
    const tickets = this.takeInFlightTickets();
    this.inFlight = null;
    this.retryAt = 0;
    this.backoffMs = 0;
    this.failuresAtMax = 0;
    this.grant = reply.grantBytes;
    const acked = reply.controlAck - this.controlBase;
    if (acked > 0) {
      this.control.splice(0, acked);
      this.controlBase = reply.controlAck;
    }
    if (this.peerEpoch !== undefined && reply.epoch !== this.peerEpoch) {
      this.counters.peerResets++;
      this.needsFullAnnounce = true;
    }
    this.peerEpoch = reply.epoch;
    return { tickets, ok: true };
  }

  /**
   * The call threw: its frames are lost (counted), its control records stay for the next call, which
   * goes no sooner than the backoff (100 ms, doubling to 10 s) so that a failing peer is not hammered.
   */
  failed(overloaded: boolean, now: number): SettledCall {
    const settled = this.lose();
    if (this.backoffMs === MAX_RETRY_BACKOFF_MS) this.failuresAtMax++;
    this.backoffMs = Math.min(MAX_RETRY_BACKOFF_MS, Math.max(MIN_RETRY_BACKOFF_MS, this.backoffMs * 2));
    this.retryAt = now + this.backoffMs;
    if (overloaded) this.grant = 0;
    return settled;
  }

  /**
   * After a failed or refused call: pending frames whose senders wait are dropped (counted failed) and
   * their tickets settle with the call's, since the next call may be a backoff away (or never come, for
   * an absent peer). Frames of other senders stay for the retry, as before.
   */
  private dropWaitingFrames(): readonly number[] {
    if (this.ticketed === 0) return NO_TICKETS;
    const tickets = this.tickets.filter((ticket) => ticket !== 0);
    this.counters.failedFrames += tickets.length;
    this.keepFrames((_, i) => this.tickets[i] === 0);
    return tickets;
  }

  /** The peer refused the call whole: frames lost as in `failed`, and no call until the peer calls (`peerCalled`). */
  refused(): SettledCall {
    const settled = this.lose();
    this.counters.refusals++;
    this.absent = true;
    return settled;
  }

  /** The peer left the segment: every frame it holds is lost (counted) and their tickets settle as failed. */
  abandon(): SettledCall {
    const tickets = [...this.takeInFlightTickets(), ...this.tickets.filter((ticket) => ticket !== 0)];
    this.counters.failedFrames += this.frames.length + (this.inFlight?.frameCount ?? 0);
    this.inFlight = null;
    this.clearFrames();
    return { tickets, ok: false };
  }

  /** The peer called this cell: it exists (again), so calls to it may go. */
  peerCalled(): void {
    this.absent = false;
  }

  /** The peer does not exist yet (region placement makes cells one by one): no call until it calls or is made. */
  markAbsent(): void {
    this.absent = true;
  }

  /** The call in flight is lost (counted), and with it the pending frames whose senders wait (dropWaitingFrames). */
  private lose(): SettledCall {
    const tickets = this.takeInFlightTickets();
    const batch = this.inFlight;
    this.inFlight = null;
    this.counters.callFailures++;
    if (batch !== null) this.counters.failedFrames += batch.frameCount;
    const waiting = this.dropWaitingFrames();
    return { tickets: waiting.length === 0 ? tickets : [...tickets, ...waiting], ok: false };
  }

  private takeInFlightTickets(): readonly number[] {
    const tickets = this.inFlightTickets;
    this.inFlightTickets = NO_TICKETS;
    return tickets;
  }

  private resetControl(): void {
    this.controlBase += this.control.length;
    this.control = [];
    this.needsFullAnnounce = true;
  }

  private clearFrames(): void {
    this.frames = [];
    this.tickets = [];
    this.ticketed = 0;
    this.pendingBytes = 0;
    this.bySource.clear();
  }

  /** Removes mirror-only copies from the pending batch (they are the first to go when it is full; never ticketed). */
  private dropMirrorCopies(): void {
    const dropped = this.keepFrames((record) => (record.flags & TrunkFrameFlag.MirrorOnly) === 0);
    this.counters.backlogDrops += dropped;
  }

  /** Keeps the pending frames `keep` accepts (their tickets with them) and recounts the bounds; returns how many went. */
  private keepFrames(keep: (record: TrunkFrame, index: number) => boolean): number {
    const frames: TrunkFrame[] = [];
    const tickets: number[] = [];
    this.frames.forEach((record, i) => {
      if (!keep(record, i)) return;
      frames.push(record);
      tickets.push(this.tickets[i] as number);
    });
    const dropped = this.frames.length - frames.length;
    if (dropped === 0) return 0;
    this.frames = frames;
    this.tickets = tickets;
    this.ticketed = tickets.filter((ticket) => ticket !== 0).length;
    this.pendingBytes = 0;
    this.bySource.clear();
    for (const record of frames) {
      this.pendingBytes += record.frame.length;
      this.bySource.set(record.ingress, (this.bySource.get(record.ingress) ?? 0) + record.frame.length);
    }
    return dropped;
  }
}
