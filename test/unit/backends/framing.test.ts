import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isBackendError } from "../../../client/backend.ts";
import { encodeFrames, FramingError, LengthPrefixDecoder, type HeaderBytes } from "../../../client/backends/framing.ts";

function frame(length: number, seed = length): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed + i * 7) & 0xff;
  return bytes;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function header(length: number, width: HeaderBytes): Uint8Array {
  return width === 2
    ? Uint8Array.of(length >>> 8, length & 0xff)
    : Uint8Array.of(length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff);
}

function decodeAll(decoder: LengthPrefixDecoder, chunks: readonly Uint8Array[]): { batches: Uint8Array[][]; error?: FramingError } {
  const batches: Uint8Array[][] = [];
  for (const chunk of chunks) {
    const out: Uint8Array[] = [];
    const error = decoder.push(chunk, out);
    batches.push(out);
    if (error !== undefined) return { batches, error };
  }
  return { batches };
}

describe.each([2, 4] as const)("length-prefix framing with a %i-byte header", (width) => {
  it("decodes many frames from one chunk, as views into it", () => {
    const frames = [frame(60), frame(1514), frame(14), frame(1)];
    const chunk = encodeFrames(frames, width).bytes;
    const out: Uint8Array[] = [];
    expect(new LengthPrefixDecoder(width).push(chunk, out)).toBeUndefined();
    expect(out).toEqual(frames);
    for (const view of out) expect(view.buffer).toBe(chunk.buffer); // no copy
  });

  it("uses the big-endian length on the wire", () => {
    const { bytes } = encodeFrames([frame(0x0102)], width);
    expect([...bytes.subarray(0, width)]).toEqual([...header(0x0102, width)]);
    expect(bytes.length).toBe(width + 0x0102);
  });

  it("reassembles frames split at every possible byte boundary", () => {
    const frames = [frame(60, 1), frame(300, 2), frame(14, 3)];
    const stream = encodeFrames(frames, width).bytes;
    for (let cut = 0; cut <= stream.length; cut++) {
      for (const second of [cut, Math.min(stream.length, cut + 1), Math.min(stream.length, cut + width + 3)]) {
        const decoder = new LengthPrefixDecoder(width);
        const { batches, error } = decodeAll(decoder, [stream.subarray(0, cut), stream.subarray(cut, second), stream.subarray(second)]);
        expect(error).toBeUndefined();
        expect(batches.flat()).toEqual(frames);
        expect(decoder.pendingBytes).toBe(0);
      }
    }
  });

  it("survives any chunking of any frame sequence (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 1600 }), { maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 20 }),
        (frames, sizes) => {
          const stream = encodeFrames(frames, width).bytes;
          const chunks: Uint8Array[] = [];
          let offset = 0;
          for (let i = 0; offset < stream.length; i++) {
            const size = sizes[i % sizes.length] ?? 1;
            chunks.push(stream.subarray(offset, offset + size));
            offset += size;
          }
          const { batches, error } = decodeAll(new LengthPrefixDecoder(width), chunks);
          expect(error).toBeUndefined();
          expect(batches.flat()).toEqual(frames);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("rejects a zero length, after delivering the frames before it", () => {
    const good = frame(64);
    const chunk = concat([encodeFrames([good], width).bytes, header(0, width), frame(10)]);
    const out: Uint8Array[] = [];
    const decoder = new LengthPrefixDecoder(width);
    const error = decoder.push(chunk, out);
    expect(out).toEqual([good]);
    expect(error).toBeInstanceOf(FramingError);
    expect(isBackendError(error, "framing-error")).toBe(true);
    expect(error?.length).toBe(0);
    expect(error?.message).toMatch(/zero-length/);
    // The stream is unusable afterwards: the same error again, nothing decoded.
    const later: Uint8Array[] = [];
    expect(decoder.push(encodeFrames([good], width).bytes, later)).toBe(error);
    expect(later).toEqual([]);
  });

  it("rejects an oversize length even when its header arrives split", () => {
    const decoder = new LengthPrefixDecoder(width, 1518);
    const bad = header(1519, width);
    const out: Uint8Array[] = [];
    expect(decoder.push(bad.subarray(0, 1), out)).toBeUndefined();
    const error = decoder.push(bad.subarray(1), out);
    expect(error?.length).toBe(1519);
    expect(error?.message).toMatch(/1519-byte length prefix, above the 1518-byte limit/);
  });

  it("accepts a frame of exactly the limit", () => {
    const decoder = new LengthPrefixDecoder(width, 1518);
    const out: Uint8Array[] = [];
    expect(decoder.push(encodeFrames([frame(1518)], width, 1518).bytes, out)).toBeUndefined();
    expect(out[0]?.length).toBe(1518);
  });

  it("encodes a batch into one buffer and skips empty or oversize frames", () => {
    const result = encodeFrames([frame(10), new Uint8Array(0), frame(2000), frame(20)], width, 1518);
    expect(result.encoded).toBe(2);
    expect(result.skipped).toBe(2);
    expect(result.frameBytes).toBe(30);
    expect(result.bytes.length).toBe(30 + 2 * width);
  });
});

describe("framing limits", () => {
  it("refuses a limit the header cannot express", () => {
    expect(() => new LengthPrefixDecoder(2, 65536)).toThrow(RangeError);
    expect(() => new LengthPrefixDecoder(4, 0)).toThrow(RangeError);
    expect(new LengthPrefixDecoder(2).maxFrameSize).toBe(65535);
  });

  it("reads 4-byte lengths above 2^31 without going negative", () => {
    const decoder = new LengthPrefixDecoder(4, 65535);
    const out: Uint8Array[] = [];
    const error = decoder.push(Uint8Array.of(0x80, 0, 0, 1), out);
    expect(error?.length).toBe(0x8000_0001);
  });
});
