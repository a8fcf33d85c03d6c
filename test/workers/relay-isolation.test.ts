// Issue 9 inside the relay: rate limits, storm control, the raw egress bound and the rawMode
// setting, through the Worker and the Segment Durable Object as a guest meets them.
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DropReason } from "../../datapath/counters.ts";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import type { PortStats } from "../../contract/segment-api.ts";
import { ADMIN, BROADCAST, createSegment, frame, hello_, Port } from "./ports.ts";

const A = 0x02_00_00_00_09_01;
const B = 0x02_00_00_00_09_02;

async function portStats(segment: string): Promise<PortStats[]> {
  const response = await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/ports`, { headers: ADMIN });
  const body = (await response.json()) as PortStats[] | { ports: PortStats[] };
  return Array.isArray(body) ? body : body.ports;
}

/** Sends `frames` as one message of TX records (ids from 0) and returns the completion runs as [firstId, count, status]. */
async function transmit(port: Port, frames: Uint8Array[]): Promise<Array<[number, number, number]>> {
  port.send(frames.map((f, id) => ({ type: "tx" as const, id, flags: 0, frame: f })));
  const runs: Array<[number, number, number]> = [];
  let completed = 0;
  while (completed < frames.length) {
    const run = await port.next("tx-complete");
    runs.push([run.firstId, run.count, run.status]);
    completed += run.count;
  }
  return runs;
}

describe("fair sharing", () => {
  it("storm control: past stormControlFramesPerSecond a broadcast completes storm-control (16), counted on the port; unicast still flows", async () => {
    await createSegment("storm", { stormControlFramesPerSecond: 2 });
    const a = await Port.join("storm", A);
    const b = await Port.join("storm", B);
    const runs = await transmit(a, [frame(BROADCAST, A, 1), frame(BROADCAST, A, 2), frame(BROADCAST, A, 3), frame(B, A, 4)]);
    expect(runs).toEqual([[0, 2, 0], [2, 1, DropReason.StormControl], [3, 1, 0]]);
    expect((await b.rx(3)).map((f) => f[14])).toEqual([1, 2, 4]);
    const stats = (await portStats("storm")).find((p) => p.counters.rxFrames === 4);
    expect(stats?.counters.drops["storm-control"]).toBe(1);
  });

  it("rate limit: past rateLimitFramesPerSecond a TX completes rate-limited (8)", async () => {
    await createSegment("ratelimit", { rateLimitFramesPerSecond: 10 });
    const a = await Port.join("ratelimit", A);
    await Port.join("ratelimit", B);
    const runs = await transmit(a, Array.from({ length: 12 }, (_, i) => frame(B, A, i)));
    expect(runs).toEqual([[0, 10, 0], [10, 2, DropReason.RateLimited]]);
  });
});

describe("raw ports", () => {
  it("get at most rawEgressFramesPerSecond; the rest is dropped rx-queue-full on the raw port, the sender completes ok", async () => {
    await createSegment("rawbound", { rawEgressFramesPerSecond: 10 });
    const raw = await Port.open("rawbound", false);
    raw.ws.send(frame(BROADCAST, B, 0));
    const a = await Port.join("rawbound", A);
    expect(await transmit(a, Array.from({ length: 14 }, (_, i) => frame(B, A, i + 1)))).toEqual([[0, 14, 0]]);
    await raw.until(() => (raw.raw.length >= 10 ? true : undefined), "10 raw frames");
    const stats = (await portStats("rawbound")).find((p) => p.mode === "raw");
    expect(stats?.counters.txFrames).toBe(10);
    expect(stats?.counters.drops["rx-queue-full"]).toBe(4);
  });

  it("are closed with 4008 when the segment's rawMode is false; descriptor ports still join", async () => {
    await createSegment("noraw", { rawMode: false });
    const raw = await Port.open("noraw", false);
    expect(await raw.closedWith()).toEqual({ code: CloseCode.Policy, reason: expect.stringContaining("raw mode is disabled") });
    const a = await Port.join("noraw", A);
    expect(a.closed).toBeUndefined();
  });
});

describe("MAC ownership", () => {
  async function mintBound(segment: string, macs: string[]): Promise<string> {
    const response = await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/tokens`, {
      method: "POST", headers: ADMIN, body: JSON.stringify({ role: "member", macs }),
    });
    expect(response.status).toBe(201);
    return ((await response.json()) as { token: string }).token;
  }

  it("the holder of a token bound to a MAC evicts an unbound squatter (4009, the owner arrived) and gets the MAC", async () => {
    await createSegment("squat");
    const squatter = await Port.join("squat", A);
    const peer = await Port.join("squat", B);
    const token = await mintBound("squat", ["02:00:00:00:09:01"]);
    const owner = await Port.open("squat", true, `?token=${token}`);
    owner.send([hello_(A)]);
    expect(await owner.next("welcome")).toMatchObject({ macs: [A] });
    owner.send([{ type: "rx-post", count: 8, bufferSize: 2048 }]);
    expect(await squatter.closedWith()).toEqual({ code: CloseCode.MacTaken, reason: expect.stringContaining("bound to the join token") });
    peer.send([{ type: "tx", id: 0, flags: 0, frame: frame(A, B, 7) }]);
    expect((await owner.rx(1))[0]?.[14]).toBe(7);
  });

  it("an unbound member cannot take a bound holder's MAC: refused 4009, the holder keeps it", async () => {
    await createSegment("squat2");
    const token = await mintBound("squat2", ["02:00:00:00:09:01"]);
    const owner = await Port.open("squat2", true, `?token=${token}`);
    owner.send([hello_(A)]);
    await owner.next("welcome");
    const squatter = await Port.open("squat2");
    squatter.send([hello_(A)]);
    expect(await squatter.next("refuse")).toMatchObject({ code: CloseCode.MacTaken });
    expect(owner.closed).toBeUndefined();
  });
});
