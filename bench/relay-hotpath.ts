// The relay's own JavaScript per message, in Node without workerd: SegmentRelay with fake sockets
// (send() counts, serializeAttachment() does a structured clone as the runtime does). One sender
// port sends BATCH-record TX messages of SIZE-byte frames to one receiver, which re-posts credits
// every 32 messages. Reports CPU time (not wall time), which other load on the machine disturbs less;
// compare variants by the minimum over several runs.
//
//   npx tsx bench/relay-hotpath.ts        (BATCH=256 SIZE=64 SECONDS=3 CLONE=1; CLONE=0 skips the clone)
import { DEFAULT_SEGMENT_CONFIG } from "../durable/config.ts";
import { SegmentRelay, type JoinGrant } from "../durable/relay.ts";
import { MessageEncoder } from "../datapath/tunnel/codec.ts";
import { Feature } from "../datapath/tunnel/constants.ts";

const BATCH = Number(process.env.BATCH ?? 256);
const SIZE = Number(process.env.SIZE ?? 64);
const SECONDS = Number(process.env.SECONDS ?? 3);
const CLONE = process.env.CLONE !== "0";

class FakeSocket {
  sentMessages = 0;
  attachmentWrites = 0;
  private attachment: unknown = null;

  send(_data: Uint8Array): void {
    this.sentMessages++;
  }

  serializeAttachment(value: unknown): void {
    this.attachmentWrites++;
    this.attachment = CLONE ? structuredClone(value) : value;
  }

  deserializeAttachment(): unknown {
    return this.attachment;
  }

  close(): void {}
}

function message(build: (encoder: MessageEncoder) => void): ArrayBuffer {
  const encoder = new MessageEncoder(1 << 20);
  build(encoder);
  const bytes = encoder.finish();
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

const MAC_A = 0x02_00_00_00_00_01;
const MAC_B = 0x02_00_00_00_00_02;
const config = { ...DEFAULT_SEGMENT_CONFIG, rxQueueFrames: 65536, rxQueueBytes: 64 << 20, segmentQueueBytes: 64 << 20, openJoin: true, createdAt: "" };
const relay = new SegmentRelay(config, null);
const sender = new FakeSocket();
const receiver = new FakeSocket();
const asSocket = (socket: FakeSocket): WebSocket => socket as unknown as WebSocket;
const grant = (portId: number): JoinGrant => ({ portId, mode: "descriptor", kind: "member", boundMacs: null, remote: "bench", auth: "none", tokenExp: null });
const hello = (mac: number): ArrayBuffer => message((e) => e.add({
  type: "hello", minVersion: 1, maxVersion: 1, features: Feature.CoalescedCompletions | Feature.RxQueue, portKind: "member", macs: [mac],
  txWindow: 1024, rxQueue: 65536, clientName: "hotpath", clientVersion: "0",
}));

relay.accept(asSocket(sender), grant(1));
relay.accept(asSocket(receiver), grant(2));
relay.onMessage(asSocket(sender), hello(MAC_A));
relay.onMessage(asSocket(receiver), hello(MAC_B));
relay.onMessage(asSocket(receiver), message((e) => e.addRxPost(65536, 2048)));

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

let sent = 0;
function step(): void {
  relay.onMessage(asSocket(sender), txMessages[sent & 15] as ArrayBuffer);
  sent++;
  if (sent % 32 === 0) relay.onMessage(asSocket(receiver), repost);
}

for (let i = 0; i < 2000; i++) step();
const first = sent;
const cpuStart = process.cpuUsage();
const wallStart = performance.now();
while (performance.now() - wallStart < SECONDS * 1000) for (let i = 0; i < 50; i++) step();
const cpu = process.cpuUsage(cpuStart);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
const messages = sent - first;
console.log(
  `relay JS alone (batch ${BATCH}, ${SIZE} B frames, clone ${CLONE}): ${((1e6 * cpuSeconds) / messages).toFixed(1)} µs CPU per TX message, ` +
  `${((messages * BATCH) / cpuSeconds / 1e6).toFixed(3)} M frames per CPU-second; attachment writes: sender ${sender.attachmentWrites}, receiver ${receiver.attachmentWrites} for ${sent} messages`,
);
