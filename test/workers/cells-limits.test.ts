// A segment of several cells is one segment to its users (docs/api.md, "Segments of several cells"):
// `maxPorts` and a token's `maxPorts` count the ports of every cell, a fixed count places a join on the
// least loaded cell, and the segment's counters, forwarding table and queued bytes sum over the cells.
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ADMIN, createSegment, frame, hello_, Port } from "./ports.ts";
import { describeCells, joinCell, routesSettled } from "./cells-ports.ts";

const connect = (segment: string, query = ""): Promise<Response> =>
  exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/connect${query}`, { headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "edgelan.v1" } });

async function refusal(response: Response): Promise<[number, string]> {
  return [response.status, ((await response.json()) as { error: string }).error];
}

async function memberToken(segment: string, maxPorts: number): Promise<string> {
  const response = await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/tokens`, {
    method: "POST", headers: ADMIN, body: JSON.stringify({ role: "member", maxPorts }),
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { token: string }).token;
}

describe("limits over every cell", () => {
  it("maxPorts counts every cell's ports: the segment is full at maxPorts wherever they are", async () => {
    await createSegment("lim-full", { cells: 3, maxPorts: 2 });
    await joinCell("lim-full", 1, 0x0200_0000_0b01);
    await joinCell("lim-full", 2, 0x0200_0000_0b02);
    for (const query of ["", "?cell=0", "?cell=1"]) expect(await refusal(await connect("lim-full", query))).toEqual([503, "segment-full"]);
  });

  it("a token's maxPorts counts its ports on every cell", async () => {
    await createSegment("lim-token", { cells: 3 });
    const token = await memberToken("lim-token", 1);
    const first = await Port.open("lim-token", true, `?cell=1&token=${token}`);
    first.send([hello_(0x0200_0000_0b11)]);
    await first.next("welcome");
    expect(await refusal(await connect("lim-token", `?cell=2&token=${token}`))).toEqual([403, "token-port-limit"]);
    expect(await refusal(await connect("lim-token", `?cell=1&token=${token}`))).toEqual([403, "token-port-limit"]);
  });

  it("revoking a token closes its ports on every cell, and the home counts them", async () => {
    await createSegment("lim-revoke", { cells: 3 });
    const minted = await exports.default.fetch("http://edgelan.test/v1/segments/lim-revoke/tokens", {
      method: "POST", headers: ADMIN, body: JSON.stringify({ role: "member" }),
    });
    const { token, jti } = (await minted.json()) as { token: string; jti: string };
    const ports = [];
    for (const cell of [1, 2]) {
      const port = await Port.open("lim-revoke", true, `?cell=${cell}&token=${token}`);
      port.send([hello_(0x0200_0000_0b40 + cell)]);
      await port.next("welcome");
      ports.push(port);
    }
    const revoked = await exports.default.fetch(`http://edgelan.test/v1/segments/lim-revoke/tokens/${jti}/revoke`, { method: "POST", headers: ADMIN });
    expect(revoked.status).toBe(200);
    expect(await revoked.json()).toMatchObject({ portsClosed: 2 });
    for (const port of ports) expect((await port.closedWith()).code).toBe(4008);
    expect(await refusal(await connect("lim-revoke", `?cell=2&token=${token}`))).toEqual([403, "token-revoked"]);
  });

  it("a fixed count places a join without a hint on the least loaded cell", async () => {
    await createSegment("lim-balance", { cells: 3 });
    await joinCell("lim-balance", 0, 0x0200_0000_0b21);
    await joinCell("lim-balance", 0, 0x0200_0000_0b22);
    await joinCell("lim-balance", 1, 0x0200_0000_0b23);
    // Cell 2 is empty, then cells 1 and 2 hold one each.
    await Port.join("lim-balance", 0x0200_0000_0b24);
    await Port.join("lim-balance", 0x0200_0000_0b25);
    const cells = (await describeCells("lim-balance")).ports.map((port) => port.cell).sort();
    expect(cells).toEqual([0, 0, 1, 1, 2]);
  });
});

describe("the segment's figures over every cell", () => {
  it("counters, forwarding table and queued bytes sum over the cells; per-cell figures stay in cells", async () => {
    await createSegment("lim-sum", { cells: 3 });
    const a = await joinCell("lim-sum", 1, 0x0200_0000_0b31);
    const b = await joinCell("lim-sum", 2, 0x0200_0000_0b32);
    await routesSettled("lim-sum", [2, 1, 1]);
    a.send([{ type: "tx", id: 1, flags: 0, frame: frame(0x0200_0000_0b32, 0x0200_0000_0b31, 1) }]);
    expect(await b.rx(1)).toHaveLength(1);
    const response = await exports.default.fetch("http://edgelan.test/v1/segments/lim-sum", { headers: ADMIN });
    const described = (await response.json()) as {
      counters: { rxFrames: number; txFrames: number; instanceStarts: number };
      forwardingTable: { static: number; entries: Array<{ port: number }> };
      ports: Array<{ portId: number; cell: number }>;
    };
    // The home has no port: every figure here comes from cells 1 and 2.
    expect(described.counters.rxFrames).toBe(1);
    expect(described.counters.txFrames).toBe(1);
    expect(described.counters.instanceStarts).toBeGreaterThanOrEqual(3);
    expect(described.forwardingTable.static).toBe(2);
    expect(described.forwardingTable.entries.map((entry) => Math.floor(entry.port / 2 ** 24)).sort()).toEqual([1, 2]);
  });
});
