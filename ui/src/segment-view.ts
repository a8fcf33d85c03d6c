// One segment, live: summary, charts of frames/s and bytes/s per port, the
// ports, drops by reason, the forwarding table, the config, token minting and
// the capture button. Polls the admin API once a second while shown.
import { AdminApiError, type AdminApi, type PortStatsView, type SegmentView as SegmentData } from "../../client/admin-api.ts";
import { topRows, type TopRow, type TopSample } from "../../client/port-rates.ts";
import { CaptureControl } from "./capture-control.ts";
import { RateChart } from "./chart.ts";
import { append, compact, el, replaceChildren, table } from "./dom.ts";

const POLL_MS = 1000;

export interface SegmentViewHooks {
  /** The relay refused the token (it changed, or the relay restarted with another). */
  onUnauthorized(message: string): void;
  back(): void;
}

export class SegmentView {
  readonly root: HTMLElement;
  private readonly summary = el("div", { id: "summary" });
  private readonly error = el("p", { class: "error", role: "alert", id: "segment-error" });
  private readonly ports = el("div", { class: "tablewrap", id: "ports" });
  private readonly drops = el("div", { class: "tablewrap", id: "drops" });
  private readonly fdb = el("div", { class: "tablewrap", id: "fdb" });
  private readonly config = el("div", { class: "tablewrap", id: "config" });
  private readonly legend = el("div", { class: "legend", id: "legend" });
  private readonly details = el("div", { id: "segment-details" });
  private readonly framesChart: RateChart;
  private readonly bytesChart: RateChart;
  private readonly capture: CaptureControl;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private previous: TopSample | null = null;
  private stopped = false;

  constructor(readonly name: string, private readonly api: AdminApi, private readonly hooks: SegmentViewHooks) {
    const framesCanvas = el("canvas", { class: "chart", id: "frames-chart", "aria-label": "frames per second by port" });
    const bytesCanvas = el("canvas", { class: "chart", id: "bytes-chart", "aria-label": "bytes per second by port" });
    this.framesChart = new RateChart(framesCanvas, "f/s");
    this.bytesChart = new RateChart(bytesCanvas, "B/s");
    this.capture = new CaptureControl(name, api);
    this.root = el("div", { id: "segment-view", "data-segment": name },
      el("section", { class: "panel" },
        el("h2", {}, "Segment ", el("code", {}, name), " ", el("button", { type: "button", class: "secondary", onclick: () => hooks.back() }, "All segments")),
        this.summary, this.error),
      this.details);
    // Shown once the segment has been read; hidden again if it disappears.
    this.details.hidden = true;
    append(this.details, [
      el("div", { class: "grid" },
        el("section", { class: "panel" }, el("h2", {}, "Frames/s per port (in + out)"), framesCanvas),
        el("section", { class: "panel" }, el("h2", {}, "Bytes/s per port (in + out)"), bytesCanvas)),
      this.legend,
      el("section", { class: "panel" }, el("h2", {}, "Ports"), this.ports),
      el("div", { class: "grid" },
        el("section", { class: "panel" }, el("h2", {}, "Drops by reason"), this.drops),
        el("section", { class: "panel" }, el("h2", {}, "Forwarding table"), this.fdb)),
      el("div", { class: "grid" },
        el("section", { class: "panel" }, el("h2", {}, "Capture"), this.capture.root),
        el("section", { class: "panel" }, el("h2", {}, "Join tokens"), this.tokenForm())),
      el("section", { class: "panel" }, el("h2", {}, "Configuration"), this.config),
    ]);
  }

  start(): void {
    void this.poll();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.capture.dispose();
  }

  /** One refresh, then the next in a second (never two in flight). */
  private async poll(): Promise<void> {
    try {
      const [segment, ports] = await Promise.all([this.api.segment(this.name), this.api.ports(this.name)]);
      if (this.stopped) return;
      this.error.textContent = "";
      this.details.hidden = false;
      const sample: TopSample = { atMs: Date.now(), segment, ports };
      this.render(segment, ports, topRows(this.previous, sample));
      this.previous = sample;
    } catch (error) {
      if (this.stopped) return;
      if (error instanceof AdminApiError && error.status === 401) return this.hooks.onUnauthorized(error.message);
      if (error instanceof AdminApiError && error.code === "segment-not-found") this.details.hidden = true;
      this.error.textContent = error instanceof AdminApiError && error.code === "segment-not-found"
        ? `Segment ${this.name} does not exist (create it with PUT /v1/segments/${this.name} or edgelan segments create ${this.name}).`
        : (error as Error).message;
    }
    this.capture.refresh();
    if (!this.stopped) this.timer = setTimeout(() => void this.poll(), POLL_MS);
  }

  private render(segment: SegmentData, ports: PortStatsView[], rows: TopRow[]): void {
    const counters = segment.counters;
    replaceChildren(this.summary,
      stat("ports", String(ports.length)), stat("MACs", String(segment.forwardingTable.learned + segment.forwardingTable.static)),
      stat("frames in", compact(counters.rxFrames ?? 0)), stat("frames out", compact(counters.txFrames ?? 0)),
      stat("dropped", compact(counters.dropped ?? 0)), stat("queued", `${compact(segment.queuedBytes)} B`),
      stat("ports accepted", String(counters.portsAccepted ?? 0)), stat("instance starts", String(counters.instanceStarts ?? 0)));

    const framesNow = new Map<string, number>();
    const bytesNow = new Map<string, number>();
    for (const row of rows) {
      if (row.rxFps === null || row.txFps === null || row.rxMbps === null || row.txMbps === null) continue;
      framesNow.set(String(row.portId), row.rxFps + row.txFps);
      bytesNow.set(String(row.portId), ((row.rxMbps + row.txMbps) * 1e6) / 8);
    }
    if (framesNow.size > 0 || rows.length === 0) {
      this.framesChart.push(framesNow);
      this.bytesChart.push(bytesNow);
    }
    replaceChildren(this.legend, ...this.framesChart.keys().map((key) => {
      const swatch = el("span", {}, `port ${key}`);
      swatch.style.setProperty("--swatch", this.framesChart.colorOf(key));
      return swatch;
    }));

    const info = new Map(segment.ports.map((port) => [port.portId, port]));
    const portTable = table(
      ["Port", "Kind", "Mode", "Phase", "MACs", "Remote", "Connected", "RX frames", "TX frames", "RX bytes", "TX bytes", "RX/s", "TX/s", "Queue", "Credits"],
      [],
      new Set([7, 8, 9, 10, 11, 12, 13, 14]),
    );
    const body = portTable.tBodies[0] as HTMLTableSectionElement;
    for (const row of rows) {
      const port = ports.find((candidate) => candidate.portId === row.portId) as PortStatsView;
      const described = info.get(row.portId);
      const cells: Array<[string, string]> = [
        ["port", String(row.portId)], ["kind", row.kind], ["mode", row.mode], ["phase", described?.phase ?? "-"],
        ["macs", row.macs.join(" ") || "-"], ["remote", row.remote || "-"], ["connected", described === undefined ? "-" : new Date(described.connectedSince).toLocaleTimeString()],
        ["rxFrames", String(port.counters.rxFrames)], ["txFrames", String(port.counters.txFrames)],
        ["rxBytes", String(port.counters.rxBytes)], ["txBytes", String(port.counters.txBytes)],
        ["rxRate", row.rxFps === null ? "-" : compact(row.rxFps)], ["txRate", row.txFps === null ? "-" : compact(row.txFps)],
        ["queue", String(port.queuedFrames)], ["credits", port.credits === null ? "-" : String(port.credits)],
      ];
      body.appendChild(el("tr", { "data-port": String(row.portId) },
        ...cells.map(([column, text], i) => el("td", { "data-col": column, ...(i >= 7 ? { class: "num" } : {}) }, text))));
    }
    replaceChildren(this.ports, rows.length === 0 ? el("p", { class: "muted" }, "No port is connected.") : portTable);

    const dropRows: string[][] = [];
    for (const port of ports) {
      const row = rows.find((candidate) => candidate.portId === port.portId);
      for (const [reason, count] of Object.entries(port.counters.drops)) {
        if (count > 0) dropRows.push([String(port.portId), reason, String(count), compact(row?.dropsPerSecond[reason] ?? 0)]);
      }
    }
    replaceChildren(this.drops, dropRows.length === 0 ? el("p", { class: "muted" }, "No drops.") : table(["Port", "Reason", "Total", "Per second"], dropRows, new Set([2, 3])));

    const entries = segment.forwardingTable.entries;
    replaceChildren(this.fdb, entries.length === 0 ? el("p", { class: "muted" }, "The forwarding table is empty.") : table(
      ["MAC", "VLAN", "Port", "Type", "Age"],
      entries.map((entry) => [entry.mac, entry.vlan === null ? "-" : String(entry.vlan), String(entry.port), entry.static ? "static" : "learned", entry.ageMs === null ? "-" : `${Math.round(entry.ageMs / 1000)} s`]),
      new Set([2, 4]),
    ));

    replaceChildren(this.config, table(["Setting", "Value"], Object.entries(segment.config).map(([key, value]) => [key, JSON.stringify(value)])));
  }

  /** Mints a join token (POST /v1/segments/:name/tokens) and shows it once. */
  private tokenForm(): HTMLElement {
    const role = el("select", { name: "role", id: "token-role", "aria-label": "Role" }, el("option", {}, "member"), el("option", {}, "bridge"), el("option", {}, "monitor"));
    const ttl = el("input", { name: "ttl", id: "token-ttl", type: "number", min: "1", max: "2592000", value: "3600", "aria-label": "Lifetime in seconds" });
    const macs = el("input", { name: "macs", id: "token-macs", placeholder: "bind to MACs (optional, space-separated)", "aria-label": "MACs" });
    const result = el("div", { id: "token-result" });
    const form = el("form", {
      class: "inline",
      onsubmit: (event: Event) => {
        event.preventDefault();
        const body: Record<string, unknown> = { role: role.value, ttlSeconds: Number(ttl.value) };
        const bound = macs.value.trim().split(/[\s,]+/).filter((mac) => mac !== "");
        if (bound.length > 0) body.macs = bound;
        this.api.call("POST", `/v1/segments/${encodeURIComponent(this.name)}/tokens`, body).then(
          (minted) => {
            const { token, expiresAt } = minted as { token: string; expiresAt: string };
            replaceChildren(result, el("span", { class: "muted" }, `${role.value} token, expires ${expiresAt}:`), el("code", { class: "token", id: "minted-token" }, token));
          },
          (error: Error) => replaceChildren(result, el("p", { class: "error" }, error.message)),
        );
      },
    }, role, ttl, macs, el("button", { type: "submit" }, "Mint token"));
    return el("div", {}, form, result);
  }
}

function stat(label: string, value: string): HTMLElement {
  return el("span", { class: "stat" }, el("b", {}, value), " ", el("span", { class: "muted" }, label));
}
