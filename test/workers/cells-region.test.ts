/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { SUBPROTOCOL_V1 } from "../../datapath/tunnel/constants.ts";
import { BROADCAST, createSegment, frame, hello_, Port } from "./ports.ts";
import { describeCells, markers, routesSettled, trunksQuiet } from "./cells-ports.ts";

// Region placement (docs/cells.md §3.3–3.4) in workerd: the client's location comes from `request.cf`,
// which the test passes to the Worker as the edge would (local workerd has none, and ignores location
// hints, so where a cell really runs is not tested here: which cell a port joins, and what GET lists, is).

const FRANKFURT = { continent: "EU", country: "DE", longitude: "8.68210", timezone: "Europe/Berlin" };
const SAN_JOSE = { continent: "NA", country: "US", longitude: "-121.8863", timezone: "America/Los_Angeles" };
const SINGAPORE = { continent: "AS", country: "SG", longitude: "103.85", timezone: "Asia/Singapore" };

/** A connect from `cf` (undefined: no location, as local workerd), passed to the Worker as the edge would. */
function connectFrom(segment: string, cf: Record<string, string> | undefined, headers: Record<string, string> = {}): Promise<Response> {
  const init = { headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": SUBPROTOCOL_V1, ...headers }, ...(cf === undefined ? {} : { cf }) };
  return exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/connect`, init as RequestInit);
}

/** A port joining from `cf`, HELLO said, 64 credits posted. */
async function joinFrom(segment: string, cf: Record<string, string> | undefined, mac: number, headers: Record<string, string> = {}): Promise<Port> {
  const response = await connectFrom(segment, cf, headers);
  expect(response.status).toBe(101);
  const port = new Port(response.webSocket as WebSocket, true);
  port.send([hello_(mac)]);
  await port.next("welcome");
  port.send([{ type: "rx-post", count: 64, bufferSize: 2048 }]);
  return port;
}

/** Each port's cell, in the order of `macs`. */
async function cellsOf(segment: string, macs: readonly string[]): Promise<Array<number | undefined>> {
  const ports = (await describeCells(segment)).ports;
  return macs.map((mac) => ports.find((port) => port.macs.includes(mac))?.cell);
}

describe("region placement", () => {
  it("puts ports from two continents on two new cells of their regions, lists the regions, and the ports still talk", async () => {
    const created = await exports.default.fetch("http://edgelan.test/v1/segments/reg-two", {
      method: "PUT", headers: { authorization: "Bearer test-admin-token" }, body: JSON.stringify({ openJoin: true, cells: { placement: "region" } }),
    });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ cells: { placement: "region", max: 4, perCell: 256 } });
    // Only the home exists until a port from a region joins.
    expect((await describeCells("reg-two")).cells?.map((cell) => [cell.index, cell.region])).toEqual([[0, null]]);

    const eu = await joinFrom("reg-two", FRANKFURT, 0x0200_0000_0e01);
    const na = await joinFrom("reg-two", SAN_JOSE, 0x0200_0000_0e02);
    const local = await joinFrom("reg-two", undefined, 0x0200_0000_0e03);
    expect(await cellsOf("reg-two", ["02:00:00:00:0e:01", "02:00:00:00:0e:02", "02:00:00:00:0e:03"])).toEqual([1, 2, 0]);
    const listed = (await describeCells("reg-two")).cells ?? [];
    expect(listed.map((cell) => [cell.index, cell.region, cell.ports])).toEqual([[0, null, 1], [1, "weur", 1], [2, "wnam", 1]]);
    // Index 3 (max 4) is unused: no cell lists a trunk to it. Cell 1 lists one to cell 2, made after it:
    // the home pushed it the longer directory (trunksQuiet below counts 6 trunks).
    expect(listed.every((cell) => cell.trunks.every((trunk) => trunk.peer < 3))).toBe(true);

    await routesSettled("reg-two", 2);
    eu.send([{ type: "tx", id: 1, flags: 0, frame: frame(0x0200_0000_0e02, 0x0200_0000_0e01, 0x11) }]);
    expect(await markers(na, 1)).toEqual([0x11]);
    na.send([{ type: "tx", id: 2, flags: 0, frame: frame(BROADCAST, 0x0200_0000_0e02, 0x12) }]);
    expect(await markers(eu, 1)).toEqual([0x12]);
    expect(await markers(local, 1)).toEqual([0x12]);
    expect(na.records.filter((r) => r.type === "rx")).toEqual([]);
    await trunksQuiet("reg-two", 6);
  });

  it("gives a region another cell at perCell ports, never more than max cells; then the region's least loaded cell, else the nearest, else any", async () => {
    await createSegment("reg-grow", { cells: { placement: "region", max: 3, perCell: 1 } });
    await joinFrom("reg-grow", FRANKFURT, 0x0200_0000_0f01);
    // Cell 2 is not made yet: nobody touched its object (a first get without its hint would place it anywhere).
    const untouched = await runInDurableObject(env.SEGMENTS.getByName("reg-grow#2"), (_instance, state) => state.storage.kv.get("cell-membership"));
    expect(untouched).toBeUndefined();
    await joinFrom("reg-grow", FRANKFURT, 0x0200_0000_0f02);
    await joinFrom("reg-grow", FRANKFURT, 0x0200_0000_0f03);
    // Singapore: no apac cell and none can be made; its near regions (oc, me, wnam) have none: the least loaded, the home.
    await joinFrom("reg-grow", SINGAPORE, 0x0200_0000_0f04);
    expect(await cellsOf("reg-grow", ["02:00:00:00:0f:01", "02:00:00:00:0f:02", "02:00:00:00:0f:03", "02:00:00:00:0f:04"])).toEqual([1, 2, 1, 0]);
    expect((await describeCells("reg-grow")).cells?.map((cell) => [cell.index, cell.region, cell.ports])).toEqual([[0, null, 1], [1, "weur", 2], [2, "weur", 1]]);
  });

  it("ignores a region header the client sends (the Worker derives it from request.cf only); honours ?cell= for a cell that exists", async () => {
    await createSegment("reg-forge", { cells: { placement: "region", max: 4, perCell: 8 } });
    await joinFrom("reg-forge", undefined, 0x0200_0000_0d01, { "x-edgelan-region": "apac" });
    expect(await cellsOf("reg-forge", ["02:00:00:00:0d:01"])).toEqual([0]);
    expect((await describeCells("reg-forge")).cells?.length).toBe(1);
    await joinFrom("reg-forge", SAN_JOSE, 0x0200_0000_0d02);
    const hinted = await Port.open("reg-forge", true, "?cell=1");
    hinted.send([hello_(0x0200_0000_0d03)]);
    await hinted.next("welcome");
    // ?cell=3 names a cell that does not exist: the hint is ignored (no location: the home).
    const unknown = await Port.open("reg-forge", true, "?cell=3");
    unknown.send([hello_(0x0200_0000_0d04)]);
    await unknown.next("welcome");
    expect(await cellsOf("reg-forge", ["02:00:00:00:0d:02", "02:00:00:00:0d:03", "02:00:00:00:0d:04"])).toEqual([1, 1, 0]);
  });

  it("a region cell restarts: placing its next port gives it the home's directory again, so it reaches a cell made after it", async () => {
    await createSegment("reg-restart", { cells: { placement: "region", max: 3, perCell: 4 } });
    await joinFrom("reg-restart", FRANKFURT, 0x0200_0000_0b01);
    const na = await joinFrom("reg-restart", SAN_JOSE, 0x0200_0000_0b02);
    await routesSettled("reg-restart", [2, 1, 1]);
    // Cell 1 was made when cell 2 was not: the home's push after making cell 2, and the adoption that comes
    // with every placement on cell 1, tell it that cell 2 exists (its stored membership is what it restarts with).
    await expect(runInDurableObject(env.SEGMENTS.getByName("reg-restart#1"), (_instance, state) => state.abort("restart"))).rejects.toThrow();
    const eu = await joinFrom("reg-restart", FRANKFURT, 0x0200_0000_0b03);
    expect(await cellsOf("reg-restart", ["02:00:00:00:0b:03"])).toEqual([1]);
    // The restarted cell announces its new port to both peers, cell 2 included, and frames cross both ways.
    await routesSettled("reg-restart", [2, 1, 1]);
    eu.send([{ type: "tx", id: 1, flags: 0, frame: frame(BROADCAST, 0x0200_0000_0b03, 0x41) }]);
    expect(await markers(na, 1)).toEqual([0x41]);
    na.send([{ type: "tx", id: 1, flags: 0, frame: frame(0x0200_0000_0b03, 0x0200_0000_0b02, 0x42) }]);
    expect(await markers(eu, 1)).toEqual([0x42]);
  });

  it("maxPorts counts the ports of every cell: a full segment refuses a join from anywhere (503 segment-full)", async () => {
    await createSegment("reg-full", { maxPorts: 2, cells: { placement: "region", max: 3, perCell: 1 } });
    await joinFrom("reg-full", undefined, 0x0200_0000_0a01);
    await joinFrom("reg-full", FRANKFURT, 0x0200_0000_0a02);
    expect(await cellsOf("reg-full", ["02:00:00:00:0a:01", "02:00:00:00:0a:02"])).toEqual([0, 1]);
    // Two ports on two cells: the segment is full, though a third cell could still be made.
    for (const cf of [FRANKFURT, SINGAPORE, undefined]) {
      const refused = await connectFrom("reg-full", cf);
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: string }).error).toBe("segment-full");
    }
  });
});
