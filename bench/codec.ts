// Tunnel codec throughput: records per second to encode and decode batches of
// 32 TX or RX records with 64-byte and 1514-byte frames, against two baselines
// in the same run: the allocating decodeMessage(), and a naive JSON + base64
// encoding. Human-readable lines first; the last line is one JSON object.
//
//   npm run bench:codec            (EDGELAN_BENCH_MS=… sets the time per case, default 400)
import { Buffer } from "node:buffer";
import { decodeMessage, forEachRecord, MessageEncoder, type RecordVisitor } from "../datapath/tunnel/codec.ts";

const BATCH = 32;
const CASE_MS = Number(process.env.EDGELAN_BENCH_MS ?? 400);

type Kind = "tx" | "rx";

/** Runs `body` (which handles one batch) repeatedly for about CASE_MS after a warm-up; returns records per second. */
function measure(body: () => void): number {
  const warmUntil = performance.now() + CASE_MS / 4;
  while (performance.now() < warmUntil) body();
  let batches = 0;
  const start = performance.now();
  let now = start;
  while (now - start < CASE_MS) {
    for (let i = 0; i < 64; i++) body();
    batches += 64;
    now = performance.now();
  }
  return Math.round((batches * BATCH) / ((now - start) / 1000));
}

function frames(size: number): Uint8Array[] {
  return Array.from({ length: BATCH }, (_, i) => new Uint8Array(size).fill(i));
}

/** Keeps results observable so the optimiser cannot drop the work. */
let sink = 0;

function encodeBatch(encoder: MessageEncoder, kind: Kind, batch: readonly Uint8Array[]): Uint8Array {
  encoder.reset();
  for (let i = 0; i < batch.length; i++) {
    if (kind === "tx") encoder.addTx(i, 0, batch[i] as Uint8Array);
    else encoder.addRx(0, batch[i] as Uint8Array);
  }
  return encoder.finishView();
}

const visitor: RecordVisitor = {
  tx: (id, _flags, frame) => { sink += id + frame.length; },
  rx: (_flags, frame) => { sink += frame.length; },
};

function jsonEncode(kind: Kind, batch: readonly Uint8Array[]): Uint8Array {
  const records = batch.map((frame, id) => ({ type: kind, id, flags: 0, frame: Buffer.from(frame.buffer, frame.byteOffset, frame.length).toString("base64") }));
  return Buffer.from(JSON.stringify(records));
}

function jsonDecode(bytes: Uint8Array): void {
  const records = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString()) as Array<{ id: number; frame: string }>;
  for (const record of records) sink += Buffer.from(record.frame, "base64").length + record.id;
}

interface CaseResult { key: string; label: string; rps: number }

function runCase(kind: Kind, size: number): CaseResult[] {
  const batch = frames(size);
  const encoder = new MessageEncoder();
  const message = encodeBatch(encoder, kind, batch).slice();
  const json = jsonEncode(kind, batch);
  const tag = `${kind}${size}`;
  return [
    { key: `encode_${tag}_rps`, label: `encode ${kind} ${size}B (MessageEncoder, finishView)`, rps: measure(() => { sink += encodeBatch(encoder, kind, batch).length; }) },
    { key: `encode_copy_${tag}_rps`, label: `encode ${kind} ${size}B (MessageEncoder, finish copy)`, rps: measure(() => { encodeBatch(encoder, kind, batch); sink += encoder.finish().length; }) },
    { key: `decode_${tag}_rps`, label: `decode ${kind} ${size}B (forEachRecord)`, rps: measure(() => { forEachRecord(message, visitor); }) },
    { key: `decode_alloc_${tag}_rps`, label: `decode ${kind} ${size}B (decodeMessage, objects)`, rps: measure(() => { const r = decodeMessage(message); if (r.ok) sink += r.value.length; }) },
    { key: `baseline_json_encode_${tag}_rps`, label: `baseline JSON+base64 encode ${kind} ${size}B`, rps: measure(() => { sink += jsonEncode(kind, batch).length; }) },
    { key: `baseline_json_decode_${tag}_rps`, label: `baseline JSON+base64 decode ${kind} ${size}B`, rps: measure(() => jsonDecode(json)) },
  ];
}

function main(): void {
  const results: CaseResult[] = [];
  for (const size of [64, 1514]) {
    for (const kind of ["tx", "rx"] as const) results.push(...runCase(kind, size));
  }
  for (const { label, rps } of results) console.log(`${label.padEnd(52)} ${(rps / 1e6).toFixed(2).padStart(8)} M records/s`);
  const figure = (key: string): number => results.find((r) => r.key === key)?.rps ?? 0;
  for (const tag of ["tx64", "tx1514"]) {
    console.log(`speed-up over JSON+base64, ${tag}: encode ×${(figure(`encode_${tag}_rps`) / figure(`baseline_json_encode_${tag}_rps`)).toFixed(1)}, decode ×${(figure(`decode_${tag}_rps`) / figure(`baseline_json_decode_${tag}_rps`)).toFixed(1)}`);
  }
  const summary: Record<string, number | string> = { batch: BATCH, case_ms: CASE_MS, node: process.version };
  for (const { key, rps } of results) summary[key] = rps;
  summary.sink = sink % 1000;
  console.log(JSON.stringify(summary));
}

main();
