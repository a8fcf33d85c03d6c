// The capacity model of docs/cells.md §10.1 as a function, so its figures are reproducible and
// bench:cells can plug in what it measured. Per cell of n, with F the segment's frames/s (uniform
// unicast between ports spread evenly over the cells, a fraction (n − 1)/n crossing a trunk):
//
//   requests/s = F / (n·b) + (n − 1) · min(F / n², 1 / RTT)            ≤ R
//   CPU s/s    = (F/n) · [c/n + c_A·(n − 1)/n] + (F/n) · c_B · (n − 1)/n ≤ U
//   pair       : F / n² ≤ (frames per call) / RTT                         (one call in flight)
//
// F(n) is the largest F meeting all three (found by bisection: each side grows with F).

export interface CellModel {
  /** R: requests per second one object serves (the soft limit). */
  requestsPerSecond: number;
  /** U: CPU seconds per second one object may use. */
  cpuShare: number;
  /** b: frames per client message under load. */
  batch: number;
  /** c: CPU µs per frame that stays within a cell. */
  cUs: number;
  /** c_A, c_B: CPU µs at the sending and at the receiving cell for a frame that crosses a trunk. */
  cAUs: number;
  cBUs: number;
  /** Round trip between cells (ms): one call in flight per peer, so at most 1000/RTT calls per second. */
  rttMs: number;
  /** Bytes one trunk call carries at most, and the frame size. */
  callBytes: number;
  frameBytes: number;
}

/** The inputs of docs/cells.md §10.1 (one region). */
export const MODEL_DEFAULTS: CellModel = {
  requestsPerSecond: 1000, cpuShare: 0.8, batch: 32, cUs: 6, cAUs: 4, cBUs: 4, rttMs: 10, callBytes: 1 << 20, frameBytes: 1514,
};

export type Binding = "requests" | "cpu" | "pair-bandwidth";

/** Per-cell load at segment rate `framesPerSecond`, each as a fraction of its limit. */
export function load(cells: number, framesPerSecond: number, model: CellModel): Record<Binding, number> {
  const n = cells;
  const callsPerPeer = 1000 / model.rttMs;
  const pairFrames = framesPerSecond / (n * n);
  const requests = framesPerSecond / (n * model.batch) + (n - 1) * Math.min(pairFrames, callsPerPeer);
  const perCell = framesPerSecond / n;
  const cpuUs = perCell * (model.cUs / n + (model.cAUs * (n - 1)) / n) + perCell * model.cBUs * ((n - 1) / n);
  const pairLimit = Math.floor(model.callBytes / model.frameBytes) * callsPerPeer;
  return {
    requests: requests / model.requestsPerSecond,
    cpu: cpuUs / 1e6 / model.cpuShare,
    "pair-bandwidth": n === 1 ? 0 : pairFrames / pairLimit,
  };
}

/** The largest segment frame rate n cells sustain, and the limit that binds there. */
export function capacity(cells: number, model: CellModel): { framesPerSecond: number; binding: Binding } {
  const over = (f: number): boolean => Object.values(load(cells, f, model)).some((fraction) => fraction > 1);
  let low = 0;
  let high = 1e9;
  for (let step = 0; step < 100 && high - low > 0.01; step++) {
    const mid = (low + high) / 2;
    if (over(mid)) high = mid;
    else low = mid;
  }
  const at = load(cells, low, model);
  const binding = (Object.keys(at) as Binding[]).reduce((a, b) => (at[b] > at[a] ? b : a));
  return { framesPerSecond: low, binding };
}
