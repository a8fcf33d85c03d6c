// What docs/protocol.md says about fair sharing and MAC ownership: §6.4 statuses rate-limited (8),
// storm-control (16) and spoofed-source (4) for a bridge port, and the §11.1 MAC rules for HELLO
// (learned behind a bridge port, a MAC bound by a join token). Segment settings from docs/api.md.
import { describe, expect, it } from "vitest";
import { BROADCAST, freshSegment, frame, hello, joinToken, mac, Peer, Status } from "./peer.ts";

/** Sends `frames` from `peer` as one message (ids from 0) and returns the completion runs as [firstId, count, status]. */
async function completionsOf(peer: Peer, frames: Uint8Array[]): Promise<Array<[number, number, number]>> {
  peer.send(frames.map((f, id) => ({ type: "tx" as const, id, flags: 0, frame: f })));
  return (await peer.completions(frames.length)).map((r) => [r.firstId, r.count, r.status]);
}

const COALESCED = 0x01;

describe("§6.4 rate-limited (8) and storm-control (16)", () => {
  it("§6.4 past rateLimitFramesPerSecond a TX completes rate-limited (8)", async () => {
    const segment = await freshSegment({ rateLimitFramesPerSecond: 10 });
    const { peer: a } = await Peer.join(segment, { macs: [mac(0x601)], features: COALESCED });
    const { peer: b } = await Peer.join(segment, { macs: [mac(0x602)] });
    await b.post(64);
    expect(await completionsOf(a, Array.from({ length: 12 }, () => frame(mac(0x602), mac(0x601))))).toEqual([[0, 10, Status.Ok], [10, 2, Status.RateLimited]]);
  });

  it("§6.4 past stormControlFramesPerSecond a flooded frame completes storm-control (16); known unicast is not counted", async () => {
    const segment = await freshSegment({ stormControlFramesPerSecond: 1 });
    const { peer: a } = await Peer.join(segment, { macs: [mac(0x611)], features: COALESCED });
    const { peer: b } = await Peer.join(segment, { macs: [mac(0x612)] });
    await b.post(64);
    const frames = [frame(BROADCAST, mac(0x611)), frame(BROADCAST, mac(0x611)), frame(mac(0x612), mac(0x611))];
    expect(await completionsOf(a, frames)).toEqual([[0, 1, Status.Ok], [1, 1, Status.StormControl], [2, 1, Status.Ok]]);
  });

  it("§6.4 a port with more than 10,000 frames refused within a second is closed 4029", async () => {
    const segment = await freshSegment({ stormControlFramesPerSecond: 1 });
    const { peer } = await Peer.join(segment, { macs: [mac(0x661)], features: COALESCED, txWindow: 1024 });
    const batch = Array.from({ length: 1024 }, (_, id) => ({ type: "tx" as const, id, flags: 0, frame: frame(BROADCAST, mac(0x661)) }));
    const completed = (): number => peer.records.reduce((n, r) => n + (r.type === "tx-complete" ? r.count : 0), 0);
    let lastCompleted = 0;
    // 1 frame passes, then 10 × 1,024 − 1 = 10,239 are refused: the tenth message crosses 10,000.
    for (let message = 0; message < 10 && peer.closed === undefined; message++) {
      peer.send(batch);
      await peer.until(() => (peer.closed !== undefined || completed() >= 1024 ? true : undefined), "completions or a close");
      lastCompleted = completed();
      peer.take("tx-complete");
    }
    expect(await peer.closedWith()).toMatchObject({ code: 4029 });
    // The message that crossed the bound was still completed in full before the close.
    expect(lastCompleted).toBe(1024);
  });
});

describe("§6.4 spoofed-source (4) from a bridge port", () => {
  it("§6.4 a bridge port sending from a MAC another port registered completes spoofed-source", async () => {
    const segment = await freshSegment();
    await Peer.join(segment, { macs: [mac(0x621)] });
    const token = await joinToken(segment, "bridge");
    const { peer: bridge } = await Peer.join(segment, { portKind: "bridge", features: COALESCED }, { query: "?kind=bridge", token });
    expect(await completionsOf(bridge, [frame(BROADCAST, mac(0x621)), frame(BROADCAST, mac(0x629))])).toEqual([[0, 1, Status.SpoofedSource], [1, 1, Status.Ok]]);
  });
});

describe("§11.1 MAC ownership at HELLO", () => {
  it("§11.1 a MAC learned behind a bridge port is owned by it: a member asking for it is refused 4009", async () => {
    const segment = await freshSegment();
    const token = await joinToken(segment, "bridge");
    const { peer: bridge } = await Peer.join(segment, { portKind: "bridge", features: COALESCED }, { query: "?kind=bridge", token });
    await completionsOf(bridge, [frame(BROADCAST, mac(0x631))]);
    const member = await Peer.open(segment);
    member.send([hello({ macs: [mac(0x631)] })]);
    expect(await member.next("refuse")).toMatchObject({ code: 4009 });
  });

  it("§11.1 the holder of a join token bound to a MAC takes it from a port without that binding, which is closed 4009", async () => {
    const segment = await freshSegment();
    const { peer: squatter } = await Peer.join(segment, { macs: [mac(0x641)] });
    const token = await joinToken(segment, "member", ["02:00:00:00:06:41"]);
    const { welcome } = await Peer.join(segment, { macs: [mac(0x641)] }, { token });
    expect(welcome.macs).toEqual([mac(0x641)]);
    expect(await squatter.closedWith()).toMatchObject({ code: 4009, reason: expect.stringContaining("join token") });
  });

  it("§11.1 a port bound to the MAC by its own token keeps it: a second holder is refused 4009", async () => {
    const segment = await freshSegment();
    const token = await joinToken(segment, "member", ["02:00:00:00:06:51"]);
    const { peer: first } = await Peer.join(segment, { macs: [mac(0x651)] }, { token });
    const second = await Peer.open(segment, { token });
    second.send([hello({ macs: [mac(0x651)] })]);
    expect(await second.next("refuse")).toMatchObject({ code: 4009 });
    expect(first.closed).toBeUndefined();
  });
});
