// The fast local path's sockets (client/fast-path-socket.ts) against real `ws` servers on 127.0.0.1:
// a direct port nothing listens on gets the same attempt through the proxy before the session hears
// anything; a direct socket the far end closes, or one that never opens, makes the path forget the
// port; an upgrade the worker refuses, or a close of our own, does not. The real relay:
// test/e2e/session.test.ts.
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { fastPathSocketFactory } from "../../client/fast-path-socket.ts";
import { LocalFastPath, type DirectPortFinder } from "../../client/local-fast-path.ts";
import type { SocketLike } from "../../client/session.ts";
import { freePort } from "../../bench/lib/wrangler-dev.ts";

const servers: WebSocketServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A WebSocket server on 127.0.0.1 that selects the edgelan subprotocol and echoes; `refuse` answers the upgrade with 401. */
async function server(options: { refuse?: boolean } = {}): Promise<{ port: number; wss: WebSocketServer }> {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    handleProtocols: (protocols) => protocols.values().next().value ?? false,
    verifyClient: (_info, done) => (options.refuse === true ? done(false, 401, "no token") : done(true)),
  });
  servers.push(wss);
  wss.on("connection", (ws) => ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise((resolve) => wss.once("listening", resolve));
  return { port: (wss.address() as AddressInfo).port, wss };
}

/** A finder that names `direct` first, then nothing, and counts look-ups. */
function finder(direct: number): DirectPortFinder & { calls: number } {
  const find = Object.assign(async () => (++find.calls === 1 ? direct : null), { calls: 0 });
  return find;
}

/** The proxy's URL in the tests where only the direct port answers (nothing listens on port 1). */
const NO_PROXY = "ws://127.0.0.1:1/c";

/** A fast path whose look-up names `directPort` once, and a socket it opens for NO_PROXY. */
async function directSocket(directPort: number): Promise<{ find: ReturnType<typeof finder>; path: LocalFastPath; socket: SocketLike }> {
  const find = finder(directPort);
  const path = (await LocalFastPath.forUrl(NO_PROXY, find, {})) as LocalFastPath;
  return { find, path, socket: fastPathSocketFactory(path)(NO_PROXY, ["edgelan.v1"], {}) };
}

/** What a session sees of one socket. */
function observe(socket: SocketLike): { events: string[]; done: Promise<{ code: number; httpStatus?: number }> } {
  const events: string[] = [];
  const done = new Promise<{ code: number; httpStatus?: number }>((resolve) => {
    socket.onopen = () => events.push("open");
    socket.onerror = () => events.push("error");
    socket.onmessage = ({ data }) => events.push(`message ${String(data)}`);
    socket.onclose = (event) => {
      events.push(`close ${event.code}`);
      resolve(event);
    };
  });
  return { events, done };
}

const opened = (socket: SocketLike): Promise<void> =>
  new Promise((resolve) => {
    const previous = socket.onopen;
    socket.onopen = (event) => {
      previous?.(event);
      resolve();
    };
  });

const portOf = (socket: SocketLike): string => new URL((socket as unknown as { url: string }).url).port;
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

describe("fastPathSocketFactory", () => {
  it("a direct port nothing listens on: the same socket opens through the proxy, and the session hears one open", async () => {
    const proxy = await server();
    const find = finder(await freePort());
    const path = (await LocalFastPath.forUrl(`ws://127.0.0.1:${proxy.port}/c`, find, {})) as LocalFastPath;
    const socket = fastPathSocketFactory(path)(`ws://127.0.0.1:${proxy.port}/c?x=1`, ["edgelan.v1"], {});
    const { events } = observe(socket);
    await opened(socket);
    expect(portOf(socket)).toBe(String(proxy.port));
    expect(socket.protocol).toBe("edgelan.v1");
    socket.send("ping");
    await settle();
    expect(events).toEqual(["open", "message ping"]);
    await settle();
    expect(find.calls).toBe(2); // the dead port was forgotten and looked up again
    expect(path.directPort).toBeNull();
    socket.close(1000);
  });

  it("a direct socket the far end closes after it opened (wrangler reloaded the worker): the close is heard and the port forgotten", async () => {
    const direct = await server();
    const { find, path, socket } = await directSocket(direct.port);
    const { events, done } = observe(socket);
    await opened(socket);
    expect(portOf(socket)).toBe(String(direct.port));
    for (const client of direct.wss.clients) client.close(1012, "restarting");
    expect((await done).code).toBe(1012);
    expect(events).toEqual(["open", "close 1012"]);
    expect(path.directPort).toBeNull();
    expect(find.calls).toBe(2);
  });

  it("a close of our own, or an upgrade the worker refuses, keeps the port", async () => {
    const direct = await server();
    const { path, socket: ours } = await directSocket(direct.port);
    const mine = observe(ours);
    await opened(ours);
    ours.close(1000, "bye");
    expect((await mine.done).code).toBe(1000);
    expect(path.directPort).toBe(direct.port);

    const refusing = await server({ refuse: true });
    const { path: refusedPath, socket: refused } = await directSocket(refusing.port);
    const { events, done } = observe(refused);
    expect((await done).httpStatus).toBe(401);
    expect(events[0]).toBe("close 1006"); // (`ws` reports the aborted handshake as an error after it, as without the fast path)
    expect(events).not.toContain("open");
    expect(portOf(refused)).toBe(String(refusing.port)); // no fallback: the worker itself answered
    expect(refusedPath.directPort).toBe(refusing.port);
  });

  it("a direct attempt we close before it opens neither falls back nor forgets", async () => {
    const direct = await server();
    const { find, path, socket } = await directSocket(direct.port);
    const { events, done } = observe(socket);
    socket.close(1000);
    await done;
    expect(events).not.toContain("open");
    expect(portOf(socket)).toBe(String(direct.port));
    expect(path.directPort).toBe(direct.port);
    expect(find.calls).toBe(1);
  });

  it("a URL the path does not rewrite gets a plain socket", async () => {
    const proxy = await server();
    const path = (await LocalFastPath.forUrl(`ws://127.0.0.1:${proxy.port}/c`, finder(await freePort()), {})) as LocalFastPath;
    const other = await server();
    const socket = fastPathSocketFactory(path)(`ws://127.0.0.1:${other.port}/c`, ["edgelan.v1"], {});
    observe(socket);
    await opened(socket);
    expect(portOf(socket)).toBe(String(other.port));
    socket.close(1000);
  });
});
