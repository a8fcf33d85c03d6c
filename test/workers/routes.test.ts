/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.ts";
import type { Env } from "../../worker/env.ts";
import { DEFAULT_SEGMENT_CONFIG } from "../../durable/config.ts";
import { IDLE_DEADLINE_KEY, type Segment } from "../../durable/segment.ts";
import { validateSegmentName } from "../../worker/segment-name.ts";

// The relay's HTTP surface, as a client sees it. The workers project runs with
// EDGELAN_ADMIN_TOKEN=test-admin-token (see vitest.config.ts); dev mode and an
// unconfigured deployment are exercised by calling the Worker with another env.

const BASE = "http://edgelan.test";
const ADMIN = { Authorization: "Bearer test-admin-token" };

function admin(method: string, path: string, body?: unknown): Promise<Response> {
  const init: RequestInit = { method, headers: { ...ADMIN, "Content-Type": "application/json" } };
  if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
  return exports.default.fetch(`${BASE}${path}`, init);
}

async function errorOf(response: Response): Promise<{ error: string; message: string }> {
  expect(response.headers.get("Content-Type")).toContain("application/json");
  return (await response.json()) as { error: string; message: string };
}

/** Opens a tunnel the way a guest does; the caller checks the status. */
async function connect(name: string, query = "", headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(`${BASE}/v1/segments/${name}/connect${query}`, { headers: { Upgrade: "websocket", ...headers } });
}

async function mintToken(name: string, role = "member"): Promise<string> {
  const response = await admin("POST", `/v1/segments/${name}/tokens`, { role });
  expect(response.status).toBe(201);
  return ((await response.json()) as { token: string }).token;
}

function closeEvent(ws: WebSocket): Promise<CloseEvent> {
  return new Promise((resolve) => ws.addEventListener("close", resolve));
}

function withEnv(overrides: Partial<Env>): Env {
  return { ...env, ...overrides };
}

const DEV_ENV = (): Env => withEnv({ EDGELAN_DEV_MODE: "1", EDGELAN_ADMIN_TOKEN: undefined, EDGELAN_TOKEN_SECRET: undefined });

describe("routing", () => {
  it("answers unknown routes with a JSON 404", async () => {
    const response = await exports.default.fetch(`${BASE}/v1/nothing-here`);
    expect(response.status).toBe(404);
    expect(await errorOf(response)).toMatchObject({ error: "not-found" });
  });

  it("answers a trailing path segment past a known route with 404", async () => {
    const response = await admin("GET", "/v1/segments/lab/ports/extra");
    expect(response.status).toBe(404);
  });

  it("answers a wrong method on a known path with 405 and Allow", async () => {
    const response = await admin("POST", "/v1/segments/lab");
    expect(response.status).toBe(405);
    expect(response.headers.get("Allow")).toBe("PUT, GET, DELETE");
    expect(await errorOf(response)).toMatchObject({ error: "method-not-allowed" });

    const connect405 = await exports.default.fetch(`${BASE}/v1/segments/lab/connect`, { method: "POST" });
    expect(connect405.status).toBe(405);
    expect(connect405.headers.get("Allow")).toBe("GET");
  });

  it.each([
    ["uppercase", "Lab"],
    ["too long", "a".repeat(65)],
    ["a space", "my%20lab"],
    ["an encoded slash", "a%2Fb"],
    ["a colon", "a:b"],
    ["a non-ASCII letter", "caf%C3%A9"],
    ["a bad escape", "a%zz"],
  ])("refuses a segment name with %s: 400 invalid-segment-name", async (_what, name) => {
    const response = await admin("GET", `/v1/segments/${name}`);
    expect(response.status).toBe(400);
    const body = await errorOf(response);
    expect(body.error).toBe("invalid-segment-name");
    expect(body.message).toContain("1-64 characters");
  });

  it('refuses "." and "..", which URL normalisation would turn into another path', () => {
    for (const name of [".", ".."]) expect(validateSegmentName(name)).toMatchObject({ ok: false, error: { code: "invalid-segment-name" } });
    expect(validateSegmentName("...").ok).toBe(true);
  });

  it("refuses an empty segment name", async () => {
    const response = await admin("GET", "/v1/segments//ports");
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("invalid-segment-name");
  });

  it("accepts a 64-character name of every allowed character class", async () => {
    const name = `a0._-${"z".repeat(59)}`;
    expect(name).toHaveLength(64);
    const response = await admin("PUT", `/v1/segments/${name}`, {});
    expect(response.status).toBe(201);
  });
});

describe("GET /healthz", () => {
  it("reports devMode false and no warning when deployed with an admin token", async () => {
    const response = await exports.default.fetch(`${BASE}/healthz`);
    expect(await response.json()).toEqual({ ok: true, version: "0.1.0", devMode: false });
  });

  it("warns loudly in dev mode", async () => {
    const response = await worker.fetch(new Request(`${BASE}/healthz`), DEV_ENV());
    const body = (await response.json()) as { devMode: boolean; message: string };
    expect(body.devMode).toBe(true);
    expect(body.message).toMatch(/OPEN DEVELOPMENT MODE/);
  });
});

describe("admin auth", () => {
  it("answers a missing bearer token with 401 and WWW-Authenticate", async () => {
    const response = await exports.default.fetch(`${BASE}/v1/segments/lab`);
    expect(response.status).toBe(401);
    expect(response.headers.get("WWW-Authenticate")).toMatch(/^Bearer/);
    expect((await errorOf(response)).error).toBe("admin-token-required");
  });

  it("answers a wrong bearer token with 401", async () => {
    for (const token of ["wrong", "test-admin-token-but-longer", "test-admin-toke"]) {
      const response = await exports.default.fetch(`${BASE}/v1/segments/lab`, { headers: { Authorization: `Bearer ${token}` } });
      expect(response.status).toBe(401);
      expect((await errorOf(response)).error).toBe("admin-token-invalid");
    }
  });

  it("does not take a join token as an admin token", async () => {
    await admin("PUT", "/v1/segments/auth-join", {});
    const token = await mintToken("auth-join");
    const response = await exports.default.fetch(`${BASE}/v1/segments/auth-join`, { headers: { Authorization: `Bearer ${token}` } });
    expect(response.status).toBe(401);
  });

  it("checks admin auth before the segment name", async () => {
    const response = await exports.default.fetch(`${BASE}/v1/segments/BAD`);
    expect(response.status).toBe(401);
  });

  it("disables management with 503 admin-disabled when deployed without an admin token", async () => {
    const unconfigured = withEnv({ EDGELAN_ADMIN_TOKEN: undefined, EDGELAN_DEV_MODE: undefined });
    const response = await worker.fetch(new Request(`${BASE}/v1/segments/lab`, { method: "PUT", body: "{}" }), unconfigured);
    expect(response.status).toBe(503);
    const body = await errorOf(response);
    expect(body.error).toBe("admin-disabled");
    expect(body.message).toContain("wrangler secret put");
  });

  it("treats an empty admin token as not configured", async () => {
    const empty = withEnv({ EDGELAN_ADMIN_TOKEN: "", EDGELAN_DEV_MODE: "0" });
    const response = await worker.fetch(new Request(`${BASE}/v1/segments/lab`, { headers: { Authorization: "Bearer " } }), empty);
    expect(response.status).toBe(503);
  });

  it("opens management without a token in dev mode", async () => {
    const response = await worker.fetch(new Request(`${BASE}/v1/segments/dev-admin`, { method: "PUT", body: '{"maxPorts": 3}' }), DEV_ENV());
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ maxPorts: 3 });
  });
});

describe("PUT /v1/segments/:name", () => {
  it("creates with defaults (201), then patches (200) and keeps what was not patched", async () => {
    const created = await admin("PUT", "/v1/segments/put-lab", { maxPorts: 8 });
    expect(created.status).toBe(201);
    const config = (await created.json()) as Record<string, unknown>;
    expect(config).toMatchObject({ ...DEFAULT_SEGMENT_CONFIG, maxPorts: 8 });
    expect(Date.parse(config.createdAt as string)).not.toBeNaN();

    const updated = await admin("PUT", "/v1/segments/put-lab", { openJoin: true, ttlSeconds: 600 });
    expect(updated.status).toBe(200);
    expect(await updated.json()).toEqual({ ...config, openJoin: true, ttlSeconds: 600 });
  });

  it("creates with an empty body", async () => {
    const response = await exports.default.fetch(`${BASE}/v1/segments/put-empty`, { method: "PUT", headers: ADMIN });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ maxFrameSize: 1514, openJoin: false });
  });

  it("answers malformed JSON with 400 invalid-json", async () => {
    const response = await admin("PUT", "/v1/segments/put-bad", "{maxPorts: 8");
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("invalid-json");
  });

  it("names unknown keys", async () => {
    const response = await admin("PUT", "/v1/segments/put-bad", { maxPorts: 8, colour: "blue", mtu: 9000 });
    expect(response.status).toBe(400);
    const body = await errorOf(response);
    expect(body.error).toBe("unknown-config-field");
    expect(body.message).toContain('"colour"');
    expect(body.message).toContain('"mtu"');
  });

  it("names the field and the allowed range for a bad value", async () => {
    const response = await admin("PUT", "/v1/segments/put-bad", { maxFrameSize: 59 });
    expect(response.status).toBe(400);
    const body = await errorOf(response);
    expect(body.error).toBe("invalid-config-field");
    expect(body.message).toContain("maxFrameSize");
    expect(body.message).toContain("60..65535");
  });

  it("does not create the segment when the first PUT is invalid", async () => {
    await admin("PUT", "/v1/segments/put-never", { maxPorts: 0 });
    expect((await admin("GET", "/v1/segments/put-never")).status).toBe(404);
  });

  it("refuses a body over 64 KiB with 413 body-too-large", async () => {
    const response = await admin("PUT", "/v1/segments/put-big", { openJoin: true, padding: "x".repeat(65 * 1024) });
    expect(response.status).toBe(413);
    expect((await errorOf(response)).error).toBe("body-too-large");
  });

  it("refuses a body that is not an object", async () => {
    const response = await admin("PUT", "/v1/segments/put-bad", [1, 2]);
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("invalid-config");
  });
});

describe("GET /v1/segments/:name and /ports", () => {
  it("answers 404 for a segment that does not exist", async () => {
    for (const path of ["/v1/segments/nobody", "/v1/segments/nobody/ports"]) {
      const response = await admin("GET", path);
      expect(response.status).toBe(404);
      expect((await errorOf(response)).error).toBe("segment-not-found");
    }
  });

  it("describes config, connected ports, forwarding table, counters and queued bytes", async () => {
    await admin("PUT", "/v1/segments/get-lab", { maxPorts: 4 });
    const token = await mintToken("get-lab", "bridge");
    const tunnel = await connect("get-lab", "?kind=bridge", { Authorization: `Bearer ${token}`, "CF-Connecting-IP": "203.0.113.7" });
    expect(tunnel.status).toBe(101);
    tunnel.webSocket?.accept();

    const response = await admin("GET", "/v1/segments/get-lab");
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      name: string;
      config: { maxPorts: number };
      ports: { portId: number; kind: string; mode: string; macs: string[]; remote: string; connectedSince: string }[];
      forwardingTable: { learned: number; static: number; entries: unknown[] };
      counters: { rxFrames: number; dropped: number; instanceStarts: number; flushed: number };
      queuedBytes: number;
    };
    expect(body.name).toBe("get-lab");
    expect(body.config.maxPorts).toBe(4);
    expect(body.ports).toHaveLength(1);
    expect(body.ports[0]).toMatchObject({ portId: 1, kind: "bridge", mode: "raw", macs: [], remote: "203.0.113.7" });
    expect(Date.now() - Date.parse(body.ports[0]?.connectedSince ?? "")).toBeLessThan(60_000);
    expect(body.forwardingTable).toMatchObject({ learned: 0, static: 0, entries: [] });
    // The object that created the segment is its first instance.
    expect(body.counters).toMatchObject({ rxFrames: 0, dropped: 0, instanceStarts: 1, flushed: 0 });
    expect(body.queuedBytes).toBe(0);

    const ports = await admin("GET", "/v1/segments/get-lab/ports");
    expect(ports.status).toBe(200);
    const stats = (await ports.json()) as { name: string; ports: { portId: number; counters: { drops: Record<string, number> } }[] };
    expect(stats.name).toBe("get-lab");
    expect(stats.ports[0]?.portId).toBe(1);
    expect(stats.ports[0]?.counters.drops).toMatchObject({ runt: 0, "rx-queue-full": 0 });
    tunnel.webSocket?.close(1000, "done");
  });
});

describe("GET /v1/segments/:name/connect", () => {
  it("answers a plain GET with 426 and a JSON message", async () => {
    const response = await exports.default.fetch(`${BASE}/v1/segments/lab/connect`);
    expect(response.status).toBe(426);
    expect(response.headers.get("Upgrade")).toBe("websocket");
    expect((await errorOf(response)).error).toBe("upgrade-required");
  });

  it("refuses an unknown kind", async () => {
    const response = await connect("lab", "?kind=router");
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("invalid-kind");
  });

  it("refuses a bad segment name before anything else", async () => {
    const response = await connect("UPPER");
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("invalid-segment-name");
  });

  it("answers 404 for a segment that does not exist (not in dev mode)", async () => {
    const response = await connect("conn-missing");
    expect(response.status).toBe(404);
    expect((await errorOf(response)).error).toBe("segment-not-found");
  });

  it("admits guests without a token when the segment allows open joins", async () => {
    await admin("PUT", "/v1/segments/conn-open", { openJoin: true });
    const response = await connect("conn-open", "", { "Sec-WebSocket-Protocol": "edgelan.v1" });
    expect(response.status).toBe(101);
    expect(response.headers.get("Sec-WebSocket-Protocol")).toBe("edgelan.v1");
    response.webSocket?.accept();
    response.webSocket?.close(1000, "done");
  });

  it("chooses no subprotocol when edgelan.v1 was not offered (raw mode)", async () => {
    await admin("PUT", "/v1/segments/conn-raw", { openJoin: true });
    const response = await connect("conn-raw", "", { "Sec-WebSocket-Protocol": "binary" });
    expect(response.status).toBe(101);
    expect(response.headers.get("Sec-WebSocket-Protocol")).toBeNull();
    response.webSocket?.accept();
    const described = (await (await admin("GET", "/v1/segments/conn-raw")).json()) as { ports: { mode: string }[] };
    expect(described.ports.map((port) => port.mode)).toEqual(["raw"]);
    response.webSocket?.close(1000, "done");
  });

  it("answers 503 segment-full past maxPorts", async () => {
    await admin("PUT", "/v1/segments/conn-full", { openJoin: true, maxPorts: 1 });
    const first = await connect("conn-full");
    expect(first.status).toBe(101);
    first.webSocket?.accept();
    const second = await connect("conn-full");
    expect(second.status).toBe(503);
    expect((await errorOf(second)).error).toBe("segment-full");
    first.webSocket?.close(1000, "done");
  });

  it("answers the text keepalive 'ping' with 'pong'", async () => {
    await admin("PUT", "/v1/segments/conn-ping", { openJoin: true });
    const response = await connect("conn-ping");
    const ws = response.webSocket;
    if (ws === null) throw new Error("no WebSocket");
    ws.accept();
    const reply = new Promise<unknown>((resolve) => ws.addEventListener("message", (event) => resolve(event.data)));
    ws.send("ping");
    expect(await reply).toBe("pong");
    ws.close(1000, "done");
  });

  it("auto-creates a segment with open joins in dev mode", async () => {
    const request = new Request(`${BASE}/v1/segments/dev-auto/connect`, { headers: { Upgrade: "websocket" } });
    const response = await worker.fetch(request, DEV_ENV());
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    const described = await worker.fetch(new Request(`${BASE}/v1/segments/dev-auto`), DEV_ENV());
    expect(described.status).toBe(200);
    expect(await described.json()).toMatchObject({ name: "dev-auto", config: { openJoin: true }, ports: [{ kind: "member" }] });
    response.webSocket?.close(1000, "done");
  });
});

describe("DELETE /v1/segments/:name", () => {
  it("answers 404 for a segment that does not exist", async () => {
    const response = await admin("DELETE", "/v1/segments/del-missing");
    expect(response.status).toBe(404);
  });

  it("closes every port with 4010 'segment deleted' and wipes the configuration", async () => {
    await admin("PUT", "/v1/segments/del-lab", { openJoin: true, maxPorts: 5 });
    const sockets: WebSocket[] = [];
    for (let i = 0; i < 2; i++) {
      const response = await connect("del-lab");
      expect(response.status).toBe(101);
      const ws = response.webSocket as WebSocket;
      ws.accept();
      sockets.push(ws);
    }
    const closes = sockets.map(closeEvent);

    const response = await admin("DELETE", "/v1/segments/del-lab");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ deleted: true, name: "del-lab", portsClosed: 2 });
    for (const event of await Promise.all(closes)) {
      expect(event.code).toBe(4010);
      expect(event.reason).toBe("segment deleted");
    }
    expect((await admin("GET", "/v1/segments/del-lab")).status).toBe(404);

    // Recreating starts from defaults: nothing of the old settings survived.
    const again = await admin("PUT", "/v1/segments/del-lab", {});
    expect(again.status).toBe(201);
    expect(await again.json()).toMatchObject({ openJoin: false, maxPorts: 64 });
  });

  it("erases storage and the alarm", async () => {
    await admin("PUT", "/v1/segments/del-store", { ttlSeconds: 3600 });
    await admin("DELETE", "/v1/segments/del-store");
    const stub = env.SEGMENTS.getByName("del-store");
    await runInDurableObject(stub, async (_instance, state) => {
      expect((await state.storage.list()).size).toBe(0);
      expect(await state.storage.getAlarm()).toBeNull();
    });
  });
});

describe("segment TTL", () => {
  it("schedules the alarm ttlSeconds ahead, and an idle segment deletes itself when it fires", async () => {
    const before = Date.now();
    await admin("PUT", "/v1/segments/ttl-idle", { ttlSeconds: 120 });
    const stub = env.SEGMENTS.getByName("ttl-idle");
    await runInDurableObject(stub, async (instance, state) => {
      const alarm = await state.storage.getAlarm();
      expect(alarm).toBeGreaterThanOrEqual(before + 120_000);
      expect(alarm).toBeLessThanOrEqual(Date.now() + 120_000);
      // An early alarm (shared with aging and HELLO deadlines) must not delete the segment…
      await (instance as Segment).alarm();
      expect(await state.storage.get("segment")).toBeDefined();
      // …one at the idle deadline does.
      state.storage.kv.put(IDLE_DEADLINE_KEY, Date.now() - 1);
      await (instance as Segment).alarm();
    });
    expect((await admin("GET", "/v1/segments/ttl-idle")).status).toBe(404);
  });

  it("keeps a segment with a connected port and looks again one TTL later", async () => {
    await admin("PUT", "/v1/segments/ttl-busy", { ttlSeconds: 60, openJoin: true });
    const tunnel = await connect("ttl-busy");
    tunnel.webSocket?.accept();
    const stub = env.SEGMENTS.getByName("ttl-busy");
    await runInDurableObject(stub, async (instance, state) => {
      await state.storage.deleteAlarm();
      await (instance as Segment).alarm();
      expect(await state.storage.getAlarm()).toBeGreaterThan(Date.now() + 50_000);
    });
    expect((await admin("GET", "/v1/segments/ttl-busy")).status).toBe(200);
    tunnel.webSocket?.close(1000, "done");
  });

  it("never expires a segment with ttlSeconds null, and clears the alarm when TTL is switched off", async () => {
    await admin("PUT", "/v1/segments/ttl-off", { ttlSeconds: 60 });
    await admin("PUT", "/v1/segments/ttl-off", { ttlSeconds: null });
    const stub = env.SEGMENTS.getByName("ttl-off");
    await runInDurableObject(stub, async (instance, state) => {
      expect(await state.storage.getAlarm()).toBeNull();
      await (instance as Segment).alarm();
    });
    expect((await admin("GET", "/v1/segments/ttl-off")).status).toBe(200);
  });
});
