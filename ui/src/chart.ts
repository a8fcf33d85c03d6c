// A live line chart on a canvas: one series per port, the last 60 samples,
// y axis from zero to a rounded maximum. Drawn from scratch on each update.
import { compact } from "./dom.ts";

const PALETTE = ["#2463eb", "#e04f16", "#12b76a", "#9e77ed", "#f79009", "#06aed4", "#dd2590", "#667085"];
const MAX_POINTS = 60;

/** Points per series key (a port id), oldest first. */
export class RateChart {
  private readonly series = new Map<string, number[]>();

  constructor(readonly canvas: HTMLCanvasElement, private readonly unit: string) {}

  /** The colour of a series, stable by insertion order. */
  colorOf(key: string): string {
    const index = [...this.series.keys()].indexOf(key);
    return PALETTE[(index < 0 ? this.series.size : index) % PALETTE.length] as string;
  }

  /** Adds one sample per key; keys not given get no point (their line ends); gone keys are dropped after 60 samples. */
  push(values: ReadonlyMap<string, number>): void {
    for (const [key, value] of values) {
      const points = this.series.get(key) ?? new Array<number>(0);
      points.push(value);
      if (points.length > MAX_POINTS) points.shift();
      this.series.set(key, points);
    }
    for (const key of [...this.series.keys()]) if (!values.has(key)) this.series.delete(key);
    this.draw();
  }

  keys(): string[] {
    return [...this.series.keys()];
  }

  private draw(): void {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 220;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    if (context === null) return;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const left = 64;
    const bottom = height - 18;
    const top = 8;
    const max = niceCeiling(Math.max(1, ...[...this.series.values()].flat()));
    context.font = "11px system-ui, sans-serif";
    context.fillStyle = "#667085";
    context.strokeStyle = "#eaecf0";
    context.lineWidth = 1;
    for (let step = 0; step <= 4; step++) {
      const y = bottom - ((bottom - top) * step) / 4;
      context.beginPath();
      context.moveTo(left, y);
      context.lineTo(width - 4, y);
      context.stroke();
      context.fillText(`${compact((max * step) / 4)} ${this.unit}`, 4, y + 4);
    }
    context.fillText("60 s", left, height - 4);
    context.fillText("now", width - 28, height - 4);
    const xOf = (index: number): number => left + ((width - 4 - left) * index) / (MAX_POINTS - 1);
    for (const [key, points] of this.series) {
      context.strokeStyle = this.colorOf(key);
      context.lineWidth = 2;
      context.beginPath();
      const offset = MAX_POINTS - points.length;
      points.forEach((value, i) => {
        const x = xOf(offset + i);
        const y = bottom - ((bottom - top) * value) / max;
        if (i === 0) context.moveTo(x, y);
        else context.lineTo(x, y);
      });
      context.stroke();
    }
  }
}

/** 1, 2, 5 × 10^n at or above `value`. */
function niceCeiling(value: number): number {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}
