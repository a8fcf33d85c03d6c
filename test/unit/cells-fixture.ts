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

/**
 * Runs every due trunk call between `cells`, each answered at once by its peer, until none is left
 * (bounded); returns how many were made. `prepare` runs for each cell before it is asked for its calls
 * (its announcements), `answered` after each call with the peer that took it.
 */
export function settleCalls(cells: readonly Cell[], prepare?: (cell: Cell, index: number) => void, answered?: (peer: number) => void): number {
  let calls = 0;
  for (let round = 0; round < 20; round++) {
    let any = false;
    cells.forEach((cell, index) => {
      prepare?.(cell, index);
      for (const { peer, batch } of cell.take()) {
        any = true;
        calls++;
        const reply = (cells[peer] as Cell).receive(batch);
        if (!reply.ok) throw new Error(reply.error.message);
        cell.completed(peer, reply.value);
        answered?.(peer);
      }
    });
    if (!any) return calls;
  }
  throw new Error("trunk calls did not settle");
}
