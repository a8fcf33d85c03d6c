/** Where a frame is stamped on its way through an agent (bench:netns's latency budget). */
export type TracePoint = "tap-read" | "ws-send" | "ws-recv" | "tap-write";

/** What the session stamps; the Node implementation is client/frame-trace.ts, so the session stays free of Node imports. */
export interface SessionTrace {
  mark(point: TracePoint, bytes: Uint8Array, offset: number): void;
  queue(bytes: Uint8Array, offset: number): void;
  sent(): void;
  discard(): void;
}
