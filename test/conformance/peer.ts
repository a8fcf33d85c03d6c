// A client written from docs/protocol.md and docs/api.md alone: it opens ports
// through the public HTTP routes of the real Worker (running in workerd under
// vitest-pool-workers), writes records with the datapath codec, and keeps every
// message it receives, whole, so tests can count messages as well as records.
// The numbers below are copied from the document's tables, not imported from
// the relay: when the document and the relay drift, these tests fail.
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import { decodeMessage, encodeMessage } from "../../datapath/tunnel/codec.ts";
import type { HelloRecord, TunnelRecord, WelcomeRecord } from "../../datapath/tunnel/records.ts";
import worker from "../../worker/index.ts";

/** The Worker's environment, as its fetch handler takes it. */
type Env = Parameters<typeof worker.fetch>[1];

export const BASE = "http://edgelan.test";
export const ADMIN = { authorization: "Bearer test-admin-token" };

/** §6.4 status codes (drop reasons). */
export const Status = {
  Ok: 0, Runt: 1, Oversize: 2, MulticastSource: 3, SpoofedSource: 4, MonitorPort: 5, Local: 6, NoReceiver: 7,
  RateLimited: 8, LearnLimit: 9, RxBufferTooSmall: 10, RxQueueFull: 11, SegmentBudget: 12, Flushed: 13, Malformed: 14,
  Reset: 15, StormControl: 16, CellUnreachable: 17,
} as const;

/** §10 feature bits. */
export const F = {
  Coalesced: 0x01, RxQueue: 0x02, Stats: 0x04, LinkNotices: 0x08, Vlan: 0x10, LargeFrames: 0x20, Resume: 0x40, Gso: 0x80,
  Lazy: 0x100, CellCompletions: 0x200,
} as const;
/** Every feature bit §10 defines. */
export const ALL_FEATURES = 0x3ff;

/** §7.2 RX flags. */
export const RX = { Flooded: 0x01, Mirrored: 0x02, VnetHeader: 0x04 } as const;

/** §8.3 ack statuses. */
export const Ack = { Ok: 0, InvalidMac: 1, MacTaken: 2, TooManyMacs: 3, UnknownMac: 4, Policy: 5, NotPermitted: 6, NotNegotiated: 7 } as const;

export const BROADCAST = 0xffff_ffff_ffff;
/** A locally administered unicast MAC, 02:00:00:00:xx:yy, unique per test by `n`. */
export function mac(n: number): number {
  return 0x02_00_00_00_00_00 + n;
}

/** Waits up to this long for anything the segment should do at once (generous: the machine is shared). */
const WAIT_MS = 10_000;

/** Creates a segment through the admin API (open joins unless `config` says otherwise). */
export async function createSegment(name: string, config: Record<string, unknown> = {}): Promise<void> {
  const response = await exports.default.fetch(`${BASE}/v1/segments/${name}`, {
    method: "PUT", headers: ADMIN, body: JSON.stringify({ openJoin: true, ...config }),
  });
  expect(response.status).toBe(201);
}

let segmentsCreated = 0;
/** A segment of its own for one test (storage is per test file, so names only need to differ within a file). */
export async function freshSegment(config: Record<string, unknown> = {}): Promise<string> {
  const name = `segment-${++segmentsCreated}`;
  await createSegment(name, config);
  return name;
}

/** GET /v1/segments/:name. */
export async function describeSegment(name: string): Promise<{ counters: Record<string, number>; ports: Array<Record<string, unknown>> }> {
  return (await (await exports.default.fetch(`${BASE}/v1/segments/${name}`, { headers: ADMIN })).json()) as never;
}

/** Reads `read()` until `done` holds for its value (or WAIT_MS passed); returns the last value read. */
export async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  let value = await read();
  while (!done(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await read();
  }
  return value;
}

/** One port as GET /v1/segments/:name/ports shows it. */
export interface PortView {
  portId: number;
  credits: number | null;
  queuedFrames: number;
  counters: { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: Record<string, number> };
}

/** GET /v1/segments/:name/ports, the port with `portId`. */
export async function portView(name: string, portId: number): Promise<PortView> {
  const body = (await (await exports.default.fetch(`${BASE}/v1/segments/${name}/ports`, { headers: ADMIN })).json()) as { ports: PortView[] };
  const port = body.ports.find((p) => p.portId === portId);
  if (port === undefined) throw new Error(`port ${portId} is not listed on ${name}`);
  return port;
}

/** A join token of `role` for `segment`, bound to `macs` if given (POST /v1/segments/:name/tokens). */
export async function joinToken(segment: string, role: "member" | "bridge" | "monitor", macs?: string[]): Promise<string> {
  const response = await exports.default.fetch(`${BASE}/v1/segments/${segment}/tokens`, { method: "POST", headers: ADMIN, body: JSON.stringify({ role, macs }) });
  expect(response.status).toBe(201);
  return ((await response.json()) as { token: string }).token;
}

/** The Worker's environment in open development mode (api.md "Open development mode"). */
export function devEnv(): Env {
  return { ...(env as unknown as Env), EDGELAN_DEV_MODE: "1", EDGELAN_ADMIN_TOKEN: undefined, EDGELAN_TOKEN_SECRET: undefined } as Env;
}

/** A HELLO with sensible defaults (§5.1); `overrides` replace fields. */
export function hello(overrides: Partial<HelloRecord> = {}): HelloRecord {
  return {
    type: "hello", minVersion: 1, maxVersion: 1, features: 0, portKind: "member", macs: [], txWindow: 64, rxQueue: 0,
    clientName: "conformance", clientVersion: "1", ...overrides,
  };
}

/** One received binary message: its bytes, and its records when it decoded. */
export interface Received {
  readonly bytes: Uint8Array;
  readonly records: TunnelRecord[] | null;
}

export interface OpenOptions {
  /** Offer `edgelan.v1` (descriptor mode); false opens a raw port. */
  descriptor?: boolean;
  /** Query string, e.g. `?kind=bridge`. */
  query?: string;
  token?: string;
  /** Call the Worker with this environment instead of the bound one (e.g. devEnv()). */
  workerEnv?: Env;
}

/** The guest side of one WebSocket. */
export class Peer {
  /** Every binary message received, in order. */
  readonly messages: Received[] = [];
  /** Records received and not yet taken by next()/take(). */
  readonly records: TunnelRecord[] = [];
  /** Binary messages of a raw port. */
  readonly frames: Uint8Array[] = [];
  readonly texts: string[] = [];
  closed: { code: number; reason: string } | undefined;
  private waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket, readonly descriptor: boolean) {
    ws.binaryType = "arraybuffer";
    ws.accept();
    ws.addEventListener("message", (event) => {
      if (typeof event.data === "string") this.texts.push(event.data);
      else this.onBinary(new Uint8Array(event.data as ArrayBuffer).slice());
      this.wake();
    });
    ws.addEventListener("close", (event) => {
      this.closed = { code: event.code, reason: event.reason };
      this.wake();
    });
  }

  /** The upgrade response for a connect (101 or an HTTP error). */
  static async upgrade(segment: string, options: OpenOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { Upgrade: "websocket" };
    if (options.descriptor !== false) headers["Sec-WebSocket-Protocol"] = "edgelan.v1";
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    const request = new Request(`${BASE}/v1/segments/${segment}/connect${options.query ?? ""}`, { headers });
    return options.workerEnv === undefined ? exports.default.fetch(request) : worker.fetch(request, options.workerEnv);
  }

  /** Opens a socket; descriptor mode must be selected by the segment when offered (§1). */
  static async open(segment: string, options: OpenOptions = {}): Promise<Peer> {
    const response = await Peer.upgrade(segment, options);
    expect(response.status).toBe(101);
    const descriptor = options.descriptor !== false;
    expect(response.headers.get("Sec-WebSocket-Protocol")).toBe(descriptor ? "edgelan.v1" : null);
    return new Peer(response.webSocket as WebSocket, descriptor);
  }

  /** Opens a descriptor port, says HELLO (plus `extra` records in the same message) and waits for WELCOME. */
  static async join(segment: string, overrides: Partial<HelloRecord> = {}, options: OpenOptions & { extra?: TunnelRecord[] } = {}): Promise<{ peer: Peer; welcome: WelcomeRecord }> {
    const peer = await Peer.open(segment, options);
    peer.send([hello(overrides), ...(options.extra ?? [])]);
    const welcome = await peer.next("welcome");
    return { peer, welcome };
  }

  send(records: readonly TunnelRecord[]): void {
    this.ws.send(encodeMessage(records));
  }

  sendBytes(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** Posts `count` RX buffers of `bufferSize` bytes, and waits until the segment has applied the post (a ping in the same message). */
  async post(count: number, bufferSize = 2048): Promise<void> {
    this.send([{ type: "rx-post", count, bufferSize }, { type: "ping", seq: 0x9057, timestamp: 0 }]);
    await this.next("pong");
  }

  /** A ping round trip: everything the segment sent this port before the pong has arrived. */
  async settle(): Promise<void> {
    this.send([{ type: "ping", seq: 0x5e771e, timestamp: 0 }]);
    await this.next("pong");
  }

  /** Waits for a record of `type` not yet taken, and takes it (with every record before it of other types left in place). */
  async next<K extends TunnelRecord["type"]>(type: K): Promise<Extract<TunnelRecord, { type: K }>> {
    const record = await this.until(() => this.records.find((r) => r.type === type), `a ${type} record`);
    this.records.splice(this.records.indexOf(record), 1);
    return record as Extract<TunnelRecord, { type: K }>;
  }

  /** Takes every record of `type` received so far. */
  take<K extends TunnelRecord["type"]>(type: K): Array<Extract<TunnelRecord, { type: K }>> {
    const taken = this.records.filter((r) => r.type === type) as Array<Extract<TunnelRecord, { type: K }>>;
    for (const record of taken) this.records.splice(this.records.indexOf(record), 1);
    return taken;
  }

  /** Waits until at least `count` records of `type` arrived (not yet taken), then takes them all. */
  async collect<K extends TunnelRecord["type"]>(type: K, count: number): Promise<Array<Extract<TunnelRecord, { type: K }>>> {
    await this.until(() => (this.records.filter((r) => r.type === type).length >= count ? true : undefined), `${count} ${type} records`);
    return this.take(type);
  }

  /** Waits until the completions received (not yet taken) cover `ids` ids, then takes them. */
  async completions(ids: number): Promise<Array<Extract<TunnelRecord, { type: "tx-complete" }>>> {
    await this.until(() => (this.records.reduce((n, r) => n + (r.type === "tx-complete" ? r.count : 0), 0) >= ids ? true : undefined), `completions for ${ids} ids`);
    return this.take("tx-complete");
  }

  /** Waits for `count` raw frames (raw mode) and takes them. */
  async rawFrames(count: number): Promise<Uint8Array[]> {
    await this.until(() => (this.frames.length >= count ? true : undefined), `${count} raw frames`);
    return this.frames.splice(0, this.frames.length);
  }

  /** Waits for the socket to close. */
  async closedWith(timeoutMs = WAIT_MS): Promise<{ code: number; reason: string }> {
    return this.until(() => this.closed, "the socket to close", timeoutMs);
  }

  /** Closes from the client side. */
  close(code = 1000, reason = "done"): void {
    try {
      this.ws.close(code, reason);
    } catch {
      // Already closed.
    }
  }

  /** Waits for `probe` to return something. */
  async until<T>(probe: () => T | undefined, what: string, timeoutMs = WAIT_MS): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = probe();
      if (value !== undefined) return value;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(remaining, 100));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private onBinary(bytes: Uint8Array): void {
    if (!this.descriptor) {
      this.frames.push(bytes);
      return;
    }
    const decoded = decodeMessage(bytes);
    this.messages.push({ bytes, records: decoded.ok ? decoded.value : null });
    if (decoded.ok) this.records.push(...decoded.value);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** An Ethernet frame of `size` bytes (≥ 15) from `src` to `dst`, EtherType 0x88b5 (local experimental), byte 14 = `marker`. */
export function frame(dst: number, src: number, marker = 0, size = 64): Uint8Array {
  const bytes = new Uint8Array(size);
  writeMac(bytes, 0, dst);
  writeMac(bytes, 6, src);
  bytes[12] = 0x88;
  bytes[13] = 0xb5;
  bytes[14] = marker;
  return bytes;
}

/** An 802.1Q-tagged frame (VLAN `vid`) of `size` bytes: the tag sits at offset 12. */
export function taggedFrame(dst: number, src: number, vid: number, marker = 0, size = 68): Uint8Array {
  const bytes = new Uint8Array(size);
  writeMac(bytes, 0, dst);
  writeMac(bytes, 6, src);
  bytes.set([0x81, 0x00, (vid >> 8) & 0x0f, vid & 0xff, 0x88, 0xb5, marker], 12);
  return bytes;
}

function writeMac(bytes: Uint8Array, offset: number, value: number): void {
  for (let i = 0; i < 6; i++) bytes[offset + i] = Math.floor(value / 2 ** (8 * (5 - i))) % 256;
}

/** Bytes from a hex string with spaces and `#` comments (as the document's examples are written). */
export function hexBytes(text: string): Uint8Array {
  const digits = text.split("\n").map((line) => line.replace(/#.*$/, "")).join("").replace(/\s+/g, "");
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

/** The message header of §4 for `recordCount` records, with the given framing version, flags and reserved field. */
export function header(recordCount: number, { version = 1, flags = 0, reserved = 0 } = {}): number[] {
  return [0x45, 0x4c, version, flags, recordCount & 0xff, recordCount >> 8, reserved & 0xff, reserved >> 8];
}

/** Ids completed by a list of tx-complete runs, with their status, in order. */
export function completedIds(runs: ReadonlyArray<{ firstId: number; count: number; status: number }>): Array<[number, number]> {
  const ids: Array<[number, number]> = [];
  for (const run of runs) for (let i = 0; i < run.count; i++) ids.push([(run.firstId + i) % 65536, run.status]);
  return ids;
}
