// Completion runs: per-id verdicts in arrival order fold into runs of
// consecutive ids with one status; the client's TxWindow accepts them exactly.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DropReason } from "../../../datapath/counters.ts";
import { CompletionCoalescer, decodeMessage, MessageEncoder } from "../../../datapath/tunnel/codec.ts";
import { TxWindow } from "../../../datapath/tunnel/tx-window.ts";

/** The runs a coalescer holds, as records. */
function peek(c: CompletionCoalescer): Array<{ firstId: number; count: number; status: number }> {
  const flat = c.runs();
  const out: Array<{ firstId: number; count: number; status: number }> = [];
  for (let i = 0; i < flat.length; i += 3) out.push({ firstId: flat[i] as number, count: flat[i + 1] as number, status: flat[i + 2] as number });
  return out;
}

describe("CompletionCoalescer", () => {
  it("folds an all-ok batch into one run", () => {
    const c = new CompletionCoalescer();
    for (let id = 10; id < 42; id++) c.push(id, 0);
    expect(peek(c)).toEqual([{ firstId: 10, count: 32, status: 0 }]);
    expect(c.idCount).toBe(32);
  });

  it("turns 'all ok except one' into ok-run, drop-run, ok-run", () => {
    const c = new CompletionCoalescer();
    for (let id = 0; id < 8; id++) c.push(id, id === 5 ? DropReason.SpoofedSource : 0);
    expect(peek(c)).toEqual([
      { firstId: 0, count: 5, status: 0 },
      { firstId: 5, count: 1, status: DropReason.SpoofedSource },
      { firstId: 6, count: 2, status: 0 },
    ]);
  });

  it("keeps one run across the u16 wrap and splits on a gap", () => {
    const c = new CompletionCoalescer();
    for (const id of [65534, 65535, 0, 1, 3]) c.push(id, 0);
    expect(peek(c)).toEqual([{ firstId: 65534, count: 4, status: 0 }, { firstId: 3, count: 1, status: 0 }]);
  });

  it("pushRun puts persisted runs back, merging as push does", () => {
    const c = new CompletionCoalescer();
    c.pushRun(65534, 3, 0);
    c.pushRun(1, 2, 0);
    c.pushRun(3, 1, DropReason.NoReceiver);
    expect(peek(c)).toEqual([{ firstId: 65534, count: 5, status: 0 }, { firstId: 3, count: 1, status: DropReason.NoReceiver }]);
    expect(c.idCount).toBe(6);
  });

  it("emits single-id runs when coalescing was not negotiated (maxRun 1)", () => {
    const c = new CompletionCoalescer(1);
    c.push(1, 0);
    c.push(2, 0);
    expect(c.runCount).toBe(2);
  });

  it("flushInto writes tx-complete records and empties itself", () => {
    const c = new CompletionCoalescer();
    const encoder = new MessageEncoder();
    [0, 1, 2].forEach((id) => c.push(id, id === 2 ? DropReason.NoReceiver : 0));
    expect(c.flushInto(encoder)).toBe(2);
    expect(c.runCount).toBe(0);
    expect(decodeMessage(encoder.finish())).toEqual({
      ok: true,
      value: [
        { type: "tx-complete", firstId: 0, count: 2, status: 0 },
        { type: "tx-complete", firstId: 2, count: 1, status: DropReason.NoReceiver },
      ],
    });
  });

  it("answers every id of any window batch exactly once, as the client's TxWindow checks", () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 64 }), fc.integer({ min: 0, max: 2000 }), (statuses, warmup) => {
      const window = new TxWindow(64);
      for (let i = 0; i < warmup; i++) window.applyCompletion(window.acquire() as number, 1, 0); // move ids around the u16 space
      const c = new CompletionCoalescer();
      for (const status of statuses) c.push(window.acquire() as number, status);
      const runs = peek(c);
      expect(runs.reduce((sum, run) => sum + run.count, 0)).toBe(statuses.length);
      for (const run of runs) expect(window.applyCompletion(run.firstId, run.count, run.status).ok).toBe(true);
      expect(window.outstanding).toBe(0);
    }), { numRuns: 300 });
  });
});
