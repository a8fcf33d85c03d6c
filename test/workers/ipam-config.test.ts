/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

// The `dhcp` key of a segment's configuration through the admin API: defaults filled in and
// stored, null turns it off, every conflict is a 400 with a message naming it.

const BASE = "http://edgelan.test";

function put(name: string, body: unknown): Promise<Response> {
  return exports.default.fetch(`${BASE}/v1/segments/${name}`, {
    method: "PUT", headers: { Authorization: "Bearer test-admin-token", "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
}

describe("PUT /v1/segments/:name with dhcp", () => {
  it("stores the service's configuration with its defaults, shows it, and turns it off with null", async () => {
    const created = await put("ipam-a", { dhcp: { subnet: "10.44.0.0/24", domain: "lab.lan" } });
    expect(created.status).toBe(201);
    expect(((await created.json()) as { dhcp: unknown }).dhcp).toEqual({
      subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.0.253"], router: null, server: "10.44.0.254", dns: true, domain: "lab.lan",
      leaseSeconds: 3600, reservations: [], arpProxy: true,
    });
    const off = await put("ipam-a", { dhcp: null });
    expect(off.status).toBe(200);
    expect(((await off.json()) as { dhcp: unknown }).dhcp).toBeNull();
  });

  it.each([
    ["range outside the subnet", { subnet: "10.44.0.0/24", range: ["10.44.0.100", "10.44.1.10"] }, /range end 10\.44\.1\.10 is outside the subnet/],
    ["range overlapping the router", { subnet: "10.44.0.0/24", range: ["10.44.0.1", "10.44.0.50"], router: "10.44.0.1" }, /overlaps the router address/],
    ["router = server", { subnet: "10.44.0.0/24", router: "10.44.0.254" }, /router and server are both 10\.44\.0\.254/],
    ["reservation outside the subnet", { subnet: "10.44.0.0/24", reservations: [{ mac: "02:00:00:00:00:01", ip: "10.9.0.1" }] }, /reservations\[0\]\.ip 10\.9\.0\.1 is outside the subnet/],
    ["duplicate MAC", { subnet: "10.44.0.0/24", reservations: [{ mac: "02:00:00:00:00:01", ip: "10.44.0.9" }, { mac: "02:00:00:00:00:01", ip: "10.44.0.8" }] }, /already reserved by reservations\[0\]/],
    ["duplicate IP", { subnet: "10.44.0.0/24", reservations: [{ mac: "02:00:00:00:00:01", ip: "10.44.0.9" }, { mac: "02:00:00:00:00:02", ip: "10.44.0.9" }] }, /ip 10\.44\.0\.9 is already reserved/],
    ["a string", "10.44.0.0/24", /must be an object/],
  ])("refuses %s with 400 invalid-config-field", async (_what, dhcp, message) => {
    const response = await put("ipam-b", { dhcp });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: string; message: string };
    expect(body.error).toBe("invalid-config-field");
    expect(body.message).toMatch(message);
  });
});

describe("GET /v1/segments/:name/leases", () => {
  const get = (name: string): Promise<Response> =>
    exports.default.fetch(`${BASE}/v1/segments/${name}/leases`, { headers: { Authorization: "Bearer test-admin-token" } });

  it("is 404 segment-not-found for no segment and 404 dhcp-off without dhcp", async () => {
    expect(((await (await get("ipam-none")).json()) as { error: string }).error).toBe("segment-not-found");
    await put("ipam-off", {});
    const off = await get("ipam-off");
    expect(off.status).toBe(404);
    expect(((await off.json()) as { error: string }).error).toBe("dhcp-off");
  });

  it("reports the hosted service's pool and reservations, and follows a reconfiguration", async () => {
    await put("ipam-on", { dhcp: { subnet: "10.44.0.0/24", reservations: [{ mac: "02:00:00:00:00:10", ip: "10.44.0.10", hostname: "db" }] } });
    const report = (await (await get("ipam-on")).json()) as { name: string; server: string; pool: { size: number; free: number }; leases: unknown[] };
    expect(report).toMatchObject({ name: "ipam-on", server: "10.44.0.254", pool: { size: 154, free: 154 } });
    expect(report.leases).toEqual([expect.objectContaining({ ip: "10.44.0.10", mac: "02:00:00:00:00:10", hostname: "db", state: "reserved" })]);
    await put("ipam-on", { dhcp: { subnet: "10.45.0.0/24" } });
    const moved = (await (await get("ipam-on")).json()) as { server: string; leases: unknown[] };
    expect(moved).toMatchObject({ server: "10.45.0.254", leases: [] });
    await put("ipam-on", { dhcp: null });
    expect((await get("ipam-on")).status).toBe(404);
  });
});
