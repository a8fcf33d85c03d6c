// The TX window in the spirit of netback's ring tests: full ring, wrap of u16
// ids and of the free-running counters, empty batches, duplicate and unknown
// completions, out-of-order completion, reset, persistence.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DropReason } from "../../../datapath/counters.ts";
import { grantTxWindow, isValidTxWindowSize, TxBatchGuard, TxWindow } from "../../../datapath/tunnel/tx-window.ts";

function acquireAll(window: TxWindow): number[] {
  const ids: number[] = [];
  for (let id = window.acquire(); id !== undefined; id = window.acquire()) ids.push(id);
  return ids;
}

function mustComplete(window: TxWindow, firstId: number, count: number, status = 0): void {
  const result = window.applyCompletion(firstId, count, status);
  if (!result.ok) throw new Error(result.error.message);
}

describe("TxWindow", () => {
  it("hands out ids 0..size-1, then defers (undefined) when full", () => {
    const window = new TxWindow(4);
    expect(acquireAll(window)).toEqual([0, 1, 2, 3]);
    expect(window.full).toBe(true);
    expect(window.outstanding).toBe(4);
    expect(window.available).toBe(0);
    expect(window.acquire()).toBeUndefined();
  });

  it("after in-order completions, continues with the next consecutive ids (the slot's next generation)", () => {
    const window = new TxWindow(4);
    acquireAll(window);
    mustComplete(window, 0, 2);
    expect(window.outstanding).toBe(2);
    expect(acquireAll(window)).toEqual([4, 5]);
    mustComplete(window, 2, 4);
    expect(acquireAll(window)).toEqual([6, 7, 8, 9]);
  });

  it("wraps u16 ids from 65535 to 0 consecutively, so a run across the wrap completes exactly", () => {
    const window = new TxWindow(8);
    for (let round = 0; round < 65536 / 8 - 1; round++) {
      const ids = acquireAll(window);
      mustComplete(window, ids[0] as number, 8);
    }
    const before = acquireAll(window);
    expect(before).toEqual([65528, 65529, 65530, 65531, 65532, 65533, 65534, 65535]);
    mustComplete(window, 65528, 4);
    expect(acquireAll(window)).toEqual([0, 1, 2, 3]);
    mustComplete(window, 65532, 8); // one run: 65532 … 65535, 0 … 3
    expect(window.outstanding).toBe(0);
    const again = window.applyCompletion(65534, 4, 0);
    expect(again.ok ? "ok" : again.error.code).toBe("duplicate-completion");
  });

  it("completes out of order across the wrap: the freed slot's next generation, not the next integer, comes back", () => {
    const window = new TxWindow(8);
    for (let round = 0; round < 65536 / 8 - 1; round++) mustComplete(window, acquireAll(window)[0] as number, 8);
    acquireAll(window); // 65528 … 65535
    mustComplete(window, 65532, 4); // slots 4 … 7 free first
    expect(acquireAll(window)).toEqual([4, 5, 6, 7]);
  });

  it("treats an empty completion run as a no-op", () => {
    const window = new TxWindow(2);
    window.acquire();
    expect(window.applyCompletion(0, 0, 0)).toEqual({ ok: true, value: { firstId: 0, count: 0, status: 0 } });
    expect(window.outstanding).toBe(1);
  });

  it("reports the ids and status a completion finished", () => {
    const window = new TxWindow(4);
    acquireAll(window);
    expect(window.applyCompletion(1, 2, DropReason.RateLimited)).toEqual({
      ok: true, value: { firstId: 1, count: 2, status: DropReason.RateLimited },
    });
    expect([0, 1, 2, 3].map((id) => window.isOutstanding(id))).toEqual([true, false, false, true]);
  });

  it("rejects a duplicate completion and an unknown id, changing nothing (all or nothing per run)", () => {
    const window = new TxWindow(4);
    acquireAll(window);
    mustComplete(window, 0, 1);
    const duplicate = window.applyCompletion(0, 1, 0);
    expect(duplicate.ok ? "ok" : duplicate.error.code).toBe("duplicate-completion");
    const unknown = window.applyCompletion(100, 1, 0);
    expect(unknown.ok ? "ok" : unknown.error.code).toBe("unknown-id");
    expect(unknown.ok ? "" : unknown.error.message).toContain("id 100");
    const partlyBad = window.applyCompletion(2, 3, 0); // 2, 3 outstanding; 4 never acquired
    expect(partlyBad.ok ? "ok" : partlyBad.error.code).toBe("unknown-id");
    expect(window.outstanding).toBe(3);
    expect(window.isOutstanding(2) && window.isOutstanding(3)).toBe(true);
  });

  it("does not confuse an old generation with the current one (same slot, different id)", () => {
    const window = new TxWindow(2);
    acquireAll(window);
    mustComplete(window, 0, 2);
    acquireAll(window); // 2, 3 live in slots 0, 1
    const stale = window.applyCompletion(0, 1, 0);
    expect(stale.ok ? "ok" : stale.error.code).toBe("duplicate-completion");
    const future = window.applyCompletion(4, 1, 0);
    expect(future.ok ? "ok" : future.error.code).toBe("unknown-id");
  });

  it("handles out-of-order completion without ever handing out an outstanding id", () => {
    const window = new TxWindow(4);
    acquireAll(window); // 0 1 2 3
    mustComplete(window, 2, 1);
    mustComplete(window, 0, 1);
    const next = acquireAll(window);
    expect(next).toEqual([6, 4]);
    expect(new Set([1, 3, ...next]).size).toBe(4);
  });

  it("failAll completes every outstanding id, oldest first, and leaves the window empty", () => {
    const window = new TxWindow(4);
    acquireAll(window); // 0 1 2 3
    mustComplete(window, 1, 1);
    expect(window.acquire()).toBe(5);
    expect(window.failAll()).toEqual([0, 2, 3, 5]);
    expect(window.outstanding).toBe(0);
    expect(window.failAll()).toEqual([]);
    expect(acquireAll(window)).toHaveLength(4);
  });

  it("accepts only power-of-two sizes up to 32768", () => {
    expect([1, 2, 1024, 32768].every(isValidTxWindowSize)).toBe(true);
    expect([0, 3, 65536, 1.5, -2].some(isValidTxWindowSize)).toBe(false);
    expect(() => new TxWindow(3)).toThrowError(RangeError);
    expect(() => new TxWindow(65536)).toThrowError(/power of two/);
  });

  it("grants the largest power of two within what was asked and the limit", () => {
    expect(grantTxWindow(100)).toBe(64);
    expect(grantTxWindow(0)).toBe(256);
    expect(grantTxWindow(100_000)).toBe(32768);
    expect(grantTxWindow(5000, 1024)).toBe(1024);
    expect(grantTxWindow(1)).toBe(1);
  });

  it("matches a model under random acquire / complete / failAll sequences", () => {
    type Op = { kind: "acquire" } | { kind: "complete"; pick: number; count: number } | { kind: "fail" } | { kind: "bogus"; id: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.constant({ kind: "acquire" as const }) },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant("complete" as const), pick: fc.nat(), count: fc.integer({ min: 1, max: 3 }) }) },
      { weight: 1, arbitrary: fc.constant({ kind: "fail" as const }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("bogus" as const), id: fc.integer({ min: 0, max: 65535 }) }) },
    );
    fc.assert(fc.property(fc.constantFrom(1, 2, 4, 16), fc.array(op, { maxLength: 300 }), (size, ops) => {
      const window = new TxWindow(size);
      const live = new Set<number>();
      for (const step of ops) {
        if (step.kind === "acquire") {
          const id = window.acquire();
          expect(id === undefined).toBe(live.size === size);
          if (id !== undefined) {
            expect(live.has(id)).toBe(false);
            live.add(id);
          }
        } else if (step.kind === "complete" && live.size > 0) {
          const first = [...live][step.pick % live.size] as number;
          const run = Array.from({ length: step.count }, (_, i) => (first + i) & 0xffff);
          const valid = run.every((id) => live.has(id));
          expect(window.applyCompletion(first, step.count, 0).ok).toBe(valid);
          if (valid) run.forEach((id) => live.delete(id));
        } else if (step.kind === "fail") {
          expect(new Set(window.failAll())).toEqual(live);
          live.clear();
        } else if (step.kind === "bogus" && !live.has(step.id)) {
          expect(window.applyCompletion(step.id, 1, 0).ok).toBe(false);
        }
        expect(window.outstanding).toBe(live.size);
      }
    }), { numRuns: 300 });
  });
});

describe("TxBatchGuard (segment side)", () => {
  it("accepts up to the window of distinct ids, batch after batch", () => {
    const guard = new TxBatchGuard();
    expect(guard.check([0, 1, 2, 3], 4).ok).toBe(true);
    expect(guard.check([0, 1, 2, 3], 4).ok).toBe(true); // a new message may reuse completed ids
    expect(guard.check([], 4).ok).toBe(true);
  });

  it("rejects more TX records than the window", () => {
    const result = new TxBatchGuard().check([0, 1, 2, 3, 4], 4);
    expect(result.ok ? "ok" : result.error.code).toBe("window-overrun");
    expect(result.ok ? "" : result.error.message).toContain("5 TX descriptors");
  });

  it("rejects the same id twice in one message", () => {
    const result = new TxBatchGuard().check([7, 8, 7], 4);
    expect(result.ok ? "ok" : result.error.code).toBe("duplicate-id");
    expect(result.ok ? "" : result.error.message).toContain("id 7");
  });
});
