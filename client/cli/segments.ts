// `edgelan segments list|create|show|delete`: the management API from the shell.
import { defineCommand, type OptionValues } from "./command.ts";
import { adminCall, adminTarget, ADMIN_TOKEN_OPTION, RELAY_OPTION, relayDevMode, type AdminTarget } from "./admin-client.ts";
import { ExitCode, usageError } from "./exit-codes.ts";
import { MIN_CONFIGURABLE_FRAME_SIZE } from "../../datapath/ethernet.ts";
import { MAX_FRAME_BYTES } from "../../datapath/tunnel/constants.ts";
import { intOption } from "./values.ts";

const ACTIONS = ["list", "create", "show", "delete"] as const;
const CREATE_ONLY = ["open-join", "closed", "max-frame-size", "max-ports", "ttl", "dhcp", "cells"] as const;

const options = {
  relay: RELAY_OPTION,
  "admin-token": ADMIN_TOKEN_OPTION,
  "open-join": { type: "boolean", description: "create: members may join without a token" },
  closed: { type: "boolean", description: "create: joins need a token again (openJoin false)" },
  "max-frame-size": { type: "string", value: "N", defaultText: "1514 for a new segment", description: `create: largest frame in bytes (${MIN_CONFIGURABLE_FRAME_SIZE}-${MAX_FRAME_BYTES}); join sets the TAP MTU to N-14` },
  "max-ports": { type: "string", value: "N", defaultText: "64 for a new segment", description: "create: ports connected at once (1-1024)" },
  ttl: { type: "string", value: "S", defaultText: "never", description: "create: delete the segment after S seconds with no port connected" },
  dhcp: { type: "string", value: "SUBNET", defaultText: "off", description: "create: the segment's DHCP/DNS service hands out addresses in SUBNET (e.g. 10.44.0.0/24; docs/ipam.md)" },
  cells: { type: "string", value: "N|region", defaultText: "1 for a new segment", description: "create: run the segment on N Durable Objects (1-16, each port on the least loaded), or region: a cell per client region (docs/cells.md)" },
} as const;

export const segmentsCommand = defineCommand({
  name: "segments",
  summary: "List, create (or reconfigure), show and delete segments through the relay's admin API.",
  usage: "list | create NAME | show NAME | delete NAME [options]",
  details: "create on an existing segment updates only the settings given and says so. show warns when a segment accepts joins without a token on a relay with auth on.",
  options,
  examples: [
    "edgelan segments create lab --max-ports 16 --ttl 3600",
    "edgelan segments create lab --dhcp 10.44.0.0/24",
    "edgelan segments create big --cells 3",
    "edgelan segments list --relay https://relay.example --admin-token \"$EDGELAN_ADMIN_TOKEN\"",
  ],
  async run({ positionals, values }) {
    const [action, name, extra] = positionals;
    if (action === undefined || !(ACTIONS as readonly string[]).includes(action)) {
      throw usageError(`usage: edgelan segments ${ACTIONS.join("|")} [NAME]${action === undefined ? "" : ` (got "${action}")`}`);
    }
    if (action === "list" ? name !== undefined : name === undefined || extra !== undefined) {
      throw usageError(action === "list" ? "segments list takes no NAME" : `usage: edgelan segments ${action} NAME`);
    }
    const misplaced = action === "create" ? [] : CREATE_ONLY.filter((option) => values[option] !== undefined);
    if (misplaced.length > 0) throw usageError(`--${misplaced[0]} only applies to segments create`);
    const target = adminTarget(values);
    if (action === "list") return list(target);
    const path = `/v1/segments/${encodeURIComponent(name as string)}`;
    if (action === "show") return show(target, path);
    if (action === "delete") return printJson((await adminCall(target, "DELETE", path)).body);
    return create(target, path, name as string, values);
  },
});

interface ListedSegment {
  name: string;
  openJoin: boolean;
  createdAt: string;
}

/** Every segment, page by page (the relay answers up to 1000 per call). */
async function list(target: AdminTarget): Promise<number> {
  const segments: ListedSegment[] = [];
  let after: string | null = null;
  do {
    const query: string = after === null ? "" : `?after=${encodeURIComponent(after)}`;
    const { body }: { body: { segments: ListedSegment[]; next: string | null } } = await adminCall(target, "GET", `/v1/segments${query}`);
    segments.push(...body.segments);
    after = body.next;
  } while (after !== null);
  printJson({ segments });
  if ((await relayDevMode(target)) === false) warnOpen(segments.filter((segment) => segment.openJoin).map((segment) => segment.name));
  return ExitCode.Ok;
}

async function show(target: AdminTarget, path: string): Promise<number> {
  const { body } = await adminCall<{ name: string; config?: { openJoin?: boolean; dhcp?: unknown } }>(target, "GET", path);
  printJson(body);
  if (body.config?.dhcp !== undefined && body.config.dhcp !== null) {
    // The IPAM service's leases (docs/ipam.md), after the segment itself.
    const { body: leases } = await adminCall(target, "GET", `${path}/leases`);
    printJson(leases);
  }
  if (body.config?.openJoin === true && (await relayDevMode(target)) === false) warnOpen([body.name]);
  return ExitCode.Ok;
}

async function create(target: AdminTarget, path: string, name: string, values: OptionValues<typeof options>): Promise<number> {
  if (values["open-join"] === true && values.closed === true) throw usageError("--open-join and --closed contradict each other");
  const config: Record<string, unknown> = {};
  if (values["open-join"] === true) config.openJoin = true;
  if (values.closed === true) config.openJoin = false;
  if (values["max-frame-size"] !== undefined) config.maxFrameSize = intOption("--max-frame-size", values["max-frame-size"], MIN_CONFIGURABLE_FRAME_SIZE, MAX_FRAME_BYTES);
  if (values["max-ports"] !== undefined) config.maxPorts = intOption("--max-ports", values["max-ports"], 1, 1024);
  if (values.ttl !== undefined) config.ttlSeconds = intOption("--ttl", values.ttl, 10, 31_536_000);
  // The relay validates the subnet (and fills in the range, lease time and the rest: docs/ipam.md).
  if (values.dhcp !== undefined) config.dhcp = { subnet: values.dhcp };
  // Region placement with the relay's defaults for max and perCell (docs/api.md, the `cells` setting).
  if (values.cells !== undefined) config.cells = values.cells === "region" ? { placement: "region" } : intOption("--cells", values.cells, 1, 16);
  const { status, body } = await adminCall(target, "PUT", path, config);
  const changed = Object.keys(config);
  console.error(status === 201
    ? `edgelan: segment ${name} created`
    : `edgelan: segment ${name} already existed: ${changed.length === 0 ? "nothing changed" : `updated ${changed.join(", ")}`}; its settings now:`);
  return printJson(body);
}

/** Loud, on stderr: open segments on a relay whose other doors are locked. */
function warnOpen(names: readonly string[]): void {
  for (const name of names) {
    console.error(`edgelan: WARNING: segment ${name} accepts joins WITHOUT a token (openJoin: true) although this relay has auth on;` +
      ` segments auto-created in open development mode stay open. Close it: edgelan segments create ${name} --closed`);
  }
}

function printJson(value: unknown): number {
  console.log(JSON.stringify(value, null, 2));
  return ExitCode.Ok;
}
