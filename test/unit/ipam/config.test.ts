import { describe, expect, it } from "vitest";
import { checkDhcpConfig, ipamSettings } from "../../../datapath/ipam/config.ts";

// The `dhcp` key of a segment's configuration: defaults from the subnet alone, and a specific
// message for every conflict.

describe("checkDhcpConfig", () => {
  it("fills in every default from the subnet alone", () => {
    expect(checkDhcpConfig({ subnet: "10.44.0.0/24" })).toEqual({
      ok: true,
      value: {
        subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.253"], router: null, server: "10.44.0.254", dns: true, domain: "lan",
        leaseSeconds: 3600, reservations: [], arpProxy: true,
      },
    });
    // A small subnet: the upper half is the pool, the last host the server.
    expect(checkDhcpConfig({ subnet: "192.168.7.0/28" })).toMatchObject({ ok: true, value: { range: ["192.168.7.7", "192.168.7.13"], server: "192.168.7.14" } });
  });

  it("keeps what is given, normalised", () => {
    const result = checkDhcpConfig({
      subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.199"], router: "10.44.0.1", server: "10.44.0.2", dns: false, domain: "Lab.LAN.",
      leaseSeconds: 600, reservations: [{ mac: "02:00:00:00:00:AA", ip: "10.44.0.10", hostname: "DB" }], arpProxy: false,
    });
    expect(result).toMatchObject({ ok: true, value: { domain: "lab.lan", reservations: [{ mac: "02:00:00:00:00:aa", ip: "10.44.0.10", hostname: "db" }] } });
    if (!result.ok) return;
    expect(ipamSettings(result.value)).toMatchObject({
      network: 0x0a2c0000, prefixLength: 24, mask: 0xffffff00, broadcast: 0x0a2c00ff, rangeStart: 0x0a2c0064, rangeEnd: 0x0a2c00c7,
      router: 0x0a2c0001, server: 0x0a2c0002, reservations: [{ mac: 0x0200000000aa, ip: 0x0a2c000a, hostname: "db" }],
    });
  });

  const base = { subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.199"], router: "10.44.0.1" };
  it.each([
    ["not an object", "10.44.0.0/24", /must be an object/],
    ["no subnet", {}, /subnet is required/],
    ["unknown field", { ...base, gateway: "x" }, /unknown field\(s\) "gateway"/],
    ["bad subnet", { subnet: "10.44.0.0" }, /is not an IPv4 network/],
    ["host bits", { subnet: "10.44.0.5/24" }, /has host bits set; did you mean 10\.44\.0\.0\/24/],
    ["prefix too long", { subnet: "10.44.0.0/31" }, /prefix \/31 must be \/8 to \/30/],
    ["range outside the subnet", { ...base, range: ["10.44.0.100", "10.44.1.10"] }, /range end 10\.44\.1\.10 is outside the subnet 10\.44\.0\.0\/24/],
    ["range on the broadcast", { ...base, range: ["10.44.0.100", "10.44.0.255"] }, /range end 10\.44\.0\.255 is outside the subnet/],
    ["reversed range", { ...base, range: ["10.44.0.199", "10.44.0.100"] }, /range start 10\.44\.0\.199 is after range end/],
    ["range overlapping the router", { ...base, range: ["10.44.0.1", "10.44.0.50"] }, /range 10\.44\.0\.1\.\.10\.44\.0\.50 overlaps the router address 10\.44\.0\.1/],
    ["range overlapping the server", { ...base, server: "10.44.0.150" }, /overlaps the server address 10\.44\.0\.150/],
    ["router = server", { ...base, server: "10.44.0.1" }, /router and server are both 10\.44\.0\.1/],
    ["router outside", { ...base, router: "10.45.0.1" }, /router 10\.45\.0\.1 is outside the subnet/],
    ["too big a pool", { subnet: "10.0.0.0/16", range: ["10.0.0.10", "10.0.8.10"] }, /has 2049 addresses; at most 1024/],
    ["reservation outside the subnet", { ...base, reservations: [{ mac: "02:00:00:00:00:01", ip: "10.45.0.9" }] }, /reservations\[0\]\.ip 10\.45\.0\.9 is outside the subnet/],
    ["duplicate MAC", { ...base, reservations: [{ mac: "02:00:00:00:00:01", ip: "10.44.0.9" }, { mac: "02:00:00:00:00:01", ip: "10.44.0.8" }] }, /reservations\[1\]\.mac 02:00:00:00:00:01 is already reserved by reservations\[0\]/],
    ["duplicate IP", { ...base, reservations: [{ mac: "02:00:00:00:00:01", ip: "10.44.0.9" }, { mac: "02:00:00:00:00:02", ip: "10.44.0.9" }] }, /reservations\[1\]\.ip 10\.44\.0\.9 is already reserved by reservations\[0\]/],
    ["duplicate hostname", { ...base, reservations: [{ mac: "02:00:00:00:00:01", ip: "10.44.0.9", hostname: "a" }, { mac: "02:00:00:00:00:02", ip: "10.44.0.8", hostname: "A" }] }, /hostname a is already used/],
    ["reservation on the router", { ...base, reservations: [{ mac: "02:00:00:00:00:01", ip: "10.44.0.1" }] }, /is the router address/],
    ["reservation on the server", { ...base, reservations: [{ mac: "02:00:00:00:00:01", ip: "10.44.0.254" }] }, /is the server address/],
    ["multicast MAC", { ...base, reservations: [{ mac: "01:00:5e:00:00:01", ip: "10.44.0.9" }] }, /must be a unicast MAC/],
    ["bad hostname", { ...base, reservations: [{ mac: "02:00:00:00:00:01", ip: "10.44.0.9", hostname: "a.b" }] }, /must be one DNS label/],
    ["bad domain", { ...base, domain: "lab..lan" }, /domain "lab\.\.lan" must be/],
    ["lease too short", { ...base, leaseSeconds: 5 }, /leaseSeconds must be an integer in 10\.\.604800; got 5/],
    ["dns not boolean", { ...base, dns: "yes" }, /dns must be true or false/],
  ])("refuses %s", (_what, value, message) => {
    const result = checkDhcpConfig(value);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe("invalid-dhcp-config");
      expect(result.error.message).toMatch(/^dhcp: /);
      expect(result.error.message).toMatch(message);
    }
  });
});
