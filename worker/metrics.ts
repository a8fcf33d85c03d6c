import type { PortStats, SegmentDescription } from "../contract/segment-api.ts";
import { PORT_KINDS } from "../datapath/port-kind.ts";
import { authorizeAdmin, bearerToken, type AdminAccess } from "./auth.ts";
import { configuredSecret, type Env } from "./env.ts";
import { errorResponse, httpError, httpFail, type HttpResult } from "./http.ts";
import type { RouteContext } from "./router.ts";

// `GET /v1/segments/:name/metrics`: the segment in the Prometheus text exposition
// format (version 0.0.4), rendered from the same two RPCs as the admin API's
// `GET /v1/segments/:name` and `/ports`. Names and labels: docs/api.md "Metrics".

/** The optional read-only token that may read metrics (and nothing else). */
type MetricsEnv = Env & { EDGELAN_METRICS_TOKEN?: string };

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The route handler: admin token or metrics token, then the segment's metrics (404 when it does not exist). */
export async function getMetrics({ request, env, segment }: RouteContext): Promise<Response> {
  const admitted = await authorizeMetrics(request, env);
  if (!admitted.ok) return errorResponse(admitted.error);
  const stub = env.SEGMENTS.getByName(segment);
  const [description, ports] = await Promise.all([stub.describe(), stub.portStats()]);
  if (description === null || ports === null) {
    return errorResponse(httpError(404, "segment-not-found", `segment ${JSON.stringify(segment)} does not exist: create it with PUT /v1/segments/${segment}`));
  }
  return new Response(renderMetrics(description, ports), { headers: { "content-type": METRICS_CONTENT_TYPE } });
}

/**
 * Admits the admin token (or open dev mode) and, when `EDGELAN_METRICS_TOKEN` is set, that token too.
 * A wrong bearer token is 401 `metrics-token-invalid` when a metrics token exists, else the admin errors.
 */
export async function authorizeMetrics(request: Request, env: MetricsEnv): Promise<HttpResult<AdminAccess | "metrics">> {
  const asAdmin = await authorizeAdmin(request, env);
  const metricsToken = configuredSecret(env.EDGELAN_METRICS_TOKEN);
  if (asAdmin.ok || metricsToken === null || bearerToken(request) === null) return asAdmin;
  // The same constant-time comparison, with the metrics token in the admin token's place.
  const asReader = await authorizeAdmin(request, { ...env, EDGELAN_ADMIN_TOKEN: metricsToken, EDGELAN_DEV_MODE: undefined });
  if (asReader.ok) return { ok: true, value: "metrics" };
  return httpFail(401, "metrics-token-invalid", "the bearer token is neither the admin token nor EDGELAN_METRICS_TOKEN", { "WWW-Authenticate": 'Bearer realm="edgelan"' });
}

type Labels = Readonly<Record<string, string>>;

/** One metric family: `# HELP`, `# TYPE` and its samples. */
interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples: Array<{ labels: Labels; value: number }>;
}

/** The segment-level counters that are cumulative over the segment's life, with their metric names. */
const SEGMENT_COUNTERS: ReadonlyArray<[key: string, name: string, help: string]> = [
  ["portsAccepted", "edgelan_segment_ports_accepted_total", "Ports the segment accepted (WebSocket upgrades)."],
  ["portsClosed", "edgelan_segment_ports_closed_total", "Ports that left the segment."],
  ["hellosRefused", "edgelan_segment_hellos_refused_total", "HELLOs the segment refused."],
  ["sessionsResumed", "edgelan_segment_sessions_resumed_total", "Sessions resumed after a reconnect."],
  ["malformedMessages", "edgelan_segment_malformed_messages_total", "Tunnel messages that did not decode."],
  ["protocolErrors", "edgelan_segment_protocol_errors_total", "Closes in the 4000 range the segment initiated."],
  ["windowOverruns", "edgelan_segment_window_overruns_total", "TX descriptors beyond the granted window."],
  ["flushed", "edgelan_segment_flushed_total", "Frames still queued for a port when it closed or the object was evicted."],
  ["suppressed", "edgelan_segment_suppressed_total", "Broadcasts a service port (ARP proxy) answered instead of flooding them."],
  ["flushedOnEviction", "edgelan_segment_flushed_on_eviction_total", "The part of flushed lost to an eviction of the object."],
  ["tokenExpiryCloses", "edgelan_segment_token_expiry_closes_total", "Ports closed (4008) because their join token expired."],
  ["tokenRevocationCloses", "edgelan_segment_token_revocation_closes_total", "Ports closed (4008) because their join token was revoked."],
  ["joinsRefusedStaleToken", "edgelan_segment_joins_refused_stale_token_total", "Connects refused: token from before the segment was recreated."],
  ["joinsRefusedRevoked", "edgelan_segment_joins_refused_revoked_total", "Connects refused: revoked token."],
  ["joinsRefusedPortLimit", "edgelan_segment_joins_refused_port_limit_total", "Connects refused: the token's maxPorts reached."],
  ["joinsRefusedRaw", "edgelan_segment_joins_refused_raw_total", "Connects refused: the token forbids raw mode."],
  ["joinsRefusedHelloSlots", "edgelan_segment_joins_refused_hello_slots_total", "Connects refused: too many sockets in the HELLO phase."],
  ["resumeRowsEvicted", "edgelan_segment_resume_rows_evicted_total", "Resume rows evicted at the segment's bound (2 x maxPorts)."],
  ["instanceStarts", "edgelan_segment_instance_starts_total", "Times the segment object was constructed (creation, wakes from hibernation, restarts)."],
];

/** Renders the exposition text. Every family has HELP and TYPE; label values are escaped. */
export function renderMetrics(description: SegmentDescription, ports: readonly PortStats[]): string {
  const segment = { segment: description.name };
  const families: Family[] = [...portFamilies(segment, ports), ...segmentFamilies(segment, description, ports)];
  const lines: string[] = [];
  for (const family of families) {
    lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) lines.push(`${family.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`);
  }
  return `${lines.join("\n")}\n`;
}

function portFamilies(segment: Labels, ports: readonly PortStats[]): Family[] {
  const family = (name: string, help: string, type: Family["type"]): Family => ({ name, help, type, samples: [] });
  const rxFrames = family("edgelan_port_rx_frames_total", "Frames the segment received from the port.", "counter");
  const rxBytes = family("edgelan_port_rx_bytes_total", "Bytes the segment received from the port.", "counter");
  const txFrames = family("edgelan_port_tx_frames_total", "Frames the segment delivered to the port.", "counter");
  const txBytes = family("edgelan_port_tx_bytes_total", "Bytes the segment delivered to the port.", "counter");
  const drops = family("edgelan_port_drops_total", "Frames dropped at the port, by reason (docs/api.md).", "counter");
  const queuedFrames = family("edgelan_port_queued_frames", "Frames queued towards the port for lack of RX credit.", "gauge");
  const queuedBytes = family("edgelan_port_queued_bytes", "Bytes queued towards the port for lack of RX credit.", "gauge");
  const credits = family("edgelan_port_rx_credits", "RX buffers the port posted and the segment has not filled (descriptor ports).", "gauge");
  for (const port of ports) {
    const labels = { ...segment, port: String(port.portId), kind: port.kind, mode: port.mode };
    rxFrames.samples.push({ labels, value: port.counters.rxFrames });
    rxBytes.samples.push({ labels, value: port.counters.rxBytes });
    txFrames.samples.push({ labels, value: port.counters.txFrames });
    txBytes.samples.push({ labels, value: port.counters.txBytes });
    for (const [reason, value] of Object.entries(port.counters.drops)) drops.samples.push({ labels: { ...labels, reason }, value });
    queuedFrames.samples.push({ labels, value: port.queuedFrames });
    queuedBytes.samples.push({ labels, value: port.queuedBytes });
    if (port.credits !== null) credits.samples.push({ labels, value: port.credits });
  }
  return [rxFrames, rxBytes, txFrames, txBytes, drops, queuedFrames, queuedBytes, credits];
}

function segmentFamilies(segment: Labels, description: SegmentDescription, ports: readonly PortStats[]): Family[] {
  const byKindAndMode: Family = { name: "edgelan_ports", help: "Ports connected now, by kind and mode.", type: "gauge", samples: [] };
  for (const kind of PORT_KINDS) {
    for (const mode of ["descriptor", "raw"] as const) {
      const value = ports.filter((port) => port.kind === kind && port.mode === mode).length;
      byKindAndMode.samples.push({ labels: { ...segment, kind, mode }, value });
    }
  }
  const counters = description.counters as unknown as Record<string, unknown>;
  const cumulative: Family[] = SEGMENT_COUNTERS.flatMap(([key, name, help]) => {
    const value = counters[key];
    return typeof value === "number" ? [{ name, help, type: "counter" as const, samples: [{ labels: segment, value }] }] : [];
  });
  const table = description.forwardingTable;
  return [
    byKindAndMode,
    ...cumulative,
    { name: "edgelan_segment_queued_bytes", help: "Bytes queued towards all ports together (bounded by segmentQueueBytes).", type: "gauge", samples: [{ labels: segment, value: description.queuedBytes }] },
    { name: "edgelan_segment_max_ports", help: "The segment's maxPorts setting.", type: "gauge", samples: [{ labels: segment, value: description.config.maxPorts }] },
    {
      name: "edgelan_fdb_entries", help: "Forwarding-table entries, learned and static (registered).", type: "gauge",
      samples: [{ labels: { ...segment, type: "learned" }, value: table.learned }, { labels: { ...segment, type: "static" }, value: table.static }],
    },
    { name: "edgelan_fdb_moves_total", help: "Learned MACs seen on another port.", type: "counter", samples: [{ labels: segment, value: table.moves }] },
    { name: "edgelan_fdb_conflicts_total", help: "Frames from another port's registered MAC.", type: "counter", samples: [{ labels: segment, value: table.conflicts }] },
    {
      name: "edgelan_fdb_limit_hits_total", help: "MACs not learned because a learn limit was reached, by scope.", type: "counter",
      samples: [{ labels: { ...segment, scope: "port" }, value: table.portLimitHits }, { labels: { ...segment, scope: "segment" }, value: table.segmentLimitHits }],
    },
  ];
}

/** `{a="x",b="y"}` with `\`, `"` and newlines escaped, or nothing for no labels. */
function formatLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "+Inf" : "-Inf";
  return String(value);
}
