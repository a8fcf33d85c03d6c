/** Where a frame is stamped on its way through an agent (bench:netns's latency budget). */
export type TracePoint = "tap-read" | "ws-sending" | "ws-send" | "ws-recv" | "tap-write";

/** What the session stamps; the Node implementation is client/frame-trace.ts, so the session stays free of Node imports. */
export interface SessionTrace {
  mark(point: TracePoint, bytes: Uint8Array, offset: number): void;
  queue(bytes: Uint8Array, offset: number): void;
  /** The message being built is about to go to the socket (`socket.send` is next). */
  sending(): void;
  /** `socket.send` returned. */
  sent(): void;
  /** A binary message arrived from the segment (before its records are walked). */
  received(): void;
  discard(): void;
}
