// docs/protocol.md §12 (raw mode: one frame per message, no handshake), against the real segment.
import { describe, expect, it } from "vitest";
import { BROADCAST, describeSegment, eventually, freshSegment, frame, joinToken, mac, Peer, portView } from "./peer.ts";


/** A descriptor port 0x01 with credits and a raw port on a fresh segment; the raw port's id from the ports list. */
async function rawAndDescriptor(): Promise<{ segment: string; d: Peer; raw: Peer; rawId: number }> {
  const segment = await freshSegment();
  const { peer: d, welcome } = await Peer.join(segment, { macs: [mac(1)], features: 0x01 });
  await d.post(32);
  const raw = await Peer.open(segment, { descriptor: false });
  const listed = (await describeSegment(segment)).ports.find((port) => port.mode === "raw" && port.portId !== welcome.portId);
  return { segment, d, raw, rawId: listed?.portId as number };
}


describe("§12 raw mode", () => {
  it("§12 each binary message is one frame, both ways, from the first message on", async () => {
    const { d, raw } = await rawAndDescriptor();
    raw.sendBytes(frame(BROADCAST, mac(2), 1));
    expect((await d.next("rx")).frame).toEqual(frame(BROADCAST, mac(2), 1));
    d.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(2), mac(1), 2, 100) }]);
    expect(await raw.rawFrames(1)).toEqual([frame(mac(2), mac(1), 2, 100)]);
    d.close();
    raw.close();
  });

  it("§12 the port owns the first source MAC it sends from; other sources are dropped as spoofed-source", async () => {
    const { segment, d, raw, rawId } = await rawAndDescriptor();
    raw.sendBytes(frame(BROADCAST, mac(2), 1));
    await d.next("rx");
    raw.sendBytes(frame(BROADCAST, mac(3), 2));
    raw.sendBytes(frame(BROADCAST, mac(2), 3));
    expect((await d.next("rx")).frame[14]).toBe(3);
    expect((await portView(segment, rawId)).counters.drops["spoofed-source"]).toBe(1);
    d.close();
    raw.close();
  });

  it("§12 a raw bridge port (joined with ?kind=bridge and a bridge token) may send from several sources", async () => {
    const segment = await freshSegment();
    const { peer: d } = await Peer.join(segment, { macs: [mac(1)] });
    await d.post(8);
    const raw = await Peer.open(segment, { descriptor: false, query: "?kind=bridge", token: await joinToken(segment, "bridge") });
    raw.sendBytes(frame(mac(1), mac(0x21), 1));
    raw.sendBytes(frame(mac(1), mac(0x22), 2));
    expect((await d.collect("rx", 2)).map((r) => r.frame[14])).toEqual([1, 2]);
    d.close();
    raw.close();
  });

  it("§12 a frame under 14 bytes or over maxFrameSize is dropped and counted; the socket stays open", async () => {
    const { segment, d, raw, rawId } = await rawAndDescriptor();
    raw.sendBytes(frame(BROADCAST, mac(2), 1));
    await d.next("rx");
    raw.sendBytes(new Uint8Array(13));
    raw.sendBytes(frame(BROADCAST, mac(2), 2, 1515));
    raw.sendBytes(frame(BROADCAST, mac(2), 3));
    expect((await d.next("rx")).frame[14]).toBe(3);
    const drops = (await portView(segment, rawId)).counters.drops;
    expect([drops.runt, drops.oversize]).toEqual([1, 1]);
    expect(raw.closed).toBeUndefined();
    d.close();
    raw.close();
  });

  it("§12 the text keepalive ping is answered pong; any other text closes with 4000", async () => {
    const { d, raw } = await rawAndDescriptor();
    raw.sendBytes("ping");
    await raw.until(() => (raw.texts.includes("pong") ? true : undefined), "the text pong");
    raw.sendBytes("hello");
    expect((await raw.closedWith()).code).toBe(4000);
    d.close();
  });

  it("§12/§8.4 a raw port's tx counts the frames handed to its socket", async () => {
    const { segment, d, raw, rawId } = await rawAndDescriptor();
    raw.sendBytes(frame(BROADCAST, mac(2), 0));
    await d.next("rx");
    d.send([0, 1, 2].map((id) => ({ type: "tx" as const, id, flags: 0, frame: frame(mac(2), mac(1), id) })));
    await raw.rawFrames(3);
    await d.settle();
    const view = await eventually(() => portView(segment, rawId), (v) => v.counters.txFrames >= 3);
    expect([view.counters.txFrames, view.counters.txBytes]).toEqual([3, 3 * 64]);
    d.close();
    raw.close();
  });
});
