import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.ts";
import type { Env } from "../../worker/env.ts";

// GET /v1/segments: the registry Durable Object lists the segments that exist, whoever
// created them (admin PUT, dev-mode auto-create) and forgets them when they are deleted.

const BASE = "http://edgelan.test";
const ADMIN = { Authorization: "Bearer test-admin-token" };

interface Page {
  segments: Array<{ name: string; openJoin: boolean; createdAt: string }>;
  next: string | null;
}

async function list(query = ""): Promise<Page> {
  const response = await exports.default.fetch(`${BASE}/v1/segments${query}`, { headers: ADMIN });
  expect(response.status).toBe(200);
  return (await response.json()) as Page;
}

function put(name: string, body: unknown): Promise<Response> {
  return exports.default.fetch(`${BASE}/v1/segments/${name}`, { method: "PUT", headers: ADMIN, body: JSON.stringify(body) });
}

describe("GET /v1/segments", () => {
  it("lists created segments in name order with openJoin, pages with after/limit, and forgets deleted ones", async () => {
    for (const name of ["reg-c", "reg-a", "reg-b"]) expect((await put(name, name === "reg-b" ? { openJoin: true } : {})).status).toBe(201);
    const all = await list();
    expect(all.segments.map((segment) => [segment.name, segment.openJoin])).toEqual([["reg-a", false], ["reg-b", true], ["reg-c", false]]);
    expect(all.next).toBeNull();

    const first = await list("?limit=2");
    expect(first.segments.map((segment) => segment.name)).toEqual(["reg-a", "reg-b"]);
    expect(first.next).toBe("reg-b");
    expect((await list(`?after=${first.next}`)).segments.map((segment) => segment.name)).toEqual(["reg-c"]);

    // A reconfiguration updates the entry; a delete removes it.
    expect((await put("reg-b", { openJoin: false })).status).toBe(200);
    expect((await list()).segments.find((segment) => segment.name === "reg-b")?.openJoin).toBe(false);
    expect((await exports.default.fetch(`${BASE}/v1/segments/reg-a`, { method: "DELETE", headers: ADMIN })).status).toBe(200);
    expect((await list()).segments.map((segment) => segment.name)).toEqual(["reg-b", "reg-c"]);
  });

  it("lists a segment auto-created by a connect in open dev mode, as open", async () => {
    const devEnv: Env = { ...env, EDGELAN_DEV_MODE: "1", EDGELAN_ADMIN_TOKEN: undefined };
    const response = await worker.fetch(new Request(`${BASE}/v1/segments/reg-auto/connect`, { headers: { Upgrade: "websocket" } }), devEnv);
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    response.webSocket?.close(1000, "done");
    expect((await list()).segments.find((segment) => segment.name === "reg-auto")).toMatchObject({ openJoin: true });
  });

  it("needs the admin token and refuses a bad query with 400", async () => {
    expect((await exports.default.fetch(`${BASE}/v1/segments`)).status).toBe(401);
    for (const query of ["?limit=0", "?limit=1001", "?limit=x", "?after=UPPER"]) {
      const response = await exports.default.fetch(`${BASE}/v1/segments${query}`, { headers: ADMIN });
      expect(response.status, query).toBe(400);
      expect(((await response.json()) as { error: string }).error).toBe("invalid-query");
    }
  });
});
