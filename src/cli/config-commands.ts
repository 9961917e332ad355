import type { Command } from "commander";
import { exampleConfig } from "../config/example.js";
import { loadSettings } from "../config/load.js";
import { configSchema } from "../config/schema.js";
import { SETTINGS } from "../config/settings.js";

function valueAt(tree: unknown, key: string): unknown {
  return key.split(".").reduce<unknown>((node, part) => (node as Record<string, unknown>)?.[part], tree);
}

export function registerConfigCommands(program: Command): void {
  const config = program
    .command("config")
    .description(
      "The configuration file: its schema, an example, and a check of a file with the environment",
    );

  config
    .command("schema")
    .description("Print the JSON Schema of trebuchet.yaml (every setting, its default and its variable)")
    .action(() => {
      process.stdout.write(JSON.stringify(configSchema(), null, 2) + "\n");
    });

  config
    .command("example")
    .description("Print a trebuchet.yaml with every setting at its default, commented out")
    .action(() => {
      process.stdout.write(exampleConfig());
    });

  config
    .command("check")
    .description(
      "Check a configuration file with the environment as `trebuchet serve` would, and print every setting with where it came from",
    )
    .argument("[file]", "the file (default: $TREBUCHET_CONFIG or /etc/trebuchet/trebuchet.yaml if it exists)")
    .option("--json", "print the settings as JSON")
    .action((file: string | undefined, flags: { json?: boolean }) => {
      const loaded = loadSettings({ configFile: file });
      if (flags.json) {
        process.stdout.write(
          JSON.stringify(
            {
              file: loaded.file ?? null,
              settings: loaded.settings,
              sources: Object.fromEntries(loaded.sources),
            },
            null,
            2,
          ) + "\n",
        );
        return;
      }
      const rows = SETTINGS.map((setting) => [
        setting.key,
        JSON.stringify(valueAt(loaded.settings, setting.key)),
        loaded.sources.get(setting.key) ?? "default",
      ]);
      const width = Math.max(...rows.map((row) => row[0]!.length));
      const valueWidth = Math.min(60, Math.max(...rows.map((row) => row[1]!.length)));
      process.stdout.write(
        `${loaded.file ?? "no configuration file"}: ok\n` +
          rows
            .map(([key, value, source]) => `  ${key!.padEnd(width)}  ${value!.padEnd(valueWidth)}  ${source}`)
            .join("\n") +
          "\n",
      );
    });
}
