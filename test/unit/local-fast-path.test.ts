// The fast local path's rules (client/local-fast-path.ts): which URLs can have one, how a
// connect URL is rewritten, and that a failed direct connection sends the next ones through
// the proxy until a new look-up finds workerd again. The real relay: test/e2e/session.test.ts.
import { describe, expect, it } from "vitest";
import { FAST_PATH_ENV, LocalFastPath, localProxyPort, type DirectPortFinder } from "../../client/local-fast-path.ts";

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

  it("after a failed direct connection goes through the proxy, looks again, and takes workerd's new port", async () => {
    const find = scripted(40_001, 40_002);
    const path = (await LocalFastPath.forUrl(URL_8787, find, {})) as LocalFastPath;
    path.failed();
    // At once, before the new look-up answers: the proxy.
    expect(path.rewrite(URL_8787)).toBe(URL_8787);
    await path.refresh();
    expect(find.calls).toEqual([8787, 8787]);
    expect(path.rewrite(URL_8787)).toBe("ws://127.0.0.1:40002/v1/segments/lab/connect");
  });

  it("runs one look-up at a time however many connections fail together", async () => {
    let release: (port: number) => void = () => undefined;
    const calls: number[] = [];
    const find: DirectPortFinder = (proxyPort) => {
      calls.push(proxyPort);
      return calls.length === 1 ? Promise.resolve(40_001) : new Promise((resolve) => (release = resolve));
    };
    const path = (await LocalFastPath.forUrl(URL_8787, find, {})) as LocalFastPath;
    path.failed();
    path.failed();
    path.failed();
    expect(calls).toHaveLength(2);
    release(40_003);
    await path.refresh();
    expect(path.directPort).toBe(40_003);
  });
});
