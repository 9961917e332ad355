#!/usr/bin/env node
import { CommanderError } from "commander";
import { buildProgram } from "./program.js";

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Usage errors exit 2 (help and version exit 0), so scripts can tell them from a failed check.
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else {
    process.stderr.write(`trebuchet: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
