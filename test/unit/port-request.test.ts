import { describe, expect, it } from "vitest";
import {
  PORT_REQUEST_HEADERS, parseTokenLimits, readPortRequestHeaders, writePortRequestHeaders, type PortRequest,
} from "../../contract/port-request.ts";

// The Worker → segment contract (docs/api.md, "Worker → segment contract"): the token's lifecycle and
// policy claims travel in x-edgelan-token-* headers and come back exactly; anything malformed is bad-forward.

const TOKEN_JOIN: PortRequest = {
  segment: "lab", kind: "member", auth: "token", macs: ["02:00:00:00:00:01"], tokenExp: 1_777_640_400, remote: "203.0.113.7", devMode: false,
  token: { id: "u3kQ9c0bW1pXr2Zt", epoch: "ep0ch", issuedAt: 1_777_636_800, maxPorts: 2, raw: false, limits: { bytesPerSecond: 125_000, floodFramesPerSecond: 10 } },
};

function headersOf(request: PortRequest): Headers {
  const headers = new Headers();
  writePortRequestHeaders(headers, request);
  return headers;
}

describe("x-edgelan-token-* headers", () => {
  it("carry a token join's policy there and back", () => {
    const headers = headersOf(TOKEN_JOIN);
    expect(headers.get(PORT_REQUEST_HEADERS.tokenLimits)).toBe('{"bytesPerSecond":125000,"floodFramesPerSecond":10}');
    expect(headers.get(PORT_REQUEST_HEADERS.tokenRaw)).toBe("0");
    expect(readPortRequestHeaders(headers)).toEqual({ ok: true, value: TOKEN_JOIN });
  });

  it("carry absent claims as empty values (null on the way back)", () => {
    const bare: PortRequest = { ...TOKEN_JOIN, token: { id: null, epoch: null, issuedAt: null, maxPorts: null, raw: true, limits: null } };
    expect(readPortRequestHeaders(headersOf(bare))).toEqual({ ok: true, value: bare });
  });

  it("are not written for a join without a token, and read as token: null", () => {
    const open: PortRequest = { ...TOKEN_JOIN, auth: "none", macs: [], tokenExp: null, token: null };
    const headers = headersOf(open);
    expect(headers.has(PORT_REQUEST_HEADERS.tokenId)).toBe(false);
    expect(readPortRequestHeaders(headers)).toEqual({ ok: true, value: open });
  });

  for (const [header, value] of [
    [PORT_REQUEST_HEADERS.tokenMaxPorts, "two"],
    [PORT_REQUEST_HEADERS.tokenIssuedAt, "-1"],
    [PORT_REQUEST_HEADERS.tokenRaw, "yes"],
    [PORT_REQUEST_HEADERS.tokenLimits, '{"bytesPerSecond":0}'],
    [PORT_REQUEST_HEADERS.tokenLimits, '{"burst":1}'],
    [PORT_REQUEST_HEADERS.tokenLimits, "{"],
  ] as const) {
    it(`refuse ${header}: ${value} as bad-forward`, () => {
      const headers = headersOf(TOKEN_JOIN);
      headers.set(header, value);
      expect(readPortRequestHeaders(headers)).toMatchObject({ ok: false, error: { code: "bad-forward" } });
    });
  }

  it("are required on a token join (a missing one is bad-forward)", () => {
    const headers = headersOf(TOKEN_JOIN);
    headers.delete(PORT_REQUEST_HEADERS.tokenEpoch);
    expect(readPortRequestHeaders(headers)).toMatchObject({ ok: false, error: { code: "bad-forward", message: expect.stringContaining("x-edgelan-token-epoch") } });
  });
});

describe("parseTokenLimits", () => {
  it("takes up to the three keys as positive safe integers, nothing else", () => {
    expect(parseTokenLimits({})).toEqual({});
    expect(parseTokenLimits({ framesPerSecond: 100 })).toEqual({ framesPerSecond: 100 });
    for (const bad of [null, [], 5, { framesPerSecond: 1.5 }, { framesPerSecond: 2 ** 53 }, { bytesPerSecond: "1" }, { burstSeconds: 1 }]) {
      expect(parseTokenLimits(bad)).toBeNull();
    }
  });
});
