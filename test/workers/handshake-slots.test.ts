/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { helloSocketLimit } from "../../durable/token-lifecycle.ts";
import { ADMIN, Port, createSegment, describeSegment, hello_ } from "./ports.ts";

// HELLO-phase sockets (protocol.md §11.1, issue 9 §2): a segment holds at most min(8, maxPorts/4) sockets
// that have not said HELLO, and one token (jti) at most 2; the next
// descriptor connect gets 503 hello-slots-full, so no token can fill the port slots with silent sockets.

const BASE = "http://edgelan.test";

async function token(segment: string): Promise<string> {
  const response = await exports.default.fetch(`${BASE}/v1/segments/${segment}/tokens`, { method: "POST", headers: ADMIN, body: JSON.stringify({ role: "member" }) });
  expect(response.status).toBe(201);
  return ((await response.json()) as { token: string }).token;
}

function connect(segment: string, bearer: string | null, descriptor = true): Promise<Response> {
  const headers: Record<string, string> = { Upgrade: "websocket" };
  if (bearer !== null) headers.Authorization = `Bearer ${bearer}`;
  if (descriptor) headers["Sec-WebSocket-Protocol"] = "edgelan.v1";
  return exports.default.fetch(`${BASE}/v1/segments/${segment}/connect`, { headers });
}

/** Opens a socket and keeps it open (accepted, referenced), so its HELLO-phase slot stays taken. */
async function hold(kept: WebSocket[], segment: string, bearer: string | null): Promise<number> {
  const response = await connect(segment, bearer);
  if (response.webSocket !== null) {
    response.webSocket.accept();
    kept.push(response.webSocket);
  }
  return response.status;
}

async function refusal(response: Response): Promise<[number, string]> {
  return [response.status, ((await response.json()) as { error: string }).error];
}

describe("HELLO-phase sockets", () => {
  it("the segment limit is min(8, maxPorts/4), at least 1", () => {
    expect([1, 4, 8, 12, 32, 64, 1024].map(helloSocketLimit)).toEqual([1, 1, 2, 3, 8, 8, 8]);
  });

  it("one token holds at most 2 sockets in HELLO phase (503 hello-slots-full); another token still joins; HELLO frees the slot", async () => {
    await createSegment("hello-per-token", { openJoin: false, maxPorts: 32 });
    const greedy = await token("hello-per-token");
    const held = [await connect("hello-per-token", greedy), await connect("hello-per-token", greedy)];
    expect(held.map((r) => r.status)).toEqual([101, 101]);
    const third = await connect("hello-per-token", greedy);
    expect(await refusal(third)).toEqual([503, "hello-slots-full"]);
    expect((await connect("hello-per-token", await token("hello-per-token"))).status).toBe(101);
    // Raw ports are open at once: not HELLO-phase sockets.
    expect((await connect("hello-per-token", greedy, false)).status).toBe(101);
    const port = new Port(held[0]?.webSocket as WebSocket, true);
    port.send([hello_(0x020000c00001)]);
    await port.next("welcome");
    expect((await connect("hello-per-token", greedy)).status).toBe(101);
  });

  it("the whole segment holds at most min(8, maxPorts/4) HELLO-phase sockets, whoever opens them", async () => {
    await createSegment("hello-per-segment", { openJoin: false, maxPorts: 12 });
    const statuses: number[] = [];
    const kept: WebSocket[] = [];
    for (let i = 0; i < 3; i++) statuses.push(await hold(kept, "hello-per-segment", await token("hello-per-segment")));
    expect(statuses).toEqual([101, 101, 101]);
    expect(await refusal(await connect("hello-per-segment", await token("hello-per-segment")))).toEqual([503, "hello-slots-full"]);
    expect((await describeSegment("hello-per-segment")).counters.joinsRefusedHelloSlots).toBe(1);
    for (const ws of kept) ws.close(1000, "done");
  });

  it("tokenless joins share the segment limit only (8 with maxPorts 64)", async () => {
    await createSegment("hello-open", { maxPorts: 64 });
    const statuses: number[] = [];
    const kept: WebSocket[] = [];
    for (let i = 0; i < 8; i++) statuses.push(await hold(kept, "hello-open", null));
    expect(statuses).toEqual(new Array<number>(8).fill(101));
    expect(await refusal(await connect("hello-open", null))).toEqual([503, "hello-slots-full"]);
    for (const ws of kept) ws.close(1000, "done");
  });
});
