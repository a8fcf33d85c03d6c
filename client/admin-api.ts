// The relay's management API over fetch (docs/api.md), for the observation
// tools: capture (forwarding table, monitor tokens), top (ports, counters)
// and the dashboard. Runs in Node and in browsers. Only the fields these tools
// read are typed; the API returns more.
import type { FdbEntryView } from "../datapath/fdb.ts";

/** A port as `GET /v1/segments/:name` lists it. */
export interface PortView {
  portId: number;
  kind: string;
  mode: string;
  phase: string;
  macs: string[];
  remote: string;
  connectedSince: string;
}

/** A forwarding-table entry, as the relay's table describes it. */
export type { FdbEntryView };

/** `GET /v1/segments/:name`. */
export interface SegmentView {
  name: string;
  config: Record<string, unknown>;
  ports: PortView[];
  forwardingTable: { learned: number; static: number; entries: FdbEntryView[] } & Record<string, unknown>;
  counters: Record<string, number>;
  queuedBytes: number;
}

/** One port's counters from `GET /v1/segments/:name/ports`. */
export interface PortStatsView {
  portId: number;
  kind: string;
  mode: string;
  credits: number | null;
  queuedFrames: number;
  queuedBytes: number;
  counters: { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: Record<string, number> };
}

/** A refused or failed call: the HTTP status (0 when the relay could not be reached) and the relay's error code and message. */
export class AdminApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = "AdminApiError";
  }
}

/** Calls the management API of one relay with one admin token (none in open dev mode). */
export class AdminApi {
  /**
   * @param relay base URL, e.g. `http://127.0.0.1:8787` (ws/wss are accepted and mapped to http/https)
   * @param adminToken sent as `Authorization: Bearer`; undefined for a relay in open dev mode
   */
  constructor(readonly relay: string, private readonly adminToken: string | undefined) {}

  /** The segment's description (ports, forwarding table, counters, config). */
  segment(name: string): Promise<SegmentView> {
    return this.call("GET", segmentPath(name)) as Promise<SegmentView>;
  }

  /** Per-port counters. */
  async ports(name: string): Promise<PortStatsView[]> {
    return ((await this.call("GET", `${segmentPath(name)}/ports`)) as { ports: PortStatsView[] }).ports;
  }

  /** Mints a join token of `role` for the segment. */
  async mintToken(name: string, role: "member" | "bridge" | "monitor", ttlSeconds: number): Promise<string> {
    return ((await this.call("POST", `${segmentPath(name)}/tokens`, { role, ttlSeconds })) as { token: string }).token;
  }

  /** One call; resolves with the JSON body, rejects with an AdminApiError. */
  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(new URL(path, httpBase(this.relay)), {
        method, body: body === undefined ? undefined : JSON.stringify(body),
        headers: { "content-type": "application/json", ...(this.adminToken === undefined ? {} : { authorization: `Bearer ${this.adminToken}` }) },
      });
    } catch (error) {
      const cause = (error as Error).cause ?? error;
      throw new AdminApiError(0, "unreachable", `cannot reach the relay at ${this.relay}: ${String(cause)}`);
    }
    const payload = (await response.json().catch(() => ({}))) as { error?: string; message?: string };
    if (!response.ok) {
      throw new AdminApiError(response.status, payload.error ?? "http-error", `relay answered ${response.status} ${payload.error ?? ""}: ${payload.message ?? "(no message)"}`);
    }
    return payload;
  }
}

/** `/v1/segments/<name>` with the name escaped. */
export function segmentPath(name: string): string {
  return `/v1/segments/${encodeURIComponent(name)}`;
}

/** The http(s) origin for a relay given as http(s) or ws(s) URL. */
export function httpBase(relay: string): string {
  const url = new URL(relay);
  if (url.protocol === "ws:") url.protocol = "http:";
  else if (url.protocol === "wss:") url.protocol = "https:";
  return url.origin;
}
