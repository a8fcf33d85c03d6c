/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import { Feature } from "../../datapath/tunnel/constants.ts";
import { RESUME_GRACE_MS, SESSION_SWEEP_PAGE } from "../../durable/sessions.ts";
import type { Segment } from "../../durable/segment.ts";
import { ADMIN, Port, createSegment, hello_ } from "./ports.ts";

// Resume rows (protocol.md §11.3, issue 9 §1): a port the segment closed is forgotten at once, one the
// client or network closed is kept for the 10-minute grace, rows per segment are bounded (2 × maxPorts)
// and the alarm sweeps a page at a time.

interface Row {
  id: string;
  expires_at: number;
}

async function rows(segment: string): Promise<Row[]> {
  return runInDurableObject(env.SEGMENTS.getByName(segment), (_instance, state) => {
    state.storage.sql.exec("CREATE TABLE IF NOT EXISTS resume_sessions (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, body TEXT NOT NULL)");
    return state.storage.sql.exec<{ id: string; expires_at: number }>("SELECT id, expires_at FROM resume_sessions ORDER BY expires_at").toArray();
  });
}

/** Joins with the Resume feature; returns the port and its session id (hex). */
async function joinResumable(segment: string, mac: number): Promise<{ port: Port; sessionId: string }> {
  const port = await Port.open(segment);
  port.send([hello_(mac, { features: Feature.Resume })]);
  const welcome = await port.next("welcome");
  return { port, sessionId: Array.from(welcome.sessionId, (b) => b.toString(16).padStart(2, "0")).join("") };
}

async function until(probe: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("resume rows", () => {
  it("a connected session's row expires within the grace (a lease the alarm renews), not days later", async () => {
    await createSegment("rows-lease");
    const before = Date.now();
    const { sessionId } = await joinResumable("rows-lease", 0x020000b00001);
    const [row] = await rows("rows-lease");
    expect(row?.id).toBe(sessionId);
    expect(row?.expires_at).toBeGreaterThanOrEqual(before + RESUME_GRACE_MS);
    expect(row?.expires_at).toBeLessThanOrEqual(Date.now() + RESUME_GRACE_MS);
  });

  it("the alarm renews the lease of connected sessions", async () => {
    await createSegment("rows-renew");
    const { sessionId } = await joinResumable("rows-renew", 0x020000b00101);
    await runInDurableObject(env.SEGMENTS.getByName("rows-renew"), async (instance, state) => {
      state.storage.sql.exec("UPDATE resume_sessions SET expires_at = ? WHERE id = ?", Date.now() + 1000, sessionId);
      state.storage.kv.put("resume-leases-renewed", 0);
      const before = Date.now();
      await (instance as unknown as Segment).alarm();
      const renewed = state.storage.sql.exec<{ expires_at: number }>("SELECT expires_at FROM resume_sessions WHERE id = ?", sessionId).one();
      expect(renewed.expires_at).toBeGreaterThanOrEqual(before + RESUME_GRACE_MS);
    });
  });

  it("forgets at once a session whose port the segment closed (protocol error)", async () => {
    await createSegment("rows-closed-by-segment");
    const { port, sessionId } = await joinResumable("rows-closed-by-segment", 0x020000b00201);
    expect((await rows("rows-closed-by-segment")).map((r) => r.id)).toEqual([sessionId]);
    port.ws.send("not the protocol");
    expect((await port.closedWith()).code).toBe(CloseCode.Malformed);
    await until(async () => (await rows("rows-closed-by-segment")).length === 0, "the row to go");
    expect(await rows("rows-closed-by-segment")).toEqual([]);
  });

  it("keeps a session the client closed without BYE for the 10-minute grace from the close", async () => {
    await createSegment("rows-client-close");
    const { port, sessionId } = await joinResumable("rows-client-close", 0x020000b00301);
    const closedAt = Date.now();
    port.ws.close(3000, "network went away");
    await until(async () => (await describe_("rows-client-close")).ports.length === 0, "the port to leave");
    const [row] = await rows("rows-client-close");
    expect(row?.id).toBe(sessionId);
    expect(row?.expires_at).toBeGreaterThanOrEqual(closedAt + RESUME_GRACE_MS);
    expect(row?.expires_at).toBeLessThanOrEqual(Date.now() + RESUME_GRACE_MS);
  });

  it("keeps at most 2 × maxPorts rows: the row expiring first is evicted", async () => {
    await createSegment("rows-bounded", { maxPorts: 2 });
    const sessions: string[] = [];
    for (let i = 0; i < 6; i++) {
      const { port, sessionId } = await joinResumable("rows-bounded", 0x020000b00401 + i);
      sessions.push(sessionId);
      port.ws.close(3000, "gone");
      await until(async () => (await describe_("rows-bounded")).ports.length === 0, "the port to leave");
    }
    expect(new Set((await rows("rows-bounded")).map((r) => r.id))).toEqual(new Set(sessions.slice(2)));
    const counters = (await (await exports.default.fetch("http://edgelan.test/v1/segments/rows-bounded", { headers: ADMIN })).json()) as { counters: Record<string, number> };
    expect(counters.counters.resumeRowsEvicted).toBe(2);
  });

  it("sweeps at most one page of expired rows per alarm run, and comes back at once for the rest", async () => {
    await createSegment("rows-sweep");
    await joinResumable("rows-sweep", 0x020000b00501);
    await runInDurableObject(env.SEGMENTS.getByName("rows-sweep"), async (instance, state) => {
      const expired = Date.now() - 1000;
      for (let i = 0; i < SESSION_SWEEP_PAGE + 100; i++) {
        state.storage.sql.exec("INSERT INTO resume_sessions (id, expires_at, body) VALUES (?, ?, '{}')", `expired-${i}`, expired);
      }
      const count = (): number => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM resume_sessions").one().n;
      await (instance as unknown as Segment).alarm();
      expect(count()).toBe(101);
      expect(await state.storage.getAlarm()).toBeLessThanOrEqual(Date.now());
      await (instance as unknown as Segment).alarm();
      expect(count()).toBe(1);
    });
  });
});

async function describe_(segment: string): Promise<{ ports: unknown[] }> {
  return (await (await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}`, { headers: ADMIN })).json()) as { ports: unknown[] };
}
