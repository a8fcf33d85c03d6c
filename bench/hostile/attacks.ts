// The attacks of issue 9, each against its own segment, bounded by a deadline. Each returns
// what it observed (its own figures); the runner adds RSS, bystander figures and counters.
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { formatMac } from "../../datapath/mac.ts";
import { Feature, MAX_RX_CREDITS, SUBPROTOCOL_V1, TxFlag } from "../../datapath/tunnel/constants.ts";
import type { Admin } from "./admin.ts";
import { BROADCAST, ethernetFrame, segmentsOf, tcpSuperFrame } from "./frames.ts";
import type { LocalRelay } from "./relay-process.ts";
import { DescriptorPort, openSocket, RawPort, sleep, UpgradeRefused } from "./wire.ts";

export interface AttackContext {
  relay: LocalRelay;
  admin: Admin;
  segment: string;
  /** Attack until this time (ms since epoch). */
  deadline: number;
  /** True once the runner aborts the attack (the relay's RSS passed the safety cap). */
  aborted(): boolean;
  /** Ports the attack opened; the runner closes them after reading the counters. */
  ports: Array<{ close(): void }>;
}

export interface Attack {
  name: string;
  /** Memory attacks run for the long duration and have the RSS target. */
  kind: "memory" | "fairness" | "state" | "ownership" | "control";
  /** Segment settings on top of openJoin. */
  config?: Record<string, unknown>;
  /** Setup that is not the attack (e.g. joining idle ports): runs before the idle window is measured. */
  setup?(ctx: AttackContext): Promise<void>;
  run(ctx: AttackContext): Promise<Record<string, unknown>>;
}

const GSO = Feature.Gso | Feature.CoalescedCompletions | Feature.RxQueue;
const ATTACKER = 0x02_00_00_00_a0_01;
const VICTIM = 0x02_00_00_00_a0_02;
/** Payload of an amplifying super-frame: 64,981 + 54 header bytes = 65,035 bytes, under the 65,535 limit. */
const SUPER_PAYLOAD = 64_981;

const running = (ctx: AttackContext): boolean => Date.now() < ctx.deadline && !ctx.aborted();

/** A raw port that registers `mac` by sending one frame from it (a raw member claims its first source). */
async function rawPortWithMac(ctx: AttackContext, mac: number): Promise<RawPort> {
  const port = await RawPort.join(ctx.relay.wsUrl, ctx.segment);
  ctx.ports.push(port);
  port.send(ethernetFrame(BROADCAST, mac));
  await sleep(200);
  return port;
}

async function attacker(ctx: AttackContext, mac: number, features: number, extra: Partial<Parameters<typeof DescriptorPort.join>[2]> = {}): Promise<DescriptorPort> {
  const port = await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, { macs: [mac], features, txWindow: 1024, credits: 0, ...extra });
  ctx.ports.push(port);
  return port;
}

/**
 * Sends messages of `frames` (with `flags`) from `port` until the deadline, one message per window's
 * worth of room: the fastest a well-formed client may go. Returns messages and frames sent.
 */
async function flood(ctx: AttackContext, port: DescriptorPort, frames: readonly Uint8Array[], flags = 0): Promise<{ messages: number; frames: number }> {
  let messages = 0;
  while (running(ctx) && port.closed === null) {
    // Wait in short slices, so an aborted attack notices within a second.
    const room = await port.waitFor(() => port.outstanding + frames.length <= port.txWindow, Math.max(1, Math.min(1000, ctx.deadline - Date.now())));
    if (!running(ctx)) break;
    if (!room) continue;
    port.sendTx(frames, flags);
    messages++;
    // Let the socket drain and other events run between messages.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { messages, frames: messages * frames.length };
}

/** As many super-frames as fit one message (about 16 of 64 KiB in 1 MiB). */
function superFrameBatch(dst: number, src: number, gsoSize: number): Uint8Array[] {
  const one = tcpSuperFrame(dst, src, SUPER_PAYLOAD, gsoSize);
  return Array.from({ length: 16 }, () => one);
}

/** A member granted Gso sends TCPv4 super-frames with gso_size 1 to a raw port that reads. */
const gsoUnicast: Attack = {
  name: "gso-amplification-unicast",
  kind: "memory",
  async run(ctx) {
    const victim = await rawPortWithMac(ctx, VICTIM);
    const port = await attacker(ctx, ATTACKER, GSO);
    if ((port.features & Feature.Gso) === 0) return { gsoGranted: false };
    const batch = superFrameBatch(VICTIM, ATTACKER, 1);
    const sent = await flood(ctx, port, batch, TxFlag.VnetHeader);
    return {
      gsoGranted: true, superFramesSent: sent.frames, framesEachBecomes: segmentsOf(batch[0] as Uint8Array, 1),
      completed: port.completed, victimFramesReceived: victim.rxFrames,
    };
  },
};

/** The same super-frames as broadcast: every other port gets the segmented frames. */
const gsoBroadcast: Attack = {
  name: "gso-amplification-broadcast",
  kind: "memory",
  async run(ctx) {
    const listeners = [];
    for (let i = 0; i < 4; i++) listeners.push(await rawPortWithMac(ctx, VICTIM + i));
    const port = await attacker(ctx, ATTACKER, GSO);
    if ((port.features & Feature.Gso) === 0) return { gsoGranted: false };
    const sent = await flood(ctx, port, superFrameBatch(BROADCAST, ATTACKER, 1), TxFlag.VnetHeader);
    return { gsoGranted: true, superFramesSent: sent.frames, completed: port.completed, listenerFramesReceived: listeners.reduce((n, l) => n + l.rxFrames, 0) };
  },
};

/** A raw port stops reading while a peer floods it with full-size unicast. */
const rawNonReader: Attack = {
  name: "raw-non-reader",
  kind: "memory",
  async run(ctx) {
    const victim = await rawPortWithMac(ctx, VICTIM);
    victim.stopReading();
    const port = await attacker(ctx, ATTACKER, Feature.CoalescedCompletions);
    const frame = ethernetFrame(VICTIM, ATTACKER, 1514);
    const sent = await flood(ctx, port, Array.from({ length: 256 }, () => frame));
    return { framesSent: sent.frames, completedOk: port.completedOk, completedDropped: port.completedDropped };
  },
};

/**
 * Not an attack: the baseline the memory attacks are read against. A well-behaved port sends full-size
 * unicast as fast as its window allows to a descriptor port that reads everything and re-posts its credits.
 * The workerd RSS this grows is what the same message rate costs with no attacker at all (V8 frees message
 * buffers at its own garbage-collection pace, and the allocator keeps the pages).
 */
const benignFlood: Attack = {
  name: "benign-flood",
  kind: "control",
  async run(ctx) {
    const receiver = await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, { macs: [VICTIM], credits: 4096 });
    ctx.ports.push(receiver);
    const port = await attacker(ctx, ATTACKER, Feature.CoalescedCompletions);
    const sent = await flood(ctx, port, Array.from({ length: 256 }, () => ethernetFrame(VICTIM, ATTACKER, 1514)));
    return { framesSent: sent.frames, completedOk: port.completedOk, completedDropped: port.completedDropped, receiverFrames: receiver.rxFrames };
  },
};

/** A descriptor port posts the most credits it may, never reads, and a peer floods it. */
function descriptorNonReader(name: string, gso: boolean): Attack {
  return {
    name,
    kind: "memory",
    async run(ctx) {
      const bufferSize = gso ? 65_545 : 2048;
      const victim = await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, {
        macs: [VICTIM], features: gso ? GSO : Feature.CoalescedCompletions | Feature.RxQueue, credits: MAX_RX_CREDITS, bufferSize, replenish: false,
      });
      ctx.ports.push(victim);
      victim.stopReading();
      const port = await attacker(ctx, ATTACKER, gso ? GSO : Feature.CoalescedCompletions);
      const batch = gso ? superFrameBatch(VICTIM, ATTACKER, 1448) : Array.from({ length: 256 }, () => ethernetFrame(VICTIM, ATTACKER, 1514));
      const sent = await flood(ctx, port, batch, gso ? TxFlag.VnetHeader : 0);
      return {
        victimGsoGranted: (victim.features & Feature.Gso) !== 0, creditsPosted: MAX_RX_CREDITS, bufferSize,
        framesSent: sent.frames, completedOk: port.completedOk, completedDropped: port.completedDropped,
      };
    },
  };
}

/** Frames per second each broadcaster offers: 50 × the default storm-control rate, and under the 10,000 refused frames/s that close a port (4029). */
const STORM_OFFERED_FPS = 5000;
/** Broadcast frames per message of a broadcaster; messages are paced to STORM_OFFERED_FPS. */
const STORM_FRAMES_PER_MESSAGE = 50;

/**
 * Sends broadcast messages of STORM_FRAMES_PER_MESSAGE frames from `port`, paced to STORM_OFFERED_FPS,
 * until the deadline: as fast as a port may go without being closed, so the storm lasts the whole window
 * (a port that floods faster is closed 4029 within a second, which ends its storm — see the flood attacks).
 */
async function pacedBroadcast(ctx: AttackContext, port: DescriptorPort, src: number): Promise<{ frames: number }> {
  const batch = Array.from({ length: STORM_FRAMES_PER_MESSAGE }, () => ethernetFrame(BROADCAST, src, 60));
  const intervalMs = (1000 * STORM_FRAMES_PER_MESSAGE) / STORM_OFFERED_FPS;
  const start = Date.now();
  let messages = 0;
  while (running(ctx) && port.closed === null) {
    const room = await port.waitFor(() => port.outstanding + batch.length <= port.txWindow, Math.max(1, Math.min(1000, ctx.deadline - Date.now())));
    if (!running(ctx)) break;
    if (!room) continue;
    port.sendTx(batch);
    messages++;
    const due = start + messages * intervalMs;
    await sleep(Math.max(0, due - Date.now()));
  }
  return { frames: messages * batch.length };
}

/**
 * `totalPorts` ports in all: the idle ones join before the idle window is measured (joining is not the
 * attack); then 4 broadcast as fast as they are allowed for the whole window. The rest only listen (no credit).
 */
function broadcastStorm(totalPorts: number): Attack {
  const broadcasters: DescriptorPort[] = [];
  const passive = Math.max(0, totalPorts - 2 - 4);
  return {
    name: "broadcast-storm",
    kind: "fairness",
    config: { maxPorts: Math.min(1024, totalPorts + 16) },
    async setup(ctx) {
      for (let i = 0; i < passive; i++) {
        ctx.ports.push(await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, { macs: [0x02_00_00_01_00_00 + i], features: Feature.CoalescedCompletions, credits: 0 }));
      }
      for (let i = 0; i < 4; i++) broadcasters.push(await attacker(ctx, ATTACKER + 0x100 + i, Feature.CoalescedCompletions));
    },
    async run(ctx) {
      const results = await Promise.all(broadcasters.map((s, i) => pacedBroadcast(ctx, s, ATTACKER + 0x100 + i)));
      return {
        ports: passive + 4 + 2, broadcasters: 4, offeredFramesPerSecondEach: STORM_OFFERED_FPS, broadcastFramesSent: results.reduce((n, r) => n + r.frames, 0),
        broadcastersClosed: broadcasters.filter((b) => b.closed !== null).map((b) => b.closed?.code),
        broadcastFramesCompletedOk: broadcasters.reduce((n, b) => n + b.completedOk, 0),
      };
    },
  };
}

/** The DO's sqlite files under the relay's --persist-to directory. */
function sqliteFiles(stateDir: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".sqlite")) found.push(path);
    }
  };
  walk(stateDir);
  return found;
}

/** Resume rows (table `resume_sessions`, and `session:*` keys of the older layout) across every segment's storage; null without the sqlite3 CLI. */
function resumeRows(stateDir: string): number | null {
  let rows = 0;
  for (const file of sqliteFiles(stateDir)) {
    try {
      const out = execFileSync("sqlite3", ["-readonly", file, "SELECT (SELECT count(*) FROM _cf_KV WHERE key LIKE 'session:%') + (SELECT count(*) FROM resume_sessions);"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
      rows += Number(out.trim()) || 0;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      // Not a Durable Object's storage (metadata, cache): no _cf_KV table.
    }
  }
  return rows;
}

/** One client repeatedly joins with Resume and breaks the protocol, so the segment closes it. */
const resumeRowGrowth: Attack = {
  name: "resume-row-growth",
  kind: "state",
  async run(ctx) {
    const before = resumeRows(ctx.relay.stateDir);
    let closedBySegment = 0;
    while (running(ctx)) {
      const port = await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, { macs: [ATTACKER], features: Feature.Resume | Feature.CoalescedCompletions, credits: 0 });
      // A tx-complete is a segment → client record: sending one is a protocol error, and the segment closes the port.
      port.send([{ type: "tx-complete", firstId: 0, count: 1, status: 0 }]);
      const deadline = Date.now() + 5000;
      while (port.closed === null && Date.now() < deadline) await sleep(5);
      if (port.closed !== null && port.closed.code >= 4000) closedBySegment++;
      port.close();
    }
    await sleep(500);
    const after = resumeRows(ctx.relay.stateDir);
    const added = before === null || after === null ? null : after - before;
    // Held: a session the segment closed itself leaves no resume row behind.
    return { closedBySegment, resumeRowsBefore: before, resumeRowsAfter: after, resumeRowsAdded: added, ...(added === null ? {} : { held: added === 0 }) };
  },
};

/** One MAC-bound token opens sockets that never say HELLO until the segment is full; a legitimate join keeps trying. */
const helloHolding: Attack = {
  name: "hello-slot-holding",
  kind: "state",
  config: { maxPorts: 32 },
  async run(ctx) {
    const attackerToken = await ctx.admin.token(ctx.segment, "member", 3600, [formatMac(ATTACKER)]);
    const legitToken = await ctx.admin.token(ctx.segment, "member", 3600, [formatMac(VICTIM)]);
    let held = 0;
    let refusedFull = 0;
    let legitAdmitted = 0;
    let legitRefused = 0;
    const url = (token: string): string => `${ctx.relay.wsUrl}/v1/segments/${ctx.segment}/connect?token=${encodeURIComponent(token)}`;
    while (running(ctx)) {
      try {
        const ws = await openSocket(url(attackerToken), [SUBPROTOCOL_V1]);
        ws.on("error", () => undefined);
        ctx.ports.push({ close: () => ws.terminate() });
        held++;
        continue;
      } catch (error) {
        if (error instanceof UpgradeRefused && error.status === 503) refusedFull++;
      }
      try {
        const legit = await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, { macs: [VICTIM], token: legitToken, credits: 0 });
        legitAdmitted++;
        legit.close();
      } catch {
        legitRefused++;
      }
      await sleep(250);
    }
    return {
      helloSocketsOpened: held, attackerRefusedFull: refusedFull, legitimateJoinsAdmitted: legitAdmitted, legitimateJoinsRefused: legitRefused,
      held: legitRefused === 0,
    };
  },
};

/** Waits briefly and says whether `port` received a frame from `src` since `before` frames. */
async function received(port: DescriptorPort, before: number): Promise<boolean> {
  await sleep(400);
  return port.rxFrames > before;
}

/** MAC ownership: the three cases of issue 9's table. */
const macOwnership: Attack = {
  name: "mac-ownership",
  kind: "ownership",
  async run(ctx) {
    const join = async (mac: number | null, options: Partial<Parameters<typeof DescriptorPort.join>[2]> = {}): Promise<DescriptorPort> => {
      const port = await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, { macs: mac === null ? [] : [mac], credits: 256, ...options });
      ctx.ports.push(port);
      return port;
    };
    const bridgeToken = await ctx.admin.token(ctx.segment, "bridge");
    const sender = await join(0x02_00_00_00_c0_01);
    const bridge = await join(null, { kind: "bridge", token: bridgeToken, query: "kind=bridge" });
    // 1. A member registers a MAC learned behind the bridge.
    const learned = 0x02_00_00_00_c0_10;
    bridge.sendTx([ethernetFrame(BROADCAST, learned)]);
    await sleep(300);
    const squatter = await join(0x02_00_00_00_c0_02);
    squatter.send([{ type: "add-mac", seq: 1, mac: learned }]);
    await sleep(300);
    const [bridgeBefore, squatterBefore] = [bridge.rxFrames, squatter.rxFrames];
    sender.sendTx([ethernetFrame(learned, 0x02_00_00_00_c0_01)]);
    const learnedHijacked = (await received(squatter, squatterBefore)) && !(bridge.rxFrames > bridgeBefore);

    // 2. An unbound member takes a MAC bound to another token; the rightful holder then joins.
    const bound = 0x02_00_00_00_c0_20;
    const holderToken = await ctx.admin.token(ctx.segment, "member", 3600, [formatMac(bound)]);
    let squatterWelcomed = false;
    let boundSquatter: DescriptorPort | null = null;
    try {
      boundSquatter = await join(bound);
      squatterWelcomed = true;
    } catch {
      squatterWelcomed = false;
    }
    let holderRefused: string | null = null;
    try {
      await join(bound, { token: holderToken });
    } catch (error) {
      holderRefused = error instanceof Error ? error.message : String(error);
    }
    // docs/datapath.md "MAC ownership": an unbound squatter may join, and is closed 4009 when the holder arrives.
    const evictee = boundSquatter;
    if (evictee !== null) await evictee.waitFor(() => evictee.closed !== null, 2000);
    const squatterEvicted = evictee?.closed?.code === 4009;

    // 3. A bridge port sends from a member's registered MAC.
    await join(0x02_00_00_00_c0_30);
    const senderBefore = sender.rxFrames;
    bridge.sendTx([ethernetFrame(0x02_00_00_00_c0_01, 0x02_00_00_00_c0_30)]);
    const bridgeSpoofForwarded = await received(sender, senderBefore);

    return {
      learnedMacHijackedByMember: learnedHijacked, unboundSquatterWelcomed: squatterWelcomed, squatterEvicted, rightfulHolderRefused: holderRefused,
      bridgeSpoofOfMemberMacForwarded: bridgeSpoofForwarded,
      held: !learnedHijacked && (!squatterWelcomed || squatterEvicted) && holderRefused === null && !bridgeSpoofForwarded,
    };
  },
};

/** A port whose token expires keeps its port; a token minted before DELETE works on the recreated segment. */
const expiredToken: Attack = {
  name: "expired-token",
  kind: "ownership",
  async run(ctx) {
    const listener = await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, { macs: [VICTIM], credits: 256 });
    ctx.ports.push(listener);
    const token = await ctx.admin.token(ctx.segment, "member", 2, [formatMac(ATTACKER)]);
    const port = await DescriptorPort.join(ctx.relay.wsUrl, ctx.segment, { macs: [ATTACKER], token, credits: 0 });
    ctx.ports.push(port);
    await sleep(3500);
    const before = listener.rxFrames;
    port.sendTx([ethernetFrame(VICTIM, ATTACKER)]);
    const forwardedAfterExpiry = port.closed === null && (await received(listener, before));

    const name = `${ctx.segment}-recreated`;
    await ctx.admin.putSegment(name, { openJoin: false });
    const oldToken = await ctx.admin.token(name, "member", 3600);
    await ctx.admin.deleteSegment(name);
    await ctx.admin.putSegment(name, { openJoin: false });
    let oldTokenWorksAfterRecreate = false;
    try {
      const again = await DescriptorPort.join(ctx.relay.wsUrl, name, { macs: [ATTACKER + 2], token: oldToken, credits: 0 });
      oldTokenWorksAfterRecreate = true;
      again.close();
    } catch {
      oldTokenWorksAfterRecreate = false;
    }
    await ctx.admin.deleteSegment(name);
    return {
      expiredPortStillOpen: port.closed === null, forwardedAfterExpiry, closeCode: port.closed?.code ?? null, oldTokenWorksAfterRecreate,
      held: !forwardedAfterExpiry && !oldTokenWorksAfterRecreate,
    };
  },
};

/** Every attack, in the order they run. */
export function allAttacks(stormPorts: number): Attack[] {
  return [
    benignFlood, gsoUnicast, gsoBroadcast, rawNonReader, descriptorNonReader("descriptor-non-reader", false), descriptorNonReader("descriptor-non-reader-gso", true),
    broadcastStorm(stormPorts), resumeRowGrowth, helloHolding, macOwnership, expiredToken,
  ];
}
