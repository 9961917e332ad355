import { Command } from "commander";
import { VERSION } from "../version.js";
import { registerAdminCommands } from "./admin-commands.js";
import { registerDemoCommand } from "./demo-command.js";
import { registerServeCommand } from "./serve-command.js";
import { registerUserCommands } from "./user-commands.js";
import { registerSpecCommands } from "./spec-commands.js";
import { registerConfigCommands } from "./config-commands.js";

export function buildProgram(): Command {
  const program = new Command("trebuchet")
    .description("Self-hosted virtual machine builds behind the Katapult Core API")
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)");
  registerSpecCommands(program);
  registerDemoCommand(program);
  registerServeCommand(program);
  registerUserCommands(program);
  registerAdminCommands(program);
  registerConfigCommands(program);
  const override = (command: Command) => {
    command.exitOverride();
    command.commands.forEach(override);
  };
  override(program);
  return program;
}
