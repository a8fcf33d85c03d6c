// `edgelan token`: mints a join token (a standard HS256 JWT) through the admin API;
// `edgelan token revoke <segment> <jti>` revokes one.
import { formatMac } from "../../datapath/mac.ts";
import { adminCall, adminTarget, ADMIN_TOKEN_OPTION, RELAY_OPTION } from "./admin-client.ts";
import { defineCommand } from "./command.ts";
import { ExitCode, usageError } from "./exit-codes.ts";
import { choiceOption, intOption, macOption, PORT_KINDS } from "./values.ts";

export const tokenCommand = defineCommand({
  name: "token",
  summary: "Mint a join token for one segment and role; prints the token (a standard HS256 JWT, see docs/api.md).",
  usage: "<segment> [options] | revoke <segment> <jti>",
  options: {
    role: { type: "string", value: "ROLE", default: "member", description: "member, bridge (may also join as member) or monitor" },
    ttl: { type: "string", value: "S", default: "3600", description: "lifetime in seconds (1-2592000, 30 days)" },
    mac: { type: "string", multiple: true, value: "MAC", description: "bind the token to this MAC (up to 16)" },
    "max-ports": { type: "string", value: "N", description: "ports the token may hold open at once (1-1024)" },
    "no-raw": { type: "boolean", description: "forbid raw-mode joins with this token" },
    relay: RELAY_OPTION,
    "admin-token": ADMIN_TOKEN_OPTION,
  },
  examples: [
    "edgelan token lab --role member --ttl 86400 --mac 02:00:00:00:00:01",
    "export EDGELAN_TOKEN=$(edgelan token lab)",
    "edgelan token lab --max-ports 2 --no-raw",
    "edgelan token revoke lab u3kQ9c0bW1pXr2Zt",
  ],
  async run({ positionals, values }) {
    const target = adminTarget(values);
    if (positionals[0] === "revoke" && positionals.length > 1) {
      const [, segment, jti, extra] = positionals;
      if (segment === undefined || jti === undefined || extra !== undefined) throw usageError("usage: edgelan token revoke <segment> <jti>");
      const path = `/v1/segments/${encodeURIComponent(segment)}/tokens/${encodeURIComponent(jti)}/revoke`;
      const { body: revoked } = await adminCall<Record<string, unknown>>(target, "POST", path);
      console.log(JSON.stringify(revoked));
      return ExitCode.Ok;
    }
    const [segment, extra] = positionals;
    if (segment === undefined || extra !== undefined) {
      throw usageError("usage: edgelan token <segment> [--role member|bridge|monitor] [--ttl S] [--mac MAC]... [--max-ports N] [--no-raw]");
    }
    const role = choiceOption("--role", values.role, PORT_KINDS);
    const body: Record<string, unknown> = { role, ttlSeconds: intOption("--ttl", values.ttl ?? "3600", 1, 2_592_000) };
    if (values.mac !== undefined) body.macs = values.mac.map((text) => formatMac(macOption(text)));
    if (values["max-ports"] !== undefined) body.maxPorts = intOption("--max-ports", values["max-ports"], 1, 1024);
    if (values["no-raw"] === true) body.raw = false;
    const { body: minted } = await adminCall<{ token?: string; jti?: string }>(target, "POST", `/v1/segments/${encodeURIComponent(segment)}/tokens`, body);
    console.log(minted.token ?? JSON.stringify(minted));
    // stdout stays the bare token (for $(edgelan token …)); the id for revocation goes to stderr.
    if (minted.jti !== undefined) console.error(`token id (jti) ${minted.jti}; revoke with: edgelan token revoke ${segment} ${minted.jti}`);
    return ExitCode.Ok;
  },
});
