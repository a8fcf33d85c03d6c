import { describe, expect, it } from "vitest";
import { nestingDepth } from "../../worker/json-body.ts";

// The depth scan that guards the admin API runs before JSON.parse, on any text: it must count
// only real nesting and never be fooled by brackets inside strings.
describe("nestingDepth", () => {
  it.each([
    ["", 0],
    ["1", 0],
    ["{}", 1],
    ['{"a":[1,[2]]}', 3],
    ['[{"a":{}},{"b":[]}]', 3],
    ['"[[[["', 0],
    ['{"a":"]]]{{{"}', 1],
    ['{"a":"\\"[[[["}', 1],
    ['{"a":"\\\\"}', 1],
    ['["\\\\",[["x"]]]', 3],
  ])("%s nests %i deep", (text, depth) => {
    expect(nestingDepth(text)).toBe(depth);
  });

  it("is linear and iterative on 100,000 levels", () => {
    expect(nestingDepth("[".repeat(100_000) + "]".repeat(100_000))).toBe(100_000);
  });

  it("does not go negative on stray closers (JSON.parse refuses them later)", () => {
    expect(nestingDepth("]]]{")).toBe(1);
  });
});
