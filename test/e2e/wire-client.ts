// A protocol-level test client: a real `ws` socket speaking edgelan.v1 records
// through the real codec, with every received record kept for assertions.
import WebSocket from "ws";
import { decodeMessage, encodeMessage } from "../../datapath/tunnel/codec.ts";
import type { TunnelRecord, WelcomeRecord } from "../../datapath/tunnel/records.ts";

export interface WireClientOptions {
  subprotocol?: string | null;
  token?: string;
  headers?: Record<string, string>;
}

export class WireClient {
  readonly records: TunnelRecord[] = [];
  readonly rawFrames: Uint8Array[] = [];
  closeCode: number | undefined;
  closeReason = "";
  private waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.binaryType = "nodebuffer";
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
      if (ws.protocol === "edgelan.v1") {
        const decoded = decodeMessage(bytes);
        if (!decoded.ok) throw new Error(`relay sent an undecodable message: ${decoded.error.message}`);
        this.records.push(...decoded.value);
      } else {
        this.rawFrames.push(bytes);
      }
      this.wake();
    });
    ws.on("close", (code: number, reason: Buffer) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.wake();
    });
  }

  /** Opens a socket; resolves once open, rejects with the HTTP status when the upgrade is refused. */
  static async connect(url: string, options: WireClientOptions = {}): Promise<WireClient> {
    const protocols = options.subprotocol === null ? [] : [options.subprotocol ?? "edgelan.v1"];
    const target = options.token === undefined ? url : `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(options.token)}`;
    const ws = new WebSocket(target, protocols, { headers: options.headers, perMessageDeflate: false });
    const client = new WireClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("unexpected-response", (_request, response) => {
        let body = "";
        response.on("data", (chunk: Buffer) => (body += chunk.toString()));
        response.on("end", () => reject(new UpgradeRefused(response.statusCode ?? 0, body)));
      });
      ws.once("error", reject);
    });
    return client;
  }

  /** Connects in descriptor mode and completes the handshake. */
  static async join(url: string, hello: Partial<Extract<TunnelRecord, { type: "hello" }>> = {}, options: WireClientOptions = {}): Promise<{ client: WireClient; welcome: WelcomeRecord }> {
    const client = await WireClient.connect(url, options);
    client.send([{
      type: "hello", minVersion: 1, maxVersion: 1, features: 0x7f, portKind: "member", macs: [], txWindow: 64, rxQueue: 64,
      clientName: "wire-test", clientVersion: "0", ...hello,
    }]);
    const welcome = await client.next("welcome");
    return { client, welcome };
  }

  send(records: readonly TunnelRecord[]): void {
    this.ws.send(encodeMessage(records));
  }

  sendBytes(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** Waits until a record of `type` beyond those already taken arrives, and takes it. */
  async next<T extends TunnelRecord["type"]>(type: T, timeoutMs = 5_000): Promise<Extract<TunnelRecord, { type: T }>> {
    const record = await this.until(() => this.records.find((r) => r.type === type), `a ${type} record`, timeoutMs);
    this.records.splice(this.records.indexOf(record), 1);
    return record as Extract<TunnelRecord, { type: T }>;
  }

  /** Takes every record of `type` received so far. */
  take<T extends TunnelRecord["type"]>(type: T): Array<Extract<TunnelRecord, { type: T }>> {
    const taken = this.records.filter((r) => r.type === type) as Array<Extract<TunnelRecord, { type: T }>>;
    for (const record of taken) this.records.splice(this.records.indexOf(record), 1);
    return taken;
  }

  /** Waits for the socket to close; returns the code and reason. */
  async closed(timeoutMs = 5_000): Promise<{ code: number; reason: string }> {
    await this.until(() => (this.closeCode === undefined ? undefined : true), "the socket to close", timeoutMs);
    return { code: this.closeCode as number, reason: this.closeReason };
  }

  /** Waits for a condition over received data. */
  async until<T>(probe: () => T | undefined, what: string, timeoutMs = 5_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = probe();
      if (value !== undefined) return value;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.ws.close(1000, "test done");
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

export class UpgradeRefused extends Error {
  constructor(readonly status: number, readonly body: string) {
    super(`upgrade refused with HTTP ${status}: ${body}`);
  }
}
