// A guest's side of a segment port inside workerd, for the workers tests: open a socket through the
// Worker, say HELLO, send records and wait for what the segment sends back.
import { exports } from "cloudflare:workers";
import { expect } from "vitest";
import { decodeMessage, encodeMessage } from "../../datapath/tunnel/codec.ts";
import { SUBPROTOCOL_V1 } from "../../datapath/tunnel/constants.ts";
import type { HelloRecord, TunnelRecord } from "../../datapath/tunnel/records.ts";

export const ADMIN = { authorization: "Bearer test-admin-token" };

export async function createSegment(name: string, config: Record<string, unknown> = {}): Promise<void> {
  const response = await exports.default.fetch(`http://edgelan.test/v1/segments/${name}`, {
    method: "PUT", headers: ADMIN, body: JSON.stringify({ openJoin: true, ...config }),
  });
  expect(response.status).toBe(201);
}

export async function describeSegment(name: string): Promise<{ counters: Record<string, number>; queuedBytes: number; ports: unknown[] }> {
  return (await (await exports.default.fetch(`http://edgelan.test/v1/segments/${name}`, { headers: ADMIN })).json()) as never;
}

/** A port as seen from the guest side of the socket pair. */
export class Port {
  readonly records: TunnelRecord[] = [];
  /** Every message received, as its records, in order (records are also appended to `records`). */
  readonly messages: TunnelRecord[][] = [];
  readonly raw: Uint8Array[] = [];
  closed: { code: number; reason: string } | undefined;
  private wake: (() => void) | undefined;

  constructor(readonly ws: WebSocket, readonly descriptor: boolean) {
    // Binary messages arrive as Blobs by default at this compatibility date.
    ws.binaryType = "arraybuffer";
    ws.accept();
    ws.addEventListener("message", (event) => {
      if (typeof event.data === "string") return;
      const bytes = new Uint8Array(event.data as ArrayBuffer);
      if (descriptor) {
        const decoded = decodeMessage(bytes);
        if (!decoded.ok) throw new Error(decoded.error.message);
        this.records.push(...decoded.value);
        this.messages.push(decoded.value);
      } else {
        this.raw.push(bytes);
      }
      this.wake?.();
    });
    ws.addEventListener("close", (event) => {
      this.closed = { code: event.code, reason: event.reason };
      this.wake?.();
    });
  }

  static async open(segment: string, descriptor = true, query = ""): Promise<Port> {
    const headers: Record<string, string> = { Upgrade: "websocket" };
    if (descriptor) headers["Sec-WebSocket-Protocol"] = SUBPROTOCOL_V1;
    const response = await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/connect${query}`, { headers });
    expect(response.status).toBe(101);
    return new Port(response.webSocket as WebSocket, descriptor);
  }

  /** Opens a descriptor port, says HELLO and posts credits. */
  static async join(segment: string, mac: number, credits = 64, hello: Partial<HelloRecord> = {}): Promise<Port> {
    const port = await Port.open(segment);
    port.send([hello_(mac, hello)]);
    await port.next("welcome");
    if (credits > 0) port.send([{ type: "rx-post", count: credits, bufferSize: 2048 }]);
    return port;
  }

  send(records: readonly TunnelRecord[]): void {
    this.ws.send(encodeMessage(records));
  }

  async until<T>(probe: () => T | undefined, what: string): Promise<T> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const value = probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  }

  async next<K extends TunnelRecord["type"]>(type: K): Promise<Extract<TunnelRecord, { type: K }>> {
    const record = await this.until(() => this.records.find((r) => r.type === type), `a ${type} record`);
    this.records.splice(this.records.indexOf(record), 1);
    return record as Extract<TunnelRecord, { type: K }>;
  }

  async rx(count: number): Promise<Uint8Array[]> {
    await this.until(() => (this.records.filter((r) => r.type === "rx").length >= count ? true : undefined), `${count} rx records`);
    const taken = this.records.filter((r): r is Extract<TunnelRecord, { type: "rx" }> => r.type === "rx");
    for (const r of taken) this.records.splice(this.records.indexOf(r), 1);
    return taken.map((r) => r.frame);
  }

  async closedWith(): Promise<{ code: number; reason: string }> {
    return this.until(() => this.closed, "the socket to close");
  }
}

export function hello_(mac: number, overrides: Partial<HelloRecord> = {}): HelloRecord {
  return {
    type: "hello", minVersion: 1, maxVersion: 1, features: 0x7f, portKind: "member", macs: mac === 0 ? [] : [mac],
    txWindow: 16, rxQueue: 16, clientName: "workers-test", clientVersion: "0", ...overrides,
  };
}

/** A 64-byte (or `size`) frame from `src` to `dst`, marked with `marker`. */
export function frame(dst: number, src: number, marker = 0, size = 64): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < 6; i++) {
    bytes[i] = Math.floor(dst / 2 ** (8 * (5 - i))) % 256;
    bytes[6 + i] = Math.floor(src / 2 ** (8 * (5 - i))) % 256;
  }
  bytes[12] = 0x88;
  bytes[13] = 0xb5;
  bytes[14] = marker;
  return bytes;
}

export const BROADCAST = 0xffff_ffff_ffff;

