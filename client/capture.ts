// Records a segment to pcapng through a monitor port: the header first, one
// packet block per mirrored frame (in arrival order, with its ingress port),
// and on stop the statistics block with what the monitor port missed.
// Shared by `edgelan capture` (Node) and the dashboard's capture button (browser).
import {
  captureHeader, capturePacket, captureTrailer, matchesCaptureFilter, type CaptureFilter, type CaptureRecord, type CaptureTotals,
} from "../datapath/capture.ts";
import { totalDrops } from "../datapath/counters.ts";
import { frameDestination, frameSource, ETH_HEADER_LEN } from "../datapath/ethernet.ts";
import { parseMac, type MacKey } from "../datapath/mac.ts";
import type { WelcomeRecord } from "../datapath/tunnel/records.ts";
import type { AdminApi } from "./admin-api.ts";
import { MonitorPort, nowMicros, type MonitorEnd, type MonitoredFrame } from "./monitor-port.ts";
import type { SocketFactory } from "./session.ts";

export interface CaptureOptions {
  /** The segment's connect URL. */
  url: string;
  segment: string;
  /** A `monitor` join token. */
  token: string;
  /**
   * The monitor protocol does not say which port a frame came from: it is looked up from the source MAC in
   * the segment's forwarding table through the admin API. Without one, packets say "ingress port unknown".
   */
  admin: AdminApi | null;
  filter: CaptureFilter;
  /**
   * Takes one pcapng chunk. Returns false when the chunk could not be taken (a writer that fell too far behind):
   * the packet is counted as dropped. The header and the trailer are always taken.
   */
  write: (chunk: Uint8Array, essential: boolean) => boolean;
  /** Stop after this many packets are written (the `done` event fires). */
  maxPackets?: number;
  socketFactory?: SocketFactory;
  application?: string;
}

/**
 * Frames (and bytes) held while an ingress lookup is in flight, at most; beyond either bound they are written
 * with the table as it is, so a flood of new source MACs cannot grow the capture's memory.
 */
const MAX_HELD_FRAMES = 65_536;
const MAX_HELD_BYTES = 64 * 1024 * 1024;
/** Forwarding-table lookups happen at most this often (microseconds), so unknown source MACs cannot cause a storm. */
const MIN_REFRESH_INTERVAL_US = 250_000;

/** What ended a capture by itself: the packet count was reached, or the monitor port ended. */
export type CaptureDone = { reason: "count" } | { reason: "port-ended"; end: MonitorEnd };

/**
 * One capture. `start()` joins as a monitor port and writes the header; frames
 * are written as they arrive; `stop()` writes the statistics block and leaves.
 */
export class CaptureRecorder {
  private readonly port: MonitorPort;
  /** MAC → port, from the forwarding table. */
  private owners = new Map<MacKey, number>();
  private readonly held: MonitoredFrame[] = [];
  private heldBytes = 0;
  private refreshing: Promise<void> | null = null;
  private lastRefreshUs = -Infinity;
  private startUs = 0;
  private stopped = false;
  private doneHandler: (done: CaptureDone) => void = () => undefined;
  readonly totals = { received: 0, written: 0, filteredOut: 0, writerDrops: 0 };

  constructor(private readonly options: CaptureOptions) {
    this.port = new MonitorPort({ url: options.url, token: options.token, socketFactory: options.socketFactory, clientName: options.application });
    this.port.onFrames((frames) => {
      this.totals.received += frames.length;
      for (const frame of frames) {
        this.held.push(frame);
        this.heldBytes += frame.frame.length;
      }
      this.drain();
    });
    this.port.onEnd((end) => {
      if (!end.requested) this.doneHandler({ reason: "port-ended", end });
    });
  }

  /** Called once when the capture ends by itself (count reached, port closed by the segment or lost). */
  onDone(handler: (done: CaptureDone) => void): void {
    this.doneHandler = handler;
  }

  /** Joins as a monitor port, then writes the file header. */
  async start(): Promise<WelcomeRecord> {
    const welcome = await this.port.start();
    this.startUs = nowMicros();
    this.options.write(captureHeader(this.options.segment, new URL(this.options.url).host, this.options.application ?? "edgelan capture"), true);
    if (this.options.admin !== null) this.refreshing = this.refreshOwners().then(() => this.drain());
    return welcome;
  }

  /**
   * Writes what is still held, asks the segment what the monitor port dropped, writes the statistics
   * block and leaves the segment. `why` goes into the block's comment.
   */
  async stop(why: string): Promise<CaptureTotals> {
    if (this.stopped) throw new Error("the capture was already stopped");
    this.stopped = true;
    await this.refreshing;
    // The stats reply comes after every RX the segment sent before it: frames that arrive meanwhile are written too.
    const stats = await this.port.stats();
    this.port.close();
    this.heldBytes = 0;
    for (const frame of this.held.splice(0)) this.writeFrame(frame);
    const segmentDrops = stats === null ? undefined : totalDrops(stats.counters);
    const totals: CaptureTotals = {
      startUs: this.startUs, endUs: nowMicros(), received: this.totals.received,
      dropped: segmentDrops === undefined ? undefined : segmentDrops + this.totals.writerDrops,
      written: this.totals.written,
      comment: `${why}; ${this.totals.filteredOut} frames filtered out` + (stats === null ? "; the segment's drop count is unknown (no stats reply)" : ""),
    };
    this.options.write(captureTrailer(totals), true);
    return totals;
  }

  /** Writes held frames in order; waits (once per frame) for a table lookup when a source MAC has no known port. */
  private drain(): void {
    if (this.refreshing !== null || this.stopped) return;
    while (this.held.length > 0) {
      const next = this.held[0] as MonitoredFrame;
      if (this.needsLookup(next) && this.held.length < MAX_HELD_FRAMES && this.heldBytes < MAX_HELD_BYTES) {
        this.refreshing = this.refreshOwners().then(() => this.drain());
        return;
      }
      this.held.shift();
      this.heldBytes -= next.frame.length;
      this.writeFrame(next);
    }
  }

  /** A frame whose source is not in the table and arrived after the last lookup began. */
  private needsLookup(frame: MonitoredFrame): boolean {
    if (this.options.admin === null || frame.frame.length < ETH_HEADER_LEN) return false;
    if (this.owners.has(frameSource(frame.frame))) return false;
    return frame.timestampUs > this.lastRefreshUs;
  }

  private writeFrame(received: MonitoredFrame): void {
    const { frame } = received;
    const long = frame.length >= ETH_HEADER_LEN;
    const record: CaptureRecord = {
      frame, rxFlags: received.flags, timestampUs: received.timestampUs,
      ingressPort: long ? (this.owners.get(frameSource(frame)) ?? null) : null,
      egressPort: long ? (this.owners.get(frameDestination(frame)) ?? null) : null,
    };
    if (!matchesCaptureFilter(record, this.options.filter)) {
      this.totals.filteredOut++;
      return;
    }
    if (this.options.maxPackets !== undefined && this.totals.written >= this.options.maxPackets) return;
    if (!this.options.write(capturePacket(record), false)) {
      this.totals.writerDrops++;
      return;
    }
    this.totals.written++;
    if (this.totals.written === this.options.maxPackets) this.doneHandler({ reason: "count" });
  }

  /** Reloads MAC → port from the forwarding table; at most every 250 ms, and never fails the capture. */
  private async refreshOwners(): Promise<void> {
    const wait = this.lastRefreshUs + MIN_REFRESH_INTERVAL_US - nowMicros();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait / 1000));
    this.lastRefreshUs = nowMicros();
    try {
      const segment = await (this.options.admin as AdminApi).segment(this.options.segment);
      const owners = new Map<MacKey, number>();
      for (const entry of segment.forwardingTable.entries) {
        const mac = parseMac(entry.mac);
        if (mac.ok) owners.set(mac.value, entry.port);
      }
      this.owners = owners;
    } catch {
      // The table stays as it was; affected packets say "ingress port unknown".
    } finally {
      this.refreshing = null;
    }
  }
}
