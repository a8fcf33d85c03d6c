/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { describe, expect, it } from "vitest";
import { BROADCAST, createSegment, frame, Port } from "./ports.ts";
import { joinCell, markers, routesSettled, trunksQuiet, type CellView } from "./cells-ports.ts";

// Isolation between segments when they run as several cells (docs/cells.md §1, rule 3; §11): the same
// MACs live in two segments, on different cells of each, and no frame of one segment reaches a port or a
// trunk of the other. The bug this catches: a cell shared by two segments (a cell name, stub or trunk
// peer that does not depend on the segment), or a trunk call accepted from another segment's cell.

const M0 = 0x0200_0000_0c01;
const M1 = 0x0200_0000_0c02;
const M2 = 0x0200_0000_0c03;
/** A MAC that exists only in the other segment. */
const ONLY_B = 0x0200_0000_0c0b;

type Trunks = Array<[number, number, number, number]>;

/** Every trunk's frame counters, as [cell, peer, txFrames, rxFrames]. */
function trunkCounters(cells: readonly CellView[]): Trunks {
  return cells.flatMap((cell) => cell.trunks.map((t): [number, number, number, number] => [cell.index, t.peer, t.txFrames, t.rxFrames]));
}

/** No rx record arrived at any of `ports` (a frame of the other segment would be one). */
function nothingReceived(ports: readonly Port[]): void {
  for (const port of ports) expect(port.records.filter((r) => r.type === "rx")).toEqual([]);
}

/** A broadcast from `from` reaches each of `to` as its first frame: nothing arrived before it. */
async function fence(from: Port, mac: number, to: readonly Port[], marker: number): Promise<void> {
  from.send([{ type: "tx", id: marker, flags: 0, frame: frame(BROADCAST, mac, marker) }]);
  for (const port of to) expect(await markers(port, 1)).toEqual([marker]);
}

describe("isolation between segments of several cells", () => {
  it("two segments of 3 cells with the same MACs: broadcast and unicast stay in their segment, and so do the trunks", async () => {
    await createSegment("iso-a", { cells: 3 });
    await createSegment("iso-b", { cells: 3 });
    // The same MACs in both segments, on different cells: a0 on cell 0 of A, b0 (same MAC) on cell 2 of B, …
    const a = [await joinCell("iso-a", 0, M0), await joinCell("iso-a", 1, M1), await joinCell("iso-a", 2, M2)] as [Port, Port, Port];
    const b = [await joinCell("iso-b", 2, M0), await joinCell("iso-b", 0, M1), await joinCell("iso-b", 1, M2), await joinCell("iso-b", 1, ONLY_B)] as [Port, Port, Port, Port];
    await routesSettled("iso-a", 2);
    await routesSettled("iso-b", [3, 2, 3]);
    // Both segments' announcements are done: B's trunks are quiet, and their counters are what B did itself.
    const bBefore = trunkCounters(await trunksQuiet("iso-b", 6));

    // A: a broadcast from every cell; unicast to a MAC of A on another cell; unicast to a MAC only B has
    // (unknown in A, which has no bridge ports: it reaches no port, in A or B).
    for (const [i, port] of a.entries()) port.send([{ type: "tx", id: i, flags: 0, frame: frame(BROADCAST, [M0, M1, M2][i] as number, 0x10 + i) }]);
    a[0].send([{ type: "tx", id: 10, flags: 0, frame: frame(M2, M0, 0x20) }, { type: "tx", id: 11, flags: 0, frame: frame(ONLY_B, M0, 0x21) }]);
    expect((await markers(a[0], 2)).sort()).toEqual([0x11, 0x12]);
    expect((await markers(a[1], 2)).sort()).toEqual([0x10, 0x12]);
    expect((await markers(a[2], 3)).sort()).toEqual([0x10, 0x11, 0x20]);
    // A's trunks carried it (3 broadcasts to 2 cells each, 1 unicast) …
    const aCells = await trunksQuiet("iso-a", 6);
    expect(trunkCounters(aCells).reduce((sum, [, , tx]) => sum + tx, 0)).toBe(3 * 2 + 1);
    // … and B's trunks none of it: their counters did not move.
    expect(trunkCounters(await trunksQuiet("iso-b", 6))).toEqual(bBefore);
    nothingReceived(b);
    // B's own broadcast is the first frame every B port gets (from the cell of b1: cell 0).
    await fence(b[1], M1, [b[0], b[2], b[3]], 0x30);

    // And the other way: B's traffic never reaches A (the same MACs, so a leak would be switched there).
    b[3].send([{ type: "tx", id: 20, flags: 0, frame: frame(M0, ONLY_B, 0x40) }, { type: "tx", id: 21, flags: 0, frame: frame(BROADCAST, ONLY_B, 0x41) }]);
    expect(await markers(b[0], 2)).toEqual([0x40, 0x41]);
    await trunksQuiet("iso-b", 6);
    nothingReceived(a);
    // A's own broadcast is the next frame A's ports get: nothing of B's (nor A's unknown unicast) came first.
    await fence(a[2], M2, [a[0], a[1]], 0x50);
  }, 30_000);

  it("a segment of 1 cell beside one of 3 with the same MACs: neither sees the other's frames", async () => {
    await createSegment("iso-one");
    await createSegment("iso-three", { cells: 3 });
    const one = [await Port.join("iso-one", M0), await Port.join("iso-one", M1)] as [Port, Port];
    const three = [await joinCell("iso-three", 1, M0), await joinCell("iso-three", 2, M1), await joinCell("iso-three", 0, M2)] as [Port, Port, Port];
    await routesSettled("iso-three", 2);
    const before = trunkCounters(await trunksQuiet("iso-three", 6));

    // The one-cell segment: broadcast, and unicast to a MAC only the other segment has.
    one[0].send([{ type: "tx", id: 1, flags: 0, frame: frame(BROADCAST, M0, 0x60) }, { type: "tx", id: 2, flags: 0, frame: frame(M2, M0, 0x61) }]);
    expect(await markers(one[1], 1)).toEqual([0x60]);
    expect(trunkCounters(await trunksQuiet("iso-three", 6))).toEqual(before);
    nothingReceived(three);
    await fence(three[2], M2, [three[0], three[1]], 0x62);

    // The segment of 3 cells: broadcast from cell 1, unicast across cells to M1 (also a MAC of the other segment).
    three[0].send([{ type: "tx", id: 3, flags: 0, frame: frame(BROADCAST, M0, 0x70) }, { type: "tx", id: 4, flags: 0, frame: frame(M1, M0, 0x71) }]);
    expect(await markers(three[1], 2)).toEqual([0x70, 0x71]);
    expect(await markers(three[2], 1)).toEqual([0x70]);
    nothingReceived(one);
    await fence(one[1], M1, [one[0]], 0x72);
  }, 30_000);
});
