// The capacity model of docs/cells.md §10 (bench/cells-model.ts) reproduces the document's table.
import { describe, expect, it } from "vitest";
import { capacity, MODEL_DEFAULTS } from "../../bench/cells-model.ts";

describe("cells capacity model", () => {
  it("gives §10.2's figures for one region (requests bind) and across continents (pair bandwidth binds)", () => {
    const region = [1, 2, 3, 6, 8].map((n) => Math.round(capacity(n, MODEL_DEFAULTS).framesPerSecond));
    expect(region).toEqual([32_000, 57_600, 76_800, 96_000, 76_800]);
    expect(capacity(3, MODEL_DEFAULTS).binding).toBe("requests");
    const continents = capacity(2, { ...MODEL_DEFAULTS, rttMs: 100 });
    expect(continents.binding).toBe("pair-bandwidth");
    expect(Math.round(continents.framesPerSecond / 100) * 100).toBe(27_700);
  });

  it("is bound by CPU when a frame costs enough", () => {
    const slow = capacity(1, { ...MODEL_DEFAULTS, cUs: 100 });
    expect(slow.binding).toBe("cpu");
    expect(Math.round(slow.framesPerSecond)).toBe(8_000);
  });
});
