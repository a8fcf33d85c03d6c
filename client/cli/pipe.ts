// `edgelan pipe`: a VDE stream cable on stdin/stdout (2-byte big-endian lengths).
import { attachBackend } from "../attach.ts";
import { openBackend } from "../backend.ts";
import { defineCommand } from "./command.ts";
import { ExitCode } from "./exit-codes.ts";
import { fatalLatch, logConnection, logger } from "./lifecycle.ts";
import { QUIET_OPTION, sessionOptions, TOKEN_OPTION, tokenFrom } from "./session-options.ts";
import { choiceOption, onlyConnectUrl, macOption } from "./values.ts";

export const pipeCommand = defineCommand({
  name: "pipe",
  summary: "Carry a VDE stream cable (stdin/stdout, 2-byte lengths) to a segment; ends when the cable ends.",
  usage: "<url> [options]",
  details: [
    "A member port carries one station: without --mac it registers the first source MAC the cable sends from.",
    "A cable into a vde_switch with several hosts behind it needs --kind bridge (and a bridge token on a closed segment).",
  ].join("\n"),
  options: {
    mac: { type: "string", multiple: true, value: "MAC", defaultText: "the first source MAC on the cable", description: "MAC(s) the port registers at once" },
    kind: { type: "string", value: "KIND", default: "member", description: "port kind: member (one station) or bridge (a switch behind the cable)" },
    token: TOKEN_OPTION,
    quiet: QUIET_OPTION,
  },
  examples: [
    "dpipe edgelan pipe ws://127.0.0.1:8787/v1/segments/lab/connect = vde_plug /tmp/switch",
    "dpipe edgelan pipe ws://127.0.0.1:8787/v1/segments/lab/connect --kind bridge --token \"$T\" = vde_plug /tmp/switch",
  ],
  async run({ positionals, values }) {
    const url = onlyConnectUrl("pipe", positionals);
    const kind = choiceOption("--kind", values.kind, ["member", "bridge"] as const);
    // With --mac the session opens at once (so a refusal shows before any frame); without, on the cable's first frame.
    const macs = values.mac?.map((text) => macOption(text));
    const token = tokenFrom(values.token);
    const log = logger(values.quiet);
    const backend = await openBackend("stdio");
    const fatal = fatalLatch({ url, tokenGiven: token !== undefined });
    const attachment = attachBackend(backend, await sessionOptions(url, token, { kind, ...(macs === undefined ? {} : { macs }) }), fatal.fail, (session) => logConnection(log, session));
    return new Promise((resolve) => {
      const stop = (): void => void attachment.close();
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, stop);
      // The end of the cable ends the command; a fatal session error closes the cable first and sets the exit code.
      backend.onClose(() => {
        for (const signal of ["SIGINT", "SIGTERM"] as const) process.off(signal, stop);
        resolve(fatal.code ?? ExitCode.Ok);
      });
    });
  },
});
