/**
 * Guest-side backends: one small interface, several implementations chosen by
 * name (the bhyve `net_backends.c` idea). A backend is one attachment point —
 * one port on a segment. Multi-port backends (qemu) are servers that hand out
 * one backend per guest connection.
 *
 *   openBackend("tap:edge0", { mtu: 1500 })     Linux TAP device through our N-API addon
 *   openBackend("stdio")                         VDE stream cable on stdin/stdout (2-byte lengths)
 *   serveBackend("qemu:127.0.0.1:5555")          QEMU `-netdev stream` / `-netdev socket,connect=` (4-byte lengths)
 *   serveBackend("qemu:/run/edgelan/vm.sock")    the same over a unix socket
 *
 * Implementations load lazily, so opening a stdio cable never loads the native addon.
 */
import type { Readable, Writable } from "node:stream";
import type { MacKey } from "../datapath/mac.ts";

export interface BackendCapabilities {
  /** Largest frame (Ethernet header included, no FCS) the backend carries in either direction. */
  maxFrameSize: number;
  /** True for servers that hand out one port per guest connection. */
  multiPort: boolean;
  /** True when frames in both directions start with a 10-byte virtio-net header (datapath/offload.ts). */
  vnetHeader: boolean;
}

/** Counters every backend keeps. `tx` is towards the guest, `rx` is from the guest. */
export interface BackendStats {
  rxFrames: number;
  rxBytes: number;
  /** How many onFrames calls delivered those frames. */
  rxBatches: number;
  /** Read failures and framing errors. */
  rxErrors: number;
  txFrames: number;
  txBytes: number;
  /** Frames not written: the guest side was full (EAGAIN / too much queued), the frame was empty or too large, or the backend was closed. */
  txDropped: number;
  /** Writes the operating system refused for another reason. */
  txErrors: number;
}

/** One attachment point = one port on a segment. */
export interface NetBackend {
  /** "tap:edge0", "qemu:127.0.0.1:5555#3", "stdio". */
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  /**
   * Writes a batch towards the guest. Never blocks and never throws for a full
   * guest queue: frames that cannot be written are dropped and counted in
   * `stats().txDropped`. Frames are not retained after the call returns.
   */
  send(frames: readonly Uint8Array[]): void;
  /**
   * Sets the receive handler. Reading starts when the first handler is set
   * (until then the guest's frames wait in the kernel / socket buffers); a later
   * call replaces the handler. Each call delivers everything that was readable
   * in one event-loop turn — never delayed by a timer. The frames may be views
   * into one shared buffer: copy what you keep past the call if you need to.
   */
  onFrames(handler: (frames: Uint8Array[]) => void): void;
  /**
   * Called once when the backend closes: without an error after close() or a
   * clean end of stream, with an error when the device or connection failed.
   * A handler added after the backend closed is called on the next microtask.
   */
  onClose(handler: (error?: Error) => void): void;
  /** Stops reading, releases the device or connection. Idempotent. */
  close(): Promise<void>;
  /** Counters; every built-in backend has them. */
  stats?(): BackendStats;
}

/** A multi-port backend (qemu): each guest connection is its own NetBackend. */
export interface BackendServer {
  /** "qemu:127.0.0.1:5555". */
  readonly name: string;
  /** Sets the handler for new ports. Connections that arrive before a handler is set wait for it. */
  onConnection(handler: (port: NetBackend) => void): void;
  /** The bound address: "127.0.0.1:5555" (the real port when 0 was asked for) or a unix socket path. */
  address(): string;
  /** Stops listening and closes every port it handed out. */
  close(): Promise<void>;
}

export type BackendErrorCode =
  /** The spec names no known backend or is malformed. */
  | "bad-spec"
  /** The interface name is empty, too long (IFNAMSIZ: at most 15 bytes) or has forbidden characters. */
  | "bad-name"
  /** /dev/net/tun does not exist (tun module not loaded, or a container without the device). */
  | "tun-missing"
  /** Opening or configuring the device needs CAP_NET_ADMIN (root). */
  | "permission-denied"
  /** The TAP device is already attached to another process. */
  | "device-busy"
  /** An interface with that name exists and is not a TAP device. */
  | "device-conflict"
  /** The network namespace to open the device in does not exist. */
  | "netns-missing"
  /** The native TAP addon is not built. */
  | "addon-not-built"
  /** Setting MTU, MAC or link state failed. */
  | "device-config"
  /** The device went away or a read failed. */
  | "device-error"
  /** A stream peer sent a zero or oversize length prefix. */
  | "framing-error"
  /** The listen address is in use. */
  | "address-in-use"
  /** Another I/O failure. */
  | "io-error";

/** An error a user can act on: `code` to switch on, `message` saying what to do. */
export class BackendError extends Error {
  override readonly name = "BackendError";
  readonly code: BackendErrorCode;

  constructor(code: BackendErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** True when `error` is a BackendError (with the given code, if one is given). */
export function isBackendError(error: unknown, code?: BackendErrorCode): error is BackendError {
  return error instanceof BackendError && (code === undefined || error.code === code);
}

export interface TapOptions {
  /** Interface MTU to set (68..65535). Left as the kernel's default (1500) when absent. */
  mtu?: number;
  /** Interface MAC (the host side of the TAP) as "aa:bb:cc:dd:ee:ff" or a MacKey. Random when absent. */
  mac?: string | MacKey;
  /** Bring the link up (default true). */
  up?: boolean;
  /**
   * Create and configure the device inside this network namespace: a name from
   * `ip netns` (/run/netns/NAME) or an absolute path such as /proc/PID/ns/net.
   * Without it the device lives in the process's own namespace (so
   * `ip netns exec NS edgelan …` also works).
   */
  netns?: string;
  /**
   * Open with IFF_VNET_HDR and the CSUM/TSO4/TSO6 offloads: the kernel hands over
   * (and accepts) GSO super-frames and partial checksums, every frame carrying a
   * 10-byte virtio-net header (capabilities.vnetHeader). Default false. `"auto"` (what `edgelan join`
   * uses unless told `--no-offload`) asks for them and falls back to a plain TAP when the kernel or an
   * existing device refuses IFF_VNET_HDR or the offloads; capabilities.vnetHeader says which it got.
   */
  offload?: boolean | "auto";
}

export interface StdioOptions {
  /** Defaults to process.stdin. */
  input?: Readable;
  /** Defaults to process.stdout. Nothing else may write to it. */
  output?: Writable;
}

export interface StreamOptions {
  /** Longest frame accepted from the peer; a longer length prefix closes the connection. Default 65535. */
  maxFrameSize?: number;
  /** Bytes allowed to wait in the socket's write buffer before further batches are dropped. Default 4 MiB. */
  maxQueuedBytes?: number;
}

export type OpenBackendOptions = TapOptions & StdioOptions & StreamOptions;
export type ServeBackendOptions = StreamOptions;

type Opener = (rest: string, options: OpenBackendOptions) => Promise<NetBackend>;
type Server = (rest: string, options: ServeBackendOptions) => Promise<BackendServer>;

const openers = new Map<string, Opener>([
  ["tap", async (rest, options) => (await import("./backends/tap.ts")).openTap(rest, options)],
  ["stdio", async (rest, options) => {
    if (rest !== "") throw new BackendError("bad-spec", `stdio takes no argument (got "stdio:${rest}")`);
    return (await import("./backends/stdio.ts")).openStdio(options);
  }],
]);

const servers = new Map<string, Server>([
  ["qemu", async (rest, options) => (await import("./backends/qemu.ts")).serveQemu(rest, options)],
]);

/** Adds or replaces a single-port backend kind (tests, embedders). */
export function registerBackend(kind: string, open: Opener): void {
  openers.set(kind, open);
}

/** Adds or replaces a multi-port backend kind. */
export function registerBackendServer(kind: string, serve: Server): void {
  servers.set(kind, serve);
}

/** The kinds openBackend and serveBackend know. */
export function backendKinds(): { single: string[]; multi: string[] } {
  return { single: [...openers.keys()], multi: [...servers.keys()] };
}

function splitSpec(spec: string): { kind: string; rest: string } {
  const colon = spec.indexOf(":");
  return colon < 0 ? { kind: spec, rest: "" } : { kind: spec.slice(0, colon), rest: spec.slice(colon + 1) };
}

function describeKinds(): string {
  const { single, multi } = backendKinds();
  return `single-port: ${single.map((k) => (k === "tap" ? "tap:NAME" : k)).join(", ")}; multi-port (serveBackend): ${multi.map((k) => `${k}:ADDRESS`).join(", ")}`;
}

/** Opens a single-port backend by spec: "tap:NAME" or "stdio". */
export async function openBackend(spec: string, options: OpenBackendOptions = {}): Promise<NetBackend> {
  const { kind, rest } = splitSpec(spec);
  const open = openers.get(kind);
  if (open !== undefined) return open(rest, options);
  if (servers.has(kind)) {
    throw new BackendError("bad-spec", `"${spec}" is a multi-port backend: use serveBackend("${spec}") and take each guest connection as a port`);
  }
  throw new BackendError("bad-spec", `unknown backend "${spec}" (${describeKinds()})`);
}

/** Starts a multi-port backend by spec: "qemu:HOST:PORT", "qemu:[V6]:PORT" or "qemu:/path.sock". */
export async function serveBackend(spec: string, options: ServeBackendOptions = {}): Promise<BackendServer> {
  const { kind, rest } = splitSpec(spec);
  const serve = servers.get(kind);
  if (serve !== undefined) return serve(rest, options);
  if (openers.has(kind)) {
    throw new BackendError("bad-spec", `"${spec}" is a single-port backend: use openBackend("${spec}")`);
  }
  throw new BackendError("bad-spec", `unknown backend "${spec}" (${describeKinds()})`);
}
