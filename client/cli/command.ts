// A command of the `edgelan` CLI: its options table (with defaults and help text),
// its usage line and examples, and the function that runs it. The options are
// parsed strictly per command, so `edgelan token x --tap foo` is a usage error.
import { parseArgs } from "node:util";
import { usageError } from "./exit-codes.ts";

/** One option of a command. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  /** May be given more than once (values collected in order). */
  readonly multiple?: boolean;
  readonly short?: string;
  /** Placeholder in help: `--mac MAC`. */
  readonly value?: string;
  /** Default as the user would type it; shown in help and applied before the command runs. */
  readonly default?: string;
  /** What help shows for a default that is computed (e.g. "from the segment"). */
  readonly defaultText?: string;
  /** Environment variable read when the option is absent (the command reads it; help shows it). */
  readonly env?: string;
  readonly description: string;
}

export type OptionTable = Readonly<Record<string, OptionSpec>>;

type ValueOf<S extends OptionSpec> = S["type"] extends "boolean"
  ? boolean | undefined
  : S["multiple"] extends true ? string[] | undefined : string | undefined;

/** Parsed option values, typed from the table. */
export type OptionValues<O extends OptionTable> = { readonly [K in keyof O]: ValueOf<O[K]> };

/** What a command's run() gets. */
export interface CommandInput<O extends OptionTable> {
  readonly positionals: readonly string[];
  readonly values: OptionValues<O>;
}

export interface Command<O extends OptionTable = OptionTable> {
  readonly name: string;
  /** One line for the overview. */
  readonly summary: string;
  /** Positional part of the usage line: `<url> --tap NAME`. */
  readonly usage: string;
  /** Paragraphs shown under the usage line. */
  readonly details?: string;
  readonly options: O;
  readonly examples: readonly string[];
  run(input: CommandInput<O>): Promise<number>;
}

/**
 * Declares a command: inside, its option values are typed from its table; outside, every command
 * has the same type so the CLI keeps them in one table (parseCommandArgs fills values from the same table).
 */
export function defineCommand<const O extends OptionTable>(command: Command<O>): Command {
  return command as unknown as Command;
}

/** `--help`/`-h`, accepted by every command. */
const HELP_OPTION: OptionSpec = { type: "boolean", short: "h", description: "show this help" };

/** Parses a command's arguments: unknown options and missing values are usage errors; defaults are filled in. */
export function parseCommandArgs<O extends OptionTable>(command: Command<O>, argv: readonly string[]): CommandInput<O> & { help: boolean } {
  const config: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = { help: HELP_OPTION };
  for (const [name, spec] of Object.entries(command.options)) {
    config[name] = { type: spec.type, ...(spec.multiple === true ? { multiple: true } : {}), ...(spec.short === undefined ? {} : { short: spec.short }) };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options: config, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError(`${(error as Error).message.replace(/\. To specify a positional argument.*$/s, "")}\n\n${commandHelp(command)}`);
  }
  const values: Record<string, unknown> = { ...parsed.values };
  for (const [name, spec] of Object.entries(command.options)) {
    if (values[name] === undefined && spec.default !== undefined) values[name] = spec.type === "boolean" ? spec.default === "true" : spec.default;
  }
  return { positionals: parsed.positionals, values: values as OptionValues<O>, help: values.help === true };
}

/** `edgelan <command> --help`: usage, options with defaults and environment variables, examples. */
export function commandHelp(command: Command): string {
  const rows = Object.entries(command.options).map(([name, spec]) => {
    const flag = `${spec.short === undefined ? "    " : `-${spec.short}, `}--${name}${spec.type === "string" ? ` ${spec.value ?? "VALUE"}` : ""}`;
    const notes = [
      spec.multiple === true ? "repeatable" : "",
      spec.default !== undefined && spec.type === "string" ? `default: ${spec.default}` : spec.defaultText === undefined ? "" : `default: ${spec.defaultText}`,
      spec.env === undefined ? "" : `env: ${spec.env}`,
    ].filter((note) => note !== "");
    return { flag, text: `${spec.description}${notes.length > 0 ? ` (${notes.join("; ")})` : ""}` };
  });
  rows.push({ flag: "-h, --help", text: HELP_OPTION.description });
  const width = Math.max(...rows.map((row) => row.flag.length)) + 2;
  return [
    `Usage: edgelan ${command.name} ${command.usage}`,
    "",
    command.summary,
    ...(command.details === undefined ? [] : ["", command.details]),
    "",
    "Options:",
    ...rows.map((row) => `  ${row.flag.padEnd(width)}${row.text}`),
    "",
    command.examples.length === 1 ? "Example:" : "Examples:",
    ...command.examples.map((example) => `  ${example}`),
  ].join("\n");
}
