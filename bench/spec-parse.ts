/**
 * bench/spec-parse: full parse + structural validation of a spec holding every element
 * (examples/every-element.xml), against the bare XML parser (saxes) reading the same
 * text with no handlers, measured in the same run, alternating rounds.
 * Promise: ours >= 0.5x the bare parse rate.
 */
import { readFileSync } from "node:fs";
import { SaxesParser } from "saxes";
import { checkSpec } from "../src/spec/index.js";

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const ROUND_MS = Number(process.env.ROUND_MS ?? 1000);
const text = readFileSync(new URL("../../examples/every-element.xml", import.meta.url), "utf8");

function bare(): void {
  const parser = new SaxesParser({ position: true });
  parser.on("opentag", () => undefined);
  parser.on("text", () => undefined);
  parser.write(text).close();
}

function ours(): void {
  const result = checkSpec(text, { format: "xml" });
  if (!result.valid) throw new Error(`the benchmark spec must be valid: ${JSON.stringify(result.errors)}`);
}

function rate(fn: () => void): number {
  const end = performance.now() + ROUND_MS;
  let ops = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 50; i++) fn();
    ops += 50;
  }
  return ops / (ROUND_MS / 1000);
}

// Warm up both, so the JIT has compiled each before it is timed.
for (let i = 0; i < 200; i++) {
  bare();
  ours();
}
const bareRates: number[] = [];
const ourRates: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  bareRates.push(rate(bare));
  ourRates.push(rate(ours));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const bareRate = median(bareRates);
const ourRate = median(ourRates);
const ratio = ourRate / bareRate;
console.log(`spec-parse: document ${text.length} bytes, ${ROUNDS} rounds of ${ROUND_MS} ms, medians`);
console.log(`  bare saxes parse          ${bareRate.toFixed(0).padStart(8)} ops/s`);
console.log(`  trebuchet parse+validate  ${ourRate.toFixed(0).padStart(8)} ops/s`);
console.log(
  `  ratio                     ${ratio.toFixed(2).padStart(8)}x  (target >= 0.50x: ${ratio >= 0.5 ? "met" : "NOT met"})`,
);
