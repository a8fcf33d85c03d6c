import { describe, expect, it } from "vitest";
import { checkDhcpConfig, ipamSettings } from "../../../datapath/ipam/config.ts";
import { IpamService } from "../../../datapath/ipam/ipam-service.ts";
import { leaseReport } from "../../../datapath/ipam/lease-list.ts";

// The lease list the admin API and `segments show` print.

describe("leaseReport", () => {
  it("lists leases, offers and unleased reservations by address, with the pool's occupancy", () => {
    const config = checkDhcpConfig({
      subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.109"],
      reservations: [{ mac: "02:00:00:00:00:d0", ip: "10.44.0.10", hostname: "db" }, { mac: "02:00:00:00:00:d1", ip: "10.44.0.105" }],
    });
    if (!config.ok) throw new Error(config.error.message);
    const service = new IpamService(ipamSettings(config.value));
    const web = { key: "mac:020000000001", mac: 0x020000000001, hostname: "web" };
    expect(service.leases.bind(web, 0x0a2c0067, 3600, 0).ok).toBe(true);
    expect(service.leases.offer({ key: "mac:020000000002", mac: 0x020000000002, hostname: null }, 0x0a2c0065, 0).ok).toBe(true);
    const report = leaseReport(service, 1500);
    expect(report.leases).toEqual([
      { ip: "10.44.0.10", mac: "02:00:00:00:00:d0", hostname: "db", client: null, state: "reserved", expiresInSeconds: null },
      { ip: "10.44.0.101", mac: "02:00:00:00:00:02", hostname: null, client: "mac:020000000002", state: "offered", expiresInSeconds: 9 },
      { ip: "10.44.0.103", mac: "02:00:00:00:00:01", hostname: "web", client: "mac:020000000001", state: "bound", expiresInSeconds: 3599 },
      { ip: "10.44.0.105", mac: "02:00:00:00:00:d1", hostname: null, client: null, state: "reserved", expiresInSeconds: null },
    ]);
    expect(report.pool).toEqual({ first: "10.44.0.100", last: "10.44.0.109", size: 10, bound: 1, offered: 1, quarantined: 0, free: 7 });
    expect(report).toMatchObject({ server: "10.44.0.254", serverMac: "02:ed:1a:2c:00:fe", counters: { offers: 0 } });
    // An entry past its time is not listed even before the next sweep.
    expect(leaseReport(service, 20_000).leases.map((l) => l.state)).toEqual(["reserved", "bound", "reserved"]);
  });
});
