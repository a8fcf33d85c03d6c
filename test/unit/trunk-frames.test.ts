// The packed frames of a trunk call (datapath/cells/trunk-frames.ts): 5-byte header (flags, u32 BE
// length) before each frame; a cut header or a length past the end refuses the whole array.
import { describe, expect, it } from "vitest";
import { packTrunkFrames, unpackTrunkFrames } from "../../datapath/cells/trunk-frames.ts";
import { hex } from "./datapath-frames.ts";

describe("packed trunk frames", () => {
  it("packs each frame behind its flags and length", () => {
    const packed = packTrunkFrames([
      { ingress: 7, flags: 0x01, frame: hex("aa bb cc") },
      { ingress: 9, flags: 0x04, frame: hex("dd") },
    ]);
    expect(packed).toEqual(hex("01 00 00 00 03 aa bb cc 04 00 00 00 01 dd"));
    const unpacked = unpackTrunkFrames(packed);
    if (!unpacked.ok) throw new Error(unpacked.error.message);
    expect(unpacked.value).toEqual([{ flags: 0x01, frame: hex("aa bb cc") }, { flags: 0x04, frame: hex("dd") }]);
  });

  it("reads frames as views into the array, and no frames from an empty one", () => {
    const packed = hex("00 00 00 00 02 11 22");
    const unpacked = unpackTrunkFrames(packed);
    expect(unpacked.ok && unpacked.value[0]?.frame.buffer).toBe(packed.buffer);
    expect(unpackTrunkFrames(new Uint8Array(0))).toEqual({ ok: true, value: [] });
  });

  it("refuses a cut header and a length past the end", () => {
    expect(unpackTrunkFrames(hex("01 00 00")).ok).toBe(false);
    const long = unpackTrunkFrames(hex("01 00 00 00 05 aa bb"));
    expect(long.ok ? "" : long.error.code).toBe("malformed-frames");
  });
});
