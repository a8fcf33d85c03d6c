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
import { TxQueue } from "../../client/session/tx-queue.ts";

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
  /** Sees every binary message the session sends (a scripted relay). */
  peer: ((bytes: Uint8Array) => void) | null = null;
  /** Set to claim that send() copies, as Node's `ws` does. */
  copiesOnSend?: boolean;
  onopen: SocketLike["onopen"] = null;
  onmessage: SocketLike["onmessage"] = null;
  onclose: SocketLike["onclose"] = null;
  onerror: SocketLike["onerror"] = null;

  constructor(readonly url: string, readonly headers: Record<string, string>) {}

  send(data: Uint8Array | string): void {
    if (this.readyState !== OPEN) throw new Error("send on a socket that is not open");
    this.sent.push(data);
    if (typeof data !== "string") this.peer?.(data);
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

  it("resumes on its port's cell: the reconnect asks for ?cell= from the port id, unless the URL names one", async () => {
    const onCell2 = await opened({}, { portId: 2 * 2 ** 24 + 5 });
    expect(new URL(onCell2.socket.url).searchParams.has("cell")).toBe(false);
    onCell2.socket.drop(1006);
    await tick(20);
    expect(new URL((onCell2.sockets[1] as ScriptedSocket).url).searchParams.get("cell")).toBe("2");

    const home = await opened({}, { portId: 9 });
    home.socket.drop(1006);
    await tick(20);
    expect(new URL((home.sockets[1] as ScriptedSocket).url).searchParams.get("cell")).toBe("0");

    const pinned = await opened({ url: "ws://relay.test/v1/segments/lab/connect?cell=1" }, { portId: 2 * 2 ** 24 + 5 });
    pinned.socket.drop(1006);
    await tick(20);
    expect(new URL((pinned.sockets[1] as ScriptedSocket).url).searchParams.getAll("cell")).toEqual(["1"]);
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

/** The records of one message. */
function recordsOf(bytes: Uint8Array): TunnelRecord[] {
  const decoded = decodeMessage(bytes);
  if (!decoded.ok) throw new Error(decoded.error.message);
  return decoded.value;
}

/** An IPv4 ICMP echo (request or reply) from `src` to `dst`, as hex would show it. */
function echo(dst: number, src: number, type: 0 | 8, seq: number): Uint8Array {
  const eth = [0, 0, 0, 0, 0, dst, 0, 0, 0, 0, 0, src, 0x08, 0x00];
  const ip = [0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, src, 10, 0, 0, dst];
  const icmp = [type, 0, 0, 0, 0x12, 0x34, seq >> 8, seq & 0xff];
  return Uint8Array.from([...eth, ...ip, ...icmp]);
}

describe("Session with LazyCompletions (docs/protocol.md §6.3 rule 2a)", () => {
  const LAZY = 0x7f | Feature.LazyCompletions;

  it("offers LazyCompletions in its HELLO unless told not to", async () => {
    const offered = await opened();
    expect((offered.socket.messages()[0]?.[0] as { features: number }).features & Feature.LazyCompletions).toBe(Feature.LazyCompletions);
    const declined = await opened({ lazyCompletions: false });
    expect((declined.socket.messages()[0]?.[0] as { features: number }).features & Feature.LazyCompletions).toBe(0);
  });

  /**
   * A scripted relay for two ports that follows rule 2a: completions are held and ride on the next
   * message to their port (an RX), flushed on their own at half the window, and with the PONG of a PING.
   */
  function lazyRelay(a: ScriptedSocket, b: ScriptedSocket, window: number): { toA: number; toB: number } {
    const counts = { toA: 0, toB: 0 };
    const held = new Map<ScriptedSocket, number[]>([[a, []], [b, []]]);
    const deliver = (to: ScriptedSocket, records: TunnelRecord[]): void => {
      const ids = held.get(to) ?? [];
      const completions = ids.map((id): TunnelRecord => ({ type: "tx-complete", firstId: id, count: 1, status: 0 }));
      held.set(to, []);
      if (to === a) counts.toA++;
      else counts.toB++;
      queueMicrotask(() => to.receive([...completions, ...records]));
    };
    for (const [from, to] of [[a, b], [b, a]] as const) {
      from.peer = (bytes) => {
        const records = recordsOf(bytes);
        const tx = records.filter((r): r is Extract<TunnelRecord, { type: "tx" }> => r.type === "tx");
        held.get(from)?.push(...tx.map((r) => r.id));
        for (const r of tx) deliver(to, [{ type: "rx", flags: 0, frame: r.frame }]);
        const pings = records.filter((r): r is Extract<TunnelRecord, { type: "ping" }> => r.type === "ping");
        if (tx.length === 0 && ((held.get(from)?.length ?? 0) > 0 || pings.length > 0)) {
          deliver(from, pings.map((r): TunnelRecord => ({ type: "pong", seq: r.seq, timestamp: r.timestamp })));
        } else if ((held.get(from)?.length ?? 0) >= window / 2) {
          deliver(from, []);
        }
      };
    }
    return counts;
  }

  it("a ping between two ports costs 4 messages, and every frame is completed exactly once", async () => {
    const a = await opened({}, { features: LAZY, txWindow: 16 });
    const b = await opened({}, { features: LAZY, txWindow: 16, portId: 8 });
    await tick();
    const counts = lazyRelay(a.socket, b.socket, 16);
    const sentBefore = { a: a.socket.sent.length, b: b.socket.sent.length };
    // B's "kernel" answers every echo request.
    b.session.on("frames", (frames) => {
      // Like a TAP, without callbacks: a callback would bound its wait with a flush PING (callbackFlushMs).
      for (const f of frames) if (f[34] === 8) b.session.send([echo(1, 2, 0, (f[40] as number) << 8 | (f[41] as number))]);
    });
    const replies: number[] = [];
    a.session.on("frames", (frames) => replies.push(...frames.map((f) => f[41] as number)));
    const PINGS = 20;
    for (let seq = 1; seq <= PINGS; seq++) {
      a.session.send([echo(2, 1, 8, seq)]);
      await tick();
      await tick();
    }
    expect(replies).toEqual(Array.from({ length: PINGS }, (_, i) => i + 1));
    // One message each way per echo from each port: 4 per ping, none of them carrying only completions.
    expect(a.socket.sent.length - sentBefore.a).toBe(PINGS);
    expect(b.socket.sent.length - sentBefore.b).toBe(PINGS);
    expect(counts).toEqual({ toA: PINGS, toB: PINGS });
    expect(a.session.counters.flushPings + b.session.counters.flushPings).toBe(0);
    // Every completion arrived with a later RX, in order; the last of B's is still held by the relay.
    expect(a.session.counters.txOk).toBe(PINGS);
    expect(b.session.counters.txOk).toBe(PINGS - 1);
    expect(b.session.outstanding).toBe(1);
    // A caller that waits for completions gets them with one PING.
    const completed = b.session.whenCompleted();
    await tick();
    await completed;
    expect(b.session.counters.txOk).toBe(PINGS);
    expect(b.session.counters.flushPings).toBe(1);
    expect(recordsOf(b.socket.sent.at(-1) as Uint8Array).map((r) => r.type)).toEqual(["ping"]);
  });

  it("asks for a callback's completion with a flush PING once it waited callbackFlushMs, and not before", async () => {
    const { session, socket } = await opened({ callbackFlushMs: 20 }, { features: LAZY, txWindow: 16 });
    await tick();
    const before = socket.sent.length;
    const done: number[] = [];
    session.send([frame()], (status) => done.push(status));
    await tick();
    expect(socket.messages().slice(before).map((records) => records.map((r) => r.type).join(","))).toEqual(["tx"]);
    await tick(60);
    const sent = socket.messages().slice(before);
    expect(sent.map((records) => records.map((r) => r.type).join(","))).toEqual(["tx", "ping"]);
    const id = (sent[0]?.[0] as Extract<TunnelRecord, { type: "tx" }>).id;
    const ping = sent[1]?.[0] as Extract<TunnelRecord, { type: "ping" }>;
    socket.receive([{ type: "tx-complete", firstId: id, count: 1, status: 0 }, { type: "pong", seq: ping.seq, timestamp: 0 }]);
    await tick();
    expect(done).toEqual([0]);
    expect(session.counters.flushPings).toBe(1);
  });

  it("asks for held completions with one PING, in a message of its own, when the window is full", async () => {
    const { session, socket } = await opened({ callbackFlushMs: 0 }, { features: LAZY, txWindow: 16 });
    await tick();
    const before = socket.sent.length;
    const done: number[] = [];
    session.send(Array.from({ length: 20 }, (_, i) => frame(60 + i)), (status) => done.push(status));
    session.send([frame()], (status) => done.push(status));
    await tick();
    const sent = socket.messages().slice(before);
    expect(sent.map((records) => records.map((r) => r.type).join(","))).toEqual([new Array(16).fill("tx").join(","), "ping"]);
    expect(session.deferredCount).toBe(5);
    const ping = sent[1]?.[0] as Extract<TunnelRecord, { type: "ping" }>;
    const ids = (sent[0] ?? []).map((r) => (r.type === "tx" ? r.id : -1));
    socket.receive([...ids.map((id): TunnelRecord => ({ type: "tx-complete", firstId: id, count: 1, status: 0 })), { type: "pong", seq: ping.seq, timestamp: 0 }]);
    await tick();
    expect(done).toEqual(new Array<number>(16).fill(0));
    expect(socket.messages().slice(before + 2).flat().filter((r) => r.type === "tx")).toHaveLength(5);
    expect(session.counters.flushPings).toBe(1);
  });

  it("does not send flush PINGs when the segment did not grant LazyCompletions", async () => {
    const { session, socket } = await opened({}, { txWindow: 16 });
    session.send(Array.from({ length: 20 }, () => frame()));
    const completed = session.whenCompleted();
    await tick();
    expect(socket.messages().flat().some((r) => r.type === "ping")).toBe(false);
    const ids = socket.messages().flat().flatMap((r) => (r.type === "tx" ? [r.id] : []));
    socket.receive(ids.map((id): TunnelRecord => ({ type: "tx-complete", firstId: id, count: 1, status: 0 })));
    await tick();
    const more = socket.messages().flat().flatMap((r) => (r.type === "tx" ? [r.id] : [])).slice(16);
    socket.receive(more.map((id): TunnelRecord => ({ type: "tx-complete", firstId: id, count: 1, status: 0 })));
    await completed;
    expect(session.counters.flushPings).toBe(0);
  });
});

describe("Session: completions, control requests and protocol errors", () => {
  it("calls a frame's callback once: a second completion for its id is a protocol error, not a second call", async () => {
    const { session, socket } = await opened();
    const errors: SessionError[] = [];
    session.on("error", (error) => errors.push(error));
    const done: number[] = [];
    session.send([frame()], (status) => done.push(status));
    await tick();
    const tx = socket.messages().flat().find((r) => r.type === "tx");
    const id = tx?.type === "tx" ? tx.id : -1;
    socket.receive([{ type: "tx-complete", firstId: id, count: 1, status: 0 }]);
    socket.receive([{ type: "tx-complete", firstId: id, count: 1, status: 0 }]);
    expect(done).toEqual([0]);
    expect(errors.map((e) => e.code)).toEqual([4000]);
  });

  it("rejects control requests in flight with a SessionError when the connection goes", async () => {
    const { session, socket } = await opened();
    const stats = session.stats();
    socket.drop(1006, "gone");
    const error = await stats.then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe(1006);
  });

  it("reports an undecodable message as a warning event (not the console) and resumes on a new socket", async () => {
    const { session, sockets, socket } = await opened();
    const warnings: SessionError[] = [];
    session.on("warning", (warning) => warnings.push(warning));
    socket.onmessage?.({ data: Uint8Array.from([0x45, 0x4c, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00]).buffer });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toMatch(/undecodable message/);
    expect(session.counters.protocolErrors).toBe(1);
    await tick(20);
    expect(sockets).toHaveLength(2);
  });

  it("treats RX beyond the posted credits as a protocol error and resumes", async () => {
    const { session, sockets, socket } = await opened({ rxBuffers: 2 });
    const warnings: SessionError[] = [];
    session.on("warning", (warning) => warnings.push(warning));
    const received: Uint8Array[] = [];
    session.on("frames", (frames) => received.push(...frames));
    socket.receive([1, 2, 3].map((): TunnelRecord => ({ type: "rx", flags: 0, frame: frame() })));
    expect(received).toHaveLength(0);
    expect(warnings[0]?.message).toMatch(/3 frames with only 2 buffers posted/);
    await tick(20);
    expect(sockets).toHaveLength(2);
  });

  it("posts RX credits again once a quarter of them are used", async () => {
    const { socket } = await opened({ rxBuffers: 8 });
    await tick();
    const posts = (): number[] => socket.messages().flat().flatMap((r) => (r.type === "rx-post" ? [r.count] : []));
    expect(posts()).toEqual([8]);
    socket.receive([{ type: "rx", flags: 0, frame: frame() }]);
    await tick();
    expect(posts()).toEqual([8]);
    socket.receive([{ type: "rx", flags: 0, frame: frame() }]);
    await tick();
    expect(posts()).toEqual([8, 2]);
  });

  it("hands a socket that copies on send a view of its encoder, and any other socket a copy of its own", async () => {
    const copying = await opened({}, { txWindow: 16 });
    copying.socket.copiesOnSend = true;
    copying.session.send([frame()]);
    await tick();
    copying.session.send([frame()]);
    await tick();
    const [first, second] = copying.socket.sent.slice(-2) as Uint8Array[];
    expect(first?.buffer).toBe(second?.buffer);
    expect(first?.buffer.byteLength).toBeGreaterThan(first?.byteLength ?? 0);

    const plain = await opened({}, { txWindow: 16 });
    plain.session.send([frame()]);
    await tick();
    plain.session.send([frame()]);
    await tick();
    const [one, two] = plain.socket.sent.slice(-2) as Uint8Array[];
    expect(one?.buffer).not.toBe(two?.buffer);
    expect(one?.buffer.byteLength).toBe(one?.byteLength);
  });
});

describe("Session receiving Buffers from Node's ws (binaryType nodebuffer)", () => {
  it("keeps the socket's binaryType and delivers frames as views of the received chunk, not copies", async () => {
    // A browser-like socket is switched to ArrayBuffers.
    const plain = await opened();
    expect(plain.socket.binaryType).toBe("arraybuffer");

    const viaNode = scripted({
      socketFactory: (url, _protocols, headers) => {
        const created = new ScriptedSocket(url, headers);
        created.binaryType = "nodebuffer";
        viaNodeSockets.push(created);
        return created;
      },
    });
    const viaNodeSockets: ScriptedSocket[] = [];
    const opening = viaNode.session.start();
    const ws = viaNodeSockets[0] as ScriptedSocket;
    expect(ws.binaryType).toBe("nodebuffer");
    ws.open();
    // A read chunk holding bytes before and after the message, as a socket read would.
    const deliver = (records: TunnelRecord[]): Uint8Array => {
      const message = encodeMessage(records);
      const chunk = new Uint8Array(message.length + 16);
      chunk.set(message, 8);
      const view = chunk.subarray(8, 8 + message.length);
      ws.onmessage?.({ data: view });
      return chunk;
    };
    deliver([welcome()]);
    await opening;
    const received: Uint8Array[] = [];
    viaNode.session.on("frames", (frames) => received.push(...frames));
    ws.onmessage?.({ data: "keepalive answer" });
    const chunk = deliver([{ type: "rx", flags: 0, frame: frame(64) }]);
    expect(received).toHaveLength(1);
    expect(received[0]?.buffer).toBe(chunk.buffer);
    expect(received[0]?.length).toBe(64);
  });
});

describe("TxQueue (the deferred-TX ring)", () => {
  it("is first in, first out across wrap-around and growth, and refuses past its limit", () => {
    const queue = new TxQueue(100);
    const entry = (n: number): { frame: Uint8Array; flags: number; done: undefined } => ({ frame: Uint8Array.of(n), flags: 0, done: undefined });
    for (let i = 0; i < 50; i++) queue.push(entry(i));
    for (let i = 0; i < 40; i++) expect(queue.shift()?.frame[0]).toBe(i);
    for (let i = 50; i < 140; i++) expect(queue.push(entry(i))).toBe(true);
    expect(queue.push(entry(255))).toBe(false);
    expect(queue.length).toBe(100);
    expect(queue.peek()?.frame[0]).toBe(40);
    expect(queue.drain().map((e) => e.frame[0])).toEqual(Array.from({ length: 100 }, (_, i) => i + 40));
    expect(queue.shift()).toBeUndefined();
  });
});
