/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ADMIN, BROADCAST, createSegment, frame, hello_, Port } from "./ports.ts";
import { describeCells, joinCell, markers, routesSettled, trunkPairs, type CellPort } from "./cells-ports.ts";
import worker from "../../worker/index.ts";
import type { Env } from "../../worker/env.ts";

// A segment of 3 cells in one workerd (docs/cells.md §11): ports forced onto cells with ?cell=,
// real WebSocket clients, trunks as Durable Object RPC between the cells.

const M = [0x0200_0000_0a01, 0x0200_0000_0a02, 0x0200_0000_0a03];

const describe_ = describeCells;

async function ports(segment: string): Promise<CellPort[]> {
  return (await describe_(segment)).ports;
}

/** Waits until every cell's routes are known to the others: each port's unicast probe reaches its target. */
async function threeCells(segment: string): Promise<Port[]> {
  await createSegment(segment, { cells: 3 });
  const all = [await joinCell(segment, 0, M[0] as number), await joinCell(segment, 1, M[1] as number), await joinCell(segment, 2, M[2] as number)];
  // Each cell's routes and filter travel in the trunk calls after its WELCOME.
  await routesSettled(segment, 2);
  for (const [i, port] of all.entries()) port.send([{ type: "tx", id: i, flags: 0, frame: frame(BROADCAST, M[i] as number, 0x10 + i) }]);
  for (const [i, port] of all.entries()) expect((await markers(port, 2)).sort()).toEqual([0x10, 0x11, 0x12].filter((m) => m !== 0x10 + i));
  return all;
}

describe("a segment of 3 cells", () => {
  it("lists each port with its cell, and ids from each cell's range", async () => {
    await threeCells("cells-list");
    const listed = await ports("cells-list");
    expect(listed.map((port) => [port.cell, Math.floor(port.portId / 2 ** 24)]).sort()).toEqual([[0, 0], [1, 1], [2, 2]]);
  });

  it("broadcast reaches every other cell once and never echoes; unicast reaches exactly one cell", async () => {
    const [a, b, c] = (await threeCells("cells-switch")) as [Port, Port, Port];
    a.send([{ type: "tx", id: 10, flags: 0, frame: frame(M[1] as number, M[0] as number, 0x20) }]);
    expect(await markers(b, 1)).toEqual([0x20]);
    // A later broadcast from a reaches c; trunks are ordered per pair, so c got nothing before it.
    a.send([{ type: "tx", id: 11, flags: 0, frame: frame(BROADCAST, M[0] as number, 0x21) }]);
    expect(await markers(c, 1)).toEqual([0x21]);
    expect(await markers(b, 1)).toEqual([0x21]);
    expect(a.records.filter((r) => r.type === "rx")).toEqual([]);
  });

  it("a MAC learned behind a bridge port on one cell moves to a bridge port on another", async () => {
    const [a, b, c] = (await threeCells("cells-move")) as [Port, Port, Port];
    const b1 = await joinCell("cells-move", 1, 0, "bridge");
    const b2 = await joinCell("cells-move", 2, 0, "bridge");
    await routesSettled("cells-move", 2);
    const X = 0x0200_0000_0b0b;
    // A route rides in the same trunk call as the frame that taught it, ahead of the frames: once a sees
    // X's broadcast, cell 0 knows where X is.
    b1.send([{ type: "tx", id: 1, flags: 0, frame: frame(BROADCAST, X, 0x30) }]);
    expect(await markers(a, 1)).toEqual([0x30]);
    a.send([{ type: "tx", id: 20, flags: 0, frame: frame(X, M[0] as number, 0x31) }]);
    expect(await markers(b1, 1)).toEqual([0x31]);
    expect(await markers(b2, 1)).toEqual([0x30]);
    // X shows up behind the bridge on cell 2: its route (seq 1) beats cell 1's (seq 0).
    b2.send([{ type: "tx", id: 1, flags: 0, frame: frame(BROADCAST, X, 0x32) }]);
    expect(await markers(a, 1)).toEqual([0x32]);
    expect(await markers(b1, 1)).toEqual([0x32]);
    a.send([{ type: "tx", id: 21, flags: 0, frame: frame(X, M[0] as number, 0x33) }]);
    expect(await markers(b2, 1)).toEqual([0x33]);
    // b1 gets a's next broadcast and nothing before it (calls between two cells keep their order).
    a.send([{ type: "tx", id: 22, flags: 0, frame: frame(BROADCAST, M[0] as number, 0x34) }]);
    expect(await markers(b1, 1)).toEqual([0x34]);
    expect((await markers(b, 3)).sort()).toEqual([0x30, 0x32, 0x34]);
    expect((await markers(c, 3)).sort()).toEqual([0x30, 0x32, 0x34]);
  });

  it("a monitor on one cell sees a unicast between two other cells exactly once", async () => {
    const [a, b] = (await threeCells("cells-monitor")) as [Port, Port, Port];
    const monitor = await joinCell("cells-monitor", 2, 0, "monitor");
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 10_000;
      const poll = async (): Promise<void> => {
        const cells = (await describe_("cells-monitor")).cells ?? [];
        if (cells.some((cell) => cell.index === 0)) return resolve();
        if (Date.now() > deadline) return reject(new Error("no cells"));
        setTimeout(() => void poll(), 20);
      };
      void poll();
    });
    // Until cell 0 knows cell 2 has a monitor, it sends no mirror copy: send until one arrives, then count.
    let marker = 0x50;
    const deadline = Date.now() + 10_000;
    for (;;) {
      a.send([{ type: "tx", id: marker, flags: 0, frame: frame(M[1] as number, M[0] as number, marker) }]);
      expect(await markers(b, 1)).toEqual([marker]);
      if (monitor.records.some((r) => r.type === "rx")) break;
      if (Date.now() > deadline) throw new Error("the monitor never got a copy");
      marker++;
    }
    const last = marker + 1;
    a.send([{ type: "tx", id: last, flags: 0, frame: frame(M[1] as number, M[0] as number, last) }]);
    expect(await markers(b, 1)).toEqual([last]);
    const seen: number[] = [];
    while (!seen.includes(last)) seen.push(...(await markers(monitor, 1)));
    // From the first mirrored frame on, every frame between cells 0 and 1 reached the monitor on cell 2 once, in order.
    const first = seen[0] as number;
    expect(seen).toEqual(Array.from({ length: last - first + 1 }, (_, i) => first + i));
  });

  it("a MAC registered on one cell is refused to a port on another (closed 4009, the first keeps it)", async () => {
    const [a, b] = (await threeCells("cells-claim")) as [Port, Port, Port];
    const thief = await Port.open("cells-claim", true, "?cell=2");
    thief.send([hello_(M[0] as number)]);
    expect((await thief.closedWith()).code).toBe(4009);
    b.send([{ type: "tx", id: 30, flags: 0, frame: frame(M[0] as number, M[1] as number, 0x60) }]);
    expect(await markers(a, 1)).toEqual([0x60]);
  });

  it("a cell reset mid-traffic: its ports close, the others lose nothing and keep talking, its MACs are free again", async () => {
    const [a, b, c] = (await threeCells("cells-reset")) as [Port, Port, Port];
    const cell1 = env.SEGMENTS.getByName("cells-reset#1");
    await expect(runInDurableObject(cell1, (_instance, state) => state.abort("test reset"))).rejects.toThrow();
    expect(b.closed ?? (await b.closedWith())).toBeDefined();
    // The next flood wakes cell 1 under a new epoch: every cell drops its routes; the others announce theirs to it again.
    a.send([{ type: "tx", id: 40, flags: 0, frame: frame(BROADCAST, M[0] as number, 0x70) }]);
    expect(await markers(c, 1)).toEqual([0x70]);
    await routesSettled("cells-reset", [1, 2, 1]);
    a.send([{ type: "tx", id: 41, flags: 0, frame: frame(M[2] as number, M[0] as number, 0x71) }]);
    expect(await markers(c, 1)).toEqual([0x71]);
    expect(a.closed).toBeUndefined();
    expect(c.closed).toBeUndefined();
    // b's MAC is free: it comes back on another cell and is reachable there.
    const back = await joinCell("cells-reset", 2, M[1] as number);
    await routesSettled("cells-reset", [2, 3, 1]);
    a.send([{ type: "tx", id: 42, flags: 0, frame: frame(M[1] as number, M[0] as number, 0x72) }]);
    expect(await markers(back, 1)).toEqual([0x72]);
    expect(back.closed).toBeUndefined();
  });

  it("every trunk pair's counters agree at quiescence: frames sent = frames received + frames lost in failed calls (§9)", async () => {
    const all = await threeCells("cells-invariant");
    // Each port sends unicast to each other port and one broadcast, three rounds.
    for (let round = 0; round < 3; round++) {
      for (const [i, port] of all.entries()) {
        const records = M.filter((_, j) => j !== i).map((dst, k) => ({ type: "tx" as const, id: 100 + round * 8 + k, flags: 0, frame: frame(dst, M[i] as number, round) }));
        port.send([...records, { type: "tx", id: 100 + round * 8 + 7, flags: 0, frame: frame(BROADCAST, M[i] as number, round) }]);
      }
      // Each port gets 2 unicast and 2 broadcast frames per round: keep its credits topped up.
      for (const port of all) {
        await port.rx(4);
        port.send([{ type: "rx-post", count: 4, bufferSize: 2048 }]);
      }
    }
    const deadline = Date.now() + 10_000;
    for (;;) {
      const pairs = trunkPairs((await describe_("cells-invariant")).cells ?? []);
      if (pairs.length === 6 && pairs.every((pair) => pair.sent === pair.received + pair.failed)) {
        expect(pairs.reduce((sum, pair) => sum + pair.failed, 0)).toBe(0);
        // 3 rounds × (2 unicast + 1 broadcast to each of 2 cells) per sender, plus the 3 broadcasts of threeCells.
        expect(pairs.reduce((sum, pair) => sum + pair.sent, 0)).toBe(3 * 3 * 4 + 3 * 2);
        return;
      }
      if (Date.now() > deadline) throw new Error(`trunk counters never agreed: ${JSON.stringify(pairs)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  it("deleting the segment closes the ports of every cell", async () => {
    const all = await threeCells("cells-delete");
    const response = await exports.default.fetch("http://edgelan.test/v1/segments/cells-delete", { method: "DELETE", headers: ADMIN });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ portsClosed: 3 });
    for (const port of all) expect((await port.closedWith()).code).toBe(4010);
  });
});

describe("a cell killed mid-traffic (docs/cells.md §7)", () => {
  it("its port resumes with the same id; ports on other cells lose nothing; frames in flight to it are lost and counted", async () => {
    const segment = "cells-kill";
    await createSegment(segment, { cells: 3 });
    const a = await joinCell(segment, 0, M[0] as number);
    const b = await Port.open(segment, true, "?cell=1");
    b.send([hello_(M[1] as number)]);
    const welcome = await b.next("welcome");
    b.send([{ type: "rx-post", count: 64, bufferSize: 2048 }]);
    const c = await joinCell(segment, 2, M[2] as number);
    await routesSettled(segment, 2);
    // One message of 4 frames to b (cell 1) and 4 to c (cell 2); cell 1 is killed before any of it is awaited.
    const toB = [0x80, 0x81, 0x82, 0x83];
    const toC = [0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97];
    a.send([...toB.map((m) => ({ type: "tx" as const, id: m, flags: 0, frame: frame(M[1] as number, M[0] as number, m) })),
      ...toC.slice(0, 4).map((m) => ({ type: "tx" as const, id: m, flags: 0, frame: frame(M[2] as number, M[0] as number, m) }))]);
    await expect(runInDurableObject(env.SEGMENTS.getByName(`${segment}#1`), (_instance, state) => state.abort("killed mid-traffic"))).rejects.toThrow();
    a.send(toC.slice(4).map((m) => ({ type: "tx" as const, id: m, flags: 0, frame: frame(M[2] as number, M[0] as number, m) })));
    // c gets every frame, in order; a's 12 TX all complete ok (switched at cell 0); neither a nor c is closed.
    expect(await markers(c, 8)).toEqual(toC);
    const completed = await a.until(() => {
      const done = a.records.filter((r): r is Extract<typeof r, { type: "tx-complete" }> => r.type === "tx-complete");
      return done.reduce((sum, r) => sum + r.count, 0) >= 12 ? done : undefined;
    }, "12 completions");
    expect(completed.every((r) => r.status === 0)).toBe(true);
    expect(b.closed ?? (await b.closedWith())).toBeDefined();
    expect(a.closed).toBeUndefined();
    expect(c.closed).toBeUndefined();
    // What b got before the kill is a prefix of what a sent it, in order; the rest is lost with the cell.
    const gotByB = b.records.filter((r): r is Extract<typeof r, { type: "rx" }> => r.type === "rx").map((r) => r.frame[14] as number);
    expect(toB.slice(0, gotByB.length)).toEqual(gotByB);

    // b resumes on cell 1 (a new epoch): same port id and MAC; the cells exchange full announces and a reaches b again.
    const again = await Port.open(segment, true, "?cell=1");
    again.send([hello_(0, { resume: { sessionId: welcome.sessionId, token: welcome.resumeToken } })]);
    expect(await again.next("welcome")).toMatchObject({ portId: welcome.portId, macs: [M[1]] });
    again.send([{ type: "rx-post", count: 64, bufferSize: 2048 }]);
    await routesSettled(segment, 2);
    const cells = (await describe_(segment)).cells ?? [];
    expect(cells.find((cell) => cell.index === 1)?.epoch).toBeGreaterThan(1);
    a.send([{ type: "tx", id: 0xa0, flags: 0, frame: frame(M[1] as number, M[0] as number, 0xa0) }]);
    expect(await markers(again, 1)).toEqual([0xa0]);
    c.send([{ type: "tx", id: 0xa1, flags: 0, frame: frame(M[1] as number, M[2] as number, 0xa1) }]);
    expect(await markers(again, 1)).toEqual([0xa1]);
    // Every frame a sent towards b before the kill is accounted for: delivered to b, or lost in a failed trunk
    // call (failedFrames on cell 0's trunk to 1), or lost inside the killed cell (handed to b's socket as it died).
    const trunk01 = cells.find((cell) => cell.index === 0)?.trunks.find((t) => t.peer === 1);
    expect(gotByB.length + (trunk01?.failedFrames ?? 0)).toBeLessThanOrEqual(toB.length);
    expect(trunk01?.backlogDrops).toBe(0);
  });
});

describe("completions that wait for another cell (protocol.md §6.3 rule 8, CellCompletions)", () => {
  const W = 0x0200_0000_0a04;
  const CELL_COMPLETIONS = 0x200;
  type Completion = Extract<Port["records"][number], { type: "tx-complete" }>;
  const completionsOf = (port: Port): Completion[] => port.records.filter((r): r is Completion => r.type === "tx-complete");
  const completedIds = (port: Port): number[] => completionsOf(port).flatMap((r) => Array.from({ length: r.count }, (_, i) => (r.firstId + i) & 0xffff));

  async function waitingSender(segment: string): Promise<Port> {
    const w = await Port.open(segment, true, "?cell=0");
    w.send([hello_(W, { features: 0x7f | CELL_COMPLETIONS })]);
    expect((await w.next("welcome")).features & CELL_COMPLETIONS).toBe(CELL_COMPLETIONS);
    // Cells 1 and 2 now know two MACs on cell 0.
    await routesSettled(segment, [2, 3, 3]);
    return w;
  }

  it("a TX to another cell completes ok once that cell took it, and the frame is there by then", async () => {
    const [, b] = (await threeCells("cells-wait-ok")) as [Port, Port, Port];
    const w = await waitingSender("cells-wait-ok");
    w.send([{ type: "tx", id: 1, flags: 0, frame: frame(M[1] as number, W, 0x41) }]);
    const done = await w.until(() => (completedIds(w).includes(1) ? completionsOf(w) : undefined), "the completion of id 1");
    expect(done).toEqual([{ type: "tx-complete", firstId: 1, count: 1, status: 0 }]);
    expect(await markers(b, 1)).toEqual([0x41]);
  });

  it("frames in flight to a cell killed mid-call complete cell-unreachable (17), exactly those its trunk lost; every id once", async () => {
    const segment = "cells-wait-kill";
    await threeCells(segment);
    const w = await waitingSender(segment);
    const ids = [0x10, 0x11, 0x12, 0x13];
    // Plain flags, polled on both sides: a promise of the test's context may not be settled from the cell's.
    const stage = { blocked: false, sent: false };
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
    // Cell 1 admits no event while blocked, so cell 0's trunk call carrying w's frames waits at its gate
    // and is in flight when the cell is killed: the call fails.
    const killing = runInDurableObject(env.SEGMENTS.getByName(`${segment}#1`), (_instance, state) =>
      state.blockConcurrencyWhile(async () => {
        stage.blocked = true;
        for (let i = 0; i < 200 && !stage.sent; i++) await sleep(10);
        // Time for cell 0 to take w's message and call: its call then waits at this cell's gate. (Under
        // vitest-pool-workers a block of 1 s or more never ended the abort's promise; 200–800 ms work.)
        await sleep(500);
        state.abort("killed mid-call");
      }));
    for (let i = 0; i < 200 && !stage.blocked; i++) await sleep(10);
    w.send(ids.map((id) => ({ type: "tx" as const, id, flags: 0, frame: frame(M[1] as number, W, id) })));
    stage.sent = true;
    await expect(killing).rejects.toThrow();
    const done = await w.until(() => (completedIds(w).length >= ids.length ? completionsOf(w) : undefined), "4 completions");
    expect(completedIds(w).sort()).toEqual(ids);
    expect(done.every((r) => r.status === 17)).toBe(true);
    const cells = (await describe_(segment)).cells ?? [];
    expect(cells.find((cell) => cell.index === 0)?.trunks.find((t) => t.peer === 1)?.failedFrames).toBe(ids.length);
    expect(w.closed).toBeUndefined();
  });
});

describe("a cell's view of its peers survives its restart (docs/cells.md §0)", () => {
  it("a restarted cell knows the other cells' routes before any trunk call, and its first broadcast reaches them", async () => {
    const [a, , c] = (await threeCells("cells-snapshot")) as [Port, Port, Port];
    const cell1 = env.SEGMENTS.getByName("cells-snapshot#1");
    // Snapshots are written at most once a second: wait (bounded) until cell 1 stored both peers' routes.
    const deadline = Date.now() + 10_000;
    const storedRoutes = (): Promise<number> =>
      runInDurableObject(cell1, (_instance, state) => state.storage.kv.get<{ routes: unknown[] }>("cell-snapshot")?.routes.length ?? 0);
    while ((await storedRoutes()) < 2) {
      if (Date.now() > deadline) throw new Error("cell 1 never stored its snapshot");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await expect(runInDurableObject(cell1, (_instance, state) => state.abort("restart"))).rejects.toThrow();
    // The new instance (a new stub: the old one broke with the abort) restored the routes and filters it
    // stored: no trunk call has reached it yet.
    const view = await env.SEGMENTS.getByName("cells-snapshot#1").describeCell();
    expect(view?.cell.epoch).toBe(2);
    expect(view?.cell.remoteRoutes).toBe(2);
    expect(view?.cell.trunks.every((trunk) => trunk.calls === 0 && trunk.rxFrames === 0)).toBe(true);
    // A port that joins the restarted cell sends a broadcast straight after its WELCOME: the others get it.
    const back = await joinCell("cells-snapshot", 1, 0x0200_0000_0a09);
    back.send([{ type: "tx", id: 1, flags: 0, frame: frame(BROADCAST, 0x0200_0000_0a09, 0x77) }]);
    expect(await markers(a, 1)).toEqual([0x77]);
    expect(await markers(c, 1)).toEqual([0x77]);
  });
});

describe("POST /v1/segments/:name/cells/:index/reset (open development mode only)", () => {
  const devEnv: Env = { ...env, EDGELAN_DEV_MODE: "1", EDGELAN_ADMIN_TOKEN: undefined, EDGELAN_TOKEN_SECRET: undefined };
  const reset = (segment: string, index: string, environment: Env): Promise<Response> =>
    worker.fetch(new Request(`http://edgelan.test/v1/segments/${segment}/cells/${index}/reset`, { method: "POST", headers: ADMIN }), environment);

  it("is 404 outside open development mode", async () => {
    await createSegment("cells-reset-route-off", { cells: 3 });
    const response = await reset("cells-reset-route-off", "1", env as Env);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toBe("not-found");
  });

  it("resets one cell: its port's socket drops, the others stay; a bad index or a one-cell segment is 400", async () => {
    const [a, b, c] = (await threeCells("cells-reset-route")) as [Port, Port, Port];
    const response = await reset("cells-reset-route", "2", devEnv);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ reset: true, name: "cells-reset-route", cell: 2 });
    expect(c.closed ?? (await c.closedWith())).toBeDefined();
    expect(a.closed).toBeUndefined();
    expect(b.closed).toBeUndefined();
    // Cell 0 is the home itself: it aborts while answering, and the route still says it was reset.
    const home = await reset("cells-reset-route", "0", devEnv);
    expect(home.status).toBe(200);
    expect(a.closed ?? (await a.closedWith())).toBeDefined();
    expect(b.closed).toBeUndefined();
    const bad = await reset("cells-reset-route", "3", devEnv);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toBe("invalid-cell");
    await createSegment("cells-reset-route-one");
    const single = await reset("cells-reset-route-one", "0", devEnv);
    expect(((await single.json()) as { error: string }).error).toBe("not-cells");
    expect((await reset("cells-reset-route-none", "1", devEnv)).status).toBe(404);
  });
});

describe("a segment of 1 cell", () => {
  it("has no cell fields and no trunks", async () => {
    await createSegment("cells-single");
    await Port.join("cells-single", M[0] as number);
    const description = await describe_("cells-single");
    expect(description.cells).toBeUndefined();
    expect(description.ports.map((port) => port.cell)).toEqual([undefined]);
  });
});
