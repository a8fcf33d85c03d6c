// Completions that wait for another cell (docs/protocol.md §6.3 rule 8, feature CellCompletions): three
// cells in Node, each a real SegmentSwitch; the test decides when each trunk call returns or fails.
import { beforeEach, describe, expect, it } from "vitest";
import { Cell } from "../../datapath/cells/cell.ts";
import type { TrunkBatch } from "../../datapath/cells/trunk-records.ts";
import { DropReason, newPortCounters } from "../../datapath/counters.ts";
import type { PortKind } from "../../datapath/port-kind.ts";
import type { SegmentSwitch } from "../../datapath/segment-switch.ts";
import type { SwitchPort, SwitchPortMode } from "../../datapath/switch-port.ts";
import { Feature } from "../../datapath/tunnel/constants.ts";
import { frame, mac } from "./datapath-frames.ts";
import { meshOfCells } from "./cells-fixture.ts";
import { RecordingSink } from "./recording-sink.ts";

const M = (n: number): string => `02 00 00 00 00 ${n.toString(16).padStart(2, "0")}`;
const BCAST = "ff ff ff ff ff ff";
const IPV4 = "08 00";
const WAITS = Feature.CoalescedCompletions | Feature.RxQueue | Feature.CellCompletions;
const NO_WAIT = Feature.CoalescedCompletions | Feature.RxQueue;

let now = 0;
let cells: Cell[] = [];
let switches: SegmentSwitch[] = [];
const ports = new Map<number, { cell: number; port: SwitchPort; sink: RecordingSink }>();
/** Calls taken and not yet answered, in order. */
let calls: Array<{ from: number; peer: number; batch: TrunkBatch }> = [];

function attach(cellIndex: number, id: number, mode: SwitchPortMode, kind: PortKind, macs: number[], features = 0, txWindow = 8): void {
  const sink = new RecordingSink(mode === "descriptor");
  const sw = switches[cellIndex] as SegmentSwitch;
  const port = sw.attach(id, mode, {
    kind, macs: macs.map((n) => mac(M(n).replace(/ /g, ":"))), filter: { promiscuous: false, allMulticast: false, multicast: [] },
    features, txWindow, credits: null, counters: newPortCounters(), heldCompletions: [],
  }, sink);
  const opened = sw.open(port, 16);
  if (!opened.ok) throw new Error(opened.error.message);
  ports.set(id, { cell: cellIndex, port, sink });
  const cell = cells[cellIndex] as Cell;
  for (const m of port.state.macs) cell.claimStatic(m, 1);
  cell.refreshFilter();
}

/** Takes every due call (they stay unanswered until `answer`/`fail`). */
function take(): number {
  let taken = 0;
  cells.forEach((cell, from) => {
    for (const { peer, batch } of cell.take()) {
      calls.push({ from, peer, batch });
      taken++;
    }
  });
  return taken;
}

/** Answers the oldest unanswered call from `from` to `peer` as the peer would. */
function answer(from: number, peer: number): void {
  const at = calls.findIndex((call) => call.from === from && call.peer === peer);
  const [call] = calls.splice(at, 1);
  if (call === undefined) throw new Error(`no call from ${from} to ${peer}`);
  const reply = (cells[peer] as Cell).receive(call.batch);
  if (!reply.ok) throw new Error(reply.error.message);
  (cells[from] as Cell).completed(peer, reply.value);
  (switches[from] as SegmentSwitch).flush();
}

/** The oldest unanswered call from `from` to `peer` threw (the peer was reset mid-call). */
function fail(from: number, peer: number): void {
  const at = calls.findIndex((call) => call.from === from && call.peer === peer);
  if (at < 0) throw new Error(`no call from ${from} to ${peer}`);
  calls.splice(at, 1);
  (cells[from] as Cell).failed(peer, false);
  (switches[from] as SegmentSwitch).flush();
}

/** Answers calls until none is due (announcements), bounded. */
function settleAll(): void {
  for (let round = 0; round < 20; round++) {
    take();
    if (calls.length === 0) return;
    while (calls.length > 0) answer((calls[0] as { from: number }).from, (calls[0] as { peer: number }).peer);
  }
  throw new Error("calls did not settle");
}

function transmit(id: number, frames: Uint8Array[], firstId = 0): ReturnType<SegmentSwitch["transmit"]> {
  const { cell, port } = ports.get(id) as { cell: number; port: SwitchPort };
  const sw = switches[cell] as SegmentSwitch;
  const batch = sw.beginTx(port);
  frames.forEach((f, i) => batch.addTx((firstId + i) & 0xffff, 0, f));
  const sent = sw.transmit(port);
  sw.endMessage(port, frames.length > 0);
  sw.flush();
  return sent;
}

function send(id: number, frames: Uint8Array[], firstId = 0): void {
  const sent = transmit(id, frames, firstId);
  if (!sent.ok) throw new Error(sent.error.message);
}

/** Completion runs port `id` received since the last call, per message: [[firstId, count, status], …][]. */
function completionMessages(id: number): Array<Array<[number, number, number]>> {
  const sink = (ports.get(id) as { sink: RecordingSink }).sink;
  const out = sink.messages.map((records) => records.filter((r) => r.type === "tx-complete").map((r): [number, number, number] => [r.firstId, r.count, r.status]))
    .filter((runs) => runs.length > 0);
  sink.messages.length = 0;
  return out;
}

const to = (dest: number, from: number): Uint8Array => frame(`${M(dest)} ${M(from)} ${IPV4}`);

beforeEach(() => {
  now = 0;
  calls = [];
  ports.clear();
  ({ cells, switches } = meshOfCells(3, () => now));
  attach(0, 1, "descriptor", "member", [1], WAITS);
  attach(0, 2, "raw", "member", [2]);
  attach(1, 3, "raw", "member", [3]);
  attach(2, 4, "raw", "member", [4]);
  attach(0, 5, "descriptor", "member", [5], NO_WAIT);
  settleAll();
});

describe("CellCompletions (protocol.md §6.3 rule 8)", () => {
  it("a TX to another cell completes ok when the call returns, in a message of its own, after later local ones", () => {
    send(1, [to(3, 1), to(2, 1)]);
    expect(completionMessages(1)).toEqual([[[1, 1, 0]]]);
    expect(take()).toBe(1);
    expect(completionMessages(1)).toEqual([]);
    answer(0, 1);
    expect(completionMessages(1)).toEqual([[[0, 1, 0]]]);
    expect((ports.get(3) as { sink: RecordingSink }).sink.frames).toHaveLength(1);
    expect((switches[0] as SegmentSwitch).deferred.size).toBe(0);
  });

  it("a call that fails (the peer was reset mid-call) completes its TX cell-unreachable, counted on the trunk only", () => {
    send(1, [to(3, 1), to(3, 1), to(2, 1)]);
    take();
    fail(0, 1);
    expect(completionMessages(1)).toEqual([[[2, 1, 0]], [[0, 2, DropReason.CellUnreachable]]]);
    expect((cells[0] as Cell).outbox(1)?.counters.failedFrames).toBe(2);
    const sender = (ports.get(1) as { port: SwitchPort }).port.state.counters;
    expect(sender.drops[DropReason.CellUnreachable]).toBe(0);
    expect(sender.rxFrames).toBe(3);
  });

  it("while the trunk waits out its retry backoff, a frame for that cell completes cell-unreachable at once, without a call", () => {
    send(1, [to(3, 1)]);
    take();
    fail(0, 1);
    completionMessages(1);
    send(1, [to(3, 1)], 1);
    expect(completionMessages(1)).toEqual([[[1, 1, DropReason.CellUnreachable]]]);
    expect(take()).toBe(0);
    expect((cells[0] as Cell).outbox(1)?.counters).toMatchObject({ failedFrames: 1, unreachableFrames: 1 });
    // A sender without the feature still queues for the retry, as before.
    send(5, [to(3, 5)]);
    expect(completionMessages(5)).toEqual([[[0, 1, 0]]]);
    expect((cells[0] as Cell).outbox(1)?.pending).toBe(1);
  });

  it("once the backoff is over a waiting frame is taken again, and the retry call completes it ok", () => {
    send(1, [to(3, 1)]);
    take();
    fail(0, 1);
    completionMessages(1);
    expect(take()).toBe(0);
    now += 100;
    send(1, [to(3, 1)], 1);
    expect(completionMessages(1)).toEqual([]);
    expect(take()).toBe(1);
    answer(0, 1);
    expect(completionMessages(1)).toEqual([[[1, 1, 0]]]);
    send(1, [to(3, 1)], 2);
    take();
    answer(0, 1);
    expect(completionMessages(1)).toEqual([[[2, 1, 0]]]);
  });

  it("a frame waiting behind a call that fails (or is refused) completes cell-unreachable with it: nothing waits for a retry", () => {
    send(1, [to(3, 1)]);
    take();
    send(1, [to(3, 1), to(3, 1)], 1);
    send(5, [to(3, 5)]);
    expect((cells[0] as Cell).outbox(1)?.pending).toBe(3);
    completionMessages(1);
    fail(0, 1);
    expect(completionMessages(1)).toEqual([[[0, 3, DropReason.CellUnreachable]]]);
    // The other sender's frame stays for the retry; the waiting ones were dropped, counted as lost.
    expect((cells[0] as Cell).outbox(1)?.pending).toBe(1);
    expect((cells[0] as Cell).outbox(1)?.counters.failedFrames).toBe(3);
    expect((switches[0] as SegmentSwitch).deferred.size).toBe(0);
    // Refused whole (the peer is not a cell yet): the same.
    send(1, [to(4, 1)], 3);
    take();
    send(1, [to(4, 1)], 4);
    completionMessages(1);
    const at = calls.findIndex((call) => call.from === 0 && call.peer === 2);
    calls.splice(at, 1);
    (cells[0] as Cell).refused(2);
    (switches[0] as SegmentSwitch).flush();
    expect(completionMessages(1)).toEqual([[[3, 2, DropReason.CellUnreachable]]]);
    expect((switches[0] as SegmentSwitch).deferred.size).toBe(0);
  });

  it("a broadcast completes when the calls to every cell returned; one failure makes it cell-unreachable", () => {
    send(1, [frame(`${BCAST} ${M(1)} ${IPV4}`)]);
    expect(take()).toBe(2);
    answer(0, 1);
    expect(completionMessages(1)).toEqual([]);
    answer(0, 2);
    expect(completionMessages(1)).toEqual([[[0, 1, 0]]]);
    send(1, [frame(`${BCAST} ${M(1)} ${IPV4}`)], 1);
    take();
    fail(0, 2);
    expect(completionMessages(1)).toEqual([]);
    answer(0, 1);
    expect(completionMessages(1)).toEqual([[[1, 1, DropReason.CellUnreachable]]]);
  });

  it("without the feature, a TX to another cell completes right after its message and a failed call is only counted", () => {
    send(5, [to(3, 5)]);
    expect(completionMessages(5)).toEqual([[[0, 1, 0]]]);
    take();
    fail(0, 1);
    expect(completionMessages(5)).toEqual([]);
    expect((cells[0] as Cell).outbox(1)?.counters.failedFrames).toBe(1);
  });

  it("waiting ids count against the window and may not be reused (4003)", () => {
    send(1, [to(3, 1), to(3, 1), to(3, 1)]);
    expect(transmit(1, [to(2, 1)], 1)).toMatchObject({ ok: false, error: { code: "duplicate-id" } });
    expect(transmit(1, Array.from({ length: 6 }, () => to(2, 1)), 3)).toMatchObject({ ok: false, error: { code: "window-overrun" } });
    send(1, Array.from({ length: 5 }, () => to(2, 1)), 3);
    take();
    answer(0, 1);
    send(1, [to(2, 1)], 0);
  });

  it("a port that closed while waiting gets nothing later, and its tickets are gone when the call ends", () => {
    send(1, [to(3, 1), to(4, 1)]);
    take();
    completionMessages(1);
    (switches[0] as SegmentSwitch).detach(1);
    answer(0, 1);
    fail(0, 2);
    expect(completionMessages(1)).toEqual([]);
    expect((switches[0] as SegmentSwitch).deferred.size).toBe(0);
  });

  it("under LazyCompletions the waiting completion still goes out when the call returns", () => {
    attach(0, 6, "descriptor", "member", [6], WAITS | Feature.LazyCompletions);
    settleAll();
    send(6, [to(3, 6)]);
    take();
    expect(completionMessages(6)).toEqual([]);
    answer(0, 1);
    expect(completionMessages(6)).toEqual([[[0, 1, 0]]]);
  });

  it("a copy for a monitor on another cell does not hold a completion up", () => {
    attach(2, 7, "raw", "monitor", []);
    settleAll();
    send(1, [to(2, 1)]);
    expect(completionMessages(1)).toEqual([[[0, 1, 0]]]);
    expect(take()).toBe(1);
    answer(0, 2);
    expect((ports.get(7) as { sink: RecordingSink }).sink.frames).toHaveLength(1);
  });

  it("the peer leaving the segment fails what its trunk held", () => {
    send(1, [to(3, 1)]);
    take();
    (cells[0] as Cell).removePeer(1);
    (switches[0] as SegmentSwitch).flush();
    expect(completionMessages(1)).toEqual([[[0, 1, DropReason.CellUnreachable]]]);
  });
});
