/**
 * What the segment may send a raw port. A raw port (`edgelan.raw.v1`, one frame per message, made for
 * browser emulators such as v86) has no credits and no read acknowledgement: every frame the segment
 * sends it sits in the runtime's socket buffer until the client reads it, and a client that never reads
 * would grow that buffer without bound. Two rules bound it:
 *   - a token bucket of bytes/s and frames/s (segment settings rawEgressBytesPerSecond and
 *     rawEgressFramesPerSecond, 1 s burst) caps how fast the buffer can grow;
 *   - at most RAW_SILENT_BYTES and RAW_SILENT_FRAMES are sent to a port that has sent nothing since: a
 *     guest that takes part in any conversation sends (ARP, TCP ACKs), so its bound never bites; a
 *     socket that only sinks frames holds at most this much.
 * A frame over either bound is dropped and counted `rx-queue-full` on the raw port (its only queue is
 * the socket's buffer, and that is full as far as the segment may know).
 */
import { police, type PolicerLimits, type PolicerState, newPolicerState } from "./policer.ts";

/**
 * Bytes and frames the segment sends a raw port that has sent nothing since. Frames count too: workerd
 * holds each unread message with an overhead of its own (bench:hostile measured about 30 KB per
 * 1,514-byte message to a socket that does not read), so 1,024 frames cost some 30 MiB at most.
 */
export const RAW_SILENT_BYTES = 4 * 1024 * 1024;
export const RAW_SILENT_FRAMES = 1024;

/**
 * A raw port's egress rate: bytes/s and frames/s (null: unlimited) with their burst; the flood
 * bucket is not used. Defaults (durable/config.ts) are sized for a browser emulator: v86's NE2000
 * moves well under 4 MiB/s, and 4,000 frames/s is 2,700 full frames a second of TCP with ACKs to
 * spare; a 1 s burst absorbs a page load.
 */
export type RawEgressLimits = PolicerLimits;

/** A raw port's egress state: plain data, persisted with the port. */
export interface RawEgressState {
  bucket: PolicerState;
  /** Bytes sent since the port last sent a frame. */
  silentBytes: number;
  /** Frames sent since the port last sent a frame (absent in older attachments: 0). */
  silentFrames?: number;
}

/** Fresh state: a full bucket, nothing sent yet. */
export function newRawEgressState(limits: RawEgressLimits, nowMs: number): RawEgressState {
  return { bucket: newPolicerState(limits, nowMs), silentBytes: 0, silentFrames: 0 };
}

/** Whether one more frame of `bytes` may be sent now; takes the tokens and counts the bytes when it may. */
export function admitRawEgress(state: RawEgressState, limits: RawEgressLimits, bytes: number, nowMs: number): boolean {
  const silentFrames = state.silentFrames ?? 0;
  if (state.silentBytes + bytes > RAW_SILENT_BYTES || silentFrames >= RAW_SILENT_FRAMES) return false;
  if (police(state.bucket, limits, bytes, false, nowMs) !== "ok") return false;
  state.silentBytes += bytes;
  state.silentFrames = silentFrames + 1;
  return true;
}

/** The port sent a frame: it is alive, the silence bound starts over. */
export function rawPortSpoke(state: RawEgressState | undefined): void {
  if (state === undefined) return;
  state.silentBytes = 0;
  state.silentFrames = 0;
}
