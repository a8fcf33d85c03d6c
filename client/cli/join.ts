// `edgelan join`: a Linux TAP device as a port of a segment. The session opens
// first, so a refusal leaves no device behind and the TAP's MTU follows the
// segment's largest frame (WELCOME maxFrameSize).
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { ETH_HEADER_LEN } from "../../datapath/ethernet.ts";
import { formatMac, type MacKey } from "../../datapath/mac.ts";
import { attachSession } from "../attach.ts";
import { startDhcpAgent } from "../dhcp-agent.ts";
import { openBackend } from "../backend.ts";
import { netnsPath, validateInterfaceName } from "../backends/tap.ts";
import type { WelcomeRecord } from "../../datapath/tunnel/records.ts";
import { Session } from "../session.ts";
import { defineCommand } from "./command.ts";
import { usageError } from "./exit-codes.ts";
import { fatalLatch, logConnection, logger, runUntilSignal } from "./lifecycle.ts";
import { toCliError } from "./report.ts";
import { QUIET_OPTION, sessionOptions, TOKEN_OPTION, tokenFrom } from "./session-options.ts";
import { machineId, stableMac } from "./stable-mac.ts";
import { peekTokenClaims } from "./token-claims.ts";
import { choiceOption, onlyConnectUrl, intOption, macOption, segmentOfUrl } from "./values.ts";

/** Smallest MTU Linux accepts on an Ethernet device (IPv4's minimum). */
const MIN_MTU = 68;

export const joinCommand = defineCommand({
  name: "join",
  summary: "Attach a Linux TAP device to a segment (needs CAP_NET_ADMIN). Runs until SIGINT/SIGTERM; rides out relay restarts.",
  usage: "<url> --tap NAME [options]",
  details: [
    "Without --mac the TAP gets a stable locally administered MAC derived from this machine's id, the segment,",
    "the TAP name and the namespace: a rejoin keeps its address. The MTU follows the segment's largest frame.",
    "A VDE cable or a whole LAN behind the TAP needs --kind bridge (a member port carries one station).",
  ].join("\n"),
  options: {
    tap: { type: "string", value: "NAME", description: "TAP device to create or attach (at most 15 bytes)" },
    mac: { type: "string", value: "MAC", defaultText: "stable, derived from machine id, segment and TAP name", description: "the TAP's MAC address" },
    mtu: { type: "string", value: "N", defaultText: "the segment's largest frame minus 14", description: "the TAP's MTU; refused if larger than the segment carries" },
    netns: { type: "string", value: "NS", description: "create the TAP inside this network namespace (ip netns name or path)" },
    offload: { type: "boolean", defaultText: "on where the TAP supports it", description: "insist on the virtio-net header with checksum/TSO offloads (64 KiB super-frames)" },
    "no-offload": { type: "boolean", description: "a plain TAP: no virtio-net header, no offloads" },
    dhcp: { type: "boolean", description: "get the TAP's address from a DHCP server on the segment (its IPAM service, docs/ipam.md), renew it, release it on exit" },
    "default-route": { type: "boolean", description: "with --dhcp: also install the default route the server offers" },
    kind: { type: "string", value: "KIND", default: "member", description: "port kind: member (one station) or bridge (a LAN behind the TAP)" },
    token: TOKEN_OPTION,
    quiet: QUIET_OPTION,
  },
  examples: [
    "sudo edgelan join ws://127.0.0.1:8787/v1/segments/lab/connect --tap edge0 --dhcp",
    "sudo edgelan join wss://relay.example/v1/segments/lab/connect --tap edge0 --netns blue --token \"$EDGELAN_TOKEN\"",
  ],
  async run({ positionals, values }) {
    const url = onlyConnectUrl("join", positionals);
    if (values.tap === undefined) throw usageError("join needs --tap NAME (the TAP device to create or attach)");
    validateInterfaceName(values.tap);
    if (values.kind === "monitor") throw usageError("join attaches a TAP as a member or bridge; to watch a segment's traffic use `edgelan capture` (see README)");
    const kind = choiceOption("--kind", values.kind, ["member", "bridge"] as const);
    if (values["default-route"] === true && values.dhcp !== true) throw usageError("--default-route goes with --dhcp");
    if (values.netns !== undefined && !existsSync(netnsPath(values.netns))) {
      throw usageError(`network namespace ${values.netns} does not exist (${netnsPath(values.netns)}): create it with \`ip netns add ${values.netns}\``);
    }
    const mtuWanted = values.mtu === undefined ? undefined : intOption("--mtu", values.mtu, MIN_MTU, 65535);
    const token = tokenFrom(values.token);
    const mac = chooseMac(values.mac, token, { segment: segmentOfUrl(url), tap: values.tap, netns: values.netns });
    const log = logger(values.quiet);

    const join = { url, tokenGiven: token !== undefined };
    // Offloads by default where the TAP supports them; --offload insists, --no-offload declines.
    const offload = values["no-offload"] === true ? false : values.offload === true ? true : "auto";
    const openSession = async (vnetHeader: boolean): Promise<{ session: Session; welcome: WelcomeRecord }> => {
      const session = new Session({
        filter: { promiscuous: false, allMulticast: true, multicast: [] },
        ...(await sessionOptions(url, token, { kind, macs: kind === "member" ? [mac.key] : [], vnetHeader }, log)),
      });
      const welcome = await session.start().catch((error: unknown) => {
        session.close();
        throw toCliError(error, join);
      });
      return { session, welcome };
    };
    let { session, welcome } = await openSession(offload !== false);
    const segmentMtu = welcome.maxFrameSize - ETH_HEADER_LEN;
    if (mtuWanted !== undefined && mtuWanted > segmentMtu) {
      session.close();
      const segment = segmentOfUrl(url);
      throw usageError(
        `--mtu ${mtuWanted} is larger than segment "${segment}" carries: its largest frame is ${welcome.maxFrameSize} bytes (MTU ${segmentMtu}). ` +
        `Omit --mtu, or raise the segment's limit: edgelan segments create ${segment} --max-frame-size ${mtuWanted + ETH_HEADER_LEN}`,
      );
    }
    const mtu = Math.max(MIN_MTU, mtuWanted ?? segmentMtu);
    const backend = await openBackend(`tap:${values.tap}`, { mac: mac.key, mtu, netns: values.netns, offload }).catch((error: unknown) => {
      session.close();
      throw error;
    });
    if (!backend.capabilities.vnetHeader && offload === "auto") {
      // The TAP refused the virtio-net header: the session must not expect it either.
      session.close();
      ({ session, welcome } = await openSession(false).catch(async (error: unknown) => {
        await backend.close();
        throw error;
      }));
    }
    const fatal = fatalLatch(join);
    const attachment = attachSession(backend, session, fatal.fail);
    log(`${backend.name} (${formatMac(mac.key)}) joined ${url} as port ${welcome.portId}`);
    log(`MAC ${formatMac(mac.key)} (${mac.origin}), MTU ${mtu} (segment's largest frame ${welcome.maxFrameSize}), offload ${backend.capabilities.vnetHeader ? "on" : "off"}, kind ${kind}`);
    logConnection(log, session);
    // --dhcp: on exit the RELEASE goes out (and is completed) before the session's BYE.
    const dhcp = values.dhcp === true ? startDhcpAgent({
      session, mac: mac.key, ifname: backend.name.replace(/^tap:/, ""), netns: values.netns,
      defaultRoute: values["default-route"] === true, hostname: hostname().split(".")[0], log, vnetHeader: backend.capabilities.vnetHeader,
    }) : undefined;
    const closer = dhcp === undefined ? attachment : { close: () => dhcp.close().then(() => attachment.close()) };
    return runUntilSignal(log, [closer], { status: values.quiet === true ? undefined : () => statusLine(session), fatal: fatal.exit });
  },
});

/** --mac, else the stable MAC; checked against a MAC-bound token before anything connects. */
function chooseMac(
  option: string | undefined, token: string | undefined, where: { segment: string; tap: string; netns?: string },
): { key: MacKey; origin: string } {
  const chosen = option !== undefined
    ? { key: macOption(option), origin: "from --mac" }
    : { key: stableMac({ machineId: machineId(), ...where }), origin: "stable: derived from machine id, segment and TAP name" };
  const allowed = token === undefined ? undefined : peekTokenClaims(token)?.macs;
  if (allowed !== undefined && allowed.length > 0 && !allowed.includes(chosen.key)) {
    const list = allowed.map(formatMac).join(", ");
    throw usageError(`the join token admits only MAC ${list}; ${option === undefined ? "pass" : "use"} --mac ${formatMac(allowed[0] as MacKey)}`);
  }
  return chosen;
}

/** One line of live counters, on a terminal. */
function statusLine(session: Session): string {
  const c = session.counters;
  return `${session.isOpen ? "up" : "reconnecting"} | tx ${c.txFrames} (${c.txDropped} dropped, ${c.txReset} reset) | rx ${c.rxFrames} | reconnects ${c.reconnects}`;
}

