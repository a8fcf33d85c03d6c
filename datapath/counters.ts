/**
 * Per-port counters, from the switch port's point of view (as on a Linux bridge
 * port): `rx` is what the segment received from the guest, `tx` is what it
 * delivered towards the guest. Every frame a guest sends is either forwarded or
 * dropped with exactly one reason, so `rxFrames = forwarded + sum(drops at ingress)`.
 */

/** Why a frame was dropped. Each reason has a stable numeric code used on the wire. */
export const DropReason = {
  /** Ingress: shorter than the 14-byte Ethernet header. */
  Runt: 1,
  /** Ingress: longer than the segment's maximum frame size. */
  Oversize: 2,
  /** Ingress: the source address has the group bit set. */
  MulticastSource: 3,
  /** Ingress: a locked port sent from a MAC it has not registered. */
  SpoofedSource: 4,
  /** Ingress: a monitor port may only listen. */
  MonitorPort: 5,
  /** Ingress: unicast to a MAC that lives behind the ingress port itself. */
  Local: 6,
  /** Ingress: no other port's receive filter accepted the frame. */
  NoReceiver: 7,
  /** Ingress: the port exceeded its bytes/s or frames/s limit (datapath/policer.ts). */
  RateLimited: 8,
  /** Ingress: a bridge port already has its limit of learned MACs and the source is new. */
  LearnLimit: 9,
  /** Egress: the frame is larger than the receiver's posted buffers. */
  RxBufferTooSmall: 10,
  /** Egress: the receiver had no credit and its queue (frames or bytes) was full. */
  RxQueueFull: 11,
  /** Egress: the segment-wide queue budget was exhausted. */
  SegmentBudget: 12,
  /** Egress: queued frames lost when the segment was evicted from memory or the port closed. */
  Flushed: 13,
  /** Ingress: the descriptor was malformed (bad id, flags or length). */
  Malformed: 14,
  /** Ingress: the session was reset before the frame could be processed. */
  Reset: 15,
  /** Ingress: the port exceeded its budget of flooded frames (broadcast, multicast, unknown unicast). */
  StormControl: 16,
  /**
   * Trunk: the frame was switched to a port on another cell of the segment and the trunk call carrying it
   * failed (or the peer cell was failing). Counted on the trunk (`failedFrames`); a sender with
   * CellCompletions gets it as its completion status (docs/protocol.md §6.3 rule 8).
   */
  CellUnreachable: 17,
} as const;

export type DropReason = (typeof DropReason)[keyof typeof DropReason];

/** Every reason, in code order: the index into `PortCounters.drops` is the code. */
export const DROP_REASON_NAMES: Readonly<Record<DropReason, string>> = {
  1: "runt",
  2: "oversize",
  3: "multicast-source",
  4: "spoofed-source",
  5: "monitor-port",
  6: "local",
  7: "no-receiver",
  8: "rate-limited",
  9: "learn-limit",
  10: "rx-buffer-too-small",
  11: "rx-queue-full",
  12: "segment-budget",
  13: "flushed",
  14: "malformed",
  15: "reset",
  16: "storm-control",
  17: "cell-unreachable",
};

export const DROP_REASON_COUNT = 18;

/** Plain-data counters so they survive structured clone (hibernation attachments). */
export interface PortCountersData {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Indexed by DropReason code; index 0 is unused. */
  drops: number[];
}

/** Fresh, zeroed counters. */
export function newPortCounters(): PortCountersData {
  return { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, drops: new Array<number>(DROP_REASON_COUNT).fill(0) };
}

/** Counts one dropped frame. */
export function countDrop(counters: PortCountersData, reason: DropReason): void {
  counters.drops[reason] = (counters.drops[reason] ?? 0) + 1;
}

/** Sum of all drops, for `rx = forwarded + dropped` checks. */
export function totalDrops(counters: PortCountersData): number {
  let sum = 0;
  for (const value of counters.drops) sum += value;
  return sum;
}

/** Counters with drops named, for JSON APIs and stats replies. Zero drop counts are kept so the shape is stable. */
export function describeCounters(counters: PortCountersData): {
  rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: Record<string, number>;
} {
  const drops: Record<string, number> = {};
  for (const [code, name] of Object.entries(DROP_REASON_NAMES)) drops[name] = counters.drops[Number(code)] ?? 0;
  return { rxFrames: counters.rxFrames, rxBytes: counters.rxBytes, txFrames: counters.txFrames, txBytes: counters.txBytes, drops };
}
