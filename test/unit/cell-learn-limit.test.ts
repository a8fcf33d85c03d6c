// learnLimitPerSegment holds for a segment of several cells, not per cell (docs/api.md, "Segments of
// several cells"): a cell counts the learned routes other cells announced against it before it learns.
import { describe, expect, it } from "vitest";
import { newPortCounters } from "../../datapath/counters.ts";
import type { SegmentSwitch } from "../../datapath/segment-switch.ts";
import type { Cell } from "../../datapath/cells/cell.ts";
import { CELLS_CONFIG, meshOfCells, settleCalls } from "./cells-fixture.ts";
import { frame } from "./datapath-frames.ts";
import { RecordingSink } from "./recording-sink.ts";

const M = (n: number): string => `02 00 00 00 0c ${n.toString(16).padStart(2, "0")}`;

describe("learnLimitPerSegment across cells", () => {
  it("counts the learned MACs of every cell: a bridge port on another cell learns only what is left", () => {
    const { cells, switches } = meshOfCells(3, () => 0, { ...CELLS_CONFIG, learnLimitPerSegment: 3 });
    const bridgeOn = (cell: number, id: number) => {
      const sw = switches[cell] as SegmentSwitch;
      const port = sw.attach(id, "raw", {
        kind: "bridge", macs: [], filter: { promiscuous: false, allMulticast: false, multicast: [] },
        features: 0, txWindow: 0, credits: null, counters: newPortCounters(), heldCompletions: [],
      }, new RecordingSink());
      expect(sw.open(port).ok).toBe(true);
      (cells[cell] as Cell).refreshFilter();
      return (source: number) => sw.rawFrame(port, frame(`ff ff ff ff ff ff ${M(source)} 08 00`));
    };
    const one = bridgeOn(1, 1);
    const two = bridgeOn(2, 2);
    settleCalls(cells);
    one(1);
    one(2);
    settleCalls(cells);
    two(3);
    two(4);
    settleCalls(cells);
    const table = (cell: number) => (switches[cell] as SegmentSwitch).fdbSummary();
    expect([table(1).learned, table(2).learned]).toEqual([2, 1]);
    expect(table(2).segmentLimitHits).toBe(1);
    // Cell 1 is full too now: it holds 2 and knows of 1 elsewhere.
    one(5);
    expect(table(1).learned).toBe(2);
    expect(table(1).segmentLimitHits).toBe(1);
  });
});
