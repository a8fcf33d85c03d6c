// Region placement's pure parts (docs/cells.md §3.4): request.cf → location hint, and where a joining
// port goes given the cells a segment has.
import { describe, expect, it } from "vitest";
import { isRegion, NEAREST_REGIONS, REGIONS, regionOf, type ClientLocation } from "../../datapath/cells/region.ts";
import { placeByRegion, type PlacedCell, type RegionPolicy } from "../../datapath/cells/region-placement.ts";

describe("regionOf (request.cf → location hint)", () => {
  const cases: Array<[string, ClientLocation | null | undefined, string | null]> = [
    ["Frankfurt", { continent: "EU", country: "DE", longitude: "8.68210", timezone: "Europe/Berlin" }, "weur"],
    ["Helsinki", { continent: "EU", country: "FI", longitude: "24.93545", timezone: "Europe/Helsinki" }, "eeur"],
    ["Europe without longitude, western zone", { continent: "EU", timezone: "Europe/Paris" }, "weur"],
    ["Europe without longitude, eastern zone", { continent: "EU", timezone: "Europe/Kyiv" }, "eeur"],
    ["Ashburn", { continent: "NA", country: "US", longitude: "-77.48740", timezone: "America/New_York" }, "enam"],
    ["Austin (miniflare's placeholder)", { continent: "NA", country: "US", longitude: "-97.74260", timezone: "America/Chicago" }, "enam"],
    ["San Jose", { continent: "NA", country: "US", longitude: "-121.8863", timezone: "America/Los_Angeles" }, "wnam"],
    ["North America without longitude, western zone", { continent: "NA", timezone: "America/Denver" }, "wnam"],
    ["North America, a bad longitude, eastern zone", { continent: "NA", longitude: "east", timezone: "America/Toronto" }, "enam"],
    ["North America, a longitude as a number", { continent: "NA", longitude: -150 }, "wnam"],
    ["São Paulo", { continent: "SA", country: "BR", longitude: "-46.6333", timezone: "America/Sao_Paulo" }, "sam"],
    ["Singapore", { continent: "AS", country: "SG", longitude: "103.85", timezone: "Asia/Singapore" }, "apac"],
    ["Dubai", { continent: "AS", country: "AE", longitude: "55.27", timezone: "Asia/Dubai" }, "me"],
    ["Asia without country, Middle East zone", { continent: "AS", timezone: "Asia/Riyadh" }, "me"],
    ["Asia without country or zone", { continent: "AS" }, "apac"],
    ["Sydney", { continent: "OC", country: "AU", longitude: "151.2", timezone: "Australia/Sydney" }, "oc"],
    ["Lagos", { continent: "AF", country: "NG", longitude: "3.39", timezone: "Africa/Lagos" }, "afr"],
    ["Tor", { continent: "T1", country: "T1" }, null],
    ["Antarctica", { continent: "AN" }, null],
    ["no continent", { country: "DE", longitude: "8.6" }, null],
    ["no request.cf (local workerd)", undefined, null],
    ["null", null, null],
  ];
  for (const [name, location, region] of cases) {
    it(`${name} → ${String(region)}`, () => {
      expect(regionOf(location)).toBe(region);
    });
  }

  it("names only the nine hints, and every region has a nearness list of other regions", () => {
    expect([...REGIONS].sort()).toEqual(["afr", "apac", "eeur", "enam", "me", "oc", "sam", "weur", "wnam"]);
    for (const region of REGIONS) {
      expect(NEAREST_REGIONS[region].length).toBeGreaterThan(0);
      expect(NEAREST_REGIONS[region]).not.toContain(region);
      expect(NEAREST_REGIONS[region].every(isRegion)).toBe(true);
    }
    expect(isRegion("weur")).toBe(true);
    expect(isRegion("mars")).toBe(false);
    expect(isRegion(null)).toBe(false);
  });
});

describe("placeByRegion", () => {
  const policy: RegionPolicy = { placement: "region", max: 4, perCell: 2 };
  const home: PlacedCell = { index: 0, region: null, ports: 0 };

  it("sends a port of unknown region to the home while it has room, else to the least loaded cell with room", () => {
    expect(placeByRegion(null, [home, { index: 1, region: "weur", ports: 0 }], policy, 64)).toEqual({ cell: 0 });
    const fullHome: PlacedCell = { index: 0, region: null, ports: 64 };
    expect(placeByRegion(null, [fullHome, { index: 1, region: "weur", ports: 9 }, { index: 2, region: "apac", ports: 3 }], policy, 64)).toEqual({ cell: 2 });
    expect(placeByRegion(null, [fullHome, { index: 1, region: "weur", ports: 64 }], policy, 64)).toEqual({ cell: 0 });
  });

  it("places by each cell's own capacity (the home empty, the region's cell full: the home takes it)", () => {
    const cells: PlacedCell[] = [home, { index: 1, region: "weur", ports: 1024 }];
    expect(placeByRegion("weur", cells, { placement: "region", max: 2, perCell: 512 }, 1024)).toEqual({ cell: 0 });
  });

  it("creates the first cell of a region at the next index, then fills it up to perCell", () => {
    expect(placeByRegion("weur", [home], policy, 64)).toEqual({ create: 1, region: "weur" });
    expect(placeByRegion("weur", [home, { index: 1, region: "weur", ports: 1 }], policy, 64)).toEqual({ cell: 1 });
    expect(placeByRegion("apac", [home, { index: 1, region: "weur", ports: 1 }], policy, 64)).toEqual({ create: 2, region: "apac" });
  });

  it("gives a region another cell when its cells hold perCell ports, and picks its least loaded cell", () => {
    const cells: PlacedCell[] = [home, { index: 1, region: "weur", ports: 2 }];
    expect(placeByRegion("weur", cells, policy, 64)).toEqual({ create: 2, region: "weur" });
    const two: PlacedCell[] = [home, { index: 1, region: "weur", ports: 1 }, { index: 2, region: "weur", ports: 0 }];
    expect(placeByRegion("weur", two, policy, 64)).toEqual({ cell: 2 });
    const tie: PlacedCell[] = [home, { index: 1, region: "weur", ports: 1 }, { index: 2, region: "weur", ports: 1 }];
    expect(placeByRegion("weur", tie, policy, 64)).toEqual({ cell: 1 });
  });

  it("never makes more than max cells: then its own region past perCell, then the nearest, then any", () => {
    const full: PlacedCell[] = [home, { index: 1, region: "weur", ports: 5 }, { index: 2, region: "apac", ports: 3 }, { index: 3, region: "enam", ports: 9 }];
    expect(placeByRegion("weur", full, policy, 64)).toEqual({ cell: 1 });
    // eeur has no cell: weur is its nearest.
    expect(placeByRegion("eeur", full, policy, 64)).toEqual({ cell: 1 });
    // oc's nearest is apac.
    expect(placeByRegion("oc", full, policy, 64)).toEqual({ cell: 2 });
    // sam: enam first in its list.
    expect(placeByRegion("sam", full, policy, 64)).toEqual({ cell: 3 });
    // At capacity 5 weur's cell and enam's have no room, and weur's other near regions have no cell:
    // the least loaded cell with room is the home (0 ports; apac's has 3).
    expect(placeByRegion("weur", full, policy, 5)).toEqual({ cell: 0 });
  });

  it("falls back to the least loaded cell with room, the home included, when the near regions are full", () => {
    const full: PlacedCell[] = [{ index: 0, region: null, ports: 4 }, { index: 1, region: "weur", ports: 8 }, { index: 2, region: "apac", ports: 8 }];
    expect(placeByRegion("weur", full, { ...policy, max: 3 }, 8)).toEqual({ cell: 0 });
    const roomy: PlacedCell[] = [{ index: 0, region: null, ports: 4 }, { index: 1, region: "weur", ports: 8 }, { index: 2, region: "sam", ports: 1 }];
    expect(placeByRegion("weur", roomy, { ...policy, max: 3 }, 8)).toEqual({ cell: 2 });
  });
});
