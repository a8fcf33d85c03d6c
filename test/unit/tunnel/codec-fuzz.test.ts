// Fuzzing the decoder: random bytes, random record regions behind a valid
// header, and mutations of valid messages must never throw and must fail only
// with a known error code; every valid message survives encode → decode.
// EDGELAN_FUZZ_RUNS sets the total number of cases (default 100,000).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeMessage, encodeMessage, forEachRecord } from "../../../datapath/tunnel/codec.ts";
import { DECODE_ERROR_CODES, type TunnelRecord } from "../../../datapath/tunnel/records.ts";
import { messageArb } from "./arbitraries.ts";

const TOTAL_RUNS = Number(process.env.EDGELAN_FUZZ_RUNS ?? 100_000);
const KNOWN_CODES = new Set<string>(DECODE_ERROR_CODES);

// Plain checks instead of expect() inside properties: expect's bookkeeping would cost more than the decoding.
function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(what);
}

/** Structural equality with Object.is for numbers (NaN, -0) and element-wise Uint8Array comparison. */
function same(a: unknown, b: unknown): boolean {
  if (typeof a === "number" || typeof b === "number") return Object.is(a, b);
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && a.length === b.length && a.every((v, i) => v === b[i]);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => same(v, b[i]));
  }
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].every((key) => same((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]));
  }
  return a === b;
}

/** Decodes and checks the result is a value or a known, explained error; returns the records or null. */
function decodeChecked(bytes: Uint8Array): TunnelRecord[] | null {
  const result = decodeMessage(bytes);
  if (result.ok) return result.value;
  check(KNOWN_CODES.has(result.error.code), `unknown error code ${result.error.code}`);
  check(result.error.message.length > 10, `unexplained error ${result.error.code}`);
  return null;
}

/** forEachRecord must agree with decodeMessage on acceptance, error code and the records it sees. */
function checkVisitorAgrees(bytes: Uint8Array, decoded: TunnelRecord[] | null): void {
  const seen: TunnelRecord[] = [];
  const visited = forEachRecord(bytes, { record: (record) => seen.push(record) });
  check(visited.ok === (decoded !== null), "forEachRecord and decodeMessage disagree on acceptance");
  if (!visited.ok) check(visited.error.code === (decodeMessage(bytes) as { error: { code: string } }).error.code, "error codes differ");
  if (decoded !== null) check(same(seen, decoded), "forEachRecord saw different records");
}

type Mutation =
  | { kind: "set"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; length: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }) },
);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function mutate(bytes: Uint8Array, mutation: Mutation): Uint8Array {
  const at = bytes.length === 0 ? 0 : mutation.at % bytes.length;
  switch (mutation.kind) {
    case "set": {
      const copy = bytes.slice();
      if (copy.length > 0) copy[at] = mutation.value;
      return copy;
    }
    case "truncate": return bytes.slice(0, at);
    case "insert": return concat(bytes.subarray(0, at), mutation.bytes, bytes.subarray(at));
    case "delete": return concat(bytes.subarray(0, at), bytes.subarray(at + mutation.length));
  }
}

describe(`tunnel codec fuzzing (${TOTAL_RUNS} cases in total)`, { timeout: 60_000 }, () => {
  it("random bytes: never throws, errors are typed", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 96 }), (bytes) => {
      decodeChecked(bytes);
    }), { numRuns: Math.ceil(TOTAL_RUNS * 0.25) });
  });

  it("a valid header followed by random record bytes: never throws, errors are typed", () => {
    const arb = fc.tuple(fc.integer({ min: 0, max: 4 }), fc.uint8Array({ maxLength: 96 }), fc.constantFrom(0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x20, 0x23, 0x25, 0x26, 0x28));
    fc.assert(fc.property(arb, ([count, tail, type]) => {
      const bytes = Uint8Array.from([0x45, 0x4c, 1, 0, count, 0, 0, 0, type, 0, tail.length > 6 ? tail.length - 6 : 0, 0, 0, 0, ...tail]);
      checkVisitorAgrees(bytes, decodeChecked(bytes));
    }), { numRuns: Math.ceil(TOTAL_RUNS * 0.25) });
  });

  it("mutated valid messages: never throws, errors are typed, accepted ones re-encode consistently", () => {
    fc.assert(fc.property(messageArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (records, mutations) => {
      const bytes = mutations.reduce(mutate, encodeMessage(records));
      const decoded = decodeChecked(bytes);
      checkVisitorAgrees(bytes, decoded);
      if (decoded !== null) check(same(decodeMessage(encodeMessage(decoded)), { ok: true, value: decoded }), "re-encoding changed the records");
    }), { numRuns: Math.ceil(TOTAL_RUNS * 0.3) });
  });

  it("decode(encode(x)) deep-equals x for every valid message", () => {
    fc.assert(fc.property(messageArb, (records) => {
      check(same(decodeMessage(encodeMessage(records)), { ok: true, value: records }), "round trip changed the records");
    }), { numRuns: Math.ceil(TOTAL_RUNS * 0.2) });
  });

  it("the fast equality used above is vitest's toEqual on a sample (so the property cannot pass vacuously)", () => {
    for (const records of fc.sample(messageArb, 200)) {
      const decoded = decodeMessage(encodeMessage(records));
      expect(decoded).toEqual({ ok: true, value: records });
      expect(same(decoded, { ok: true, value: records })).toBe(true);
    }
    expect(same({ a: Uint8Array.of(1) }, { a: Uint8Array.of(2) })).toBe(false);
    expect(same([1, NaN], [1, NaN])).toBe(true);
    expect(same({ a: 1 }, { a: 1, b: undefined })).toBe(true);
    expect(same({ a: 1 }, { a: 1, b: 0 })).toBe(false);
  });
});
