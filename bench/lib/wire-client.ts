// A minimal edgelan.v1 client for benchmarks, straight on `ws` and the codec:
// descriptor ports that keep a TX window full and RX credits topped up, and raw
// ports (one frame per message). Unlike client/session.ts it does nothing the
// measurement does not need (no reconnect, no deferral, ids completed in order).
import WebSocket from "ws";
import { forEachRecord, MessageEncoder, type RecordVisitor } from "../../datapath/tunnel/codec.ts";
import { Feature, MAX_RX_CREDITS, SUBPROTOCOL_V1 } from "../../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../../datapath/tunnel/records.ts";
import { frame, Integrity, stamp } from "./bench-frames.ts";

/** The relay grants at most this window; descriptor ports ask for it. */
export const TX_WINDOW = 1024;
/** Repost RX credits once this many of MAX_RX_CREDITS are used. */
const CREDIT_REPOST = 8192;
const RX_BUFFER = 2048;

/** A zero mask makes `ws` skip masking (and its copy); RFC 6455 allows any mask value. */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

function openSocket(url: string, protocols: string[]): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false, generateMask: zeroMask, skipUTF8Validation: true });
  ws.binaryType = "nodebuffer";
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
  });
}

function encodeRecords(records: readonly TunnelRecord[]): Uint8Array {
  const encoder = new MessageEncoder(1024);
  for (const record of records) encoder.add(record);
  return encoder.finish();
}

function view(data: Buffer): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** One descriptor-mode port: HELLO/WELCOME, RX credits kept topped up, a TX window kept full. */
export class DescriptorPort {
  rxFrames = 0;
  rxBytes = 0;
  /** Per-sender sequence checks on received bench frames (see stamp()). */
  readonly integrity = new Integrity();
  completedOk = 0;
  completedDropped = 0;
  readonly dropsByStatus = new Map<number, number>();
  /**
   * Ids are sent in order and completed in order (the relay completes each message at once), except
   * with CellCompletions (`inOrder` false): completions that waited for another cell may come after
   * later ones, so only their count is kept (ids are sequential mod 2^16, far beyond the window).
   */
  private nextId = 0;
  private inOrder = true;
  private completedUpTo = 0;
  private creditsOutstanding = 0;
  private readonly encoder = new MessageEncoder(64 * 1024);
  portId = 0;
  private welcomed: ((portId: number) => void) | null = null;
  private failed: ((error: Error) => void) | null = null;
  onRx: ((frame: Uint8Array) => void) | null = null;
  onPong: ((seq: number, timestamp: number) => void) | null = null;
  onCompletion: (() => void) | null = null;
  error: Error | null = null;
  private readonly visitor: RecordVisitor;

  private constructor(readonly ws: WebSocket, readonly window: number) {
    this.visitor = {
      rx: (_flags, frame) => {
        this.rxFrames++;
        this.rxBytes += frame.length;
        this.integrity.check(frame);
        this.onRx?.(frame);
      },
      txComplete: (firstId, count, status) => {
        if (this.inOrder && firstId !== (this.completedUpTo & 0xffff)) this.fail(new Error(`completion for id ${firstId}, expected ${this.completedUpTo & 0xffff}`));
        this.completedUpTo += count;
        if (status === 0) this.completedOk += count;
        else {
          this.completedDropped += count;
          this.dropsByStatus.set(status, (this.dropsByStatus.get(status) ?? 0) + count);
        }
      },
      record: (record) => {
        if (record.type === "welcome") this.welcomed?.(record.portId);
        else if (record.type === "refuse") this.fail(new Error(`refused: ${record.reason}`));
        else if (record.type === "pong") this.onPong?.(record.seq, record.timestamp);
        // The segment's read acknowledgement (protocol.md §8.5): answer, or RX stops after 4 MiB.
        else if (record.type === "ping") this.sendRecord({ type: "pong", seq: record.seq, timestamp: record.timestamp });
      },
    };
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      const before = this.rxFrames;
      const completedBefore = this.completedUpTo;
      const walked = forEachRecord(view(data), this.visitor);
      if (!walked.ok) this.fail(new Error(`relay sent an undecodable message: ${walked.error.message}`));
      const consumed = this.rxFrames - before;
      if (consumed > 0) {
        this.creditsOutstanding -= consumed;
        if (this.creditsOutstanding < 0) this.fail(new Error("relay delivered more RX than credits posted"));
        this.topUpCredits(false);
      }
      if (this.completedUpTo !== completedBefore) this.onCompletion?.();
    });
    ws.on("close", (code, reason) => {
      if (code !== 1000 && code !== 1005) this.fail(new Error(`socket closed with ${code} ${reason.toString()}`));
    });
  }

  /** @param extraFeatures offered besides CoalescedCompletions and RxQueue (CellCompletions: completions may come out of order) */
  static async join(url: string, mac: number, window = TX_WINDOW, extraFeatures = 0): Promise<DescriptorPort> {
    const ws = await openSocket(url, [SUBPROTOCOL_V1]);
    if (ws.protocol !== SUBPROTOCOL_V1) throw new Error("the relay did not select edgelan.v1");
    const port = new DescriptorPort(ws, window);
    port.inOrder = (extraFeatures & Feature.CellCompletions) === 0;
    const welcome = new Promise<number>((resolve, reject) => {
      port.welcomed = resolve;
      port.failed = reject;
    });
    ws.send(encodeRecords([
      {
        type: "hello", minVersion: 1, maxVersion: 1, features: Feature.CoalescedCompletions | Feature.RxQueue | extraFeatures, portKind: "member",
        macs: [mac], txWindow: window, rxQueue: MAX_RX_CREDITS, clientName: "bench-relay", clientVersion: "0",
      },
      { type: "rx-post", count: MAX_RX_CREDITS, bufferSize: RX_BUFFER },
    ]));
    port.creditsOutstanding = MAX_RX_CREDITS;
    port.portId = await welcome;
    port.failed = null;
    return port;
  }

  private fail(error: Error): void {
    if (this.error === null) this.error = error;
    this.failed?.(error);
  }

  /** RX credits posted and not yet used, as the client counts them. */
  get credits(): number {
    return this.creditsOutstanding;
  }

  /** Frames sent so far. */
  get sent(): number {
    return this.nextId;
  }

  get outstanding(): number {
    return this.nextId - this.completedUpTo;
  }

  /** Re-posts RX credits once CREDIT_REPOST are used (or always, with `force`). */
  topUpCredits(force: boolean): void {
    const missing = MAX_RX_CREDITS - this.creditsOutstanding;
    if (missing === 0 || (!force && missing < CREDIT_REPOST)) return;
    this.creditsOutstanding += missing;
    this.encoder.reset();
    this.encoder.addRxPost(missing, RX_BUFFER);
    this.ws.send(this.encoder.finish());
  }

  /** Sends messages of `batch` TX records (`template` stamped with a sequence number) while the window has room for a whole batch. */
  fillWindow(template: Uint8Array, batch: number): number {
    let sent = 0;
    while (this.outstanding + batch <= this.window) {
      this.encoder.reset();
      for (let i = 0; i < batch; i++) {
        stamp(template, this.nextId);
        this.encoder.addTx(this.nextId & 0xffff, 0, template);
        this.nextId++;
      }
      // finish() copies: with a zero mask ws sends the buffer itself and may hold on to it after send() returns.
      this.ws.send(this.encoder.finish());
      sent += batch;
    }
    return sent;
  }

  sendOne(frameBytes: Uint8Array): void {
    this.encoder.reset();
    this.encoder.addTx(this.nextId & 0xffff, 0, frameBytes);
    this.nextId++;
    this.ws.send(this.encoder.finish());
  }

  sendPing(seq: number, timestamp: number): void {
    this.sendRecord({ type: "ping", seq, timestamp });
  }

  /** One control record as a message of its own. */
  sendRecord(record: TunnelRecord): void {
    this.encoder.reset();
    this.encoder.add(record);
    this.ws.send(this.encoder.finish());
  }

  close(): void {
    this.ws.close(1000, "bench done");
  }
}

/** A raw port: no subprotocol, one frame per WebSocket message. */
export class RawPort {
  rxFrames = 0;
  rxBytes = 0;
  readonly integrity = new Integrity();
  onRx: ((frame: Uint8Array) => void) | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      this.rxFrames++;
      this.rxBytes += data.length;
      const bytes = view(data);
      this.integrity.check(bytes);
      this.onRx?.(bytes);
    });
  }

  /** Connects without a subprotocol and announces `mac` with one broadcast frame (a raw member claims its first source). */
  static async join(url: string, mac: number): Promise<RawPort> {
    const ws = await openSocket(url, []);
    if (ws.protocol !== "") throw new Error(`expected raw mode, got ${ws.protocol}`);
    const port = new RawPort(ws);
    const hello = frame(0xffff_ffff_ffff, mac, 60);
    hello[13] = 0xb6; // not a bench frame: Integrity ignores it
    ws.send(hello);
    return port;
  }

  close(): void {
    this.ws.close(1000, "bench done");
  }
}
