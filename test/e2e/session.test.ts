// End-to-end: the client Session (client/session.ts) over real `ws` sockets
// (client/node-socket.ts) against the real relay (`wrangler dev`): exchange
// with completions, TX-window deferral, RX credit replenishment, control
// requests, reset of outstanding TX when the relay dies, reconnect and resume
// after a restart, backoff with jitter, refusals and an unreachable relay.
import { rmSync } from "node:fs";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DropReason } from "../../datapath/counters.ts";
import { writeMac, type MacKey } from "../../datapath/mac.ts";
import { AckStatus } from "../../datapath/tunnel/constants.ts";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import { LocalFastPath } from "../../client/local-fast-path.ts";
import { nodeSocketFactory } from "../../client/node-socket.ts";
import { fastPathSocketFactory } from "../../client/fast-path-socket.ts";
import { findWorkerdPort } from "../../scripts/workerd-port.mjs";
import { Session, SessionError, type SessionOptions, type SocketFactory, type SocketLike } from "../../client/session.ts";
import { freePort, startRelay, type RunningRelay } from "./relay-harness.ts";
import { startTcpFront } from "../../bench/lib/tcp-front.ts";

let relay: RunningRelay;
const sessions: Session[] = [];

beforeAll(async () => {
  relay = await startRelay(); // open development mode: segments are created on first join, the admin API needs no token
});

afterEach(() => {
  for (const session of sessions.splice(0)) session.close();
});

afterAll(async () => {
  await relay?.stop();
});

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** A 64-byte frame from `src` to `dst`, EtherType 0x88b5, carrying `seq` at bytes 14..17. */
function frame(dst: MacKey, src: MacKey, seq: number): Uint8Array {
  const bytes = new Uint8Array(64);
  writeMac(dst, bytes, 0);
  writeMac(src, bytes, 6);
  bytes[12] = 0x88;
  bytes[13] = 0xb5;
  new DataView(bytes.buffer).setUint32(14, seq);
  return bytes;
}

const seqOf = (bytes: Uint8Array): number => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(14);

function connectUrl(segment: string, base = relay): string {
  return `${base.wsUrl}/v1/segments/${segment}/connect`;
}

/** A session with test-friendly defaults (fast reconnect, no keepalive), closed after the test. */
function session(segment: string, mac: MacKey | null, extra: Partial<SessionOptions> = {}, base = relay): Session {
  const created = new Session({
    url: connectUrl(segment, base), macs: mac === null ? [] : [mac], socketFactory: nodeSocketFactory,
    reconnect: { initialMs: 50, maxMs: 500 }, keepaliveSeconds: 0, clientName: "session-e2e", ...extra,
  });
  sessions.push(created);
  return created;
}

/**
 * bench:floor's TCP front on 127.0.0.1, forwarding to `targetPort`. retire() resets its connections,
 * closes it and puts an impostor on the same port: later connections are counted and dropped.
 */
async function retiringFront(targetPort: number): Promise<{ port: number; retire: () => Promise<void>; impostorConnections: () => number; close: () => Promise<void> }> {
  const front = await startTcpFront("127.0.0.1", 0, targetPort);
  const port = (front.address() as AddressInfo).port;
  const clients = new Set<Socket>();
  front.on("connection", (client: Socket) => {
    clients.add(client);
    client.on("close", () => clients.delete(client));
  });
  let impostorConnections = 0;
  const impostor = createServer((inbound) => {
    impostorConnections++;
    inbound.destroy();
  });
  return {
    port,
    retire: async () => {
      for (const client of clients) client.resetAndDestroy();
      await new Promise((resolve) => front.close(resolve));
      await new Promise<void>((resolve) => impostor.listen(port, "127.0.0.1", resolve));
    },
    impostorConnections: () => impostorConnections,
    close: () => new Promise((resolve) => impostor.close(() => resolve())),
  };
}

/** Collects every frame a session receives. */
function collect(target: Session): Uint8Array[] {
  const received: Uint8Array[] = [];
  target.on("frames", (frames) => received.push(...frames));
  return received;
}

/** Polls `probe` until it is true; fails after `timeoutMs`. */
async function waitFor(probe: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface PortView {
  portId: number;
  counters: { rxFrames: number; txFrames: number; drops: Record<string, number> };
  credits: number | null;
  queuedFrames: number;
}

async function ports(segment: string, base = relay): Promise<PortView[]> {
  const response = await fetch(`${base.baseUrl}/v1/segments/${segment}/ports`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { ports: PortView[] }).ports;
}

const totalDrops = (port: PortView): number => Object.values(port.counters.drops).reduce((sum, n) => sum + n, 0);

/**
 * A SocketFactory over the real `ws` factory that records when each connection
 * attempt starts and can hold back incoming messages (so TX completions stay
 * outstanding for as long as the test wants, deterministically).
 */
function instrumentedFactory(): { factory: SocketFactory; attempts: number[]; hold: (on: boolean) => void } {
  const attempts: number[] = [];
  let holding = false;
  const factory: SocketFactory = (url, protocols, headers) => {
    attempts.push(performance.now());
    const inner = nodeSocketFactory(url, protocols, headers);
    const wrapper: SocketLike = {
      get binaryType() { return inner.binaryType; },
      set binaryType(value) { inner.binaryType = value; },
      get protocol() { return inner.protocol; },
      get readyState() { return inner.readyState; },
      set readyState(_value) { /* read-only on a real socket */ },
      send: (data) => inner.send(data),
      close: (code, reason) => inner.close(code, reason),
      get onopen() { return inner.onopen; },
      set onopen(handler) { inner.onopen = handler; },
      get onclose() { return inner.onclose; },
      set onclose(handler) { inner.onclose = handler; },
      get onerror() { return inner.onerror; },
      set onerror(handler) { inner.onerror = handler; },
      onmessage: null,
    };
    inner.onmessage = (event) => {
      if (!holding) wrapper.onmessage?.(event);
    };
    return wrapper;
  };
  return { factory, attempts, hold: (on) => (holding = on) };
}

const MAC = (n: number): MacKey => 0x02_00_00_00_5e_00 + n;

describe("Session against the real relay", () => {
  it("exchanges frames both ways; every frame's callback reports status 0", async () => {
    const a = session("sx-both", MAC(1));
    const b = session("sx-both", MAC(2));
    const rxA = collect(a);
    const rxB = collect(b);
    const welcomeA = await a.start();
    const welcomeB = await b.start();
    expect(welcomeA.macs).toEqual([MAC(1)]);
    expect(welcomeB.portId).not.toBe(welcomeA.portId);
    expect(a.isOpen && b.isOpen).toBe(true);

    const statusA: number[] = [];
    const statusB: number[] = [];
    a.send(range(50).map((i) => frame(MAC(2), MAC(1), i)), (status) => statusA.push(status));
    b.send(range(30).map((i) => frame(MAC(1), MAC(2), 1000 + i)), (status) => statusB.push(status));
    await waitFor(() => statusA.length === 50 && statusB.length === 30 && rxA.length === 30 && rxB.length === 50, "both directions");
    expect(statusA).toEqual(range(50).map(() => 0));
    expect(statusB).toEqual(range(30).map(() => 0));
    expect(rxB.map(seqOf)).toEqual(range(50));
    expect(rxA.map(seqOf)).toEqual(range(30).map((i) => 1000 + i));
    expect(a.counters).toMatchObject({ txFrames: 50, txOk: 50, txDropped: 0, txReset: 0, txDeferred: 0, rxFrames: 30 });
    expect(b.counters).toMatchObject({ txFrames: 30, txOk: 30, rxFrames: 50, rxBytes: 50 * 64 });
    expect(a.outstanding).toBe(0);
    // Nothing comes back to the sender, nothing more arrives.
    await sleep(200);
    expect(rxA).toHaveLength(30);
    expect(rxB).toHaveLength(50);
  });

  /** A socket factory on the fast path that keeps every socket it made (their `url` is the one in use). */
  function recordingFastPath(path: LocalFastPath): { factory: SocketFactory; ports: () => string[] } {
    const made: SocketLike[] = [];
    const fast = fastPathSocketFactory(path);
    return {
      factory: (target, protocols, headers) => {
        const socket = fast(target, protocols, headers);
        made.push(socket);
        return socket;
      },
      ports: () => made.map((socket) => new URL((socket as unknown as { url: string }).url).port),
    };
  }

  it("the fast local path finds workerd's own port behind wrangler dev's proxy, and frames flow through it", async () => {
    const url = connectUrl("sx-fast");
    const path = await LocalFastPath.forUrl(url, findWorkerdPort, {});
    const direct = path?.directPort ?? null;
    expect(direct).not.toBeNull();
    expect(direct).not.toBe(relay.port);
    const recording = recordingFastPath(path as LocalFastPath);
    const a = session("sx-fast", MAC(9), { socketFactory: recording.factory });
    const b = session("sx-fast", MAC(10), { socketFactory: recording.factory });
    const rxB = collect(b);
    await a.start();
    await b.start();
    expect(recording.ports()).toEqual([String(direct), String(direct)]);
    a.send(range(20).map((i) => frame(MAC(10), MAC(9), i)));
    await waitFor(() => rxB.length === 20, "20 deliveries on the direct port");
    expect(rxB.map(seqOf)).toEqual(range(20));
  });

  it("a URL that names workerd's own port already has no fast path to find (the other workerd is the proxy)", async () => {
    const direct = await findWorkerdPort(relay.port);
    expect(direct).not.toBeNull();
    expect(await findWorkerdPort(direct as number)).toBeNull();
    const path = await LocalFastPath.forUrl(`ws://127.0.0.1:${direct}/v1/segments/sx-fast-own/connect`, findWorkerdPort, {});
    expect(path?.directPort).toBeNull();
  });

  it.each([
    ["retried before the first welcome", {}],
    ["never retried before the first welcome (the CLI)", { reconnect: { beforeOpen: false } }],
  ])("a direct port that refuses (workerd moved) gets the same attempt through the proxy: %s", async (_name, extra: Partial<SessionOptions>) => {
    const dead = await freePort();
    // The first look-up names a port nothing listens on (workerd moved since); the one after the failure finds none.
    let lookups = 0;
    const path = (await LocalFastPath.forUrl(connectUrl("sx-fast-moved"), async () => (++lookups === 1 ? dead : null), {})) as LocalFastPath;
    expect(path.directPort).toBe(dead);
    const recording = recordingFastPath(path);
    const a = session("sx-fast-moved", MAC(11), { socketFactory: recording.factory, ...extra });
    await a.start();
    // One socket: it tried the dead port and opened on the proxy's.
    expect(recording.ports()).toEqual([String(relay.port)]);
    expect(lookups).toBe(2);
    expect(a.isOpen).toBe(true);
    expect(a.counters.reconnects).toBe(0);
  });

  it("a welcomed session whose direct connection the far end drops (a reload) does not trust that port again until a look-up", async () => {
    const direct = await findWorkerdPort(relay.port);
    expect(direct).not.toBeNull();
    // Stands in for the workerd that a reload retires: it forwards to workerd's own port until then, and
    // afterwards another process listens on its port (the risk: a join token sent to a stranger).
    const retiring = await retiringFront(direct as number);
    const answers = [retiring.port, direct as number];
    let lookups = 0;
    const path = (await LocalFastPath.forUrl(connectUrl("sx-fast-reload"), async () => answers[Math.min(lookups++, 1)] ?? null, {})) as LocalFastPath;
    const recording = recordingFastPath(path);
    const a = session("sx-fast-reload", MAC(12), { socketFactory: recording.factory });
    const b = session("sx-fast-reload", MAC(13));
    const rxB = collect(b);
    await a.start();
    await b.start();
    expect(recording.ports()).toEqual([String(retiring.port)]);
    await retiring.retire();
    await waitFor(() => a.counters.reconnects === 1 && a.isOpen, "a reconnected");
    expect(retiring.impostorConnections()).toBe(0);
    await retiring.close();
    // The second connection went to the port found by the look-up after the loss (or to the proxy while it ran), never to the old one.
    expect(lookups).toBe(2);
    expect(recording.ports()).toHaveLength(2);
    expect([String(direct), String(relay.port)]).toContain(recording.ports()[1]);
    a.send(range(5).map((i) => frame(MAC(13), MAC(12), i)));
    await waitFor(() => rxB.length === 5, "5 deliveries after the reconnect");
  });

  it("defers frames beyond the TX window instead of dropping them; all complete ok and arrive in order", async () => {
    const a = session("sx-defer", MAC(3), { txWindow: 16 });
    const b = session("sx-defer", MAC(4));
    const rxB = collect(b);
    expect((await a.start()).txWindow).toBe(16);
    await b.start();

    const statuses: number[] = [];
    a.send(range(300).map((i) => frame(MAC(4), MAC(3), i)), (status) => statuses.push(status));
    // Right after send: one window in flight, the rest waiting for completions.
    expect(a.outstanding).toBe(16);
    expect(a.deferredCount).toBe(284);
    expect(a.counters.txDeferred).toBe(284);
    expect(statuses).toHaveLength(0);

    await waitFor(() => statuses.length === 300 && rxB.length === 300, "300 completions and deliveries");
    expect(statuses.every((status) => status === 0)).toBe(true);
    expect(rxB.map(seqOf)).toEqual(range(300));
    expect(a.deferredCount).toBe(0);
    expect(a.outstanding).toBe(0);
    expect(a.counters).toMatchObject({ txFrames: 300, txOk: 300, txDeferDrops: 0, txReset: 0 });
  });

  it("keeps receiving far more frames than its posted RX buffers: credits are replenished, nothing is dropped", async () => {
    const rxBuffers = 16;
    const a = session("sx-credit", MAC(5), { txWindow: 32 });
    const b = session("sx-credit", MAC(6), { rxBuffers });
    const rxB = collect(b);
    await a.start();
    await b.start();

    // Rounds of twice the receiver's buffers: half is delivered at once, half waits at the segment for new credit.
    const rounds = 40;
    const perRound = 2 * rxBuffers;
    const statuses: number[] = [];
    for (let round = 0; round < rounds; round++) {
      a.send(range(perRound).map((i) => frame(MAC(6), MAC(5), round * perRound + i)), (status) => statuses.push(status));
      await waitFor(() => rxB.length === (round + 1) * perRound, `round ${round} delivered`);
    }
    const total = rounds * perRound;
    await waitFor(() => statuses.length === total, "every completion");
    expect(statuses.every((status) => status === 0)).toBe(true);
    expect(rxB.map(seqOf)).toEqual(range(total));
    expect(b.counters.rxFrames).toBe(total);
    // The receiver posted far more than its buffer count over time, never more than rxBuffers at once.
    expect(b.counters.creditsPosted).toBeGreaterThanOrEqual(total);
    const stats = await b.stats();
    expect(stats.creditsAvailable).toBeLessThanOrEqual(rxBuffers);
    expect(stats.counters.txFrames).toBe(total);

    const byId = new Map((await ports("sx-credit")).map((port) => [port.portId, port]));
    const receiver = byId.get(b.welcome?.portId ?? -1);
    const sender = byId.get(a.welcome?.portId ?? -1);
    expect(receiver?.counters.txFrames).toBe(total);
    expect(receiver && totalDrops(receiver)).toBe(0);
    expect(receiver?.queuedFrames).toBe(0);
    expect(sender?.counters.rxFrames).toBe(total);
    expect(sender && totalDrops(sender)).toBe(0);
  });

  it("answers stats, ping, set-filter, add-mac and remove-mac", async () => {
    const a = session("sx-control", MAC(7));
    const b = session("sx-control", MAC(8));
    const rxA = collect(a);
    await a.start();
    await b.start();

    const done: number[] = [];
    a.send(range(10).map((i) => frame(MAC(8), MAC(7), i)), (status) => done.push(status));
    await waitFor(() => done.length === 10, "10 completions");
    const stats = await a.stats();
    expect(stats.counters.rxFrames).toBe(10); // what the segment received from this port
    expect(stats.counters.rxBytes).toBe(640);
    expect(stats.counters.drops.every((n) => n === 0)).toBe(true);

    const rtt = await a.ping();
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(rtt).toBeLessThan(5_000);

    expect((await a.setFilter({ promiscuous: false, allMulticast: true, multicast: [] })).status).toBe(AckStatus.Ok);
    const taken = await a.addMac(MAC(8));
    expect(taken.status).toBe(AckStatus.MacTaken);
    expect(taken.reason).not.toBe("");

    // A second MAC works: B's frames to it reach A.
    expect((await a.addMac(MAC(9))).status).toBe(AckStatus.Ok);
    const sent: number[] = [];
    b.send([frame(MAC(9), MAC(8), 77)], (status) => sent.push(status));
    await waitFor(() => rxA.length === 1, "a frame to the added MAC");
    expect(seqOf(rxA[0] as Uint8Array)).toBe(77);
    // With lazy completions B's completion may come a little after A's RX (at most callbackFlushMs later).
    await waitFor(() => sent.length === 1, "B's completion");
    expect(sent).toEqual([0]);

    expect((await a.removeMac(MAC(9))).status).toBe(AckStatus.Ok);
    expect((await a.removeMac(MAC(9))).status).toBe(AckStatus.UnknownMac);
  });

  it("rejects start() with a SessionError naming the reason when the HELLO is refused, and does not reconnect", async () => {
    const owner = session("sx-refuse", MAC(10));
    await owner.start();
    const { factory, attempts } = instrumentedFactory();
    const intruder = session("sx-refuse", MAC(10), { socketFactory: factory, reconnect: { initialMs: 20, maxMs: 40 } });
    const closes: boolean[] = [];
    intruder.on("close", (info) => closes.push(info.reconnecting));
    const error = await intruder.start().then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).code).toBe(CloseCode.MacTaken);
    expect((error as SessionError).message).toMatch(/refused.*02:00:00:00:5e:0a/);
    await sleep(500);
    expect(attempts).toHaveLength(1);
    expect(closes.every((reconnecting) => !reconnecting)).toBe(true);
    // A refused session completes later sends at once instead of holding them forever.
    const statuses: number[] = [];
    intruder.send([frame(MAC(1), MAC(10), 0)], (status) => statuses.push(status));
    expect(statuses).toEqual([DropReason.Reset]);
    expect(owner.isOpen).toBe(true);
  });
});

describe("Session without a relay", () => {
  it("rejects start() with a clear message when nothing listens and reconnect is off", async () => {
    const port = await freePort();
    const lonely = new Session({ url: `ws://127.0.0.1:${port}/v1/segments/x/connect`, socketFactory: nodeSocketFactory, reconnect: false });
    sessions.push(lonely);
    const error = await lonely.start().then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).message).toContain(`cannot reach the relay at ws://127.0.0.1:${port}/v1/segments/x/connect`);
    expect((error as SessionError).message).toContain("ECONNREFUSED");
  });

  it("with reconnect on, keeps retrying with exponential backoff and jitter until close()", async () => {
    const port = await freePort();
    const { factory, attempts } = instrumentedFactory();
    // Jitter draws alternate between the two ends so each delay is known: ceiling/2 (draw 0) or ceiling (draw 1).
    const draws = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1];
    let drawn = 0;
    const initialMs = 40;
    const maxMs = 320;
    const retrying = new Session({
      url: `ws://127.0.0.1:${port}/v1/segments/x/connect`, socketFactory: factory,
      reconnect: { initialMs, maxMs }, random: () => draws[drawn++ % draws.length] as number,
    });
    sessions.push(retrying);
    const closes: Array<{ code: number; reconnecting: boolean }> = [];
    retrying.on("close", ({ code, reconnecting }) => closes.push({ code, reconnecting }));
    const started = retrying.start().then(() => null, (e: unknown) => e);

    await waitFor(() => attempts.length >= 8, "8 connection attempts", 15_000);
    retrying.close();
    const error = await started;
    expect(error).toBeInstanceOf(SessionError);
    expect((error as SessionError).message).toMatch(/closed before/);
    expect(closes.slice(0, 7).every((c) => c.code === 1006 && c.reconnecting)).toBe(true);

    const gaps = attempts.slice(1, 8).map((at, i) => at - (attempts[i] as number));
    const expected = range(7).map((k) => {
      const ceiling = Math.min(maxMs, initialMs * 2 ** k);
      return ceiling / 2 + (draws[k] as number) * (ceiling / 2);
    });
    // expected: 20, 80, 80, 320, 160, 320, 160 ms — growing, capped, and jittered.
    for (const [k, gap] of gaps.entries()) {
      expect(gap, `gap ${k}`).toBeGreaterThanOrEqual((expected[k] as number) - 2);
      expect(gap, `gap ${k}`).toBeLessThan((expected[k] as number) + 150);
    }
    expect(Math.max(...gaps)).toBeLessThan(maxMs + 150);
    // Stopped means stopped: no attempt after close().
    const count = attempts.length;
    await sleep(2 * maxMs);
    expect(attempts).toHaveLength(count);
  });
});

describe("Session across a relay restart", () => {
  it("fails every outstanding TX with reset when the relay dies, then reconnects, resumes the same port and carries traffic", async () => {
    let own = await startRelay();
    const stateDir = own.stateDir;
    try {
      const gate = instrumentedFactory();
      const a = session("sx-restart", MAC(20), { socketFactory: gate.factory, txWindow: 64 }, own);
      const b = session("sx-restart", MAC(21), {}, own);
      const rxB = collect(b);
      const firstA = await a.start();
      const firstB = await b.start();

      // Hold A's incoming messages: the relay switches the frames (B gets them) but A never sees a completion.
      gate.hold(true);
      const statuses: number[] = [];
      a.send(range(40).map((i) => frame(MAC(21), MAC(20), i)), (status) => statuses.push(status));
      await waitFor(() => rxB.length === 40, "B to receive the 40 frames");
      expect(a.outstanding).toBe(40);
      expect(statuses).toHaveLength(0);

      // At A's close event every callback has already run, with reset.
      let atClose: number[] | null = null;
      a.on("close", () => (atClose ??= [...statuses]));
      const { port } = own;
      await own.stop({ keepState: true });
      await waitFor(() => atClose !== null, "A to notice the relay is gone");
      expect(atClose).toEqual(range(40).map(() => DropReason.Reset));
      expect(statuses).toEqual(range(40).map(() => DropReason.Reset));
      expect(a.counters.txReset).toBe(40);
      expect(a.counters.txOk).toBe(0);
      expect(a.outstanding).toBe(0);
      expect(a.isOpen).toBe(false);

      gate.hold(false);
      const attemptsWhileDown = gate.attempts.length;
      own = await startRelay({ port, stateDir });
      await waitFor(() => a.isOpen && b.isOpen, "both sessions to reconnect", 30_000);
      expect(gate.attempts.length).toBeGreaterThan(attemptsWhileDown);
      expect(a.counters.reconnects).toBeGreaterThanOrEqual(1);
      expect(b.counters.reconnects).toBeGreaterThanOrEqual(1);
      expect(a.welcome?.portId).toBe(firstA.portId);
      expect(b.welcome?.portId).toBe(firstB.portId);
      expect(Buffer.from(a.welcome?.sessionId ?? []).equals(Buffer.from(firstA.sessionId))).toBe(true);

      const after: number[] = [];
      a.send(range(20).map((i) => frame(MAC(21), MAC(20), 100 + i)), (status) => after.push(status));
      await waitFor(() => after.length === 20 && rxB.length === 60, "traffic after the restart");
      expect(after.every((status) => status === 0)).toBe(true);
      expect(rxB.slice(40).map(seqOf)).toEqual(range(20).map((i) => 100 + i));
    } finally {
      await own.stop();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
