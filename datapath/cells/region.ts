/**
 * The region of a joining client, for region placement of cells (docs/cells.md §3.4): Cloudflare's
 * nine Durable Object location hints, derived from what the edge knows of the client (`request.cf`:
 * continent, country, longitude, timezone). Pure: the Worker passes the fields in, so the mapping is
 * tested without an edge. A region is only advice for latency; correctness never depends on it.
 */

/** Durable Object location hints (docs: durable-objects/reference/data-location). */
export const REGIONS = ["wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me"] as const;
export type Region = (typeof REGIONS)[number];

/** The fields of `request.cf` the mapping reads; any may be absent or null (local development, Tor). */
export interface ClientLocation {
  continent?: unknown;
  country?: unknown;
  longitude?: unknown;
  timezone?: unknown;
}

/** Countries of continent AS that get the `me` hint. */
const MIDDLE_EAST = new Set(["AE", "BH", "IL", "IQ", "IR", "JO", "KW", "LB", "OM", "PS", "QA", "SA", "SY", "YE"]);
/** Asian timezones of the Middle East, when the country is unknown. */
const MIDDLE_EAST_ZONES = new Set([
  "Asia/Aden", "Asia/Amman", "Asia/Baghdad", "Asia/Bahrain", "Asia/Beirut", "Asia/Damascus", "Asia/Dubai", "Asia/Gaza",
  "Asia/Hebron", "Asia/Jerusalem", "Asia/Kuwait", "Asia/Muscat", "Asia/Qatar", "Asia/Riyadh", "Asia/Tehran", "Asia/Tel_Aviv",
]);
/** North America's western timezones, when the longitude is unknown. */
const WEST_NA_ZONES = new Set([
  "America/Anchorage", "America/Boise", "America/Dawson", "America/Dawson_Creek", "America/Denver", "America/Edmonton",
  "America/Hermosillo", "America/Juneau", "America/Los_Angeles", "America/Mazatlan", "America/Metlakatla", "America/Nome",
  "America/Phoenix", "America/Sitka", "America/Tijuana", "America/Vancouver", "America/Whitehorse", "America/Yakutat",
  "Pacific/Honolulu",
]);
/** Europe's eastern timezones, when the longitude is unknown. */
const EAST_EU_ZONES = new Set([
  "Europe/Athens", "Europe/Bucharest", "Europe/Chisinau", "Europe/Helsinki", "Europe/Istanbul", "Europe/Kaliningrad",
  "Europe/Kiev", "Europe/Kyiv", "Europe/Minsk", "Europe/Moscow", "Europe/Riga", "Europe/Samara", "Europe/Sofia",
  "Europe/Tallinn", "Europe/Vilnius", "Europe/Volgograd",
]);

/** West of this longitude (degrees) North America is `wnam`. */
const WEST_NA_LONGITUDE = -100;
/** East of this longitude (degrees) Europe is `eeur`. */
const EAST_EU_LONGITUDE = 20;

/** The location hint for a client, or null when the edge does not say where it is (then placement ignores regions). */
export function regionOf(location: ClientLocation | null | undefined): Region | null {
  if (location === null || location === undefined) return null;
  const longitude = longitudeOf(location.longitude);
  const timezone = typeof location.timezone === "string" ? location.timezone : "";
  switch (location.continent) {
    case "NA":
      if (longitude !== null) return longitude < WEST_NA_LONGITUDE ? "wnam" : "enam";
      return WEST_NA_ZONES.has(timezone) ? "wnam" : "enam";
    case "SA":
      return "sam";
    case "EU":
      if (longitude !== null) return longitude < EAST_EU_LONGITUDE ? "weur" : "eeur";
      return EAST_EU_ZONES.has(timezone) ? "eeur" : "weur";
    case "AS":
      if (typeof location.country === "string" && location.country !== "") return MIDDLE_EAST.has(location.country) ? "me" : "apac";
      return MIDDLE_EAST_ZONES.has(timezone) ? "me" : "apac";
    case "OC":
      return "oc";
    case "AF":
      return "afr";
    default:
      // Absent, "T1" (Tor), "AN" (Antarctica) or anything new.
      return null;
  }
}

/** `request.cf.longitude` is a decimal string ("-97.74260"); a number is accepted too. */
function longitudeOf(value: unknown): number | null {
  const parsed = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : NaN;
  return Number.isFinite(parsed) && parsed >= -180 && parsed <= 180 ? parsed : null;
}

/** Whether a string is one of the nine hints (for a header or a stored value). */
export function isRegion(value: unknown): value is Region {
  return typeof value === "string" && (REGIONS as readonly string[]).includes(value);
}

/** For each region, the others in order of nearness (a fixed table; docs/cells.md §3.4). */
export const NEAREST_REGIONS: Readonly<Record<Region, readonly Region[]>> = {
  wnam: ["enam", "sam", "apac", "oc"],
  enam: ["wnam", "sam", "weur"],
  sam: ["enam", "wnam"],
  weur: ["eeur", "afr", "enam", "me"],
  eeur: ["weur", "me"],
  apac: ["oc", "me", "wnam"],
  oc: ["apac", "wnam"],
  afr: ["weur", "me", "eeur"],
  me: ["eeur", "apac", "afr"],
};
