// `npm run bench:hostile`: the attacks of issue 9 against a local relay, each on a fresh
// `wrangler dev` (so every attack starts from the same workerd), with two bystander ports
// pinging each other throughout. Per attack: workerd RSS growth (the worker's workerd,
// sampled from /proc), bystander RTT p50/p99 idle vs under attack, bystander loss, and the
// segment counters that rose. Human-readable lines first; the last line is one JSON object.
//
// Environment (see bench/README.md): EDGELAN_HOSTILE_SECONDS (memory and storm attacks,
// default 30), EDGELAN_HOSTILE_SHORT_SECONDS (state attacks, default 10), EDGELAN_HOSTILE_IDLE_SECONDS
// (idle window, default 3), EDGELAN_HOSTILE_PORTS (storm ports, default 200), EDGELAN_HOSTILE_PING_MS
// (default 10), EDGELAN_HOSTILE_ONLY (comma-separated attack names), EDGELAN_HOSTILE_RSS_CAP_MIB
// (stop the relay and end the attack when workerd passes this, default 2048), EDGELAN_HOSTILE_DRAIN_SECONDS (default 10),
// EDGELAN_HOSTILE_PROFILE=1 (a CPU profile of the worker over each attack: the hottest functions are
// printed, the profile is written to $TMPDIR/edgelan-hostile-<attack>.cpuprofile).
import { Admin, rose } from "./admin.ts";
import { allAttacks, type Attack, type AttackContext } from "./attacks.ts";
import { BystanderProcess } from "./bystander-client.ts";
import type { PingFigures } from "./bystanders.ts";
import { processAlive, rssBytes, RssSampler, startLocalRelay, stopRelaysOnSignal } from "./relay-process.ts";
import { sleep } from "./wire.ts";
import { procCpuMs } from "../lib/cpu-sampler.ts";
import { WorkerProfiler, type HotFunction } from "../lib/worker-profiler.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";

const number = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  return Number.isFinite(value) && value >= 0 ? value : fallback;
};
const LONG_S = number("EDGELAN_HOSTILE_SECONDS", 30);
const SHORT_S = number("EDGELAN_HOSTILE_SHORT_SECONDS", 10);
const IDLE_S = number("EDGELAN_HOSTILE_IDLE_SECONDS", 3);
const DRAIN_S = number("EDGELAN_HOSTILE_DRAIN_SECONDS", 10);
const STORM_PORTS = number("EDGELAN_HOSTILE_PORTS", 200);
const PING_MS = number("EDGELAN_HOSTILE_PING_MS", 10);
const RSS_CAP = number("EDGELAN_HOSTILE_RSS_CAP_MIB", 2048) * 1024 * 1024;
const PROFILE = process.env.EDGELAN_HOSTILE_PROFILE === "1";
const ONLY = (process.env.EDGELAN_HOSTILE_ONLY ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
const ADMIN_TOKEN = "bench-hostile-admin";
const MIB = 1024 * 1024;

/** Issue 9's targets. */
const TARGETS = { rssGrowthMiB: 64, stormP99VsIdle: 3, bystanderLoss: 0 };

interface AttackFigures {
  attack: string;
  kind: Attack["kind"];
  seconds: number;
  rssStartMiB: number;
  rssPeakMiB: number;
  rssGrowthMiB: number;
  abortedAtRssCap: boolean;
  /** Seconds from the attack's start until workerd passed the RSS cap (null: it never did). */
  secondsToRssCap: number | null;
  relayDied: boolean;
  idle: PingFigures;
  attacked: PingFigures;
  p99VsIdle: number;
  /** The worker's workerd: CPU time over the attack as a share of one core (1 = a core busy all the time). */
  workerCpuShare: number;
  /** With EDGELAN_HOSTILE_PROFILE=1: the worker's functions with the most self time over the attack. */
  hotFunctions?: HotFunction[];
  countersRose: Record<string, number> | "no answer";
  observed: Record<string, unknown>;
  targets: Record<string, "met" | "not met">;
  error?: string;
}

const round = (x: number, digits = 2): number => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);

async function runAttack(attack: Attack): Promise<AttackFigures> {
  const relay = await startLocalRelay(ADMIN_TOKEN);
  const admin = new Admin(relay.baseUrl, ADMIN_TOKEN);
  const bystanders = new BystanderProcess();
  const segment = `hostile-${attack.name}`;
  const ports: AttackContext["ports"] = [];
  let aborted = false;
  let cappedAfter: number | null = null;
  let onAbort: () => void = () => undefined;
  // At the cap the attack gets 3 s to stop and report what it saw before the runner moves on.
  const abortedNow = new Promise<Record<string, unknown>>((resolve) => {
    onAbort = () => void sleep(3000).then(() => resolve({ endedAtRssCap: true, attackDidNotReport: true }));
  });
  let sampler: RssSampler | null = null;
  let guard: ReturnType<typeof setInterval> | null = null;
  const seconds = attack.kind === "memory" || attack.kind === "fairness" || attack.kind === "control" ? LONG_S : SHORT_S;
  try {
    await admin.putSegment(segment, { openJoin: true, ...attack.config });
    const ctx: AttackContext = { relay, admin, segment, deadline: Number.POSITIVE_INFINITY, aborted: () => aborted, ports };
    await attack.setup?.(ctx);
    await bystanders.join(relay.wsUrl, segment);
    await bystanders.start(PING_MS);
    await sleep(IDLE_S * 1000);
    const idle = await bystanders.window(2000);
    const before = await admin.counters(segment);

    const profiler = PROFILE ? await WorkerProfiler.connect(relay.inspectorPort) : null;
    await profiler?.start();
    sampler = new RssSampler(relay.workerPid);
    const attackStart = Date.now();
    const cpuStart = procCpuMs(relay.workerPid);
    // Past the cap the relay is stopped at once: the machine is shared, and the verdict is already clear.
    guard = setInterval(() => {
      if (aborted || rssBytes(relay.workerPid) <= RSS_CAP) return;
      aborted = true;
      cappedAfter = (Date.now() - attackStart) / 1000;
      onAbort();
      void relay.stop();
    }, 100);
    ctx.deadline = Date.now() + seconds * 1000;
    let observed: Record<string, unknown> = {};
    let error: string | undefined;
    try {
      observed = await Promise.race([
        attack.run(ctx),
        abortedNow,
        // The attack's own loops stop at the deadline; this bounds one stuck on a relay that stopped answering.
        sleep((seconds + 60) * 1000).then(() => ({ stuck: true })),
      ]);
    } catch (caught) {
      error = caught instanceof Error ? caught.message : String(caught);
    }
    if (aborted) observed = { ...observed, endedAtRssCap: true };
    const counters = aborted ? null : await admin.counters(segment, 20_000);
    clearInterval(guard);
    const growth = sampler.stop();
    const workerCpuShare = (procCpuMs(relay.workerPid) - cpuStart) / Math.max(1, Date.now() - attackStart);
    const hotFunctions = aborted ? undefined : await profiler?.stop(join(tmpdir(), `edgelan-hostile-${attack.name}.cpuprofile`));
    profiler?.close();
    for (const port of ports) port.close();
    const attacked = await bystanders.window(DRAIN_S * 1000);
    const p99VsIdle = attacked.p99Ms / idle.p99Ms;
    const figures: AttackFigures = {
      attack: attack.name, kind: attack.kind, seconds, rssStartMiB: round(sampler.start / MIB, 1), rssPeakMiB: round(sampler.peak / MIB, 1),
      rssGrowthMiB: round(growth / MIB, 1), abortedAtRssCap: aborted, secondsToRssCap: cappedAfter === null ? null : round(cappedAfter, 1), relayDied: !aborted && (!relay.alive() || !processAlive(relay.workerPid)),
      idle, attacked, p99VsIdle: round(p99VsIdle), workerCpuShare: round(workerCpuShare), countersRose: counters === null ? "no answer" : rose(before, counters), observed,
      targets: {}, ...(error === undefined ? {} : { error }), ...(hotFunctions === undefined ? {} : { hotFunctions }),
    };
    figures.targets = targetsOf(figures);
    return figures;
  } finally {
    if (guard !== null) clearInterval(guard);
    sampler?.stop();
    for (const port of ports) port.close();
    await bystanders.close();
    await relay.stop();
  }
}

function targetsOf(f: AttackFigures): Record<string, "met" | "not met"> {
  const verdict = (ok: boolean): "met" | "not met" => (ok ? "met" : "not met");
  const targets: Record<string, "met" | "not met"> = { bystanderLoss: verdict(f.attacked.lost === TARGETS.bystanderLoss && !f.relayDied) };
  if (f.kind === "memory") targets.rssGrowth = verdict(f.rssGrowthMiB <= TARGETS.rssGrowthMiB && !f.abortedAtRssCap);
  if (f.kind === "fairness") targets.p99VsIdle = verdict(f.p99VsIdle <= TARGETS.stormP99VsIdle);
  if (typeof f.observed.held === "boolean") targets.held = verdict(f.observed.held);
  return targets;
}

function describe(f: AttackFigures): string {
  const ms = (x: number): string => `${round(x, 1)} ms`;
  const lines = [
    `${f.attack} (${f.kind}, ${f.seconds} s)${f.error === undefined ? "" : `  ERROR: ${f.error}`}`,
    `  workerd RSS ${f.rssStartMiB} → peak ${f.rssPeakMiB} MiB (+${f.rssGrowthMiB} MiB)${f.abortedAtRssCap ? `  [relay stopped at the RSS cap after ${f.secondsToRssCap} s]` : ""}${f.relayDied ? "  [RELAY DIED]" : ""}`,
    `  bystander RTT idle p50 ${ms(f.idle.p50Ms)} p99 ${ms(f.idle.p99Ms)}; attacked p50 ${ms(f.attacked.p50Ms)} p99 ${ms(f.attacked.p99Ms)} max ${ms(f.attacked.maxMs)} (p99 ×${f.p99VsIdle}); worker workerd CPU ${Math.round(100 * f.workerCpuShare)} % of a core`,
    `  bystander pings ${f.attacked.sent}, answered ${f.attacked.answered}, lost ${f.attacked.lost}`,
    `  counters rose: ${JSON.stringify(f.countersRose)}`,
    `  observed: ${JSON.stringify(f.observed)}`,
    ...(f.hotFunctions === undefined ? [] : [`  worker self time: ${f.hotFunctions.map((h) => `${h.name} ${Math.round(100 * h.selfShare)} %`).join(", ")}`]),
    `  targets: ${Object.entries(f.targets).map(([k, v]) => `${k} ${v}`).join(", ")}`,
  ];
  return lines.join("\n");
}

async function main(): Promise<void> {
  const attacks = allAttacks(STORM_PORTS).filter((a) => ONLY.length === 0 || ONLY.includes(a.name));
  if (attacks.length === 0) throw new Error(`EDGELAN_HOSTILE_ONLY matched no attack; names: ${allAttacks(STORM_PORTS).map((a) => a.name).join(", ")}`);
  console.log(`bench:hostile: ${attacks.length} attacks; memory/storm ${LONG_S} s, others ${SHORT_S} s, idle ${IDLE_S} s, ping every ${PING_MS} ms, fresh relay each`);
  const results: AttackFigures[] = [];
  for (const attack of attacks) {
    try {
      const figures = await runAttack(attack);
      results.push(figures);
      console.log(describe(figures));
    } catch (error) {
      console.log(`${attack.name}: could not run: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  // The control row: what ordinary traffic at the attacks' rate grows workerd by, for reading each attack's figure.
  const control = results.find((f) => f.kind === "control");
  if (control !== undefined) {
    for (const f of results.filter((r) => r.kind === "memory")) {
      console.log(`${f.attack}: RSS growth ${f.rssGrowthMiB} MiB vs ${control.rssGrowthMiB} MiB for well-behaved traffic (${control.attack}) in this run`);
    }
  }
  const summary = {
    bench: "hostile",
    config: { longSeconds: LONG_S, shortSeconds: SHORT_S, idleSeconds: IDLE_S, stormPorts: STORM_PORTS, pingMs: PING_MS, rssCapMiB: RSS_CAP / MIB },
    targets: TARGETS,
    attacks: Object.fromEntries(results.map((f) => [f.attack, {
      rssGrowthMiB: f.rssGrowthMiB, rssPeakMiB: f.rssPeakMiB, abortedAtRssCap: f.abortedAtRssCap, secondsToRssCap: f.secondsToRssCap, relayDied: f.relayDied,
      idleP50Ms: round(f.idle.p50Ms), idleP99Ms: round(f.idle.p99Ms), p50Ms: round(f.attacked.p50Ms), p99Ms: round(f.attacked.p99Ms), p99VsIdle: f.p99VsIdle, workerCpuShare: f.workerCpuShare,
      ...(control !== undefined && f.kind === "memory" ? { rssGrowthOverControlMiB: round(f.rssGrowthMiB - control.rssGrowthMiB, 1) } : {}),
      bystanderSent: f.attacked.sent, bystanderLost: f.attacked.lost, countersRose: f.countersRose, observed: f.observed, targets: f.targets,
    }])),
    allTargetsMet: results.length === attacks.length && results.every((f) => Object.values(f.targets).every((v) => v === "met")),
  };
  console.log(JSON.stringify(summary));
}

stopRelaysOnSignal("bench:hostile");

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
