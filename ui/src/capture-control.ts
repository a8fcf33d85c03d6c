// The capture button: mints a monitor token with the admin token, opens a
// monitor port from the page (WebSocket, subprotocol edgelan.v1), records
// pcapng in memory and downloads it when stopped.
import type { AdminApi } from "../../client/admin-api.ts";
import { CaptureRecorder } from "../../client/capture.ts";
import { el, replaceChildren } from "./dom.ts";

/** Bytes a capture may hold in the page; later packets are dropped and counted in the file's statistics. */
const MAX_CAPTURE_BYTES = 256 * 1024 * 1024;
const MONITOR_TOKEN_TTL_SECONDS = 3600;

export class CaptureControl {
  readonly root: HTMLElement;
  private readonly startButton = el("button", { type: "button", id: "capture-start" }, "Start capture");
  private readonly stopButton = el("button", { type: "button", id: "capture-stop", disabled: true }, "Stop and download");
  private readonly status = el("p", { id: "capture-status", class: "muted" }, "Records every frame the segment forwards, as pcapng for Wireshark.");
  private recorder: CaptureRecorder | null = null;
  private chunks: Uint8Array[] = [];
  private bytes = 0;
  private ended = "";

  constructor(private readonly segment: string, private readonly api: AdminApi) {
    this.startButton.addEventListener("click", () => void this.start());
    this.stopButton.addEventListener("click", () => void this.stop());
    this.root = el("div", {}, el("div", { class: "inline" }, this.startButton, " ", this.stopButton), this.status);
  }

  /** Updates the packet count (called on every poll). */
  refresh(): void {
    if (this.recorder === null) return;
    const { written, received } = this.recorder.totals;
    this.status.textContent = `Capturing: ${written} packets (${received} received)${this.ended ? ` — ${this.ended}` : ""}`;
    this.status.dataset.packets = String(written);
  }

  /** Leaving the page's segment view: stop without downloading. */
  dispose(): void {
    const recorder = this.recorder;
    this.recorder = null;
    if (recorder !== null) void recorder.stop("the dashboard left the segment").catch(() => undefined);
  }

  private async start(): Promise<void> {
    this.startButton.disabled = true;
    this.status.textContent = "Joining as a monitor port…";
    this.chunks = [];
    this.bytes = 0;
    this.ended = "";
    try {
      const token = await this.api.mintToken(this.segment, "monitor", MONITOR_TOKEN_TTL_SECONDS);
      const url = new URL(`/v1/segments/${encodeURIComponent(this.segment)}/connect`, location.href);
      url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
      const recorder = new CaptureRecorder({
        url: url.toString(), segment: this.segment, token, admin: this.api, filter: {}, application: "edgelan dashboard",
        write: (chunk, essential) => {
          if (!essential && this.bytes + chunk.length > MAX_CAPTURE_BYTES) return false;
          this.chunks.push(chunk);
          this.bytes += chunk.length;
          return true;
        },
      });
      recorder.onDone((done) => {
        this.ended = done.reason === "count" ? "count reached" : `the monitor port ended: ${done.end.reason}`;
        this.refresh();
      });
      const welcome = await recorder.start();
      this.recorder = recorder;
      this.stopButton.disabled = false;
      this.status.textContent = `Capturing as monitor port ${welcome.portId}…`;
      this.status.dataset.packets = "0";
    } catch (error) {
      this.startButton.disabled = false;
      replaceChildren(this.status, el("span", { class: "error" }, `Cannot capture: ${(error as Error).message}`));
    }
  }

  private async stop(): Promise<void> {
    const recorder = this.recorder;
    if (recorder === null) return;
    this.recorder = null;
    this.stopButton.disabled = true;
    const totals = await recorder.stop("stopped from the dashboard");
    const blob = new Blob(this.chunks as BlobPart[], { type: "application/vnd.tcpdump.pcap" });
    this.chunks = [];
    const link = el("a", { href: URL.createObjectURL(blob), download: `edgelan-${this.segment}-${new Date().toISOString().replace(/[:.]/g, "-")}.pcapng` });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    const dropped = totals.dropped === undefined ? "unknown" : String(totals.dropped);
    this.status.textContent = `Downloaded ${totals.written} packets (${totals.received} received, ${dropped} dropped).`;
    this.status.dataset.packets = String(totals.written);
    this.startButton.disabled = false;
  }
}
