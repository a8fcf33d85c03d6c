// End-to-end: a segment of 3 cells (docs/cells.md) under the real `wrangler dev`, with real `ws`
// clients forced onto cells with ?cell=. The join order 2, 1, 0 is the one that hung before the fix
// of docs/cells.md §0 (a port on cell 2 made cells 2 and 0 call cell 1 before it was a cell).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { markedFrame as frame } from "./marked-frame.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { WireClient } from "./wire-client.ts";

const ADMIN = "e2e-admin-token";
const BROADCAST = 0xffff_ffff_ffff;
const MACS = [0x0200_0000_0c00, 0x0200_0000_0c01, 0x0200_0000_0c02];
let relay: RunningRelay;


async function admin(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${relay.baseUrl}${path}`, {
    method, headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body),
  });
}

interface Described {
  ports: Array<{ portId: number; cell?: number }>;
  cells?: Array<{ index: number; region?: string | null; remoteRoutes: number; trunks: Array<{ peer: number; calls: number; callFailures: number }> }>;
}

async function described(segment: string): Promise<Described> {
  return (await (await admin("GET", `/v1/segments/${segment}`)).json()) as Described;
}

/** Polls the admin API (bounded) until every cell knows the `routes` MACs of the other cells. */
async function routesSettled(segment: string, routes: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const cells = (await described(segment)).cells ?? [];
    if (cells.length === 3 && cells.every((cell) => cell.remoteRoutes === routes)) return;
    if (Date.now() > deadline) throw new Error(`cells did not settle on ${routes} routes each: ${JSON.stringify(cells)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The markers (byte 14) of the first `count` rx frames a port got. */
async function markers(client: WireClient, count: number): Promise<number[]> {
  const got: number[] = [];
  while (got.length < count) got.push((await client.next("rx", 30_000)).frame[14] as number);
  return got;
}

beforeAll(async () => {
  relay = await startRelay({ adminToken: ADMIN });
});

afterAll(async () => {
  await relay?.stop();
});

describe("a segment of 3 cells under wrangler dev", () => {
  it("accepts cells: 3 without any setting, and joins on cells 2, 1, 0 complete (the order that hung)", async () => {
    const created = await admin("PUT", "/v1/segments/e2e-cells", { openJoin: true, cells: 3 });
    expect(created.status).toBe(201);
    const clients: WireClient[] = [];
    for (const cell of [2, 1, 0]) {
      const { client, welcome } = await WireClient.join(`${relay.wsUrl}/v1/segments/e2e-cells/connect?cell=${cell}`, { macs: [MACS[cell] as number] });
      expect(Math.floor(welcome.portId / 2 ** 24)).toBe(cell);
      client.send([{ type: "rx-post", count: 64, bufferSize: 2048 }]);
      clients[cell] = client;
    }
    const listed = await described("e2e-cells");
    expect(listed.ports.map((port) => port.cell).sort()).toEqual([0, 1, 2]);
    await routesSettled("e2e-cells", 2);

    // Broadcast from each cell reaches the two others exactly once; no echo.
    for (const [cell, client] of clients.entries()) client.send([{ type: "tx", id: 1, flags: 0, frame: frame(BROADCAST, MACS[cell] as number, 0x10 + cell) }]);
    for (const [cell, client] of clients.entries()) {
      expect((await markers(client, 2)).sort()).toEqual([0x10, 0x11, 0x12].filter((marker) => marker !== 0x10 + cell));
    }
    // Unicast crosses one trunk to its owner only.
    (clients[1] as WireClient).send([{ type: "tx", id: 2, flags: 0, frame: frame(MACS[2] as number, MACS[1] as number, 0x21) }]);
    expect(await markers(clients[2] as WireClient, 1)).toEqual([0x21]);
    (clients[2] as WireClient).send([{ type: "tx", id: 2, flags: 0, frame: frame(MACS[0] as number, MACS[2] as number, 0x22) }]);
    expect(await markers(clients[0] as WireClient, 1)).toEqual([0x22]);
    // Cell 1 got neither unicast: its next frame is the broadcast that follows.
    (clients[0] as WireClient).send([{ type: "tx", id: 2, flags: 0, frame: frame(BROADCAST, MACS[0] as number, 0x23) }]);
    expect(await markers(clients[1] as WireClient, 1)).toEqual([0x23]);
    for (const client of clients) client.close();
  });
});

describe("region placement under wrangler dev", () => {
  it("places by the region of request.cf (offline wrangler dev: its placeholder, Austin → enam), grows at perCell, and the ports talk", async () => {
    const created = await admin("PUT", "/v1/segments/e2e-region", { openJoin: true, cells: { placement: "region", max: 3, perCell: 1 } });
    expect(created.status).toBe(201);
    const clients: WireClient[] = [];
    for (const mac of MACS.slice(0, 2)) {
      const { client } = await WireClient.join(`${relay.wsUrl}/v1/segments/e2e-region/connect`, { macs: [mac] });
      client.send([{ type: "rx-post", count: 64, bufferSize: 2048 }]);
      clients.push(client);
    }
    const listed = await described("e2e-region");
    // perCell 1: the second enam port got a second enam cell; the home (no region) holds neither.
    expect(listed.cells?.map((cell) => [cell.index, cell.region])).toEqual([[0, null], [1, "enam"], [2, "enam"]]);
    expect(listed.ports.map((port) => port.cell).sort()).toEqual([1, 2]);
    const [a, b] = clients as [WireClient, WireClient];
    const deadline = Date.now() + 30_000;
    while (!((await described("e2e-region")).cells ?? []).filter((cell) => cell.index > 0).every((cell) => cell.remoteRoutes === 1)) {
      if (Date.now() > deadline) throw new Error("the two cells never learned each other's MAC");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    a.send([{ type: "tx", id: 1, flags: 0, frame: frame(MACS[1] as number, MACS[0] as number, 0x31) }]);
    expect(await markers(b, 1)).toEqual([0x31]);
    b.send([{ type: "tx", id: 1, flags: 0, frame: frame(BROADCAST, MACS[1] as number, 0x32) }]);
    expect(await markers(a, 1)).toEqual([0x32]);
    for (const client of clients) client.close();
  });
});
