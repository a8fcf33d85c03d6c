// docs/protocol.md §11.1 (HELLO-phase limit), §11.3 (reset and resume) and §11.4 (close codes), against the real segment.
import { describe, expect, it } from "vitest";
import type { WelcomeRecord } from "../../datapath/tunnel/records.ts";
import { ADMIN, BASE, BROADCAST, freshSegment, F, frame, joinToken, mac, Peer, portView } from "./peer.ts";
import { exports } from "cloudflare:workers";


const RESUMABLE = F.Resume | F.Stats | F.Coalesced;

/** Resume credentials of a WELCOME, as §11.3 step 4 sends them. */
function credentials(welcome: WelcomeRecord): { sessionId: Uint8Array; token: Uint8Array } {
  return { sessionId: welcome.sessionId.slice(), token: welcome.resumeToken.slice() };
}

/** Closes a peer as a network failure would look to the segment: no BYE, a code other than 1000. */
async function drop(peer: Peer): Promise<void> {
  peer.close(3000, "network gone");
  await peer.closedWith();
}

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");


describe("§11.3 resume", () => {
  it("§11.3 a valid resume gives the same port id, MACs and session id, and a fresh token", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE, macs: [] });
    await drop(first.peer);
    const second = await Peer.join(segment, { features: RESUMABLE, macs: [], resume: credentials(first.welcome) });
    expect(second.welcome.portId).toBe(first.welcome.portId);
    expect(second.welcome.macs).toEqual(first.welcome.macs);
    expect(hex(second.welcome.sessionId)).toBe(hex(first.welcome.sessionId));
    expect(second.welcome.resumeToken.length).toBeGreaterThan(0);
    expect(hex(second.welcome.resumeToken)).not.toBe(hex(first.welcome.resumeToken));
    second.peer.close();
  });

  it("§11.3 a resume keeps the receive filter and the port's counters", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment, { macs: [mac(1)], features: F.Coalesced });
    const first = await Peer.join(segment, { features: RESUMABLE, macs: [mac(2)] });
    await first.peer.post(8);
    first.peer.send([{ type: "set-filter", seq: 1, promiscuous: false, allMulticast: true, multicast: [] }]);
    await first.peer.next("ack");
    first.peer.send([{ type: "tx", id: 0, flags: 0, frame: frame(mac(1), mac(2)) }, { type: "tx", id: 1, flags: 0, frame: frame(mac(1), mac(2)) }]);
    await first.peer.completions(2);
    await drop(first.peer);
    const second = await Peer.join(segment, { features: RESUMABLE, macs: [mac(2)], resume: credentials(first.welcome) });
    await second.peer.post(8);
    second.peer.send([{ type: "stats-request", seq: 2 }]);
    expect((await second.peer.next("stats-reply")).counters.rxFrames).toBe(2);
    // allMulticast survived: a multicast frame arrives without a new set-filter.
    a.send([{ type: "tx", id: 0, flags: 0, frame: frame(0x01_00_5e_00_00_01, mac(1), 4) }]);
    await a.completions(1);
    expect((await second.peer.next("rx")).frame[14]).toBe(4);
    a.close();
    second.peer.close();
  });

  it("§11.3 TX window and credits start fresh on the resumed connection", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE, macs: [mac(2)] });
    await first.peer.post(100);
    await first.peer.settle();
    expect((await portView(segment, first.welcome.portId)).credits).toBe(100);
    await drop(first.peer);
    const second = await Peer.join(segment, { features: RESUMABLE, macs: [mac(2)], resume: credentials(first.welcome) });
    expect((await portView(segment, second.welcome.portId)).credits).toBe(0);
    // Ids outstanding on the old connection are gone: id 0 may be used at once.
    second.peer.send([{ type: "tx", id: 0, flags: 0, frame: frame(BROADCAST, mac(2)) }]);
    expect(await second.peer.completions(1)).toHaveLength(1);
    second.peer.close();
  });

  it("§11.3 a resume token is single-use: presenting it again starts a new session", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE });
    await drop(first.peer);
    const second = await Peer.join(segment, { features: RESUMABLE, resume: credentials(first.welcome) });
    expect(hex(second.welcome.sessionId)).toBe(hex(first.welcome.sessionId));
    await drop(second.peer);
    const third = await Peer.join(segment, { features: RESUMABLE, resume: credentials(first.welcome) });
    expect(hex(third.welcome.sessionId)).not.toBe(hex(first.welcome.sessionId));
    expect(third.welcome.portId).not.toBe(first.welcome.portId);
    third.peer.close();
  });

  it("§11.3 forged credentials are treated as a new join: a new session id", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE });
    await drop(first.peer);
    const forged = { sessionId: first.welcome.sessionId.slice(), token: new Uint8Array(first.welcome.resumeToken.length).fill(7) };
    const second = await Peer.join(segment, { features: RESUMABLE, resume: forged });
    expect(hex(second.welcome.sessionId)).not.toBe(hex(first.welcome.sessionId));
    second.peer.close();
  });

  it("§11.3 a resume on a new socket while the old one is open closes the old one with 4011 and keeps the port's counters", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE, macs: [mac(2)] });
    first.peer.send([{ type: "tx", id: 0, flags: 0, frame: frame(BROADCAST, mac(2)) }]);
    await first.peer.completions(1);
    const second = await Peer.join(segment, { features: RESUMABLE, macs: [mac(2)], resume: credentials(first.welcome) });
    expect((await first.peer.closedWith()).code).toBe(4011);
    expect(second.welcome.portId).toBe(first.welcome.portId);
    expect(second.welcome.macs).toEqual([mac(2)]);
    second.peer.send([{ type: "stats-request", seq: 1 }]);
    expect((await second.peer.next("stats-reply")).counters.rxFrames).toBe(1);
    second.peer.close();
  });

  it("§5.4 after a client BYE the session cannot be resumed", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE });
    first.peer.send([{ type: "bye", code: 1000, reason: "leaving" }]);
    await first.peer.closedWith();
    const second = await Peer.join(segment, { features: RESUMABLE, resume: credentials(first.welcome) });
    expect(hex(second.welcome.sessionId)).not.toBe(hex(first.welcome.sessionId));
    second.peer.close();
  });

  it("§11.3 a client close with code 1000 ends the session like a BYE", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE });
    first.peer.close(1000, "done");
    await first.peer.closedWith();
    const second = await Peer.join(segment, { features: RESUMABLE, resume: credentials(first.welcome) });
    expect(hex(second.welcome.sessionId)).not.toBe(hex(first.welcome.sessionId));
    second.peer.close();
  });

  it("§11.3 a session whose socket the segment closed (protocol error) ends at once: resuming it is a new join", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE });
    first.peer.sendBytes("not the protocol");
    expect((await first.peer.closedWith()).code).toBe(4000);
    const second = await Peer.join(segment, { features: RESUMABLE, resume: credentials(first.welcome) });
    expect(hex(second.welcome.sessionId)).not.toBe(hex(first.welcome.sessionId));
    expect(second.welcome.portId).not.toBe(first.welcome.portId);
    second.peer.close();
  });

  it("§11.3 a session whose port was closed for a revoked token (4008) ends at once", async () => {
    const segment = await freshSegment({ openJoin: false });
    const minted = (await (await exports.default.fetch(`${BASE}/v1/segments/${segment}/tokens`, {
      method: "POST", headers: ADMIN, body: JSON.stringify({ role: "member" }),
    })).json()) as { token: string; jti: string };
    const first = await Peer.join(segment, { features: RESUMABLE }, { token: minted.token });
    await exports.default.fetch(`${BASE}/v1/segments/${segment}/tokens/${minted.jti}/revoke`, { method: "POST", headers: ADMIN });
    expect(await first.peer.closedWith()).toEqual({ code: 4008, reason: "token revoked" });
    const other = await joinToken(segment, "member");
    const second = await Peer.join(segment, { features: RESUMABLE, resume: credentials(first.welcome) }, { token: other });
    expect(hex(second.welcome.sessionId)).not.toBe(hex(first.welcome.sessionId));
    second.peer.close();
  });

  it("§11.3 a resume without Resume offered in the new HELLO is a new join", async () => {
    const segment = await freshSegment();
    const first = await Peer.join(segment, { features: RESUMABLE });
    await drop(first.peer);
    const second = await Peer.join(segment, { features: F.Stats, resume: credentials(first.welcome) });
    expect(hex(second.welcome.sessionId)).not.toBe(hex(first.welcome.sessionId));
    second.peer.close();
  });
});

describe("§11.1 HELLO-phase sockets", () => {
  it("§11.1 a descriptor upgrade beyond min(8, maxPorts/4) sockets without HELLO gets HTTP 503 hello-slots-full; a raw one still opens", async () => {
    const segment = await freshSegment({ maxPorts: 8 });
    const waiting = [await Peer.open(segment), await Peer.open(segment)];
    const response = await Peer.upgrade(segment);
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: string }).error).toBe("hello-slots-full");
    expect(response.webSocket).toBeNull();
    const raw = await Peer.open(segment, { descriptor: false });
    raw.close();
    for (const peer of waiting) peer.close();
  });

  it("§11.1 one join token holds at most 2 sockets without HELLO", async () => {
    const segment = await freshSegment({ openJoin: false, maxPorts: 64 });
    const token = await joinToken(segment, "member");
    const waiting = [await Peer.open(segment, { token }), await Peer.open(segment, { token })];
    const response = await Peer.upgrade(segment, { token });
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: string }).error).toBe("hello-slots-full");
    for (const peer of waiting) peer.close();
  });
});

describe("§11.4 close codes", () => {
  it("§11.4 a full segment answers the upgrade with HTTP 503 segment-full; no socket is opened", async () => {
    const segment = await freshSegment({ maxPorts: 1 });
    const { peer } = await Peer.join(segment);
    const response = await Peer.upgrade(segment);
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: string }).error).toBe("segment-full");
    expect(response.webSocket).toBeNull();
    peer.close();
  });

  it("§11.4 deleting the segment closes every port with 4010", async () => {
    const segment = await freshSegment();
    const { peer: a } = await Peer.join(segment);
    const raw = await Peer.open(segment, { descriptor: false });
    const response = await exports.default.fetch(`${BASE}/v1/segments/${segment}`, { method: "DELETE", headers: ADMIN });
    expect(((await response.json()) as { portsClosed: number }).portsClosed).toBe(2);
    expect((await a.closedWith()).code).toBe(4010);
    expect((await raw.closedWith()).code).toBe(4010);
  });
});
