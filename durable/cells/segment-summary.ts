/**
 * What a segment of several cells shows and enforces as one segment
 * (docs/api.md, "Segments of several cells"): its counters, forwarding table
 * and queued bytes summed over the cells, and its port limits checked against
 * the live load of every cell.
 */
import type { CellLoad } from "../../contract/cell-api.ts";
import { httpError, type HttpError } from "../../contract/http-error.ts";
import type { TokenPolicy } from "../../contract/port-request.ts";
import type { SegmentDescription } from "../../contract/segment-api.ts";

/** The segment-level figures of one cell's describe. */
export type SegmentSummary = Pick<SegmentDescription, "counters" | "forwardingTable" | "queuedBytes">;

/**
 * The figures summed over the cells, the home's first. Counters: every numeric field summed (a field
 * that is not a number is the home's). Forwarding table: its counts summed and every cell's entries
 * listed (a port id names its cell); its settings (aging, limits) are the home's, as every cell has the
 * segment's.
 */
export function sumOverCells(parts: readonly SegmentSummary[]): SegmentSummary {
  const [home, ...others] = parts as [SegmentSummary, ...SegmentSummary[]];
  const counters = Object.assign({}, home.counters, sumNumbers(parts.map((part) => part.counters)));
  const table = home.forwardingTable;
  const forwardingTable = {
    ...table,
    ...sumNumbers(parts.map(({ forwardingTable: { learned, static: statics, portLimitHits, segmentLimitHits, moves, conflicts } }) =>
      ({ learned, static: statics, portLimitHits, segmentLimitHits, moves, conflicts }))),
    entries: [...table.entries, ...others.flatMap((part) => part.forwardingTable.entries)],
  };
  return { counters, forwardingTable, queuedBytes: parts.reduce((sum, part) => sum + part.queuedBytes, 0) };
}

/** Per key, the sum of the numeric values of every record. */
function sumNumbers(records: readonly object[]): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const record of records) {
    for (const [key, value] of Object.entries(record)) if (typeof value === "number") sums[key] = (sums[key] ?? 0) + value;
  }
  return sums;
}

/**
 * Why the home refuses a join on a segment of several cells, or null: the ports of all cells reached
 * `maxPorts` (503 segment-full), or the token's own ports across the cells reached its `maxPorts` (403
 * token-port-limit). A cell that did not answer counts as empty here (a dead cell has no ports).
 */
export function segmentLimitRefusal(loads: ReadonlyMap<number, CellLoad | null>, maxPorts: number, token: TokenPolicy | null, segment: string): HttpError | null {
  let ports = 0;
  let tokenPorts = 0;
  for (const load of loads.values()) {
    ports += load?.ports ?? 0;
    tokenPorts += load?.tokenPorts ?? 0;
  }
  if (ports >= maxPorts) {
    return httpError(503, "segment-full", `segment ${JSON.stringify(segment)} has its maximum of ${maxPorts} ports connected (over its ${loads.size} cells)`);
  }
  if (token !== null && token.maxPorts !== null && token.id !== null && tokenPorts >= token.maxPorts) {
    return httpError(403, "token-port-limit", `the join token allows ${token.maxPorts} port(s) at once and has ${tokenPorts} open on this segment's cells: close one first`);
  }
  return null;
}
