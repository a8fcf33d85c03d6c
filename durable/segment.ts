import { DurableObject } from "cloudflare:workers";
import type { Failure } from "../datapath/result.ts";
import { describeCounters, newPortCounters, type PortCountersData } from "../datapath/counters.ts";
import { CloseCode } from "../datapath/tunnel/close-codes.ts";
import { KEEPALIVE_REQUEST, KEEPALIVE_RESPONSE, SUBPROTOCOL_V1 } from "../datapath/tunnel/constants.ts";
import type { Env } from "../worker/env.ts";
import { errorResponse, httpError } from "../worker/http.ts";
import { readPortRequestHeaders, type PortAuth } from "../worker/port-request.ts";
import {
  applyConfigPatch,
  loadSegment,
  saveSegment,
  type ConfigErrorCode,
  type PortKind,
  type SegmentConfig,
  type StoredSegment,
} from "./config.ts";

/**
 * What the segment keeps on each socket (`serializeAttachment`), so a port survives hibernation.
 * The relay may add fields; these are the ones the admin side reads.
 */
export interface PortAttachment {
  portId: number;
  kind: PortKind;
  /** "descriptor" when the client negotiated edgelan.v1, else "raw" (one frame per message). */
  mode: "descriptor" | "raw";
  /** MACs the join token binds the port to (lower-case); empty = not bound. */
  macs: string[];
  /** The guest's IP address, or "local". */
  remote: string;
  /** Milliseconds since the epoch. */
  connectedAt: number;
  auth: PortAuth;
  /** Join token expiry (Unix seconds), null without a token. */
  tokenExp: number | null;
  /** Per-port counters, when the relay keeps them on the attachment. */
  counters?: PortCountersData;
  /** Bytes queued towards this port, when the relay keeps them on the attachment. */
  queuedBytes?: number;
}

/** A connected port, as the admin API shows it. */
export interface PortInfo {
  portId: number;
  kind: PortKind;
  mode: "descriptor" | "raw";
  macs: string[];
  remote: string;
  /** ISO 8601. */
  connectedSince: string;
}

export type NamedCounters = ReturnType<typeof describeCounters>;

/** One port's counters, as `GET /v1/segments/:name/ports` shows them. */
export interface PortStats {
  portId: number;
  kind: PortKind;
  counters: NamedCounters;
  queuedBytes: number;
}

/** A summary of the forwarding database (not its entries: a segment may hold thousands). */
export interface ForwardingTableSummary {
  /** Learned MAC addresses in the whole segment. */
  entries: number;
  /** Learned MAC addresses behind each port that has any. */
  byPort: { portId: number; entries: number }[];
}

/**
 * SEAM between the admin API and the relay: everything the admin side needs to know about ports.
 * `SocketPortDirectory` (below) reads socket attachments so the admin API works before the relay exists;
 * the relay replaces it with its own port registry by assigning `Segment.ports`.
 */
export interface PortDirectory {
  /** Ports connected now. */
  count(): number;
  list(): PortInfo[];
  stats(): PortStats[];
  /** Bytes queued towards all ports (what counts against segmentQueueBytes). */
  queuedBytes(): number;
  fdbSummary(): ForwardingTableSummary;
  /** Closes every port's socket with `code` and `reason`; returns how many were closed. */
  closeAll(code: number, reason: string): number;
}

/** A PortDirectory over `ctx.getWebSockets()` and their attachments. */
export class SocketPortDirectory implements PortDirectory {
  constructor(private readonly ctx: DurableObjectState) {}

  count(): number {
    return this.ctx.getWebSockets().length;
  }

  list(): PortInfo[] {
    return this.attachments().map(({ attachment }) => ({
      portId: attachment.portId,
      kind: attachment.kind,
      mode: attachment.mode,
      macs: attachment.macs,
      remote: attachment.remote,
      connectedSince: new Date(attachment.connectedAt).toISOString(),
    }));
  }

  stats(): PortStats[] {
    return this.attachments().map(({ attachment }) => ({
      portId: attachment.portId,
      kind: attachment.kind,
      counters: describeCounters(attachment.counters ?? newPortCounters()),
      queuedBytes: attachment.queuedBytes ?? 0,
    }));
  }

  queuedBytes(): number {
    return this.attachments().reduce((sum, { attachment }) => sum + (attachment.queuedBytes ?? 0), 0);
  }

  fdbSummary(): ForwardingTableSummary {
    return { entries: 0, byPort: [] };
  }

  closeAll(code: number, reason: string): number {
    let closed = 0;
    for (const ws of this.ctx.getWebSockets()) {
      try {
        ws.close(code, reason);
        closed++;
      } catch {
        // Already closing or closed: nothing left to tell that client.
      }
    }
    return closed;
  }

  private attachments(): { ws: WebSocket; attachment: PortAttachment }[] {
    const ports: { ws: WebSocket; attachment: PortAttachment }[] = [];
    for (const ws of this.ctx.getWebSockets()) {
      const attachment = ws.deserializeAttachment() as PortAttachment | null;
      if (attachment !== null) ports.push({ ws, attachment });
    }
    return ports;
  }
}

/** Segment-wide counters: the sum over connected ports. */
export interface SegmentCounters {
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
  forwardingTable: ForwardingTableSummary;
  counters: SegmentCounters;
  queuedBytes: number;
}

export type ConfigureOutcome =
  | { ok: true; created: boolean; config: SegmentConfig }
  | { ok: false; error: Failure<ConfigErrorCode | "segment-name-mismatch"> };

const NEXT_PORT_ID_KEY = "next-port-id";

/** One LAN segment: its forwarding table and the ring state of every attached port. */
export class Segment extends DurableObject<Env> {
  /** SEAM: the relay assigns its port registry here. */
  protected ports: PortDirectory;
  /** The stored record: undefined = not read yet, null = the segment does not exist. */
  #stored: StoredSegment | null | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.ports = new SocketPortDirectory(ctx);
    // Keepalives must not wake a hibernated segment: the runtime answers them.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(KEEPALIVE_REQUEST, KEEPALIVE_RESPONSE));
  }

  // -------------------------------------------------------------------------
  // RPC, called by the Worker's management API
  // -------------------------------------------------------------------------

  /** Whether the segment has been created (and not deleted). */
  async exists(): Promise<boolean> {
    return (await this.load()) !== null;
  }

  /**
   * Creates the segment (defaults + `patch`) or applies `patch` to its settings.
   * `name` is the name the Worker routed by; it is stored on creation and must match afterwards.
   */
  async configure(name: string, patch: unknown): Promise<ConfigureOutcome> {
    const stored = await this.load();
    if (stored !== null && stored.name !== name) {
      return { ok: false, error: { code: "segment-name-mismatch", message: `this segment is named ${JSON.stringify(stored.name)}` } };
    }
    const next = applyConfigPatch(stored?.config, patch);
    if (!next.ok) return { ok: false, error: next.error };
    await this.store({ name, config: next.value });
    await this.armIdleTimer();
    return { ok: true, created: stored === null, config: next.value };
  }

  /** Settings, ports, forwarding-table summary and counters; null when the segment does not exist. */
  async describe(): Promise<SegmentDescription | null> {
    const stored = await this.load();
    if (stored === null) return null;
    return {
      name: stored.name,
      config: stored.config,
      ports: this.ports.list(),
      forwardingTable: this.ports.fdbSummary(),
      counters: sumCounters(this.ports.stats()),
      queuedBytes: this.ports.queuedBytes(),
    };
  }

  /** Per-port counters; null when the segment does not exist. */
  async portStats(): Promise<PortStats[] | null> {
    return (await this.load()) === null ? null : this.ports.stats();
  }

  /** Disconnects every port (close code 4010) and erases the segment; null when it does not exist. */
  async destroy(): Promise<{ portsClosed: number } | null> {
    if ((await this.load()) === null) return null;
    const portsClosed = this.ports.closeAll(CloseCode.SegmentDeleted, "segment deleted");
    await this.wipe();
    return { portsClosed };
  }

  /** TTL: an idle segment (no port connected) deletes itself; while ports are connected, look again one TTL later. */
  override async alarm(): Promise<void> {
    const stored = await this.load();
    if (stored === null || stored.config.ttlSeconds === null) return;
    if (this.ports.count() > 0) {
      await this.armIdleTimer();
      return;
    }
    await this.wipe();
  }

  // -------------------------------------------------------------------------
  // Connect: the Worker forwards the upgrade request with x-edgelan-* headers
  // -------------------------------------------------------------------------

  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
      return errorResponse(httpError(426, "upgrade-required", "connect with a WebSocket upgrade", { Upgrade: "websocket" }));
    }
    const forwarded = readPortRequestHeaders(request.headers);
    if (!forwarded.ok) return errorResponse(httpError(400, forwarded.error.code, forwarded.error.message));
    const port = forwarded.value;

    let stored = await this.load();
    if (stored === null) {
      if (!port.devMode) {
        return errorResponse(httpError(404, "segment-not-found", `segment ${JSON.stringify(port.segment)} does not exist: create it with PUT /v1/segments/${port.segment}`));
      }
      const created = await this.configure(port.segment, { openJoin: true });
      if (!created.ok) return errorResponse(httpError(500, created.error.code, created.error.message));
      stored = { name: port.segment, config: created.config };
    }
    if (stored.name !== port.segment) {
      return errorResponse(httpError(400, "bad-forward", `this segment is named ${JSON.stringify(stored.name)}, not ${JSON.stringify(port.segment)}`));
    }
    if (port.auth === "none" && !stored.config.openJoin) {
      return errorResponse(
        httpError(401, "token-required", `segment ${JSON.stringify(stored.name)} needs a join token (Authorization: Bearer <token> or ?token=<token>)`, {
          "WWW-Authenticate": 'Bearer realm="edgelan"',
        }),
      );
    }
    if (this.ports.count() >= stored.config.maxPorts) {
      return errorResponse(httpError(503, "segment-full", `segment ${JSON.stringify(stored.name)} has its maximum of ${stored.config.maxPorts} ports connected`));
    }

    const descriptorMode = offeredSubprotocols(request).includes(SUBPROTOCOL_V1);
    const attachment: PortAttachment = {
      portId: this.allocatePortId(),
      kind: port.kind,
      mode: descriptorMode ? "descriptor" : "raw",
      macs: port.macs,
      remote: port.remote,
      connectedAt: Date.now(),
      auth: port.auth,
      tokenExp: port.tokenExp,
    };
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server, [`port:${attachment.portId}`]);
    server.serializeAttachment(attachment);
    this.onPortAccepted(server, attachment);
    return new Response(null, {
      status: 101,
      webSocket: client,
      headers: descriptorMode ? { "Sec-WebSocket-Protocol": SUBPROTOCOL_V1 } : {},
    });
  }

  // -------------------------------------------------------------------------
  // SEAMS for the relay
  // -------------------------------------------------------------------------

  /** Called once a port's socket is accepted and its attachment written. The relay starts the session here. */
  protected onPortAccepted(_ws: WebSocket, _attachment: PortAttachment): void {}

  /** Called after the settings change (created, reconfigured). The relay applies limits here. */
  protected onConfigChanged(_config: SegmentConfig): void {}

  /**
   * (Re)starts the idle TTL: the alarm fires `ttlSeconds` from now. The relay should call this when the
   * last port disconnects, so the segment lives a full TTL after it went idle.
   */
  protected async armIdleTimer(): Promise<void> {
    const stored = await this.load();
    if (stored === null || stored.config.ttlSeconds === null) {
      await this.ctx.storage.deleteAlarm();
      return;
    }
    await this.ctx.storage.setAlarm(Date.now() + stored.config.ttlSeconds * 1000);
  }

  override webSocketMessage(_ws: WebSocket, _message: string | ArrayBuffer): void {}
  override webSocketClose(_ws: WebSocket, _code: number, _reason: string, _wasClean: boolean): void {}
  override webSocketError(_ws: WebSocket, _error: unknown): void {}

  // -------------------------------------------------------------------------
  // Storage
  // -------------------------------------------------------------------------

  /** The stored record (cached after the first read); null when the segment does not exist. */
  protected async load(): Promise<StoredSegment | null> {
    if (this.#stored === undefined) this.#stored = (await loadSegment(this.ctx.storage)) ?? null;
    return this.#stored;
  }

  private async store(segment: StoredSegment): Promise<void> {
    await saveSegment(this.ctx.storage, segment);
    this.#stored = segment;
    this.onConfigChanged(segment.config);
  }

  /** Erases everything: settings, port ids, the alarm. */
  private async wipe(): Promise<void> {
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.#stored = null;
  }

  /**
   * Port ids are never reused within a segment's life, so a stale id in a log cannot name a new port.
   * Synchronous storage, so two connects cannot interleave between the read and the write.
   */
  private allocatePortId(): number {
    const id = this.ctx.storage.kv.get<number>(NEXT_PORT_ID_KEY) ?? 1;
    this.ctx.storage.kv.put(NEXT_PORT_ID_KEY, id + 1);
    return id;
  }
}

/** Subprotocols the client offered in Sec-WebSocket-Protocol. */
function offeredSubprotocols(request: Request): string[] {
  const header = request.headers.get("Sec-WebSocket-Protocol");
  return header === null ? [] : header.split(",").map((name) => name.trim()).filter((name) => name !== "");
}

function sumCounters(stats: PortStats[]): SegmentCounters {
  const sum: SegmentCounters = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, dropped: 0 };
  for (const { counters } of stats) {
    sum.rxFrames += counters.rxFrames;
    sum.rxBytes += counters.rxBytes;
    sum.txFrames += counters.txFrames;
    sum.txBytes += counters.txBytes;
    for (const count of Object.values(counters.drops)) sum.dropped += count;
  }
  return sum;
}
