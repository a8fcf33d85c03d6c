/**
 * Region placement of a joining port (docs/cells.md §3.3–3.4), as a pure decision over what the home
 * knows: the cells made so far (index, region, ports connected now) and the segment's policy. The home
 * (cell 0, region null) holds the ports whose region is unknown and is the last resort.
 */
import { NEAREST_REGIONS, type Region } from "./region.ts";

/** The `cells` setting's object form. */
export interface RegionPolicy {
  placement: "region";
  /** Cells in all, the home included (2..16). */
  max: number;
  /** Ports a region's cells hold before the region gets another cell (1..1024). */
  perCell: number;
}

/** A cell as the home sees it when placing: its index, its region (null for the home), its ports now. */
export interface PlacedCell {
  index: number;
  region: Region | null;
  ports: number;
}

/** An existing cell, or a new one for `region` at index `create`. */
export type RegionChoice = { cell: number } | { create: number; region: Region };

/**
 * Where a port from `region` goes, given `cells` (indexes 0..n−1, the home first) and `capacity`, the
 * ports one cell admits (`maxPorts`, at most 1024; the segment-wide `maxPorts` was checked before):
 * 1. region unknown: the home if it has room, else the least loaded cell with room;
 * 2. the least loaded cell of the region with fewer than `perCell` ports;
 * 3. else a new cell for the region, while there are fewer than `max` cells;
 * 4. else the least loaded cell with room of the region, then of the nearest regions in turn;
 * 5. else the least loaded cell with room, the home included; the home when none has room (it refuses the join).
 */
export function placeByRegion(region: Region | null, cells: readonly PlacedCell[], policy: RegionPolicy, capacity: number): RegionChoice {
  if (region === null) return { cell: (cells[0]?.ports ?? 0) < capacity ? 0 : leastLoaded(cells.filter((cell) => cell.ports < capacity)) ?? 0 };
  const underPerCell = leastLoaded(cells.filter((cell) => cell.region === region && cell.ports < Math.min(policy.perCell, capacity)));
  if (underPerCell !== null) return { cell: underPerCell };
  if (cells.length < policy.max) return { create: cells.length, region };
  const withRoom = cells.filter((cell) => cell.ports < capacity);
  for (const near of [region, ...NEAREST_REGIONS[region]]) {
    const found = leastLoaded(withRoom.filter((cell) => cell.region === near));
    if (found !== null) return { cell: found };
  }
  return { cell: leastLoaded(withRoom) ?? 0 };
}

/** The index of the cell with the fewest ports (ties: the lowest index), or null for none. */
function leastLoaded(cells: readonly PlacedCell[]): number | null {
  let best: PlacedCell | null = null;
  for (const cell of cells) if (best === null || cell.ports < best.ports || (cell.ports === best.ports && cell.index < best.index)) best = cell;
  return best?.index ?? null;
}
