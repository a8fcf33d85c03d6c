/**
 * The contract between the cells of one segment (docs/cells.md §3, §4.2): RPC methods a cell's
 * Durable Object offers the home cell and its peers, never the Worker's routes. A cell is the same
 * Segment class under the name `<segment>#<index>`; '#' never occurs in a segment name, so no client
 * can address a cell directly.
 */
import type { Region } from "../datapath/cells/region.ts";
import type { TrunkBatch, TrunkReply } from "../datapath/cells/trunk-records.ts";
import type { FdbSummary } from "../datapath/fdb.ts";
import type { CellDescription, PortInfo, SegmentConfig, SegmentCounters } from "./segment-api.ts";

/** What makes a Durable Object a cell of a segment: stored by the home at creation, by a cell when adopted. */
export interface CellMembership {
  /** The segment's name (the home's Durable Object name). */
  segment: string;
  /** 0 for the home, 1..cells−1 for the others. */
  index: number;
  /** How many cells the segment has. */
  cells: number;
  /** Random id made when the segment first had cells: a trunk call of another generation is refused. */
  generation: string;
  /** The home's token epoch, which every cell checks join tokens against (set by the home for the others). */
  tokenEpoch?: string;
  /**
   * Region placement only (docs/cells.md §3.4): the location hint of each cell made so far, by index (the
   * home's is null). Cells past its end do not exist yet, and no cell calls them: the first `get()` of a
   * cell must carry its hint, and the home makes it. Absent for a fixed count (every index exists).
   */
  directory?: Array<Region | null>;
}

/** A trunk call's answer: the reply, or why the whole batch was refused. */
export type TrunkAnswer = { ok: true; reply: TrunkReply } | { ok: false; code: string; message: string };

/** One cell's part of `GET /v1/segments/:name`: its ports, its cell view, and its segment-level figures (summed by the home). */
export interface CellReport {
  ports: PortInfo[];
  cell: CellDescription;
  counters: SegmentCounters;
  forwardingTable: FdbSummary;
  queuedBytes: number;
}

/** A cell's load, for the home's placement and segment-wide limits: its ports, and those opened with one token. */
export interface CellLoad {
  ports: number;
  /** Ports opened with the join token asked about (its `jti`); 0 when none was asked about. */
  tokenPorts: number;
}

export interface CellApi {
  /** Frames and control records from a peer cell (docs/cells.md §4.2). */
  trunk(batch: TrunkBatch): Promise<TrunkAnswer>;
  /** The home makes this object cell `membership.index` of the segment, with the segment's settings (idempotent). */
  adoptCell(membership: CellMembership, config: SegmentConfig): Promise<void>;
  /** This cell's ports and counters, for the home's describe; null if it is not a cell. */
  describeCell(): Promise<CellReport | null>;
  /**
   * How many ports this cell holds now, and how many of them `tokenId` opened, for the home's placement
   * and its segment-wide `maxPorts` checks; null if it is not a segment.
   */
  cellLoad(tokenId: string | null): Promise<CellLoad | null>;
  /**
   * The home resets cell `index` (dev mode's `POST …/cells/:index/reset`, for tests): its instance is
   * aborted as a crash would (sockets gone, memory lost, storage kept). Null when the segment does not exist.
   */
  resetCell(index: number): Promise<CellResetOutcome | null>;
  /** A cell aborts itself (called by its home's `resetCell`): the call itself fails, as the reset is immediate. */
  abortCell(): Promise<void>;
}

/** What a cell reset did, or why it was refused. */
export type CellResetOutcome = { ok: true } | { ok: false; code: "not-cells" | "invalid-cell"; message: string };

/** The Durable Object name of cell `index` of `segment` (the home is the segment's own name). */
export function cellObjectName(segment: string, index: number): string {
  return index === 0 ? segment : `${segment}#${index}`;
}

/**
 * Response header of the home's internal 307 to the Worker: the cell a joining port goes to (JSON
 * `{"cell": i}`, with `"locationHint"` under region placement).
 */
export const PLACE_HEADER = "x-edgelan-place";
/** Request header from the Worker: the cell a join asks for (`?cell=`); only a hint. */
export const CELL_HINT_HEADER = "x-edgelan-cell-hint";
/** Request header from the Worker: the joining client's region, derived from `request.cf` (datapath/cells/region.ts). */
export const REGION_HEADER = "x-edgelan-region";
