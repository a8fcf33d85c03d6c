// The relay's own JavaScript per message, in Node without workerd: the pure SegmentSwitch with fake
// sinks, driven as durable/relay.ts drives it (forEachRecord walks each message into the switch's TX
// batch, transmit, flush). The relay writes a changed port's attachment within 1 s (one timer,
// durable/port-writer.ts); the fake sink does the structured clone the runtime's serializeAttachment
// does (CLONE=1) at most once a second per port, as that timer would. One sender port sends BATCH-record TX messages of
// SIZE-byte frames to one receiver, which re-posts credits every 32 messages. Reports CPU time (not wall
// time), which other load on the machine disturbs less; compare variants by the minimum over several runs.
//
//   npx tsx bench/relay-hotpath.ts        (BATCH=256 SIZE=64 SECONDS=3 CLONE=1; CLONE=0 skips the clone)
import { newPortCounters } from "../datapath/counters.ts";
import { SegmentSwitch } from "../datapath/segment-switch.ts";
import type { PortChange, PortSink, SwitchPort } from "../datapath/switch-port.ts";
import { forEachRecord, MessageEncoder, type RecordVisitor } from "../datapath/tunnel/codec.ts";
import { Feature } from "../datapath/tunnel/constants.ts";
import { DEFAULT_SEGMENT_CONFIG, policerLimitsOf } from "../durable/config.ts";
import { ATTACHMENT_WRITE_DELAY_MS } from "../durable/port-writer.ts";

const BATCH = Number(process.env.BATCH ?? 256);
const SIZE = Number(process.env.SIZE ?? 64);
const SECONDS = Number(process.env.SECONDS ?? 3);
const CLONE = process.env.CLONE !== "0";

class FakeSink implements PortSink {
  sentMessages = 0;
  stateWrites = 0;
  port: SwitchPort | null = null;
  private attachment: unknown = null;

  send(_bytes: Uint8Array): boolean {
    this.sentMessages++;
    return true;
  }

  private lastWrite = -Infinity;

  changed(_change: PortChange): void {
    const now = performance.now();
    if (this.port === null || now - this.lastWrite < ATTACHMENT_WRITE_DELAY_MS) return;
    this.lastWrite = now;
    this.stateWrites++;
    const state = this.port.snapshot();
    this.attachment = CLONE ? structuredClone(state) : state;
  }

  evicted(code: number, reason: string): void {
    throw new Error(`the bench's ports never get closed: ${code} ${reason}`);
  }
}

function message(build: (encoder: MessageEncoder) => void): Uint8Array {
  const encoder = new MessageEncoder(1 << 20);
  build(encoder);
  return encoder.finish();
}

const MAC_A = 0x02_00_00_00_00_01;
const MAC_B = 0x02_00_00_00_00_02;
const config = DEFAULT_SEGMENT_CONFIG;
const sw = new SegmentSwitch({
  maxFrameSize: config.maxFrameSize, learnLimitPerPort: config.learnLimitPerPort, learnLimitPerSegment: config.learnLimitPerSegment,
  agingMs: config.agingSeconds * 1000, rxQueueFrames: 65536, rxQueueBytes: 64 << 20, segmentQueueBytes: 64 << 20,
  policer: policerLimitsOf(config),
}, Date.now);

function join(id: number, macAddress: number, sink: FakeSink): SwitchPort {
  const port = sw.attach(id, "descriptor", {
    kind: "member", macs: [macAddress], filter: { promiscuous: false, allMulticast: false, multicast: [] },
    features: Feature.CoalescedCompletions | Feature.RxQueue, txWindow: 1024, credits: null, counters: newPortCounters(), heldCompletions: [],
  }, sink);
  sink.port = port;
  if (!sw.open(port, 65536).ok) throw new Error("open failed");
  return port;
}

const senderSink = new FakeSink();
const receiverSink = new FakeSink();
const sender = join(1, MAC_A, senderSink);
const receiver = join(2, MAC_B, receiverSink);

/** What durable/relay.ts does with one message from an open descriptor port. */
function onMessage(port: SwitchPort, bytes: Uint8Array): void {
  const batch = sw.beginTx(port);
  let hadTx = false;
  const visitor: RecordVisitor = {
    tx: (id, flags, frame) => {
      hadTx = true;
      batch.addTx(id, flags, frame);
    },
    rxPost: (count, bufferSize) => {
      sw.postCredits(port, count, bufferSize);
    },
    record: (record) => {
      if (record.type === "pong") sw.pong(port, record.seq);
    },
  };
  if (!forEachRecord(bytes, visitor).ok) throw new Error("bad message");
  if (!sw.transmit(port).ok) throw new Error("overrun");
  sw.endMessage(port, hadTx);
  sw.flush();
}

onMessage(receiver, message((e) => e.addRxPost(65536, 2048)));

const frame = new Uint8Array(SIZE);
for (let i = 0; i < 6; i++) {
  frame[i] = Math.floor(MAC_B / 2 ** (8 * (5 - i))) % 256;
  frame[6 + i] = Math.floor(MAC_A / 2 ** (8 * (5 - i))) % 256;
}
frame[12] = 0x88;
frame[13] = 0xb5;
const txMessages = Array.from({ length: 16 }, (_, m) => message((e) => {
  for (let i = 0; i < BATCH; i++) e.addTx((m * BATCH + i) & 0xffff, 0, frame);
}));
const repost = message((e) => e.addRxPost(BATCH * 32, 2048));
/** Reused for reposts that carry a pong (a client's own encoder, not the relay's cost). */
const pongEncoder = new MessageEncoder(4096);

let sent = 0;
function step(): void {
  onMessage(sender, txMessages[sent & 15] as Uint8Array);
  sent++;
  if (sent % 32 === 0) {
    // A client that reads everything answers the segment's read-acknowledgement PING with its repost.
    const ping = receiver.ledger?.outstandingPing ?? 0;
    if (ping === 0) {
      onMessage(receiver, repost);
    } else {
      pongEncoder.reset();
      pongEncoder.addRxPost(BATCH * 32, 2048);
      pongEncoder.add({ type: "pong", seq: ping, timestamp: 0 });
      onMessage(receiver, pongEncoder.finish());
    }
  }
}

for (let i = 0; i < 2000; i++) step();
const first = sent;
const cpuStart = process.cpuUsage();
const wallStart = performance.now();
while (performance.now() - wallStart < SECONDS * 1000) for (let i = 0; i < 50; i++) step();
const cpu = process.cpuUsage(cpuStart);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
const messages = sent - first;
if (receiver.state.counters.txFrames < (sent - first) * BATCH) throw new Error(`the receiver got ${receiver.state.counters.txFrames} of ${sent * BATCH} frames`);
console.log(
  `relay JS alone (batch ${BATCH}, ${SIZE} B frames, clone ${CLONE}): ${((1e6 * cpuSeconds) / messages).toFixed(1)} µs CPU per TX message, ` +
  `${((messages * BATCH) / cpuSeconds / 1e6).toFixed(3)} M frames per CPU-second; state writes: sender ${senderSink.stateWrites}, receiver ${receiverSink.stateWrites} for ${sent} messages`,
);
