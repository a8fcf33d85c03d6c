import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  captureHeader, capturePacket, captureTrailer, concatBytes, describeCaptureRecord, matchesCaptureFilter, type CaptureRecord,
} from "../../datapath/capture.ts";
import {
  enhancedPacketBlock, interfaceDescriptionBlock, interfaceStatisticsBlock, LINKTYPE_ETHERNET, packetFlags, sectionHeaderBlock,
} from "../../datapath/pcapng.ts";
import { RxFlag } from "../../datapath/tunnel/constants.ts";
import { hex, toHex } from "./tunnel/hex.ts";

describe("pcapng blocks (draft-ietf-opsawg-pcapng, little-endian)", () => {
  it("writes a section header with unknown section length and no options", () => {
    expect(toHex(sectionHeaderBlock())).toBe(toHex(hex(`
      0a 0d 0d 0a  1c 00 00 00        # type SHB, total length 28
      4d 3c 2b 1a                     # byte-order magic
      01 00 00 00                     # version 1.0
      ff ff ff ff ff ff ff ff         # section length -1: not specified
      1c 00 00 00                     # total length again
    `)));
  });

  it("pads a text option to 32 bits and closes the options with opt_endofopt", () => {
    expect(toHex(sectionHeaderBlock({ userApplication: "edge" }).subarray(24))).toBe(toHex(hex(`
      04 00 04 00  65 64 67 65        # shb_userappl (4), 4 bytes "edge"
      00 00 00 00                     # opt_endofopt
      28 00 00 00                     # total length 40
    `)));
    expect(toHex(sectionHeaderBlock({ comment: "abcde" }).subarray(24, 36))).toBe(toHex(hex("01 00 05 00  61 62 63 64 65 00 00 00")));
  });

  it("describes an Ethernet interface with its timestamp resolution", () => {
    expect(toHex(interfaceDescriptionBlock({ linkType: LINKTYPE_ETHERNET, snapLength: 65535, resolution: "us" }))).toBe(toHex(hex(`
      01 00 00 00  20 00 00 00        # type IDB, total length 32
      01 00 00 00                     # LINKTYPE_ETHERNET, reserved
      ff ff 00 00                     # snap length 65535
      09 00 01 00  06 00 00 00        # if_tsresol (9) = 10^-6 s, padded
      00 00 00 00                     # opt_endofopt
      20 00 00 00
    `)));
    expect(interfaceDescriptionBlock({ linkType: 1, snapLength: 0, resolution: "ns" })[20]).toBe(9);
  });

  it("writes an enhanced packet: split timestamp, lengths, padded data, epb_flags", () => {
    const block = enhancedPacketBlock({ interfaceId: 0, timestamp: 0x1_0000_0002, data: hex("aa bb cc"), flags: packetFlags("inbound", "broadcast") });
    expect(toHex(block)).toBe(toHex(hex(`
      06 00 00 00  30 00 00 00        # type EPB, total length 48
      00 00 00 00                     # interface 0
      01 00 00 00  02 00 00 00        # timestamp high, low
      03 00 00 00  03 00 00 00        # captured, original length
      aa bb cc 00                     # data, padded
      02 00 04 00  0d 00 00 00        # epb_flags: inbound (01) | broadcast (011 << 2)
      00 00 00 00
      30 00 00 00
    `)));
  });

  it("writes interface statistics: timestamps as two words, counts as one u64", () => {
    const block = interfaceStatisticsBlock({ interfaceId: 0, timestamp: 5, startTime: 0x2_0000_0001, received: 7, dropped: 0x1_0000_0001 });
    expect(toHex(block)).toBe(toHex(hex(`
      05 00 00 00  40 00 00 00        # type ISB, total length 64
      00 00 00 00                     # interface 0
      00 00 00 00  05 00 00 00        # timestamp
      02 00 08 00  02 00 00 00 01 00 00 00   # isb_starttime: high 2, low 1
      04 00 08 00  07 00 00 00 00 00 00 00   # isb_ifrecv 7
      05 00 08 00  01 00 00 00 01 00 00 00   # isb_ifdrop 2^32 + 1 (little-endian u64)
      00 00 00 00
      40 00 00 00
    `)));
  });
});

/** tshark and capinfos come with Debian's tshark package (.ci/run installs it). */
const hasTshark = (() => {
  try {
    execFileSync("tshark", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

const ARP_BROADCAST = hex(`
  ff ff ff ff ff ff  02 00 00 00 00 01  08 06
  00 01 08 00 06 04 00 01  02 00 00 00 00 01  0a 00 00 01  00 00 00 00 00 00  0a 00 00 02
`);
const TAGGED_UNICAST = hex("02 00 00 00 00 02  02 00 00 00 00 01  81 00 00 0a  08 00  45 00");

function record(frame: Uint8Array, ingressPort: number | null, egressPort: number | null = null, rxFlags: number = RxFlag.Mirrored): CaptureRecord {
  return { frame, rxFlags, timestampUs: 1_700_000_000_123_456, ingressPort, egressPort };
}

describe("capture records", () => {
  it("names the ingress port and the RX flags in the packet comment", () => {
    expect(describeCaptureRecord(record(ARP_BROADCAST, 3, null, RxFlag.Flooded | RxFlag.Mirrored))).toBe("ingress port 3, flooded, mirrored");
    expect(describeCaptureRecord(record(ARP_BROADCAST, null, null, 0))).toBe("ingress port unknown");
  });

  it("filters by port (ingress or known egress), MAC (either side) and VLAN tag", () => {
    expect(matchesCaptureFilter(record(TAGGED_UNICAST, 1, 2), {})).toBe(true);
    expect(matchesCaptureFilter(record(TAGGED_UNICAST, 1, 2), { port: 2 })).toBe(true);
    expect(matchesCaptureFilter(record(TAGGED_UNICAST, 1, 2), { port: 3 })).toBe(false);
    expect(matchesCaptureFilter(record(TAGGED_UNICAST, 1, 2), { mac: 0x02_00_00_00_00_02 })).toBe(true);
    expect(matchesCaptureFilter(record(ARP_BROADCAST, 1), { mac: 0x02_00_00_00_00_02 })).toBe(false);
    expect(matchesCaptureFilter(record(TAGGED_UNICAST, 1, 2), { vlan: 10 })).toBe(true);
    expect(matchesCaptureFilter(record(TAGGED_UNICAST, 1, 2), { vlan: 11 })).toBe(false);
    expect(matchesCaptureFilter(record(ARP_BROADCAST, 1), { vlan: 10 })).toBe(false);
    expect(matchesCaptureFilter(record(hex("ff ff"), 1), { port: 1 })).toBe(false);
  });

  it.skipIf(!hasTshark)("produces a file tshark reads: frames, comments, flags and the closing statistics", () => {
    const file = concatBytes(
      captureHeader("lab", "127.0.0.1:8787", "edgelan test"),
      capturePacket(record(ARP_BROADCAST, 3, null, RxFlag.Flooded | RxFlag.Mirrored)),
      capturePacket({ ...record(TAGGED_UNICAST, 4, 3), timestampUs: 1_700_000_000_123_999 }),
      captureTrailer({ startUs: 1_700_000_000_000_000, endUs: 1_700_000_001_000_000, received: 3, dropped: 1, written: 2, comment: "test" }),
    );
    const dir = mkdtempSync(join(tmpdir(), "edgelan-pcapng-"));
    try {
      const path = join(dir, "capture.pcapng");
      writeFileSync(path, file);
      const fields = execFileSync("tshark", [
        "-r", path, "-T", "fields", "-E", "separator=|", "-e", "frame.time_epoch", "-e", "eth.src", "-e", "frame.comment", "-e", "vlan.id", "-e", "arp.opcode",
      ], { encoding: "utf8" }).trim().split("\n");
      expect(fields).toEqual([
        "1700000000.123456000|02:00:00:00:00:01|ingress port 3, flooded, mirrored||1",
        "1700000000.123999000|02:00:00:00:00:01|ingress port 4, mirrored|10|",
      ]);
      const info = execFileSync("capinfos", [path], { encoding: "utf8" });
      expect(info).toMatch(/Number of packets:\s+2\b/);
      expect(info).toMatch(/Capture application:\s+edgelan test/);
      expect(info).toMatch(/Name = edgelan:lab/);
      expect(info).toMatch(/Time precision = microseconds/);
      expect(info).toMatch(/Number of stat entries = 1/); // the closing statistics block
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
