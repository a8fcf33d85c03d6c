import type { ConfigErrorCode, SegmentConfig } from "../contract/segment-api.ts";
import { DEFAULT_BRIDGE_CONFIG } from "../datapath/bridge.ts";
import { MIN_CONFIGURABLE_FRAME_SIZE, VLAN_TAG_LEN } from "../datapath/ethernet.ts";
import type { PolicerLimits } from "../datapath/policer.ts";
import type { RawEgressLimits } from "../datapath/raw-egress.ts";
import { fail, ok, type Result } from "../datapath/result.ts";
import { MAX_FRAME_BYTES } from "../datapath/tunnel/constants.ts";
import type { RegionPolicy } from "../datapath/cells/region-placement.ts";

export type { ConfigErrorCode, SegmentConfig };
import { parseAllowedOrigins } from "../contract/origins.ts";
import { checkDhcpConfig } from "../datapath/ipam/config.ts";

const MIB = 1024 * 1024;
/** The smallest tagged frame: what a queue must at least be able to hold. */
const MIN_TAGGED_FRAME = MIN_CONFIGURABLE_FRAME_SIZE + VLAN_TAG_LEN;

/** Settings of a new segment, apart from `createdAt`: the switch's defaults, and the relay's own. */
export const DEFAULT_SEGMENT_CONFIG: Readonly<Omit<SegmentConfig, "createdAt">> = Object.freeze({
  maxFrameSize: DEFAULT_BRIDGE_CONFIG.maxFrameSize,
  maxPorts: 64,
  learnLimitPerPort: DEFAULT_BRIDGE_CONFIG.learnLimitPerPort,
  learnLimitPerSegment: DEFAULT_BRIDGE_CONFIG.learnLimitPerSegment,
  agingSeconds: DEFAULT_BRIDGE_CONFIG.agingMs / 1000,
  rxQueueFrames: 256,
  rxQueueBytes: 1 * MIB,
  segmentQueueBytes: 32 * MIB,
  openJoin: false,
  ttlSeconds: null,
  allowedOrigins: null,
  rateLimitBytesPerSecond: null,
  rateLimitFramesPerSecond: null,
  stormControlFramesPerSecond: 100,
  rawEgressBytesPerSecond: 4 * MIB,
  rawEgressFramesPerSecond: 4_000,
  rawMode: true,
});

/** Inclusive integer range a numeric setting must lie in. */
interface IntegerRange {
  readonly min: number;
  readonly max: number;
}

type IntegerField = {
  [K in keyof SegmentConfig]-?: SegmentConfig[K] extends number ? K : never;
}[keyof SegmentConfig];

/** Settings that are an integer or null (null: no limit). */
type NullableField = "ttlSeconds" | "rateLimitBytesPerSecond" | "rateLimitFramesPerSecond" | "stormControlFramesPerSecond";

/** What null means for each nullable setting, quoted in error messages. */
const NULL_MEANS: Readonly<Record<NullableField, string>> = {
  ttlSeconds: "never expire",
  rateLimitBytesPerSecond: "unlimited",
  rateLimitFramesPerSecond: "unlimited",
  stormControlFramesPerSecond: "no storm control",
};

/** Allowed ranges, also quoted in error messages and docs/api.md. */
export const CONFIG_RANGES: Readonly<Record<IntegerField | NullableField, IntegerRange>> = {
  maxFrameSize: { min: MIN_CONFIGURABLE_FRAME_SIZE, max: MAX_FRAME_BYTES },
  // Per cell: a segment of n cells may set up to 1024 × n (maxPortsRange).
  maxPorts: { min: 1, max: 1024 },
  learnLimitPerPort: { min: 1, max: 65536 },
  learnLimitPerSegment: { min: 1, max: 65536 },
  agingSeconds: { min: 10, max: 86400 },
  rxQueueFrames: { min: 1, max: 65536 },
  rxQueueBytes: { min: MIN_TAGGED_FRAME, max: 64 * MIB },
  segmentQueueBytes: { min: MIN_TAGGED_FRAME, max: 64 * MIB },
  ttlSeconds: { min: 10, max: 365 * 86400 },
  rateLimitBytesPerSecond: { min: 64 * 1024, max: 1024 * 1024 * MIB },
  rateLimitFramesPerSecond: { min: 10, max: 10_000_000 },
  stormControlFramesPerSecond: { min: 1, max: 1_000_000 },
  rawEgressBytesPerSecond: { min: 64 * 1024, max: 64 * MIB },
  rawEgressFramesPerSecond: { min: 10, max: 100_000 },
};


/** `cells`: the segment's count of Durable Objects (docs/cells.md §3.3). Absent means 1, so existing records are unchanged. */
export const CELLS_RANGE: IntegerRange = { min: 1, max: 16 };
/** `cells.max` of region placement: cells in all, the home included. */
export const REGION_MAX_RANGE: IntegerRange = { min: 2, max: 16 };
/** `cells.perCell` of region placement: ports a region's cells hold before it gets another cell. */
export const REGION_PER_CELL_RANGE: IntegerRange = { min: 1, max: 1024 };
/** Defaults of the object form's optional fields. */
export const REGION_DEFAULTS: Readonly<Omit<RegionPolicy, "placement">> = { max: 4, perCell: 256 };
const CELLS_ALLOWED = `an integer in ${CELLS_RANGE.min}..${CELLS_RANGE.max}, or {"placement": "region", "max": ${REGION_MAX_RANGE.min}..${REGION_MAX_RANGE.max} (default ${REGION_DEFAULTS.max}), "perCell": ${REGION_PER_CELL_RANGE.min}..${REGION_PER_CELL_RANGE.max} (default ${REGION_DEFAULTS.perCell})}`;

const NULLABLE_FIELDS = Object.keys(NULL_MEANS) as NullableField[];
const INTEGER_FIELDS = Object.keys(CONFIG_RANGES).filter((key) => !(key in NULL_MEANS)) as IntegerField[];
const PATCHABLE_FIELDS: ReadonlySet<string> = new Set([...Object.keys(DEFAULT_SEGMENT_CONFIG), "dhcp", "cells"]);

/**
 * Applies a JSON patch to a segment's settings.
 * `current`: the stored settings, or undefined to create a segment (defaults + `now` as createdAt).
 * `patch`: the parsed request body; every key must be a known, writable setting of the right type and range.
 * Returns the complete new settings, or a failure naming the offending field(s) and what is allowed.
 */
export function applyConfigPatch(
  current: SegmentConfig | undefined,
  patch: unknown,
  now: Date = new Date(),
): Result<SegmentConfig, ConfigErrorCode> {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) {
    return fail("invalid-config", "the segment configuration must be a JSON object, e.g. {\"maxPorts\": 16}");
  }
  const fields = patch as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((key) => !PATCHABLE_FIELDS.has(key));
  if (unknown.length > 0) {
    const readOnly = unknown.includes("createdAt") ? " (createdAt is read-only)" : "";
    return fail(
      "unknown-config-field",
      `unknown configuration field(s) ${unknown.map((key) => JSON.stringify(key)).join(", ")}${readOnly}; known fields: ${[...PATCHABLE_FIELDS].join(", ")}`,
    );
  }

  const next: SegmentConfig = current === undefined ? { ...DEFAULT_SEGMENT_CONFIG, createdAt: now.toISOString() } : { ...current };
  // First: the cell count bounds maxPorts.
  if ("cells" in fields) {
    const checked = checkCells(fields.cells);
    if (!checked.ok) return checked;
    next.cells = checked.value;
  }
  for (const field of INTEGER_FIELDS) {
    if (!(field in fields)) continue;
    const checked = checkInteger(field, fields[field], field === "maxPorts" ? maxPortsRange(next) : CONFIG_RANGES[field]);
    if (!checked.ok) return checked;
    next[field] = checked.value;
  }
  for (const field of NULLABLE_FIELDS) {
    if (!(field in fields)) continue;
    const value = fields[field];
    const checked = value === null ? ok(null) : checkInteger(field, value, CONFIG_RANGES[field], ` or null (${NULL_MEANS[field]})`);
    if (!checked.ok) return checked;
    next[field] = checked.value;
  }
  for (const field of ["openJoin", "rawMode"] as const) {
    if (!(field in fields)) continue;
    const value = fields[field];
    if (typeof value !== "boolean") return invalidField(field, value, "true or false");
    next[field] = value;
  }
  if ("allowedOrigins" in fields) {
    const origins = parseAllowedOrigins(fields.allowedOrigins);
    if (!origins.ok) return invalidField("allowedOrigins", fields.allowedOrigins, origins.error.message);
    next.allowedOrigins = origins.value;
  }
  if ("dhcp" in fields) {
    // The whole object is replaced (not merged); datapath/ipam/config.ts says what is refused and why.
    const dhcp = fields.dhcp === null ? ok(null) : checkDhcpConfig(fields.dhcp);
    if (!dhcp.ok) return fail("invalid-config-field", dhcp.error.message);
    next.dhcp = dhcp.value;
  }
  return checkConsistency(next);
}

/** Cross-field rules: limits that only make sense relative to each other. */
function checkConsistency(config: SegmentConfig): Result<SegmentConfig, ConfigErrorCode> {
  if (config.learnLimitPerPort > config.learnLimitPerSegment) {
    return fail(
      "invalid-config-field",
      `learnLimitPerPort (${config.learnLimitPerPort}) must not exceed learnLimitPerSegment (${config.learnLimitPerSegment})`,
    );
  }
  const largestFrame = config.maxFrameSize + VLAN_TAG_LEN;
  if (config.rxQueueBytes < largestFrame) {
    return fail(
      "invalid-config-field",
      `rxQueueBytes (${config.rxQueueBytes}) must hold at least one tagged frame of maxFrameSize + ${VLAN_TAG_LEN} = ${largestFrame} bytes`,
    );
  }
  if (config.segmentQueueBytes < config.rxQueueBytes) {
    return fail(
      "invalid-config-field",
      `segmentQueueBytes (${config.segmentQueueBytes}) must be at least rxQueueBytes (${config.rxQueueBytes})`,
    );
  }
  return ok(config);
}

/** Ports one cell (Durable Object) holds at most; a segment's `maxPorts` counts over all its cells. */
export const MAX_PORTS_PER_CELL = 1024;

/** maxPorts of a segment of n cells (n = the most a region policy makes): 1..1024 × n. */
function maxPortsRange(config: SegmentConfig): IntegerRange {
  return { min: CONFIG_RANGES.maxPorts.min, max: MAX_PORTS_PER_CELL * cellSlots(config.cells) };
}

/** The ports this object admits itself: the segment's `maxPorts`, at most MAX_PORTS_PER_CELL. */
export function portsPerCell(config: SegmentConfig): number {
  return Math.min(config.maxPorts, MAX_PORTS_PER_CELL);
}

/** `cells`: an integer count, or the region placement object (optional fields get their defaults). */
function checkCells(value: unknown): Result<number | RegionPolicy, ConfigErrorCode> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return checkInteger("cells", value, CELLS_RANGE, `, or {"placement": "region", …}`);
  const fields = value as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((key) => !["placement", "max", "perCell"].includes(key));
  if (fields.placement !== "region" || unknown.length > 0) return invalidField("cells", value, CELLS_ALLOWED);
  const max = checkInteger("cells.max", fields.max ?? REGION_DEFAULTS.max, REGION_MAX_RANGE);
  if (!max.ok) return max;
  const perCell = checkInteger("cells.perCell", fields.perCell ?? REGION_DEFAULTS.perCell, REGION_PER_CELL_RANGE);
  if (!perCell.ok) return perCell;
  return ok({ placement: "region", max: max.value, perCell: perCell.value });
}

/** How many cells (Durable Objects) a `cells` setting allows: the count, or region placement's `max`. */
export function cellSlots(cells: number | RegionPolicy | undefined): number {
  return cells === undefined ? 1 : typeof cells === "number" ? cells : cells.max;
}

/** The region policy of a `cells` setting, or null for a fixed count. */
export function regionPolicyOf(cells: number | RegionPolicy | undefined): RegionPolicy | null {
  return typeof cells === "object" ? cells : null;
}

/**
 * Why `cells` may not change this way, or null. A one-cell segment may become any; a segment of several
 * keeps its cells (adding or draining cells of a live segment is not implemented): the same count, or
 * region placement with the same `max` (its `perCell` may change).
 */
export function cellsChange(before: number | RegionPolicy | undefined, after: number | RegionPolicy | undefined): string | null {
  const from = before ?? 1;
  const to = after ?? 1;
  if (from === 1) return null;
  if (typeof from === typeof to && cellSlots(from) === cellSlots(to)) return null;
  const show = (cells: number | RegionPolicy): string => (typeof cells === "number" ? String(cells) : JSON.stringify(cells));
  return `not implemented yet: changing cells from ${show(from)} to ${show(to)} (adding or draining cells of a running segment, docs/cells.md §3.3); delete and re-create the segment`;
}

function checkInteger(field: string, value: unknown, range: IntegerRange, alternative = ""): Result<number, ConfigErrorCode> {
  if (typeof value !== "number" || !Number.isInteger(value) || value < range.min || value > range.max) {
    return invalidField(field, value, `an integer in ${range.min}..${range.max}${alternative}`);
  }
  return ok(value);
}

function invalidField(field: string, value: unknown, allowed: string): Result<never, ConfigErrorCode> {
  return fail("invalid-config-field", `${field} must be ${allowed}; got ${JSON.stringify(value) ?? String(value)}`);
}

/** The ingress policing a segment's settings give every port (token buckets with a 1 s burst). */
export function policerLimitsOf(config: Omit<SegmentConfig, "createdAt">): PolicerLimits {
  return {
    bytesPerSecond: config.rateLimitBytesPerSecond, framesPerSecond: config.rateLimitFramesPerSecond,
    floodFramesPerSecond: config.stormControlFramesPerSecond, burstSeconds: 1,
  };
}

/** The rate a segment's settings let it send one raw port (1 s burst). */
export function rawEgressLimitsOf(config: Omit<SegmentConfig, "createdAt">): RawEgressLimits {
  return { bytesPerSecond: config.rawEgressBytesPerSecond, framesPerSecond: config.rawEgressFramesPerSecond, floodFramesPerSecond: null, burstSeconds: 1 };
}

/** What a segment keeps in storage about itself. */
export interface StoredSegment {
  /** The segment name the Worker routed by; kept because a Durable Object cannot read back its own name. */
  name: string;
  config: SegmentConfig;
}

const SEGMENT_KEY = "segment";

/**
 * Reads the segment record; undefined when the segment was never created (or was deleted). Settings
 * this version no longer has (`defaultPortKind`) are dropped, so a stored record always patches cleanly.
 */
export async function loadSegment(storage: DurableObjectStorage): Promise<StoredSegment | undefined> {
  const stored = await storage.get<StoredSegment>(SEGMENT_KEY);
  if (stored === undefined) return undefined;
  const known = Object.entries(stored.config).filter(([key]) => PATCHABLE_FIELDS.has(key) || key === "createdAt");
  return { name: stored.name, config: Object.fromEntries(known) as unknown as SegmentConfig };
}

/** Writes the segment record. */
export async function saveSegment(storage: DurableObjectStorage, segment: StoredSegment): Promise<void> {
  await storage.put(SEGMENT_KEY, segment);
}
