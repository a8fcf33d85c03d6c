// `edgelan`: join TAP devices, QEMU guests and VDE cables to segments; manage
// segments and tokens; ping across a segment. Each command is a module under
// client/cli/ with its own options table; adding a command is one entry in COMMANDS.
import { commandHelp, parseCommandArgs, type Command } from "./cli/command.ts";
import { ExitCode } from "./cli/exit-codes.ts";
import { joinCommand } from "./cli/join.ts";
import { pingCommand } from "./cli/ping.ts";
import { pipeCommand } from "./cli/pipe.ts";
import { qemuCommand } from "./cli/qemu.ts";
import { report } from "./cli/report.ts";
import { segmentsCommand } from "./cli/segments.ts";
import { CLI_VERSION } from "./cli/session-options.ts";
import { tokenCommand } from "./cli/token.ts";
import { connectUrl } from "./cli/values.ts";

export { CliError, ExitCode } from "./cli/exit-codes.ts";
export { connectUrl };

/** Every command, in the order help lists them. */
const COMMANDS: readonly Command[] = [joinCommand, qemuCommand, pipeCommand, pingCommand, segmentsCommand, tokenCommand];

/** Commands that parse their own arguments (and answer their own --help); loaded only when used. */
const SELF_PARSING: Readonly<Record<string, { summary: string; run: (argv: string[]) => Promise<number> }>> = {
  capture: { summary: "record a segment's frames to pcapng (a monitor port)", run: async (argv) => (await import("./commands/capture.ts")).captureCommand(argv) },
  top: { summary: "live per-port rates of a segment", run: async (argv) => (await import("./commands/top.ts")).topCommand(argv) },
};

function overview(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length), ...Object.keys(SELF_PARSING).map((name) => name.length)) + 2;
  return [
    "edgelan — virtual Ethernet LANs at the edge",
    "",
    "Usage: edgelan <command> [arguments] [options]     edgelan <command> --help for its options and an example",
    "",
    "Commands:",
    ...COMMANDS.map((command) => `  ${command.name.padEnd(width)}${command.summary}`),
    ...Object.entries(SELF_PARSING).map(([name, command]) => `  ${name.padEnd(width)}${command.summary}`),
    "",
    "<url> is a segment's connect URL, e.g. ws://127.0.0.1:8787/v1/segments/lab/connect",
    "(http(s):// is accepted, and so is the URL without /connect).",
    "",
    "Exit codes: 0 ok, 1 failure (e.g. ping loss), 2 usage, 3 refused (401/403/404, MAC taken, version, policy),",
    "4 relay unreachable or busy (try again), 5 missing privileges.",
    "",
    "Options: -h, --help    this overview      -V, --version    print the version",
  ].join("\n");
}

/** Runs the CLI; resolves with the exit code (long-running commands resolve when they end). */
export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === "--version" || first === "-V" || first === "version") {
    console.log(`edgelan ${CLI_VERSION}`);
    return ExitCode.Ok;
  }
  if (first === "--help" || first === "-h" || first === "help") {
    const selfParsing = rest[0] === undefined ? undefined : SELF_PARSING[rest[0]];
    if (selfParsing !== undefined) return selfParsing.run(["--help"]);
    const command = COMMANDS.find((candidate) => candidate.name === rest[0]);
    console.log(command === undefined ? overview() : commandHelp(command));
    return ExitCode.Ok;
  }
  if (first === undefined) {
    console.error(overview());
    return ExitCode.Usage;
  }
  const selfParsing = SELF_PARSING[first];
  if (selfParsing !== undefined) return selfParsing.run(rest);
  const command = COMMANDS.find((candidate) => candidate.name === first);
  if (command === undefined) {
    console.error(`edgelan: unknown command "${first}"\n\n${overview()}`);
    return ExitCode.Usage;
  }
  try {
    const input = parseCommandArgs(command, rest);
    if (input.help) {
      console.log(commandHelp(command));
      return ExitCode.Ok;
    }
    return await command.run(input);
  } catch (error) {
    return report(error);
  }
}
