// A small edgelan.v1 client for hostile benchmarks, on the real codec: descriptor ports
// (HELLO/WELCOME, RX credits, TX window, pings) and raw ports (one frame per message).
// It can misbehave on purpose: stop reading, post credits it never uses, send any bytes.
import WebSocket from "ws";
import { forEachRecord, MessageEncoder, type RecordVisitor } from "../../datapath/tunnel/codec.ts";
import { Feature, SUBPROTOCOL_V1 } from "../../datapath/tunnel/constants.ts";
import type { TunnelRecord, WelcomeRecord } from "../../datapath/tunnel/records.ts";
import type { PortKind } from "../../datapath/port-kind.ts";

/** How a socket ended, once it did. */
export interface Closed {
  code: number;
  reason: string;
}

/** A zero mask makes `ws` skip masking; RFC 6455 allows any mask value. */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

/** Opens a WebSocket; rejects with the HTTP status when the upgrade is refused. */
export function openSocket(url: string, protocols: string[], headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false, generateMask: zeroMask, skipUTF8Validation: true, headers });
  ws.binaryType = "nodebuffer";
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_request, response) => {
      reject(new UpgradeRefused(response.statusCode ?? 0));
      response.resume();
      ws.terminate();
    });
  });
}

/** An upgrade the relay answered with an HTTP status instead of 101. */
export class UpgradeRefused extends Error {
  constructor(readonly status: number) {
    super(`upgrade refused: HTTP ${status}`);
  }
}

/** What a descriptor port asks for in its HELLO. */
export interface JoinOptions {
  macs: number[];
  kind?: PortKind;
  features?: number;
  txWindow?: number;
  rxQueue?: number;
  /** RX credits posted with the HELLO (default 4096) and their buffer size (default 2048). */
  credits?: number;
  bufferSize?: number;
  /** Re-post credits as frames arrive (default true); false posts once and never again. */
  replenish?: boolean;
  token?: string;
  /** Extra `?query` for the connect URL (e.g. "kind=bridge"). */
  query?: string;
}

const DEFAULT_FEATURES = Feature.CoalescedCompletions | Feature.RxQueue;

/** Copies an encoder's message so the encoder can be reused while `ws` still holds the bytes. */
function owned(encoder: MessageEncoder): Uint8Array {
  return encoder.finish().slice();
}

/** Encodes records into one message. */
export function encodeRecords(records: readonly TunnelRecord[]): Uint8Array {
  const encoder = new MessageEncoder(1024);
  for (const record of records) encoder.add(record);
  return owned(encoder);
}

/** The connect URL of `segment` with an optional token and query. */
export function connectUrl(wsBase: string, segment: string, query = "", token?: string): string {
  const params = new URLSearchParams(query);
  if (token !== undefined) params.set("token", token);
  const text = params.toString();
  return `${wsBase}/v1/segments/${segment}/connect${text === "" ? "" : `?${text}`}`;
}

/** One descriptor-mode port. */
export class DescriptorPort {
  welcome: WelcomeRecord | null = null;
  closed: Closed | null = null;
  rxFrames = 0;
  rxBytes = 0;
  completedOk = 0;
  completedDropped = 0;
  /** Completed TX ids so far (ok or dropped). */
  completed = 0;
  sent = 0;
  readonly dropsByStatus = new Map<number, number>();
  onRx: ((frame: Uint8Array, flags: number) => void) | null = null;
  onPong: ((seq: number, timestamp: number) => void) | null = null;
  onCompleted: (() => void) | null = null;
  private creditsOutstanding = 0;
  private readonly encoder = new MessageEncoder(64 * 1024);
  private readonly visitor: RecordVisitor;
  private welcomed: { resolve: (w: WelcomeRecord) => void; reject: (e: Error) => void } | null = null;

  private constructor(readonly ws: WebSocket, private readonly options: JoinOptions) {
    this.visitor = {
      rx: (flags, frame) => {
        this.rxFrames++;
        this.rxBytes += frame.length;
        this.onRx?.(frame, flags);
      },
      txComplete: (_firstId, count, status) => {
        this.completed += count;
        if (status === 0) this.completedOk += count;
        else {
          this.completedDropped += count;
          this.dropsByStatus.set(status, (this.dropsByStatus.get(status) ?? 0) + count);
        }
      },
      record: (record) => {
        if (record.type === "welcome") this.welcomed?.resolve(record);
        else if (record.type === "refuse") this.welcomed?.reject(new Error(`refused ${record.code}: ${record.reason}`));
        else if (record.type === "pong") this.onPong?.(record.seq, record.timestamp);
        // The segment's read acknowledgement (protocol.md §8.5): a reading port answers it.
        else if (record.type === "ping") this.send([{ type: "pong", seq: record.seq, timestamp: record.timestamp }]);
      },
    };
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.onMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.welcomed?.reject(new Error(`closed ${code} ${reason.toString()} before WELCOME`));
    });
    ws.on("error", () => undefined);
  }

  /** Connects, says HELLO with RX credits, and resolves at WELCOME. */
  static async join(wsBase: string, segment: string, options: JoinOptions): Promise<DescriptorPort> {
    const ws = await openSocket(connectUrl(wsBase, segment, options.query, options.token), [SUBPROTOCOL_V1]);
    const port = new DescriptorPort(ws, options);
    const welcome = new Promise<WelcomeRecord>((resolve, reject) => {
      port.welcomed = { resolve, reject };
    });
    const credits = options.credits ?? 4096;
    const records: TunnelRecord[] = [{
      type: "hello", minVersion: 1, maxVersion: 1, features: options.features ?? DEFAULT_FEATURES, portKind: options.kind ?? "member",
      macs: options.macs, txWindow: options.txWindow ?? 256, rxQueue: options.rxQueue ?? 256, clientName: "bench-hostile", clientVersion: "0",
    }];
    if (credits > 0) records.push({ type: "rx-post", count: credits, bufferSize: options.bufferSize ?? 2048 });
    ws.send(encodeRecords(records));
    port.creditsOutstanding = credits;
    try {
      port.welcome = await withTimeout(welcome, 15_000, "WELCOME");
    } catch (error) {
      ws.terminate();
      throw error;
    }
    port.welcomed = null;
    return port;
  }

  get txWindow(): number {
    return this.welcome?.txWindow ?? 0;
  }

  get features(): number {
    return this.welcome?.features ?? 0;
  }

  /** TX ids sent and not yet completed. */
  get outstanding(): number {
    return this.sent - this.completed;
  }

  private onMessage(bytes: Uint8Array): void {
    const before = this.rxFrames;
    const completedBefore = this.completed;
    forEachRecord(bytes, this.visitor);
    const used = this.rxFrames - before;
    if (used > 0 && this.options.replenish !== false) {
      this.creditsOutstanding -= used;
      const target = this.options.credits ?? 4096;
      if (target - this.creditsOutstanding >= target / 4) this.postCredits(target - this.creditsOutstanding);
    }
    if (this.completed !== completedBefore) this.onCompleted?.();
  }

  /** Posts `count` RX credits of the port's buffer size. */
  postCredits(count: number, bufferSize = this.options.bufferSize ?? 2048): void {
    this.creditsOutstanding += count;
    this.encoder.reset();
    this.encoder.addRxPost(count, bufferSize);
    this.sendBytes(owned(this.encoder));
  }

  /** Sends `frames` as one message of TX records (with `flags`); ids continue from the last. */
  sendTx(frames: readonly Uint8Array[], flags = 0): void {
    this.encoder.reset();
    for (const frame of frames) {
      this.encoder.addTx(this.sent & 0xffff, flags, frame);
      this.sent++;
    }
    this.sendBytes(owned(this.encoder));
  }

  /** Sends records as one message. */
  send(records: readonly TunnelRecord[]): void {
    this.sendBytes(encodeRecords(records));
  }

  sendPing(seq: number, timestamp: number): void {
    this.send([{ type: "ping", seq, timestamp }]);
  }

  sendBytes(bytes: Uint8Array): void {
    if (this.closed === null && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  /** Stops reading from the socket: the relay's sends back up in its buffers. */
  stopReading(): void {
    this.ws.pause();
  }

  /** Resolves when `ready()` holds, checking on each completion; false after `timeoutMs`. */
  waitFor(ready: () => boolean, timeoutMs: number): Promise<boolean> {
    if (ready()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), timeoutMs);
      const previous = this.onCompleted;
      const finish = (result: boolean): void => {
        clearTimeout(timer);
        this.onCompleted = previous;
        resolve(result);
      };
      this.onCompleted = () => {
        previous?.();
        if (ready() || this.closed !== null) finish(ready());
      };
    });
  }

  close(): void {
    this.ws.terminate();
  }
}

/** One raw-mode port: one Ethernet frame per binary message, no handshake. */
export class RawPort {
  closed: Closed | null = null;
  rxFrames = 0;
  rxBytes = 0;
  onRx: ((frame: Uint8Array) => void) | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      this.rxFrames++;
      this.rxBytes += data.byteLength;
      this.onRx?.(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
    ws.on("error", () => undefined);
  }

  static async join(wsBase: string, segment: string, token?: string): Promise<RawPort> {
    return new RawPort(await openSocket(connectUrl(wsBase, segment, "", token), []));
  }

  send(frame: Uint8Array): void {
    if (this.closed === null && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
  }

  /** Bytes `ws` has not yet written to the socket. */
  get buffered(): number {
    return this.ws.bufferedAmount;
  }

  stopReading(): void {
    this.ws.pause();
  }

  close(): void {
    this.ws.terminate();
  }
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
