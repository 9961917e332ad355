import { Command } from "commander";
import { registerAdminCommands } from "./admin-commands.js";
import { registerSpecCommands } from "./spec-commands.js";

export function buildProgram(): Command {
  const program = new Command("trebuchet")
    .description("Self-hosted virtual machine builds behind the Katapult Core API")
    .version("0.1.0")
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)");
  registerSpecCommands(program);
  registerAdminCommands(program);
  for (const command of program.commands) command.exitOverride();
  return program;
}
