// The client Session against a scripted socket: the cases a real relay cannot be
// made to produce on demand (retryable refusals, a closing socket with records
// queued, message limits, a server that drops the subprotocol).
import { afterEach, describe, expect, it } from "vitest";
import { DropReason } from "../../datapath/counters.ts";
import { decodeMessage, encodeMessage } from "../../datapath/tunnel/codec.ts";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import { Feature, MAX_MESSAGE_BYTES, MAX_RECORDS_PER_MESSAGE, RxFlag } from "../../datapath/tunnel/constants.ts";
import type { TunnelRecord, WelcomeRecord } from "../../datapath/tunnel/records.ts";
import { Session, SessionError, type SessionOptions, type SocketLike } from "../../client/session.ts";

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** A socket the test drives: it opens, delivers records and closes when told. */
class ScriptedSocket implements SocketLike {
  binaryType = "";
  protocol = "";
  readyState = CONNECTING;
  readonly sent: Array<Uint8Array | string> = [];
  onopen: SocketLike["onopen"] = null;
  onmessage: SocketLike["onmessage"] = null;
  onclose: SocketLike["onclose"] = null;
  onerror: SocketLike["onerror"] = null;

  constructor(readonly url: string, readonly headers: Record<string, string>) {}

  send(data: Uint8Array | string): void {
    if (this.readyState !== OPEN) throw new Error("send on a socket that is not open");
    this.sent.push(data);
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }

  open(protocol = "edgelan.v1"): void {
    this.protocol = protocol;
    this.readyState = OPEN;
    this.onopen?.({});
  }

  receive(records: readonly TunnelRecord[]): void {
    const bytes = encodeMessage(records);
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }

  /** The peer goes away with `code`. */
  drop(code: number, reason = ""): void {
    this.readyState = CLOSED;
    this.onclose?.({ code, reason });
  }

  /** Every binary message sent, decoded. */
  messages(): TunnelRecord[][] {
    return this.sent.filter((m): m is Uint8Array => typeof m !== "string").map((bytes) => {
      const decoded = decodeMessage(bytes);
      if (!decoded.ok) throw new Error(decoded.error.message);
      return decoded.value;
    });
  }
}

function welcome(overrides: Partial<WelcomeRecord> = {}): WelcomeRecord {
  return {
    type: "welcome", version: 1, features: 0x7f, portId: 7, maxFrameSize: 1514, txWindow: 16, rxQueue: 256,
    sessionId: new Uint8Array(16).fill(0xa5), resumeToken: new Uint8Array(8).fill(0x5e), macs: [0x02_00_00_00_00_01], ...overrides,
  };
}

const sessions: Session[] = [];
afterEach(() => {
  for (const session of sessions.splice(0)) session.close();
});

/** A session whose sockets are ScriptedSockets, collected in order. */
function scripted(options: Partial<SessionOptions> = {}): { session: Session; sockets: ScriptedSocket[] } {
  const sockets: ScriptedSocket[] = [];
  const session = new Session({
    url: "ws://relay.test/v1/segments/lab/connect", macs: [0x02_00_00_00_00_01], keepaliveSeconds: 0,
    reconnect: { initialMs: 1, maxMs: 2 },
    socketFactory: (url, _protocols, headers) => {
      const socket = new ScriptedSocket(url, headers);
      sockets.push(socket);
      return socket;
    },
    ...options,
  });
  sessions.push(session);
  return { session, sockets };
}

const tick = (ms = 0): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const frame = (size = 64): Uint8Array => new Uint8Array(size).fill(1, 0, 12);

async function opened(options: Partial<SessionOptions> = {}, granted: Partial<WelcomeRecord> = {}): Promise<{ session: Session; sockets: ScriptedSocket[]; socket: ScriptedSocket }> {
  const { session, sockets } = scripted(options);
  const started = session.start();
  const socket = sockets[0] as ScriptedSocket;
  socket.open();
  socket.receive([welcome(granted)]);
  await started;
  return { session, sockets, socket };
}

describe("Session (scripted socket)", () => {
  it("sends the token as a bearer header and the HELLO first", async () => {
    const { sockets } = await opened({ token: "t0k" });
    const socket = sockets[0] as ScriptedSocket;
    expect(socket.headers.authorization).toBe("Bearer t0k");
    expect(socket.messages()[0]?.[0]?.type).toBe("hello");
  });

  it("is not open between a reconnected socket's open and its WELCOME, and sends nothing but the HELLO then", async () => {
    const { session, sockets, socket } = await opened();
    socket.drop(1006);
    await tick(20);
    const second = sockets[1] as ScriptedSocket;
    expect(second).toBeDefined();
    second.open();
    expect(session.isOpen).toBe(false);
    await expect(session.stats()).rejects.toThrow(/not open/);
    session.send([frame()]);
    await tick();
    expect(second.messages()).toHaveLength(1);
    expect(second.messages()[0]?.map((r) => r.type)).toEqual(["hello"]);
    const hello = second.messages()[0]?.[0];
    expect(hello?.type === "hello" && hello.resume !== undefined).toBe(true);

    second.receive([welcome()]);
    expect(session.isOpen).toBe(true);
    expect(session.counters.reconnects).toBe(1);
    await tick();
    expect(second.messages().flat().filter((r) => r.type === "tx")).toHaveLength(1);
  });

  it("never lets records queued for a dead socket precede the next HELLO", async () => {
    const { sockets, socket } = await opened();
    await tick();
    // The socket is closing: a ping arrives, its pong cannot go out, then the close lands.
    socket.readyState = CLOSING;
    socket.receive([{ type: "ping", seq: 9, timestamp: 1 }]);
    await tick();
    socket.drop(1006);
    await tick(20);
    const second = sockets[1] as ScriptedSocket;
    second.open();
    expect(second.messages()[0]?.[0]?.type).toBe("hello");
    expect(second.messages()[0]?.some((r) => r.type === "pong")).toBe(false);
  });

  it("splits a turn's TX into messages within the record and byte limits", async () => {
    const { session, socket } = await opened({}, { txWindow: 8192 });
    const done: number[] = [];
    session.send(Array.from({ length: 5000 }, () => frame(60)), (status) => done.push(status));
    await tick();
    const withTx = socket.messages().filter((records) => records.some((r) => r.type === "tx"));
    expect(withTx.length).toBe(2);
    for (const records of withTx) expect(records.length).toBeLessThanOrEqual(MAX_RECORDS_PER_MESSAGE);
    expect(withTx.flat().filter((r) => r.type === "tx")).toHaveLength(5000);

    // Jumbo frames: bytes, not records, split the message.
    const big = await opened({}, { txWindow: 256, maxFrameSize: 9000 });
    big.session.send(Array.from({ length: 256 }, () => frame(9000)));
    await tick();
    const sizes = big.socket.sent.filter((m): m is Uint8Array => typeof m !== "string").map((m) => m.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(big.socket.messages().flat().filter((r) => r.type === "tx")).toHaveLength(256);
    expect(done).toHaveLength(0);
  });

  it("completes a frame the format cannot carry with oversize instead of throwing", async () => {
    const { session } = await opened();
    const done: number[] = [];
    expect(() => session.send([frame(70_000)], (status) => done.push(status))).not.toThrow();
    expect(done).toEqual([DropReason.Oversize]);
  });

  it("close() completes outstanding and deferred frames with reset, and later sends at once", async () => {
    const { session } = await opened({}, { txWindow: 4 });
    const done: number[] = [];
    session.send(Array.from({ length: 10 }, () => frame()), (status) => done.push(status));
    expect(session.outstanding).toBe(4);
    expect(session.deferredCount).toBe(6);
    session.close();
    expect(done).toEqual(Array.from({ length: 10 }, () => DropReason.Reset));
    expect(session.counters.txReset).toBe(10);
    session.send([frame()], (status) => done.push(status));
    expect(done).toHaveLength(11);
    expect(session.deferredCount).toBe(0);
  });

  it("a lost connection resets what was in flight; deferred frames (never sent) go out after the resume", async () => {
    const { session, sockets, socket } = await opened({}, { txWindow: 4 });
    const done: number[] = [];
    session.send(Array.from({ length: 6 }, () => frame()), (status) => done.push(status));
    socket.drop(1006);
    expect(done).toEqual([15, 15, 15, 15]);
    await tick(20);
    const second = sockets[1] as ScriptedSocket;
    second.open();
    second.receive([welcome({ txWindow: 4 })]);
    await tick();
    const tx = second.messages().flat().filter((r) => r.type === "tx");
    expect(tx).toHaveLength(2);
    second.receive(tx.map((r) => ({ type: "tx-complete" as const, firstId: r.type === "tx" ? r.id : 0, count: 1, status: 0 })));
    expect(done).toEqual([15, 15, 15, 15, 0, 0]);
  });

  it("close() rejects a start() still waiting for its first WELCOME", async () => {
    const { session } = scripted();
    const started = session.start();
    session.close();
    await expect(started).rejects.toThrow(/closed before/);
  });

  it("retries a refusal whose close code allows it, and gives up on one that does not", async () => {
    const { session, sockets } = scripted();
    const started = session.start();
    const first = sockets[0] as ScriptedSocket;
    first.open();
    first.receive([{ type: "refuse", code: CloseCode.SegmentFull, reason: "full" }]);
    first.drop(CloseCode.SegmentFull, "full");
    await tick(20);
    const second = sockets[1] as ScriptedSocket;
    expect(second).toBeDefined();
    second.open();
    second.receive([{ type: "refuse", code: CloseCode.MacTaken, reason: "02:00:00:00:00:01 is in use" }]);
    const error = await started.then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe(CloseCode.MacTaken);
    second.drop(CloseCode.MacTaken);
    await tick(20);
    expect(sockets).toHaveLength(2);
  });

  it("fails fast before the first WELCOME with reconnect.beforeOpen false, and still retries after it", async () => {
    const { session, sockets } = scripted({ reconnect: { initialMs: 1, maxMs: 2, beforeOpen: false } });
    const started = session.start();
    (sockets[0] as ScriptedSocket).drop(1006);
    await expect(started).rejects.toThrow(/cannot reach the relay/);
    await tick(20);
    expect(sockets).toHaveLength(1);

    const joined = await opened({ reconnect: { initialMs: 1, maxMs: 2, beforeOpen: false } });
    joined.socket.drop(1006);
    await tick(20);
    expect(joined.sockets).toHaveLength(2);
  });

  it("refuses a socket whose server did not select edgelan.v1", async () => {
    const { session, sockets } = scripted();
    const started = session.start();
    (sockets[0] as ScriptedSocket).open("");
    const error = await started.then(() => null, (e: unknown) => e);
    expect((error as SessionError).message).toMatch(/did not select the edgelan\.v1 subprotocol/);
    expect((sockets[0] as ScriptedSocket).sent).toHaveLength(0);
  });

  it("treats a completion for an id never sent as a protocol error", async () => {
    const { session, socket } = await opened();
    const errors: SessionError[] = [];
    session.on("error", (error) => errors.push(error));
    socket.receive([{ type: "tx-complete", firstId: 100, count: 1, status: 0 }]);
    expect(errors).toHaveLength(1);
    expect(socket.readyState).toBe(CLOSED);
  });
});

describe("Session with a virtio-net header backend (vnetHeader)", () => {
  /** Header + Ethernet/IPv4/TCP super-frame with `payload` bytes and MSS `mss`, partial checksum. */
  function superFrame(payload: number, mss: number): Uint8Array {
    const total = 40 + payload;
    const ip = [0x45, 0, total >> 8, total & 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    const tcp = [0x30, 0x39, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
    const eth = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
    return Uint8Array.from([1, 1, 54, 0, mss & 0xff, mss >> 8, 34, 0, 16, 0, ...eth, ...ip, ...tcp, ...new Array<number>(payload).fill(7)]);
  }
  const txOf = (socket: ScriptedSocket): Array<Extract<TunnelRecord, { type: "tx" }>> =>
    socket.messages().flat().filter((r): r is Extract<TunnelRecord, { type: "tx" }> => r.type === "tx");

  it("offers Gso, sends super-frames flagged when granted, strips trivial headers, and prepends zero headers on receive", async () => {
    const { session, socket } = await opened({ vnetHeader: true }, { features: 0x7f | Feature.Gso });
    expect((socket.messages()[0]?.[0] as { features: number }).features & Feature.Gso).toBe(Feature.Gso);
    expect(socket.messages().flat().find((r) => r.type === "rx-post")).toMatchObject({ bufferSize: 65_545 });
    const plain = frame(60);
    session.send([superFrame(3000, 1000), Uint8Array.from([...new Uint8Array(10), ...plain])]);
    await tick();
    const sent = txOf(socket);
    expect(sent.map((r) => [r.flags, r.frame.length])).toEqual([[1, 10 + 54 + 3000], [0, 60]]);
    const received: Uint8Array[] = [];
    session.on("frames", (frames) => received.push(...frames));
    socket.receive([{ type: "rx", flags: 0, frame: plain }, { type: "rx", flags: RxFlag.VnetHeader, frame: superFrame(100, 50) }]);
    expect(received.map((f) => f.length)).toEqual([70, 10 + 54 + 100]);
    expect([...(received[0] ?? new Uint8Array(0)).subarray(0, 10)]).toEqual(new Array<number>(10).fill(0));
  });

  it("segments super-frames itself when the segment did not grant Gso", async () => {
    const { session, socket } = await opened({ vnetHeader: true }, { features: 0x7f });
    const done: number[] = [];
    session.send([superFrame(2500, 1000)], (status) => done.push(status));
    await tick();
    const sent = txOf(socket);
    expect(sent.map((r) => [r.flags, r.frame.length])).toEqual([[0, 1054], [0, 1054], [0, 554]]);
    socket.receive([{ type: "tx-complete", firstId: sent[0]?.id ?? 0, count: 3, status: 0 }]);
    expect(done).toEqual([0]);
  });
});
