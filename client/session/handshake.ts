// What a session sends to join: the URL and headers of the upgrade, and the HELLO.
import { Feature, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from "../../datapath/tunnel/constants.ts";
import type { HelloRecord, ResumeCredentials, WelcomeRecord } from "../../datapath/tunnel/records.ts";
import { SESSION_DEFAULTS, type SessionOptions } from "./options.ts";
import { EDGELAN_VERSION } from "../../datapath/version.ts";
import { cellOfPortId } from "../../datapath/cells/port-ids.ts";

/** Features every session offers; Gso, LazyCompletions and CellCompletions depend on the options. */
const OFFERED_FEATURES = Feature.CoalescedCompletions | Feature.RxQueue | Feature.Stats | Feature.LinkNotices | Feature.Vlan | Feature.LargeFrames | Feature.Resume;

/**
 * The URL with kind and (for header-less sockets) token, and the headers to send. A session that
 * resumes asks for its port's cell (`?cell=`, from the port id), because on a segment of several cells
 * its session lives there (docs/api.md, "Segments of several cells"); a cell the URL names already is
 * left alone.
 */
export function upgradeTarget(options: SessionOptions, resuming: WelcomeRecord | null = null): { url: string; headers: Record<string, string> } {
  const url = new URL(options.url);
  if (options.kind !== undefined && options.kind !== "member") url.searchParams.set("kind", options.kind);
  // Cell 0 too: under a fixed count the home would otherwise place the resume on the least loaded cell.
  // A segment of one cell ignores the hint.
  if (resuming !== null && !url.searchParams.has("cell")) url.searchParams.set("cell", String(cellOfPortId(resuming.portId)));
  const headers: Record<string, string> = {};
  if (options.token !== undefined) {
    if (options.socketFactory !== undefined) headers.authorization = `Bearer ${options.token}`;
    else url.searchParams.set("token", options.token);
  }
  return { url: url.toString(), headers };
}

/** The HELLO: a resume names the last WELCOME's MACs and credentials. */
export function helloRecord(options: SessionOptions, last: WelcomeRecord | null, resume: ResumeCredentials | null): HelloRecord {
  return {
    type: "hello", minVersion: PROTOCOL_VERSION_MIN, maxVersion: PROTOCOL_VERSION_MAX,
    features: OFFERED_FEATURES | (options.vnetHeader === true ? Feature.Gso : 0) | (options.lazyCompletions === false ? 0 : Feature.LazyCompletions)
      | (options.cellCompletions === false ? 0 : Feature.CellCompletions),
    portKind: options.kind ?? "member", macs: last?.macs ?? options.macs ?? [],
    txWindow: options.txWindow ?? SESSION_DEFAULTS.txWindow, rxQueue: options.rxQueue ?? SESSION_DEFAULTS.rxQueue,
    clientName: options.clientName ?? "edgelan", clientVersion: options.clientVersion ?? EDGELAN_VERSION,
    ...(resume === null ? {} : { resume }),
  };
}
