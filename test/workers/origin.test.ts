/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.ts";
import type { Env } from "../../worker/env.ts";
import { isLoopbackOrigin, MAX_ALLOWED_ORIGINS, normalizeOrigin } from "../../worker/origin.ts";

// Browser origins and tokenless dev-mode ports (issue 9 §5). The workers project runs with auth on
// (vitest.config.ts); open dev mode is exercised by calling the Worker with an overridden env.

const BASE = "http://edgelan.test";
const ADMIN = { Authorization: "Bearer test-admin-token" };
const DEV: Partial<Env> = { EDGELAN_DEV_MODE: "1", EDGELAN_ADMIN_TOKEN: undefined, EDGELAN_TOKEN_SECRET: undefined };
const devEnv = (overrides: Partial<Env> = {}): Env => ({ ...env, ...DEV, ...overrides });

function devFetch(path: string, init: RequestInit = {}, overrides: Partial<Env> = {}): Promise<Response> {
  return worker.fetch(new Request(`${BASE}${path}`, init), devEnv(overrides));
}

/** A WebSocket join; a 101 is accepted and closed again so the port does not linger. */
async function joinStatus(response: Response): Promise<number> {
  if (response.status === 101) {
    response.webSocket?.accept();
    response.webSocket?.close(1000, "done");
  }
  return response.status;
}

async function errorOf(response: Response): Promise<{ error: string; message: string }> {
  return (await response.json()) as { error: string; message: string };
}

function devJoin(segment: string, headers: Record<string, string> = {}, query = "", overrides: Partial<Env> = {}): Promise<Response> {
  return devFetch(`/v1/segments/${segment}/connect${query}`, { headers: { Upgrade: "websocket", ...headers } }, overrides);
}

describe("origins", () => {
  it.each([
    ["https://Lab.Example", "https://lab.example"],
    ["http://localhost:8080", "http://localhost:8080"],
    ["https://lab.example:443", "https://lab.example"],
    ["http://[::1]:3000", "http://[::1]:3000"],
  ])("normalizes %s to %s", (text, canonical) => {
    expect(normalizeOrigin(text)).toEqual({ ok: true, value: canonical });
  });

  it.each(["null", "file:///tmp/x.html", "https://lab.example/", "https://lab.example/page", "https://u:p@lab.example", "lab.example", "https://lab.example?x", ""])(
    "refuses %s as an origin",
    (text) => {
      expect(normalizeOrigin(text).ok).toBe(false);
    },
  );

  it("tells pages on this machine from look-alikes", () => {
    for (const origin of ["http://localhost", "http://localhost:5173", "http://app.localhost:3000", "http://127.0.0.1:8787", "http://127.1.2.3", "http://[::1]:9000"]) {
      expect(isLoopbackOrigin(origin), origin).toBe(true);
    }
    for (const origin of ["http://localhost.evil.example", "http://127.0.0.1.evil.example", "http://10.0.0.1", "http://[::2]"]) {
      expect(isLoopbackOrigin(origin), origin).toBe(false);
    }
  });
});

describe("open dev mode and browser origins", () => {
  it("refuses a join from a foreign page with 403 origin-not-allowed and says how to allow it", async () => {
    const response = await devJoin("dev-origin", { Origin: "https://evil.example" });
    expect(response.status).toBe(403);
    const body = await errorOf(response);
    expect(body.error).toBe("origin-not-allowed");
    expect(body.message).toContain("EDGELAN_DEV_ALLOWED_ORIGINS");
    // The refused join did not create the segment.
    expect((await devFetch("/v1/segments/dev-origin")).status).toBe(404);
  });

  it.each(["null", "https://localhost.evil.example", "http://127.0.0.1.evil.example:8787"])("refuses Origin %s", async (origin) => {
    expect(await joinStatus(await devJoin("dev-origin-odd", { Origin: origin }))).toBe(403);
  });

  it("refuses admin calls from a foreign page, whatever the method", async () => {
    for (const [method, path, body] of [
      ["GET", "/v1/segments/dev-admin", undefined],
      ["PUT", "/v1/segments/dev-admin", '{"maxPorts": 2}'],
      ["POST", "/v1/segments/dev-admin/tokens", '{"role": "monitor"}'],
      ["DELETE", "/v1/segments/dev-admin", undefined],
    ] as const) {
      const response = await devFetch(path, { method, body, headers: { Origin: "https://evil.example", "Content-Type": "text/plain" } });
      expect(response.status, `${method} ${path}`).toBe(403);
      expect((await errorOf(response)).error).toBe("origin-not-allowed");
    }
  });

  it.each(["http://localhost:5173", "http://127.0.0.1:8787", "http://[::1]:3000"])("admits a join from a page on this machine (%s)", async (origin) => {
    expect(await joinStatus(await devJoin("dev-local", { Origin: origin }))).toBe(101);
  });

  it("admits programs, which send no Origin", async () => {
    expect(await joinStatus(await devJoin("dev-cli"))).toBe(101);
    expect((await devFetch("/v1/segments/dev-cli")).status).toBe(200);
  });

  it("admits the origins EDGELAN_DEV_ALLOWED_ORIGINS lists, and only those", async () => {
    const allow = { EDGELAN_DEV_ALLOWED_ORIGINS: "https://lab.example, not an origin ,http://box.test:3000" };
    expect(await joinStatus(await devJoin("dev-list", { Origin: "https://LAB.example" }, "", allow))).toBe(101);
    expect(await joinStatus(await devJoin("dev-list", { Origin: "http://box.test:3000" }, "", allow))).toBe(101);
    expect(await joinStatus(await devJoin("dev-list", { Origin: "http://box.test:3001" }, "", allow))).toBe(403);
  });

  it("checks nothing outside dev mode: auth protects a deployed relay", async () => {
    const response = await exports.default.fetch(`${BASE}/v1/segments/no-dev`, { headers: { ...ADMIN, Origin: "https://evil.example" } });
    expect(response.status).toBe(404);
  });
});

describe("tokenless bridge and monitor ports in open dev mode", () => {
  it.each(["bridge", "monitor"])("refuse a tokenless %s with 403 dev-port-kind-closed", async (kind) => {
    const response = await devJoin("dev-kinds", {}, `?kind=${kind}`);
    expect(response.status).toBe(403);
    const body = await errorOf(response);
    expect(body.error).toBe("dev-port-kind-closed");
    expect(body.message).toContain(`EDGELAN_DEV_OPEN_PORTS=${kind}`);
  });

  it("admit the kinds EDGELAN_DEV_OPEN_PORTS opens", async () => {
    const open = { EDGELAN_DEV_OPEN_PORTS: "bridge, monitor" };
    expect(await joinStatus(await devJoin("dev-kinds-open", {}, "?kind=bridge", open))).toBe(101);
    expect(await joinStatus(await devJoin("dev-kinds-open", {}, "?kind=monitor", open))).toBe(101);
    const bridgeOnly = { EDGELAN_DEV_OPEN_PORTS: "bridge" };
    expect(await joinStatus(await devJoin("dev-kinds-open", {}, "?kind=monitor", bridgeOnly))).toBe(403);
  });

  it("admit a bridge with a token (minted with the dev key)", async () => {
    const minted = await devFetch("/v1/segments/dev-kinds-token", { method: "PUT" });
    expect(minted.status).toBe(201);
    const response = await devFetch("/v1/segments/dev-kinds-token/tokens", { method: "POST", body: '{"role": "bridge"}' });
    const { token } = (await response.json()) as { token: string };
    expect(await joinStatus(await devJoin("dev-kinds-token", { Authorization: `Bearer ${token}` }, "?kind=bridge"))).toBe(101);
  });

  it("still admit tokenless members", async () => {
    expect(await joinStatus(await devJoin("dev-kinds-member", {}, "?kind=member"))).toBe(101);
  });
});

describe("a segment's allowedOrigins", () => {
  function put(name: string, body: unknown): Promise<Response> {
    return exports.default.fetch(`${BASE}/v1/segments/${name}`, { method: "PUT", headers: ADMIN, body: JSON.stringify(body) });
  }
  async function tokenFor(name: string): Promise<string> {
    const response = await exports.default.fetch(`${BASE}/v1/segments/${name}/tokens`, { method: "POST", headers: ADMIN, body: '{"role":"member"}' });
    return ((await response.json()) as { token: string }).token;
  }
  function join(name: string, token: string, origin?: string): Promise<Response> {
    const headers: Record<string, string> = { Upgrade: "websocket", Authorization: `Bearer ${token}` };
    if (origin !== undefined) headers.Origin = origin;
    return exports.default.fetch(`${BASE}/v1/segments/${name}/connect`, { headers });
  }

  it("defaults to null and is stored in canonical form", async () => {
    const created = await put("origins", {});
    expect(await created.json()).toMatchObject({ allowedOrigins: null });
    const patched = await put("origins", { allowedOrigins: ["https://Lab.Example", "https://lab.example:443", "http://localhost:8080"] });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ allowedOrigins: ["https://lab.example", "http://localhost:8080"] });
  });

  it.each([
    ["not a list", "https://lab.example"],
    ["a path", ["https://lab.example/app"]],
    ["a number", [42]],
    ["too many", Array.from({ length: MAX_ALLOWED_ORIGINS + 1 }, (_, i) => `https://h${i}.example`)],
  ])("refuses %s with 400 invalid-config-field naming allowedOrigins", async (_label, value) => {
    const response = await put("origins-bad", { allowedOrigins: value });
    expect(response.status).toBe(400);
    const body = await errorOf(response);
    expect(body.error).toBe("invalid-config-field");
    expect(body.message).toContain("allowedOrigins");
  });

  it("admits browser joins only from listed origins, and programs always", async () => {
    await put("origins-join", { allowedOrigins: ["https://lab.example"] });
    const token = await tokenFor("origins-join");
    expect(await joinStatus(await join("origins-join", token, "https://lab.example"))).toBe(101);
    const foreign = await join("origins-join", token, "https://evil.example");
    expect(foreign.status).toBe(403);
    expect((await errorOf(foreign)).error).toBe("origin-not-allowed");
    expect(await joinStatus(await join("origins-join", token))).toBe(101);
  });

  it("admits any origin when the segment does not set it", async () => {
    await put("origins-any", {});
    const token = await tokenFor("origins-any");
    expect(await joinStatus(await join("origins-any", token, "https://anywhere.example"))).toBe(101);
  });
});
