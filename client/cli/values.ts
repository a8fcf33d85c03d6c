// Option values as the user typed them, checked before anything is opened:
// every failure is a usage error (exit 2) that says what was expected.
import { parseMac, type MacKey } from "../../datapath/mac.ts";
import type { PortKind } from "../../datapath/tunnel/constants.ts";
import { usageError } from "./exit-codes.ts";

/** The connect URL of a command that takes exactly one positional, the <url> (join, pipe, qemu). */
export function onlyConnectUrl(command: string, positionals: readonly string[]): string {
  if (positionals.length > 1) throw usageError(`${command} takes one <url>; unexpected "${positionals[1]}"`);
  return connectUrl(positionals[0]);
}

/** The connect URL from what the user typed (ws/wss/http/https, with or without /connect). */
export function connectUrl(text: string | undefined): string {
  if (text === undefined) throw usageError("missing <url>: e.g. ws://127.0.0.1:8787/v1/segments/lab/connect");
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`bad URL "${text}": expected ws://HOST[:PORT]/v1/segments/NAME/connect`);
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw usageError(`bad URL "${text}": the scheme must be ws, wss, http or https`);
  const match = /^\/v1\/segments\/([a-z0-9._-]{1,64})(\/connect)?\/?$/.exec(url.pathname);
  if (match === null) throw usageError(`bad URL "${text}": the path must be /v1/segments/NAME/connect (NAME: 1-64 of a-z 0-9 . _ -)`);
  url.pathname = `/v1/segments/${match[1]}/connect`;
  return url.toString();
}

/** The segment name in a connect URL made by connectUrl(). */
export function segmentOfUrl(url: string): string {
  return decodeURIComponent(new URL(url).pathname.split("/")[3] ?? "");
}

/** The relay's base URL (http/https) for a connect URL, for admin hints. */
export function relayOfUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol === "wss:" ? "https:" : "http:"}//${parsed.host}`;
}

export function macOption(text: string, name = "--mac"): MacKey {
  const parsed = parseMac(text);
  if (!parsed.ok) throw usageError(`${name}: ${parsed.error.message}`);
  return parsed.value;
}

export function intOption(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isInteger(value) || value < min || value > max) {
    throw usageError(`${name} must be an integer from ${min} to ${max} (got "${text}")`);
  }
  return value;
}

/** One of `allowed`; the first is the default when absent. */
export function choiceOption<T extends string>(name: string, text: string | undefined, allowed: readonly T[]): T {
  const value = (text ?? allowed[0]) as T;
  if (!allowed.includes(value)) throw usageError(`${name} must be one of ${allowed.join(", ")} (got "${text}")`);
  return value;
}

export const PORT_KINDS: readonly PortKind[] = ["member", "bridge", "monitor"];
