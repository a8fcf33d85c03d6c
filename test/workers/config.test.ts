/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  applyConfigPatch,
  CONFIG_RANGES,
  DEFAULT_SEGMENT_CONFIG,
  loadSegment,
  saveSegment,
  type SegmentConfig,
} from "../../durable/config.ts";

// A segment's settings: defaults, partial patches, and the errors a bad patch gets.

const NOW = new Date("2026-05-01T12:00:00.000Z");
const created = (): SegmentConfig => {
  const result = applyConfigPatch(undefined, {}, NOW);
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
};

function failure(current: SegmentConfig | undefined, patch: unknown): { code: string; message: string } {
  const result = applyConfigPatch(current, patch, NOW);
  if (result.ok) throw new Error(`expected ${JSON.stringify(patch)} to be refused`);
  return result.error;
}

describe("DEFAULT_SEGMENT_CONFIG", () => {
  it("is what the issue specifies", () => {
    expect(DEFAULT_SEGMENT_CONFIG).toEqual({
      maxFrameSize: 1514,
      maxPorts: 64,
      learnLimitPerPort: 64,
      learnLimitPerSegment: 4096,
      agingSeconds: 300,
      rxQueueFrames: 256,
      rxQueueBytes: 1024 * 1024,
      segmentQueueBytes: 32 * 1024 * 1024,
      openJoin: false,
      ttlSeconds: null,
      allowedOrigins: null,
      rateLimitBytesPerSecond: null,
      rateLimitFramesPerSecond: null,
      stormControlFramesPerSecond: 100,
      rawEgressBytesPerSecond: 4 * 1024 * 1024,
      rawEgressFramesPerSecond: 4000,
      rawMode: true,
    });
  });

  it("keeps the segment-wide queue budget at most 64 MiB, half of a Durable Object's 128 MB", () => {
    expect(CONFIG_RANGES.segmentQueueBytes.max).toBe(64 * 1024 * 1024);
  });
});

describe("applyConfigPatch", () => {
  it("creates from defaults with createdAt = now", () => {
    expect(created()).toEqual({ ...DEFAULT_SEGMENT_CONFIG, createdAt: "2026-05-01T12:00:00.000Z" });
  });

  it("turns the policing limits off with null and back on with a number", () => {
    const off = applyConfigPatch(created(), { stormControlFramesPerSecond: null, rateLimitFramesPerSecond: 5000 }, NOW);
    expect(off).toMatchObject({ ok: true, value: { stormControlFramesPerSecond: null, rateLimitFramesPerSecond: 5000 } });
  });

  it("changes only the fields in the patch and keeps createdAt", () => {
    const result = applyConfigPatch(created(), { maxPorts: 2, openJoin: true }, new Date(0));
    expect(result).toEqual({ ok: true, value: { ...created(), maxPorts: 2, openJoin: true } });
  });

  it("does not change the current settings object", () => {
    const current = created();
    applyConfigPatch(current, { maxPorts: 2 });
    expect(current.maxPorts).toBe(64);
  });

  it("accepts both ends of every range", () => {
    // A base where every cross-field rule holds at both ends of every range.
    const roomy = { learnLimitPerPort: 1, learnLimitPerSegment: 65536, maxFrameSize: 60, rxQueueBytes: 65539, segmentQueueBytes: 64 * 1024 * 1024 };
    for (const [field, range] of Object.entries(CONFIG_RANGES)) {
      for (const value of [range.min, range.max]) {
        const patch: Record<string, number> = { ...roomy, [field]: value };
        if (field === "segmentQueueBytes") patch.rxQueueBytes = Math.min(value, roomy.rxQueueBytes);
        const result = applyConfigPatch(undefined, patch, NOW);
        expect(result, `${field}=${value}`).toMatchObject({ ok: true, value: { [field]: value } });
      }
    }
  });

  it.each([
    ["maxFrameSize", 59, "60..65535"],
    ["maxFrameSize", 65536, "60..65535"],
    ["maxFrameSize", 1500.5, "an integer"],
    ["maxFrameSize", "1514", "an integer"],
    ["maxPorts", 0, "1..1024"],
    ["maxPorts", 1025, "1..1024"],
    ["agingSeconds", 9, "10..86400"],
    ["agingSeconds", 86401, "10..86400"],
    ["segmentQueueBytes", 64 * 1024 * 1024 + 1, "..67108864"],
    ["rxQueueFrames", -1, "1..65536"],
    ["ttlSeconds", 5, "or null"],
    ["ttlSeconds", "never", "or null"],
    ["openJoin", "yes", "true or false"],
    ["openJoin", null, "true or false"],
    ["rateLimitBytesPerSecond", 1000, "65536..1099511627776 or null (unlimited)"],
    ["rateLimitFramesPerSecond", 0, "10..10000000 or null (unlimited)"],
    ["stormControlFramesPerSecond", 0.5, "1..1000000 or null (no storm control)"],
    ["stormControlFramesPerSecond", "off", "or null (no storm control)"],
    ["rawEgressBytesPerSecond", null, "65536..67108864"],
    ["rawEgressFramesPerSecond", 100_001, "10..100000"],
    ["rawMode", "no", "true or false"],
  ])("refuses %s = %j, naming the field and %s", (field, value, allowed) => {
    const error = failure(created(), { [field]: value });
    expect(error.code).toBe("invalid-config-field");
    expect(error.message).toContain(field);
    expect(error.message).toContain(allowed);
  });

  it("no longer knows defaultPortKind (a HELLO always names its kind; a connect's kind is ?kind=, default member)", () => {
    expect(failure(created(), { defaultPortKind: "member" }).code).toBe("unknown-config-field");
  });

  it("names every unknown key and lists the known ones", () => {
    const error = failure(created(), { maxPorts: 4, vlan: 7, Mtu: 1500 });
    expect(error.code).toBe("unknown-config-field");
    expect(error.message).toMatch(/"vlan", "Mtu"/);
    expect(error.message).toContain("maxFrameSize");
  });

  it("treats createdAt as read-only", () => {
    const error = failure(created(), { createdAt: "2000-01-01T00:00:00Z" });
    expect(error.code).toBe("unknown-config-field");
    expect(error.message).toContain("read-only");
  });

  it.each([[null], [[]], ["maxPorts=4"], [42]])("refuses a patch that is not an object: %j", (patch) => {
    expect(failure(created(), patch).code).toBe("invalid-config");
  });

  it("keeps the per-port learn limit within the segment's", () => {
    const error = failure(created(), { learnLimitPerPort: 5000 });
    expect(error.message).toMatch(/learnLimitPerPort \(5000\) must not exceed learnLimitPerSegment \(4096\)/);
    expect(applyConfigPatch(created(), { learnLimitPerPort: 5000, learnLimitPerSegment: 5000 }).ok).toBe(true);
  });

  it("needs room for one tagged maximum-size frame in a port's queue", () => {
    const error = failure(created(), { maxFrameSize: 9000, rxQueueBytes: 9000 });
    expect(error.message).toContain("9004");
    expect(applyConfigPatch(created(), { maxFrameSize: 9000, rxQueueBytes: 9004 }).ok).toBe(true);
  });

  it("keeps the segment budget at least one port's queue", () => {
    const error = failure(created(), { rxQueueBytes: 2 * 1024 * 1024, segmentQueueBytes: 1024 * 1024 });
    expect(error.message).toContain("segmentQueueBytes");
  });

  it("switches the TTL off with null", () => {
    const withTtl = applyConfigPatch(created(), { ttlSeconds: 600 });
    if (!withTtl.ok) throw new Error(withTtl.error.message);
    expect(applyConfigPatch(withTtl.value, { ttlSeconds: null })).toMatchObject({ ok: true, value: { ttlSeconds: null } });
  });
});

describe("loadSegment / saveSegment", () => {
  it("round-trips the segment record through Durable Object storage", async () => {
    const stub = env.SEGMENTS.getByName("config-storage");
    await runInDurableObject(stub, async (_instance, state) => {
      expect(await loadSegment(state.storage)).toBeUndefined();
      await saveSegment(state.storage, { name: "config-storage", config: created() });
      expect(await loadSegment(state.storage)).toEqual({ name: "config-storage", config: created() });
    });
  });
});
