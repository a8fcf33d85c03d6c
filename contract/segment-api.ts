/**
 * The contract between the Worker and a segment's Durable Object: the RPC methods the Worker calls
 * (`SegmentApi`), what they answer, and the bindings (`Env`). Both sides import this module and
 * neither imports the other (eslint enforces it); the Durable Object's class implements SegmentApi.
 */
import type { describeCounters } from "../datapath/counters.ts";
import type { FdbSummary } from "../datapath/fdb.ts";
import type { PortKind } from "../datapath/port-kind.ts";
import type { Failure } from "../datapath/result.ts";
import type { SwitchCounters } from "../datapath/segment-switch.ts";
import type { DhcpConfig } from "../datapath/ipam/config.ts";
import type { LeaseReport } from "../datapath/ipam/lease-list.ts";
import type { CellApi } from "./cell-api.ts";
import type { RegionPolicy } from "../datapath/cells/region-placement.ts";
import type { RegistryApi } from "./registry-api.ts";

/** A segment's settings: persisted in its Durable Object, changed with `PUT /v1/segments/:name`. */
export interface SegmentConfig {
  /** Largest untagged frame in bytes (Ethernet header + payload, no FCS); an 802.1Q-tagged frame may be 4 bytes longer. */
  maxFrameSize: number;
  /** Ports that may be connected at once; the next connect gets 503 `segment-full`. */
  maxPorts: number;
  /** MAC addresses the forwarding table learns behind one port. */
  learnLimitPerPort: number;
  /** MAC addresses the forwarding table holds for the whole segment. */
  learnLimitPerSegment: number;
  /** A learned MAC not seen as a source for this long is forgotten. */
  agingSeconds: number;
  /** Frames queued towards one port while it has no RX credit. */
  rxQueueFrames: number;
  /** Bytes queued towards one port while it has no RX credit. */
  rxQueueBytes: number;
  /** Bytes queued towards all ports together; bounded well below the 128 MB a Durable Object isolate has. */
  segmentQueueBytes: number;
  /** Whether a guest may connect without a join token. */
  openJoin: boolean;
  /** null: the segment lives until deleted. Otherwise, with no port connected for this long, it deletes itself. */
  ttlSeconds: number | null;
  /** null: browser joins from any origin. Otherwise a join whose Origin header is not listed gets 403 (worker/origin.ts). */
  allowedOrigins: string[] | null;
  /** Bytes per second one port may send into the segment (token bucket, 1 s burst); null: unlimited. */
  rateLimitBytesPerSecond: number | null;
  /** Frames per second one port may send into the segment (token bucket, 1 s burst); null: unlimited. */
  rateLimitFramesPerSecond: number | null;
  /** Flooded frames (broadcast, multicast, unknown unicast) per second one port may send; null: no storm control. */
  stormControlFramesPerSecond: number | null;
  /** Bytes per second the segment sends one raw port (no read acknowledgements: the runtime buffers the rest). */
  rawEgressBytesPerSecond: number;
  /** Frames per second the segment sends one raw port. */
  rawEgressFramesPerSecond: number;
  /** Whether raw (`edgelan.raw.v1`) ports may join; false: they are refused 403 `raw-mode-disabled`. */
  rawMode: boolean;
  /** When the segment was created (ISO 8601); read-only. */
  createdAt: string;
  /** The IPAM service (DHCP server, ARP proxy, DNS names; docs/ipam.md); absent or null: off. */
  dhcp?: DhcpConfig | null;
  /**
   * How many Durable Objects ("cells") the segment runs as (docs/cells.md): a fixed count 1..16, or region
   * placement (`{ placement: "region", max, perCell }`); absent means 1.
   */
  cells?: number | RegionPolicy;
}

/** Why a configuration patch was refused. */
export type ConfigErrorCode = "invalid-config" | "unknown-config-field" | "invalid-config-field" | "not-implemented";

/** A connected port, as the admin API shows it. */
export interface PortInfo {
  portId: number;
  kind: PortKind;
  mode: "descriptor" | "raw";
  /** "hello" while a descriptor port negotiates, then "open". */
  phase: "hello" | "open";
  macs: string[];
  remote: string;
  /** ISO 8601. */
  connectedSince: string;
  /** The cell (Durable Object) holding the port, for a segment of more than one cell (docs/cells.md). */
  cell?: number;
}

export type NamedCounters = ReturnType<typeof describeCounters>;

/** One port's counters, as `GET /v1/segments/:name/ports` shows them. */
export interface PortStats {
  portId: number;
  kind: PortKind;
  mode: "descriptor" | "raw";
  counters: NamedCounters;
  /** RX credits posted and not yet used (descriptor ports; null for raw ports). */
  credits: number | null;
  queuedFrames: number;
  queuedBytes: number;
}

/** Segment-wide counters the relay keeps (what is not one port's traffic). */
export interface RelayCounters {
  portsAccepted: number;
  portsClosed: number;
  hellosRefused: number;
  sessionsResumed: number;
  malformedMessages: number;
  protocolErrors: number;
  windowOverruns: number;
}

/** Join-token lifecycle and admission counters (docs/api.md, "Join tokens"); stored by the segment. */
export interface LifecycleCounters {
  /** Ports closed (4008) because their join token expired. */
  tokenExpiryCloses: number;
  /** Ports closed (4008) because their join token was revoked. */
  tokenRevocationCloses: number;
  /** Connects refused 403 token-stale-segment. */
  joinsRefusedStaleToken: number;
  /** Connects refused 403 token-revoked. */
  joinsRefusedRevoked: number;
  /** Connects refused 403 token-port-limit. */
  joinsRefusedPortLimit: number;
  /** Connects refused 403 token-forbids-raw. */
  joinsRefusedRaw: number;
  /** Connects refused 503 hello-slots-full. */
  joinsRefusedHelloSlots: number;
  /** Resume rows evicted because the segment held 2 × maxPorts. */
  resumeRowsEvicted: number;
}

/** Segment-wide counters: the sum over connected ports, plus what only the segment sees. */
export interface SegmentCounters extends RelayCounters, SwitchCounters, Partial<LifecycleCounters> {
  /** Times the object was (re)constructed: creation, wakes from hibernation, restarts. */
  instanceStarts: number;
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  dropped: number;
}

/** What `GET /v1/segments/:name` shows. */
export interface SegmentDescription {
  name: string;
  config: SegmentConfig;
  ports: PortInfo[];
  forwardingTable: FdbSummary;
  counters: SegmentCounters;
  queuedBytes: number;
  /** Per cell, for a segment of more than one cell (docs/cells.md §9); absent otherwise. */
  cells?: CellDescription[];
}

/** One cell of a segment as the admin API shows it. */
export interface CellDescription {
  index: number;
  /** With region placement: the location hint the cell was created with (null for the home). Absent for a fixed count. */
  region?: string | null;
  epoch: number;
  ports: number;
  /** Routes held from other cells. */
  remoteRoutes: number;
  /**
   * ARP requests from this cell's ports answered by its ARP proxy from the bindings of the home's IPAM
   * service, instead of being flooded (0 on the home: its service counts `arpSuppressed` in `GET …/leases`).
   */
  arpSuppressed: number;
  /**
   * Per peer cell: the trunk's counters. `failedFrames`: lost in failed calls (counted in `txFrames`
   * before); `unreachableFrames`: refused at once for CellCompletions senders while the peer was failing
   * or absent (never in `txFrames`).
   */
  trunks: Array<{
    peer: number; rxFrames: number; txFrames: number; calls: number; callFailures: number; backlogDrops: number; failedFrames: number; unreachableFrames: number;
  }>;
}

export type ConfigureOutcome =
  | { ok: true; created: boolean; config: SegmentConfig }
  | { ok: false; error: Failure<ConfigErrorCode | "segment-name-mismatch"> };

/** What revoking a token did: `full` when the revocation list holds its maximum of unexpired entries. */
export type RevokeOutcome =
  | { ok: true; alreadyRevoked: boolean; portsClosed: number; until: string }
  | { ok: false; error: Failure<"revocation-list-full"> };

/** The Durable Object's RPC surface, as the Worker calls it (besides `fetch` for a connect). */
export interface SegmentApi extends Rpc.DurableObjectBranded, CellApi {
  /** Whether the segment has been created (and not deleted). */
  exists(): Promise<boolean>;
  /** Creates the segment (defaults + `patch`) or applies `patch`; `name` must match a stored name. */
  configure(name: string, patch: unknown): Promise<ConfigureOutcome>;
  /** Settings, ports, forwarding-table summary and counters; null when the segment does not exist. */
  describe(): Promise<SegmentDescription | null>;
  /** Per-port counters; null when the segment does not exist. */
  portStats(): Promise<PortStats[] | null>;
  /** Disconnects every port (close code 4010) and erases the segment; null when it does not exist. */
  destroy(): Promise<{ portsClosed: number } | null>;
  /** The segment's `allowedOrigins` (null: any origin, or no such segment); the Worker checks browser joins against it. */
  allowedOrigins(): Promise<string[] | null>;
  /** The IPAM service's leases (docs/ipam.md); null when the segment does not exist, `{ off: true }` without `dhcp`. */
  leases(): Promise<LeaseReport | { off: true } | null>;
  /** The segment's epoch (minted tokens carry it as `sep`); null when the segment does not exist. */
  tokenEpoch(): Promise<string | null>;
  /** Adds a token id to the revocation list and closes its ports (4008); null when the segment does not exist. */
  revokeToken(jti: string): Promise<RevokeOutcome | null>;
  fetch(request: Request): Promise<Response>;
}

/** The Worker's bindings, typed once. */
export interface Env {
  SEGMENTS: DurableObjectNamespace<SegmentApi>;
  /** The one object that lists segment names (`GET /v1/segments`). */
  SEGMENT_REGISTRY: DurableObjectNamespace<RegistryApi>;
  /** Admin bearer token for the management API (`wrangler secret put`, or `.dev.vars` locally). */
  EDGELAN_ADMIN_TOKEN?: string;
  /** HMAC key for join tokens; falls back to the admin token when unset. */
  EDGELAN_TOKEN_SECRET?: string;
  /** "1" only when started by `npm start` without an admin token: explicit open development mode. */
  EDGELAN_DEV_MODE?: string;
  /** Dev mode: extra browser origins (comma-separated, e.g. "http://lab.test:3000") besides localhost; see worker/origin.ts. */
  EDGELAN_DEV_ALLOWED_ORIGINS?: string;
  /** Dev mode: port kinds besides member that may join without a token ("bridge", "monitor", or both comma-separated). */
  EDGELAN_DEV_OPEN_PORTS?: string;
}
