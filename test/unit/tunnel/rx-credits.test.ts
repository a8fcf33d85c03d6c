// RX credits: counts of buffers, FIFO fill, never truncate, bounded queue with
// tail drop, a segment-wide byte budget, flush, and hibernation state.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DropReason } from "../../../datapath/counters.ts";
import { MAX_RX_CREDITS } from "../../../datapath/tunnel/constants.ts";
import { RxCreditLedger, RxCreditPoster, SegmentQueueBudget, type RxQueueLimits } from "../../../datapath/tunnel/rx-credits.ts";

/** A frame of `length` bytes whose first byte is `tag`, to tell frames apart. */
function frame(length: number, tag = 0): Uint8Array {
  const bytes = new Uint8Array(length);
  bytes[0] = tag;
  return bytes;
}

function ledger(limits: Partial<RxQueueLimits> = {}, budget = new SegmentQueueBudget(1 << 20)): RxCreditLedger {
  return new RxCreditLedger({ maxQueueFrames: 4, maxQueueBytes: 4096, ...limits }, budget);
}

function mustPost(l: RxCreditLedger, count: number, bufferSize = 1518): void {
  const result = l.post(count, bufferSize);
  if (!result.ok) throw new Error(result.error.message);
}

describe("RxCreditLedger", () => {
  it("delivers while credits last, consuming exactly one per frame", () => {
    const l = ledger();
    mustPost(l, 2);
    expect(l.available).toBe(2);
    expect(l.offer(frame(100))).toBe("delivered-now");
    expect(l.offer(frame(1518))).toBe("delivered-now");
    expect(l.available).toBe(0);
    expect(l.offer(frame(100))).toBe("queued");
  });

  it("queues without credit, then drains oldest first when credits are replenished", () => {
    const l = ledger();
    for (const tag of [1, 2, 3]) expect(l.offer(frame(60, tag))).toBe("queued");
    expect(l.queuedFrames).toBe(3);
    expect(l.queuedBytes).toBe(180);
    mustPost(l, 2);
    const first = l.drain();
    expect(first.frames.map((f) => f[0])).toEqual([1, 2]);
    expect(first.dropped).toEqual([]);
    expect(l.available).toBe(0);
    expect(l.queuedFrames).toBe(1);
    mustPost(l, 5);
    expect(l.drain().frames.map((f) => f[0])).toEqual([3]);
    expect(l.available).toBe(4);
  });

  it("keeps FIFO order: with frames still queued, a new frame queues behind them even if credit exists", () => {
    const l = ledger();
    l.offer(frame(60, 1));
    mustPost(l, 2);
    expect(l.offer(frame(60, 2))).toBe("queued");
    expect(l.drain().frames.map((f) => f[0])).toEqual([1, 2]);
  });

  it("never truncates: a frame larger than the posted buffers is dropped and the credit kept", () => {
    const l = ledger();
    mustPost(l, 1, 100);
    expect(l.offer(frame(101))).toBe(DropReason.RxBufferTooSmall);
    expect(l.available).toBe(1);
    expect(l.offer(frame(100))).toBe("delivered-now");
    expect(l.offer(frame(101))).toBe(DropReason.RxBufferTooSmall); // known size: dropped at once even without credit
    expect(l.queuedFrames).toBe(0);
  });

  it("checks queued frames against the buffer size when they are drained (the latest post's size applies)", () => {
    const l = ledger();
    l.offer(frame(1000, 1)); // no post yet: size unknown, so it queues
    l.offer(frame(80, 2));
    mustPost(l, 2, 512);
    const drained = l.drain();
    expect(drained.frames.map((f) => f[0])).toEqual([2]);
    expect(drained.dropped).toEqual([DropReason.RxBufferTooSmall]);
    expect(l.available).toBe(1); // the dropped frame consumed no credit
    expect(l.bufferSize).toBe(512);
  });

  it("bounds the queue by frames with tail drop: the newest arrival is the one dropped", () => {
    const l = ledger({ maxQueueFrames: 2 });
    expect([1, 2, 3].map((tag) => l.offer(frame(60, tag)))).toEqual(["queued", "queued", DropReason.RxQueueFull]);
    mustPost(l, 10);
    expect(l.drain().frames.map((f) => f[0])).toEqual([1, 2]);
  });

  it("bounds the queue by bytes", () => {
    const l = ledger({ maxQueueFrames: 100, maxQueueBytes: 250 });
    expect(l.offer(frame(200))).toBe("queued");
    expect(l.offer(frame(60))).toBe(DropReason.RxQueueFull);
    expect(l.offer(frame(50))).toBe("queued");
    expect(l.queuedBytes).toBe(250);
  });

  it("a zero-frame queue drops at once when there is no credit", () => {
    const l = ledger({ maxQueueFrames: 0 });
    expect(l.offer(frame(60))).toBe(DropReason.RxQueueFull);
  });

  it("shares the segment budget between ports and gives bytes back on drain and flush", () => {
    const budget = new SegmentQueueBudget(300);
    const a = ledger({}, budget);
    const b = ledger({}, budget);
    expect(a.offer(frame(200))).toBe("queued");
    expect(b.offer(frame(100))).toBe("queued");
    expect(budget.usedBytes).toBe(300);
    expect(b.offer(frame(60))).toBe(DropReason.SegmentBudget);
    mustPost(a, 1);
    a.drain();
    expect(budget.usedBytes).toBe(100);
    expect(b.offer(frame(60))).toBe("queued");
    expect(b.flush()).toBe(2);
    expect(budget.usedBytes).toBe(0);
  });

  it("reports the port bound (RxQueueFull) before the segment budget when both are exceeded", () => {
    const l = ledger({ maxQueueFrames: 1 }, new SegmentQueueBudget(0));
    expect(l.offer(frame(60))).toBe(DropReason.SegmentBudget);
    const full = ledger({ maxQueueFrames: 0 }, new SegmentQueueBudget(0));
    expect(full.offer(frame(60))).toBe(DropReason.RxQueueFull);
  });

  it("queues a copy, so the sender's buffer can be reused at once", () => {
    const l = ledger();
    const source = frame(60, 7);
    l.offer(source);
    source[0] = 99;
    mustPost(l, 1);
    expect(l.drain().frames[0]?.[0]).toBe(7);
  });

  it("flush discards the queue, counts it as Flushed and keeps credits", () => {
    const l = ledger();
    l.offer(frame(60));
    l.offer(frame(60));
    mustPost(l, 0);
    expect(l.flush()).toBe(2);
    expect(l.queuedFrames).toBe(0);
    expect(l.queuedBytes).toBe(0);
    expect(l.flush()).toBe(0);
  });

  it("state() is small plain data, and restore() brings back credits, size and limits", () => {
    const budget = new SegmentQueueBudget(1000);
    const l = ledger({ maxQueueFrames: 3, maxQueueBytes: 900 }, budget);
    mustPost(l, 2, 1600);
    l.offer(frame(60));
    l.offer(frame(60));
    l.offer(frame(60, 1));
    const state = structuredClone(l.state());
    expect(state).toEqual({ credits: 0, bufferSize: 1600, maxQueueFrames: 3, maxQueueBytes: 900, queuedFrames: 1, unackedBytes: 120, pingSeq: 0, pingCovers: 0 });
    const fresh = new SegmentQueueBudget(1000);
    const restored = RxCreditLedger.restore(state, fresh);
    expect(restored.available).toBe(0);
    expect(restored.bufferSize).toBe(1600);
    expect(restored.maxQueueFrames).toBe(3);
    expect(restored.queuedFrames).toBe(0);
    expect(restored.flush()).toBe(1); // the frame lost with the old object's memory is reported once
    expect(restored.flush()).toBe(0);
    expect(fresh.usedBytes).toBe(0);
    mustPost(restored, 1, 1600);
    expect(restored.offer(frame(1600))).toBe("delivered-now");
  });

  it("rejects posts past MAX_RX_CREDITS or below the minimum buffer size, changing nothing", () => {
    const l = ledger();
    mustPost(l, MAX_RX_CREDITS - 1);
    const over = l.post(2, 1518);
    expect(over.ok ? "ok" : over.error.code).toBe("credit-overflow");
    const small = l.post(1, 59);
    expect(small.ok ? "ok" : small.error.code).toBe("invalid-buffer-size");
    expect(l.available).toBe(MAX_RX_CREDITS - 1);
    expect(l.post(1, 60)).toEqual({ ok: true, value: MAX_RX_CREDITS });
  });

  it("conserves frames: offered = delivered + dropped + queued, and the budget matches the queue", () => {
    type Op = { kind: "offer"; length: number } | { kind: "post"; count: number; size: number } | { kind: "flush" };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant("offer" as const), length: fc.integer({ min: 14, max: 2000 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("post" as const), count: fc.integer({ min: 0, max: 4 }), size: fc.constantFrom(60, 512, 1518, 2048) }) },
      { weight: 1, arbitrary: fc.constant({ kind: "flush" as const }) },
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const budget = new SegmentQueueBudget(6000);
      const l = ledger({ maxQueueFrames: 5, maxQueueBytes: 5000 }, budget);
      let offered = 0;
      let delivered = 0;
      let dropped = 0;
      for (const step of ops) {
        if (step.kind === "offer") {
          offered++;
          const verdict = l.offer(frame(step.length));
          if (verdict === "delivered-now") delivered++;
          else if (verdict !== "queued") dropped++;
        } else if (step.kind === "post") {
          mustPost(l, step.count, step.size);
          const drained = l.drain();
          for (const f of drained.frames) expect(f.length).toBeLessThanOrEqual(step.size);
          delivered += drained.frames.length;
          dropped += drained.dropped.length;
        } else {
          dropped += l.flush();
        }
        expect(offered).toBe(delivered + dropped + l.queuedFrames);
        expect(budget.usedBytes).toBe(l.queuedBytes);
        expect(l.available).toBeGreaterThanOrEqual(0);
        expect(l.queuedFrames).toBeLessThanOrEqual(5);
      }
    }), { numRuns: 500 });
  });
});

describe("RxCreditPoster (client side)", () => {
  it("posts the full target first, then replenishes once a quarter is used", () => {
    const poster = new RxCreditPoster(64, 1518);
    expect(poster.take()).toBe(64);
    expect(poster.take()).toBe(0);
    expect(poster.filled(15).ok).toBe(true);
    expect(poster.due()).toBe(0);
    expect(poster.filled(1).ok).toBe(true);
    expect(poster.take()).toBe(16);
    expect(poster.outstanding).toBe(64);
  });

  it("flags a segment that fills more buffers than were posted", () => {
    const poster = new RxCreditPoster(4, 1518);
    poster.take();
    const result = poster.filled(5);
    expect(result.ok ? "ok" : result.error.code).toBe("rx-without-credit");
    expect(poster.outstanding).toBe(4);
  });

  it("starts from nothing on a new connection", () => {
    const poster = new RxCreditPoster(8, 1518, 8);
    poster.take();
    poster.reset();
    expect(poster.outstanding).toBe(0);
    expect(poster.take()).toBe(8);
  });

  it("rejects a target beyond MAX_RX_CREDITS", () => {
    expect(() => new RxCreditPoster(MAX_RX_CREDITS + 1, 1518)).toThrowError(RangeError);
  });
});
