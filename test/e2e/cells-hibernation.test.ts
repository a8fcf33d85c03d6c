// Cells hibernate independently (docs/cells.md §0, issue 14's lifecycle): under the real `wrangler dev`,
// two ports on cells 1 and 2 go quiet while two ports on the home keep talking. Local workerd evicts an
// idle Durable Object within about 20 s, so the quiet cells restart (a new epoch each) while the busy
// home does not: an idle trunk keeps nothing awake. Then the quiet ports talk across cells again, over
// the same sockets.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { markedFrame } from "./marked-frame.ts";
import { WireClient } from "./wire-client.ts";

let relay: RunningRelay;
const SEGMENT = "cells-sleepy";

async function epochs(): Promise<number[]> {
  const described = (await (await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}`)).json()) as { cells: Array<{ index: number; epoch: number }> };
  return [0, 1, 2].map((index) => described.cells.find((cell) => cell.index === index)?.epoch ?? -1);
}

async function joinOn(cell: number, mac: number): Promise<WireClient> {
  const { client } = await WireClient.join(`${relay.wsUrl}/v1/segments/${SEGMENT}/connect?cell=${cell}`, { macs: [mac] });
  client.send([{ type: "rx-post", count: 64, bufferSize: 2048 }]);
  return client;
}

/** Sends one frame from `from` to `to`, waits for it to arrive with its marker, and gives `to` its credit back. */
async function deliver(from: WireClient, to: WireClient, dst: number, src: number, marker: number): Promise<void> {
  from.send([{ type: "tx", id: marker, flags: 0, frame: markedFrame(dst, src, marker) }]);
  const rx = await to.until(() => to.records.find((r) => r.type === "rx" && r.frame[14] === marker), `frame ${marker}`, 10_000);
  to.records.splice(to.records.indexOf(rx), 1);
  to.send([{ type: "rx-post", count: 1, bufferSize: 2048 }]);
}

beforeAll(async () => {
  relay = await startRelay();
  expect((await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}`, { method: "PUT", body: JSON.stringify({ cells: 3 }) })).status).toBe(201);
});

afterAll(async () => {
  await relay?.stop();
});

describe("cells of one segment", () => {
  it("hibernate independently: quiet cells restart while the busy home does not, and traffic resumes across them", { timeout: 90_000 }, async () => {
    const [A, B, C, D] = [0x020000000a01, 0x020000000a02, 0x020000000a03, 0x020000000a04];
    const a = await joinOn(1, A);
    const b = await joinOn(2, B);
    const c = await joinOn(0, C);
    const d = await joinOn(0, D);
    // Each cell learns the others' MACs; a → b crosses the trunk 1 → 2.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await deliver(a, b, B, A, 1);
    const before = await epochs();

    // 25 s: c and d talk on the home every 250 ms (bounded count); a and b say nothing.
    for (let i = 0; i < 100; i++) {
      await deliver(c, d, D, C, 16 + (i % 200));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const after = await epochs();
    expect(after[0]).toBe(before[0]);
    expect(after[1]).toBeGreaterThan(before[1] as number);
    expect(after[2]).toBeGreaterThan(before[2] as number);

    // Same sockets, across the trunk both ways, and the home's ports still talk.
    await deliver(a, b, B, A, 2);
    await deliver(b, a, A, B, 3);
    await deliver(d, c, C, D, 4);
    for (const client of [a, b, c, d]) expect(client.closeCode).toBeUndefined();
  });
});
