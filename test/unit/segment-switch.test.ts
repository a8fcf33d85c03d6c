// The segment switch in Node, without workerd: a fixed cast of ports, frames in
// hex, and the deliveries, completions and counters each batch must produce.
import { beforeEach, describe, expect, it } from "vitest";
import type { ReceiveFilter } from "../../datapath/bridge.ts";
import { DropReason, newPortCounters, totalDrops, type PortCountersData } from "../../datapath/counters.ts";
import type { PortKind } from "../../datapath/port-kind.ts";
import { MAX_REFUSED_PER_SECOND, type PolicerLimits } from "../../datapath/policer.ts";
import { RAW_SILENT_BYTES, RAW_SILENT_FRAMES } from "../../datapath/raw-egress.ts";
import { READ_ACK_LIMIT_BYTES, READ_ACK_PING_BYTES } from "../../datapath/tunnel/rx-credits.ts";
import { AckStatus } from "../../datapath/tunnel/constants.ts";
import { NO_POLICING, SegmentSwitch, type AttachOptions, type SwitchConfig } from "../../datapath/segment-switch.ts";
import { MAX_SERVICE_FRAMES_PER_CALL, type EmitFrame, type ServicePort } from "../../datapath/service-port.ts";
import type { PortChange, PortSink, SwitchPort, SwitchPortMode } from "../../datapath/switch-port.ts";
import { decodeMessage } from "../../datapath/tunnel/codec.ts";
import { Feature, RxFlag, TxFlag } from "../../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../../datapath/tunnel/records.ts";
import { frame, hex, mac } from "./datapath-frames.ts";

// The cast (segment maxFrameSize 9000):
//   port 1 descriptor member 02:00:00:00:00:01  Coalesced, RxQueue, LargeFrames, Vlan, Gso
//   port 2 descriptor member 02:00:00:00:00:02  Coalesced, RxQueue (no LargeFrames, no Vlan), queue of 2 frames
//   port 3 raw member        02:00:00:00:00:03
//   port 4 descriptor monitor                   Coalesced, RxQueue, LargeFrames, Vlan
//   port 5 descriptor member 02:00:00:00:00:05  Coalesced, RxQueue, LargeFrames, Gso
const M1 = "02 00 00 00 00 01";
const M2 = "02 00 00 00 00 02";
const M3 = "02 00 00 00 00 03";
const M5 = "02 00 00 00 00 05";
const SERVICE_MAC = "02 00 00 00 00 53";
const BCAST = "ff ff ff ff ff ff";
const IPV4 = "08 00";
const ARP = "08 06";
const TAG_VLAN_5 = "81 00 00 05";
const QUIET: ReceiveFilter = { promiscuous: false, allMulticast: false, multicast: [] };
const BASIC = Feature.CoalescedCompletions | Feature.RxQueue;
const FULL = BASIC | Feature.LargeFrames | Feature.Vlan;

const CONFIG: SwitchConfig = {
  maxFrameSize: 9000, learnLimitPerPort: 64, learnLimitPerSegment: 4096, agingMs: 300_000,
  rxQueueFrames: 256, rxQueueBytes: 1 << 20, segmentQueueBytes: 1 << 22,
};

/** A sink that decodes what the switch sends a port. */
class FakeSink implements PortSink {
  readonly messages: TunnelRecord[][] = [];
  readonly raw: Uint8Array[] = [];
  readonly changes: PortChange[] = [];
  /** Why the switch evicted the port, if it did. */
  evictedFor: string | null = null;
  refuse = false;

  constructor(private readonly descriptor: boolean) {}

  send(bytes: Uint8Array): boolean {
    if (this.refuse) return false;
    if (!this.descriptor) {
      this.raw.push(bytes.slice());
      return true;
    }
    const decoded = decodeMessage(bytes);
    if (!decoded.ok) throw new Error(decoded.error.message);
    this.messages.push(decoded.value);
    return true;
  }

  changed(change: PortChange): void {
    this.changes.push(change);
  }

  evicted(code: number, reason: string): void {
    this.evictedFor = `${code} ${reason}`;
  }

  /** Every record received so far, in order, and forgets them. */
  take(): TunnelRecord[] {
    const all = this.messages.flat();
    this.messages.length = 0;
    return all;
  }

  /** The RX records received so far as [flags, frame length], and forgets all records. */
  takeRx(): Array<[number, number]> {
    return this.take().filter((r) => r.type === "rx").map((r) => [r.flags, r.frame.length]);
  }
}

let sw: SegmentSwitch;
let now = 0;
const ports = new Map<number, { port: SwitchPort; sink: FakeSink }>();

function attach(id: number, mode: SwitchPortMode, kind: PortKind, macs: string[], features: number, queue = 4, txWindow = 64, options: AttachOptions = {}): void {
  const opened = tryAttach(id, mode, kind, macs, features, queue, txWindow, options);
  if (!opened.ok) throw new Error(opened.error.message);
}

function tryAttach(id: number, mode: SwitchPortMode, kind: PortKind, macs: string[], features: number, queue = 4, txWindow = 64, options: AttachOptions = {}): ReturnType<SegmentSwitch["open"]> {
  const sink = new FakeSink(mode === "descriptor");
  const port = sw.attach(id, mode, {
    kind, macs: macs.map(macOf), filter: QUIET, features, txWindow, credits: null, counters: newPortCounters(), heldCompletions: [],
  }, sink, options);
  const opened = sw.open(port, queue);
  if (opened.ok) ports.set(id, { port, sink });
  else sw.detach(id);
  return opened;
}

/** A MAC written as hex bytes separated by spaces. */
function macOf(spaced: string): number {
  return mac(spaced.replace(/ /g, ":"));
}

function port(id: number): SwitchPort {
  return (ports.get(id) as { port: SwitchPort }).port;
}

function sink(id: number): FakeSink {
  return (ports.get(id) as { sink: FakeSink }).sink;
}

function counters(id: number): PortCountersData {
  return port(id).state.counters;
}

/** Sends one message of TX records (ids from `firstId`) from a descriptor port, then flushes. */
function send(id: number, frames: Uint8Array[], firstId = 0, flags = 0): void {
  const batch = sw.beginTx(port(id));
  frames.forEach((f, i) => batch.addTx((firstId + i) & 0xffff, flags, f));
  const sent = sw.transmit(port(id));
  if (!sent.ok) throw new Error(sent.error.message);
  sw.endMessage(port(id), frames.length > 0);
  sw.flush();
}

function post(id: number, count: number, bufferSize = 9018): void {
  const posted = sw.postCredits(port(id), count, bufferSize);
  if (!posted.ok) throw new Error(posted.error.message);
  sw.endMessage(port(id), false);
  sw.flush();
}

/** The completion runs port `id` received since the last take, as [firstId, count, status]. */
function completions(id: number): Array<[number, number, number]> {
  return sink(id).take().filter((r) => r.type === "tx-complete").map((r) => [r.firstId, r.count, r.status]);
}

beforeEach(() => {
  now = 0;
  sw = new SegmentSwitch(CONFIG, () => now);
  ports.clear();
  attach(1, "descriptor", "member", [M1], FULL | Feature.Gso);
  attach(2, "descriptor", "member", [M2], BASIC, 2);
  attach(3, "raw", "member", [M3], 0);
  attach(4, "descriptor", "monitor", [], FULL, 16);
  attach(5, "descriptor", "member", [M5], BASIC | Feature.LargeFrames | Feature.Gso);
  for (const id of [1, 2, 4]) post(id, 64);
  post(5, 64, 65545);
  for (const id of [1, 2, 4, 5]) sink(id).take();
});

describe("unicast, flood and monitor copies", () => {
  it("known unicast reaches the owner with no RX flag, the monitor with Mirrored, and completes ok", () => {
    send(1, [frame(`${M2} ${M1} ${IPV4}`, 64)]);
    expect(sink(2).takeRx()).toEqual([[0, 64]]);
    expect(sink(4).takeRx()).toEqual([[RxFlag.Mirrored, 64]]);
    expect(sink(3).raw).toHaveLength(0);
    expect(completions(1)).toEqual([[0, 1, 0]]);
  });

  it("a broadcast reaches every other port flagged Flooded (a raw port as one message), the monitor Mirrored", () => {
    send(1, [frame(`${BCAST} ${M1} ${ARP}`, 60)]);
    expect(sink(2).takeRx()).toEqual([[RxFlag.Flooded, 60]]);
    expect(sink(5).takeRx()).toEqual([[RxFlag.Flooded, 60]]);
    expect(sink(4).takeRx()).toEqual([[RxFlag.Mirrored, 60]]);
    expect(sink(3).raw.map((f) => f.length)).toEqual([60]);
    expect(sink(1).take().filter((r) => r.type === "rx")).toEqual([]);
  });

  it("a raw member without MACs claims the source of its first frame and is locked to it", () => {
    attach(6, "raw", "member", [], 0);
    sw.rawFrame(port(6), frame(`${BCAST} 02 00 00 00 00 66 ${ARP}`));
    sw.rawFrame(port(6), frame(`${BCAST} 02 00 00 00 00 67 ${ARP}`));
    sw.flush();
    expect(port(6).state.macs).toEqual([mac("02:00:00:00:00:66")]);
    expect(counters(6).drops[DropReason.SpoofedSource]).toBe(1);
    expect(sink(3).raw).toHaveLength(1);
  });
});

describe("completions", () => {
  it("coalesce into runs: all ok but one is ok-run, drop-run, ok-run; sent = forwarded + dropped", () => {
    send(1, [frame(`${M2} ${M1} ${IPV4}`), frame(`${M2} ${M1} ${IPV4}`), frame(`${M2} 02 00 00 00 00 66 ${IPV4}`), frame(`${M2} ${M1} ${IPV4}`)], 100);
    expect(completions(1)).toEqual([[100, 2, 0], [102, 1, DropReason.SpoofedSource], [103, 1, 0]]);
    expect(counters(1).rxFrames).toBe(4);
    expect(counters(1).rxFrames).toBe(3 + totalDrops(counters(1)));
  });

  it("are one id per record for a port without CoalescedCompletions", () => {
    attach(7, "descriptor", "member", ["02 00 00 00 00 07"], Feature.RxQueue);
    send(7, [frame(`${M2} 02 00 00 00 00 07 ${IPV4}`), frame(`${M2} 02 00 00 00 00 07 ${IPV4}`)], 9);
    expect(completions(7)).toEqual([[9, 1, 0], [10, 1, 0]]);
  });

  it("a TX with unknown flag bits completes as malformed, unswitched, and counts as received and dropped", () => {
    send(2, [frame(`${M1} ${M2} ${IPV4}`)], 0, 0x40);
    expect(completions(2)).toEqual([[0, 1, DropReason.Malformed]]);
    expect(sink(1).takeRx()).toEqual([]);
    expect(counters(2)).toMatchObject({ rxFrames: 1 });
    expect(counters(2).drops[DropReason.Malformed]).toBe(1);
  });

  it("more TX than the window, or an id twice, is an overrun and nothing is switched", () => {
    attach(7, "descriptor", "member", ["02 00 00 00 00 07"], BASIC, 4, 2);
    const batch = sw.beginTx(port(7));
    for (let id = 0; id < 3; id++) batch.addTx(id, 0, frame(`${M2} 02 00 00 00 00 07 ${IPV4}`));
    expect(sw.transmit(port(7))).toMatchObject({ ok: false, error: { code: "window-overrun" } });
    const twice = sw.beginTx(port(7));
    twice.addTx(5, 0, frame(`${M2} 02 00 00 00 00 07 ${IPV4}`));
    twice.addTx(5, 0, frame(`${M2} 02 00 00 00 00 07 ${IPV4}`));
    expect(sw.transmit(port(7))).toMatchObject({ ok: false, error: { code: "duplicate-id" } });
    sw.flush();
    expect(sink(2).takeRx()).toEqual([]);
    expect(counters(7).rxFrames).toBe(0);
  });
});

describe("lazy completions (protocol.md §6.3 rule 2a)", () => {
  beforeEach(() => {
    attach(8, "descriptor", "member", ["02 00 00 00 00 08"], BASIC | Feature.LazyCompletions, 4, 8);
    post(8, 64);
    sink(8).take();
  });
  const toM2 = (): Uint8Array => frame(`${M2} 02 00 00 00 00 08 ${IPV4}`);
  const toM8 = (): Uint8Array => frame(`02 00 00 00 00 08 ${M2} ${IPV4}`);

  it("are held, then ride on the next message sent for another reason, before its RX", () => {
    send(8, [toM2()], 0);
    expect(sink(8).messages).toHaveLength(0);
    expect(port(8).output?.heldIds).toBe(1);
    send(2, [toM8()], 0);
    const [message] = sink(8).messages;
    expect(message?.map((r) => r.type)).toEqual(["tx-complete", "rx"]);
    expect(message?.[0]).toMatchObject({ firstId: 0, count: 1, status: 0 });
  });

  it("go out in a message of their own when the held ids reach half the window", () => {
    send(8, [toM2()], 0);
    send(8, [toM2(), toM2()], 1);
    expect(sink(8).messages).toHaveLength(0);
    send(8, [toM2()], 3);
    expect(sink(8).take()).toEqual([{ type: "tx-complete", firstId: 0, count: 4, status: 0 }]);
  });

  it("are sent in reply to a message without TX (a ping), each id exactly once", () => {
    send(8, [toM2(), toM2()], 0);
    sw.reply(port(8), { type: "pong", seq: 1, timestamp: 5 });
    sw.endMessage(port(8), false);
    sw.flush();
    expect(sink(8).take().map((r) => r.type)).toEqual(["tx-complete", "pong"]);
    sw.endMessage(port(8), false);
    sw.flush();
    expect(sink(8).messages).toHaveLength(0);
  });

  it("survive an eviction: held runs are part of the persisted state", () => {
    send(8, [toM2()], 7);
    const state = port(8).snapshot();
    expect(state.heldCompletions).toEqual([7, 1, 0]);
    const restored = new SegmentSwitch(CONFIG, () => now);
    const again = new FakeSink(true);
    const revived = restored.attach(8, "descriptor", structuredClone(state), again);
    expect(restored.open(revived).ok).toBe(true);
    restored.endMessage(revived, false);
    restored.flush();
    expect(again.take()).toEqual([{ type: "tx-complete", firstId: 7, count: 1, status: 0 }]);
  });

  it("report a change whenever the held runs change, so the persisted copy never repeats released ones", () => {
    send(8, [toM2()], 0);
    expect(sink(8).changes.at(-1)).toBe("counters");
    sink(8).changes.length = 0;
    sw.endMessage(port(8), false);
    sw.flush();
    expect(sink(8).changes).toEqual(["counters"]);
    expect(port(8).snapshot().heldCompletions).toEqual([]);
  });

  it("are sent before the socket is closed (flushPort)", () => {
    send(8, [toM2()], 3);
    sw.flushPort(port(8));
    expect(sink(8).take()).toEqual([{ type: "tx-complete", firstId: 3, count: 1, status: 0 }]);
  });
});

describe("credits and queues", () => {
  it("without credit a port queues up to its bound, then drops rx-queue-full; credit drains oldest first; tx counts deliveries only", () => {
    const c2 = counters(2);
    const before = c2.txFrames;
    post(2, 0, 9018); // no new credit; 64 outstanding from beforeEach
    send(1, Array.from({ length: 64 }, () => frame(`${M2} ${M1} ${IPV4}`)));
    expect(sink(2).takeRx()).toHaveLength(64);
    send(1, [0x11, 0x12, 0x13].map((b) => frame(`${M2} ${M1} ${IPV4} ${b.toString(16)}`)), 64);
    expect(sink(2).takeRx()).toEqual([]);
    expect(c2.drops[DropReason.RxQueueFull]).toBe(1);
    expect(c2.txFrames - before).toBe(64);
    expect(port(2).ledger?.queuedFrames).toBe(2);
    post(2, 1);
    const drained = sink(2).take().filter((r) => r.type === "rx");
    expect(drained.map((r) => (r.type === "rx" ? r.frame[14] : -1))).toEqual([0x11]);
    expect(c2.txFrames - before).toBe(65);
  });

  it("a frame a full port drops changes only its counters (a counters write), a queued frame its state", () => {
    send(1, Array.from({ length: 64 }, () => frame(`${M2} ${M1} ${IPV4}`)));
    send(1, [frame(`${M2} ${M1} ${IPV4}`)], 64);
    sink(2).changes.length = 0;
    send(1, [frame(`${M2} ${M1} ${IPV4}`)], 65);
    expect(port(2).ledger?.queuedFrames).toBe(2);
    expect(sink(2).changes).toEqual(["state"]);
    sink(2).changes.length = 0;
    send(1, [frame(`${M2} ${M1} ${IPV4}`)], 66);
    expect(counters(2).drops[DropReason.RxQueueFull]).toBe(1);
    expect(sink(2).changes).toEqual(["counters"]);
  });

  it("never truncates: a frame larger than the posted buffers is dropped rx-buffer-too-small, no credit used", () => {
    post(4, 0, 100);
    send(1, [frame(`${M2} ${M1} ${IPV4}`, 101), frame(`${M2} ${M1} ${IPV4}`, 100)]);
    expect(sink(4).takeRx()).toEqual([[RxFlag.Mirrored, 100]]);
    expect(counters(4).drops[DropReason.RxBufferTooSmall]).toBe(1);
    expect(port(4).ledger?.available).toBe(63);
  });

  it("holds the segment to its budget: segment-budget once every queue together is full", () => {
    sw.reconfigure({ ...CONFIG, segmentQueueBytes: 150 });
    attach(9, "descriptor", "member", ["02 00 00 00 00 09"], BASIC, 4);
    send(1, [0, 1, 2].map(() => frame(`02 00 00 00 00 09 ${M1} ${IPV4}`, 60)));
    expect(port(9).ledger?.queuedFrames).toBe(2);
    expect(counters(9).drops[DropReason.SegmentBudget]).toBe(1);
    expect(sw.queuedBytes).toBe(120);
  });

  it("counts frames still queued when a port leaves as flushed, on the port and the segment", () => {
    attach(9, "descriptor", "member", ["02 00 00 00 00 09"], BASIC, 4);
    send(1, [0, 1, 2].map(() => frame(`02 00 00 00 00 09 ${M1} ${IPV4}`)));
    const left = sw.detach(9);
    expect(left?.state.counters.drops[DropReason.Flushed]).toBe(3);
    expect(sw.counters).toMatchObject({ flushed: 3, flushedOnEviction: 0 });
    expect(sw.queuedBytes).toBe(0);
  });
});

describe("what a port negotiated: LargeFrames and Vlan", () => {
  it("a jumbo frame reaches LargeFrames ports; a port without it counts it rx-buffer-too-small; the sender completes ok", () => {
    send(1, [frame(`${BCAST} ${M1} ${IPV4}`, 4000)]);
    expect(completions(1)).toEqual([[0, 1, 0]]);
    expect(sink(5).takeRx()).toEqual([[RxFlag.Flooded, 4000]]);
    expect(sink(2).takeRx()).toEqual([]);
    expect(counters(2).drops[DropReason.RxBufferTooSmall]).toBe(1);
    expect(sink(3).raw.map((f) => f.length)).toEqual([4000]);
  });

  it("a port without LargeFrames may not send more than 1514 bytes", () => {
    send(2, [frame(`${M1} ${M2} ${IPV4}`, 1514), frame(`${M1} ${M2} ${IPV4}`, 1515)]);
    expect(completions(2)).toEqual([[0, 1, 0], [1, 1, DropReason.Oversize]]);
  });

  it("a port without Vlan may not send tagged frames (malformed) and does not get them (malformed, on its counters)", () => {
    send(2, [frame(`${M1} ${M2} ${TAG_VLAN_5} ${IPV4}`)]);
    expect(completions(2)).toEqual([[0, 1, DropReason.Malformed]]);
    expect(counters(2).drops[DropReason.Malformed]).toBe(1);
    send(1, [frame(`${BCAST} ${M1} ${TAG_VLAN_5} ${IPV4}`)]);
    expect(sink(2).takeRx()).toEqual([]);
    expect(counters(2).drops[DropReason.Malformed]).toBe(2);
    expect(sink(4).takeRx()).toEqual([[RxFlag.Mirrored, 60]]);
  });
});

describe("GSO super-frames", () => {
  // protocol.md §6.5: a TCPv4 super-frame with 4 payload bytes and gsoSize 2, from 02:..:01.
  const VNET = "01 01 36 00 02 00 22 00 10 00";
  const superFrame = (destination: string): Uint8Array => hex(`${VNET} ${destination} ${M1} ${IPV4}
    45 00 00 2c 00 01 40 00 40 06 26 c9 0a 00 00 01 0a 00 00 02
    30 39 14 51 00 00 00 01 00 00 00 01 50 18 ff ff 14 21 00 00 61 62 63 64`);

  it("is cut into standard frames for a port without Gso and its monitor, each counted as one tx", () => {
    send(1, [superFrame(M2)], 5, TxFlag.VnetHeader);
    expect(completions(1)).toEqual([[5, 1, 0]]);
    expect(sink(2).takeRx()).toEqual([[0, 56], [0, 56]]);
    expect(sink(4).takeRx()).toEqual([[RxFlag.Mirrored, 56], [RxFlag.Mirrored, 56]]);
    expect(counters(1)).toMatchObject({ rxFrames: 1, rxBytes: 58 });
    expect(counters(2).txBytes).toBe(112);
  });

  it("passes as is, header first, to a Gso port; the header's bytes are not counted", () => {
    const before = counters(5).txBytes;
    send(1, [superFrame(M5)], 0, TxFlag.VnetHeader);
    expect(sink(5).takeRx()).toEqual([[RxFlag.VnetHeader, 68]]);
    expect(counters(5).txBytes - before).toBe(58);
  });

  it("reaches a Gso port byte for byte, header then frame, sent at once or queued and drained later", () => {
    send(1, [superFrame(M5)], 0, TxFlag.VnetHeader);
    const now = sink(5).take().filter((r) => r.type === "rx");
    expect(now.map((r) => (r.type === "rx" ? hexOf(r.frame) : ""))).toEqual([hexOf(superFrame(M5))]);
    const M9 = "02 00 00 00 00 09";
    attach(9, "descriptor", "member", [M9], BASIC | Feature.LargeFrames | Feature.Gso);
    send(1, [superFrame(M9)], 1, TxFlag.VnetHeader);
    expect(port(9).ledger?.queuedFrames).toBe(1);
    post(9, 1, 65545);
    const drained = sink(9).take().filter((r) => r.type === "rx");
    expect(drained.map((r) => (r.type === "rx" ? [r.flags, hexOf(r.frame)] : []))).toEqual([[RxFlag.VnetHeader, hexOf(superFrame(M9))]]);
  });

  it("completes as malformed from a port that was not granted Gso", () => {
    send(2, [superFrame(M1)], 0, TxFlag.VnetHeader);
    expect(completions(2)).toEqual([[0, 1, DropReason.Malformed]]);
  });
});

describe("service ports", () => {
  /** A service that answers every ARP broadcast it is offered, and echoes frames sent to it `echoes` times. */
  class FakeService implements ServicePort {
    readonly name = "fake";
    readonly macs = [hex(SERVICE_MAC)];
    readonly delivered: Uint8Array[] = [];
    echoes = 1;

    deliver(f: Uint8Array, _nowMs: number, emit: EmitFrame): void {
      this.delivered.push(f.slice());
      for (let i = 0; i < this.echoes; i++) emit(frame(`${hex6(f, 6)} ${SERVICE_MAC} ${IPV4} ${i.toString(16).padStart(2, "0")}`));
    }

    intercept(f: Uint8Array, _ingress: number, _nowMs: number, emit: EmitFrame): boolean {
      if (f[12] !== 0x08 || f[13] !== 0x06) return false;
      emit(frame(`${hex6(f, 6)} ${SERVICE_MAC} ${ARP} 02`));
      return true;
    }
  }
  const servicePort = (id: number): SwitchPort => sw.port(id) as SwitchPort;
  const hex6 = (f: Uint8Array, at: number): string => Array.from(f.subarray(at, at + 6), (b) => b.toString(16).padStart(2, "0")).join(" ");
  let service: FakeService;

  beforeEach(() => {
    service = new FakeService();
    const added = sw.addService(50, service);
    expect(added.ok).toBe(true);
  });

  it("an ARP broadcast it intercepts is not flooded: the sender completes ok, gets the answer, and suppressed rises", () => {
    send(1, [frame(`${BCAST} ${M1} ${ARP} 01`)]);
    const records = sink(1).take();
    expect(records.filter((r) => r.type === "tx-complete")).toEqual([{ type: "tx-complete", firstId: 0, count: 1, status: 0 }]);
    expect(records.filter((r) => r.type === "rx").map((r) => (r.type === "rx" ? r.frame[14] : -1))).toEqual([0x02]);
    expect(sink(2).takeRx()).toEqual([]);
    expect(sw.counters.suppressed).toBe(1);
  });

  it("gets unicast to its MAC and broadcasts it does not take; what it emits is switched after the batch from its port", () => {
    send(1, [frame(`${SERVICE_MAC} ${M1} ${IPV4} aa`), frame(`${BCAST} ${M1} ${IPV4} bb`)]);
    expect(service.delivered.map((f) => f[14])).toEqual([0xaa, 0xbb]);
    expect(sink(1).takeRx()).toHaveLength(2);
    const own = servicePort(50).state.counters;
    expect(own).toMatchObject({ txFrames: 2, rxFrames: 2 });
  });

  it("may emit at most MAX_SERVICE_FRAMES_PER_CALL frames per call; the rest count as rate-limited on its port", () => {
    service.echoes = MAX_SERVICE_FRAMES_PER_CALL + 4;
    send(1, [frame(`${SERVICE_MAC} ${M1} ${IPV4}`)]);
    expect(sink(1).takeRx()).toHaveLength(MAX_SERVICE_FRAMES_PER_CALL);
    expect(servicePort(50).state.counters.drops[DropReason.RateLimited]).toBe(4);
    expect(servicePort(50).state.counters.rxFrames).toBe(MAX_SERVICE_FRAMES_PER_CALL + 4);
  });

  it("emits from its own MACs only: a spoofed source is dropped on its port like a member's", () => {
    const liar: ServicePort = {
      name: "liar", macs: [hex("02 00 00 00 00 54")],
      deliver: (_f, _now, emit) => emit(frame(`${M1} ${M2} ${IPV4}`)),
    };
    expect(sw.addService(51, liar).ok).toBe(true);
    send(1, [frame(`02 00 00 00 00 54 ${M1} ${IPV4}`)]);
    expect(servicePort(51).state.counters.drops[DropReason.SpoofedSource]).toBe(1);
    expect(sink(1).takeRx()).toEqual([]);
  });
});

describe("counters", () => {
  it("per port rx = forwarded + ingress drops; per destination switched copies = tx + egress drops + queued", () => {
    const copies = new Map<number, number>();
    const frames = [
      frame(`${M2} ${M1} ${IPV4}`), frame(`${BCAST} ${M1} ${IPV4}`), frame(`${M1} ${M1} ${IPV4}`), frame(`${M3} ${M1} ${IPV4}`, 3000),
      frame(`${M5} ${M1} ${TAG_VLAN_5} ${IPV4}`),
    ];
    const base = new Map([1, 2, 3, 4, 5].map((id) => [id, structuredClone(counters(id))]));
    send(1, frames);
    // Switched copies: 1→2 (+monitor), broadcast to 2,3,5 (+monitor), 3000 B to 3 (+monitor), tagged to 5 (+monitor); local dropped.
    copies.set(2, 2).set(3, 2).set(5, 2).set(4, 4);
    const forwarded = 4;
    const c1 = counters(1);
    expect(c1.rxFrames - (base.get(1) as PortCountersData).rxFrames).toBe(frames.length);
    expect(c1.rxFrames - (base.get(1) as PortCountersData).rxFrames).toBe(forwarded + totalDrops(c1) - totalDrops(base.get(1) as PortCountersData));
    for (const [id, count] of copies) {
      const c = counters(id);
      const b = base.get(id) as PortCountersData;
      const queued = port(id).ledger?.queuedFrames ?? 0;
      expect(c.txFrames - b.txFrames + totalDrops(c) - totalDrops(b) + queued).toBe(count);
    }
    expect(counters(2).drops[DropReason.Malformed] ?? 0).toBe(0);
  });

  it("report changes to the sinks: state for credits and queues, counters for a sender's rx", () => {
    sink(1).changes.length = 0;
    sink(2).changes.length = 0;
    send(1, [frame(`${M2} ${M1} ${IPV4}`)]);
    expect(sink(1).changes).toEqual(["counters"]);
    expect(sink(2).changes).toEqual(["state"]);
  });

  it("a raw port whose socket refuses the send counts the frame as flushed", () => {
    sink(3).refuse = true;
    send(1, [frame(`${M3} ${M1} ${IPV4}`)]);
    expect(counters(3).drops[DropReason.Flushed]).toBe(1);
    expect(counters(3).txFrames).toBe(0);
  });
});

describe("ingress policing (rate limits and storm control)", () => {
  const unicast = (): Uint8Array => frame(`${M2} ${M1} ${IPV4}`, 100);
  const broadcast = (): Uint8Array => frame(`${BCAST} ${M1} ${ARP}`, 60);
  const limits = (over: Partial<PolicerLimits>): PolicerLimits => ({ ...NO_POLICING, ...over });

  it("frames/s: past the burst a TX completes rate-limited (8), is counted, and reaches nobody; tokens refill with time", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ framesPerSecond: 3 }) });
    send(1, [unicast(), unicast(), unicast(), unicast(), unicast()]);
    expect(completions(1)).toEqual([[0, 3, 0], [3, 2, DropReason.RateLimited]]);
    expect(counters(1).drops[DropReason.RateLimited]).toBe(2);
    expect(sink(2).takeRx()).toHaveLength(3);
    now += 1000 / 3;
    send(1, [unicast(), unicast()], 5);
    expect(completions(1)).toEqual([[5, 1, 0], [6, 1, DropReason.RateLimited]]);
  });

  it("bytes/s: a frame that does not fit the bucket is refused; a smaller one that does passes", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ bytesPerSecond: 250 }) });
    send(1, [unicast(), unicast(), unicast(), frame(`${M2} ${M1} ${IPV4}`, 50)]);
    expect(completions(1)).toEqual([[0, 2, 0], [2, 1, DropReason.RateLimited], [3, 1, 0]]);
  });

  it("storm control counts flooded frames only: past the budget a broadcast completes storm-control (16); unicast still passes", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ floodFramesPerSecond: 2 }) });
    send(1, [broadcast(), broadcast(), broadcast(), unicast()]);
    expect(completions(1)).toEqual([[0, 2, 0], [2, 1, DropReason.StormControl], [3, 1, 0]]);
    expect(counters(1).drops[DropReason.StormControl]).toBe(1);
    expect(sink(5).takeRx()).toHaveLength(2);
  });

  it("unknown unicast is flooded, so storm control counts it too", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ floodFramesPerSecond: 1 }) });
    send(1, [frame(`02 00 00 00 00 77 ${M1} ${IPV4}`), frame(`02 00 00 00 00 77 ${M1} ${IPV4}`)]);
    expect(completions(1)).toEqual([[0, 1, DropReason.NoReceiver], [1, 1, DropReason.StormControl]]);
  });

  it("polices raw ports too, each port with its own buckets", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ floodFramesPerSecond: 1 }) });
    sw.rawFrame(port(3), frame(`${BCAST} ${M3} ${ARP}`));
    sw.rawFrame(port(3), frame(`${BCAST} ${M3} ${ARP}`));
    send(1, [broadcast()]);
    expect(counters(3).drops[DropReason.StormControl]).toBe(1);
    expect(completions(1)).toEqual([[0, 1, 0]]);
  });

  it("a port refused more than MAX_REFUSED_PER_SECOND frames within a second is closed 4029, after its completions", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ floodFramesPerSecond: 1 }) });
    for (let i = 0; i <= MAX_REFUSED_PER_SECOND; i++) sw.rawFrame(port(3), frame(`${BCAST} ${M3} ${ARP}`));
    expect(sink(3).evictedFor).toBeNull();
    now += 999;
    sw.rawFrame(port(3), frame(`${BCAST} ${M3} ${ARP}`));
    expect(sink(3).evictedFor).toMatch(/^4029 more than 10000 frames in a second/);
    expect(sw.port(3)).toBeUndefined();
  });

  it("refusals spread over more than a second never close the port", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ floodFramesPerSecond: 1 }) });
    for (let i = 0; i < 3 * MAX_REFUSED_PER_SECOND; i++) {
      if (i % MAX_REFUSED_PER_SECOND === 0) now += 1000;
      sw.rawFrame(port(3), frame(`${BCAST} ${M3} ${ARP}`));
    }
    expect(sink(3).evictedFor).toBeNull();
  });

  it("a port's own limits (a token's claims) override the segment's", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ framesPerSecond: 1 }) });
    attach(6, "descriptor", "member", ["02 00 00 00 00 06"], BASIC, 4, 64, { limits: limits({ framesPerSecond: 100 }) });
    send(6, [0, 1, 2].map(() => frame(`${M2} 02 00 00 00 00 06 ${IPV4}`)));
    expect(completions(6)).toEqual([[0, 3, 0]]);
  });

  it("the buckets are part of the persisted state: an emptied bucket stays empty after an eviction", () => {
    sw.reconfigure({ ...CONFIG, policer: limits({ framesPerSecond: 2 }) });
    send(1, [unicast(), unicast()]);
    const state = structuredClone(port(1).snapshot());
    const woken = new SegmentSwitch({ ...CONFIG, policer: limits({ framesPerSecond: 2 }) }, () => now);
    const revivedSink = new FakeSink(true);
    const revived = woken.attach(1, "descriptor", state, revivedSink);
    expect(woken.open(revived).ok).toBe(true);
    woken.beginTx(revived).addTx(2, 0, unicast());
    expect(woken.transmit(revived).ok).toBe(true);
    woken.endMessage(revived, true);
    woken.flush();
    expect(revivedSink.take().filter((r) => r.type === "tx-complete")).toMatchObject([{ firstId: 2, count: 1, status: DropReason.RateLimited }]);
  });
});

describe("raw egress bound (raw-egress.ts)", () => {
  const toRaw = (n: number): Uint8Array[] => Array.from({ length: n }, () => frame(`${M3} ${M1} ${IPV4}`, 1000));
  const rawLimits = (over: Partial<PolicerLimits>): PolicerLimits => ({ ...NO_POLICING, ...over });

  it("past its frames/s budget a raw port's frames are dropped rx-queue-full on it; the sender completes ok", () => {
    sw.reconfigure({ ...CONFIG, rawEgress: rawLimits({ framesPerSecond: 3 }) });
    send(1, toRaw(5));
    expect(sink(3).raw).toHaveLength(3);
    expect(counters(3).drops[DropReason.RxQueueFull]).toBe(2);
    expect(completions(1)).toEqual([[0, 5, 0]]);
    now += 1000;
    send(1, toRaw(1), 5);
    expect(sink(3).raw).toHaveLength(4);
  });

  it("and at most RAW_SILENT_BYTES, whichever comes first", () => {
    const big = (): Uint8Array => frame(`${M3} ${M1} ${IPV4}`, 8000);
    for (let m = 0; m < 10; m++) send(1, Array.from({ length: 64 }, big), (m * 64) & 0xffff);
    expect(sink(3).raw).toHaveLength(Math.floor(RAW_SILENT_BYTES / 8000));
  });

  it("bytes/s bound the same way", () => {
    sw.reconfigure({ ...CONFIG, rawEgress: rawLimits({ bytesPerSecond: 2500 }) });
    send(1, toRaw(3));
    expect(sink(3).raw).toHaveLength(2);
    expect(counters(3).drops[DropReason.RxQueueFull]).toBe(1);
  });

  it("a raw port that sends nothing gets at most RAW_SILENT_FRAMES; one frame from it reopens the flow", () => {
    const perMessage = 64;
    const messages = RAW_SILENT_FRAMES / perMessage + 1;
    for (let m = 0; m < messages; m++) send(1, toRaw(perMessage), (m * perMessage) & 0xffff);
    const received = sink(3).raw.length;
    expect(received).toBe(RAW_SILENT_FRAMES);
    expect(counters(3).drops[DropReason.RxQueueFull]).toBe(messages * perMessage - received);
    sw.rawFrame(port(3), frame(`${BCAST} ${M3} ${ARP}`));
    send(1, toRaw(1));
    expect(sink(3).raw).toHaveLength(received + 1);
  });
});

describe("read acknowledgements (protocol.md §8.5)", () => {
  const JUMBO = 8000;
  /** Sends port 5 `count` jumbo frames from port 1, 64 per message. */
  function flood5(count: number): void {
    for (let sent = 0; sent < count; sent += 64) send(1, Array.from({ length: Math.min(64, count - sent) }, () => frame(`${M5} ${M1} ${IPV4}`, JUMBO)), sent & 0xffff);
  }
  const pings = (records: TunnelRecord[]): number[] => records.flatMap((r) => (r.type === "ping" ? [r.seq] : []));

  beforeEach(() => post(5, 4000, 65545));

  it("past READ_ACK_PING_BYTES unacknowledged the segment sends one PING, after the RX it covers", () => {
    flood5(Math.ceil(READ_ACK_PING_BYTES / JUMBO));
    const records = sink(5).take();
    expect(pings(records)).toEqual([1]);
    expect(records.at(-1)).toMatchObject({ type: "ping", seq: 1 });
    flood5(10);
    expect(pings(sink(5).take())).toEqual([]);
  });

  it("a port that never answers gets nothing past READ_ACK_LIMIT_BYTES: frames queue, then drop rx-queue-full", () => {
    const limitFrames = Math.ceil(READ_ACK_LIMIT_BYTES / JUMBO);
    flood5(limitFrames + 10);
    expect(sink(5).takeRx()).toHaveLength(limitFrames);
    expect(port(5).ledger?.queuedFrames).toBe(4);
    expect(counters(5).drops[DropReason.RxQueueFull]).toBe(6);
  });

  it("the matching PONG acknowledges what preceded its PING: queued frames go out and RX resumes; a wrong seq changes nothing", () => {
    const limitFrames = Math.ceil(READ_ACK_LIMIT_BYTES / JUMBO);
    flood5(limitFrames + 4);
    const [seq] = pings(sink(5).take());
    sw.pong(port(5), (seq as number) + 1);
    sw.flush();
    expect(sink(5).takeRx()).toHaveLength(0);
    sw.pong(port(5), seq as number);
    sw.flush();
    const records = sink(5).take();
    expect(records.filter((r) => r.type === "rx")).toHaveLength(4);
    expect(pings(records)).toEqual([2]);
    flood5(1);
    expect(sink(5).takeRx()).toHaveLength(1);
  });

  it("the unacknowledged bytes and the outstanding PING survive an eviction", () => {
    flood5(Math.ceil(READ_ACK_PING_BYTES / JUMBO));
    const state = structuredClone(port(5).snapshot());
    const woken = new SegmentSwitch(CONFIG, () => now);
    const revived = woken.attach(5, "descriptor", state, new FakeSink(true));
    expect(revived.ledger?.unackedBytes).toBe(port(5).ledger?.unackedBytes);
    expect(revived.ledger?.pong(1)).toBe(true);
    expect(revived.ledger?.unackedBytes).toBe(0);
  });
});

describe("MAC ownership (docs/datapath.md)", () => {
  const M7 = "02 00 00 00 00 07";
  const boundTo7 = { boundMacs: [macOf(M7)] };

  it("a port whose token binds a MAC takes it from an unbound port that holds it: the squatter is evicted and detached", () => {
    attach(6, "raw", "member", [M7], 0);
    attach(7, "descriptor", "member", [M7], BASIC, 4, 64, boundTo7);
    expect(sink(6).evictedFor).toContain("02:00:00:00:00:07 is bound to the join token of a port that just joined");
    expect(sw.port(6)).toBeUndefined();
    post(7, 8);
    send(1, [frame(`${M7} ${M1} ${IPV4}`)]);
    expect(sink(7).takeRx()).toHaveLength(1);
    expect(sink(6).raw).toHaveLength(0);
  });

  it("a port bound by its own token keeps the MAC: the second token holder is refused mac-taken", () => {
    attach(6, "descriptor", "member", [M7], BASIC, 4, 64, boundTo7);
    expect(tryAttach(7, "descriptor", "member", [M7], BASIC, 4, 64, boundTo7)).toMatchObject({ ok: false, error: { code: "mac-taken" } });
    expect(sink(6).evictedFor).toBeNull();
  });

  it("an unbound port cannot take a registered MAC (mac-taken) and evicts nobody", () => {
    attach(6, "raw", "member", [M7], 0);
    expect(tryAttach(7, "descriptor", "member", [M7], BASIC)).toMatchObject({ ok: false, error: { code: "mac-taken" } });
    expect(sink(6).evictedFor).toBeNull();
  });

  it("add-mac of a bound MAC evicts the squatter too; add-mac of a MAC another port holds is MacTaken otherwise", () => {
    attach(6, "raw", "member", [M7], 0);
    attach(7, "descriptor", "member", ["02 00 00 00 00 70"], BASIC, 4, 64, { boundMacs: [macOf("02 00 00 00 00 70"), macOf(M7)] });
    expect(sw.addMac(port(2), macOf("02 00 00 00 00 70"), null)).toMatchObject({ status: AckStatus.MacTaken });
    expect(sw.addMac(port(7), macOf(M7), [macOf("02 00 00 00 00 70"), macOf(M7)])).toMatchObject({ status: AckStatus.Ok });
    expect(sink(6).evictedFor).not.toBeNull();
  });

  it("a member cannot register, at HELLO or with add-mac, a MAC learned behind a bridge port (mac-taken / MacTaken)", () => {
    attach(8, "descriptor", "bridge", [], FULL);
    send(8, [frame(`${BCAST} ${M7} ${ARP}`)]);
    expect(tryAttach(9, "descriptor", "member", [M7], BASIC)).toMatchObject({ ok: false, error: { code: "mac-taken" } });
    expect(sw.addMac(port(2), macOf(M7), null)).toMatchObject({ status: AckStatus.MacTaken, reason: expect.stringContaining("behind port 8") });
  });

  it("a token-bound member takes a MAC learned behind a bridge port; the bridge port may then not send from it (spoofed-source)", () => {
    attach(8, "descriptor", "bridge", [], FULL);
    send(8, [frame(`${BCAST} ${M7} ${ARP}`)]);
    attach(9, "descriptor", "member", [M7], BASIC, 4, 64, boundTo7);
    sink(8).take();
    send(8, [frame(`${BCAST} ${M7} ${ARP}`)]);
    expect(completions(8)).toEqual([[0, 1, DropReason.SpoofedSource]]);
    expect(counters(8).drops[DropReason.SpoofedSource]).toBe(1);
  });
});

describe("restore after eviction", () => {
  it("frames queued when the segment was evicted are counted flushed on wake, credits carry on", () => {
    attach(9, "descriptor", "member", ["02 00 00 00 00 09"], BASIC, 4);
    send(1, [0, 1].map(() => frame(`02 00 00 00 00 09 ${M1} ${IPV4}`)));
    const state = structuredClone(port(9).snapshot());
    const woken = new SegmentSwitch(CONFIG, () => now);
    const revived = woken.attach(9, "descriptor", state, new FakeSink(true));
    expect(woken.open(revived).ok).toBe(true);
    expect(revived.state.counters.drops[DropReason.Flushed]).toBe(2);
    expect(woken.counters).toMatchObject({ flushed: 2, flushedOnEviction: 2 });
    expect(revived.ledger?.queuedFrames).toBe(0);
  });
});

describe("memory under connection churn", () => {
  it("a detached port leaves no per-port batch array behind (port ids are never reused)", () => {
    for (let id = 100; id < 600; id++) {
      attach(id, "descriptor", "member", [`02 00 00 00 01 ${(id % 256).toString(16).padStart(2, "0")}`], BASIC);
      post(id, 4);
      send(1, [frame(`${BCAST} ${M1} ${ARP}`, 60)]);
      sw.detach(id);
      ports.delete(id);
    }
    // At most one per port still attached (1–5), not one per port that ever received a frame (505).
    expect(sw.retainedBatchArrays).toBeLessThanOrEqual(ports.size);
  });
});

/** Bytes as lowercase hex, for comparing frames in failure messages. */
function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}
