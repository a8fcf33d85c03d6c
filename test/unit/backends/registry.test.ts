// The backend registry and the TAP backend's checks and error messages, without root.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  backendKinds, BackendError, isBackendError, openBackend, registerBackend, serveBackend, type NetBackend,
} from "../../../client/backend.ts";
import { describeOpenError, netnsPath, validateInterfaceName } from "../../../client/backends/tap.ts";
import { tapAddonAvailable } from "../../../client/native/tap-addon.ts";

function systemError(code: string, syscall: string, message: string): Error {
  return Object.assign(new Error(message), { code, syscall });
}

describe("backend registry", () => {
  it("knows tap and stdio as single-port and qemu as multi-port", () => {
    expect(backendKinds()).toEqual({ single: expect.arrayContaining(["tap", "stdio"]) as string[], multi: ["qemu"] });
  });

  it("refuses unknown specs and says what exists", async () => {
    const error: unknown = await openBackend("vmnet:x").catch((e: unknown) => e);
    expect(isBackendError(error, "bad-spec")).toBe(true);
    expect((error as Error).message).toMatch(/unknown backend "vmnet:x".*tap:NAME.*stdio.*qemu:ADDRESS/);
    await expect(serveBackend("tap:edge0")).rejects.toThrow(/single-port backend: use openBackend/);
    await expect(serveBackend("nope")).rejects.toSatisfy((e: unknown) => isBackendError(e, "bad-spec"));
  });

  it("opens a registered kind by name prefix with the rest of the spec", async () => {
    const fake: NetBackend = {
      name: "fake:one", capabilities: { maxFrameSize: 1518, multiPort: false, vnetHeader: false },
      send: () => undefined, onFrames: () => undefined, onClose: () => undefined, close: async () => undefined,
    };
    let seen = "";
    registerBackend("fake", async (rest) => {
      seen = rest;
      return fake;
    });
    expect(await openBackend("fake:one:two")).toBe(fake);
    expect(seen).toBe("one:two");
  });

  it("BackendError carries a code and a cause", () => {
    const cause = new Error("inner");
    const error = new BackendError("device-busy", "busy", { cause });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("BackendError");
    expect(error.code).toBe("device-busy");
    expect(error.cause).toBe(cause);
    expect(isBackendError(error)).toBe(true);
    expect(isBackendError(error, "bad-name")).toBe(false);
    expect(isBackendError(new Error("x"))).toBe(false);
  });
});

describe("TAP names, namespaces and error messages", () => {
  it("accepts what the kernel accepts (IFNAMSIZ: at most 15 bytes)", () => {
    for (const name of ["edge0", "a", "tap%d", "x".repeat(15), "br-lan.10"]) expect(() => validateInterfaceName(name)).not.toThrow();
  });

  it.each([
    ["", /empty/],
    ["x".repeat(16), /16 bytes; Linux allows at most 15/],
    ["é".repeat(8), /16 bytes/],
    ["a/b", /not allowed/],
    ["a b", /not allowed/],
    ["a:b", /not allowed/],
    [".", /not allowed/],
    ["..", /not allowed/],
  ])("rejects %j as bad-name", async (name, message) => {
    expect(() => validateInterfaceName(name)).toThrow(message);
    await expect(openBackend(`tap:${name}`)).rejects.toSatisfy((e: unknown) => isBackendError(e, "bad-name"));
  });

  it("checks MTU and MAC before touching the system", async () => {
    await expect(openBackend("tap:edge0", { mtu: 67 })).rejects.toThrow(/MTU must be an integer 68..65535/);
    await expect(openBackend("tap:edge0", { mac: "01:00:5e:00:00:01" })).rejects.toThrow(/unicast/);
    await expect(openBackend("tap:edge0", { mac: "nope" })).rejects.toThrow(/invalid MAC address/);
  });

  it("maps ip netns names to /run/netns and keeps paths", () => {
    expect(netnsPath("lab")).toBe("/run/netns/lab");
    expect(netnsPath("/proc/1/ns/net")).toBe("/proc/1/ns/net");
    expect(() => netnsPath("a/b")).toThrow(/not a valid/);
  });

  it.each([
    [systemError("ENOENT", "open", "open /dev/net/tun: No such file or directory"), undefined, "tun-missing", /modprobe tun/],
    [systemError("ENODEV", "open", "open /dev/net/tun: No such device"), undefined, "tun-missing", /--device \/dev\/net\/tun/],
    [systemError("EACCES", "open", "open /dev/net/tun: Permission denied"), undefined, "permission-denied", /CAP_NET_ADMIN/],
    [systemError("EPERM", "ioctl(TUNSETIFF)", "ioctl(TUNSETIFF) edge0: Operation not permitted"), undefined, "permission-denied", /needs CAP_NET_ADMIN.*ip tuntap add/],
    [systemError("EBUSY", "ioctl(TUNSETIFF)", "busy"), undefined, "device-busy", /already attached to another process/],
    [systemError("EINVAL", "ioctl(TUNSETIFF)", "invalid"), "lab", "device-conflict", /exists and is not a plain TAP device/],
    [systemError("ENOENT", "open", "open /run/netns/lab: No such file or directory"), "lab", "netns-missing", /ip netns add/],
    [systemError("EPERM", "setns", "setns"), "lab", "permission-denied", /CAP_SYS_ADMIN/],
    [systemError("EIO", "read", "odd"), undefined, "io-error", /odd/],
  ] as const)("turns %s into a typed error", (error, netns, code, message) => {
    const mapped = describeOpenError(error, "edge0", netns);
    expect(mapped.code).toBe(code);
    expect(mapped.message).toMatch(message);
    expect(mapped.cause).toBe(error);
  });
});

const unprivilegedReason = !tapAddonAvailable()
  ? "the TAP addon is not built"
  : !existsSync("/dev/net/tun") ? "/dev/net/tun is missing" : undefined;

describe.skipIf(unprivilegedReason !== undefined)(`TAP without privileges${unprivilegedReason === undefined ? "" : ` (skipped: ${unprivilegedReason})`}`, () => {
  it("says permission-denied and how to fix it", () => {
    const tap = fileURLToPath(new URL("../../../client/backends/tap.ts", import.meta.url));
    const addon = fileURLToPath(new URL("../../../client/native/tap-addon.ts", import.meta.url));
    // As root, a child loads everything first (the checkout may not be readable by others), then drops
    // to nobody; as anyone else, the child simply tries as itself.
    const drop = process.getuid?.() === 0 ? "process.setgroups([]); process.setgid(65534); process.setuid(65534);" : "";
    const script = `
      const { TapBackend } = await import(${JSON.stringify(tap)});
      (await import(${JSON.stringify(addon)})).loadTapAddon();
      ${drop}
      try { TapBackend.open("eltperm0"); console.log("opened"); } catch (e) { console.log(e.code + ": " + e.message); }`;
    const result = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
    if (result.stdout.includes("opened")) return; // an unprivileged user with CAP_NET_ADMIN: nothing to check
    expect(result.stdout, result.stderr).toMatch(/^permission-denied: .*(eltperm0|\/dev\/net\/tun).*CAP_NET_ADMIN/m);
  });
});
