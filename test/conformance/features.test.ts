// docs/protocol.md §10 (feature bits): what LargeFrames and Vlan change, against the real segment.
import { describe, expect, it } from "vitest";
import { BROADCAST, freshSegment, F, frame, mac, Peer, portView, Status, taggedFrame } from "./peer.ts";


const JUMBO = { maxFrameSize: 9000, rxQueueBytes: 1 << 20 };


/** Sends one frame from `sender` and returns its completion status. */
async function statusOf(sender: Peer, f: Uint8Array, id = 0): Promise<number> {
  sender.send([{ type: "tx", id, flags: 0, frame: f }]);
  return (await sender.completions(1))[0]?.status as number;
}

describe("§10 LargeFrames", () => {
  it("§10 without LargeFrames a port's maxFrameSize is min(segment, 1514); with it, the segment's", async () => {
    const segment = await freshSegment(JUMBO);
    const plain = await Peer.join(segment);
    const large = await Peer.join(segment, { features: F.LargeFrames });
    expect([plain.welcome.maxFrameSize, large.welcome.maxFrameSize]).toEqual([1514, 9000]);
    const small = await freshSegment({ maxFrameSize: 1000 });
    const below = await Peer.join(small);
    expect(below.welcome.maxFrameSize).toBe(1000);
    for (const p of [plain.peer, large.peer, below.peer]) p.close();
  });

  it("§10 a port without LargeFrames may not send a frame over 1514 bytes: oversize", async () => {
    const segment = await freshSegment(JUMBO);
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b } = await Peer.join(segment, { macs: [mac(2)], features: F.LargeFrames });
    await b.post(4, 9018);
    expect(await statusOf(a, frame(mac(2), mac(1), 0, 1515))).toBe(Status.Oversize);
    a.close();
    b.close();
  });

  it("§10 a jumbo frame is delivered to a LargeFrames port, and dropped as rx-buffer-too-small on a port without it", async () => {
    const segment = await freshSegment(JUMBO);
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: F.LargeFrames });
    const { peer: large } = await Peer.join(segment, { macs: [mac(2)], features: F.LargeFrames });
    const { peer: plain, welcome } = await Peer.join(segment, { macs: [mac(3)] });
    await large.post(4, 9018);
    await plain.post(4, 9018);
    await plain.settle();
    expect(await statusOf(a, frame(BROADCAST, mac(1), 7, 4000))).toBe(Status.Ok);
    expect((await large.next("rx")).frame.length).toBe(4000);
    await plain.settle();
    expect(plain.take("rx")).toEqual([]);
    expect((await portView(segment, welcome.portId)).counters.drops["rx-buffer-too-small"]).toBe(1);
    for (const p of [a, large, plain]) p.close();
  });
});

describe("§10 Vlan", () => {
  it("§10 without Vlan a tagged TX completes as malformed", async () => {
    const segment = await freshSegment({});
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)] });
    const { peer: b } = await Peer.join(segment, { macs: [mac(2)], features: F.Vlan });
    await b.post(4);
    expect(await statusOf(a, taggedFrame(mac(2), mac(1), 10))).toBe(Status.Malformed);
    a.close();
    b.close();
  });

  it("§10 a tagged frame reaches Vlan ports only, and may be maxFrameSize + 4 bytes", async () => {
    const segment = await freshSegment({});
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: F.Vlan });
    const { peer: tagged } = await Peer.join(segment, { macs: [mac(2)], features: F.Vlan });
    const { peer: plain } = await Peer.join(segment, { macs: [mac(3)] });
    await tagged.post(4);
    await plain.post(4);
    await plain.settle();
    expect(await statusOf(a, taggedFrame(BROADCAST, mac(1), 10, 5, 1518))).toBe(Status.Ok);
    const rx = await tagged.next("rx");
    expect([rx.frame.length, rx.frame[12], rx.frame[13]]).toEqual([1518, 0x81, 0x00]);
    await plain.settle();
    expect(plain.take("rx")).toEqual([]);
    // Untagged frames still reach both.
    expect(await statusOf(a, frame(BROADCAST, mac(1), 6), 1)).toBe(Status.Ok);
    expect((await plain.next("rx")).frame[14]).toBe(6);
    for (const p of [a, tagged, plain]) p.close();
  });
});
