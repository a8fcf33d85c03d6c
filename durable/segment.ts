import { DurableObject } from "cloudflare:workers";
import { errorResponse, httpError, type HttpError } from "../contract/http-error.ts";
import { readPortRequestHeaders, type TokenLimits } from "../contract/port-request.ts";
import type {
  ConfigureOutcome, Env, LifecycleCounters, PortStats, RevokeOutcome, SegmentApi, SegmentConfig, SegmentCounters,
  SegmentDescription,
} from "../contract/segment-api.ts";
import type { CellLoad, CellMembership, CellReport, CellResetOutcome, TrunkAnswer } from "../contract/cell-api.ts";
import type { TrunkBatch } from "../datapath/cells/trunk-records.ts";
import type { LeaseReport } from "../datapath/ipam/lease-list.ts";
import { CellPlacement } from "./cells/placement.ts";
import { parseMac, type MacKey } from "../datapath/mac.ts";
import { CloseCode } from "../datapath/tunnel/close-codes.ts";
import { KEEPALIVE_REQUEST, KEEPALIVE_RESPONSE, SUBPROTOCOL_V1 } from "../datapath/tunnel/constants.ts";
import { applyConfigPatch, cellsChange, loadSegment, portsPerCell, saveSegment, type StoredSegment } from "./config.ts";
import { SegmentRelay, type SegmentCounters as RelayAndSwitchCounters } from "./relay.ts";
import { forgetSegment, recordSegment } from "./registry.ts";
import { IpamHost } from "./ipam-host.ts";
import { RESUME_GRACE_MS, RESUME_LEASE_RENEW_MS, SESSION_ROWS_PER_PORT, SessionStore } from "./sessions.ts";
import { RevocationList } from "./revocations.ts";
import {
  checkHelloSlots, checkTokenAdmission, closeExpiredTokens, closeRevokedToken, connectedTokenExpiry, newLifecycleCounters, nextTokenExpiry, portsOfToken,
  REFUSAL_COUNTERS, TOKEN_EPOCH_KEY,
} from "./token-lifecycle.ts";

const NEXT_PORT_ID_KEY = "next-port-id";
/** When an idle segment with a TTL deletes itself (ms since epoch); absent while ports are connected. */
export const IDLE_DEADLINE_KEY = "idle-deadline";
/** This incarnation's random epoch: tokens minted for it carry it as `sep`; a recreated segment gets a new one. */
/** When the alarm last renewed the resume rows of connected sessions (ms since epoch). */
const LEASES_RENEWED_KEY = "resume-leases-renewed";
/** A revocation whose token's expiry the segment does not know lasts as long as the longest token POST tokens mints. */
const UNKNOWN_EXPIRY_REVOCATION_MS = 30 * 86400 * 1000;

/** Segment-level counters, kept in storage so hibernation does not reset them. */
const RELAY_COUNTERS_KEY = "relay-counters";
/** Join-token lifecycle and admission counters (LifecycleCounters). */
const LIFECYCLE_COUNTERS_KEY = "lifecycle-counters";
/** How many times this object was constructed: each wake from hibernation (or restart) adds one. */
const INSTANCE_STARTS_KEY = "instance-starts";

/**
 * One LAN segment: its forwarding table and the ring state of every attached
 * port. Admin calls arrive as RPC from the Worker; ports arrive as WebSocket
 * upgrades and live on as hibernatable sockets whose attachments carry their
 * state. The relay (durable/relay.ts) owns the copy/completion path.
 */
export class Segment extends DurableObject<Env> implements SegmentApi {
  /** Built once the stored config is known; null while the segment does not exist. */
  private relay: SegmentRelay | null = null;
  /** The IPAM service, a port of the relay's switch when the segment has `dhcp`. */
  private readonly ipam = new IpamHost(() => this.relay?.switch ?? null, this.ctx.storage.kv);
  private readonly sessions: SessionStore;
  private readonly revocations: RevocationList;
  /** The stored record: undefined = not read yet, null = the segment does not exist. */
  #stored: StoredSegment | null | undefined;
  /** Cells (docs/cells.md): null while the segment has one cell, the only path `cells: 1` takes. */
  private readonly cells: CellPlacement;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sessions = new SessionStore(ctx.storage);
    this.revocations = new RevocationList(ctx.storage);
    this.cells = new CellPlacement(ctx, env);
    // Keepalives must not wake a hibernated segment: the runtime answers them.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(KEEPALIVE_REQUEST, KEEPALIVE_RESPONSE));
    // After hibernation the constructor runs again: rebuild every port from its socket before any event.
    void ctx.blockConcurrencyWhile(async () => {
      if ((await this.load()) !== null) ctx.storage.kv.put(INSTANCE_STARTS_KEY, (ctx.storage.kv.get<number>(INSTANCE_STARTS_KEY) ?? 0) + 1);
      this.cells.started();
    });
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
    const cellChange = cellsChange(stored?.config.cells, next.value.cells);
    if (cellChange !== null) return { ok: false, error: { code: "not-implemented", message: cellChange } };
    await this.store({ name, config: next.value });
    await this.cells.configured(name, next.value);
    // The constructor counted nothing (there was no segment yet): this instance is the segment's first start.
    if (stored === null) {
      this.ctx.storage.kv.put(INSTANCE_STARTS_KEY, 1);
      this.ctx.storage.kv.put(TOKEN_EPOCH_KEY, newEpoch());
    }
    await this.armIdleTimer();
    return { ok: true, created: stored === null, config: next.value };
  }

  /** Settings, ports, forwarding-table summary and counters; null when the segment does not exist. */
  async describe(): Promise<SegmentDescription | null> {
    const stored = await this.load();
    if (stored === null) return null;
    const description = this.describeHere(stored);
    return this.cells.active ? await this.cells.describeAll(description) : description;
  }

  /** This object's own view (one cell's, on a segment of several). */
  private describeHere(stored: StoredSegment): SegmentDescription {
    const relay = this.relayFor(stored);
    return {
      name: stored.name,
      config: stored.config,
      ports: relay.listPorts(),
      forwardingTable: relay.fdbSummary(),
      counters: {
        ...sumCounters(relay.portStats()), ...relay.counters, ...this.lifecycleCounters(), instanceStarts: this.ctx.storage.kv.get<number>(INSTANCE_STARTS_KEY) ?? 0,
      },
      queuedBytes: relay.queuedBytes,
    };
  }

  // ---- cells (docs/cells.md); none of this runs for a segment of one cell ----

  /** A trunk call from a peer cell. */
  async trunk(batch: TrunkBatch): Promise<TrunkAnswer> {
    const stored = await this.load();
    const host = stored === null ? null : this.cells.hostFor(this.relayFor(stored), stored.config);
    if (host === null) return { ok: false, code: "not-a-cell", message: "this Durable Object is not a cell of a segment" };
    const answer = host.receive(batch);
    // The home's IPAM service may have answered a DHCP message that came over the trunk.
    this.ipam.persist();
    this.saveCounters();
    return answer;
  }

  /** The home makes this object one of the segment's cells. */
  async adoptCell(membership: CellMembership, config: SegmentConfig): Promise<void> {
    const stored = await this.load();
    if (stored === null) this.ctx.storage.kv.put(INSTANCE_STARTS_KEY, 1);
    // Not store(): a cell is not listed in the registry, only its home is.
    await saveSegment(this.ctx.storage, { name: membership.segment, config });
    this.#stored = { name: membership.segment, config };
    this.relay?.reconfigure(config);
    // Tokens are minted by the home and carry its epoch: every cell checks them against the home's.
    if (membership.tokenEpoch !== undefined) this.ctx.storage.kv.put(TOKEN_EPOCH_KEY, membership.tokenEpoch);
    this.cells.adopt(membership);
  }

  /** The home resets one of its cells (dev mode's reset route, for tests). */
  async resetCell(index: number): Promise<CellResetOutcome | null> {
    if ((await this.load()) === null) return null;
    return this.cells.resetCell(index, () => this.abortNow());
  }

  /** Aborts this instance as a crash would (its home's resetCell). */
  async abortCell(): Promise<void> {
    this.abortNow();
  }

  /** `ctx.abort` throws; the throw after it only tells the type checker that nothing follows. */
  private abortNow(): never {
    this.ctx.abort("cell reset by the admin API (dev mode)");
    throw new Error("cell reset");
  }

  /** This cell's ports, and those `tokenId` opened, for the home's placement and segment-wide limits (cheaper than describeCell). */
  async cellLoad(tokenId: string | null): Promise<CellLoad | null> {
    const stored = await this.load();
    if (stored === null) return null;
    return loadOf(this.relayFor(stored), tokenId);
  }

  /** This cell's ports, counters and table for the home's describe. */
  async describeCell(): Promise<CellReport | null> {
    const stored = await this.load();
    if (stored === null) return null;
    const cell = this.cells.describeLocal(this.relayFor(stored), stored.config);
    if (cell === null) return null;
    const { ports, counters, forwardingTable, queuedBytes } = this.describeHere(stored);
    return { ports, cell, counters, forwardingTable, queuedBytes };
  }

  /** Per-port counters; null when the segment does not exist. */
  async portStats(): Promise<PortStats[] | null> {
    const stored = await this.load();
    return stored === null ? null : this.relayFor(stored).portStats();
  }

  /** The IPAM service's leases; null when the segment does not exist, `{ off: true }` when it has no `dhcp`. */
  async leases(): Promise<LeaseReport | { off: true } | null> {
    const stored = await this.load();
    if (stored === null) return null;
    this.relayFor(stored);
    return this.ipam.leases(Date.now()) ?? { off: true };
  }

  /** The segment's `allowedOrigins` (null: any origin, or no such segment); the Worker checks browser joins against it. */
  async allowedOrigins(): Promise<string[] | null> {
    return (await this.load())?.config.allowedOrigins ?? null;
  }

  /** The segment's epoch (made at creation; made now for a segment created before epochs existed); null when it does not exist. */
  async tokenEpoch(): Promise<string | null> {
    if ((await this.load()) === null) return null;
    return this.epoch();
  }

  /**
   * Revokes token `jti`: later joins get 403 `token-revoked`, its open ports are closed (4008 "token revoked").
   * The entry lasts until the token's expiry when a connected port shows it, else 30 days (the longest minted lifetime).
   */
  async revokeToken(jti: string): Promise<RevokeOutcome | null> {
    const stored = await this.load();
    if (stored === null) return null;
    const relay = this.relayFor(stored);
    const now = Date.now();
    const tokenExp = connectedTokenExpiry(relay.runtimes(), jti);
    const until = tokenExp !== undefined ? tokenExp * 1000 : now + UNKNOWN_EXPIRY_REVOCATION_MS;
    const outcome = this.revocations.add(jti, until, now);
    if (outcome === "full") {
      return { ok: false, error: { code: "revocation-list-full", message: "the segment's revocation list is full (10,000 unexpired entries): rotate the token key instead" } };
    }
    const closedHere = closeRevokedToken(relay, jti);
    this.countLifecycle("tokenRevocationCloses", closedHere);
    // The home passes it on: every cell keeps the revocation and closes the token's ports it holds.
    const portsClosed = closedHere + await this.cells.revokeOnOthers(jti);
    this.saveCounters();
    if (closedHere > 0 && relay.portCount === 0) await this.armIdleTimer();
    else await this.scheduleAlarm();
    return { ok: true, alreadyRevoked: outcome === "already-revoked", portsClosed, until: new Date(until).toISOString() };
  }

  /** Disconnects every port (close code 4010) and erases the segment; null when it does not exist. */
  async destroy(): Promise<{ portsClosed: number } | null> {
    const stored = await this.load();
    if (stored === null) return null;
    let portsClosed = this.relayFor(stored).closeAll(CloseCode.SegmentDeleted, "segment deleted");
    portsClosed += await this.cells.destroyOthers();
    await this.wipe();
    return { portsClosed };
  }

  /**
   * The one alarm: closes ports that never said HELLO and ports whose join token
   * expired (4008), ages the forwarding table, renews the resume leases of connected
   * sessions, sweeps a page of expired resume rows and revocations, and deletes a
   * segment that stayed idle for its TTL. Then it schedules itself for the earliest
   * next deadline (docs/relay.md, "The alarm").
   */
  override async alarm(): Promise<void> {
    const stored = await this.load();
    if (stored === null) return;
    const relay = this.relayFor(stored);
    const now = Date.now();
    const idleDeadline = this.ctx.storage.kv.get<number>(IDLE_DEADLINE_KEY);
    if (idleDeadline !== undefined && idleDeadline <= now && relay.portCount === 0) {
      // A segment of several cells is idle only when no cell has ports; the home asks them.
      if (!this.cells.active || (await this.cells.othersIdle())) {
        await this.destroy();
        return;
      }
      this.ctx.storage.kv.put(IDLE_DEADLINE_KEY, now + (stored.config.ttlSeconds ?? 0) * 1000);
    }
    const connected = relay.portCount;
    relay.expireHellos();
    this.countLifecycle("tokenExpiryCloses", closeExpiredTokens(relay, now));
    relay.age();
    this.cells.age(relay, stored.config);
    if (this.cells.active) {
      // The other cells answer ARP from the IPAM service's bindings: a lease that ended leaves them now.
      this.ipam.sweep(now);
      this.cells.pump(relay, stored.config);
    }
    this.saveCounters();
    this.renewResumeLeases(relay, now);
    // A page each; rows left expired keep the next alarm due at once (their expiry is in the past).
    this.sessions.sweep(now);
    this.revocations.sweep(now);
    // The last ports just closed, or none came back after a restart (no close events then): start the idle TTL.
    if (relay.portCount === 0 && (connected > 0 || idleDeadline === undefined)) await this.armIdleTimer();
    else await this.scheduleAlarm();
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
    if (port.auth === "none" && port.kind !== "member") {
      return errorResponse(httpError(403, "token-required-for-kind", `an open segment admits members without a token; a ${port.kind} port needs a ${port.kind} token`));
    }
    const relay = this.relayFor(stored);
    const mode = offeredSubprotocols(request).includes(SUBPROTOCOL_V1) ? "descriptor" : "raw";
    const now = Date.now();
    const tokenRefusal = checkTokenAdmission(port, mode, {
      epoch: this.epoch(), createdAtMs: Date.parse(stored.config.createdAt), maxPorts: stored.config.maxPorts,
      isRevoked: (jti) => this.revocations.has(jti, now),
    }, relay.runtimes());
    if (tokenRefusal !== null) return this.refuseJoin(tokenRefusal);
    // On a segment of several cells the home checks the segment-wide limits (maxPorts, the token's
    // maxPorts) over every cell's live count, then places the port; the cell it lands on admits it.
    const elsewhere = this.cells.active
      ? await this.cells.placeElsewhere(request, stored.config, loadOf(relay, port.token?.id ?? null), port.token)
      : null;
    if (elsewhere !== null) return elsewhere;
    if (relay.portCount >= portsPerCell(stored.config)) {
      return errorResponse(httpError(503, "segment-full", `segment ${JSON.stringify(stored.name)} has its maximum of ${portsPerCell(stored.config)} ports connected${this.cells.active ? " on this cell" : ""}`));
    }
    const helloRefusal = checkHelloSlots(port, mode, portsPerCell(stored.config), relay.runtimes());
    if (helloRefusal !== null) return this.refuseJoin(helloRefusal);

    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server);
    relay.accept(server, {
      portId: this.allocatePortId(), mode, kind: port.kind, boundMacs: boundMacsOf(port.macs), remote: port.remote,
      auth: port.auth, tokenExp: port.tokenExp,
    });
    this.recordTokenFacts(relay, server, port.token?.id ?? null, port.token?.limits ?? null);
    this.ctx.storage.kv.delete(IDLE_DEADLINE_KEY);
    this.saveCounters();
    await this.scheduleAlarm();
    return new Response(null, {
      status: 101,
      webSocket: client,
      headers: mode === "descriptor" ? { "Sec-WebSocket-Protocol": SUBPROTOCOL_V1 } : {},
    });
  }

  // -------------------------------------------------------------------------
  // Hibernatable socket events: all three must exist
  // -------------------------------------------------------------------------

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const relay = await this.relayForSocket(ws);
    relay?.onMessage(ws, message);
    this.ipam.persist();
    this.cells.pump(this.relay, this.#stored?.config);
    this.saveCounters();
  }

  override async webSocketClose(ws: WebSocket, code: number, _reason: string, _wasClean: boolean): Promise<void> {
    await this.portGone(ws, code);
  }

  override async webSocketError(ws: WebSocket, _error: unknown): Promise<void> {
    await this.portGone(ws, 1006);
  }

  /** A socket ended: the port leaves; the last one to leave starts the idle TTL. */
  private async portGone(ws: WebSocket, code: number): Promise<void> {
    const relay = await this.relayForSocket(ws);
    if (relay === null) return;
    relay.onClose(ws, code);
    this.cells.pump(this.relay, this.#stored?.config);
    this.saveCounters();
    try {
      ws.close(1000, "closed");
    } catch {
      // Already closed from our side.
    }
    if (relay.portCount === 0) await this.armIdleTimer();
  }

  // -------------------------------------------------------------------------
  // Relay and alarm
  // -------------------------------------------------------------------------

  /** The relay for an existing segment, built (and restored from the sockets) on first use. */
  private relayFor(stored: StoredSegment): SegmentRelay {
    if (this.relay === null) {
      this.relay = new SegmentRelay(stored.config, this.sessions, Date.now, this.ctx.storage.kv.get<RelayAndSwitchCounters>(RELAY_COUNTERS_KEY));
      this.relay.restore(this.ctx.getWebSockets());
      this.ipam.configure(this.cells.runsServices ? stored.config.dhcp : null, Date.now());
      this.cells.hostFor(this.relay, stored.config);
    }
    return this.relay;
  }

  /** The relay when the segment exists; a socket of a deleted segment is closed. */
  private async relayForSocket(ws: WebSocket): Promise<SegmentRelay | null> {
    const stored = await this.load();
    if (stored !== null) return this.relayFor(stored);
    try {
      ws.close(CloseCode.SegmentDeleted, "segment deleted");
    } catch {
      // Already closed.
    }
    return null;
  }

  /** Answers a connect refused by a lifecycle rule, and counts it. */
  private refuseJoin(error: HttpError): Response {
    const counter = REFUSAL_COUNTERS[error.code];
    if (counter !== undefined) this.countLifecycle(counter, 1);
    return errorResponse(error);
  }

  /** The stored lifecycle counters. */
  private lifecycleCounters(): LifecycleCounters {
    return { ...newLifecycleCounters(), ...this.ctx.storage.kv.get<LifecycleCounters>(LIFECYCLE_COUNTERS_KEY) };
  }

  /** Adds to a lifecycle counter (rare events: refusals, token closes, evictions), in storage. */
  private countLifecycle(counter: keyof LifecycleCounters, by: number): void {
    if (by === 0) return;
    const counters = this.lifecycleCounters();
    counters[counter] += by;
    this.ctx.storage.kv.put(LIFECYCLE_COUNTERS_KEY, counters);
  }

  /** Keeps the token's id and limits in the port's attachment (revocation, maxPorts, the policer), across hibernation. */
  private recordTokenFacts(relay: SegmentRelay, ws: WebSocket, tokenId: string | null, limits: TokenLimits | null): void {
    if (tokenId === null && limits === null) return;
    const runtime = relay.runtimes().find((candidate) => candidate.ws === ws);
    if (runtime === undefined) return;
    runtime.attachment.tokenId = tokenId;
    runtime.attachment.tokenLimits = limits;
    // The token's limits override the segment's for this port (the policer in datapath/segment-switch.ts).
    relay.switch.setPortLimits(runtime.port, limits);
    relay.persist(runtime);
  }

  /**
   * Connected sessions keep their resume rows alive by lease: every RESUME_LEASE_RENEW_MS the alarm moves their
   * expiry to now + RESUME_GRACE_MS, so after a crash (no close event) a row outlives its socket by at most the grace.
   */
  private renewResumeLeases(relay: SegmentRelay, now: number): void {
    const renewed = this.ctx.storage.kv.get<number>(LEASES_RENEWED_KEY) ?? 0;
    if (now < renewed + RESUME_LEASE_RENEW_MS) return;
    const connected = relay.runtimes().filter(({ attachment }) => attachment.phase === "open" && attachment.resumeToken !== undefined);
    this.sessions.renew(connected.map(({ attachment }) => attachment.sessionId), now + RESUME_GRACE_MS);
    this.ctx.storage.kv.put(LEASES_RENEWED_KEY, now);
  }

  /** This incarnation's epoch, made on first use for a segment created before epochs existed. */
  private epoch(): string {
    let epoch = this.ctx.storage.kv.get<string>(TOKEN_EPOCH_KEY);
    if (epoch === undefined) {
      epoch = newEpoch();
      this.ctx.storage.kv.put(TOKEN_EPOCH_KEY, epoch);
    }
    return epoch;
  }

  /** Stores the segment-level counters when they changed (rarely: connects, closes, errors), and resume-row evictions. */
  private saveCounters(): void {
    if (this.sessions.evicted > 0) {
      this.countLifecycle("resumeRowsEvicted", this.sessions.evicted);
      this.sessions.evicted = 0;
    }
    if (this.relay === null || !this.relay.countersChanged) return;
    this.relay.countersSaved();
    this.ctx.storage.kv.put(RELAY_COUNTERS_KEY, this.relay.counters);
  }

  /** (Re)starts the idle TTL when the segment has one and no ports; then reschedules the alarm. */
  private async armIdleTimer(): Promise<void> {
    const stored = await this.load();
    if (stored === null) return;
    const idle = this.relay === null || this.relay.portCount === 0;
    // Only the home of a segment of several cells keeps its TTL (a cell alone never deletes the segment).
    if (stored.config.ttlSeconds !== null && idle && this.cells.keepsTtl) {
      this.ctx.storage.kv.put(IDLE_DEADLINE_KEY, Date.now() + stored.config.ttlSeconds * 1000);
    } else {
      this.ctx.storage.kv.delete(IDLE_DEADLINE_KEY);
    }
    await this.scheduleAlarm();
  }

  /** Sets the alarm to the earliest pending deadline, or clears it. */
  private async scheduleAlarm(): Promise<void> {
    const now = Date.now();
    const runtimes = this.relay?.runtimes() ?? [];
    const leasesRenewed = this.ctx.storage.kv.get<number>(LEASES_RENEWED_KEY) ?? now;
    const deadlines = [
      this.ctx.storage.kv.get<number>(IDLE_DEADLINE_KEY),
      this.relay?.nextHelloDeadline(),
      this.relay?.nextAgingDeadline(),
      nextTokenExpiry(runtimes),
      // While ports are connected the alarm comes at least this often (lease renewal, and a look at the idle TTL).
      runtimes.length > 0 ? Math.max(now, leasesRenewed + RESUME_LEASE_RENEW_MS) : undefined,
      this.sessions.nextExpiry(),
      this.revocations.nextExpiry(),
      this.cells.active ? this.ipam.nextLeaseExpiry() : undefined,
    ].filter((deadline): deadline is number => deadline !== undefined);
    if (deadlines.length === 0) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(Math.min(...deadlines));
  }

  // -------------------------------------------------------------------------
  // Storage
  // -------------------------------------------------------------------------

  /** The stored record (cached after the first read); null when the segment does not exist. */
  protected async load(): Promise<StoredSegment | null> {
    if (this.#stored === undefined) {
      this.#stored = (await loadSegment(this.ctx.storage)) ?? null;
      if (this.#stored !== null) this.sessions.maxRows = SESSION_ROWS_PER_PORT * portsPerCell(this.#stored.config);
    }
    return this.#stored;
  }

  private async store(segment: StoredSegment): Promise<void> {
    await saveSegment(this.ctx.storage, segment);
    this.#stored = segment;
    this.sessions.maxRows = SESSION_ROWS_PER_PORT * portsPerCell(segment.config);
    this.relay?.reconfigure(segment.config);
    // A home of several cells builds its relay (and IPAM service) now if it had none, so that the other
    // cells hear of the service's new bindings at once.
    if (this.relay === null && this.cells.active) this.relayFor(segment);
    if (this.relay !== null) {
      this.ipam.configure(this.cells.runsServices ? segment.config.dhcp : null, Date.now());
      // The other cells hear of the service's new ARP bindings (or that it is gone) now, not at the next event.
      this.cells.pump(this.relay, segment.config);
    }
    await recordSegment(this.env, { name: segment.name, openJoin: segment.config.openJoin, createdAt: segment.config.createdAt });
  }

  /** Erases everything: settings, port ids, sessions, the alarm; the relay goes with it. */
  private async wipe(): Promise<void> {
    if (this.#stored) await forgetSegment(this.env, this.#stored.name);
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.sessions.reset();
    this.revocations.reset();
    this.#stored = null;
    this.relay = null;
    this.ipam.reset();
    this.cells.forget();
  }

  /**
   * Port ids are never reused within a segment's life, so a stale id in a log cannot name a new port.
   * Synchronous storage, so two connects cannot interleave between the read and the write.
   */
  private allocatePortId(): number {
    const id = this.ctx.storage.kv.get<number>(NEXT_PORT_ID_KEY) ?? 1;
    this.ctx.storage.kv.put(NEXT_PORT_ID_KEY, id + 1);
    return this.cells.portIdBase + id;
  }
}

/** A random epoch id (base64url of 12 bytes). */
function newEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Subprotocols the client offered in Sec-WebSocket-Protocol. */
function offeredSubprotocols(request: Request): string[] {
  const header = request.headers.get("Sec-WebSocket-Protocol");
  return header === null ? [] : header.split(",").map((name) => name.trim()).filter((name) => name !== "");
}

/** The token's MAC binding as keys, or null when the token binds none. */
function boundMacsOf(macs: readonly string[]): MacKey[] | null {
  if (macs.length === 0) return null;
  const keys: MacKey[] = [];
  for (const text of macs) {
    const parsed = parseMac(text);
    if (parsed.ok) keys.push(parsed.value);
  }
  return keys;
}

function sumCounters(stats: PortStats[]): Omit<SegmentCounters, keyof RelayAndSwitchCounters | keyof LifecycleCounters | "instanceStarts"> {
  const sum = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, dropped: 0 };
  for (const { counters } of stats) {
    sum.rxFrames += counters.rxFrames;
    sum.rxBytes += counters.rxBytes;
    sum.txFrames += counters.txFrames;
    sum.txBytes += counters.txBytes;
    for (const count of Object.values(counters.drops)) sum.dropped += count;
  }
  return sum;
}

/** A relay's load for the home's placement and segment-wide limits: its ports, and those `tokenId` opened. */
function loadOf(relay: SegmentRelay, tokenId: string | null): CellLoad {
  return { ports: relay.portCount, tokenPorts: portsOfToken(relay.runtimes(), tokenId) };
}
