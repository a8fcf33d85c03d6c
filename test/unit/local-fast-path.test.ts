// The fast local path's rules (client/local-fast-path.ts): which URLs can have one, how a
// connect URL is rewritten, that trouble on the direct port sends the next connections through
// the proxy until a new look-up finds workerd again, and how often look-ups run. The sockets:
// test/unit/fast-path-socket.test.ts. The real relay: test/e2e/session.test.ts.
import { describe, expect, it } from "vitest";
import { FAST_PATH_ENV, LOOKUP_INTERVAL_MS, LocalFastPath, localProxyPort, type DirectPortFinder } from "../../client/local-fast-path.ts";

/** A finder that answers from a list, one answer per look-up (the last one repeats), and counts look-ups. */
function scripted(...answers: Array<number | null | Error>): DirectPortFinder & { calls: number[] } {
  const calls: number[] = [];
  const find = (async (proxyPort: number) => {
    calls.push(proxyPort);
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)];
    if (answer instanceof Error) throw answer;
    return answer ?? null;
  }) as DirectPortFinder & { calls: number[] };
  find.calls = calls;
  return find;
}

const URL_8787 = "ws://127.0.0.1:8787/v1/segments/lab/connect";

describe("localProxyPort", () => {
  it.each([
    [URL_8787, 8787],
    ["ws://localhost:9000/v1/segments/lab/connect", 9000],
    ["wss://127.0.0.1:8787/v1/segments/lab/connect", null],
    ["ws://10.0.0.1:8787/v1/segments/lab/connect", null],
    ["ws://relay.example:8787/v1/segments/lab/connect", null],
    ["ws://127.0.0.1/v1/segments/lab/connect", null],
    ["not a url", null],
  ])("%s → %s", (url, port) => {
    expect(localProxyPort(url)).toBe(port);
  });
});

describe("LocalFastPath", () => {
  it("looks workerd up once for a local URL and rewrites its connect URLs, query and all, to workerd's own port", async () => {
    const find = scripted(40_001);
    const path = await LocalFastPath.forUrl(URL_8787, find, {});
    expect(find.calls).toEqual([8787]);
    expect(path?.directPort).toBe(40_001);
    expect(path?.rewrite(`${URL_8787}?cell=2&resume=abc`)).toBe("ws://127.0.0.1:40001/v1/segments/lab/connect?cell=2&resume=abc");
    expect(path?.rewrite("ws://localhost:8787/v1/segments/lab/connect")).toBe("ws://127.0.0.1:40001/v1/segments/lab/connect");
    // Another port is another relay: left alone.
    expect(path?.rewrite("ws://127.0.0.1:8788/v1/segments/lab/connect")).toBe("ws://127.0.0.1:8788/v1/segments/lab/connect");
  });

  it("is null (no look-up at all) for a URL that is not local, or with EDGELAN_FAST_PATH=off", async () => {
    const find = scripted(40_001);
    expect(await LocalFastPath.forUrl("wss://relay.example/v1/segments/lab/connect", find, {})).toBeNull();
    expect(await LocalFastPath.forUrl(URL_8787, find, { [FAST_PATH_ENV]: "off" })).toBeNull();
    expect(find.calls).toEqual([]);
  });

  it("keeps the URL as given while no workerd is found, when the finder fails, or when it names the proxy's own port", async () => {
    for (const answer of [null, new Error("ss: not found"), 8787]) {
      const path = await LocalFastPath.forUrl(URL_8787, scripted(answer), {});
      expect(path?.directPort).toBeNull();
      expect(path?.rewrite(URL_8787)).toBe(URL_8787);
    }
  });

  it("after something goes wrong on the direct port goes through the proxy, looks again, and takes workerd's new port", async () => {
    const find = scripted(40_001, 40_002);
    const path = (await LocalFastPath.forUrl(URL_8787, find, {})) as LocalFastPath;
    path.forget();
    // At once, before the new look-up answers: the proxy.
    expect(path.rewrite(URL_8787)).toBe(URL_8787);
    await path.refresh();
    expect(find.calls).toEqual([8787, 8787]);
    expect(path.rewrite(URL_8787)).toBe("ws://127.0.0.1:40002/v1/segments/lab/connect");
  });

  it("a look-up that began before the port was forgotten cannot bring it back; one more look-up follows it", async () => {
    const releases: Array<(port: number) => void> = [];
    const find: DirectPortFinder = () => new Promise((resolve) => releases.push(resolve));
    const first = LocalFastPath.forUrl(URL_8787, find, {});
    releases[0]?.(40_001);
    const path = (await first) as LocalFastPath;
    path.forget(); // look-up 2 starts
    path.forget(); // look-up 2 is stale now: look-up 3 will follow it
    path.forget();
    expect(releases).toHaveLength(2);
    releases[1]?.(40_001); // the port as it was before the last failure
    await Promise.resolve();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(path.directPort).toBeNull();
    expect(releases).toHaveLength(3);
    releases[2]?.(40_003);
    await path.refresh();
    expect(path.directPort).toBe(40_003);
    expect(releases).toHaveLength(3);
  });

  it("without a port, a new connection starts a look-up, at most one every LOOKUP_INTERVAL_MS", async () => {
    let clock = 0;
    const find = scripted(null, null, 40_005);
    const path = (await LocalFastPath.forUrl(URL_8787, find, {}, () => clock)) as LocalFastPath;
    expect(path.rewrite(URL_8787)).toBe(URL_8787);
    clock = LOOKUP_INTERVAL_MS - 1;
    expect(path.rewrite(URL_8787)).toBe(URL_8787);
    expect(find.calls).toHaveLength(1);
    clock = LOOKUP_INTERVAL_MS;
    expect(path.rewrite(URL_8787)).toBe(URL_8787); // this connection: the proxy; the look-up serves the next ones
    expect(find.calls).toHaveLength(2);
    await path.refresh();
    clock = 2 * LOOKUP_INTERVAL_MS;
    path.rewrite(URL_8787);
    await path.refresh();
    expect(find.calls).toHaveLength(3);
    expect(path.rewrite(URL_8787)).toBe("ws://127.0.0.1:40005/v1/segments/lab/connect");
    // With a port known, connections start no look-ups.
    clock = 10 * LOOKUP_INTERVAL_MS;
    path.rewrite(URL_8787);
    expect(find.calls).toHaveLength(3);
  });

  it("rewrites only URLs of the proxy itself: a loopback host and the proxy's port", async () => {
    const path = (await LocalFastPath.forUrl(URL_8787, scripted(40_001), {})) as LocalFastPath;
    for (const other of ["ws://10.0.0.1:8787/v1/segments/lab/connect", "wss://127.0.0.1:8787/v1/segments/lab/connect", "ws://relay.example:8787/x"]) {
      expect(path.rewrite(other)).toBe(other);
    }
  });
});
