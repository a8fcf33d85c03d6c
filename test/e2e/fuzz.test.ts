// End-to-end: the fuzz runner (`npm run fuzz:relay`, bench/hostile/fuzz.ts) in its short
// form against a real relay: ~20,000 random and mutated messages from hostile ports while two
// bystanders ping each other. The relay must stay up and the bystanders must lose nothing.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");

interface FuzzSummary {
  seed: number;
  messages: number;
  connections: number;
  closeCodes: Record<string, number>;
  relayAlive: boolean;
  relayHealthy: boolean;
  bystander: { sent: number; lost: number };
  segmentCounters: Record<string, number> | null;
}

/** Runs the fuzz script; resolves with its exit code and output. */
function runFuzz(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/hostile/fuzz.ts"], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGTERM"), 170_000);
  return new Promise((resolve) => {
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("fuzzing the relay", () => {
  it("survives 20,000 hostile messages with no bystander loss", { timeout: 200_000 }, async () => {
    const { code, output } = await runFuzz({ EDGELAN_FUZZ_MESSAGES: "20000", EDGELAN_FUZZ_PORTS: "6", EDGELAN_FUZZ_MAX_SECONDS: "120", EDGELAN_FUZZ_BASELINE_REQUESTS: "0" });
    const last = output.trim().split("\n").at(-1) ?? "";
    expect(last.startsWith("{"), output).toBe(true);
    const summary = JSON.parse(last) as FuzzSummary;
    const context = `seed ${summary.seed} (rerun with EDGELAN_FUZZ_SEED=${summary.seed})\n${output}`;
    expect(summary.messages, context).toBeGreaterThanOrEqual(20_000);
    expect(summary.relayAlive, context).toBe(true);
    expect(summary.relayHealthy, context).toBe(true);
    expect(summary.bystander.sent, context).toBeGreaterThan(0);
    expect(summary.bystander.lost, context).toBe(0);
    // The relay noticed the garbage: it closed hostile ports with protocol close codes and counted them.
    expect(Object.keys(summary.closeCodes).some((c) => Number(c) >= 4000 && Number(c) < 5000), context).toBe(true);
    expect(summary.segmentCounters?.["counters.malformedMessages"] ?? 0, context).toBeGreaterThan(0);
    expect(code, context).toBe(0);
  });
});
