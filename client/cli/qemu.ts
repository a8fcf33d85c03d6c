// `edgelan qemu`: a socket QEMU guests connect to (-netdev stream); each guest is its own port.
import { attachBackend } from "../attach.ts";
import { serveBackend } from "../backend.ts";
import { defineCommand } from "./command.ts";
import { usageError } from "./exit-codes.ts";
import { logConnection, logger, runUntilSignal } from "./lifecycle.ts";
import { QUIET_OPTION, sessionOptions, TOKEN_OPTION, tokenFrom } from "./session-options.ts";
import { onlyConnectUrl } from "./values.ts";

export const qemuCommand = defineCommand({
  name: "qemu",
  summary: "Serve QEMU guests (-netdev stream): each VM that connects becomes a port of the segment, registering the MAC it sends from.",
  usage: "<url> --listen HOST:PORT|PATH [options]",
  options: {
    listen: { type: "string", value: "ADDR", description: "where VMs connect: HOST:PORT (port 0 = any free port) or a unix socket path" },
    token: TOKEN_OPTION,
    quiet: QUIET_OPTION,
  },
  examples: ["edgelan qemu ws://127.0.0.1:8787/v1/segments/lab/connect --listen 127.0.0.1:5555"],
  async run({ positionals, values }) {
    const url = onlyConnectUrl("qemu", positionals);
    if (values.listen === undefined) throw usageError("qemu needs --listen HOST:PORT or --listen /path/to.sock");
    const token = tokenFrom(values.token);
    const log = logger(values.quiet);
    const options = await sessionOptions(url, token, {}, log);
    const server = await serveBackend(`qemu:${values.listen}`);
    const { qemuNetdevArgument } = await import("../backends/qemu.ts");
    console.log(`edgelan: serving QEMU guests on ${server.address()} for ${url}`);
    console.log(`edgelan: start each VM with: ${qemuNetdevArgument(server.address())}`);
    console.log("edgelan: give every VM its own mac= (each guest registers the MAC it sends from)");
    // Closing the server closes every guest port, and each port's close ends its session.
    server.onConnection((port) => {
      log(`guest connected (${port.name})`);
      // A refused guest (its MAC taken, say) is disconnected; the others and the server go on.
      attachBackend(port, options, (error) => console.error(`edgelan: ${port.name}: ${error.message}`), (session) => {
        session.on("open", (welcome) => log(`${port.name} joined as port ${welcome.portId}`));
        logConnection(log, session, port.name);
      });
    });
    return runUntilSignal(log, [server]);
  },
});
