// `edgelan token`: mints a join token (a standard HS256 JWT) through the admin API.
import { formatMac } from "../../datapath/mac.ts";
import { adminCall, adminTarget, ADMIN_TOKEN_OPTION, RELAY_OPTION } from "./admin-client.ts";
import { defineCommand } from "./command.ts";
import { ExitCode, usageError } from "./exit-codes.ts";
import { choiceOption, intOption, macOption, PORT_KINDS } from "./values.ts";

export const tokenCommand = defineCommand({
  name: "token",
  summary: "Mint a join token for one segment and role; prints the token (a standard HS256 JWT, see docs/api.md).",
  usage: "<segment> [options]",
  options: {
    role: { type: "string", value: "ROLE", default: "member", description: "member, bridge (may also join as member) or monitor" },
    ttl: { type: "string", value: "S", default: "3600", description: "lifetime in seconds (1-2592000, 30 days)" },
    mac: { type: "string", multiple: true, value: "MAC", description: "bind the token to this MAC (up to 16)" },
    relay: RELAY_OPTION,
    "admin-token": ADMIN_TOKEN_OPTION,
  },
  examples: [
    "edgelan token lab --role member --ttl 86400 --mac 02:00:00:00:00:01",
    "export EDGELAN_TOKEN=$(edgelan token lab)",
  ],
  async run({ positionals, values }) {
    const [segment, extra] = positionals;
    if (segment === undefined || extra !== undefined) throw usageError("usage: edgelan token <segment> [--role member|bridge|monitor] [--ttl S] [--mac MAC]...");
    const role = choiceOption("--role", values.role, PORT_KINDS);
    const body: Record<string, unknown> = { role, ttlSeconds: intOption("--ttl", values.ttl ?? "3600", 1, 2_592_000) };
    if (values.mac !== undefined) body.macs = values.mac.map((text) => formatMac(macOption(text)));
    const target = adminTarget(values);
    const { body: minted } = await adminCall<{ token?: string }>(target, "POST", `/v1/segments/${encodeURIComponent(segment)}/tokens`, body);
    console.log(minted.token ?? JSON.stringify(minted));
    return ExitCode.Ok;
  },
});
