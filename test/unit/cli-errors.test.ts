// The CLI's error mapping and stable MACs, as pure functions: close codes are
// mapped by meaning (retryable → exit 4, refusals → 3, protocol errors → 1).
import { describe, expect, it } from "vitest";
import { toCliError } from "../../client/cli/report.ts";
import { stableMac } from "../../client/cli/stable-mac.ts";
import { ExitCode } from "../../client/cli/exit-codes.ts";
import { SessionError } from "../../client/session.ts";
import { formatMac, isLocallyAdministeredMac, isMulticastMac } from "../../datapath/mac.ts";

const join = { url: "ws://127.0.0.1:8787/v1/segments/lab/connect", tokenGiven: false };

describe("toCliError", () => {
  it.each([
    [4002, ExitCode.Unreachable, "handshake-timeout"],
    [4012, ExitCode.Unreachable, "segment-restarting"],
    [4014, ExitCode.Unreachable, "segment-full"],
    [4029, ExitCode.Unreachable, "rate-limited"],
    [4001, ExitCode.Refused, "unsupported-version"],
    [4008, ExitCode.Refused, "policy"],
    [4009, ExitCode.Refused, "mac-taken"],
    [4010, ExitCode.Refused, "segment-deleted"],
    [4000, ExitCode.Failure, "malformed"],
    [4003, ExitCode.Failure, "window-overrun"],
  ])("maps close code %i to exit %i and names it (%s)", (code, exit, name) => {
    const error = toCliError(new SessionError(code, "segment closed the tunnel"), join);
    expect(error.exitCode).toBe(exit);
    expect(error.message).toContain(`${code} ${name}`);
  });

  it("maps HTTP refusals to 3 with what to do, 5xx and unreachable to 4", () => {
    expect(toCliError(new SessionError(401, "x"), join)).toMatchObject({ exitCode: 3, message: expect.stringContaining("edgelan token lab") });
    expect(toCliError(new SessionError(401, "x"), { ...join, tokenGiven: true }).message).toBe("x");
    expect(toCliError(new SessionError(404, "x"), join)).toMatchObject({ exitCode: 3, message: expect.stringContaining("edgelan segments create lab") });
    expect(toCliError(new SessionError(503, "x"), join).exitCode).toBe(4);
    expect(toCliError(new SessionError(1006, "x"), join).exitCode).toBe(4);
  });
});

describe("stableMac", () => {
  const base = { machineId: "0123456789abcdef0123456789abcdef", segment: "lab", tap: "edge0" };

  it("is the same for the same machine, segment, TAP and namespace, and differs otherwise", () => {
    expect(stableMac(base)).toBe(stableMac({ ...base }));
    for (const other of [{ ...base, segment: "lab2" }, { ...base, tap: "edge1" }, { ...base, netns: "blue" }, { ...base, machineId: "x" }]) {
      expect(stableMac(other)).not.toBe(stableMac(base));
    }
  });

  it("is locally administered unicast", () => {
    for (const tap of ["a", "b", "c", "d", "e", "f", "g", "h"]) {
      const mac = stableMac({ ...base, tap });
      expect(isLocallyAdministeredMac(mac), formatMac(mac)).toBe(true);
      expect(isMulticastMac(mac), formatMac(mac)).toBe(false);
    }
  });
});
