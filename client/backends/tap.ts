/**
 * tap:NAME — a Linux TAP device (IFF_TAP | IFF_NO_PI) through our N-API addon.
 * With `offload` it is opened IFF_VNET_HDR (10-byte header) with CSUM/TSO4/TSO6
 * offloads, and every frame in both directions carries the header.
 *
 * Reading is a uv_poll on the non-blocking fd: on readability the addon drains
 * the device until EAGAIN into one batch and calls us once. Writing is one
 * write() per frame (a TAP takes exactly one frame per write); a full kernel
 * queue (EAGAIN) drops the frame and counts it, it never blocks. Closing stops
 * the poll and closes the fd, so the process can exit and the kernel deletes
 * the (non-persistent) device.
 *
 * Privileges: CAP_NET_ADMIN (root) to create the device, and CAP_SYS_ADMIN as
 * well for the `netns` option (the addon enters the namespace just long enough
 * to create and configure the device there).
 */
import {
  BackendError, type BackendCapabilities, type BackendStats, type NetBackend, type TapOptions,
} from "../backend.ts";
import { VNET_HDR_LEN } from "../../datapath/offload.ts";
import { isMulticastMac, parseMac, writeMac, type MacKey } from "../../datapath/mac.ts";
import { frameTrace } from "../frame-trace.ts";
import { loadTapAddon, type InterfaceInfo, type TapAddon, type TapHandle } from "../native/tap-addon.ts";

/** IFNAMSIZ is 16 with the terminating NUL. */
export const MAX_INTERFACE_NAME_BYTES = 15;

export const TAP_CAPABILITIES: BackendCapabilities = Object.freeze({ maxFrameSize: 65535, multiPort: false, vnetHeader: false });
/** With `offload`: frames carry a 10-byte virtio-net header in both directions. */
export const TAP_OFFLOAD_CAPABILITIES: BackendCapabilities = Object.freeze({ maxFrameSize: 65535, multiPort: false, vnetHeader: true });

/** Throws "bad-name" unless the kernel would accept `name` as an interface name (dev_valid_name). */
export function validateInterfaceName(name: string): void {
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes === 0) throw new BackendError("bad-name", "the TAP interface name is empty: use tap:NAME, e.g. tap:edge0");
  if (bytes > MAX_INTERFACE_NAME_BYTES) {
    throw new BackendError("bad-name", `interface name "${name}" is ${bytes} bytes; Linux allows at most ${MAX_INTERFACE_NAME_BYTES} (IFNAMSIZ)`);
  }
  if (name === "." || name === ".." || /[/:\s]/.test(name) || name.includes("\0")) {
    throw new BackendError("bad-name", `interface name "${name}" is not allowed: no "/", ":", whitespace, and not "." or ".."`);
  }
}

/** The path of a network namespace: an `ip netns` name becomes /run/netns/NAME; absolute paths pass through. */
export function netnsPath(netns: string): string {
  if (netns.startsWith("/")) return netns;
  if (netns === "" || netns === "." || netns === ".." || netns.includes("/")) {
    throw new BackendError("bad-spec", `network namespace "${netns}" is not a valid \`ip netns\` name`);
  }
  return `/run/netns/${netns}`;
}

function macBytes(mac: string | MacKey): Uint8Array {
  let key: MacKey;
  if (typeof mac === "string") {
    const parsed = parseMac(mac);
    if (!parsed.ok) throw new BackendError("device-config", parsed.error.message);
    key = parsed.value;
  } else {
    key = mac;
  }
  if (!Number.isInteger(key) || key < 0 || key > 0xffff_ffff_ffff || isMulticastMac(key)) {
    throw new BackendError("device-config", `TAP MAC address must be a unicast address (got ${String(mac)})`);
  }
  const bytes = new Uint8Array(6);
  writeMac(key, bytes, 0);
  return bytes;
}

interface SystemError { code: string; syscall: string; message: string }

function asSystemError(error: unknown): SystemError {
  if (error instanceof Error) {
    const record = error as Error & { code?: unknown; syscall?: unknown };
    return {
      code: typeof record.code === "string" ? record.code : "",
      syscall: typeof record.syscall === "string" ? record.syscall : "",
      message: error.message,
    };
  }
  return { code: "", syscall: "", message: String(error) };
}

/** Turns an addon error from open() into a BackendError a user can act on. */
export function describeOpenError(error: unknown, name: string, netns?: string): BackendError {
  const e = asSystemError(error);
  const where = netns === undefined ? "" : ` in network namespace ${netns}`;
  const opts = { cause: error };
  if (e.syscall === "open" && e.message.includes("/dev/net/tun")) {
    if (e.code === "ENOENT" || e.code === "ENODEV" || e.code === "ENXIO") {
      return new BackendError("tun-missing", `/dev/net/tun is missing${where}: load the tun module (modprobe tun), or in a container pass the device (docker run --device /dev/net/tun --cap-add NET_ADMIN)`, opts);
    }
    if (e.code === "EACCES" || e.code === "EPERM") {
      return new BackendError("permission-denied", `cannot open /dev/net/tun (${e.code}): run as root, or make /dev/net/tun readable and writable for your user (it is usually mode 0666) and give node CAP_NET_ADMIN (setcap cap_net_admin+ep "$(command -v node)")`, opts);
    }
  }
  if (e.syscall === "open" && netns !== undefined) {
    return new BackendError("netns-missing", `network namespace ${netns} does not exist (${e.code}): create it with \`ip netns add NAME\``, opts);
  }
  if (e.syscall === "setns") {
    if (e.code === "EPERM") return new BackendError("permission-denied", `entering network namespace ${netns ?? ""} needs CAP_SYS_ADMIN (run as root)`, opts);
    return new BackendError("netns-missing", `${netns ?? "the path"} is not a network namespace (${e.code})`, opts);
  }
  if (e.syscall === "ioctl(TUNSETIFF)") {
    if (e.code === "EPERM" || e.code === "EACCES") {
      return new BackendError("permission-denied", `creating TAP ${name}${where} needs CAP_NET_ADMIN: run as root, or create it beforehand for your user (ip tuntap add dev ${name} mode tap user $USER)`, opts);
    }
    if (e.code === "EBUSY") {
      return new BackendError("device-busy", `TAP ${name}${where} is already attached to another process (or is a multi-queue device): pick another name or stop the other user`, opts);
    }
    if (e.code === "EINVAL") {
      return new BackendError("device-conflict", `an interface named ${name}${where} already exists and is not a plain TAP device (it is another kind, or a TAP made with other flags): pick another name`, opts);
    }
  }
  return new BackendError("io-error", `opening TAP ${name}${where} failed: ${e.message}`, opts);
}

function describeConfigError(error: unknown, what: string, name: string): BackendError {
  const e = asSystemError(error);
  if (e.code === "EPERM" || e.code === "EACCES") {
    return new BackendError("permission-denied", `setting ${what} of ${name} needs CAP_NET_ADMIN (run as root)`, { cause: error });
  }
  return new BackendError("device-config", `setting ${what} of ${name} failed: ${e.message}`, { cause: error });
}

export class TapBackend implements NetBackend {
  readonly name: string;
  /** The kernel's name for the device (differs from the request when it contained %d). */
  readonly ifname: string;
  /** The device's file descriptor (O_NONBLOCK, close-on-exec). Do not read or close it yourself. */
  readonly fd: number;
  readonly capabilities: BackendCapabilities;
  private readonly addon: TapAddon;
  private readonly handle: TapHandle;
  private readonly netns: string | undefined;
  private frameHandler: ((frames: Uint8Array[]) => void) | undefined;
  private readonly closeHandlers: ((error?: Error) => void)[] = [];
  private started = false;
  private closed = false;
  private closeError: Error | undefined;
  private droppedAfterClose = 0;
  private finalCounters: BackendStats | undefined;

  private constructor(addon: TapAddon, handle: TapHandle, ifname: string, fd: number, netns: string | undefined, offload: boolean) {
    this.capabilities = offload ? TAP_OFFLOAD_CAPABILITIES : TAP_CAPABILITIES;
    this.addon = addon;
    this.handle = handle;
    this.ifname = ifname;
    this.fd = fd;
    this.netns = netns;
    this.name = `tap:${ifname}`;
  }

  /** Opens (creating if needed) TAP `name` and configures it. Throws BackendError. */
  static open(name: string, options: TapOptions = {}): TapBackend {
    validateInterfaceName(name);
    if (options.mtu !== undefined && (!Number.isInteger(options.mtu) || options.mtu < 68 || options.mtu > 65535)) {
      throw new BackendError("device-config", `TAP MTU must be an integer 68..65535 (got ${options.mtu})`);
    }
    const mac = options.mac === undefined ? undefined : macBytes(options.mac);
    const netns = options.netns === undefined ? undefined : netnsPath(options.netns);
    const addon = loadTapAddon();
    const { opened, offload } = openTapDevice(addon, name, netns, options);
    const backend = new TapBackend(addon, opened.handle, opened.name, opened.fd, netns, offload);
    try {
      if (options.mtu !== undefined) backend.configure("MTU", () => addon.setMtu(opened.name, options.mtu as number, netns));
      if (mac !== undefined) backend.configure("MAC address", () => addon.setMac(opened.name, mac, netns));
      if (options.up !== false) backend.configure("link state", () => addon.setUp(opened.name, true, netns));
    } catch (error) {
      addon.close(opened.handle);
      throw error;
    }
    return backend;
  }

  private configure(what: string, apply: () => void): void {
    try {
      apply();
    } catch (error) {
      throw describeConfigError(error, what, this.ifname);
    }
  }

  /** Bytes before the Ethernet header of every frame (the virtio-net header with offloads). */
  private get headerBytes(): number {
    return this.capabilities.vnetHeader ? VNET_HDR_LEN : 0;
  }

  send(frames: readonly Uint8Array[]): void {
    if (this.closed) {
      this.droppedAfterClose += frames.length;
      return;
    }
    if (frames.length === 0) return;
    if (frameTrace !== null) for (const frame of frames) frameTrace.mark("tap-write", frame, this.headerBytes);
    this.addon.write(this.handle, frames);
  }

  onFrames(handler: (frames: Uint8Array[]) => void): void {
    this.frameHandler = handler;
    if (this.started || this.closed) return;
    this.started = true;
    this.addon.start(
      this.handle,
      (frames) => {
        if (frameTrace !== null) for (const frame of frames) frameTrace.mark("tap-read", frame, this.headerBytes);
        this.frameHandler?.(frames);
      },
      (code, message) => {
        const hint = code === "EBADFD" || code === "EBADF" ? " (the device was deleted)" : "";
        void this.shutdown(new BackendError("device-error", `${message}${hint}`));
      },
    );
  }

  onClose(handler: (error?: Error) => void): void {
    if (this.closed) {
      queueMicrotask(() => handler(this.closeError));
      return;
    }
    this.closeHandlers.push(handler);
  }

  close(): Promise<void> {
    return this.shutdown(undefined);
  }

  private shutdown(error: Error | undefined): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.finalCounters = this.readCounters();
    this.closed = true;
    this.closeError = error;
    this.frameHandler = undefined;
    this.addon.close(this.handle);
    for (const handler of this.closeHandlers.splice(0)) handler(error);
    return Promise.resolve();
  }

  private readCounters(): BackendStats {
    const c = this.addon.stats(this.handle);
    return {
      rxFrames: c.rxFrames, rxBytes: c.rxBytes, rxBatches: c.rxBatches, rxErrors: c.rxErrors,
      txFrames: c.txFrames, txBytes: c.txBytes, txDropped: c.txDropped, txErrors: c.txErrors,
    };
  }

  stats(): BackendStats {
    const counters = this.finalCounters ?? this.readCounters();
    return { ...counters, txDropped: counters.txDropped + this.droppedAfterClose };
  }

  /** errno of the last failed read or write (0 if none), for diagnostics. */
  lastErrno(): number {
    return this.closed ? 0 : this.addon.stats(this.handle).lastErrno;
  }

  /** MTU, MAC, link state and index as the kernel sees them now. */
  info(): InterfaceInfo {
    return this.addon.getInfo(this.ifname, this.netns);
  }
}

/**
 * Opens the device: with offloads when asked (`true`: or fail), when possible (`"auto"`: a kernel or an
 * existing device that refuses IFF_VNET_HDR or the offloads gets a plain TAP instead), or plain.
 */
export function openTapDevice(addon: TapAddon, name: string, netns: string | undefined, options: TapOptions): { opened: ReturnType<TapAddon["open"]>; offload: boolean } {
  const wanted = options.offload ?? false;
  if (wanted !== false) {
    try {
      return { opened: addon.open(name, netns, true), offload: true };
    } catch (error) {
      if (wanted === true || !refusedOffload(error)) throw describeOpenError(error, name, options.netns);
    }
  }
  try {
    return { opened: addon.open(name, netns, false), offload: false };
  } catch (error) {
    throw describeOpenError(error, name, options.netns);
  }
}

/** Whether an open() failed for the virtio-net header or the offloads rather than for the device itself. */
function refusedOffload(error: unknown): boolean {
  const e = asSystemError(error);
  return e.syscall === "ioctl(TUNSETVNETHDRSZ)" || e.syscall === "ioctl(TUNSETOFFLOAD)" || (e.syscall === "ioctl(TUNSETIFF)" && e.code === "EINVAL");
}

/** The registry's opener for "tap:NAME". */
export async function openTap(name: string, options: TapOptions = {}): Promise<TapBackend> {
  return TapBackend.open(name, options);
}
