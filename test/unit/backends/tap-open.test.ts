// How the TAP backend chooses between offloads and a plain device (openTapDevice), against a stub
// addon: a real kernel cannot be made to refuse IFF_VNET_HDR on demand. The real device paths are
// in test/e2e/tap-backend.test.ts and test/e2e/offload.test.ts.
import { describe, expect, it } from "vitest";
import { openTapDevice } from "../../../client/backends/tap.ts";
import { BackendError } from "../../../client/backend.ts";
import type { TapAddon, TapHandle } from "../../../client/native/tap-addon.ts";

/** An addon whose open() fails with `failure` when asked for the virtio-net header; records each call's flag. */
function stubAddon(failure: { syscall: string; code: string } | null): { addon: TapAddon; calls: boolean[] } {
  const calls: boolean[] = [];
  const refuse = (): never => {
    throw new Error("not used by openTapDevice");
  };
  const addon: TapAddon = {
    open(name, _netns, vnetHdr) {
      calls.push(vnetHdr === true);
      if (vnetHdr === true && failure !== null) throw Object.assign(new Error(`${failure.syscall} ${name}: refused`), failure);
      return { handle: {} as TapHandle, fd: 3, name };
    },
    start: refuse, write: refuse, stats: refuse, close: refuse, setMtu: refuse, setMac: refuse, setUp: refuse, getInfo: refuse,
  };
  return { addon, calls };
}

describe("openTapDevice: offload true, \"auto\" or off", () => {
  it("auto takes the offloads when the device accepts them", () => {
    const { addon, calls } = stubAddon(null);
    expect(openTapDevice(addon, "elt0", undefined, { offload: "auto" }).offload).toBe(true);
    expect(calls).toEqual([true]);
  });

  it("auto falls back to a plain TAP when the kernel refuses the header or the offloads", () => {
    for (const failure of [{ syscall: "ioctl(TUNSETOFFLOAD)", code: "EINVAL" }, { syscall: "ioctl(TUNSETVNETHDRSZ)", code: "EINVAL" }, { syscall: "ioctl(TUNSETIFF)", code: "EINVAL" }]) {
      const { addon, calls } = stubAddon(failure);
      expect(openTapDevice(addon, "elt0", undefined, { offload: "auto" }).offload).toBe(false);
      expect(calls).toEqual([true, false]);
    }
  });

  it("auto does not hide failures that a plain TAP would hit too, and true insists", () => {
    const busy = stubAddon({ syscall: "ioctl(TUNSETIFF)", code: "EBUSY" });
    expect(() => openTapDevice(busy.addon, "elt0", undefined, { offload: "auto" })).toThrowError(BackendError);
    expect(busy.calls).toEqual([true]);
    const insisted = stubAddon({ syscall: "ioctl(TUNSETOFFLOAD)", code: "EINVAL" });
    expect(() => openTapDevice(insisted.addon, "elt0", undefined, { offload: true })).toThrowError(/TUNSETOFFLOAD|opening TAP/);
    expect(insisted.calls).toEqual([true]);
  });

  it("without offload (the library default) opens a plain TAP at once", () => {
    const { addon, calls } = stubAddon(null);
    expect(openTapDevice(addon, "elt0", undefined, {}).offload).toBe(false);
    expect(calls).toEqual([false]);
  });
});
