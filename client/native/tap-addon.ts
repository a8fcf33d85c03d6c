/**
 * Loads the native TAP addon (client/native/build/Release/edgelan_tap.node,
 * built by `node scripts/build-native.mjs`, which `npm install` runs) and
 * describes its functions. Loading is lazy and remembered; a missing build is
 * a BackendError "addon-not-built" that says how to build it.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { BackendError, type BackendStats } from "../backend.ts";

/** Opaque handle of one open TAP device. */
export type TapHandle = { readonly __tapHandle: unique symbol };

/** The backend counters the addon keeps, plus the last errno. */
export interface TapCounters extends BackendStats {
  /** errno of the last failed read or write, 0 if none. */
  lastErrno: number;
}

export interface InterfaceInfo {
  mtu: number;
  /** IFF_* flags. */
  flags: number;
  up: boolean;
  index: number;
  mac: Uint8Array;
}

/** The addon's functions. Errors thrown carry `code` (errno name such as "EPERM"), `errno` and `syscall`. */
export interface TapAddon {
  /**
   * Opens /dev/net/tun (O_RDWR|O_NONBLOCK) and attaches it to TAP `name` (IFF_TAP|IFF_NO_PI), inside `netnsPath` if given;
   * `vnetHdr` adds IFF_VNET_HDR (10-byte header) and CSUM/TSO4/TSO6 offloads: frames then carry the header both ways.
   */
  open(name: string, netnsPath?: string, vnetHdr?: boolean): { handle: TapHandle; fd: number; name: string };
  /** Starts the uv_poll reader: `onFrames` once per drained batch, `onError` once if reading fails (the poll then stops). */
  start(handle: TapHandle, onFrames: (frames: Uint8Array[]) => void, onError: (code: string, message: string) => void): void;
  /** One write() per frame; returns how many were written (the others were counted as dropped or errors). */
  write(handle: TapHandle, frames: readonly Uint8Array[]): number;
  stats(handle: TapHandle): TapCounters;
  /** Stops the poll and closes the fd (the kernel then deletes the non-persistent device). Idempotent. */
  close(handle: TapHandle): void;
  setMtu(name: string, mtu: number, netnsPath?: string): void;
  setMac(name: string, mac: Uint8Array, netnsPath?: string): void;
  setUp(name: string, up: boolean, netnsPath?: string): void;
  getInfo(name: string, netnsPath?: string): InterfaceInfo;
}

/** Where the build puts the addon. */
export const TAP_ADDON_PATH = fileURLToPath(new URL("./build/Release/edgelan_tap.node", import.meta.url));

const BUILD_HINT = "run `node scripts/build-native.mjs` (needs a C compiler, make, python3 and Node's headers; `npm install` runs it on Linux)";

let loaded: TapAddon | undefined;

function isTapAddon(value: unknown): value is TapAddon {
  if (typeof value !== "object" || value === null) return false;
  const names = ["open", "start", "write", "stats", "close", "setMtu", "setMac", "setUp", "getInfo"];
  return names.every((name) => typeof (value as Record<string, unknown>)[name] === "function");
}

/** Loads the addon once, or throws BackendError "addon-not-built" saying why (not Linux, not built, broken build) and how to build it. */
export function loadTapAddon(): TapAddon {
  if (loaded !== undefined) return loaded;
  if (process.platform !== "linux") {
    throw new BackendError("addon-not-built", `the TAP backend needs Linux (this is ${process.platform})`);
  }
  if (!existsSync(TAP_ADDON_PATH)) {
    throw new BackendError("addon-not-built", `TAP addon not built (${TAP_ADDON_PATH} is missing): ${BUILD_HINT}`);
  }
  let module: unknown;
  try {
    module = createRequire(import.meta.url)(TAP_ADDON_PATH);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new BackendError("addon-not-built", `TAP addon at ${TAP_ADDON_PATH} does not load (${reason}): ${BUILD_HINT}`, { cause: error });
  }
  if (!isTapAddon(module)) {
    throw new BackendError("addon-not-built", `TAP addon at ${TAP_ADDON_PATH} is out of date: ${BUILD_HINT}`);
  }
  loaded = module;
  return module;
}

/** True when the addon is built and loads; never throws. */
export function tapAddonAvailable(): boolean {
  try {
    loadTapAddon();
    return true;
  } catch {
    return false;
  }
}
