/**
 * Port ids of a segment of several cells (docs/cells.md §3.5): the ports of cell i have ids
 * i × 2^24 + k, so an id names its cell, which a client uses to resume on the right cell.
 */
export const PORT_IDS_PER_CELL = 2 ** 24;

/** The cell a port id belongs to (0 for every port of a one-cell segment). */
export function cellOfPortId(portId: number): number {
  return Math.floor(portId / PORT_IDS_PER_CELL);
}
