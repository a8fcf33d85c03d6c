// datapath/offload.ts: virtio-net header parsing, checksum completion and software GSO segmentation.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkOffload, completeChecksum, isTrivialVnetHeader, MAX_GSO_SEGMENTS, parseVnetHeader, segmentFrame, segmentWithHeader, VNET_HDR_LEN, VnetFlag, VnetGso,
  withZeroVnetHeader, writeVnetHeader, type VnetHeader,
} from "../../datapath/offload.ts";

const SRC = [0x02, 0, 0, 0, 0, 0x01];
const DST = [0x02, 0, 0, 0, 0, 0x02];

/** Independent RFC 1071 sum (big-endian words, odd byte padded). */
function sum16(bytes: Uint8Array | number[], initial = 0): number {
  let sum = initial;
  for (let i = 0; i < bytes.length; i += 2) sum += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

interface Spec { v6: boolean; vlan: boolean; udp: boolean; payload: Uint8Array; flags: number; seq: number; ipId: number }

/** Builds an Ethernet/IP/TCP-or-UDP frame with a partial (pseudo-header only) L4 checksum, as a kernel hands it to a TAP. */
function superFrame(spec: Spec): { frame: Uint8Array; l3: number; l4: number; headers: number } {
  const eth = spec.vlan ? [...DST, ...SRC, 0x81, 0x00, 0x00, 0x07, ...(spec.v6 ? [0x86, 0xdd] : [0x08, 0x00])] : [...DST, ...SRC, ...(spec.v6 ? [0x86, 0xdd] : [0x08, 0x00])];
  const l3 = eth.length;
  const l4len = (spec.udp ? 8 : 32) + spec.payload.length;
  const proto = spec.udp ? 17 : 6;
  const ip = spec.v6
    ? [0x60, 0, 0, 0, l4len >> 8, l4len & 0xff, proto, 64, 0xfd, ...Array<number>(14).fill(0), 1, 0xfd, ...Array<number>(14).fill(0), 2]
    : [0x45, 0, (20 + l4len) >> 8, (20 + l4len) & 0xff, spec.ipId >> 8, spec.ipId & 0xff, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
  if (!spec.v6) { const c = ~sum16(ip) & 0xffff; ip[10] = c >> 8; ip[11] = c & 0xff; }
  const l4hdr = spec.udp
    ? [0x30, 0x39, 0x14, 0x51, l4len >> 8, l4len & 0xff, 0, 0]
    : [0x30, 0x39, 0x14, 0x51, spec.seq >>> 24, (spec.seq >>> 16) & 0xff, (spec.seq >>> 8) & 0xff, spec.seq & 0xff, 0, 0, 0, 1, 0x80, spec.flags, 0xff, 0xff, 0, 0, 0, 0,
      1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
  const frame = Uint8Array.from([...eth, ...ip, ...l4hdr, ...spec.payload]);
  const l4 = l3 + ip.length;
  const addrs = spec.v6 ? frame.subarray(l3 + 8, l3 + 40) : frame.subarray(l3 + 12, l3 + 20);
  const pseudo = sum16(addrs, proto + l4len);
  const field = l4 + (spec.udp ? 6 : 16);
  frame[field] = pseudo >> 8; frame[field + 1] = pseudo & 0xff;
  return { frame, l3, l4, headers: l4 + l4hdr.length };
}

/** True when the segment's IPv4 header (if any) and L4 checksums verify. */
function checksumsVerify(seg: Uint8Array, l3: number, l4: number, v6: boolean, udp: boolean): boolean {
  if (!v6 && sum16(seg.subarray(l3, l4)) !== 0xffff) return false;
  const addrs = v6 ? seg.subarray(l3 + 8, l3 + 40) : seg.subarray(l3 + 12, l3 + 20);
  return sum16(seg.subarray(l4), sum16(addrs, (udp ? 17 : 6) + (seg.length - l4))) === 0xffff;
}

/** The header a kernel would write for a GSO super-frame. */
function gsoHeader(spec: Spec, l4: number, headers: number, mss: number): VnetHeader {
  const gsoType = spec.udp ? VnetGso.UdpL4 : spec.v6 ? VnetGso.TcpV6 : VnetGso.TcpV4;
  return { flags: VnetFlag.NeedsCsum, gsoType, hdrLen: headers, gsoSize: mss, csumStart: l4, csumOffset: spec.udp ? 6 : 16 };
}

const be16 = (b: Uint8Array, at: number): number => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
const be32 = (b: Uint8Array, at: number): number => (be16(b, at) * 0x10000 + be16(b, at + 2)) >>> 0;

describe("virtio-net header", () => {
  it("parses little-endian fields and writes them back byte for byte", () => {
    const bytes = Uint8Array.of(0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00);
    const parsed = parseVnetHeader(bytes);
    expect(parsed).toEqual({ ok: true, value: { flags: 1, gsoType: 1, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 } });
    const out = new Uint8Array(VNET_HDR_LEN);
    if (parsed.ok) writeVnetHeader(parsed.value, out);
    expect(out).toEqual(bytes);
  });

  it("rejects truncated headers, unknown flags and unsupported gso types with typed errors", () => {
    expect(parseVnetHeader(new Uint8Array(9))).toMatchObject({ ok: false, error: { code: "truncated" } });
    expect(parseVnetHeader(Uint8Array.of(0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toMatchObject({ ok: false, error: { code: "unknown-flags" } });
    expect(parseVnetHeader(Uint8Array.of(0, VnetGso.Udp, 0, 0, 0, 0, 0, 0, 0, 0))).toMatchObject({ ok: false, error: { code: "unsupported-gso" } });
    expect(parseVnetHeader(Uint8Array.of(1, VnetGso.TcpV4 | VnetGso.Ecn, 0, 0, 0, 0, 0, 0, 0, 0)).ok).toBe(true);
  });

  it("tells trivial headers and prepends zero headers", () => {
    expect(isTrivialVnetHeader(new Uint8Array(10))).toBe(true);
    expect(isTrivialVnetHeader(Uint8Array.of(VnetFlag.DataValid, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toBe(true);
    expect(isTrivialVnetHeader(Uint8Array.of(VnetFlag.NeedsCsum, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toBe(false);
    expect(withZeroVnetHeader(Uint8Array.of(7, 8))).toEqual(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 8));
  });
});

describe("segmentFrame", () => {
  it("splits a literal TCPv4 super-frame of 10 payload bytes at mss 4 into 4+4+2", () => {
    const spec: Spec = { v6: false, vlan: false, udp: false, payload: Uint8Array.from("0123456789", (c) => c.charCodeAt(0)), flags: 0x80 | 0x18 | 0x01, seq: 0xfffffffe, ipId: 0xffff };
    const { frame, l3, l4, headers } = superFrame(spec);
    expect(headers).toBe(66);
    const result = segmentWithHeader(Uint8Array.from([...Uint8Array.of(1, 1, 66, 0, 4, 0, 34, 0, 16, 0), ...frame]));
    if (!result.ok) throw new Error(result.error.message);
    const segs = result.value;
    expect(segs.map((s) => s.length)).toEqual([70, 70, 68]);
    expect(segs.map((s) => be16(s, l3 + 2))).toEqual([56, 56, 54]);
    expect(segs.map((s) => be16(s, l3 + 4))).toEqual([0xffff, 0, 1]);
    expect(segs.map((s) => be32(s, l4 + 4))).toEqual([0xfffffffe, 2, 6]);
    expect(segs.map((s) => s[l4 + 13])).toEqual([0x90, 0x10, 0x19]);
    expect(segs.map((s) => String.fromCharCode(...s.subarray(66)))).toEqual(["0123", "4567", "89"]);
    expect(segs.every((s) => checksumsVerify(s, l3, l4, false, false))).toBe(true);
  });

  it("completes a NEEDS_CSUM checksum without GSO and leaves the original untouched", () => {
    const spec: Spec = { v6: false, vlan: false, udp: false, payload: Uint8Array.of(1, 2, 3), flags: 0x18, seq: 1, ipId: 1 };
    const { frame, l3, l4 } = superFrame(spec);
    const before = frame.slice();
    const done = completeChecksum({ flags: VnetFlag.NeedsCsum, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: l4, csumOffset: 16 }, frame);
    if (!done.ok) throw new Error(done.error.message);
    expect(checksumsVerify(done.value, l3, l4, false, false)).toBe(true);
    expect(frame).toEqual(before);
  });

  it("rejects bad offsets, a zero gso_size, non-IP and mismatched gso types", () => {
    const { frame, l4, headers } = superFrame({ v6: false, vlan: false, udp: false, payload: new Uint8Array(100), flags: 0, seq: 0, ipId: 0 });
    const base: VnetHeader = { flags: 1, gsoType: VnetGso.TcpV4, hdrLen: headers, gsoSize: 10, csumStart: l4, csumOffset: 16 };
    expect(segmentFrame({ ...base, gsoType: 0, csumStart: 5000 }, frame)).toMatchObject({ ok: false, error: { code: "bad-checksum-offsets" } });
    expect(segmentFrame({ ...base, gsoSize: 0 }, frame)).toMatchObject({ ok: false, error: { code: "bad-gso-size" } });
    expect(segmentFrame({ ...base, gsoType: VnetGso.TcpV6 }, frame)).toMatchObject({ ok: false, error: { code: "unsupported-gso" } });
    const arp = frame.slice(); arp[12] = 0x08; arp[13] = 0x06;
    expect(segmentFrame(base, arp)).toMatchObject({ ok: false, error: { code: "not-ip" } });
  });

  it("properties: payloads concatenate to the original, checksums verify, sizes fit, sequence numbers and flags are right", () => {
    const arbitrary = fc.record({
      v6: fc.boolean(), vlan: fc.boolean(), udp: fc.boolean(), payload: fc.uint8Array({ maxLength: 9000 }),
      flags: fc.integer({ min: 0, max: 0xff }), seq: fc.integer({ min: 0, max: 0xffffffff }), ipId: fc.integer({ min: 0, max: 0xffff }),
      mss: fc.integer({ min: 1, max: 1500 }),
    });
    fc.assert(fc.property(arbitrary, (spec) => {
      const { frame, l3, l4, headers } = superFrame(spec);
      const result = segmentFrame(gsoHeader(spec, l4, headers, spec.mss), frame);
      if (!result.ok) return false;
      const segs = result.value;
      const joined = segs.flatMap((s) => [...s.subarray(headers)]);
      expect(Uint8Array.from(joined)).toEqual(spec.payload);
      expect(segs.length).toBe(Math.max(1, Math.ceil(spec.payload.length / spec.mss)));
      segs.forEach((s, i) => {
        expect(s.length).toBeLessThanOrEqual(headers + spec.mss);
        expect(s.subarray(0, l3)).toEqual(frame.subarray(0, l3));
        expect(checksumsVerify(s, l3, l4, spec.v6, spec.udp)).toBe(true);
        if (!spec.v6) expect(be16(s, l3 + 4)).toBe((spec.ipId + i) & 0xffff);
        if (spec.udp) return;
        expect(be32(s, l4 + 4)).toBe((spec.seq + i * spec.mss) >>> 0);
        const last = i === segs.length - 1;
        const want = spec.flags & (last ? 0xff : ~0x09) & (i === 0 ? 0xff : ~0x80);
        expect(s[l4 + 13]).toBe(want);
      });
      return true;
    }), { numRuns: 300 });
  });
});

describe("checkOffload (what a relay accepts at ingress)", () => {
  const { frame, l4, headers } = superFrame({ v6: false, vlan: false, udp: false, payload: new Uint8Array(60_000), flags: 0, seq: 0, ipId: 0 });
  const header = (gsoSize: number): VnetHeader => ({ flags: 1, gsoType: VnetGso.TcpV4, hdrLen: headers, gsoSize, csumStart: l4, csumOffset: 16 });

  it("refuses a gso_size that would cut the super-frame into more than MAX_GSO_SEGMENTS segments", () => {
    expect(MAX_GSO_SEGMENTS).toBe(128);
    const smallest = Math.ceil(60_000 / MAX_GSO_SEGMENTS);
    for (const small of [1, 88, smallest - 1]) {
      expect(checkOffload(header(small), frame)).toMatchObject({ ok: false, error: { code: "bad-gso-size" } });
    }
    expect(checkOffload(header(smallest), frame)).toEqual({ ok: true, value: true });
    expect(checkOffload(header(524), frame)).toEqual({ ok: true, value: true });
  });

  it("accepts exactly what segments into at most MAX_GSO_SEGMENTS frames", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 0xffff }), (gsoSize) => {
      const accepted = checkOffload(header(gsoSize), frame).ok;
      expect(accepted).toBe(Math.ceil(60_000 / gsoSize) <= MAX_GSO_SEGMENTS);
      if (!accepted) return;
      const segments = segmentFrame(header(gsoSize), frame);
      expect(segments.ok && segments.value.length <= MAX_GSO_SEGMENTS).toBe(true);
    }), { numRuns: 200 });
  });
});
