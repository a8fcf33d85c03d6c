// Per-port rates between two polls of the admin API: what `edgelan top` and
// the dashboard show. Pure (no Node or DOM), so both can use it.
import type { PortStatsView, SegmentView } from "./admin-api.ts";

/** One poll: the segment's description and per-port counters, and when they were read (ms). */
export interface TopSample {
  atMs: number;
  segment: SegmentView;
  ports: PortStatsView[];
}

/** A port's row: identity and rates since the previous sample (null on the first). */
export interface TopRow {
  portId: number;
  kind: string;
  mode: string;
  macs: string[];
  remote: string;
  rxFps: number | null;
  txFps: number | null;
  rxMbps: number | null;
  txMbps: number | null;
  rxFrames: number;
  txFrames: number;
  /** Drops per second by reason, only reasons that moved. */
  dropsPerSecond: Record<string, number>;
  queuedFrames: number;
}

/** Rows for `current`, with rates against `previous` (same port id), sorted by traffic then port id. */
export function topRows(previous: TopSample | null, current: TopSample): TopRow[] {
  const seconds = previous === null ? 0 : (current.atMs - previous.atMs) / 1000;
  const info = new Map(current.segment.ports.map((port) => [port.portId, port]));
  const rows = current.ports.map((port): TopRow => {
    const before = previous?.ports.find((candidate) => candidate.portId === port.portId);
    const rate = (now: number, then: number | undefined): number | null =>
      then === undefined || seconds <= 0 ? null : Math.max(0, now - then) / seconds;
    const dropsPerSecond: Record<string, number> = {};
    for (const [reason, count] of Object.entries(port.counters.drops)) {
      const perSecond = rate(count, before?.counters.drops[reason]);
      if (perSecond !== null && perSecond > 0) dropsPerSecond[reason] = perSecond;
    }
    const bits = (now: number, then: number | undefined): number | null => {
      const bytes = rate(now, then);
      return bytes === null ? null : (bytes * 8) / 1e6;
    };
    return {
      portId: port.portId, kind: port.kind, mode: port.mode,
      macs: info.get(port.portId)?.macs ?? [], remote: info.get(port.portId)?.remote ?? "",
      rxFps: rate(port.counters.rxFrames, before?.counters.rxFrames), txFps: rate(port.counters.txFrames, before?.counters.txFrames),
      rxMbps: bits(port.counters.rxBytes, before?.counters.rxBytes), txMbps: bits(port.counters.txBytes, before?.counters.txBytes),
      rxFrames: port.counters.rxFrames, txFrames: port.counters.txFrames, dropsPerSecond, queuedFrames: port.queuedFrames,
    };
  });
  const traffic = (row: TopRow): number => (row.rxMbps ?? 0) + (row.txMbps ?? 0);
  return rows.sort((a, b) => traffic(b) - traffic(a) || (b.rxFrames + b.txFrames) - (a.rxFrames + a.txFrames) || a.portId - b.portId);
}
