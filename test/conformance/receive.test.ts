// docs/protocol.md §7 (receive: credits, queues, RX flags), against the real segment.
// Every test gets its own segment, so other ports cannot change what it sees.
import { describe, expect, it } from "vitest";
import { BROADCAST, freshSegment, describeSegment, eventually, F, frame, joinToken, mac, Peer, portView, RX } from "./peer.ts";


/** Sends `frames` from `sender` in one message and waits for their completions. */
async function sendAll(sender: Peer, frames: Uint8Array[], firstId = 0): Promise<void> {
  sender.send(frames.map((f, i) => ({ type: "tx", id: firstId + i, flags: 0, frame: f })));
  await sender.completions(frames.length);
}

describe("§7.3 credits", () => {
  it("§7.3 rule 1: the segment never sends more RX records than credits posted", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b, welcome } = await Peer.join(segment, { macs: [mac(2)] });
    await b.post(2);
    await sendAll(a, [1, 2, 3, 4, 5].map((n) => frame(mac(2), mac(1), n)));
    await b.settle();
    expect(b.take("rx").map((r) => r.frame[14])).toEqual([1, 2]);
    // Without RxQueue nothing is held: the other three were dropped and counted on B.
    expect((await portView(segment, welcome.portId)).counters.drops["rx-queue-full"]).toBe(3);
    a.close();
    b.close();
  });

  it("§7.3 rule 1: a post beyond 65,536 outstanding credits closes with 4007", async () => {
    const segment = await freshSegment();
    const { peer } = await Peer.join(segment);
    peer.send([{ type: "rx-post", count: 65_536, bufferSize: 1518 }]);
    await peer.settle();
    peer.send([{ type: "rx-post", count: 1, bufferSize: 1518 }]);
    expect((await peer.closedWith()).code).toBe(4007);
  });

  it("§7.3 rule 1: a bufferSize below 60 closes with 4007", async () => {
    const segment = await freshSegment();
    const { peer } = await Peer.join(segment);
    peer.send([{ type: "rx-post", count: 1, bufferSize: 59 }]);
    expect((await peer.closedWith()).code).toBe(4007);
  });

  it("§7.3 rules 2 and 3: the latest bufferSize applies to every credit; a larger frame is dropped as rx-buffer-too-small and takes no credit", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b, welcome } = await Peer.join(segment, { macs: [mac(2)] });
    b.send([{ type: "rx-post", count: 4, bufferSize: 2048 }, { type: "rx-post", count: 0, bufferSize: 80 }]);
    await b.settle();
    await sendAll(a, [frame(mac(2), mac(1), 1, 100), frame(mac(2), mac(1), 2, 80)]);
    await b.settle();
    expect(b.take("rx").map((r) => [r.frame[14], r.frame.length])).toEqual([[2, 80]]);
    const view = await portView(segment, welcome.portId);
    expect(view.counters.drops["rx-buffer-too-small"]).toBe(1);
    expect(view.credits).toBe(3);
    a.close();
    b.close();
  });

  it("§7.3 rules 4 and 5: without credit frames queue up to rxQueue, then tail drop; a post delivers them oldest first", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b, welcome } = await Peer.join(segment, { macs: [mac(2)], features: F.RxQueue, rxQueue: 2 });
    expect(welcome.rxQueue).toBe(2);
    await sendAll(a, [1, 2, 3].map((n) => frame(mac(2), mac(1), n)));
    const queued = await portView(segment, welcome.portId);
    expect(queued.queuedFrames).toBe(2);
    expect(queued.counters.drops["rx-queue-full"]).toBe(1);
    await b.post(8);
    expect((await b.collect("rx", 2)).map((r) => r.frame[14])).toEqual([1, 2]);
    a.close();
    b.close();
  });

  it("§7.3 rule 4: the RX queue is also bound in bytes (rxQueueBytes): past it, rx-queue-full", async () => {
    const segment = await freshSegment({ maxFrameSize: 64, rxQueueBytes: 136, segmentQueueBytes: 1 << 20 });
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b, welcome } = await Peer.join(segment, { macs: [mac(2)], features: F.RxQueue, rxQueue: 8 });
    await sendAll(a, [1, 2, 3].map((n) => frame(mac(2), mac(1), n)));
    const view = await portView(segment, welcome.portId);
    expect([view.queuedFrames, view.counters.drops["rx-queue-full"]]).toEqual([2, 1]);
    a.close();
    b.close();
  });

  it("§7.3 rule 3: a frame queued before any post is checked against the bufferSize in force when it is delivered", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b, welcome } = await Peer.join(segment, { macs: [mac(2)], features: F.RxQueue, rxQueue: 8 });
    await sendAll(a, [frame(mac(2), mac(1), 1, 100), frame(mac(2), mac(1), 2, 64)]);
    b.send([{ type: "rx-post", count: 4, bufferSize: 80 }]);
    await b.settle();
    expect(b.take("rx").map((r) => r.frame[14])).toEqual([2]);
    expect((await portView(segment, welcome.portId)).counters.drops["rx-buffer-too-small"]).toBe(1);
    a.close();
    b.close();
  });

  it("§7.3 rule 6: a new connection starts with 0 credits", async () => {
    const segment = await freshSegment();
    const { peer, welcome } = await Peer.join(segment, { macs: [mac(2)] });
    expect((await portView(segment, welcome.portId)).credits).toBe(0);
    peer.close();
  });

  it("§7.3 rule 6: frames still queued when a port closes are counted as flushed, on the segment", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b, welcome } = await Peer.join(segment, { macs: [mac(2)], features: F.RxQueue, rxQueue: 8 });
    await sendAll(a, [1, 2, 3].map((n) => frame(mac(2), mac(1), n)));
    expect((await portView(segment, welcome.portId)).queuedFrames).toBe(3);
    b.close(3000, "gone");
    await b.closedWith();
    // A segment-level counter named for flushed frames shows them once the port is gone.
    const flushedOnSegment = async (): Promise<number> =>
      Math.max(0, ...Object.entries((await describeSegment(segment)).counters).filter(([name]) => /flushed/i.test(name)).map(([, value]) => value));
    expect(await eventually(flushedOnSegment, (n) => n >= 3)).toBe(3);
    a.close();
  });
});

describe("§7.2 RX flags", () => {
  /** A sender 0x01, a receiver 0x02 (kind/token as given) with credits, on a fresh segment. */
  async function receiverOf(kind: "member" | "bridge" | "monitor" = "member"): Promise<{ segment: string; a: Peer; b: Peer }> {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const options = kind === "member" ? {} : { token: await joinToken(segment, kind), query: `?kind=${kind}` };
    const { peer: b } = await Peer.join(segment, { macs: kind === "member" ? [mac(2)] : [], portKind: kind }, options);
    await b.post(16);
    await b.settle();
    return { segment, a, b };
  }

  it("§7.2 known unicast arrives with flags 0", async () => {
    const { a, b } = await receiverOf();
    await sendAll(a, [frame(mac(2), mac(1))]);
    expect((await b.next("rx")).flags).toBe(0);
    a.close();
    b.close();
  });

  it("§7.2 a broadcast arrives flagged Flooded", async () => {
    const { a, b } = await receiverOf();
    await sendAll(a, [frame(BROADCAST, mac(1))]);
    expect((await b.next("rx")).flags).toBe(RX.Flooded);
    a.close();
    b.close();
  });

  it("§7.2 a multicast frame arrives flagged Flooded", async () => {
    const { a, b } = await receiverOf();
    b.send([{ type: "set-filter", seq: 1, promiscuous: false, allMulticast: true, multicast: [] }]);
    await b.next("ack");
    await sendAll(a, [frame(0x01_00_5e_00_00_fb, mac(1))]);
    expect((await b.next("rx")).flags).toBe(RX.Flooded);
    a.close();
    b.close();
  });

  it("§7.2 unknown unicast arrives at a bridge port flagged Flooded", async () => {
    const { a, b } = await receiverOf("bridge");
    await sendAll(a, [frame(mac(0x77), mac(1))]);
    expect((await b.next("rx")).flags).toBe(RX.Flooded);
    a.close();
    b.close();
  });

  it("§7.2 a monitor's copy arrives flagged Mirrored", async () => {
    const { segment, a, b: monitor } = await receiverOf("monitor");
    const { peer: c } = await Peer.join(segment, { macs: [mac(3)] });
    await c.post(4);
    await sendAll(a, [frame(mac(3), mac(1), 7)]);
    const copy = await monitor.next("rx");
    expect(copy.frame[14]).toBe(7);
    expect(copy.flags & RX.Mirrored).toBe(RX.Mirrored);
    a.close();
    c.close();
    monitor.close();
  });
});
