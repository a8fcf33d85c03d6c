import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkPolicerLimits, DEFAULT_POLICER_LIMITS, newPolicerState, police, type PolicerLimits } from "../../datapath/policer.ts";

const limits = (overrides: Partial<PolicerLimits>): PolicerLimits => ({ ...DEFAULT_POLICER_LIMITS, ...overrides });

describe("police", () => {
  it("admits a burst, then refuses until tokens refill at the configured rate", () => {
    const l = limits({ framesPerSecond: 10, floodFramesPerSecond: null, burstSeconds: 1 });
    const state = newPolicerState(l, 0);
    const verdicts = Array.from({ length: 12 }, () => police(state, l, 64, false, 0));
    expect(verdicts.filter((v) => v === "ok")).toHaveLength(10);
    expect(verdicts.slice(10)).toEqual(["rate-limited", "rate-limited"]);
    expect(police(state, l, 64, false, 99)).toBe("rate-limited");
    expect(police(state, l, 64, false, 100)).toBe("ok");
  });

  it("limits bytes independently of frames", () => {
    const l = limits({ bytesPerSecond: 3000, floodFramesPerSecond: null });
    const state = newPolicerState(l, 0);
    expect([1514, 1486, 1].map((b) => police(state, l, b, false, 0))).toEqual(["ok", "ok", "rate-limited"]);
    expect(police(state, l, 1514, false, 500)).toBe("rate-limited");
    expect(police(state, l, 1514, false, 600)).toBe("ok");
  });

  it("storm control refuses flooded frames only, and a refused flood takes no byte or frame tokens", () => {
    const l = limits({ framesPerSecond: 5, floodFramesPerSecond: 2 });
    const state = newPolicerState(l, 0);
    expect([true, true, true, true].map((f) => police(state, l, 60, f, 0))).toEqual(["ok", "ok", "storm-control", "storm-control"]);
    expect([false, false, false, false].map((f) => police(state, l, 60, f, 0))).toEqual(["ok", "ok", "ok", "rate-limited"]);
  });

  it("never lets more through than burst + rate × time (any arrival pattern)", () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 500 }), fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 300 }),
      (rate, gaps) => {
        const l = limits({ framesPerSecond: rate, floodFramesPerSecond: null, burstSeconds: 0.5 });
        const state = newPolicerState(l, 0);
        let now = 0;
        let admitted = 0;
        for (const gap of gaps) {
          now += gap;
          if (police(state, l, 60, false, now) === "ok") admitted++;
        }
        expect(admitted).toBeLessThanOrEqual(Math.max(1, rate * 0.5) + (rate * now) / 1000 + 1e-9);
      },
    ));
  });

  it("is unlimited with null rates and tolerates a clock that steps back", () => {
    const l = limits({ floodFramesPerSecond: null });
    const state = newPolicerState(l, 1000);
    for (let i = 0; i < 10_000; i++) expect(police(state, l, 65_535, true, 1000 - i)).toBe("ok");
  });
});

describe("checkPolicerLimits", () => {
  it("names each bad value", () => {
    expect(checkPolicerLimits({ bytesPerSecond: 1e6, framesPerSecond: null, burstSeconds: 1 })).toEqual([]);
    expect(checkPolicerLimits({ bytesPerSecond: -1, framesPerSecond: 1.5, floodFramesPerSecond: "x", burstSeconds: 0 })).toEqual([
      "bytesPerSecond must be a positive integer or null",
      "framesPerSecond must be a positive integer or null",
      "floodFramesPerSecond must be a positive integer or null",
      "burstSeconds must be a number from 0.01 to 60",
    ]);
  });
});
