/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { applyConfigPatch, CELLS_RANGE, REGION_DEFAULTS } from "../../durable/config.ts";

// The `cells` setting (docs/cells.md §3.3): absent means 1; 1..16 cells, or region placement
// `{ placement: "region", max, perCell }`; a segment of several cells keeps its count (adding or draining
// cells of a running segment is refused with 400 not-implemented).

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

  it("maxPorts counts over the cells: up to 1024 per cell (1..1024 × n), else 400 naming the range", async () => {
    const big = await put("cells-many-ports", { cells: 3, maxPorts: 3000 });
    expect(big.status).toBe(201);
    expect(await big.json()).toMatchObject({ cells: 3, maxPorts: 3000 });
    const region = await put("cells-many-region", { cells: { placement: "region", max: 4 }, maxPorts: 4096 });
    expect(region.status).toBe(201);
    for (const [body, bound] of [[{ cells: 2, maxPorts: 2049 }, 2048], [{ maxPorts: 1025 }, 1024], [{ cells: 16, maxPorts: 16385 }, 16384]] as const) {
      const refused = await put("cells-too-many-ports", body);
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { message: string }).message).toContain(`maxPorts must be an integer in 1..${bound}`);
    }
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

  it("accepts region placement, filling in max 4 and perCell 256, and refuses bad shapes as invalid-config-field", async () => {
    const created = await put("cells-region", { cells: { placement: "region" } });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ cells: { placement: "region", max: 4, perCell: 256 } });
    expect(REGION_DEFAULTS).toEqual({ max: 4, perCell: 256 });
    const bad: Array<[unknown, RegExp]> = [
      [{ placement: "fixed" }, /^cells must be an integer in 1\.\.16, or \{"placement": "region", "max": 2\.\.16 \(default 4\), "perCell": 1\.\.1024 \(default 256\)\}; got/],
      [{ placement: "region", regions: ["weur"] }, /^cells must be an integer in 1\.\.16, or \{"placement": "region"/],
      [{ placement: "region", max: 1 }, /^cells\.max must be an integer in 2\.\.16; got 1$/],
      [{ placement: "region", max: 17 }, /^cells\.max must be an integer in 2\.\.16; got 17$/],
      [{ placement: "region", perCell: 0 }, /^cells\.perCell must be an integer in 1\.\.1024; got 0$/],
      [{ placement: "region", perCell: 2.5 }, /^cells\.perCell must be an integer in 1\.\.1024; got 2\.5$/],
      [[4], /^cells must be an integer in 1\.\.16, or \{"placement": "region", …\}; got \[4\]$/],
    ];
    for (const [cells, message] of bad) {
      const response = await put("cells-region-bad", { cells });
      expect(response.status).toBe(400);
      const body = (await response.json()) as { error: string; message: string };
      expect(body.error).toBe("invalid-config-field");
      expect(body.message).toMatch(message);
    }
  });

  it("lets a region segment change perCell but not max, nor turn into a fixed count; a one-cell segment may become one", async () => {
    expect((await put("cells-region-change", { cells: { placement: "region", max: 3, perCell: 4 } })).status).toBe(201);
    const perCell = await put("cells-region-change", { cells: { placement: "region", max: 3, perCell: 8 } });
    expect(perCell.status).toBe(200);
    expect(await perCell.json()).toMatchObject({ cells: { placement: "region", max: 3, perCell: 8 } });
    for (const cells of [{ placement: "region", max: 4 }, 3, 1]) {
      const refused = await put("cells-region-change", { cells });
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { error: string }).error).toBe("not-implemented");
    }
    expect((await put("cells-region-later", {})).status).toBe(201);
    expect((await put("cells-region-later", { cells: { placement: "region", max: 2, perCell: 1 } })).status).toBe(200);
    const fixed = await put("cells-region-fixed", { cells: 3 });
    expect(fixed.status).toBe(201);
    expect(((await (await put("cells-region-fixed", { cells: { placement: "region", max: 3 } })).json()) as { error: string }).error).toBe("not-implemented");
  });
});
