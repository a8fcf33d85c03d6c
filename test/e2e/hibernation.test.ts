// Hibernation for real: local workerd evicts an idle Durable Object once it has
// been idle for 10 s, checked periodically, so within about 20 s (the constructor
// runs again; sockets and attachments survive). Traffic must
// carry on over the same sockets, with credits and counters intact.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KEEPALIVE_REQUEST } from "../../datapath/tunnel/constants.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { markedFrame } from "./marked-frame.ts";
import { WireClient } from "./wire-client.ts";

let relay: RunningRelay;

async function segment(): Promise<{ counters: { instanceStarts: number; portsAccepted: number } }> {
  return (await (await fetch(`${relay.baseUrl}/v1/segments/sleepy`)).json()) as never;
}

beforeAll(async () => {
  relay = await startRelay();
});

afterAll(async () => {
  await relay?.stop();
});

describe("a hibernated segment", () => {
  it("wakes on traffic and carries on without reconnects, credit leaks or lost counters", { timeout: 60_000 }, async () => {
    const url = `${relay.wsUrl}/v1/segments/sleepy/connect`;
    const { client: a, welcome: welcomeA } = await WireClient.join(url, { macs: [0x020000000701] });
    const { client: b } = await WireClient.join(url, { macs: [0x020000000702] });
    b.send([{ type: "rx-post", count: 10, bufferSize: 2048 }]);
    a.send([0, 1, 2].map((id) => ({ type: "tx" as const, id, flags: 0, frame: markedFrame(0x020000000702, 0x020000000701, id) })));
    await b.until(() => (b.records.filter((r) => r.type === "rx").length === 3 ? true : undefined), "3 frames");
    b.take("rx");
    await a.next("tx-complete");
    const before = await segment();

    // Idle past the eviction time; keepalives every 2 s are answered by the runtime and must not keep it awake.
    for (let i = 0; i < 11; i++) {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      a.sendBytes(KEEPALIVE_REQUEST);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));

    // Same sockets, no reconnect: 7 credits remain at b, so 7 of 9 frames are delivered now and 2 wait.
    a.send([3, 4, 5, 6, 7, 8, 9, 10, 11].map((id) => ({ type: "tx" as const, id, flags: 0, frame: markedFrame(0x020000000702, 0x020000000701, id) })));
    expect(await a.next("tx-complete")).toMatchObject({ firstId: 3, count: 9, status: 0 });
    await b.until(() => (b.records.filter((r) => r.type === "rx").length === 7 ? true : undefined), "7 frames");
    expect(b.take("rx").map((r) => r.frame[14])).toEqual([3, 4, 5, 6, 7, 8, 9]);
    b.send([{ type: "stats-request", seq: 1 }]);
    const stats = await b.next("stats-reply");
    expect(stats).toMatchObject({ creditsAvailable: 0, queuedFrames: 2 });
    // tx counts frames delivered into posted buffers (protocol.md §8.4): 3 + 7; the 2 queued are not yet.
    expect(stats.counters.txFrames).toBe(10);

    const after = await segment();
    expect(after.counters.instanceStarts).toBeGreaterThan(before.counters.instanceStarts);
    expect(after.counters.portsAccepted).toBe(before.counters.portsAccepted);
    expect(a.closeCode).toBeUndefined();
    expect(b.closeCode).toBeUndefined();
    a.send([{ type: "ping", seq: 1, timestamp: 5 }]);
    expect((await a.next("pong")).timestamp).toBe(5);
    expect(welcomeA.portId).toBeGreaterThan(0);
  });
});
