import { formatIpv4, parseIpv4, type Ipv4Address } from "../inet.ts";
import { formatMac, isUsableUnicastMac, parseMac, type MacKey } from "../mac.ts";
import { fail, ok, type Result } from "../result.ts";

/*
 * The `dhcp` key of a segment's configuration: what the IPAM service (DHCP server, ARP proxy,
 * DNS names) serves. `checkDhcpConfig` validates what a user PUTs and fills in defaults, so the
 * stored and shown configuration is explicit; `ipamSettings` turns it into numbers for the
 * service. Every refusal names the field and the conflict (docs/ipam.md lists them).
 */

/** A fixed address (and optional DNS name) for one MAC. */
export interface DhcpReservation {
  mac: string;
  ip: string;
  hostname?: string;
}

/** The `dhcp` configuration as stored and shown (defaults filled in). */
export interface DhcpConfig {
  /** The segment's IPv4 subnet, "10.44.0.0/24"; prefix 8..30, host bits zero. */
  subnet: string;
  /** First and last address handed out dynamically (inclusive): exactly two entries (checkDhcpConfig). A plain array, not a tuple, because RPC answers type tuples as arrays. */
  range: string[];
  /** The default gateway offered (option 3), or null for none. */
  router: string | null;
  /** The service's own address: DHCP server identifier, DNS server, ARP replies. */
  server: string;
  /** Whether the service answers DNS for `<hostname>.<domain>` and offers itself as DNS server (option 6). */
  dns: boolean;
  /** Domain of the names (option 15). */
  domain: string;
  /** Lease length offered (option 51); renewal at 1/2, rebinding at 7/8 (options 58, 59). */
  leaseSeconds: number;
  reservations: DhcpReservation[];
  /** Whether the service answers ARP requests for leased and reserved addresses on their owners' behalf. */
  arpProxy: boolean;
}

/** The configuration in numbers, for the service. */
export interface IpamSettings {
  network: Ipv4Address;
  prefixLength: number;
  mask: Ipv4Address;
  broadcast: Ipv4Address;
  rangeStart: Ipv4Address;
  rangeEnd: Ipv4Address;
  router: Ipv4Address | null;
  server: Ipv4Address;
  dns: boolean;
  domain: string;
  leaseSeconds: number;
  reservations: ReadonlyArray<{ mac: MacKey; ip: Ipv4Address; hostname: string | null }>;
  arpProxy: boolean;
}

/** Most addresses in the dynamic range: the lease table (and its stored form, ~240 KB at worst) stays bounded. */
export const MAX_POOL_SIZE = 1024;
export const MAX_RESERVATIONS = 256;
export const LEASE_SECONDS_RANGE = { min: 10, max: 7 * 86400 } as const;
export const PREFIX_LENGTH_RANGE = { min: 8, max: 30 } as const;
export const DEFAULT_LEASE_SECONDS = 3600;
export const DEFAULT_DOMAIN = "lan";
/** Longest domain: leaves room for a 63-byte host label inside DNS's 255-byte names. */
const MAX_DOMAIN_LEN = 180;
const KNOWN_FIELDS = ["subnet", "range", "router", "server", "dns", "domain", "leaseSeconds", "reservations", "arpProxy"];

type Checked<T> = Result<T, "invalid-dhcp-config">;

function refuse(message: string): { readonly ok: false; readonly error: { code: "invalid-dhcp-config"; message: string } } {
  return fail("invalid-dhcp-config", `dhcp: ${message}`);
}

/**
 * Validates a `dhcp` value from a configuration patch and fills in defaults: only `subnet` is
 * required. Returns the complete configuration or the first problem found.
 */
export function checkDhcpConfig(value: unknown): Checked<DhcpConfig> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return refuse('must be an object such as {"subnet": "10.44.0.0/24"}, or null to turn the service off');
  }
  const fields = value as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((key) => !KNOWN_FIELDS.includes(key));
  if (unknown.length > 0) return refuse(`unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(", ")}; known fields: ${KNOWN_FIELDS.join(", ")}`);
  const subnet = checkSubnet(fields.subnet);
  if (!subnet.ok) return subnet;
  const { network, prefixLength } = subnet.value;
  const net = subnetBounds(network, prefixLength);
  const inside = (field: string, text: unknown): Checked<Ipv4Address> => checkHostAddress(field, text, net, fields.subnet as string);

  const server = fields.server === undefined ? ok(net.broadcast - 1) : inside("server", fields.server);
  if (!server.ok) return server;
  const router = fields.router === undefined || fields.router === null ? ok(null) : inside("router", fields.router);
  if (!router.ok) return router;
  if (router.value !== null && router.value === server.value) return refuse(`router and server are both ${formatIpv4(server.value)}; the service needs an address of its own`);
  const range = checkRange(fields.range, net, inside);
  if (!range.ok) return range;
  const [start, end] = range.value;
  for (const [name, address] of [["server", server.value], ["router", router.value]] as const) {
    if (address !== null && address >= start && address <= end) {
      return refuse(`range ${formatIpv4(start)}..${formatIpv4(end)} overlaps the ${name} address ${formatIpv4(address)}`);
    }
  }
  const dns = checkBoolean("dns", fields.dns, true);
  if (!dns.ok) return dns;
  const arpProxy = checkBoolean("arpProxy", fields.arpProxy, true);
  if (!arpProxy.ok) return arpProxy;
  const domain = checkDomain(fields.domain);
  if (!domain.ok) return domain;
  const lease = fields.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
  if (typeof lease !== "number" || !Number.isInteger(lease) || lease < LEASE_SECONDS_RANGE.min || lease > LEASE_SECONDS_RANGE.max) {
    return refuse(`leaseSeconds must be an integer in ${LEASE_SECONDS_RANGE.min}..${LEASE_SECONDS_RANGE.max}; got ${JSON.stringify(lease)}`);
  }
  const reservations = checkReservations(fields.reservations, inside, server.value, router.value);
  if (!reservations.ok) return reservations;
  return ok({
    subnet: `${formatIpv4(network)}/${prefixLength}`,
    range: [formatIpv4(start), formatIpv4(end)],
    router: router.value === null ? null : formatIpv4(router.value),
    server: formatIpv4(server.value),
    dns: dns.value,
    domain: domain.value,
    leaseSeconds: lease,
    reservations: reservations.value,
    arpProxy: arpProxy.value,
  });
}

/** The numbers of a configuration that `checkDhcpConfig` accepted. */
export function ipamSettings(config: DhcpConfig): IpamSettings {
  const [networkText, prefixText] = config.subnet.split("/") as [string, string];
  const network = mustParse(networkText);
  const prefixLength = Number(prefixText);
  const net = subnetBounds(network, prefixLength);
  return {
    network, prefixLength, mask: net.mask, broadcast: net.broadcast,
    rangeStart: mustParse(config.range[0] ?? ""), rangeEnd: mustParse(config.range[1] ?? ""),
    router: config.router === null ? null : mustParse(config.router),
    server: mustParse(config.server),
    dns: config.dns, domain: config.domain, leaseSeconds: config.leaseSeconds, arpProxy: config.arpProxy,
    reservations: config.reservations.map((r) => {
      const mac = parseMac(r.mac);
      return { mac: mac.ok ? mac.value : 0, ip: mustParse(r.ip), hostname: r.hostname ?? null };
    }),
  };
}

function mustParse(text: string): Ipv4Address {
  const parsed = parseIpv4(text);
  return parsed.ok ? parsed.value : 0;
}

interface SubnetBounds {
  network: Ipv4Address;
  mask: Ipv4Address;
  broadcast: Ipv4Address;
}

function subnetBounds(network: Ipv4Address, prefixLength: number): SubnetBounds {
  const size = 2 ** (32 - prefixLength);
  return { network, mask: (0xffffffff - (size - 1)) >>> 0, broadcast: network + size - 1 };
}

function checkSubnet(value: unknown): Checked<{ network: Ipv4Address; prefixLength: number }> {
  const example = 'like "10.44.0.0/24"';
  if (typeof value !== "string") return refuse(`subnet is required: an IPv4 network ${example}; got ${JSON.stringify(value) ?? "nothing"}`);
  const [addressText, prefixText, extra] = value.split("/");
  const address = parseIpv4(addressText ?? "");
  const prefixLength = Number(prefixText);
  if (!address.ok || extra !== undefined || prefixText === undefined || !/^\d{1,2}$/.test(prefixText)) {
    return refuse(`subnet ${JSON.stringify(value)} is not an IPv4 network ${example}`);
  }
  if (prefixLength < PREFIX_LENGTH_RANGE.min || prefixLength > PREFIX_LENGTH_RANGE.max) {
    return refuse(`subnet prefix /${prefixLength} must be /${PREFIX_LENGTH_RANGE.min} to /${PREFIX_LENGTH_RANGE.max}`);
  }
  const { mask } = subnetBounds(0, prefixLength);
  const network = (address.value & mask) >>> 0;
  if (network !== address.value) return refuse(`subnet ${value} has host bits set; did you mean ${formatIpv4(network)}/${prefixLength}?`);
  return ok({ network, prefixLength });
}

function checkHostAddress(field: string, value: unknown, net: SubnetBounds, subnet: string): Checked<Ipv4Address> {
  if (typeof value !== "string") return refuse(`${field} must be an IPv4 address string; got ${JSON.stringify(value)}`);
  const parsed = parseIpv4(value);
  if (!parsed.ok) return refuse(`${field}: ${parsed.error.message}`);
  if (parsed.value <= net.network || parsed.value >= net.broadcast) {
    return refuse(`${field} ${value} is outside the subnet ${subnet} (or is its network or broadcast address)`);
  }
  return ok(parsed.value);
}

/** The default range: from .100 (or the middle of a small subnet) to the address below the server's. */
function checkRange(value: unknown, net: SubnetBounds, inside: (field: string, text: unknown) => Checked<Ipv4Address>): Checked<[Ipv4Address, Ipv4Address]> {
  if (value === undefined) {
    const hosts = net.broadcast - net.network - 1;
    const start = net.network + (hosts >= 200 ? 100 : Math.ceil(hosts / 2));
    return ok([start, Math.min(start + MAX_POOL_SIZE - 1, net.broadcast - 2)]);
  }
  if (!Array.isArray(value) || value.length !== 2) return refuse(`range must be [first, last], e.g. ["10.44.0.100", "10.44.0.199"]; got ${JSON.stringify(value)}`);
  const start = inside("range start", value[0]);
  if (!start.ok) return start;
  const end = inside("range end", value[1]);
  if (!end.ok) return end;
  if (start.value > end.value) return refuse(`range start ${value[0]} is after range end ${value[1]}`);
  const size = end.value - start.value + 1;
  if (size > MAX_POOL_SIZE) return refuse(`range ${value[0]}..${value[1]} has ${size} addresses; at most ${MAX_POOL_SIZE}`);
  return ok([start.value, end.value]);
}

function checkBoolean(field: string, value: unknown, fallback: boolean): Checked<boolean> {
  if (value === undefined) return ok(fallback);
  if (typeof value !== "boolean") return refuse(`${field} must be true or false; got ${JSON.stringify(value)}`);
  return ok(value);
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Whether `text` is one DNS host label (letters, digits, inner hyphens; 1..63). */
export function isHostLabel(text: string): boolean {
  return LABEL.test(text);
}

function checkDomain(value: unknown): Checked<string> {
  if (value === undefined) return ok(DEFAULT_DOMAIN);
  if (typeof value !== "string") return refuse(`domain must be a DNS name like "lab.lan"; got ${JSON.stringify(value)}`);
  const domain = value.toLowerCase().replace(/\.$/, "");
  if (domain.length === 0 || domain.length > MAX_DOMAIN_LEN || !domain.split(".").every(isHostLabel) || domain.endsWith("in-addr.arpa")) {
    return refuse(`domain ${JSON.stringify(value)} must be dot-separated labels of letters, digits and inner hyphens, at most ${MAX_DOMAIN_LEN} characters`);
  }
  return ok(domain);
}

function checkReservations(
  value: unknown, inside: (field: string, text: unknown) => Checked<Ipv4Address>, server: Ipv4Address, router: Ipv4Address | null,
): Checked<DhcpReservation[]> {
  if (value === undefined) return ok([]);
  if (!Array.isArray(value) || value.length > MAX_RESERVATIONS) return refuse(`reservations must be an array of at most ${MAX_RESERVATIONS} {mac, ip, hostname?} objects`);
  const macs = new Map<MacKey, number>();
  const ips = new Map<Ipv4Address, number>();
  const names = new Map<string, number>();
  const out: DhcpReservation[] = [];
  for (const [i, entry] of (value as unknown[]).entries()) {
    const where = `reservations[${i}]`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) return refuse(`${where} must be an object {mac, ip, hostname?}`);
    const { mac: macText, ip: ipText, hostname, ...rest } = entry as Record<string, unknown>;
    if (Object.keys(rest).length > 0) return refuse(`${where} has unknown field(s) ${Object.keys(rest).join(", ")}; known: mac, ip, hostname`);
    const mac = typeof macText === "string" ? parseMac(macText) : parseMac("");
    if (!mac.ok || !isUsableUnicastMac(mac.value)) return refuse(`${where}.mac must be a unicast MAC like 02:00:00:00:00:10; got ${JSON.stringify(macText)}`);
    const ip = inside(`${where}.ip`, ipText);
    if (!ip.ok) return ip;
    if (ip.value === server) return refuse(`${where}.ip ${String(ipText)} is the server address`);
    if (ip.value === router) return refuse(`${where}.ip ${String(ipText)} is the router address`);
    const macSeen = macs.get(mac.value);
    if (macSeen !== undefined) return refuse(`${where}.mac ${formatMac(mac.value)} is already reserved by reservations[${macSeen}]`);
    const ipSeen = ips.get(ip.value);
    if (ipSeen !== undefined) return refuse(`${where}.ip ${formatIpv4(ip.value)} is already reserved by reservations[${ipSeen}]`);
    macs.set(mac.value, i);
    ips.set(ip.value, i);
    const reservation: DhcpReservation = { mac: formatMac(mac.value), ip: formatIpv4(ip.value) };
    if (hostname !== undefined) {
      if (typeof hostname !== "string" || !isHostLabel(hostname.toLowerCase())) {
        return refuse(`${where}.hostname must be one DNS label (letters, digits, inner hyphens; 1..63); got ${JSON.stringify(hostname)}`);
      }
      const lower = hostname.toLowerCase();
      const nameSeen = names.get(lower);
      if (nameSeen !== undefined) return refuse(`${where}.hostname ${lower} is already used by reservations[${nameSeen}]`);
      names.set(lower, i);
      reservation.hostname = lower;
    }
    out.push(reservation);
  }
  return ok(out);
}
