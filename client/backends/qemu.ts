/**
 * qemu:HOST:PORT | qemu:[V6]:PORT | qemu:/path.sock — a server for QEMU's
 * stream network backends. QEMU connects to us:
 *
 *   -netdev stream,id=n0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port=5555   (QEMU 7.2+)
 *   -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/run/vm.sock              (QEMU 7.2+)
 *   -netdev socket,id=n0,connect=127.0.0.1:5555                                         (older QEMU, TCP only)
 *
 * All carry each Ethernet frame as a 4-byte big-endian length + the frame.
 * Every connection is its own NetBackend (one port on the segment). A
 * connection that sends a zero or oversize length is closed with a
 * FramingError and counted; other connections are not affected.
 */
import { randomBytes } from "node:crypto";
import { lstatSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { BackendError, type BackendServer, type NetBackend, type ServeBackendOptions } from "../backend.ts";
import { formatMac, isMulticastMac, parseMac, type MacKey } from "../../datapath/mac.ts";
import { FramedStreamBackend } from "./framing.ts";

export type QemuAddress =
  | { readonly type: "inet"; readonly host: string; readonly port: number }
  | { readonly type: "unix"; readonly path: string };

/** Parses "HOST:PORT", "[V6]:PORT" or a unix socket path (anything containing "/"). Throws "bad-spec". */
export function parseQemuAddress(text: string): QemuAddress {
  if (text.includes("/")) return { type: "unix", path: text };
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port > 65535) {
    throw new BackendError("bad-spec", `QEMU listen address "${text}" is not HOST:PORT, [IPv6]:PORT or a unix socket path containing "/" (e.g. qemu:127.0.0.1:5555, qemu:/run/edgelan/vm.sock)`);
  }
  return { type: "inet", host: match[1] ?? match[2] ?? "", port };
}

/** "127.0.0.1:5555", "[::1]:5555" or the path. */
export function formatQemuAddress(address: QemuAddress): string {
  if (address.type === "unix") return address.path;
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

export interface QemuNetdevOptions {
  /** The netdev id (default "n0"). */
  id?: string;
  /** The guest NIC's MAC; a random locally administered one when absent. Give every VM its own. */
  mac?: string | MacKey;
  /** The NIC model (default "virtio-net-pci"). */
  device?: string;
  /** Emit the older `-netdev socket,connect=` form (TCP only; QEMU before 7.2). */
  legacySocket?: boolean;
}

function randomGuestMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = ((bytes[0] ?? 0) & 0xfc) | 0x02; // locally administered, unicast
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

function guestMac(mac: string | MacKey | undefined): string {
  if (mac === undefined) return randomGuestMac();
  const key = typeof mac === "string" ? parseMac(mac) : { ok: true as const, value: mac };
  if (!key.ok) throw new BackendError("bad-spec", key.error.message);
  if (isMulticastMac(key.value)) throw new BackendError("bad-spec", `a guest NIC needs a unicast MAC (got ${formatMac(key.value)})`);
  return formatMac(key.value);
}

/** QEMU's option syntax escapes a comma inside a value by doubling it. */
function qemuValue(text: string): string {
  return text.replaceAll(",", ",,");
}

/** The QEMU arguments (argv form) that connect a VM's NIC to a server listening on `address`. */
export function qemuNetdevArgs(address: string | QemuAddress, options: QemuNetdevOptions = {}): string[] {
  const parsed = typeof address === "string" ? parseQemuAddress(address) : address;
  const id = options.id ?? "n0";
  if (!/^[A-Za-z][A-Za-z0-9_.-]*$/.test(id)) throw new BackendError("bad-spec", `QEMU netdev id "${id}" must start with a letter`);
  let netdev: string;
  if (options.legacySocket === true) {
    if (parsed.type !== "inet") throw new BackendError("bad-spec", "-netdev socket,connect= only speaks TCP: use -netdev stream (QEMU 7.2+) for a unix socket");
    netdev = `socket,id=${id},connect=${formatQemuAddress(parsed)}`;
  } else if (parsed.type === "inet") {
    netdev = `stream,id=${id},server=off,addr.type=inet,addr.host=${parsed.host},addr.port=${parsed.port}`;
  } else {
    netdev = `stream,id=${id},server=off,addr.type=unix,addr.path=${qemuValue(parsed.path)}`;
  }
  const device = `${options.device ?? "virtio-net-pci"},netdev=${id},mac=${guestMac(options.mac)}`;
  return ["-netdev", netdev, "-device", device];
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./[\]-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

/** The same as one shell-ready string, e.g. `-netdev stream,id=n0,server=off,addr.type=inet,… -device virtio-net-pci,netdev=n0,mac=…`. */
export function qemuNetdevArgument(address: string | QemuAddress, options: QemuNetdevOptions = {}): string {
  return qemuNetdevArgs(address, options).map(shellQuote).join(" ");
}

export interface QemuServerStats {
  /** Connections accepted since the start. */
  accepted: number;
  /** Ports open now. */
  open: number;
  /** Connections closed because they sent a bad length prefix. */
  framingErrors: number;
  /** Connections turned away because nobody took them (no onConnection handler and the wait queue was full). */
  refused: number;
}

/** Connections that may wait for an onConnection handler; more are turned away (and counted). */
const MAX_WAITING = 64;

export class QemuServer implements BackendServer {
  readonly name: string;
  private readonly server: Server;
  private readonly listenAddress: QemuAddress;
  private readonly options: ServeBackendOptions;
  private connectionHandler: ((port: NetBackend) => void) | undefined;
  private readonly waiting: NetBackend[] = [];
  private readonly ports = new Set<NetBackend>();
  private readonly counters: QemuServerStats = { accepted: 0, open: 0, framingErrors: 0, refused: 0 };
  private closing: Promise<void> | undefined;

  private constructor(server: Server, address: QemuAddress, options: ServeBackendOptions) {
    this.server = server;
    this.listenAddress = address;
    this.options = options;
    this.name = `qemu:${formatQemuAddress(address)}`;
    server.on("connection", (socket) => this.accept(socket));
  }

  /** Listens on `address` ("HOST:PORT", "[V6]:PORT", or a path); port 0 picks a free one. Throws BackendError. */
  static async listen(address: string, options: ServeBackendOptions = {}): Promise<QemuServer> {
    const parsed = parseQemuAddress(address);
    const server = createServer({ noDelay: true, pauseOnConnect: true });
    try {
      await listenOnce(server, parsed);
    } catch (error) {
      if (parsed.type === "unix" && codeOf(error) === "EADDRINUSE" && await isStaleSocket(parsed.path)) {
        unlinkSync(parsed.path); // left behind by a process that died; nobody is listening
        await listenOnce(server, parsed).catch((again: unknown) => {
          throw listenError(again, parsed);
        });
      } else {
        throw listenError(error, parsed);
      }
    }
    const bound = server.address();
    const actual: QemuAddress = parsed.type === "inet" && bound !== null && typeof bound === "object"
      ? { type: "inet", host: parsed.host, port: bound.port }
      : parsed;
    return new QemuServer(server, actual, options);
  }

  address(): string {
    return formatQemuAddress(this.listenAddress);
  }

  /** The bound address, parsed. */
  addressInfo(): QemuAddress {
    return this.listenAddress;
  }

  /** The QEMU arguments for this server (see qemuNetdevArgument). */
  qemuArgument(options: QemuNetdevOptions = {}): string {
    return qemuNetdevArgument(this.listenAddress, options);
  }

  onConnection(handler: (port: NetBackend) => void): void {
    this.connectionHandler = handler;
    for (const port of this.waiting.splice(0)) handler(port);
  }

  stats(): QemuServerStats {
    return { ...this.counters, open: this.ports.size };
  }

  /** Ports open now. */
  openPorts(): NetBackend[] {
    return [...this.ports];
  }

  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    const stopped = new Promise<void>((resolve) => {
      if (!this.server.listening) resolve();
      else this.server.close(() => resolve());
    });
    this.waiting.length = 0;
    this.closing = Promise.all([...this.ports].map((port) => port.close())).then(() => stopped);
    return this.closing;
  }

  private accept(socket: Socket): void {
    if (this.closing !== undefined) {
      socket.destroy();
      return;
    }
    this.counters.accepted++;
    const name = `${this.name}#${this.counters.accepted}`;
    const port: FramedStreamBackend = new FramedStreamBackend(name, socket, socket, {
      headerBytes: 4,
      maxFrameSize: this.options.maxFrameSize,
      maxQueuedBytes: this.options.maxQueuedBytes,
      onFinished: () => this.ports.delete(port),
    });
    port.onClose((error) => {
      if (error instanceof BackendError && error.code === "framing-error") this.counters.framingErrors++;
    });
    this.ports.add(port);
    // The socket stays paused (pauseOnConnect) until the port gets a frame handler.
    if (this.connectionHandler !== undefined) {
      this.connectionHandler(port);
    } else if (this.waiting.length < MAX_WAITING) {
      this.waiting.push(port);
    } else {
      this.counters.refused++;
      void port.close();
    }
  }
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function listenOnce(server: Server, address: QemuAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      server.off("listening", onListening);
      reject(error);
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    if (address.type === "unix") server.listen(address.path);
    else server.listen(address.port, address.host);
  });
}

/** A unix socket file nobody accepts on (connect is refused). */
async function isStaleSocket(path: string): Promise<boolean> {
  try {
    if (!lstatSync(path).isSocket()) return false;
  } catch {
    return false;
  }
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(false);
    });
    probe.once("error", (error) => resolve(codeOf(error) === "ECONNREFUSED"));
  });
}

function listenError(error: unknown, address: QemuAddress): BackendError {
  const where = formatQemuAddress(address);
  const code = codeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code === "EADDRINUSE") {
    return new BackendError("address-in-use", `${where} is already in use: pick another ${address.type === "unix" ? "path" : "port"} or stop the other listener`, { cause: error });
  }
  if (code === "EACCES" || code === "EPERM") {
    return new BackendError("permission-denied", `not allowed to listen on ${where} (${code})${address.type === "inet" && address.port < 1024 ? ": ports below 1024 need root" : ""}`, { cause: error });
  }
  if (code === "ENOENT") {
    return new BackendError("io-error", `cannot create ${where}: its directory does not exist`, { cause: error });
  }
  return new BackendError("io-error", `cannot listen on ${where}: ${message}`, { cause: error });
}

/** The registry's server for "qemu:ADDRESS". */
export async function serveQemu(address: string, options: ServeBackendOptions = {}): Promise<QemuServer> {
  return QemuServer.listen(address, options);
}
