// Helpers for the workers tests of segments of several cells (docs/cells.md §11): ports forced onto
// cells with ?cell=, the admin API's view of each cell, and waits bounded in time that poll counters.
import { exports } from "cloudflare:workers";
import { expect } from "vitest";
import { ADMIN, hello_, Port } from "./ports.ts";

export interface CellPort {
  portId: number;
  cell?: number;
  macs: string[];
}

export interface TrunkView {
  peer: number;
  rxFrames: number;
  txFrames: number;
  calls: number;
  failedFrames: number;
  backlogDrops: number;
}

export interface CellView {
  index: number;
  epoch: number;
  ports: number;
  remoteRoutes: number;
  region?: string | null;
  trunks: TrunkView[];
}

export interface Description {
  ports: CellPort[];
  cells?: CellView[];
}

export async function token(segment: string, role: string): Promise<string> {
  const response = await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/tokens`, {
    method: "POST", headers: ADMIN, body: JSON.stringify({ role }),
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { token: string }).token;
}

/** A port on cell `cell` (a hint the home honours) that said HELLO with `mac` and posted 64 credits. */
export async function joinCell(segment: string, cell: number, mac: number, kind: "member" | "bridge" | "monitor" = "member"): Promise<Port> {
  const query = kind === "member" ? `?cell=${cell}` : `?cell=${cell}&kind=${kind}&token=${await token(segment, kind)}`;
  const port = await Port.open(segment, true, query);
  port.send([hello_(mac, { portKind: kind })]);
  await port.next("welcome");
  port.send([{ type: "rx-post", count: 64, bufferSize: 2048 }]);
  return port;
}

export async function describeCells(segment: string): Promise<Description> {
  const response = await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}`, { headers: ADMIN });
  return (await response.json()) as Description;
}

/** Polls the admin API (bounded) until every cell holds `routes[i]` routes from the others: their announcements arrived. */
export async function routesSettled(segment: string, routes: number | number[], cellCount = 3): Promise<void> {
  const deadline = Date.now() + 10_000;
  const wanted = typeof routes === "number" ? Array.from({ length: cellCount }, () => routes) : routes;
  for (;;) {
    const cells = (await describeCells(segment)).cells ?? [];
    if (cells.length === wanted.length && cells.every((cell) => cell.remoteRoutes === wanted[cell.index])) return;
    if (Date.now() > deadline) throw new Error(`cells did not settle on ${JSON.stringify(routes)} routes each: ${JSON.stringify(cells)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Per trunk (sender cell → peer): frames sent, frames the peer received from it, frames lost in failed calls. */
export function trunkPairs(cells: readonly CellView[]): Array<{ from: number; to: number; sent: number; received: number; failed: number }> {
  return cells.flatMap((cell) => cell.trunks.map((trunk) => {
    const back = cells.find((peer) => peer.index === trunk.peer)?.trunks.find((t) => t.peer === cell.index);
    return { from: cell.index, to: trunk.peer, sent: trunk.txFrames, received: back?.rxFrames ?? -1, failed: trunk.failedFrames };
  }));
}

/** Polls (bounded) until every trunk pair agrees (sent = received + failed): nothing is in flight. Returns the cells. */
export async function trunksQuiet(segment: string, pairs: number): Promise<CellView[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const cells = (await describeCells(segment)).cells ?? [];
    const all = trunkPairs(cells);
    if (all.length === pairs && all.every((pair) => pair.sent === pair.received + pair.failed)) return cells;
    if (Date.now() > deadline) throw new Error(`trunk counters never agreed: ${JSON.stringify(all)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The markers of the rx frames a port got, in order (byte 14 of each test frame). */
export async function markers(port: Port, count: number): Promise<number[]> {
  return (await port.rx(count)).map((f) => f[14] as number);
}
