// The capture recorder and its monitor port against a segment played by the
// test: the HELLO it sends, frames written in order with ingress ports looked up
// once, what it does with a stats reply that never comes, and a flood of
// unknown source MACs (one lookup, not one per frame).
import { describe, expect, it } from "vitest";
import { AdminApi, type SegmentView } from "../../client/admin-api.ts";
import { CaptureRecorder } from "../../client/capture.ts";
import type { SocketFactory, SocketLike } from "../../client/session.ts";
import { newPortCounters } from "../../datapath/counters.ts";
import { BlockType } from "../../datapath/pcapng.ts";
import { decodeMessage, encodeMessage } from "../../datapath/tunnel/codec.ts";
import { Feature, RxFlag } from "../../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../../datapath/tunnel/records.ts";
import { hex } from "./tunnel/hex.ts";

/** The segment's side of one monitor connection. */
class SegmentSide implements SocketLike {
  binaryType = "";
  protocol = "edgelan.v1";
  readyState = 0;
  readonly received: TunnelRecord[][] = [];
  onopen: SocketLike["onopen"] = null;
  onmessage: SocketLike["onmessage"] = null;
  onclose: SocketLike["onclose"] = null;
  onerror: SocketLike["onerror"] = null;
  /** Answer stats requests (false: stay silent, as a stuck segment would). */
  answerStats = true;

  constructor(readonly url: string, readonly headers: Record<string, string>) {
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.({});
    });
  }

  send(data: Uint8Array | string): void {
    if (typeof data === "string") return;
    const decoded = decodeMessage(data);
    if (!decoded.ok) throw new Error(decoded.error.message);
    this.received.push(decoded.value);
    for (const record of decoded.value) {
      if (record.type === "hello") this.deliver([welcomeRecord()]);
      if (record.type === "stats-request" && this.answerStats) {
        const counters = newPortCounters();
        counters.drops[11] = 4; // rx-queue-full
        this.deliver([{ type: "stats-reply", seq: record.seq, counters, creditsAvailable: 0, queuedFrames: 0, queuedBytes: 0 }]);
      }
    }
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }

  deliver(records: TunnelRecord[]): void {
    const bytes = encodeMessage(records);
    queueMicrotask(() => this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) }));
  }
}

function welcomeRecord(): TunnelRecord {
  return {
    type: "welcome", version: 1, features: Feature.RxQueue | Feature.Stats, portId: 9, maxFrameSize: 1514, txWindow: 1, rxQueue: 256,
    sessionId: new Uint8Array(16), resumeToken: new Uint8Array(0), macs: [],
  };
}

/** The forwarding table as the admin API returns it; counts lookups. */
class TableApi extends AdminApi {
  lookups = 0;
  constructor(private readonly entries: Array<[mac: string, port: number]>) {
    super("http://relay.test", "admin");
  }
  override async segment(name: string): Promise<SegmentView> {
    this.lookups++;
    return {
      name, config: {}, ports: [], counters: {}, queuedBytes: 0,
      forwardingTable: { learned: 0, static: this.entries.length, entries: this.entries.map(([mac, port]) => ({ mac, vlan: null, port, static: true, ageMs: null })) },
    };
  }
}

function frameFrom(source: number): Uint8Array {
  const frame = hex("ff ff ff ff ff ff  02 00 00 00 00 00  08 06  00 01 08 00 06 04 00 01");
  frame[11] = source;
  return frame;
}

/** Splits a pcapng byte stream into block types and, for packet blocks, their comments. */
function blocks(chunks: Uint8Array[]): Array<{ type: number; comment?: string }> {
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  const view = new DataView(bytes.buffer);
  const out: Array<{ type: number; comment?: string }> = [];
  for (let offset = 0; offset < bytes.length;) {
    const type = view.getUint32(offset, true);
    const length = view.getUint32(offset + 4, true);
    if (type !== BlockType.EnhancedPacket) out.push({ type });
    else {
      const captured = view.getUint32(offset + 20, true);
      const options = offset + 28 + ((captured + 3) & ~3);
      const commentLength = view.getUint16(options + 2, true);
      out.push({ type, comment: new TextDecoder().decode(bytes.subarray(options + 4, options + 4 + commentLength)) });
    }
    offset += length;
  }
  return out;
}

function recorderWith(api: AdminApi | null, sockets: SegmentSide[]): { recorder: CaptureRecorder; chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = [];
  const factory: SocketFactory = (url, _protocols, headers) => {
    const socket = new SegmentSide(url, headers);
    sockets.push(socket);
    return socket;
  };
  const recorder = new CaptureRecorder({
    url: "ws://relay.test/v1/segments/lab/connect", segment: "lab", token: "elt1.monitor", admin: api, filter: {}, socketFactory: factory,
    write: (chunk) => {
      chunks.push(chunk);
      return true;
    },
  });
  return { recorder, chunks };
}

describe("CaptureRecorder", () => {
  it("joins as a monitor port with its token and credits, and writes packets in order with their ingress ports", async () => {
    const sockets: SegmentSide[] = [];
    const api = new TableApi([["02:00:00:00:00:01", 1], ["02:00:00:00:00:02", 2]]);
    const { recorder, chunks } = recorderWith(api, sockets);
    const welcome = await recorder.start();
    expect(welcome.portId).toBe(9);
    const segment = sockets[0] as SegmentSide;
    expect(segment.url).toBe("ws://relay.test/v1/segments/lab/connect?kind=monitor");
    expect(segment.headers.authorization).toBe("Bearer elt1.monitor");
    const hello = segment.received[0]?.[0];
    expect(hello).toMatchObject({ type: "hello", portKind: "monitor", macs: [] });
    expect(segment.received[0]?.[1]).toMatchObject({ type: "rx-post", count: 4096 });

    segment.deliver([
      { type: "rx", flags: RxFlag.Flooded | RxFlag.Mirrored, frame: frameFrom(1) },
      { type: "rx", flags: RxFlag.Mirrored, frame: frameFrom(2) },
      { type: "rx", flags: RxFlag.Mirrored, frame: frameFrom(7) },
    ]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const totals = await recorder.stop("test over");
    expect(totals).toMatchObject({ received: 3, written: 3, dropped: 4 });
    expect(blocks(chunks)).toEqual([
      { type: BlockType.SectionHeader },
      { type: BlockType.InterfaceDescription },
      { type: BlockType.EnhancedPacket, comment: "ingress port 1, flooded, mirrored" },
      { type: BlockType.EnhancedPacket, comment: "ingress port 2, mirrored" },
      { type: BlockType.EnhancedPacket, comment: "ingress port unknown, mirrored" },
      { type: BlockType.InterfaceStatistics },
    ]);
    // One lookup at start; the unknown source 02:…:07 arrived after it began, so one more; never one per frame.
    expect(api.lookups).toBe(2);
    expect(segment.received.flat().map((record) => record.type)).toContain("bye");
  });

  it("a burst of frames from unknown sources costs one lookup, and the capture still ends when the segment never answers the stats request", async () => {
    const sockets: SegmentSide[] = [];
    const api = new TableApi([]);
    const { recorder, chunks } = recorderWith(api, sockets);
    await recorder.start();
    const segment = sockets[0] as SegmentSide;
    segment.answerStats = false;
    await new Promise((resolve) => setTimeout(resolve, 20)); // the start-up lookup is done
    segment.deliver(Array.from({ length: 200 }, (_, i) => ({ type: "rx" as const, flags: RxFlag.Mirrored, frame: frameFrom(i) })));
    await new Promise((resolve) => setTimeout(resolve, 400)); // lookups are spaced 250 ms apart
    const totals = await recorder.stop("test over");
    expect(api.lookups).toBe(2);
    expect(totals).toMatchObject({ received: 200, written: 200, dropped: undefined });
    const written = blocks(chunks);
    expect(written.filter((block) => block.type === BlockType.EnhancedPacket)).toHaveLength(200);
    expect(written.at(-1)?.type).toBe(BlockType.InterfaceStatistics);
  });

  it("without an admin API says the ingress port is unknown and never looks anything up", async () => {
    const sockets: SegmentSide[] = [];
    const { recorder, chunks } = recorderWith(null, sockets);
    await recorder.start();
    (sockets[0] as SegmentSide).deliver([{ type: "rx", flags: 0, frame: frameFrom(1) }]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await recorder.stop("test over");
    expect(blocks(chunks).filter((block) => block.type === BlockType.EnhancedPacket)).toEqual([{ type: BlockType.EnhancedPacket, comment: "ingress port unknown" }]);
  });
});
