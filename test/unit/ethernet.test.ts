import { describe, expect, it } from "vitest";
import {
  checkEthernetFrame, EthernetFrame, frameDestination, frameEtherType, frameHeaderLength, frameIsTagged,
  frameSource, frameVlanId, maxFrameSizeFor,
} from "../../datapath/ethernet.ts";
import { frame, hex, mac } from "./datapath-frames.ts";

//                 destination        source             type
const ARP_BROADCAST = "ff ff ff ff ff ff | 02 00 00 00 00 01 | 08 06";
//                 destination        source             TPID  TCI   inner type
const TAGGED_VLAN_42 = "02 00 00 00 00 02 | 02 00 00 00 00 01 | 81 00 | b0 2a | 08 00";

function mustCheck(bytes: Uint8Array): EthernetFrame {
  const result = checkEthernetFrame(bytes);
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}

describe("Ethernet II view", () => {
  it("reads destination, source and EtherType in place", () => {
    const view = mustCheck(frame(ARP_BROADCAST));
    expect(view.destination()).toBe(0xffffffffffff);
    expect(view.source()).toBe(mac("02:00:00:00:00:01"));
    expect(view.etherType()).toBe(0x0806);
    expect(view.isTagged()).toBe(false);
    expect(view.vid()).toBe(0);
    expect(view.pcp()).toBe(0);
    expect(view.dei()).toBe(false);
    expect(view.payloadEtherType()).toBe(0x0806);
    expect(view.payload().length).toBe(60 - 14);
  });

  it("accepts a bare 14-byte header and rejects 13 bytes as runt", () => {
    expect(checkEthernetFrame(hex(ARP_BROADCAST)).ok).toBe(true);
    const result = checkEthernetFrame(hex("ff ff ff ff ff ff 02 00 00 00 00 01 08"));
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe("runt");
      expect(result.error.message).toContain("13 bytes");
    }
  });

  it("rejects an empty buffer as runt", () => {
    const result = checkEthernetFrame(new Uint8Array(0));
    expect(result.ok ? "ok" : result.error.code).toBe("runt");
  });
});

describe("802.1Q tag", () => {
  it("parses PCP, DEI, VID and the inner EtherType (TCI b0 2a = pcp 5, dei 1, vid 42)", () => {
    const view = mustCheck(frame(TAGGED_VLAN_42));
    expect(view.etherType()).toBe(0x8100);
    expect(view.isTagged()).toBe(true);
    expect(view.pcp()).toBe(5);
    expect(view.dei()).toBe(true);
    expect(view.vid()).toBe(42);
    expect(view.payloadEtherType()).toBe(0x0800);
    expect(view.payload().length).toBe(60 - 18);
  });

  it("reads the full 12-bit VID (TCI 0f ff = vid 4095, pcp 0, dei 0)", () => {
    const view = mustCheck(frame("02 00 00 00 00 02 02 00 00 00 00 01 81 00 0f ff 86 dd"));
    expect(view.vid()).toBe(4095);
    expect(view.pcp()).toBe(0);
    expect(view.dei()).toBe(false);
  });

  it("needs 18 bytes: a tagged 17-byte frame is truncated-tag", () => {
    const result = checkEthernetFrame(hex("02 00 00 00 00 02 02 00 00 00 00 01 81 00 00 2a 08"));
    expect(result.ok ? "ok" : result.error.code).toBe("truncated-tag");
    expect(checkEthernetFrame(hex(TAGGED_VLAN_42)).ok).toBe(true);
  });

  it("does not treat 0x88a8 (802.1ad) or 0x0081 as an 802.1Q tag", () => {
    expect(frameIsTagged(frame("02 00 00 00 00 02 02 00 00 00 00 01 88 a8 00 2a 08 00"))).toBe(false);
    expect(frameIsTagged(frame("02 00 00 00 00 02 02 00 00 00 00 01 00 81 00 2a 08 00"))).toBe(false);
  });
});

describe("hot-path functions", () => {
  it("agree with the view", () => {
    for (const header of [ARP_BROADCAST, TAGGED_VLAN_42]) {
      const bytes = frame(header);
      const view = EthernetFrame.unchecked(bytes);
      expect(frameDestination(bytes)).toBe(view.destination());
      expect(frameSource(bytes)).toBe(view.source());
      expect(frameEtherType(bytes)).toBe(view.etherType());
      expect(frameVlanId(bytes)).toBe(view.vid());
      expect(frameHeaderLength(bytes)).toBe(view.isTagged() ? 18 : 14);
    }
  });

  it("frameVlanId is 0 for untagged frames", () => {
    expect(frameVlanId(frame(ARP_BROADCAST))).toBe(0);
    expect(frameVlanId(frame(TAGGED_VLAN_42))).toBe(42);
  });
});

describe("maximum frame size", () => {
  it("defaults to 1514 untagged and 1518 tagged", () => {
    expect(maxFrameSizeFor()).toBe(1514);
    expect(maxFrameSizeFor(undefined, true)).toBe(1518);
  });

  it("adds the 4-byte tag to a configured jumbo maximum", () => {
    expect(maxFrameSizeFor(9014, false)).toBe(9014);
    expect(maxFrameSizeFor(65535, true)).toBe(65539);
  });
});
