/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { mintJoinToken, newJoinClaims, verifyJoinToken } from "../../worker/auth.ts";
import type { PortAttachment } from "../../durable/port.ts";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import { Segment } from "../../durable/segment.ts";
import { ADMIN, Port, createSegment, describeSegment, hello_ } from "./ports.ts";

// Join-token lifecycle (docs/api.md, "Join tokens"; issue 9 §4): expiry closes open ports, a segment's
// epoch outlives no DELETE, revocation by token id, maxPorts per token, raw: false, limits.

const BASE = "http://edgelan.test";
const SECRET = "test-token-secret";

interface Minted {
  token: string;
  jti: string;
  maxPorts: number | null;
  raw: boolean;
  limits: Record<string, number> | null;
}

async function mint(segment: string, body: Record<string, unknown>): Promise<Minted> {
  const response = await exports.default.fetch(`${BASE}/v1/segments/${segment}/tokens`, { method: "POST", headers: ADMIN, body: JSON.stringify(body) });
  expect(response.status).toBe(201);
  return (await response.json()) as Minted;
}

function connect(segment: string, token: string, descriptor = true): Promise<Response> {
  const headers: Record<string, string> = { Upgrade: "websocket", Authorization: `Bearer ${token}` };
  if (descriptor) headers["Sec-WebSocket-Protocol"] = "edgelan.v1";
  return exports.default.fetch(`${BASE}/v1/segments/${segment}/connect`, { headers });
}

async function refusal(response: Response): Promise<[number, string]> {
  return [response.status, ((await response.json()) as { error: string }).error];
}

/** Connects with a token, says HELLO and waits for WELCOME. */
async function joinWith(segment: string, token: string, mac: number): Promise<Port> {
  const response = await connect(segment, token);
  expect(response.status).toBe(101);
  const port = new Port(response.webSocket as WebSocket, true);
  port.send([hello_(mac)]);
  await port.next("welcome");
  return port;
}

async function closedWithin(port: Port, ms: number): Promise<{ code: number; reason: string }> {
  const deadline = Date.now() + ms;
  while (port.closed === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  return port.closedWith();
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

describe("token expiry", () => {
  it("closes an open port with 4008 \"join token expired\" when its token expires (the segment's alarm)", async () => {
    await createSegment("expiry", { openJoin: false });
    const { token } = await mint("expiry", { role: "member", ttlSeconds: 2 });
    const port = await joinWith("expiry", token, 0x020000a00001);
    const keeps = await joinWith("expiry", (await mint("expiry", { role: "member", ttlSeconds: 600 })).token, 0x020000a00002);
    expect(await closedWithin(port, 10_000)).toEqual({ code: CloseCode.Policy, reason: "join token expired" });
    expect(keeps.closed).toBeUndefined();
    expect((await describeSegment("expiry")).counters.tokenExpiryCloses).toBe(1);
    // The remaining port's alarm still waits for its own expiry.
    const alarm = await runInDurableObject(env.SEGMENTS.getByName("expiry"), (_instance, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
  });

  it("closes it also when the object was rebuilt from its sockets (as after hibernation): the expiry is in the attachment", async () => {
    await createSegment("expiry-hibernated", { openJoin: false });
    const { token } = await mint("expiry-hibernated", { role: "member", ttlSeconds: 600 });
    const port = await joinWith("expiry-hibernated", token, 0x020000a00101);
    await runInDurableObject(env.SEGMENTS.getByName("expiry-hibernated"), async (_instance, state) => {
      for (const ws of state.getWebSockets()) {
        const attachment = ws.deserializeAttachment() as PortAttachment;
        ws.serializeAttachment({ ...attachment, tokenExp: Math.floor(Date.now() / 1000) - 1 });
      }
      await new Segment(state, env).alarm();
    });
    expect(await port.closedWith()).toEqual({ code: CloseCode.Policy, reason: "join token expired" });
  });
});

describe("segment epoch", () => {
  it("refuses (403 token-stale-segment) a token minted before the segment was deleted and recreated", async () => {
    await createSegment("epoch", { openJoin: false });
    const old = await mint("epoch", { role: "member" });
    const claims = await verifyJoinToken(SECRET, old.token, nowSeconds());
    expect(claims.ok && typeof claims.value.sep === "string" && claims.value.sep.length > 0).toBe(true);
    expect((await connect("epoch", old.token)).status).toBe(101);
    expect((await exports.default.fetch(`${BASE}/v1/segments/epoch`, { method: "DELETE", headers: ADMIN })).status).toBe(200);
    await createSegment("epoch", { openJoin: false });
    expect(await refusal(await connect("epoch", old.token))).toEqual([403, "token-stale-segment"]);
    const fresh = await mint("epoch", { role: "member" });
    expect((await connect("epoch", fresh.token)).status).toBe(101);
  });

  it("judges a token without sep by its iat: issued before the segment's creation second is refused, after is admitted", async () => {
    await createSegment("epoch-iat", { openJoin: false });
    const before = await mintJoinToken(SECRET, newJoinClaims("epoch-iat", "member", 600, undefined, nowSeconds() - 60));
    const after = await mintJoinToken(SECRET, newJoinClaims("epoch-iat", "member", 600, undefined, nowSeconds()));
    const { iat: _iat, ...claimsWithoutIat } = newJoinClaims("epoch-iat", "member", 600, undefined, nowSeconds());
    const noIat = await mintJoinToken(SECRET, claimsWithoutIat);
    expect(await refusal(await connect("epoch-iat", before))).toEqual([403, "token-stale-segment"]);
    expect((await connect("epoch-iat", after)).status).toBe(101);
    expect((await connect("epoch-iat", noIat)).status).toBe(101);
  });
});

describe("revocation", () => {
  it("POST …/tokens/:jti/revoke closes the token's ports with 4008 \"token revoked\" and refuses later joins (403 token-revoked)", async () => {
    await createSegment("revoke", { openJoin: false });
    const doomed = await mint("revoke", { role: "member" });
    const other = await mint("revoke", { role: "member" });
    const victim = await joinWith("revoke", doomed.token, 0x020000a10001);
    const bystander = await joinWith("revoke", other.token, 0x020000a10002);
    const response = await exports.default.fetch(`${BASE}/v1/segments/revoke/tokens/${doomed.jti}/revoke`, { method: "POST", headers: ADMIN });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { jti: string; portsClosed: number; alreadyRevoked: boolean; until: string };
    expect(body).toMatchObject({ jti: doomed.jti, portsClosed: 1, alreadyRevoked: false });
    // The entry lasts until the token's own expiry (known from the connected port).
    const claims = await verifyJoinToken(SECRET, doomed.token, nowSeconds());
    expect(claims.ok && Date.parse(body.until) === claims.value.exp * 1000).toBe(true);
    expect(await victim.closedWith()).toEqual({ code: CloseCode.Policy, reason: "token revoked" });
    expect(await refusal(await connect("revoke", doomed.token))).toEqual([403, "token-revoked"]);
    expect(bystander.closed).toBeUndefined();
    expect((await describeSegment("revoke")).counters).toMatchObject({ tokenRevocationCloses: 1, joinsRefusedRevoked: 1 });
    expect((await connect("revoke", other.token)).status).toBe(101);
  });

  it("DELETE …/tokens/:jti revokes too; a repeat says alreadyRevoked; bad ids are 400, unknown segments 404, non-admins 401", async () => {
    await createSegment("revoke-delete", { openJoin: false });
    const minted = await mint("revoke-delete", { role: "member" });
    const first = await exports.default.fetch(`${BASE}/v1/segments/revoke-delete/tokens/${minted.jti}`, { method: "DELETE", headers: ADMIN });
    expect(await first.json()).toMatchObject({ revoked: true, alreadyRevoked: false, portsClosed: 0 });
    const again = await exports.default.fetch(`${BASE}/v1/segments/revoke-delete/tokens/${minted.jti}`, { method: "DELETE", headers: ADMIN });
    expect(await again.json()).toMatchObject({ alreadyRevoked: true });
    expect(await refusal(await connect("revoke-delete", minted.token))).toEqual([403, "token-revoked"]);
    const bad = await exports.default.fetch(`${BASE}/v1/segments/revoke-delete/tokens/${"x".repeat(129)}`, { method: "DELETE", headers: ADMIN });
    expect(await refusal(bad)).toEqual([400, "invalid-token-id"]);
    const missing = await exports.default.fetch(`${BASE}/v1/segments/no-such-segment/tokens/abc/revoke`, { method: "POST", headers: ADMIN });
    expect(await refusal(missing)).toEqual([404, "segment-not-found"]);
    const anonymous = await exports.default.fetch(`${BASE}/v1/segments/revoke-delete/tokens/abc/revoke`, { method: "POST" });
    expect(anonymous.status).toBe(401);
  });

  it("bounds the revocation list at 10,000 unexpired entries (507 revocation-list-full)", async () => {
    await createSegment("revoke-full", { openJoin: false });
    await runInDurableObject(env.SEGMENTS.getByName("revoke-full"), async (instance) => {
      for (let i = 0; i < 10_000; i++) await instance.revokeToken(`t${i}`);
    });
    const response = await exports.default.fetch(`${BASE}/v1/segments/revoke-full/tokens/one-more/revoke`, { method: "POST", headers: ADMIN });
    expect(await refusal(response)).toEqual([507, "revocation-list-full"]);
  });
});

describe("maxPorts, raw and limits claims", () => {
  it("a maxPorts token opens at most that many ports at once (403 token-port-limit), and another after one closes", async () => {
    await createSegment("max-ports", { openJoin: false });
    const minted = await mint("max-ports", { role: "member", maxPorts: 2 });
    expect(minted.maxPorts).toBe(2);
    const first = await joinWith("max-ports", minted.token, 0x020000a20001);
    await joinWith("max-ports", minted.token, 0x020000a20002);
    expect(await refusal(await connect("max-ports", minted.token))).toEqual([403, "token-port-limit"]);
    first.send([{ type: "bye", code: 1000, reason: "done" }]);
    await first.closedWith();
    await joinWith("max-ports", minted.token, 0x020000a20003);
  });

  it("refuses maxPorts outside 1..1024 at mint (400), and a token carrying maxPorts without jti at connect (401 invalid-token)", async () => {
    await createSegment("max-ports-bad", { openJoin: false });
    for (const maxPorts of [0, 1025, 1.5, "2"]) {
      const response = await exports.default.fetch(`${BASE}/v1/segments/max-ports-bad/tokens`, {
        method: "POST", headers: ADMIN, body: JSON.stringify({ role: "member", maxPorts }),
      });
      expect(await refusal(response)).toEqual([400, "invalid-token-request"]);
    }
    const { jti: _jti, ...claims } = newJoinClaims("max-ports-bad", "member", 600, undefined, nowSeconds(), { maxPorts: 1 });
    expect(await refusal(await connect("max-ports-bad", await mintJoinToken(SECRET, claims)))).toEqual([401, "invalid-token"]);
  });

  it("raw: false refuses a raw connect (403 token-forbids-raw) and admits a descriptor one", async () => {
    await createSegment("no-raw", { openJoin: false });
    const minted = await mint("no-raw", { role: "member", raw: false });
    expect(minted.raw).toBe(false);
    expect(await refusal(await connect("no-raw", minted.token, false))).toEqual([403, "token-forbids-raw"]);
    expect((await connect("no-raw", minted.token, true)).status).toBe(101);
    const rawAllowed = await mint("no-raw", { role: "member" });
    expect((await connect("no-raw", rawAllowed.token, false)).status).toBe(101);
  });

  it("limits are checked at mint and reach the port's attachment (tokenLimits) for the switch's policer", async () => {
    await createSegment("limits", { openJoin: false });
    for (const limits of [{ bytesPerSecond: 0 }, { framesPerSecond: -1 }, { burst: 1 }, [1], { floodFramesPerSecond: 1.5 }]) {
      const response = await exports.default.fetch(`${BASE}/v1/segments/limits/tokens`, {
        method: "POST", headers: ADMIN, body: JSON.stringify({ role: "member", limits }),
      });
      expect(await refusal(response)).toEqual([400, "invalid-token-request"]);
    }
    const limits = { bytesPerSecond: 125_000, framesPerSecond: 100, floodFramesPerSecond: 10 };
    const minted = await mint("limits", { role: "member", limits });
    expect(minted.limits).toEqual(limits);
    await joinWith("limits", minted.token, 0x020000a30001);
    const attachments = await runInDurableObject(env.SEGMENTS.getByName("limits"), (_instance, state) =>
      state.getWebSockets().map((ws) => ws.deserializeAttachment() as PortAttachment),
    );
    expect(attachments.map((a) => [a.tokenId, a.tokenLimits])).toEqual([[minted.jti, limits]]);
  });

  it("a token's limits police its port, over the segment's: framesPerSecond 3 completes the 4th frame rate-limited", async () => {
    await createSegment("limits-on", { openJoin: false });
    const limited = await joinWith("limits-on", (await mint("limits-on", { role: "member", limits: { framesPerSecond: 3 } })).token, 0x020000a30011);
    const peer = await joinWith("limits-on", (await mint("limits-on", { role: "member" })).token, 0x020000a30012);
    peer.send([{ type: "rx-post", count: 16, bufferSize: 2048 }]);
    const unicast = (to: number, from: number, n: number): Uint8Array =>
      Uint8Array.from([0x02, 0, 0, 0xa3, 0, to, 0x02, 0, 0, 0xa3, 0, from, 0x08, 0x00, n, ...new Array<number>(45).fill(0)]);
    limited.send([0, 1, 2, 3].map((id) => ({ type: "tx" as const, id, flags: 0, frame: unicast(0x12, 0x11, id) })));
    const runs: number[][] = [];
    for (let done = 0; done < 4;) {
      const run = await limited.next("tx-complete");
      runs.push([run.firstId, run.count, run.status]);
      done += run.count;
    }
    expect(runs).toEqual([[0, 3, 0], [3, 1, 8]]);
    // The peer's token carries no limits: the segment's (no rate limit) apply to it.
    peer.send([0, 1, 2, 3].map((id) => ({ type: "tx" as const, id, flags: 0, frame: unicast(0x11, 0x12, id) })));
    expect(await peer.next("tx-complete")).toMatchObject({ firstId: 0, count: 4, status: 0 });
  });
});
