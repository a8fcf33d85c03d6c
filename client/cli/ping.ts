// `edgelan ping`: a virtual host on the segment that ARPs for a target and pings it.
import { formatIpv4, parseIpv4 } from "../../datapath/inet.ts";
import { formatMac, randomLocalMac } from "../../datapath/mac.ts";
import { DiagError, DiagHost } from "../diag-host.ts";
import { Session } from "../session.ts";
import { defineCommand } from "./command.ts";
import { CliError, ExitCode, usageError } from "./exit-codes.ts";
import { toCliError } from "./report.ts";
import { sessionOptions, TOKEN_OPTION, tokenFrom } from "./session-options.ts";
import { connectUrl, intOption, macOption } from "./values.ts";

export const pingCommand = defineCommand({
  name: "ping",
  summary: "Join as a virtual host, resolve <ipv4> with ARP and ping it; exits 1 on any loss.",
  usage: "<url> <ipv4> [options]",
  options: {
    "source-ip": { type: "string", value: "IP", defaultText: ".250 in the target's /24", description: "the virtual host's address" },
    mac: { type: "string", value: "MAC", defaultText: "random, locally administered", description: "the virtual host's MAC" },
    count: { type: "string", value: "N", default: "4", description: "echo requests to send (1-100000)" },
    interval: { type: "string", value: "MS", default: "1000", description: "milliseconds between requests (1-60000)" },
    token: TOKEN_OPTION,
  },
  examples: ["edgelan ping ws://127.0.0.1:8787/v1/segments/lab/connect 10.10.0.1 --count 2"],
  async run({ positionals, values }) {
    // Everything is checked before the session connects, and the session is closed on every path after.
    const url = connectUrl(positionals[0]);
    const target = positionals[1];
    if (target === undefined) throw usageError("ping needs a target IPv4 address: edgelan ping <url> <ipv4>");
    if (positionals.length > 2) throw usageError(`ping takes <url> <ipv4>; unexpected "${positionals[2]}"`);
    const targetIp = ipv4Option("<ipv4>", target);
    const sourceIp = values["source-ip"] === undefined ? defaultSourceIp(targetIp) : ipv4Option("--source-ip", values["source-ip"]);
    const count = intOption("--count", values.count ?? "4", 1, 100_000);
    const intervalMs = intOption("--interval", values.interval ?? "1000", 1, 60_000);
    const mac = values.mac === undefined ? randomLocalMac() : macOption(values.mac);
    const token = tokenFrom(values.token);

    const session = new Session(await sessionOptions(url, token, { macs: [mac], reconnect: false }));
    const handlers: Array<(frames: Uint8Array[]) => void> = [];
    session.on("frames", (frames) => handlers.forEach((handler) => handler(frames)));
    let host: DiagHost | undefined;
    try {
      await session.start();
      host = new DiagHost({ send: (frames) => session.send(frames), onFrames: (handler) => handlers.push(handler) }, { mac, ip: sourceIp });
      console.log(`PING ${targetIp} from ${sourceIp} (${formatMac(mac)}) via ${url}`);
      const summary = await host.ping(targetIp, {
        count, intervalMs, timeoutMs: Math.max(1000, intervalMs * 2),
        onReply: (seq, rtt) => console.log(`reply from ${targetIp}: icmp_seq=${seq} time=${rtt.toFixed(3)} ms`),
      });
      console.log(`--- ${targetIp} ping statistics ---`);
      console.log(`${summary.transmitted} packets transmitted, ${summary.received} received, ${summary.lossPercent}% packet loss`);
      const stats = [summary.minMs, summary.avgMs, summary.maxMs, summary.p50Ms];
      if (summary.received > 0) console.log(`rtt min/avg/max/p50 = ${stats.map((v) => (v ?? 0).toFixed(3)).join("/")} ms`);
      return summary.received === summary.transmitted ? ExitCode.Ok : ExitCode.Failure;
    } catch (error) {
      // "no ARP reply from …" and the like: one line, not a stack.
      if (error instanceof DiagError) throw new CliError(ExitCode.Failure, error.message);
      throw toCliError(error, { url, tokenGiven: token !== undefined });
    } finally {
      host?.close();
      session.close();
    }
  },
});

function ipv4Option(name: string, text: string): string {
  const parsed = parseIpv4(text);
  if (!parsed.ok) throw usageError(`${name}: "${text}" is not an IPv4 address (${parsed.error.message})`);
  return formatIpv4(parsed.value);
}

/** A source address in the target's /24 that is unlikely to be taken (.250). */
function defaultSourceIp(target: string): string {
  return `${target.split(".").slice(0, 3).join(".")}.250`;
}
