// End-to-end: a Session on a segment of 3 cells, joined WITHOUT a ?cell= hint (placed in turn by the
// home), resumes its port after its cell restarts: the reconnect asks for the cell its port id names
// (client/session/handshake.ts), so the session it resumes is found. Without that, the home places the
// reconnect on the next cell in turn and the port comes back as a new one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cellOfPortId } from "../../datapath/cells/port-ids.ts";
import { nodeSocketFactory } from "../../client/node-socket.ts";
import { Session } from "../../client/session.ts";
import { markedFrame as frame } from "./marked-frame.ts";
import { waitFor } from "./poll.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";

const SEGMENT = "cells-resume";
const MAC_A = 0x0200_0000_0d01;
const MAC_B = 0x0200_0000_0d02;
let relay: RunningRelay;
const sessions: Session[] = [];


function session(mac: number): Session {
  const created = new Session({
    url: `${relay.wsUrl}/v1/segments/${SEGMENT}/connect`, macs: [mac], socketFactory: nodeSocketFactory,
    reconnect: { initialMs: 50, maxMs: 500 }, keepaliveSeconds: 0, clientName: "cells-resume-e2e",
  });
  sessions.push(created);
  return created;
}

beforeAll(async () => {
  // Open development mode: the reset route (docs/api.md) restarts one cell as a crash would.
  relay = await startRelay();
  const created = await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}`, { method: "PUT", body: JSON.stringify({ openJoin: true, cells: 3 }) });
  expect(created.status).toBe(201);
});

afterAll(async () => {
  for (const s of sessions.splice(0)) s.close();
  await relay?.stop();
});

describe("a session on a segment of 3 cells", () => {
  it("resumes its port on its own cell after that cell restarts, though it joined without ?cell=", async () => {
    const a = session(MAC_A);
    const b = session(MAC_B);
    const first = await a.start();
    await b.start();
    const cell = cellOfPortId(first.portId);
    // The home places joins in turn: A's cell is not the home, or this test would prove nothing about placement.
    const bCell = cellOfPortId(b.welcome?.portId ?? 0);
    expect(cell === 0 && bCell === 0).toBe(false);
    const victim = cell !== 0 ? a : b;
    const victimCell = cell !== 0 ? cell : bCell;
    const victimPort = victim.welcome?.portId;

    const reset = await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}/cells/${victimCell}/reset`, { method: "POST" });
    expect(reset.status).toBe(200);
    await waitFor("the session to lose its socket and come back", () => (victim.counters.reconnects >= 1 && victim.isOpen ? true : undefined));
    expect(victim.welcome?.portId).toBe(victimPort);

    // Traffic flows again between the two cells.
    const got: number[] = [];
    for (const s of [a, b]) s.on("frames", (frames) => got.push(...frames.map((bytes) => bytes[14] as number)));
    const sender = victim === a ? b : a;
    const receiverMac = victim === a ? MAC_A : MAC_B;
    const senderMac = victim === a ? MAC_B : MAC_A;
    await waitFor("a frame across the cells after the resume", () => {
      sender.send([frame(receiverMac, senderMac, 0x42)]);
      return got.includes(0x42) ? true : undefined;
    }, 20_000, 25);
  });
});
