import type { Command } from "commander";
import { InvalidArgumentError, Option } from "commander";
import {
  canonical,
  checkSpec,
  DEFAULT_LIMITS,
  parseSpec,
  SPEC_FORMATS,
  writeSpec,
  type SpecFormat,
} from "../spec/index.js";
import { detectFormat } from "../spec/index.js";
import { readCapped } from "./input.js";

function formatOption(flag: string, description: string): Option {
  return new Option(flag, description).choices(SPEC_FORMATS as string[]);
}

async function load(
  file: string,
  format: SpecFormat | undefined,
): Promise<{ bytes: Uint8Array; format: SpecFormat }> {
  let bytes: Uint8Array;
  try {
    bytes = await readCapped(file, DEFAULT_LIMITS.maxBytes);
  } catch (error) {
    throw new InvalidArgumentError(
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  const sample = Buffer.from(bytes.subarray(0, 64)).toString("utf8");
  return { bytes, format: format ?? detectFormat(sample, file === "-" ? undefined : file) };
}

export function registerSpecCommands(program: Command): void {
  const spec = program.command("spec").description("Check and convert virtual machine spec documents");

  spec
    .command("check")
    .description(
      "Validate a spec (XML, JSON or YAML) and print the result as JSON; exit 0 valid, 1 invalid, 2 usage",
    )
    .argument("<file>", "spec file, or - for standard input")
    .addOption(formatOption("--format <format>", "input format (default: from the extension or the content)"))
    .action(async (file: string, options: { format?: SpecFormat }) => {
      const input = await load(file, options.format).catch(usage(spec));
      const result = checkSpec(input.bytes, { format: input.format });
      const report = {
        valid: result.valid,
        errors: result.errors,
        warnings: result.warnings,
        spec: result.valid && result.spec ? canonical(result.spec) : null,
      };
      process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      process.exitCode = result.valid ? 0 : 1;
    });

  spec
    .command("convert")
    .description("Print a spec in another form (XML, JSON or YAML)")
    .argument("<file>", "spec file, or - for standard input")
    .addOption(formatOption("--to <format>", "output format").makeOptionMandatory())
    .addOption(formatOption("--format <format>", "input format (default: from the extension or the content)"))
    .action(async (file: string, options: { to: SpecFormat; format?: SpecFormat }) => {
      const input = await load(file, options.format).catch(usage(spec));
      const result = parseSpec(input.bytes, { format: input.format });
      if (!result.spec || result.errors.length > 0) {
        for (const e of result.errors)
          process.stderr.write(`${file}:${e.line}:${e.column}: ${e.code}: ${e.message}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(writeSpec(result.spec, options.to));
    });
}

function usage(command: Command): (error: unknown) => never {
  return (error) =>
    command.error(`error: ${(error as Error).message}`, { exitCode: 2, code: "trebuchet.input" });
}
