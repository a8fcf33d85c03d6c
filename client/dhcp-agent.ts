/**
 * `edgelan join --dhcp`: runs a DhcpClient on a joined session's frame path (frames the segment
 * delivers to the TAP's port are also shown to the client; its DHCP messages are sent on the
 * session from the TAP's MAC) and applies each lease to the TAP with iproute2, inside the
 * agent's network namespace: the address with the lease's lifetime (so the kernel drops it if
 * the agent dies), and with `defaultRoute` the first router as default route. /etc/resolv.conf
 * is not touched: the lease's DNS servers and domain are logged.
 */
import { execFile } from "node:child_process";
import { formatIpv4 } from "../datapath/inet.ts";
import { segmentWithHeader, withZeroVnetHeader } from "../datapath/offload.ts";
import type { MacKey } from "../datapath/mac.ts";
import { DhcpClient, type DhcpClientEvent, type DhcpLease } from "./dhcp-client.ts";
import type { Session } from "./session.ts";

/** Longest wait on exit for the RELEASE's completion before the session closes. */
const RELEASE_WAIT_MS = 1000;

export interface DhcpAgentOptions {
  session: Session;
  mac: MacKey;
  /** The TAP's name as the kernel knows it. */
  ifname: string;
  /** `ip netns` name or path of the namespace the TAP lives in; the current one if absent. */
  netns?: string;
  /** Install the lease's first router as default route. */
  defaultRoute: boolean;
  hostname?: string;
  /** The session carries a 10-byte virtio-net header before every frame (a TAP with offloads). */
  vnetHeader?: boolean;
  log: (line: string) => void;
  /** Runs `ip` with these arguments; iproute2 in the namespace unless given (tests). */
  ip?: (args: string[]) => Promise<void>;
}

export interface DhcpAgent {
  readonly lease: DhcpLease | null;
  /** Releases the lease, waits for the RELEASE to complete (≤ 1 s) and removes the address; close the session after. */
  close(): Promise<void>;
}

/** Starts the client once the session is open (at once if it already is). */
export function startDhcpAgent(options: DhcpAgentOptions): DhcpAgent {
  const ip = options.ip ?? ((args: string[]) => runIp(options.netns, args));
  let timer: ReturnType<typeof setTimeout> | undefined;
  let applying: Promise<void> = Promise.resolve();
  const schedule = (deadline: number | undefined): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = deadline === undefined ? undefined : setTimeout(() => schedule(client.tick(Date.now())), Math.max(0, deadline - Date.now()));
  };
  const onEvent = (event: DhcpClientEvent): void => {
    // Serialised, so a quick renew after a bind never runs `ip` out of order.
    applying = applying.then(() => applyEvent(event, options, ip)).catch((error: unknown) => options.log(`edgelan: dhcp: ${String((error as Error).message ?? error)}`));
  };
  let afterSend: (() => void) | undefined;
  // With offloads every frame on the session starts with a virtio-net header: a zero one on what the
  // client sends (no offload requested); received frames may ask for a checksum to be completed (a
  // peer's TAP left it partial), which segmentWithHeader does, before the client reads them.
  const withHeader = options.vnetHeader === true;
  const outgoing = (frame: Uint8Array): Uint8Array => (withHeader ? withZeroVnetHeader(frame) : frame);
  const incoming = (frame: Uint8Array): Uint8Array[] => {
    if (!withHeader) return [frame];
    const plain = segmentWithHeader(frame);
    return plain.ok ? plain.value : [];
  };
  const client = new DhcpClient({
    mac: options.mac, send: (frame) => options.session.send([outgoing(frame)], () => afterSend?.()), onEvent,
    ...(options.hostname === undefined ? {} : { hostname: options.hostname }),
  });
  options.session.on("frames", (frames) => {
    for (const frame of frames) for (const plain of incoming(frame)) schedule(client.receive(plain, Date.now()));
  });
  let started = false;
  const start = (): void => {
    if (started) return;
    started = true;
    schedule(client.start(Date.now()));
  };
  if (options.session.isOpen) start();
  else options.session.on("open", start);
  return {
    get lease() {
      return client.currentLease;
    },
    async close() {
      schedule(undefined);
      // The RELEASE must reach the segment before the session says BYE: wait for its completion (at most a second).
      const completed = new Promise<void>((resolve) => {
        afterSend = resolve;
        setTimeout(resolve, RELEASE_WAIT_MS).unref();
      });
      const held = client.currentLease !== null;
      client.release();
      if (held) await completed;
      await applying;
    },
  };
}

async function applyEvent(event: DhcpClientEvent, options: DhcpAgentOptions, ip: (args: string[]) => Promise<void>): Promise<void> {
  const { lease } = event;
  const cidr = `${formatIpv4(lease.address)}/${lease.prefixLength}`;
  if (event.kind === "lost") {
    options.log(`edgelan: dhcp: ${event.reason === "released" ? "released" : `lost (${event.reason})`} ${cidr}`);
    await ip(["addr", "del", cidr, "dev", options.ifname]).catch(() => undefined);
    return;
  }
  const previous = event.previous;
  if (previous !== null && previous.address !== lease.address) {
    await ip(["addr", "del", `${formatIpv4(previous.address)}/${previous.prefixLength}`, "dev", options.ifname]).catch(() => undefined);
  }
  const lifetime = String(lease.leaseSeconds);
  await ip(["addr", "replace", cidr, "dev", options.ifname, "valid_lft", lifetime, "preferred_lft", lifetime]);
  const router = lease.routers[0];
  if (options.defaultRoute && router !== undefined) await ip(["route", "replace", "default", "via", formatIpv4(router), "dev", options.ifname]);
  if (previous?.address === lease.address) return; // a renewal: nothing new to say
  const details = [
    `from ${formatIpv4(lease.server)}`, `for ${lease.leaseSeconds} s`,
    router === undefined ? "no router" : `router ${formatIpv4(router)}${options.defaultRoute ? " (default route)" : ""}`,
    lease.dnsServers.length === 0 ? "no DNS" : `DNS ${lease.dnsServers.map(formatIpv4).join(" ")}`,
    ...(lease.domain === null ? [] : [`domain ${lease.domain}`]),
  ];
  options.log(`edgelan: dhcp: ${cidr} on ${options.ifname} ${details.join(", ")}`);
}

/** Runs iproute2 in `netns` (`ip -n NAME`, or nsenter for a path); rejects with its stderr. */
function runIp(netns: string | undefined, args: string[]): Promise<void> {
  const [command, prefix] = netns === undefined ? ["ip", []] : netns.startsWith("/") ? ["nsenter", [`--net=${netns}`, "ip"]] : ["ip", ["-n", netns]];
  return new Promise((resolve, reject) => {
    execFile(command, [...prefix, ...args], { timeout: 10_000 }, (error, _stdout, stderr) => {
      if (error === null) resolve();
      else reject(new Error(`ip ${args.join(" ")}: ${stderr.trim() || error.message}`));
    });
  });
}
