// docs/protocol.md §6 (transmit: descriptors, completions, the window, status codes, offloads),
// against the real segment. Every test gets its own segment, so other ports cannot change what it sees.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { BROADCAST, completedIds, eventually, freshSegment, describeSegment, F, frame, hexBytes, joinToken, mac, Peer, portView, Status } from "./peer.ts";


/** Two open ports A (0x01) and B (0x02) on a fresh segment, B with 64 credits. */
async function pair(aFeatures = 0, bFeatures = 0, aWindow = 64): Promise<{ segment: string; a: Peer; b: Peer }> {
  const segment = await freshSegment();
  const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: aFeatures, txWindow: aWindow });
  const { peer: b } = await Peer.join(segment, { macs: [mac(2)], features: bFeatures });
  await b.post(64);
  return { segment, a, b };
}

describe("§6.3 completions", () => {
  it("§6.3 every TX id gets exactly one completion, in the order the TX records arrived", async () => {
    const { a, b } = await pair();
    const ids = [7, 3, 65535, 0, 12];
    // Two ok, then a spoofed source, a runt and an ok: each id is answered once with its own status.
    const frames = [frame(mac(2), mac(1)), frame(BROADCAST, mac(1)), frame(mac(2), mac(9)), new Uint8Array(10), frame(mac(2), mac(1))];
    a.send(ids.map((id, i) => ({ type: "tx", id, flags: 0, frame: frames[i] as Uint8Array })));
    const runs = await a.completions(ids.length);
    expect(completedIds(runs)).toEqual([[7, 0], [3, 0], [65535, Status.SpoofedSource], [0, Status.Runt], [12, 0]]);
    a.send([{ type: "ping", seq: 1, timestamp: 0 }]);
    await a.next("pong");
    expect(a.take("tx-complete")).toEqual([]);
    a.close();
    b.close();
  });

  it("§6.3 rule 2: without LazyCompletions the completions come in the next message, right after the batch", async () => {
    const { a, b } = await pair();
    a.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(2), mac(1)) }]);
    await a.completions(1);
    expect(a.messages).toHaveLength(2); // WELCOME, then the completion
    expect(a.messages[1]?.records?.map((r) => r.type)).toEqual(["tx-complete"]);
    a.close();
    b.close();
  });

  it("§6.3 rule 5: without CoalescedCompletions every run has count 1", async () => {
    const { a, b } = await pair();
    a.send([0, 1, 2, 3].map((id) => ({ type: "tx", id, flags: 0, frame: frame(mac(2), mac(1)) })));
    const runs = await a.completions(4);
    expect(runs.map((r) => [r.firstId, r.count, r.status])).toEqual([[0, 1, 0], [1, 1, 0], [2, 1, 0], [3, 1, 0]]);
    a.close();
    b.close();
  });

  it("§6.3 rule 5: with CoalescedCompletions all-ok-but-one is an ok-run, a drop-run and an ok-run", async () => {
    const { a, b } = await pair(F.Coalesced);
    const ids = [65534, 65535, 0, 1, 2, 3, 4];
    a.send(ids.map((id) => ({ type: "tx", id, flags: 0, frame: id === 1 ? frame(mac(2), mac(9)) : frame(mac(2), mac(1)) })));
    const runs = await a.completions(ids.length);
    expect(runs.map((r) => [r.firstId, r.count, r.status])).toEqual([[65534, 3, 0], [1, 1, Status.SpoofedSource], [2, 3, 0]]);
    a.close();
    b.close();
  });

  it("§6.3 rule 3: a message with more TX records than the window closes with 4003", async () => {
    const { a, b } = await pair(0, 0, 4);
    a.send([0, 1, 2, 3, 4].map((id) => ({ type: "tx", id, flags: 0, frame: frame(mac(2), mac(1)) })));
    expect((await a.closedWith()).code).toBe(4003);
    b.close();
  });

  it("§6.3 rule 3: the same id twice in one message closes with 4003", async () => {
    const { a, b } = await pair();
    a.send([{ type: "tx", id: 5, flags: 0, frame: frame(mac(2), mac(1)) }, { type: "tx", id: 5, flags: 0, frame: frame(mac(2), mac(1)) }]);
    expect((await a.closedWith()).code).toBe(4003);
    b.close();
  });

  it("§6.3 rule 1: ok means switched; a receiver's egress drop is counted on the receiver, never reported to the sender", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b, welcome } = await Peer.join(segment, { macs: [mac(2)] });
    b.send([{ type: "rx-post", count: 4, bufferSize: 60 }]);
    await b.settle();
    a.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(2), mac(1), 0, 100) }]);
    expect((await a.completions(1))[0]?.status).toBe(Status.Ok);
    expect((await portView(segment, welcome.portId)).counters.drops["rx-buffer-too-small"]).toBe(1);
    a.close();
    b.close();
  });
});

describe("§6.4 egress drops", () => {
  it("§6.4 segment-budget (12): frames past the segment-wide queue budget are dropped on the receiving port", async () => {
    // Each port may queue 2 frames of 64 bytes (136 bytes); the whole segment may queue no more than that.
    const segment = await freshSegment({ maxFrameSize: 64, rxQueueBytes: 136, segmentQueueBytes: 136 });
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: F.Coalesced });
    const receivers = await Promise.all([2, 3].map((n) => Peer.join(segment, { macs: [mac(n)], features: F.RxQueue, rxQueue: 8 })));
    a.send([0, 1].map((id) => ({ type: "tx", id, flags: 0, frame: frame(BROADCAST, mac(1), id) })));
    expect(completedIds(await a.completions(2))).toEqual([[0, 0], [1, 0]]);
    const views = await Promise.all(receivers.map(({ welcome }) => portView(segment, welcome.portId)));
    // 4 copies: 2 fit the budget and are queued, 2 are dropped as segment-budget.
    expect(views.reduce((n, v) => n + v.queuedFrames, 0)).toBe(2);
    expect(views.reduce((n, v) => n + (v.counters.drops["segment-budget"] ?? 0), 0)).toBe(2);
    a.close();
    for (const { peer } of receivers) peer.close();
  });
});

describe("§6.3 rule 2a: LazyCompletions", () => {
  it("§6.3 rule 2a a ping between two ports that both negotiated LazyCompletions costs 4 messages", async () => {
    const { a, b } = await pair(F.Lazy | F.Coalesced, F.Lazy | F.Coalesced);
    await a.post(64);
    // Both posts are answered (they carry no TX): a ping round trip on each settles what was sent before.
    for (const peer of [a, b]) {
      peer.send([{ type: "ping", seq: 0, timestamp: 0 }]);
      await peer.next("pong");
    }
    const [aBefore, bBefore] = [a.messages.length, b.messages.length];
    a.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(2), mac(1), 1) }]); // 1: request up
    await b.next("rx"); // 2: request down, to B only
    b.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(1), mac(2), 2) }]); // 3: reply up
    await a.next("rx"); // 4: reply down, carrying A's completion
    expect(a.messages.slice(aBefore).map((m) => m.records?.map((r) => r.type))).toEqual([["tx-complete", "rx"]]);
    expect(b.messages.slice(bBefore).map((m) => m.records?.map((r) => r.type))).toEqual([["rx"]]);
    // B's completion is held until B sends a message without TX: a PING gets it with the PONG.
    b.send([{ type: "ping", seq: 1, timestamp: 0 }]);
    await b.next("pong");
    expect(b.messages.slice(bBefore + 1).map((m) => m.records?.map((r) => r.type).sort())).toEqual([["pong", "tx-complete"]]);
    expect(a.messages.length - aBefore).toBe(1);
    a.close();
    b.close();
  });

  it("§6.3 rule 2a held completions are flushed in a message of their own when they reach half the window", async () => {
    const { a, b } = await pair(F.Lazy | F.Coalesced, 0, 8);
    for (let id = 0; id < 3; id++) {
      a.send([{ type: "tx", id, flags: 0, frame: frame(mac(2), mac(1), id) }]);
      await b.next("rx");
    }
    expect(a.take("tx-complete")).toEqual([]); // 3 held: below half of 8
    a.send([{ type: "tx", id: 3, flags: 0, frame: frame(mac(2), mac(1), 3) }]);
    const runs = await a.completions(4);
    expect(completedIds(runs)).toEqual([[0, 0], [1, 0], [2, 0], [3, 0]]);
    expect(a.messages.at(-1)?.records?.every((r) => r.type === "tx-complete")).toBe(true);
    a.close();
    b.close();
  });

  it("§6.3 rule 2a every id still gets exactly one completion: the PING flushes what is held, once", async () => {
    const { a, b } = await pair(F.Lazy, 0, 64);
    a.send([0, 1, 2].map((id) => ({ type: "tx", id, flags: 0, frame: frame(mac(2), mac(1), id) })));
    await b.collect("rx", 3);
    a.send([{ type: "ping", seq: 5, timestamp: 0 }]);
    await a.next("pong");
    a.send([{ type: "ping", seq: 6, timestamp: 0 }]);
    await a.next("pong");
    expect(completedIds(a.take("tx-complete"))).toEqual([[0, 0], [1, 0], [2, 0]]);
    a.close();
    b.close();
  });
});

describe("§6.4 status codes", () => {
  /** The status of one TX from a member with MAC 0x01 on a segment where a member 0x02 listens. */
  async function statusOf(tx: { frame: Uint8Array; flags?: number }, features = 0): Promise<number> {
    const { a, b } = await pair(features);
    a.send([{ type: "tx", id: 0, flags: tx.flags ?? 0, frame: tx.frame }]);
    const status = (await a.completions(1))[0]?.status as number;
    a.close();
    b.close();
    return status;
  }

  it("§6.4 runt (1): shorter than 14 bytes", async () => {
    expect(await statusOf({ frame: frame(mac(2), mac(1)).subarray(0, 13) })).toBe(Status.Runt);
  });
  it("§6.4 oversize (2): longer than maxFrameSize", async () => {
    expect(await statusOf({ frame: frame(mac(2), mac(1), 0, 1515) })).toBe(Status.Oversize);
  });
  it("§6.4 multicast-source (3): the source MAC has the group bit set", async () => {
    expect(await statusOf({ frame: frame(mac(2), 0x01_00_5e_00_00_01) })).toBe(Status.MulticastSource);
  });
  it("§6.4 spoofed-source (4): a member sends from a MAC it does not own", async () => {
    expect(await statusOf({ frame: frame(mac(2), mac(3)) })).toBe(Status.SpoofedSource);
  });
  it("§6.4 spoofed-source (4): a member sends from 00:00:00:00:00:00", async () => {
    expect(await statusOf({ frame: frame(mac(2), 0) })).toBe(Status.SpoofedSource);
  });
  it("§6.4 local (6): unicast to a MAC behind the sending port itself", async () => {
    expect(await statusOf({ frame: frame(mac(1), mac(1)) })).toBe(Status.Local);
  });
  it("§6.4 no-receiver (7): unknown unicast with no bridge or promiscuous port", async () => {
    expect(await statusOf({ frame: frame(mac(7), mac(1)) })).toBe(Status.NoReceiver);
  });
  it("§6.1/§6.4 malformed (14): a TX with an unknown flag bit", async () => {
    expect(await statusOf({ frame: frame(mac(2), mac(1)), flags: 0x80 })).toBe(Status.Malformed);
  });
  it("§6.1 malformed (14): flag VnetHeader without Gso granted", async () => {
    expect(await statusOf({ frame: new Uint8Array([...new Array(10).fill(0), ...frame(mac(2), mac(1))]), flags: 0x01 })).toBe(Status.Malformed);
  });

  it("§6.4 monitor-port (5): a monitor's TX", async () => {
    const segment = await freshSegment();
    const token = await joinToken(segment, "monitor");
    const { peer: monitor } = await Peer.join(segment, { portKind: "monitor" }, { token, query: "?kind=monitor" });
    const { peer: b } = await Peer.join(segment, { macs: [mac(2)] });
    await b.post(4);
    monitor.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(2), mac(1)) }]);
    expect((await monitor.completions(1))[0]?.status).toBe(Status.MonitorPort);
    monitor.close();
    b.close();
  });

  it("§6.4 learn-limit (9): a bridge port's new source past its learned-MAC limit", async () => {
    const segment = await freshSegment({ learnLimitPerPort: 1 });
    const token = await joinToken(segment, "bridge");
    const { peer: bridge } = await Peer.join(segment, { portKind: "bridge", features: F.Coalesced }, { token, query: "?kind=bridge" });
    const { peer: b } = await Peer.join(segment, { macs: [mac(2)] });
    await b.post(4);
    bridge.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(2), mac(0x51)) }, { type: "tx", id: 1, flags: 0, frame: frame(mac(2), mac(0x52)) }]);
    expect(completedIds(await bridge.completions(2))).toEqual([[0, 0], [1, Status.LearnLimit]]);
    bridge.close();
    b.close();
  });
});

describe("§6.5 offloads", () => {
  // The document's example: a TCPv4 super-frame, 4 payload bytes, gsoSize 2, from 02:..:01 to 02:..:02.
  const EXAMPLE = hexBytes(`
    01 01 36 00 02 00 22 00 10 00
    02 00 00 00 00 02 02 00 00 00 00 01 08 00
    45 00 00 2c 00 01 40 00 40 06 26 c9 0a 00 00 01 0a 00 00 02
    30 39 14 51 00 00 00 01 00 00 00 01 50 18 ff ff 14 21 00 00
    61 62 63 64`);

  it("§6.5 rule 4: a receiver without Gso gets the example's super-frame as two 56-byte segments", async () => {
    const { a, b } = await pair(F.Gso);
    a.send([{ type: "tx", id: 5, flags: 0x01, frame: EXAMPLE }]);
    expect((await a.completions(1))[0]).toMatchObject({ firstId: 5, status: 0 });
    const rx = await b.collect("rx", 2);
    expect(rx.map((r) => r.frame.length)).toEqual([56, 56]);
    expect(rx.map((r) => r.flags & 0x04)).toEqual([0, 0]);
    const field = (f: Uint8Array, at: number, n: number): number => f.subarray(at, at + n).reduce((v, byte) => v * 256 + byte, 0);
    expect(rx.map((r) => field(r.frame, 18, 2))).toEqual([1, 2]); // IP identification
    expect(rx.map((r) => field(r.frame, 38, 4))).toEqual([1, 3]); // TCP sequence
    expect(rx.map((r) => (r.frame[47] as number) & 0x08)).toEqual([0, 0x08]); // PSH on the last only
    expect(rx.map((r) => field(r.frame, 50, 2))).toEqual([0xf5e1, 0xf3d5]); // TCP checksums
    expect(rx.map((r) => String.fromCharCode(...r.frame.subarray(54)))).toEqual(["ab", "cd"]);
    a.close();
    b.close();
  });

  it("§6.5 rule 4: a receiver with Gso gets the header and super-frame as they came, flagged VnetHeader", async () => {
    const { a, b } = await pair(F.Gso, F.Gso | F.LargeFrames);
    a.send([{ type: "tx", id: 5, flags: 0x01, frame: EXAMPLE }]);
    const [rx] = await b.collect("rx", 1);
    expect(rx?.flags).toBe(0x04);
    expect(rx?.frame).toEqual(EXAMPLE);
    a.close();
    b.close();
  });

  it("§6.5 rule 5: a super-frame counts once on the sender and once per segment delivered; header bytes never count", async () => {
    const { segment, a, b } = await pair(F.Gso);
    a.send([{ type: "tx", id: 5, flags: 0x01, frame: EXAMPLE }]);
    await a.completions(1);
    await b.collect("rx", 2);
    const ports = await Promise.all([1, 2].map(async (n) => {
      const listed = (await describeSegment(segment)).ports.find((port) => (port.macs as string[]).includes(`02:00:00:00:00:0${n}`));
      return portView(segment, listed?.portId as number);
    }));
    expect([ports[0]?.counters.rxFrames, ports[0]?.counters.rxBytes]).toEqual([1, 58]);
    expect([ports[1]?.counters.txFrames, ports[1]?.counters.txBytes]).toEqual([2, 112]);
    a.close();
    b.close();
  });

  it("§6.5 rule 6: a super-frame larger than a Gso receiver's bufferSize is dropped as rx-buffer-too-small", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: F.Gso });
    const { peer: b, welcome } = await Peer.join(segment, { macs: [mac(2)], features: F.Gso });
    b.send([{ type: "rx-post", count: 4, bufferSize: 60 }]);
    await b.settle();
    a.send([{ type: "tx", id: 5, flags: 0x01, frame: EXAMPLE }]);
    expect((await a.completions(1))[0]?.status).toBe(Status.Ok);
    expect((await portView(segment, welcome.portId)).counters.drops["rx-buffer-too-small"]).toBe(1);
    a.close();
    b.close();
  });

  it("§6.5 rule 2: a header that asks for nothing is dropped and the frame switched as plain, even to a Gso receiver", async () => {
    const { a, b } = await pair(F.Gso, F.Gso);
    const plain = frame(mac(2), mac(1), 4);
    a.send([{ type: "tx", id: 0, flags: 0x01, frame: Uint8Array.from([...new Array(10).fill(0), ...plain]) }]);
    expect((await a.completions(1))[0]?.status).toBe(Status.Ok);
    const rx = await b.next("rx");
    expect([rx.flags, rx.frame]).toEqual([0, plain]);
    a.close();
    b.close();
  });

  it("§6.5 rule 3: an unknown gsoType (3, UFO) completes as malformed", async () => {
    const { a, b } = await pair(F.Gso);
    const ufo = EXAMPLE.slice();
    ufo[1] = 3;
    a.send([{ type: "tx", id: 0, flags: 0x01, frame: ufo }]);
    expect((await a.completions(1))[0]?.status).toBe(Status.Malformed);
    a.close();
    b.close();
  });
});

describe("§6.3 rule 8: completions that wait for another cell (CellCompletions)", () => {
  /** A on cell 0 and B on cell 1 of a fresh 3-cell segment, once each cell knows the other's MAC. */
  async function acrossCells(aFeatures: number): Promise<{ segment: string; a: Peer; b: Peer }> {
    const segment = await freshSegment({ cells: 3 });
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: aFeatures }, { query: "?cell=0" });
    const { peer: b } = await Peer.join(segment, { macs: [mac(2)] }, { query: "?cell=1" });
    await b.post(64);
    // Cells 0 and 1 each hold the route of the other's MAC (cell 2 has no port yet, so it is not listed).
    const routes = async (): Promise<number[]> =>
      ((await describeSegment(segment)) as unknown as { cells?: Array<{ remoteRoutes: number }> }).cells?.map((cell) => cell.remoteRoutes) ?? [];
    expect(await eventually(routes, (held) => held.join() === "1,1")).toEqual([1, 1]);
    return { segment, a, b };
  }

  it("a TX to a port on another cell completes ok, and by then that cell has the frame", async () => {
    const { a, b } = await acrossCells(F.Coalesced | F.CellCompletions);
    a.send([{ type: "tx", id: 5, flags: 0, frame: frame(mac(2), mac(1)) }]);
    expect(completedIds(await a.completions(1))).toEqual([[5, 0]]);
    expect((await b.next("rx")).type).toBe("rx");
    a.close();
    b.close();
  });

  it("rule 3: an id that waits for another cell is still outstanding: reusing it closes 4003", async () => {
    const { segment, a, b } = await acrossCells(F.Coalesced | F.CellCompletions);
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
    // Cell 1 admits no event while blocked, so the trunk call carrying id 1 cannot return. Plain flags,
    // polled: a promise of the test's context may not be settled from the cell's.
    const stage = { blocked: false, done: false };
    const blocking = runInDurableObject(env.SEGMENTS.getByName(`${segment}#1`), (_instance, state) =>
      state.blockConcurrencyWhile(async () => {
        stage.blocked = true;
        for (let i = 0; i < 1000 && !stage.done; i++) await sleep(10);
      }));
    for (let i = 0; i < 200 && !stage.blocked; i++) await sleep(10);
    a.send([{ type: "tx", id: 1, flags: 0, frame: frame(mac(2), mac(1)) }]);
    await a.settle();
    expect(a.take("tx-complete")).toEqual([]);
    a.send([{ type: "tx", id: 1, flags: 0, frame: frame(mac(2), mac(1)) }]);
    expect((await a.closedWith()).code).toBe(4003);
    stage.done = true;
    await blocking;
    b.close();
  });
});
