// Keeps docs/protocol.md honest: every hex example in it decodes to the
// records listed here and re-encodes to the same bytes, and its tables of
// record types, feature bits and close codes match the exported constants.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLOSE_CODE_INFO, isKnownCloseCode } from "../../../datapath/tunnel/close-codes.ts";
import { decodeMessage, encodeMessage, RECORD_TYPE_CODES } from "../../../datapath/tunnel/codec.ts";
import { Feature } from "../../../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../../../datapath/tunnel/records.ts";
import { hex, toHex } from "./hex.ts";

const DOC = readFileSync(new URL("../../../docs/protocol.md", import.meta.url), "utf8");

const MAC_A = [0x02, 0, 0, 0, 0, 0x01];
const MAC_B = [0x02, 0, 0, 0, 0, 0x02];
const BROADCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const NO_MAC = [0, 0, 0, 0, 0, 0];

/** A 42-byte ARP frame (no padding). */
function arp(op: number, sender: number[], senderIp: number[], target: number[], targetIp: number[], destination: number[]): Uint8Array {
  return Uint8Array.from([...destination, ...sender, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op, ...sender, ...senderIp, ...target, ...targetIp]);
}

const EXPECTED: Record<string, TunnelRecord[]> = {
  "hello": [{
    type: "hello", minVersion: 1, maxVersion: 1, features: 0x4f, portKind: "member", macs: [0x02_00_00_00_00_01],
    txWindow: 256, rxQueue: 256, clientName: "tap0", clientVersion: "0.1.0",
  }],
  "welcome": [{
    type: "welcome", version: 1, features: 0x4f, portId: 3, maxFrameSize: 1514, txWindow: 256, rxQueue: 256,
    sessionId: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i), resumeToken: Uint8Array.of(0x5e, 0xc2, 0xe7, 1, 2, 3, 4, 5),
    macs: [0x02_00_00_00_00_01],
  }],
  "refuse": [{ type: "refuse", code: 4009, reason: "02:00:00:00:00:01 is in use" }],
  "rx-post": [{ type: "rx-post", count: 256, bufferSize: 1514 }],
  "tx-batch": [
    { type: "tx", id: 0, flags: 0, frame: arp(1, MAC_A, [10, 0, 0, 1], NO_MAC, [10, 0, 0, 2], BROADCAST) },
    { type: "tx", id: 1, flags: 0, frame: arp(1, MAC_A, [10, 0, 0, 1], NO_MAC, [10, 0, 0, 1], BROADCAST) },
  ],
  "tx-complete": [
    { type: "tx-complete", firstId: 65534, count: 3, status: 0 },
    { type: "tx-complete", firstId: 1, count: 1, status: 4 },
    { type: "tx-complete", firstId: 2, count: 30, status: 0 },
  ],
  "rx": [{ type: "rx", flags: 0, frame: arp(2, MAC_B, [10, 0, 0, 2], MAC_A, [10, 0, 0, 1], MAC_A) }],
  "ping": [{ type: "ping", seq: 7, timestamp: 1767225600000.5 }],
  "tx-gso": [{ type: "tx", id: 5, flags: 0x01, frame: Uint8Array.from([
    0x01, 0x01, 0x36, 0x00, 0x02, 0x00, 0x22, 0x00, 0x10, 0x00, ...MAC_B, ...MAC_A, 0x08, 0x00,
    0x45, 0x00, 0x00, 0x2c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x26, 0xc9, 10, 0, 0, 1, 10, 0, 0, 2,
    0x30, 0x39, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0x14, 0x21, 0, 0, 0x61, 0x62, 0x63, 0x64,
  ]) }],
};

/** The `<!-- example: name -->` + ```hex blocks of the document. */
function examples(): Map<string, string> {
  const found = new Map<string, string>();
  for (const match of DOC.matchAll(/<!-- example: ([a-z-]+) -->\s*```hex\n([\s\S]*?)```/g)) {
    found.set(match[1] as string, match[2] as string);
  }
  return found;
}

/** Rows of a markdown table whose first cell matches `first`. */
function rows(first: RegExp): string[][] {
  return DOC.split("\n")
    .filter((line) => line.startsWith("|"))
    .map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim()))
    .filter((cells) => first.test(cells[0] ?? ""));
}

describe("docs/protocol.md", () => {
  it("has exactly the expected hex examples", () => {
    expect([...examples().keys()].sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(Object.keys(EXPECTED))("example %s decodes to its records and re-encodes to the same bytes", (name) => {
    const bytes = hex(examples().get(name) ?? "");
    expect(decodeMessage(bytes)).toEqual({ ok: true, value: EXPECTED[name] });
    expect(toHex(encodeMessage(EXPECTED[name] ?? []))).toBe(toHex(bytes));
  });

  it("lists every record type with its code", () => {
    const table = rows(/^`0x[0-9a-f]{2}`$/).filter((cells) => /^[a-z-]+$/.test(cells[1] ?? ""));
    const documented = Object.fromEntries(table.map((cells) => [cells[1], parseInt((cells[0] ?? "").slice(3, 5), 16)]));
    expect(documented).toEqual(RECORD_TYPE_CODES);
  });

  it("lists every feature bit", () => {
    const table = rows(/^\d+$/).filter((cells) => /^`0x[0-9a-f]+`$/.test(cells[1] ?? ""));
    const documented = Object.fromEntries(table.map((cells) => [cells[2], parseInt((cells[1] ?? "").slice(1, -1), 16)]));
    expect(documented).toEqual({ ...Feature });
  });

  it("lists every close code with its name and reconnect advice", () => {
    const table = rows(/^(1000|4\d{3})$/).filter((cells) => cells[2] === "yes" || cells[2] === "no");
    const documented = table.map((cells) => ({ code: Number(cells[0]), name: cells[1], reconnect: cells[2] === "yes" }));
    const exported = Object.entries(CLOSE_CODE_INFO).map(([code, info]) => ({ code: Number(code), name: info.name, reconnect: info.reconnect }));
    expect(documented).toEqual(exported);
    expect(documented.every(({ code }) => isKnownCloseCode(code))).toBe(true);
  });
});
