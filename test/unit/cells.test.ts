// Three cells of one segment in Node (docs/cells.md §4–5): each cell a real SegmentSwitch, trunks
// joined by an in-memory call loop, frames in hex. The switching rules must hold across cells:
// unicast to exactly one cell, broadcast once per cell, no echo, split horizon, MAC moves by seq.
import { beforeEach, describe, expect, it } from "vitest";
import { Cell, TRUNK_PORT_BASE, aggregateFilter } from "../../datapath/cells/cell.ts";
import { MAX_RETRY_BACKOFF_MS, MAX_TIMED_RETRIES, MIN_RETRY_BACKOFF_MS } from "../../datapath/cells/trunk-outbox.ts";
import { TrunkFrameFlag } from "../../datapath/cells/trunk-records.ts";
import { DropReason, newPortCounters } from "../../datapath/counters.ts";
import type { PortKind } from "../../datapath/port-kind.ts";
import { RxFlag } from "../../datapath/tunnel/constants.ts";
import { SegmentSwitch, type SwitchConfig } from "../../datapath/segment-switch.ts";
import type { SwitchPort } from "../../datapath/switch-port.ts";
import { frame, hex, mac } from "./datapath-frames.ts";
import { settleCalls } from "./cells-fixture.ts";
import { RecordingSink } from "./recording-sink.ts";

const CONFIG: SwitchConfig = {
  maxFrameSize: 1514, learnLimitPerPort: 64, learnLimitPerSegment: 4096, agingMs: 300_000,
  rxQueueFrames: 256, rxQueueBytes: 1 << 20, segmentQueueBytes: 1 << 22,
};
const GENERATION = "g1";
const M = (n: number): string => `02 00 00 00 00 ${n.toString(16).padStart(2, "0")}`;
const BCAST = "ff ff ff ff ff ff";
const IPV4 = "08 00";

let now = 0;
let cells: Cell[] = [];
let switches: SegmentSwitch[] = [];
const ports = new Map<number, { cell: number; port: SwitchPort; sink: RecordingSink }>();
let lost: number[] = [];

function makeCell(index: number, epoch = 1): Cell {
  const sw = new SegmentSwitch(CONFIG, () => now);
  switches[index] = sw;
  const cell = new Cell({ index, epoch, generation: GENERATION }, sw, {
    maxLearned: 4096, agingMs: CONFIG.agingMs, segmentQueueBytes: CONFIG.segmentQueueBytes, staticLost: (m) => lost.push(m),
  }, () => now);
  cells[index] = cell;
  return cell;
}

/** Joins every pair of cells. */
function mesh(): void {
  for (const cell of cells) for (const peer of cells) if (peer !== cell) expect(cell.addPeer(peer.identity.index).ok).toBe(true);
}

/** Adds a raw port on a cell; a member's MACs are claimed (seq 1) and announced as static routes. */
function attach(cellIndex: number, id: number, kind: PortKind, macs: number[] = []): void {
  const sink = new RecordingSink();
  const sw = switches[cellIndex] as SegmentSwitch;
  const port = sw.attach(id, "raw", {
    kind, macs: macs.map((n) => mac(M(n).replace(/ /g, ":"))), filter: { promiscuous: false, allMulticast: false, multicast: [] },
    features: 0, txWindow: 0, credits: null, counters: newPortCounters(), heldCompletions: [],
  }, sink);
  const opened = sw.open(port);
  if (!opened.ok) throw new Error(opened.error.message);
  ports.set(id, { cell: cellIndex, port, sink });
  const cell = cells[cellIndex] as Cell;
  for (const m of port.state.macs) cell.claimStatic(m, 1);
  cell.refreshFilter();
}

/** Runs every pending trunk call until none is left (bounded); returns how many calls were made. */
function settle(): number {
  return settleCalls(cells);
}

function send(id: number, ...frames: Uint8Array[]): void {
  const { cell, port } = ports.get(id) as { cell: number; port: SwitchPort };
  for (const f of frames) (switches[cell] as SegmentSwitch).rawFrame(port, f);
  (switches[cell] as SegmentSwitch).flush();
  settle();
}

function received(id: number): number {
  return (ports.get(id) as { sink: RecordingSink }).sink.frames.length;
}

function trunk(cell: number, peer: number): SwitchPort {
  return (cells[cell] as Cell).trunkPort(peer) as SwitchPort;
}

beforeEach(() => {
  now = 0;
  cells = [];
  switches = [];
  ports.clear();
  lost = [];
  for (let i = 0; i < 3; i++) makeCell(i);
  mesh();
});

describe("three cells", () => {
  beforeEach(() => {
    attach(0, 1, "member", [1]);
    attach(1, 16777217, "member", [2]);
    attach(2, 33554433, "member", [3]);
    settle();
  });

  it("unicast goes to exactly one cell, over one trunk", () => {
    send(1, frame(`${M(2)} ${M(1)} ${IPV4}`));
    expect([received(1), received(16777217), received(33554433)]).toEqual([0, 1, 0]);
    expect(trunk(0, 1).state.counters.txFrames).toBe(1);
    expect(trunk(0, 2).state.counters.txFrames).toBe(0);
    expect(trunk(2, 0).state.counters.rxFrames).toBe(0);
    expect(trunk(1, 0).state.counters.rxFrames).toBe(1);
  });

  it("a frame with a virtio-net header from a trunk (the origin's RX flag VnetHeader) is delivered, not dropped as malformed", () => {
    // An all-zero header: no partial checksum, no GSO; the receiver gets the plain frame behind it.
    const inner = frame(`${M(2)} ${M(1)} ${IPV4}`);
    const withHeader = new Uint8Array(10 + inner.length);
    withHeader.set(inner, 10);
    (switches[1] as SegmentSwitch).trunkReceive(trunk(1, 0), [{ flags: RxFlag.VnetHeader, frame: withHeader }]);
    (switches[1] as SegmentSwitch).flush();
    expect(received(16777217)).toBe(1);
    expect(ports.get(16777217)?.sink.frames[0]).toEqual(inner);
    expect(trunk(1, 0).state.counters.drops[DropReason.Malformed] ?? 0).toBe(0);
  });

  it("broadcast reaches every other cell once and never echoes to the sender", () => {
    send(16777217, frame(`${BCAST} ${M(2)} 08 06`));
    expect([received(1), received(16777217), received(33554433)]).toEqual([1, 0, 1]);
    // Split horizon: the cells that received it from a trunk sent it on no trunk.
    expect(trunk(0, 2).state.counters.txFrames + trunk(2, 0).state.counters.txFrames).toBe(0);
    expect(trunk(0, 1).state.counters.rxFrames).toBe(1);
    expect(trunk(2, 1).state.counters.rxFrames).toBe(1);
  });

  it("a broadcast from a trunk is flooded to local ports only (split horizon in the bridge)", () => {
    const sw = switches[1] as SegmentSwitch;
    sw.trunkReceive(trunk(1, 0), [{ flags: TrunkFrameFlag.Flooded, frame: frame(`${BCAST} ${M(1)} 08 06`) }]);
    sw.flush();
    expect(received(16777217)).toBe(1);
    expect((cells[1] as Cell).outbox(2)?.pending).toBe(0);
    expect(trunk(1, 2).state.counters.txFrames).toBe(0);
  });

  it("a cell without ports is never sent floods", () => {
    makeCell(3);
    for (const cell of cells) for (const peer of cells) if (peer !== cell) cell.addPeer(peer.identity.index);
    settle();
    send(1, frame(`${BCAST} ${M(1)} 08 06`));
    expect(trunk(3, 0).state.counters.rxFrames).toBe(0);
    expect(trunk(0, 3).state.counters.txFrames).toBe(0);
    expect([received(16777217), received(33554433)]).toEqual([1, 1]);
  });

  it("unknown unicast goes only to cells with a bridge port", () => {
    attach(2, 33554434, "bridge");
    settle();
    send(1, frame(`${M(0x99)} ${M(1)} ${IPV4}`));
    expect(received(33554434)).toBe(1);
    expect(trunk(0, 1).state.counters.txFrames).toBe(0);
    expect(trunk(0, 2).state.counters.txFrames).toBe(1);
  });

  it("a cell rebuilt from its snapshot has its peers' routes and filters at once; learned routes past their lifetime stay out", () => {
    const X = mac("02:00:00:00:0b:0b");
    attach(2, 33554434, "bridge");
    send(33554434, frame(`${BCAST} 02 00 00 00 0b 0b ${IPV4}`));
    expect((cells[0] as Cell).routes.owner(X, 0)).toBe(2);
    const snapshot = (cells[0] as Cell).snapshot();
    // Cell 0 restarts (a new epoch, a fresh switch) and restores what it stored.
    const restarted = makeCell(0, 2);
    expect(restarted.addPeer(1).ok && restarted.addPeer(2).ok).toBe(true);
    restarted.restore(snapshot);
    // Its filters came back: a broadcast from a port there goes to both peers before any call.
    const port = (switches[0] as SegmentSwitch).attach(77, "raw", {
      kind: "member", macs: [], filter: { promiscuous: false, allMulticast: false, multicast: [] },
      features: 0, txWindow: 0, credits: null, counters: newPortCounters(), heldCompletions: [],
    }, new RecordingSink());
    expect((switches[0] as SegmentSwitch).open(port).ok).toBe(true);
    (switches[0] as SegmentSwitch).rawFrame(port, frame(`${BCAST} ${M(9)} 08 06`));
    (switches[0] as SegmentSwitch).flush();
    expect([restarted.outbox(1)?.pending, restarted.outbox(2)?.pending]).toEqual([1, 1]);
    expect(restarted.routes.owner(mac(M(2).replace(/ /g, ":")), 0)).toBe(1);
    expect(restarted.routes.owner(X, 0)).toBe(2);
    // A learned route from the snapshot past 1.5 × aging is not restored.
    now += CONFIG.agingMs * 2;
    const later = makeCell(0, 3);
    later.addPeer(2);
    later.restore(snapshot);
    expect(later.routes.owner(X, 0)).toBeUndefined();
    expect(later.routes.owner(mac(M(3).replace(/ /g, ":")), 0)).toBe(2);
  });

  it("a trunk call from another segment generation is refused whole", () => {
    const refused = (cells[1] as Cell).receive({ generation: "old", from: 0, epoch: 1, controlFrom: 0, control: [], frames: new Uint8Array(0), frameCount: 0 });
    expect(refused.ok ? "ok" : refused.error.code).toBe("stale-generation");
  });

  it("a trunk call whose packed frames run past their end is refused whole: its control records are not applied", () => {
    const m9 = mac("02:00:00:00:00:09");
    const refused = (cells[1] as Cell).receive({
      generation: GENERATION, from: 0, epoch: 1, controlFrom: 1000, frameCount: 1, frames: hex("00 00 00 00 40 ff"),
      control: [{ type: "routes-reset", epoch: 1 }, { type: "mac-route", route: { mac: m9, vlan: 0xffff, seq: 9, kind: "static", origin: 0 } }],
    });
    expect(refused.ok ? "ok" : refused.error.code).toBe("malformed-frames");
    expect((cells[1] as Cell).routes.owner(m9, 0)).toBeUndefined();
  });

  it("a MAC learned behind a bridge port moves between cells by sequence number", () => {
    const X = 0x0a;
    attach(1, 16777218, "bridge");
    attach(2, 33554434, "bridge");
    settle();
    send(16777218, frame(`${BCAST} ${M(X)} 08 06`));
    const xKey = mac(M(X).replace(/ /g, ":"));
    expect((cells[0] as Cell).routes.route(xKey, 0)).toMatchObject({ origin: 1, seq: 0 });
    send(1, frame(`${M(X)} ${M(1)} ${IPV4}`));
    expect([received(16777218), received(33554434)]).toEqual([1, 1]); // the bridge on 2 got only the broadcast
    // X shows up behind the bridge on cell 2: it announces seq 1, every cell follows, cell 1 forgets its entry.
    send(33554434, frame(`${BCAST} ${M(X)} 08 06`));
    for (const cell of [0, 1]) expect((cells[cell] as Cell).routes.route(xKey, 0)).toMatchObject({ origin: 2, seq: 1 });
    expect((switches[1] as SegmentSwitch).fdbSummary().entries.some((entry) => entry.mac === "02:00:00:00:00:0a")).toBe(false);
    send(1, frame(`${M(X)} ${M(1)} ${IPV4}`));
    // The bridge on 1 got X's second broadcast only; the unicast went to cell 2 alone.
    expect([received(16777218), received(33554434)]).toEqual([2, 2]);
    expect(trunk(0, 1).state.counters.txFrames).toBe(1);
    expect(trunk(0, 2).state.counters.txFrames).toBe(1);
  });

  it("known unicast from a trunk to a MAC routed to a third cell is dropped, never forwarded (stale route)", () => {
    const sw = switches[1] as SegmentSwitch;
    sw.trunkReceive(trunk(1, 0), [{ flags: 0, frame: frame(`${M(3)} ${M(1)} ${IPV4}`) }]);
    sw.flush();
    expect(trunk(1, 0).state.counters.drops[DropReason.NoReceiver]).toBe(1);
    expect(trunk(1, 2).state.counters.txFrames).toBe(0);
  });

  it("a monitor sees frames between two other cells exactly once", () => {
    attach(2, 33554434, "monitor");
    settle();
    send(1, frame(`${M(2)} ${M(1)} ${IPV4}`));
    send(16777217, frame(`${BCAST} ${M(2)} 08 06`));
    expect(received(33554434)).toBe(2);
    expect(received(33554433)).toBe(1);
  });

  it("a reset cell's routes are withdrawn when its new epoch is seen; a full announce restores them", () => {
    const m2 = mac(M(2).replace(/ /g, ":"));
    expect((cells[0] as Cell).routes.owner(m2, 0)).toBe(1);
    // Cell 1 restarts with a new epoch and no ports (its sockets were closed).
    makeCell(1, 2);
    for (const peer of [0, 2]) (cells[1] as Cell).addPeer(peer);
    settle();
    expect((cells[0] as Cell).routes.owner(m2, 0)).toBeUndefined();
    expect((cells[2] as Cell).routes.owner(m2, 0)).toBeUndefined();
    // Its port resumes there and claims the MAC again (seq 2): everyone follows.
    attach(1, 16777217, "member", [2]);
    (cells[1] as Cell).claimStatic(m2, 2);
    settle();
    expect((cells[0] as Cell).routes.owner(m2, 0)).toBe(1);
    send(1, frame(`${M(2)} ${M(1)} ${IPV4}`));
    expect(received(16777217)).toBe(1);
  });

  it("a resume on another cell moves a static MAC: the old cell is told to close its port", () => {
    const m2 = mac(M(2).replace(/ /g, ":"));
    (cells[2] as Cell).claimStatic(m2, 2);
    settle();
    expect(lost).toEqual([m2]);
    expect((cells[0] as Cell).routes.owner(m2, 0)).toBe(2);
  });
});

describe("trunk flow control", () => {
  it("counts frames past the grant as backlog and drops mirror copies first", () => {
    const cell = cells[0] as Cell;
    const outbox = cell.outbox(1);
    if (outbox === undefined) throw new Error("no outbox");
    outbox.completed({ epoch: 1, controlAck: 0, grantBytes: 200 });
    expect(outbox.carry(5, TrunkFrameFlag.MirrorOnly, new Uint8Array(100))).toBeNull();
    expect(outbox.carry(6, 0, new Uint8Array(100))).toBeNull();
    expect(outbox.carry(6, 0, new Uint8Array(100))).toBeNull(); // the mirror copy made room
    expect(outbox.carry(6, 0, new Uint8Array(100))).toBe("backlog");
    expect(outbox.counters.backlogDrops).toBe(2);
  });

  it("sends one call at a time; a failed call loses its frames (counted) and keeps its control records", () => {
    attach(0, 1, "member", [1]);
    const cell = cells[0] as Cell;
    const first = cell.take();
    expect(first.map((call) => call.peer)).toEqual([1, 2]);
    expect(cell.take()).toEqual([]);
    cell.failed(1, false);
    const reply = (cells[2] as Cell).receive((first[1] as (typeof first)[number]).batch);
    if (!reply.ok) throw new Error(reply.error.message);
    cell.completed(2, reply.value);
    // The retry waits for the backoff (100 ms after the first failure), so a failing peer is not hammered.
    expect(cell.take()).toEqual([]);
    expect(cell.nextRetry()).toBe(now + MIN_RETRY_BACKOFF_MS);
    now += MIN_RETRY_BACKOFF_MS;
    const again = cell.take().find((call) => call.peer === 1);
    // The first call to a peer is a full announce (it replaced the records queued before it), resent after the failure.
    expect(again?.batch.control.map((record) => record.type)).toEqual(["routes-reset", "cell-filter", "mac-route"]);
    expect(again?.batch.controlFrom).toBe(first[0]?.batch.controlFrom);
    expect(cell.outbox(1)?.counters.callFailures).toBe(1);
  });

  it("the backoff doubles per failure up to 10 s and a success resets it", () => {
    attach(0, 1, "member", [1]);
    const cell = cells[0] as Cell;
    const outbox = cell.outbox(1);
    if (outbox === undefined) throw new Error("no outbox");
    const waits: number[] = [];
    const timed: boolean[] = [];
    for (let failure = 0; failure < 12; failure++) {
      expect(outbox.take(now)).not.toBeNull();
      outbox.failed(false, now);
      waits.push(outbox.nextCallAt - now);
      timed.push(outbox.retryDue !== null);
      now = outbox.nextCallAt;
    }
    expect(waits).toEqual([100, 200, 400, 800, 1600, 3200, 6400, ...Array<number>(5).fill(MAX_RETRY_BACKOFF_MS)]);
    // After MAX_TIMED_RETRIES failures at the longest backoff, no timer: the next event retries (the cell may hibernate).
    expect(timed).toEqual([...Array<boolean>(7 + MAX_TIMED_RETRIES).fill(true), false, false]);
    expect(outbox.take(now)).not.toBeNull();
    outbox.completed({ epoch: 1, controlAck: 0, grantBytes: 1 << 20 });
    expect(outbox.retryDue).toBeNull();
  });

  it("a call refused whole (the peer is not a cell yet) is not retried until that peer calls: no call loop", () => {
    attach(0, 1, "member", [1]);
    const cell = cells[0] as Cell;
    const first = cell.take();
    expect(first.map((call) => call.peer)).toEqual([1, 2]);
    cell.refused(1);
    const reply = (cells[2] as Cell).receive((first[1] as (typeof first)[number]).batch);
    if (!reply.ok) throw new Error(reply.error.message);
    cell.completed(2, reply.value);
    // Frames and control keep arriving; still nothing goes to cell 1, whatever the time.
    cell.syncStatics(new Set([mac("02:00:00:00:00:09")]), 3);
    now += 60_000;
    expect(cell.take().map((call) => call.peer)).toEqual([2]);
    expect(cell.nextRetry()).toBeNull();
    expect(cell.outbox(1)?.counters.refusals).toBe(1);
    // Cell 1 is adopted and calls (its HELLO's pump): the queued control goes to it again.
    const fromPeer1 = (cells[1] as Cell).take().find((call) => call.peer === 0);
    if (fromPeer1 === undefined) throw new Error("cell 1 made no call to cell 0");
    expect(cell.receive(fromPeer1.batch).ok).toBe(true);
    const resent = cell.take().find((call) => call.peer === 1);
    expect(resent?.batch.control.map((record) => record.type)).toContain("mac-route");
  });

  it("a peer not made yet (region placement) gets no call, and no refusal is counted, until the home says it exists", () => {
    const cell = cells[0] as Cell;
    cell.peerNotYet(2);
    attach(0, 1, "member", [1]);
    expect(cell.take().map((call) => call.peer)).toEqual([1]);
    now += 60_000;
    expect(cell.take()).toEqual([]);
    expect(cell.nextRetry()).toBeNull();
    expect(cell.outbox(2)?.counters).toMatchObject({ calls: 0, refusals: 0, callFailures: 0 });
    cell.peerExists(2);
    // Its first call is the full announce: what cell 0 has for it.
    expect(cell.take().find((call) => call.peer === 2)?.batch.control.map((record) => record.type)).toEqual(["routes-reset", "cell-filter", "mac-route"]);
  });

  it("syncStatics announces new registered MACs and withdraws gone ones, once each", () => {
    const cell = cells[0] as Cell;
    const m1 = mac("02:00:00:00:00:01");
    cell.syncStatics(new Set([m1]), 5);
    cell.syncStatics(new Set([m1]), 6);
    settle();
    expect((cells[1] as Cell).routes.route(m1, 0xffff)).toMatchObject({ origin: 0, seq: 5 });
    cell.syncStatics(new Set(), 7);
    settle();
    expect((cells[1] as Cell).routes.owner(m1, 0)).toBeUndefined();
    expect((cells[2] as Cell).routes.owner(m1, 0)).toBeUndefined();
  });

  it("the trunk port id never meets a client port id", () => {
    expect(trunk(0, 1).id).toBe(TRUNK_PORT_BASE + 1);
    expect(TRUNK_PORT_BASE).toBeGreaterThan(254 * 2 ** 24 + 2 ** 24 - 1);
  });

  it("a cell's filter is the union of its client ports", () => {
    attach(0, 1, "member", [1]);
    attach(0, 2, "monitor");
    expect(aggregateFilter((switches[0] as SegmentSwitch).allPorts())).toEqual({
      ports: true, bridges: false, promiscuous: false, allMulticast: false, multicast: [], monitors: true,
    });
  });
});
