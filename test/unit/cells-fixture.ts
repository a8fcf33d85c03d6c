// Cells of one segment in Node for unit tests: each a real SegmentSwitch, every pair joined by a trunk.
import { Cell } from "../../datapath/cells/cell.ts";
import { SegmentSwitch, type SwitchConfig } from "../../datapath/segment-switch.ts";

export const CELLS_CONFIG: SwitchConfig = {
  maxFrameSize: 1514, learnLimitPerPort: 64, learnLimitPerSegment: 4096, agingMs: 300_000,
  rxQueueFrames: 256, rxQueueBytes: 1 << 20, segmentQueueBytes: 1 << 22,
};

/** A cell over `sw` in `epoch` (a new epoch stands for a restart), with the limits of `config` (as cell-host.ts). */
export function newCell(index: number, sw: SegmentSwitch, clock: () => number, epoch = 1, config: SwitchConfig = CELLS_CONFIG): Cell {
  return new Cell({ index, epoch, generation: "g1" }, sw, {
    maxLearned: config.learnLimitPerSegment, agingMs: config.agingMs, segmentQueueBytes: config.segmentQueueBytes,
  }, clock);
}

/** `count` cells in a full mesh of trunks, on the segment clock `clock`. */
export function meshOfCells(count: number, clock: () => number, config: SwitchConfig = CELLS_CONFIG): { cells: Cell[]; switches: SegmentSwitch[] } {
  const switches = Array.from({ length: count }, () => new SegmentSwitch(config, clock));
  const cells = switches.map((sw, index) => newCell(index, sw, clock, 1, config));
  for (const cell of cells) for (const peer of cells) if (peer !== cell) cell.addPeer(peer.identity.index);
  return { cells, switches };
}
