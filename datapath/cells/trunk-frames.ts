/**
 * The frames of one trunk call packed into one byte array (docs/cells.md §0,
 * difference 3): per frame a 5-byte header, then the frame.
 *
 *   offset 0  u8      flags (TrunkFrameFlag: Flooded 0x01, MirrorOnly 0x02, VnetHeader 0x04)
 *   offset 1  u32 BE  length of the frame that follows (a GSO super-frame with its header may pass 64 KiB)
 *
 * Structured clone (what Durable Object RPC does to a call's arguments) of one
 * byte array costs a tenth of what it costs for one object and one view per
 * frame; the receiver reads the frames as views into the array, without copies.
 */
import { fail, ok, type Result } from "../result.ts";
import type { TrunkFrame } from "./trunk-records.ts";

/** Bytes in front of each frame. */
export const TRUNK_FRAME_HEADER_BYTES = 5;

/** A frame a trunk call brought: its flags and its bytes (a view into the call's array). */
export interface PackedFrame {
  flags: number;
  frame: Uint8Array;
}

/** Packs `frames` (ingress ids stay behind: only the sender's share rules use them). */
export function packTrunkFrames(frames: readonly TrunkFrame[]): Uint8Array {
  let size = 0;
  for (const { frame } of frames) size += TRUNK_FRAME_HEADER_BYTES + frame.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const { flags, frame } of frames) {
    view.setUint8(at, flags);
    view.setUint32(at + 1, frame.length);
    out.set(frame, at + TRUNK_FRAME_HEADER_BYTES);
    at += TRUNK_FRAME_HEADER_BYTES + frame.length;
  }
  return out;
}

/** The frames of a packed array, or `malformed-frames` when a header or a length runs past its end. */
export function unpackTrunkFrames(packed: Uint8Array): Result<PackedFrame[], "malformed-frames"> {
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const frames: PackedFrame[] = [];
  let at = 0;
  while (at < packed.length) {
    if (at + TRUNK_FRAME_HEADER_BYTES > packed.length) return fail("malformed-frames", `a trunk frame header at byte ${at} is cut off`);
    const length = view.getUint32(at + 1);
    const start = at + TRUNK_FRAME_HEADER_BYTES;
    if (start + length > packed.length) return fail("malformed-frames", `a trunk frame of ${length} bytes at byte ${at} runs past the ${packed.length} bytes of its call`);
    frames.push({ flags: view.getUint8(at), frame: packed.subarray(start, start + length) });
    at = start + length;
  }
  return ok(frames);
}
