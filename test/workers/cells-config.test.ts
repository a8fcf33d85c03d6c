/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { applyConfigPatch, CELLS_RANGE } from "../../durable/config.ts";

// The `cells` setting (docs/cells.md §3.3): absent means 1; 1..16 cells; a segment of several cells
// keeps its count (adding or draining cells of a running segment is refused with 400 not-implemented).

const BASE = "http://edgelan.test";
const ADMIN = { Authorization: "Bearer test-admin-token", "Content-Type": "application/json" };

function put(name: string, body: unknown): Promise<Response> {
  return exports.default.fetch(`${BASE}/v1/segments/${name}`, { method: "PUT", headers: ADMIN, body: JSON.stringify(body) });
}

describe("cells", () => {
  it("is absent from a new segment's settings (it means 1) and accepts 1", async () => {
    const created = await put("cells-one", {});
    expect(created.status).toBe(201);
    expect(Object.keys((await created.json()) as object)).not.toContain("cells");
    const one = await put("cells-one", { cells: 1 });
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ cells: 1 });
  });

  it("turns a one-cell segment into several, and refuses to change the count after that", async () => {
    expect((await put("cells-grow", {})).status).toBe(201);
    expect((await put("cells-grow", { cells: 3 })).status).toBe(200);
    expect((await put("cells-grow", { cells: 3, maxPorts: 8 })).status).toBe(200);
    const shrink = await put("cells-grow", { cells: 2 });
    expect(shrink.status).toBe(400);
    const body = (await shrink.json()) as { error: string; message: string };
    expect(body.error).toBe("not-implemented");
    expect(body.message).toMatch(/^not implemented yet: changing cells from 3 to 2/);
  });

  it("creates a segment of 3 cells with no extra setting (cells are no longer experimental)", async () => {
    const created = await put("cells-three", { cells: 3 });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ cells: 3 });
  });

  it("refuses values outside 1..16 as invalid-config-field", () => {
    for (const value of [0, 17, 1.5, "2", null]) {
      const result = applyConfigPatch(undefined, { cells: value });
      expect(result.ok ? "ok" : result.error.code).toBe("invalid-config-field");
    }
    expect(CELLS_RANGE).toEqual({ min: 1, max: 16 });
  });
});
